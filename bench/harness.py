"""Transport ceiling: chainrule's cached Differentiate vs a bare `grpc.aio` echo server, same client.

The load client is h2load (nghttp2-client, C, event driven) speaking gRPC with a pre-encoded
request body; it runs pinned to its own core (`taskset`) and each server to another, so the
client is never the bottleneck: the harness reports both processes' CPU use to show it.
Rounds alternate echo and chainrule so that machine noise hits both alike; medians are reported.

It also measures the server-side time of a cached vs an uncached Differentiate, from chainrule's
own `grpc_server_handling_seconds` histogram.

    .venv/bin/python bench/harness.py                 # about 30 s
    .venv/bin/python bench/harness.py --quick         # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

# Logging on at INFO (JSON), without the access line of each successful request, so the figures stay
# comparable with the runs before access lines existed (docs/operations.md, CHAINRULE_ACCESS_LOG).
SERVER_LOGGING = {
    "CHAINRULE_LOG_LEVEL": "INFO",
    "CHAINRULE_LOG_FORMAT": "json",
    "CHAINRULE_ACCESS_LOG": "false",
}

ROOT = Path(__file__).resolve().parent.parent
METHOD_PATH = "/chainrule.v1.DifferentiationService/Differentiate"
EXPRESSION = "sin(x^2) * exp(3x) + (3x + 1)^2"
SERVER_CPU, CLIENT_CPU = "0", "1"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadResult:
    server: str
    requests_per_second: float
    succeeded: int
    failed: int
    seconds: float
    server_cpu: float  # CPU seconds per wall second (1.0 = one core saturated)
    client_cpu: float


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: no compression flag, 4-byte big-endian length."""
    return struct.pack(">?I", False, len(message)) + message


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else list(command)


