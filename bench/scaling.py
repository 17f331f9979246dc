"""Multi-process scaling: cached Differentiate throughput with `--workers 1` vs `--workers 2`.

Reuses bench/harness.py (h2load as the load client, the same pre-encoded request, the same
`--ready-file` start-up). Each configuration's server is pinned to as many cores as it has workers;
h2load gets the next core when the machine has one, and otherwise shares the last server core
(the report says which, and the client's CPU use, so a client-bound figure is visible). Many
connections, because SO_REUSEPORT spreads connections, not calls, across workers.

    .venv/bin/python bench/scaling.py            # about 30 s
    .venv/bin/python bench/scaling.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import grpc

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

ROOT = harness.ROOT


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (the supervisor and its workers)."""
    total = harness.cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else ():
        total += tree_cpu_seconds(int(child))
    return total


def cpus_for(workers: int) -> tuple[str, str, bool]:
    """Server cores, the client's core, and whether the client has a core of its own."""
    available = sorted(os.sched_getaffinity(0))
    server = available[:workers]
    if len(available) > workers:
        return ",".join(map(str, server)), str(available[workers]), True
    return ",".join(map(str, server)), str(server[-1]), False


def measure(workers: int, body: Path, args: argparse.Namespace) -> dict[str, object]:
    server_cpus, client_cpu, own_core = cpus_for(workers)
    harness.CLIENT_CPU = client_cpu
    command = harness.pinned(
        server_cpus,
        [
            str(ROOT / ".venv/bin/chainrule"),
            "serve",
            "--workers",
            str(workers),
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ],
    )
    env = {**os.environ, "CHAINRULE_LOG_LEVEL": "INFO", "CHAINRULE_LOG_FORMAT": "json"}
    runs = []
    with harness.running(command, env) as (process, ports):
        warm(ports["grpc_port"], workers)
        for _ in range(args.rounds):
            before = tree_cpu_seconds(process.pid)
            stats = harness.h2load(ports["grpc_port"], body, args.duration, args.connections, args.streams)
            wall = stats["seconds"] + 1.0
            runs.append(
                {
                    "rps": stats["rps"],
                    "failed": stats["failed"],
                    "server_cpu": round((tree_cpu_seconds(process.pid) - before) / wall, 2),
                    "client_cpu": round(stats["client_cpu_seconds"] / wall, 2),
                }
            )
    return {
        "workers": workers,
        "server_cpus": server_cpus,
        "client_cpu": client_cpu,
        "client_has_own_core": own_core,
        "rps_median": statistics.median(float(str(run["rps"])) for run in runs),
        "runs": runs,
    }


def warm(port: int, workers: int) -> None:
    """Fill every worker's cache: one call per connection, over enough connections to reach all."""
    request = pb.DifferentiateRequest(expression=harness.EXPRESSION)
    for _ in range(8 * workers):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            pb_grpc.DifferentiationServiceStub(channel).Differentiate(request, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description="chainrule --workers scaling benchmark")
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="spread over workers by the kernel")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 1, 1
    if not shutil.which("h2load"):
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    request = pb.DifferentiateRequest(expression=harness.EXPRESSION)
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        body.write(harness.grpc_frame(request.SerializeToString()))
        body.flush()
        results = [measure(workers, Path(body.name), args) for workers in (1, 2)]
    one, two = (float(str(r["rps_median"])) for r in results)
    summary = {"expression": harness.EXPRESSION, "results": results, "speedup_2_vs_1": round(two / one, 2)}
    for result in results:
        shared = "" if result["client_has_own_core"] else ", shared"
        print(
            f"--workers {result['workers']}: {result['rps_median']:.0f} req/s "
            f"(server cores {result['server_cpus']}, client core {result['client_cpu']}{shared}) "
            f"runs {json.dumps(result['runs'])}"
        )
    print(f"speed-up 2 vs 1 workers: {summary['speedup_2_vs_1']}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
