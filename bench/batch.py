"""Scenarios 3 and 4: batch Evaluate and batch GradientAtPoint, for expressions of different shapes.

Per round, alternating: the bare echo server moving the same bytes (`echo_numeric.py`: the request's
bytes in, the reply's bytes out, pre-serialised on both sides), chainrule, hand-written numpy in this
process, and (gradients of the headline expression) JAX `jit(vmap(grad(f)))` on the CPU in float64.
chainrule's server-side compute is its `chainrule_stage_seconds{stage="evaluate"}`; end-to-end is
the client's wall time for one call with pre-serialised request bytes. The floor of an end-to-end
call is the echo server's time plus the numpy time. Medians over the rounds.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from subprocess import Popen
from typing import Any

import harness
import numpy as np
from common import (
    Row,
    chainrule_command,
    channel,
    delta,
    echo_command,
    median,
    own_cpu_seconds,
    raw_method,
    server_env,
    stage,
    timed,
)

from chainrule.v1 import chainrule_pb2 as pb

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    """An expression, its value written once for numpy and JAX (`xp`), and its gradient by hand."""

    label: str
    expression: str
    names: tuple[str, ...]  # sorted: the order of chainrule's partials
    value: Callable[[Any, Columns], Any]
    gradient: Callable[[Columns], tuple[np.ndarray, ...]]  # value, then the partials by `names`

    def numpy_value(self, c: Columns) -> np.ndarray:
        result: np.ndarray = self.value(np, c)
        return result


def _neuron(xp: Any, c: Columns) -> Any:
    b, w, x, y = c["b"], c["w"], c["x"], c["y"]
    return xp.tanh(w * x + b) ** 2 * xp.sin(x * y) / (1 + x**2 + y**2)


def _neuron_gradient(c: Columns) -> tuple[np.ndarray, ...]:
    """Value and partials by hand, sharing subexpressions as a careful programmer would."""
    b, w, x, y = c["b"], c["w"], c["x"], c["y"]
    t, xy = np.tanh(w * x + b), x * y
    s, co, r = np.sin(xy), np.cos(xy), 1 / (1 + x**2 + y**2)
    u, sr = t * t * r, s * r
    db = 2 * t * (1 - t * t) * sr
    return u * s, db, x * db, w * db + u * (y * co - 2 * x * sr), u * (x * co - 2 * y * sr)


def _mixed(xp: Any, c: Columns) -> Any:
    x, y, z, w = c["x"], c["y"], c["z"], c["w"]
    return xp.sin(x) * xp.exp(-(y**2) / 2) + xp.log(1 + z**2) * xp.sqrt(1 + w**2) + x * y * z * w


def _mixed_gradient(c: Columns) -> tuple[np.ndarray, ...]:
    x, y, z, w = c["x"], c["y"], c["z"], c["w"]
    e, s, q = np.exp(-(y**2) / 2), np.sqrt(1 + w**2), 1 + z**2
    sx, lg, zw, xy = np.sin(x), np.log(q), z * w, x * y
    value = sx * e + lg * s + xy * zw
    return value, lg * w / s + xy * z, np.cos(x) * e + y * zw, -y * sx * e + x * zw, 2 * z / q * s + xy * w


def _cubic(xp: Any, c: Columns) -> Any:
    x = c["x"]
    return x * x * x - 2 * x + 1


def _cubic_gradient(c: Columns) -> tuple[np.ndarray, ...]:
    x = c["x"]
    x2 = x * x
    return x2 * x - 2 * x + 1, 3 * x2 - 2


_NORM_NAMES = tuple(f"x{index}" for index in range(6))


def _norm(xp: Any, c: Columns) -> Any:
    return xp.sqrt(sum(c[name] ** 2 for name in _NORM_NAMES))


def _norm_gradient(c: Columns) -> tuple[np.ndarray, ...]:
    value = np.sqrt(sum(c[name] * c[name] for name in _NORM_NAMES))
    inverse = 1 / value
    return value, *(c[name] * inverse for name in _NORM_NAMES)


# The headline expression first (issue 15's); then the wire-heavy shapes: one column in and out of
# cheap arithmetic, and six columns in of cheap arithmetic.
NEURON = Case(
    "tanh(w*x + b)^2*sin(x*y)/(1 + x^2 + y^2)",
    "tanh(w*x + b)^2*sin(x*y)/(1 + x^2 + y^2)",
    ("b", "w", "x", "y"),
    _neuron,
    _neuron_gradient,
)
CASES = (
    NEURON,
    Case(
        "4 variables: sin, exp, log, sqrt",
        "sin(x)*exp(-y^2/2) + log(1 + z^2)*sqrt(1 + w^2) + x*y*z*w",
        ("w", "x", "y", "z"),
        _mixed,
        _mixed_gradient,
    ),
    CUBIC := Case("1 variable: x^3 - 2*x + 1", "x^3 - 2*x + 1", ("x",), _cubic, _cubic_gradient),
    Case(
        "6 variables: sqrt(x0^2 + ... + x5^2)",
        "sqrt(" + " + ".join(f"{name}^2" for name in _NORM_NAMES) + ")",
        _NORM_NAMES,
        _norm,
        _norm_gradient,
    ),
)
BY_EXPRESSION = {case.expression: case for case in CASES}
# What the chunked row and chunking.py evaluate.
EXPRESSION = NEURON.expression


def jax_gradient(case: Case) -> Callable[[Columns], Any] | None:
    """`jit(vmap(grad(f)))` over the case's variables, float64, CPU; None when JAX is not installed."""
    try:
        import jax  # noqa: PLC0415 (a bench-only extra)
        import jax.numpy as jnp  # noqa: PLC0415
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")

    def f(*args: Any) -> Any:
        return case.value(jnp, dict(zip(case.names, args, strict=True)))

    compiled = jax.jit(jax.vmap(jax.grad(f, argnums=tuple(range(len(case.names))))))

    def run(c: Columns) -> Any:
        return jax.block_until_ready(compiled(*(c[name] for name in case.names)))

    return run


