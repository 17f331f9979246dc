"""Hardening under load: a bounded mixed load, and cheap-request latency while budgets burn.

The server is the real `chainrule serve --workers 1` (one server process and its symbolic worker
processes) pinned with `taskset` to CPU 0 (its worker processes inherit the pin); this client, an
asyncio gRPC client, pins itself to CPU 1.

1. Idle vs burning: the p99 latency of cheap requests (cached and cold Differentiate, one request
   in flight per connection) with nothing else running, then while other connections keep a request
   burning its whole symbolic budget (`(x+y+z+w)^60`, full simplification). Target: p99 under load
   < 2x the idle p99, and every cheap request within its deadline.
2. Mixed load for `--duration` seconds: cached, cold, hostile (parse errors, limits) and budget
   burners from `--connections` concurrent callers. Every request must get its expected status; the
   only other status allowed is RESOURCE_EXHAUSTED from overload shedding. Nothing may be lost
   (a client-side timeout counts as lost). The RSS of the server and its workers is sampled
   throughout and must stay under `--rss-limit-mb`.

    .venv/bin/python bench/load_test.py                 # about 50 s
    .venv/bin/python bench/load_test.py --quick         # about 15 s
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

SERVER_CPU, CLIENT_CPU = "0", 1
BUDGET_SECONDS = 2.0
CHEAP_DEADLINE = 1.0
OK, EXHAUSTED = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT

CACHED = [pb.DifferentiateRequest(expression=e) for e in ("sin(x^2)", "(3x + 1)^2", "e^(2x)", "sin(cos x)")]
BURNER = pb.DifferentiateRequest(
    expression="(x+y+z+w)^60", wrt=[pb.Wrt(variable="x")], simplification=pb.SIMPLIFICATION_FULL
)
HOSTILE = [
    pb.DifferentiateRequest(expression="__import__('os').system('id')"),
    pb.DifferentiateRequest(expression="9^9^9"),
    pb.DifferentiateRequest(expression="factorial(10^9)"),
    pb.DifferentiateRequest(expression="(" * 300 + "x" + ")" * 300),
    pb.DifferentiateRequest(expression="sin(x)", wrt=[pb.Wrt(variable="x", order=10**6)]),
    pb.DifferentiateRequest(expression="exp(sin(x)*x^x)", wrt=[pb.Wrt(variable="x", order=12)]),
]
_cold = itertools.count(1)


def cold() -> pb.DifferentiateRequest:
    """A new expression each time: misses every cache level and goes to a worker process."""
    n = next(_cold)
    return pb.DifferentiateRequest(expression=f"sin({n}*x)*exp(x/{n + 1}) + x^{n % 7 + 2}")


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def record(self, kind: str, code: grpc.StatusCode, expected: set[grpc.StatusCode], detail: str) -> None:
        self.outcomes[f"{kind}:{code.name}"] += 1
        if code not in expected and code is not EXHAUSTED:
            self.failures.append(f"{kind}: {code.name} {detail[:120]}")


async def call(
    stub: pb_grpc.DifferentiationServiceAsyncStub, request: pb.DifferentiateRequest, timeout: float
) -> tuple[grpc.StatusCode, str, float]:
    start = time.perf_counter()
    try:
        await stub.Differentiate(request, timeout=timeout)
        code, detail = OK, ""
    except grpc.aio.AioRpcError as error:
        code, detail = error.code(), error.details() or ""
    return code, detail, time.perf_counter() - start


async def cheap_latencies(port: int, seconds: float, connections: int) -> tuple[list[float], int]:
    """Cheap requests (3 cached : 1 cold), one in flight per connection; (latencies, over deadline)."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(connections)]
    latencies: list[float] = []
    late = 0
    stop = time.monotonic() + seconds

    async def loop(channel: grpc.aio.Channel, seed: int) -> None:
        nonlocal late
        stub = pb_grpc.DifferentiationServiceStub(channel)
        rng = random.Random(seed)
        while time.monotonic() < stop:
            request = cold() if rng.random() < 0.25 else rng.choice(CACHED)
            code, detail, elapsed = await call(stub, request, CHEAP_DEADLINE)
            if code is not OK:
                late += 1
                print(f"  cheap request failed: {code.name} {detail[:80]}", file=sys.stderr)
            latencies.append(elapsed)
            await asyncio.sleep(0.005)

    await asyncio.gather(*(loop(channel, i) for i, channel in enumerate(channels)))
    for channel in channels:
        await channel.close()
    return latencies, late


