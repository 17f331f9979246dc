"""Scenario 8: how fast a killed symbolic worker is replaced, vs a fresh interpreter doing the same.

The pool forks each replacement from a forkserver that has imported sympy and chainrule already, and
the new worker warms up on a small derivative before it reports ready. The baseline is what a pool
without that forkserver would pay per replacement: a new interpreter that imports the same modules
and does the same warm-up. Workers are killed the way the server kills them, by overrunning a
budget; the replacement's time is the pool's own figure (spawn to ready, `PoolStats.start_seconds`).

    .venv/bin/python bench/restart.py [--rounds N]

tests/server/compute/test_pool.py checks that a killed worker is replaced; this measures how fast.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from common import Row, median

from chainrule.server.compute.pool import ProcessExecutor

BUDGET_SECONDS = 0.2
# What a symbolic worker imports and does before it reports ready (pool._symbolic_worker_main).
COLD_START = "import chainrule.server.compute.pool as pool; pool._warm_up()"


async def replacement_seconds(rounds: int) -> list[float]:
    """Kill the one worker `rounds` times by overrunning its budget; each replacement's start time."""
    pool = ProcessExecutor(1, spares=0, budget_seconds=BUDGET_SECONDS, memory_bytes=0, queue=1)
    await pool.start()  # the first start also boots the forkserver: not counted
    try:
        for round_ in range(rounds):
            try:
                await pool.run(time.sleep, 60)
            except Exception as error:  # the overrun, as expected
                assert "budget" in str(error), error
            while pool.stats.started < round_ + 2:  # wait for the replacement to report ready
                await asyncio.sleep(0.01)
        return pool.stats.start_seconds[1:]
    finally:
        await pool.close()


def cold_start_seconds(rounds: int) -> list[float]:
    """A new interpreter importing sympy and chainrule and warming up, `rounds` times."""
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", COLD_START], check=True)
        timings.append(time.perf_counter() - start)
    return timings


def run(rounds: int) -> tuple[list[Row], dict[str, object]]:
    replaced = asyncio.run(replacement_seconds(rounds))
    cold = cold_start_seconds(rounds)
    details: dict[str, object] = {"replacement_seconds": replaced, "cold_start_seconds": cold}
    row = Row(
        "8 restart",
        "symbolic worker replacement vs a fresh interpreter (imports + warm-up)",
        median(replaced) * 1e3,
        median(cold) * 1e3,
        "ms",
        0.5,
        note=f"medians of {rounds}; the pool forks replacements from a preloaded forkserver",
    )
    return [row], details


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    (row,), details = run(args.rounds)
    print(details)
    print(f"{row.measure}: {row.chainrule:.1f} vs {row.baseline:.1f} ms, ratio {row.ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