def make_columns(points: int, names: tuple[str, ...] = NEURON.names, seed: int = 5) -> Columns:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-2.0, 2.0, points) for name in names}


def request_bytes(kind: str, case: Case, columns: Columns) -> bytes:
    arrays = {name: pb.Array(f64le=column.tobytes()) for name, column in columns.items()}
    if kind == "Evaluate":
        return pb.EvaluateRequest(expression=case.expression, points=arrays).SerializeToString()
    return pb.GradientAtPointRequest(expression=case.expression, points=arrays).SerializeToString()


def check(kind: str, case: Case, answer: bytes, columns: Columns) -> None:
    """chainrule's answer agrees with the hand-written numpy one (so the race is a fair one)."""
    if kind == "Evaluate":
        got = [np.frombuffer(pb.EvaluateResponse.FromString(answer).values.f64le)]
        want: tuple[np.ndarray, ...] = (case.numpy_value(columns),)
    else:
        message = pb.GradientAtPointResponse.FromString(answer)
        assert list(message.variables) == list(case.names)
        got = [np.frombuffer(a.f64le) for a in (message.values, *message.gradients)]
        want = case.gradient(columns)
    for ours, theirs in zip(got, want, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def measure(
    kind: str,
    case: Case,
    points: int,
    rounds: int,
    ports: dict[str, int],
    echo_port: int,
    jax_run: Any = None,
    tuned_jax: Any = None,
) -> dict[str, float]:
    """Medians over alternating rounds of echo, chainrule, numpy (and JAX, here and in `tuned_jax`)."""
    columns = make_columns(points, case.names)
    body = request_bytes(kind, case, columns)
    local = case.numpy_value if kind == "Evaluate" else case.gradient
    names = ("echo", "e2e", "server", "numpy", "jax", "jax_tuned", "cpu")
    figures: dict[str, list[float]] = {name: [] for name in names}
    with channel(ports["grpc_port"]) as ours, channel(echo_port) as echo:
        call, bare = raw_method(ours, kind), raw_method(echo, kind)
        check(kind, case, call(body), columns)  # also compiles and caches the function
        bare(body)  # the echo server serialises its reply to this request once, here
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


def _end_to_end(scenario: str, case: Case, points: int, found: dict[str, float]) -> Row:
    ms = 1e3
    return Row(scenario, f"end-to-end, {points:,} points vs echo + numpy floor: {case.label}",
               found["e2e"] * ms, found["floor"] * ms, "ms", 1.2,
               note=f"echo {found['echo'] * ms:.1f} ms (request {found['request_mb']:.1f} MB in, "
               f"the reply's bytes out), numpy {found['numpy'] * ms:.1f} ms, server-side compute "
               f"{found['server'] * ms:.1f} ms, client CPU {found['cpu']:.2f}")  # fmt: skip


def run(
    ports: dict[str, int], echo_port: int, eval_points: int, grad_points: tuple[int, ...], rounds: int
) -> tuple[list[Row], dict[str, object]]:
    """Rows of scenarios 3 and 4: the headline expression's in full, the other shapes end to end."""
    ms = 1e3
    rows: list[Row] = []
    details: dict[str, object] = {}
    for case in CASES:
        evaluation = measure("Evaluate", case, eval_points, rounds, ports, echo_port)
        details[f"evaluate {case.label}"] = evaluation
        if case is NEURON:
            measure_text = f"server-side compute, {eval_points:,} points vs hand-written numpy: {case.label}"
            rows.append(Row("3 batch evaluation", measure_text,
                            evaluation["server"] * ms, evaluation["numpy"] * ms, "ms", 1.2))  # fmt: skip
        rows.append(_end_to_end("3 batch evaluation", case, eval_points, evaluation))
    big, chunk = eval_points * 8, eval_points // 4
    chunked = measure_chunked(ports["grpc_port"], big, chunk, max(3, rounds // 3))
    details["chunked"] = chunked
    rows.append(Row("3 batch evaluation", f"past the message limit: {big:,} points in {chunk:,}-point calls, "
                    "2 in flight vs 1 at a time", chunked["two"] * ms, chunked["one"] * ms, "ms", None,
                    note=f"{big * 32 / 2**20:.0f} MiB of f64le columns, over the 64 MiB message limit; "
                    "Client.evaluate(chunk_points=..., in_flight=...)"))  # fmt: skip
    for points in grad_points:
        rows += _gradients(points, grad_points[0], rounds, ports, echo_port, details)
    return rows, details


def _gradients(
    points: int, smallest: int, rounds: int, ports: dict[str, int], echo_port: int, details: dict[str, object]
) -> list[Row]:
    """Scenario 4 at `points`: the headline expression against JAX, every shape end to end at `smallest`."""
    ms = 1e3
    rows: list[Row] = []
    jax_run = jax_gradient(NEURON)
    for case in CASES if points == smallest else (NEURON,):
        if case is not NEURON or jax_run is None:
            grad = measure("GradientAtPoint", case, points, rounds, ports, echo_port)
        else:
            from jax_peer import TunedJax  # noqa: PLC0415 (it imports this module)

            with TunedJax(points) as tuned:
                grad = measure("GradientAtPoint", case, points, rounds, ports, echo_port, jax_run, tuned)
            measure_text = f"server-side compute, {points:,} points vs JAX jit(vmap(grad)): {case.label}"
            rows.append(Row("4 batch gradients", measure_text,
                            grad["server"] * ms, grad["jax"] * ms, "ms", 1.0,
                            note=f"chainrule returns value + 4 partials; JAX the 4 partials; "
                            f"numpy by hand {grad['numpy'] * ms:.1f} ms"))  # fmt: skip
            rows.append(Row("4 batch gradients", f"{measure_text}, JAX's malloc tuned like chainrule's",
                            grad["server"] * ms, grad["jax_tuned"] * ms, "ms", None,
                            note="JAX in a child process whose glibc malloc is set "
                            "as chainrule sets its own (jax_peer.py)"))  # fmt: skip
        details[f"gradient_{points} {case.label}"] = grad
        rows.append(_end_to_end("4 batch gradients", case, points, grad))
        if case is CUBIC and points == smallest:
            wide = measure_with_window(case, points, rounds, echo_port, WIDE_WINDOW)
            details[f"gradient_{points} {case.label}, wide window"] = wide
            row = _end_to_end("4 batch gradients", case, points, wide)
            rows.append(dataclasses.replace(row, target=None,
                measure=f"{row.measure}, GRPC_STREAM_WINDOW_BYTES={WIDE_WINDOW >> 20} MiB"))  # fmt: skip
    return rows


# A request past the stream window (64 KiB by default) waits a round trip for the rest once its
# handler reads it; with a window over the request's size it arrives at once (docs/operations.md).
WIDE_WINDOW = 1 << 20


def chainrule_with_window(window: int | None) -> AbstractContextManager[tuple[Popen[bytes], dict[str, int]]]:
    """A chainrule server of its own (`harness.running`) with stream window `window` (None: the default)."""
    settings = {} if window is None else {"grpc_stream_window_bytes": str(window)}
    return harness.running(chainrule_command(), server_env(**settings))


def measure_with_window(
    case: Case, points: int, rounds: int, echo_port: int, window: int
) -> dict[str, float]:
    """`measure` of GradientAtPoint against a chainrule server of its own whose stream window is `window`."""
    with chainrule_with_window(window) as (_, ports):
        return measure("GradientAtPoint", case, points, rounds, ports, echo_port)


def main() -> int:
    """One case, one kind, end to end against the echo floor: for iterating on the batch path."""
    import argparse  # noqa: PLC0415 (only this entry point)

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--kind", choices=("Evaluate", "GradientAtPoint"), default="Evaluate")
    parser.add_argument("--case", type=int, default=0, help=f"index into {[c.label for c in CASES]}")
    parser.add_argument("--points", type=int, default=10**6)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--window", type=int, help="the server's CHAINRULE_GRPC_STREAM_WINDOW_BYTES")
    args = parser.parse_args()
    case = CASES[args.case]
    with (
        chainrule_with_window(args.window) as (_, ports),
        harness.running(echo_command(), server_env()) as (_, echo),
    ):
        found = measure(args.kind, case, args.points, args.rounds, ports, echo["grpc_port"])
    row = _end_to_end(args.kind, case, args.points, found)
    print(f"{row.measure}: {row.chainrule:.2f} vs {row.baseline:.2f} ms, ratio {row.ratio:.3f}; {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