async def burners(port: int, count: int, stop: asyncio.Event) -> int:
    """Keep `count` budget burners in flight on their own connections until `stop`; return calls."""
    done = 0

    async def burn() -> None:
        nonlocal done
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DifferentiationServiceStub(channel)
            while not stop.is_set():
                code, detail, _ = await call(stub, BURNER, 30)
                assert code is EXHAUSTED, (code, detail)
                done += 1

    await asyncio.gather(*(burn() for _ in range(count)))
    return done


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def idle_vs_burning(port: int, seconds: float) -> dict[str, float]:
    await cheap_latencies(port, 1.0, 4)  # warm-up
    idle, idle_late = await cheap_latencies(port, seconds, 4)
    stop = asyncio.Event()
    burning = asyncio.ensure_future(burners(port, 1, stop))
    await asyncio.sleep(0.3)
    busy, busy_late = await cheap_latencies(port, seconds, 4)
    stop.set()
    burned = await burning
    return {
        "idle_requests": len(idle),
        "idle_p50_ms": 1000 * statistics.median(idle),
        "idle_p99_ms": 1000 * p99(idle),
        "burning_requests": len(busy),
        "burning_p50_ms": 1000 * statistics.median(busy),
        "burning_p99_ms": 1000 * p99(busy),
        "p99_ratio": p99(busy) / p99(idle),
        "cheap_failed_or_late": idle_late + busy_late,
        "budgets_burned": burned,
    }


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants (the server, its forkserver and workers)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            # Children of every thread: the forkserver is started from a pool thread.
            children = [
                int(child)
                for task in Path(f"/proc/{current}/task").iterdir()
                for child in (task / "children").read_text().split()
            ]
        except OSError:
            continue
        found.append(current)
        pending.extend(children)
    return found


def tree_rss_mb(pid: int) -> float:
    total = 0
    for current in tree_pids(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        # A killed worker not yet reaped (a zombie) has no VmRSS line.
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


async def mixed(port: int, pid: int, seconds: float, connections: int) -> dict[str, object]:
    tally = Tally()
    stop = time.monotonic() + seconds
    rss: list[float] = []
    processes = [0]
    burning = 0

    async def caller(index: int) -> None:
        nonlocal burning
        rng = random.Random(index)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DifferentiationServiceStub(channel)
            while time.monotonic() < stop:
                roll = rng.random()
                if roll < 0.03 and burning < 2:  # at most two burners at once
                    burning += 1
                    code, detail, _ = await call(stub, BURNER, 30)
                    burning -= 1
                    tally.record("burner", code, {EXHAUSTED}, detail)
                elif roll < 0.13:
                    code, detail, _ = await call(stub, rng.choice(HOSTILE), 10)
                    tally.record("hostile", code, {INVALID}, detail)
                elif roll < 0.38:
                    code, detail, elapsed = await call(stub, cold(), 10)
                    tally.record("cold", code, {OK}, detail)
                else:
                    code, detail, elapsed = await call(stub, rng.choice(CACHED), 10)
                    tally.record("cached", code, {OK}, detail)
                    tally.latencies.append(elapsed)

    async def sample() -> None:
        while time.monotonic() < stop:
            rss.append(tree_rss_mb(pid))
            processes[0] = max(processes[0], len(tree_pids(pid)))
            await asyncio.sleep(0.5)

    started = time.monotonic()
    await asyncio.gather(sample(), *(caller(i) for i in range(connections)))
    elapsed = time.monotonic() - started
    total = sum(tally.outcomes.values())
    lost = sum(n for key, n in tally.outcomes.items() if key.endswith(":DEADLINE_EXCEEDED"))
    return {
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_second": round(total / elapsed),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "failed": len(tally.failures),
        "lost": lost,
        "failures": tally.failures[:10],
        "shed": sum(
            n
            for key, n in tally.outcomes.items()
            if key.endswith(":RESOURCE_EXHAUSTED") and not key.startswith("burner:")
        ),
        "processes_max": processes[0],
        "cached_p99_ms": round(1000 * p99(tally.latencies), 2) if len(tally.latencies) > 100 else None,
        "rss_mb_first": round(rss[0]),
        "rss_mb_max": round(max(rss)),
        "rss_mb_last": round(rss[-1]),
    }


async def run(ports: dict[str, int], pid: int, args: argparse.Namespace) -> dict[str, object]:
    latency = await idle_vs_burning(ports["grpc_port"], args.latency_seconds)
    load = await mixed(ports["grpc_port"], pid, args.duration, args.connections)
    return {"latency": latency, "mixed": load}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of mixed load")
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="seconds per latency phase")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rss-limit-mb", type=float, default=1500.0, help="server + workers RSS bound")
    parser.add_argument("--quick", action="store_true", help="5 s of mixed load, 3 s latency phases")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.latency_seconds = 5.0, 3.0
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    env = {
        **os.environ,
        "CHAINRULE_WORKERS": "1",
        "CHAINRULE_SYMBOLIC_BUDGET_SECONDS": str(BUDGET_SECONDS),
        "CHAINRULE_LOG_LEVEL": "ERROR",
    }
    command = harness.pinned(SERVER_CPU, [str(harness.ROOT / ".venv/bin/chainrule"), "serve"])
    command += ["--grpc-port", "0", "--http-port", "0"]
    with harness.running(command, env) as (process, ports):
        figures = asyncio.run(run(ports, process.pid, args))
    latency, load = figures["latency"], figures["mixed"]
    assert isinstance(latency, dict) and isinstance(load, dict)
    checks = {
        "p99 under burn < 2x idle p99": latency["p99_ratio"] < 2.0,
        "every cheap request within its deadline": latency["cheap_failed_or_late"] == 0,
        "no request lost or failed (except shedding)": load["failed"] == 0 and load["lost"] == 0,
        f"RSS under {args.rss_limit_mb:.0f} MB": load["rss_mb_max"] < args.rss_limit_mb,
    }
    figures["checks"] = checks
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