@contextmanager
def running(
    command: Sequence[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    """Start a server with `--ready-file`, wait for its ports, stop it with SIGTERM afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        ready = Path(folder) / "ready.json"
        process = subprocess.Popen([*command, "--ready-file", str(ready)], env=env)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not start")
                time.sleep(0.05)
            yield process, json.loads(ready.read_text())
        finally:
            process.terminate()
            process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def h2load(port: int, body: Path, duration: float, connections: int, streams: int) -> dict[str, float]:
    """Run h2load on its own core; parse its summary; measure its CPU use with wait4."""
    command = pinned(
        CLIENT_CPU,
        [
            "h2load", "-c", str(connections), "-m", str(streams), "-D", f"{int(duration)}",
            "--warm-up-time", "1", "-d", str(body),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://127.0.0.1:{port}{METHOD_PATH}",
        ],
    )  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"h2load failed:\n{output}")
    stats: dict[str, float] = {"client_cpu_seconds": usage.ru_utime + usage.ru_stime}
    for line in output.splitlines():
        if line.startswith("finished in"):
            # finished in 4.00s, 12345.67 req/s, 1.23MB/s
            parts = line.replace(",", "").split()
            stats["seconds"] = float(parts[2].rstrip("s"))
            stats["rps"] = float(parts[3])
        elif line.startswith("requests:"):
            # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            numbers = [int(word) for word in line.replace(",", "").split() if word.isdigit()]
            stats["succeeded"], stats["failed"] = numbers[3], numbers[4]
    return stats


def load(name: str, pid: int, port: int, body: Path, args: argparse.Namespace) -> LoadResult:
    before = cpu_seconds(pid)
    stats = h2load(port, body, args.duration, args.connections, args.streams)
    server_cpu = cpu_seconds(pid) - before
    wall = stats["seconds"] + 1.0  # h2load's warm-up is not in its "finished in"
    return LoadResult(
        name,
        stats["rps"],
        int(stats["succeeded"]),
        int(stats["failed"]),
        stats["seconds"],
        round(server_cpu / wall, 2),
        round(stats["client_cpu_seconds"] / wall, 2),
    )


def scrape(http_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def handling(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[float, float]:
    labels = (
        ("grpc_method", "Differentiate"),
        ("grpc_service", "chainrule.v1.DifferentiationService"),
        ("grpc_type", "unary"),
    )
    return (
        samples.get(("grpc_server_handling_seconds_sum", labels), 0.0),
        samples.get(("grpc_server_handling_seconds_count", labels), 0.0),
    )


def mean_server_seconds(
    stub: pb_grpc.DifferentiationServiceStub, http_port: int, requests: list[str]
) -> float:
    """Mean server-side handling time of `requests`, sent one at a time, from the server's histogram
    (once the calls of an earlier load have ended: those the load left behind end CANCELLED)."""
    samples, settled = scrape(http_port), 0
    for _ in range(100):  # until nothing is in flight and nothing counted for 0.3 s (at most 10 s)
        if settled == 3:
            break
        time.sleep(0.1)
        previous, samples = samples, scrape(http_port)
        in_flight = sum(v for (name, _), v in samples.items() if name == "chainrule_requests_in_flight")
        settled = settled + 1 if not in_flight and handling(samples) == handling(previous) else 0
    total_before, count_before = handling(samples)
    for expression in requests:
        stub.Differentiate(pb.DifferentiateRequest(expression=expression))
    total_after, count_after = handling(scrape(http_port))
    assert count_after - count_before == len(requests)
    return (total_after - total_before) / len(requests)


def cached_vs_uncached(grpc_port: int, http_port: int, distinct: int) -> dict[str, float]:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        # Distinct, realistic expressions: each one misses every cache level.
        cold = [f"sin({k} x^2) * exp({k + 1} x) + ({k} x + 1)^3 / (1 + x^2)" for k in range(2, distinct + 2)]
        uncached = mean_server_seconds(stub, http_port, cold)
        cached = mean_server_seconds(stub, http_port, [cold[0]] * (distinct * 20))
    return {"uncached_seconds": uncached, "cached_seconds": cached, "ratio": cached / uncached}


def main() -> int:
    parser = argparse.ArgumentParser(description="chainrule transport-ceiling benchmark")
    parser.add_argument("--duration", type=int, default=4, help="seconds per h2load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams per connection")
    parser.add_argument("--distinct", type=int, default=20, help="uncached expressions to time")
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.distinct = 1, 1, 5
    if not shutil.which("h2load"):
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2

    # Logging as in every benchmark (SERVER_LOGGING), metrics always on.
    env = {**os.environ, **SERVER_LOGGING}
    chainrule_cmd = pinned(
        SERVER_CPU,
        [
            str(ROOT / ".venv/bin/chainrule"),
            "serve",
            "--workers",
            "1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ],
    )
    echo_cmd = pinned(SERVER_CPU, [sys.executable, str(ROOT / "bench/echo_server.py"), "--port", "0"])
    request = pb.DifferentiateRequest(expression=EXPRESSION)
    results: list[LoadResult] = []
    with (
        tempfile.NamedTemporaryFile(suffix=".grpc") as body,
        running(chainrule_cmd, env) as (chainrule, chainrule_ports),
        running(echo_cmd, env) as (echo, echo_ports),
    ):
        body.write(grpc_frame(request.SerializeToString()))
        body.flush()
        with grpc.insecure_channel(f"127.0.0.1:{chainrule_ports['grpc_port']}") as channel:
            answer = pb_grpc.DifferentiationServiceStub(channel).Differentiate(request)  # fills the cache
        hits_before = scrape(chainrule_ports["http_port"])
        for _ in range(args.rounds):
            results.append(load("echo", echo.pid, echo_ports["grpc_port"], Path(body.name), args))
            results.append(
                load("chainrule", chainrule.pid, chainrule_ports["grpc_port"], Path(body.name), args)
            )
        hits_after = scrape(chainrule_ports["http_port"])
        ratio = cached_vs_uncached(chainrule_ports["grpc_port"], chainrule_ports["http_port"], args.distinct)

    key = ("chainrule_cache_hits_total", (("cache", "differentiate"),))
    hits = hits_after.get(key, 0.0) - hits_before.get(key, 0.0)
    served = sum(r.succeeded for r in results if r.server == "chainrule")
    echo_rps = statistics.median(r.requests_per_second for r in results if r.server == "echo")
    chainrule_rps = statistics.median(r.requests_per_second for r in results if r.server == "chainrule")
    summary = {
        "expression": EXPRESSION,
        "derivative": answer.derivative,
        "runs": [asdict(r) for r in results],
        "echo_rps_median": echo_rps,
        "chainrule_rps_median": chainrule_rps,
        "throughput_ratio": chainrule_rps / echo_rps,
        "cache_hits_during_load": hits,
        "requests_during_load_at_least": served,
        "server_side": ratio,
        "pinning": "taskset" if shutil.which("taskset") else "none",
    }
    print(report(summary, args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


def report(summary: dict[str, object], args: argparse.Namespace) -> str:
    runs = summary["runs"]
    assert isinstance(runs, list)
    server_side = summary["server_side"]
    assert isinstance(server_side, dict)
    lines = [
        f"h2load -c {args.connections} -m {args.streams} -D {args.duration}, "
        f"servers on CPU {SERVER_CPU}, h2load on CPU {CLIENT_CPU} ({summary['pinning']})",
        "",
        "| server | req/s | succeeded | failed | server CPU | client CPU |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['server']} | {r['requests_per_second']:.0f} | {r['succeeded']} | {r['failed']} "
        f"| {r['server_cpu']:.2f} | {r['client_cpu']:.2f} |"
        for r in runs
    ]
    lines += [
        "",
        f"cached Differentiate / echo, requests/s (medians): {summary['throughput_ratio']:.3f}"
        " (target >= 0.8)",
        f"cache hits during load: {summary['cache_hits_during_load']:.0f}",
        f"server-side time, cached {server_side['cached_seconds'] * 1e6:.0f} us vs uncached "
        f"{server_side['uncached_seconds'] * 1e6:.0f} us: ratio {server_side['ratio']:.4f} (target < 0.05)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
