"""Scenarios 3 and 4: batch Evaluate and batch GradientAtPoint of a 4-variable expression.

Per round, alternating: the bare echo server moving the same bytes (`echo_numeric.py`),
chainrule, hand-written numpy in this process, and (gradients) JAX `jit(vmap(grad(f)))` on the
CPU in float64. chainrule's server-side compute is its `chainrule_stage_seconds{stage="evaluate"}`;
end-to-end is the client's wall time for one call with pre-serialised request bytes. The floor of
an end-to-end call is the echo server's time plus the numpy time. Medians over the rounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import harness
import numpy as np
from common import Row, channel, delta, median, own_cpu_seconds, raw_method, stage, timed

from chainrule.v1 import chainrule_pb2 as pb

EXPRESSION = "sin(x)*exp(-y^2/2) + log(1 + z^2)*sqrt(1 + w^2) + x*y*z*w"
NAMES = ("w", "x", "y", "z")
Columns = dict[str, np.ndarray]


def numpy_value(c: Columns) -> np.ndarray:
    x, y, z, w = c["x"], c["y"], c["z"], c["w"]
    value: np.ndarray = np.sin(x) * np.exp(-(y**2) / 2) + np.log(1 + z**2) * np.sqrt(1 + w**2) + x * y * z * w
    return value


def numpy_gradient(c: Columns) -> tuple[np.ndarray, ...]:
    """Value and partials by hand, sharing subexpressions as a careful programmer would."""
    x, y, z, w = c["x"], c["y"], c["z"], c["w"]
    e, s, q = np.exp(-(y**2) / 2), np.sqrt(1 + w**2), 1 + z**2
    sx, lg, zw, xy = np.sin(x), np.log(q), z * w, x * y
    value = sx * e + lg * s + xy * zw
    return value, lg * w / s + xy * z, np.cos(x) * e + y * zw, -y * sx * e + x * zw, 2 * z / q * s + xy * w


def jax_gradient() -> Callable[..., Any] | None:
    """`jit(vmap(grad(f)))` over the four variables, float64, CPU; None when JAX is not installed."""
    try:
        import jax  # noqa: PLC0415 (a bench-only extra)
        import jax.numpy as jnp  # noqa: PLC0415
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")

    def f(w: Any, x: Any, y: Any, z: Any) -> Any:
        return jnp.sin(x) * jnp.exp(-(y**2) / 2) + jnp.log(1 + z**2) * jnp.sqrt(1 + w**2) + x * y * z * w

    compiled = jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1, 2, 3))))

    def run(c: Columns) -> Any:
        return jax.block_until_ready(compiled(*(c[name] for name in NAMES)))

    return run


def make_columns(points: int, seed: int = 5) -> Columns:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-2.0, 2.0, points) for name in NAMES}


def request_bytes(kind: str, columns: Columns) -> bytes:
    arrays = {name: pb.Array(f64le=column.tobytes()) for name, column in columns.items()}
    if kind == "Evaluate":
        return pb.EvaluateRequest(expression=EXPRESSION, points=arrays).SerializeToString()
    return pb.GradientAtPointRequest(expression=EXPRESSION, points=arrays).SerializeToString()


def check(kind: str, answer: bytes, columns: Columns) -> None:
    """chainrule's answer agrees with the hand-written numpy one (so the race is a fair one)."""
    if kind == "Evaluate":
        got = [np.frombuffer(pb.EvaluateResponse.FromString(answer).values.f64le)]
        want: tuple[np.ndarray, ...] = (numpy_value(columns),)
    else:
        message = pb.GradientAtPointResponse.FromString(answer)
        assert list(message.variables) == list(NAMES)
        got = [np.frombuffer(a.f64le) for a in (message.values, *message.gradients)]
        want = numpy_gradient(columns)
    for ours, theirs in zip(got, want, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def measure(
    kind: str,
    points: int,
    rounds: int,
    ports: dict[str, int],
    echo_port: int,
    jax_run: Any,
    tuned_jax: Any = None,
) -> dict[str, float]:
    """Medians over alternating rounds of echo, chainrule, numpy (and JAX, here and in `tuned_jax`)."""
    columns = make_columns(points)
    body = request_bytes(kind, columns)
    local = numpy_value if kind == "Evaluate" else numpy_gradient
    names = ("echo", "e2e", "server", "numpy", "jax", "jax_tuned", "cpu")
    figures: dict[str, list[float]] = {name: [] for name in names}
    with channel(ports["grpc_port"]) as ours, channel(echo_port) as echo:
        call, bare = raw_method(ours, kind), raw_method(echo, kind)
        check(kind, call(body), columns)  # also compiles and caches the function
        bare(body)
        if jax_run is not None:
            jax_run(columns)  # compiles
        for _ in range(rounds):
            time_round(figures, ports["http_port"], (call, bare, body), lambda: local(columns),
                       None if jax_run is None else lambda: jax_run(columns))  # fmt: skip
            if tuned_jax is not None:
                figures["jax_tuned"].append(tuned_jax.seconds())
    result = {name: median(values) for name, values in figures.items()}
    result["floor"] = result["echo"] + result["numpy"]
    result["request_mb"] = len(body) / 1e6
    return result


def time_round(
    figures: dict[str, list[float]],
    http_port: int,
    calls: tuple[Callable[[bytes], bytes], Callable[[bytes], bytes], bytes],
    local: Callable[[], object],
    jax: Callable[[], object] | None,
) -> None:
    """One round: echo, then chainrule (end to end, its evaluate stage, the client's CPU share), then
    the local baselines; `calls` is (chainrule's call, echo's call, the request bytes)."""
    call, bare, body = calls
    figures["echo"].append(timed(lambda: bare(body)))
    before = harness.scrape(http_port)
    cpu = own_cpu_seconds()
    figures["e2e"].append(timed(lambda: call(body)))
    figures["cpu"].append((own_cpu_seconds() - cpu) / figures["e2e"][-1])
    after = harness.scrape(http_port)
    seconds, count = delta(stage(before, "evaluate"), stage(after, "evaluate"))
    assert count == 1
    figures["server"].append(seconds)
    figures["numpy"].append(timed(local))
    if jax is not None:
        figures["jax"].append(timed(jax))


def measure_chunked(port: int, points: int, chunk_points: int, rounds: int) -> dict[str, float]:
    """A batch past the message limit through the Python client's `chunk_points`: 2 calls in flight
    against 1 at a time (no overlap of the wire and compute), alternating rounds, medians."""
    from chainrule.client import Client  # noqa: PLC0415 (the client package, not the bench's raw calls)

    columns = make_columns(points)
    figures: dict[str, list[float]] = {"one": [], "two": []}
    with Client(f"127.0.0.1:{port}", timeout=600) as client:
        want = client.evaluate(EXPRESSION, points=columns, chunk_points=chunk_points).values
        for _ in range(rounds):
            for key, in_flight in (("one", 1), ("two", 2)):
                figures[key].append(timed(functools.partial(client.evaluate,
                    EXPRESSION, points=columns, chunk_points=chunk_points, in_flight=in_flight)))  # fmt: skip
        got = client.evaluate(EXPRESSION, points=columns, chunk_points=chunk_points, in_flight=2).values
        np.testing.assert_array_equal(got, want)
    return {key: median(values) for key, values in figures.items()}


def run(
    ports: dict[str, int], echo_port: int, eval_points: int, grad_points: tuple[int, ...], rounds: int
) -> tuple[list[Row], dict[str, object]]:
    """Rows of scenarios 3 and 4."""
    ms = 1e3
    evaluation = measure("Evaluate", eval_points, rounds, ports, echo_port, None)
    rows = [
        Row("3 batch evaluation", f"server-side compute, {eval_points:,} points vs hand-written numpy",
            evaluation["server"] * ms, evaluation["numpy"] * ms, "ms", 1.2),
        Row("3 batch evaluation", f"end-to-end, {eval_points:,} points vs echo + numpy floor",
            evaluation["e2e"] * ms, evaluation["floor"] * ms, "ms", 1.3,
            note=f"echo {evaluation['echo'] * ms:.1f} ms, request {evaluation['request_mb']:.0f} MB, "
            f"client CPU {evaluation['cpu']:.2f}"),
    ]  # fmt: skip
    details: dict[str, object] = {"evaluate": evaluation}
    big, chunk = eval_points * 8, eval_points // 4
    chunked = measure_chunked(ports["grpc_port"], big, chunk, max(3, rounds // 3))
    details["chunked"] = chunked
    rows.append(Row("3 batch evaluation", f"past the message limit: {big:,} points in {chunk:,}-point calls, "
                    "2 in flight vs 1 at a time", chunked["two"] * ms, chunked["one"] * ms, "ms", None,
                    note=f"{big * 32 / 2**20:.0f} MiB of f64le columns, over the 64 MiB message limit; "
                    "Client.evaluate(chunk_points=..., in_flight=...)"))  # fmt: skip
    jax_run = jax_gradient()
    for points in grad_points:
        if jax_run is None:
            grad = measure("GradientAtPoint", points, rounds, ports, echo_port, None)
        else:
            from jax_peer import TunedJax  # noqa: PLC0415 (it imports this module)

            with TunedJax(points) as tuned:
                grad = measure("GradientAtPoint", points, rounds, ports, echo_port, jax_run, tuned)
        details[f"gradient_{points}"] = grad
        if jax_run is not None:
            measure_text = f"server-side compute, {points:,} points vs JAX jit(vmap(grad))"
            rows.append(Row("4 batch gradients", measure_text,
                            grad["server"] * ms, grad["jax"] * ms, "ms", 1.0,
                            note=f"chainrule returns value + 4 partials; JAX the 4 partials; "
                            f"numpy by hand {grad['numpy'] * ms:.1f} ms"))  # fmt: skip
            rows.append(Row("4 batch gradients", f"{measure_text}, JAX's malloc tuned like chainrule's",
                            grad["server"] * ms, grad["jax_tuned"] * ms, "ms", None,
                            note="JAX in a child process whose glibc malloc is set "
                            "as chainrule sets its own (jax_peer.py)"))  # fmt: skip
        rows.append(Row("4 batch gradients", f"end-to-end, {points:,} points vs echo + numpy floor",
                        grad["e2e"] * ms, grad["floor"] * ms, "ms", 1.3,
                        note=f"echo {grad['echo'] * ms:.1f} ms, request {grad['request_mb']:.0f} MB, "
                        f"client CPU {grad['cpu']:.2f}"))  # fmt: skip
    return rows, details
