"""Chunked Evaluate through the Python client: slice sizes against calls in flight, one server.

    .venv/bin/python bench/chunking.py [--points 4000000] [--rounds 3]

Prints, per slice size, the median seconds of one whole batch with 1, 2 and 3 calls in flight
(bench/README.md, "Batches past the message limit").
"""

from __future__ import annotations

import argparse
import statistics
import time

import batch
import harness
from common import chainrule_command, server_env

from chainrule.client import Client

SLICES = (125_000, 250_000, 500_000, 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    columns = batch.make_columns(args.points)
    with (
        harness.running(chainrule_command(), server_env()) as (_, ports),
        Client(f"127.0.0.1:{ports['grpc_port']}", timeout=600) as client,
    ):
        client.evaluate(batch.EXPRESSION, points=columns, chunk_points=SLICES[-1])  # compiles
        for chunk in SLICES:
            seconds: dict[int, list[float]] = {1: [], 2: [], 3: []}
            for _ in range(args.rounds):
                for in_flight, times in seconds.items():
                    started = time.perf_counter()
                    client.evaluate(batch.EXPRESSION, points=columns, chunk_points=chunk, in_flight=in_flight)
                    times.append(time.perf_counter() - started)
            medians = [f"{k} in flight {statistics.median(v) * 1e3:.0f} ms" for k, v in seconds.items()]
            print(f"{chunk:>9,}-point slices: {', '.join(medians)}", flush=True)


if __name__ == "__main__":
    main()
