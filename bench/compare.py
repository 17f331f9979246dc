"""Two service trees side by side on one batch scenario: what a change to the hot path is worth.

Starts the echo floor and one `chainrule serve` per tree (`--before DIR`: a copy of an older
`service/` folder, put first on PYTHONPATH; the other server runs this checkout), then alternates
rounds of echo, before, after and the hand-written numpy, and prints the medians and each
server's ratio to the floor, all from one run:

    git archive HEAD~1 service | tar -x -C /tmp/before
    .venv/bin/python bench/compare.py --before /tmp/before/service --kind Evaluate --points 1000000
    .venv/bin/python bench/compare.py --before /tmp/before/service --kind Jacobian --points 100000

`--kind Jacobian` races scenario 8's 4x4 system (`jacobian.py`; `--case` does not apply).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import harness
import jacobian
from batch import CASES, check, make_columns, request_bytes
from common import (
    chainrule_command,
    channel,
    delta,
    echo_command,
    median,
    raw_method,
    server_env,
    stage,
    timed,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older tree's service/ folder")
    parser.add_argument("--kind", choices=("Evaluate", "GradientAtPoint", "Jacobian"), default="Evaluate")
    parser.add_argument("--case", type=int, default=0, help=f"index into {[c.label for c in CASES]}")
    parser.add_argument("--points", type=int, default=10**6)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    columns, body, local, checked, label = _scenario(args.kind, args.case, args.points)
    path = os.pathsep.join([str(args.before), os.environ.get("PYTHONPATH", "")])
    older = {**server_env(), "PYTHONPATH": path}
    with ExitStack() as stack:
        _, echo = stack.enter_context(harness.running(echo_command(), server_env()))
        servers = {
            "before": stack.enter_context(harness.running(chainrule_command(), older))[1],
            "after": stack.enter_context(harness.running(chainrule_command(), server_env()))[1],
        }
        bare = raw_method(stack.enter_context(channel(echo["grpc_port"])), args.kind)
        bare(body)
        calls = {}
        for name, ports in servers.items():
            calls[name] = raw_method(stack.enter_context(channel(ports["grpc_port"])), args.kind)
            checked(calls[name](body), columns)
        figures: dict[str, list[float]] = {"echo": [], "numpy": []}
        for _ in range(args.rounds):
            figures["echo"].append(timed(lambda: bare(body)))
            for name, call in calls.items():
                before = harness.scrape(servers[name]["http_port"])
                figures.setdefault(name, []).append(timed(lambda c=call: c(body)))  # type: ignore[misc]
                after = harness.scrape(servers[name]["http_port"])
                figures.setdefault(f"{name} server-side", []).append(
                    delta(stage(before, "evaluate"), stage(after, "evaluate"))[0]
                )
            figures["numpy"].append(timed(lambda: local(columns)))
    found = {name: median(values) * 1e3 for name, values in figures.items()}
    floor = found["echo"] + found["numpy"]
    print(f"{args.kind} {args.points:,} points, {label}, {args.rounds} rounds (medians, ms):")
    print(f"  floor {floor:.2f} = echo {found['echo']:.2f} + numpy {found['numpy']:.2f}")
    for name in servers:
        print(f"  {name}: {found[name]:.2f} ({found[name] / floor:.3f} x floor), "
              f"server-side compute {found[f'{name} server-side']:.2f}")  # fmt: skip
    print(f"  after / before: {found['after'] / found['before']:.3f}")
    return 0


def _scenario(
    kind: str, index: int, points: int
) -> tuple[Any, bytes, Callable[[Any], Any], Callable[..., None], str]:
    """The columns, request bytes, numpy by hand, answer check and label of the raced scenario."""
    if kind == "Jacobian":
        columns = jacobian.make_columns(points)

        def check_jacobian(answer: bytes, c: Any) -> None:
            jacobian.check(lambda _: answer, c, None)

        return columns, jacobian.request_bytes(columns), jacobian.numpy_jacobian, check_jacobian, "4x4 system"
    case = CASES[index]
    columns = make_columns(points, case.names)
    local = case.numpy_value if kind == "Evaluate" else case.gradient
    return (
        columns,
        request_bytes(kind, case, columns),
        local,
        functools.partial(check, kind, case),
        case.label,
    )


if __name__ == "__main__":
    raise SystemExit(main())
