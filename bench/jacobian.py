"""Scenario 8: the Jacobian of a 4x4 system at 10^5 points (issue 18).

Per round, alternating as batch.py does: the bare echo server moving the same bytes
(`echo_numeric.py`), chainrule, the Jacobian written by hand in numpy, and JAX
`jit(vmap(jacfwd(F)))` on the CPU in float64. chainrule's server-side compute is its
`chainrule_stage_seconds{stage="evaluate"}`; end-to-end is the client's wall time for one call with
pre-serialised request bytes; the floor of that is echo's time plus numpy's. Before timing, the
answers are checked against JAX's `jacfwd` at one point and at every one of the points (and against
the numpy by hand), so the race is between equal results.

    .venv/bin/python bench/jacobian.py             # on its own: starts chainrule and echo, prints rows
    .venv/bin/python bench/jacobian.py --quick     # 10^4 points, 2 rounds
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import batch
import harness
import numpy as np
from common import Row, chainrule_command, channel, echo_command, median, raw_method, server_env

from chainrule.v1 import chainrule_pb2 as pb

# Four rows over four variables sharing sin(x), exp(-y^2/2), sqrt(1 + w^2) and x*y: what CSE over
# the whole system is for (a Newton step or an EKF's measurement Jacobian looks like this).
SYSTEM = (
    "sin(x)*exp(-y^2/2) + x*y*z*w",
    "log(1 + z^2)*sqrt(1 + w^2) + sin(x)*z",
    "exp(-y^2/2)*cos(w) + x*y*z",
    "atan(x*y) + sqrt(1 + w^2)*y",
)
NAMES = ("w", "x", "y", "z")
Columns = dict[str, np.ndarray]


def numpy_jacobian(c: Columns) -> tuple[np.ndarray, ...]:
    """Four values, then the 16 partials row-major over (w, x, y, z), sharing what a careful hand shares."""
    w, x, y, z = c["w"], c["x"], c["y"], c["z"]
    sx, cx, e = np.sin(x), np.cos(x), np.exp(-(y**2) / 2)
    q = np.sqrt(1 + w**2)
    xy, zw, cw = x * y, z * w, np.cos(w)
    lz = np.log(1 + z**2)
    a = 1 / (1 + xy**2)
    zero = np.zeros_like(x)
    return (
        sx * e + xy * zw, lz * q + sx * z, e * cw + xy * z, np.arctan(xy) + q * y,
        xy * z, cx * e + y * zw, -y * sx * e + x * zw, xy * w,
        lz * w / q, cx * z, zero, 2 * z / (1 + z**2) * q + sx,
        -e * np.sin(w), y * z, -y * e * cw + x * z, xy,
        w / q * y, y * a, x * a + q, zero,
    )  # fmt: skip


def jax_jacobian() -> Callable[[Columns], Any] | None:
    """`jit(vmap(jacfwd(F)))` of the system over the four variables, float64, CPU; None without JAX."""
    try:
        import jax  # noqa: PLC0415 (a bench-only extra)
        import jax.numpy as jnp  # noqa: PLC0415
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")

    def system(w: Any, x: Any, y: Any, z: Any) -> Any:
        e, q = jnp.exp(-(y**2) / 2), jnp.sqrt(1 + w**2)
        return jnp.stack([
            jnp.sin(x) * e + x * y * z * w,
            jnp.log(1 + z**2) * q + jnp.sin(x) * z,
            e * jnp.cos(w) + x * y * z,
            jnp.arctan(x * y) + q * y,
        ])  # fmt: skip

    compiled = jax.jit(jax.vmap(jax.jacfwd(system, argnums=(0, 1, 2, 3))))

    def run(c: Columns) -> Any:
        return jax.block_until_ready(compiled(*(c[name] for name in NAMES)))

    return run


def jax_matrix(result: Any) -> list[np.ndarray]:
    """JAX's answer as the 16 columns, row-major: result[j] is d F / d NAMES[j], shape (points, 4)."""
    return [np.asarray(result[j])[:, i] for i in range(len(SYSTEM)) for j in range(len(NAMES))]


def make_columns(points: int, seed: int = 8) -> Columns:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-2.0, 2.0, points) for name in NAMES}


