"""Two chainrule servers side by side, one with a wider gRPC stream window: what the round trip for
the rest of a request past the window costs (docs/operations.md, "The gRPC stream window").

    .venv/bin/python bench/window.py --case 2 --points 100000 --calls 300

Calls alternate between the servers (same tree, same process model; only
CHAINRULE_GRPC_STREAM_WINDOW_BYTES differs), medians of each; the request is the same bytes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import batch
from common import channel, raw_method


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=int, default=2, help=f"index into {[c.label for c in batch.CASES]}")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--window", type=int, default=batch.WIDE_WINDOW, help="the wider window, bytes")
    args = parser.parse_args()
    case = batch.CASES[args.case]
    body = batch.request_bytes("GradientAtPoint", case, batch.make_columns(args.points, case.names))
    with (
        batch.chainrule_with_window(None) as (_, default_ports),
        batch.chainrule_with_window(args.window) as (_, wide_ports),
        channel(default_ports["grpc_port"]) as default_channel,
        channel(wide_ports["grpc_port"]) as wide_channel,
    ):
        calls = [raw_method(default_channel, "GradientAtPoint"), raw_method(wide_channel, "GradientAtPoint")]
        times: list[list[float]] = [[], []]
        for _ in range(20):  # compiles and caches the plan on both
            for call in calls:
                call(body)
        for _ in range(args.calls):
            for call, taken in zip(calls, times, strict=True):
                start = time.perf_counter()
                call(body)
                taken.append(time.perf_counter() - start)
    default, widened = (statistics.median(taken) * 1e3 for taken in times)
    print(f"GradientAtPoint of {case.label} at {args.points:,} points ({len(body) / 1e6:.2f} MB in): "
          f"{default:.3f} ms with the default window, {widened:.3f} ms with {args.window:,} bytes: "
          f"{widened / default:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