def request_bytes(columns: Columns) -> bytes:
    arrays = {name: pb.Array(f64le=column.tobytes()) for name, column in columns.items()}
    return pb.JacobianRequest(expressions=SYSTEM, points=arrays).SerializeToString()


def answer(raw: bytes) -> tuple[list[np.ndarray], list[np.ndarray]]:
    message = pb.JacobianResponse.FromString(raw)
    assert list(message.variables) == list(NAMES)
    values = [np.frombuffer(a.f64le) for a in message.value_arrays]
    return values, [np.frombuffer(a.f64le) for a in message.jacobian_arrays]


def check(call: Callable[[bytes], bytes], columns: Columns, jax_run: Any) -> None:
    """chainrule agrees with numpy by hand everywhere, and with JAX's jacfwd at one point and at all."""
    values, entries = answer(call(request_bytes(columns)))
    for ours, theirs in zip([*values, *entries], numpy_jacobian(columns), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    if jax_run is None:
        return
    for ours, theirs in zip(entries, jax_matrix(jax_run(columns)), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    first = {name: column[:1] for name, column in columns.items()}
    one = pb.JacobianRequest(expressions=SYSTEM, point={name: float(c[0]) for name, c in first.items()})
    single = pb.JacobianResponse.FromString(call(one.SerializeToString()))
    theirs_one = [float(column[0]) for column in jax_matrix(jax_run(first))]
    np.testing.assert_allclose(list(single.jacobian), theirs_one, rtol=1e-12, atol=1e-12)


def measure(
    points: int, rounds: int, ports: dict[str, int], echo_port: int, jax_run: Any
) -> dict[str, float]:
    """Medians over alternating rounds of echo, chainrule, numpy and JAX."""
    columns = make_columns(points)
    body = request_bytes(columns)
    figures: dict[str, list[float]] = {name: [] for name in ("echo", "e2e", "server", "numpy", "jax", "cpu")}
    with channel(ports["grpc_port"]) as ours, channel(echo_port) as echo:
        call, bare = raw_method(ours, "Jacobian"), raw_method(echo, "Jacobian")
        check(call, columns, jax_run)  # also compiles and caches the plan
        bare(body)
        for _ in range(rounds):
            batch.time_round(figures, ports["http_port"], (call, bare, body), lambda: numpy_jacobian(columns),
                             None if jax_run is None else lambda: jax_run(columns))  # fmt: skip
    result = {name: median(values) for name, values in figures.items() if values}
    result["floor"] = result["echo"] + result["numpy"]
    result["request_mb"] = len(body) / 1e6
    return result


def run(
    ports: dict[str, int], echo_port: int, points: int, rounds: int
) -> tuple[list[Row], dict[str, object]]:
    """Rows of scenario 8."""
    ms = 1e3
    jax_run = jax_jacobian()
    found = measure(points, rounds, ports, echo_port, jax_run)
    rows = [
        Row("8 batch Jacobians", f"4x4 system, end-to-end, {points:,} points vs echo + numpy floor",
            found["e2e"] * ms, found["floor"] * ms, "ms", 1.3,
            note=f"echo {found['echo'] * ms:.1f} ms, numpy by hand {found['numpy'] * ms:.1f} ms, "
            f"request {found['request_mb']:.1f} MB, client CPU {found['cpu']:.2f}"),
    ]  # fmt: skip
    if jax_run is not None:
        rows.append(Row("8 batch Jacobians", f"4x4 system, server-side compute, {points:,} points vs JAX "
                        "jit(vmap(jacfwd))", found["server"] * ms, found["jax"] * ms, "ms", 1.0,
                        note="chainrule returns the 4 values + 16 partials; JAX the 16 partials; both "
                        "checked equal at one point and at every point"))  # fmt: skip
    return rows, {"jacobian": found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^4 points, 2 rounds")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    with (
        harness.running(chainrule_command(), server_env()) as (_, ports),
        harness.running(echo_command(), server_env()) as (_, echo),
    ):
        rows, _ = run(
            ports, echo["grpc_port"], 10**4 if args.quick else 10**5, 2 if args.quick else args.rounds
        )
    for row in rows:
        print(f"{row.measure}: {row.chainrule:.3f} vs {row.baseline:.3f} {row.unit}, ratio {row.ratio:.2f} "
              f"(target {row.target_text}); {row.note}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
