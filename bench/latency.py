"""Scenario 5: single-point GradientAtPoint, cached: p50 and p99 latency vs the bare echo server.

h2load sends one call at a time on one connection (`-c 1 -m 1`), pinned to its own core with the
server on the other (as in harness.py), and logs every request's time (`--log-file`); rounds
alternate the echo server and chainrule, and the percentiles' medians over rounds are compared.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import harness
from common import Row, chainrule_command, channel, echo_command, median, server_env

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

EXPRESSION = "sin(x)*exp(-y^2/2) + log(1 + z^2)*sqrt(1 + w^2) + x*y*z*w"
METHOD = "/chainrule.v1.DifferentiationService/GradientAtPoint"


GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def percentiles(
    port: int,
    body: Path,
    seconds: int,
    path: str = METHOD,
    headers: tuple[str, ...] = GRPC_HEADERS,
    h1: bool = False,
    connections: int = 1,
) -> tuple[float, float, float, float]:
    """p50 and p99 in microseconds of one h2load run, one call at a time per connection; the
    client's CPU share; requests per second. `h1`: HTTP/1.1 (kept alive) instead of HTTP/2."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "requests.tsv"
        command = harness.pinned(
            harness.CLIENT_CPU,
            ["h2load", "-c", str(connections), "-m", "1", "-D", str(seconds), "--warm-up-time", "1",
             "-d", str(body), *(word for header in headers for word in ("-H", header)),
             *(["--h1"] if h1 else []), f"--log-file={log}", f"http://127.0.0.1:{port}{path}"],
        )  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise RuntimeError(f"h2load failed:\n{output}")
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    # Status 0: the calls in flight when the time was up (one per connection).
    finished = [row for row in rows if row[1] != "0"]
    if len(rows) - len(finished) > connections or any(row[1] != "200" for row in finished):
        raise RuntimeError(f"h2load got statuses {sorted({row[1] for row in rows})} from {path}")
    times = sorted(float(row[2]) for row in finished)
    cut = statistics.quantiles(times, n=100)
    # finished in 4.00s, 12345.67 req/s, 1.23MB/s
    summary = next(line for line in output.splitlines() if line.startswith("finished in"))
    rate = float(summary.replace(",", "").split()[3])
    return cut[49], cut[98], (usage.ru_utime + usage.ru_stime) / (seconds + 1), rate


def run(seconds: int, rounds: int) -> tuple[list[Row], dict[str, object]]:
    """Rows of scenario 5; starts its own pinned servers."""
    request = pb.GradientAtPointRequest(
        expression=EXPRESSION, point={"w": 0.5, "x": 1.0, "y": -0.5, "z": 2.0}
    )
    cpu = harness.SERVER_CPU
    figures: dict[str, list[tuple[float, float, float, float]]] = {"echo": [], "chainrule": []}
    with (
        tempfile.NamedTemporaryFile(suffix=".grpc") as body,
        harness.running(chainrule_command(cpu), server_env()) as (_, ports),
        harness.running(echo_command(cpu), server_env()) as (_, echo),
    ):
        body.write(harness.grpc_frame(request.SerializeToString()))
        body.flush()
        with channel(ports["grpc_port"]) as opened:
            answer = pb_grpc.DifferentiationServiceStub(opened).GradientAtPoint(request)  # fills the caches
        for _ in range(rounds):
            figures["echo"].append(percentiles(echo["grpc_port"], Path(body.name), seconds))
            figures["chainrule"].append(percentiles(ports["grpc_port"], Path(body.name), seconds))
    p50 = {name: median([run[0] for run in runs]) for name, runs in figures.items()}
    p99 = {name: median([run[1] for run in runs]) for name, runs in figures.items()}
    client = max(run[2] for runs in figures.values() for run in runs)
    note = f"h2load -c 1 -m 1, {rounds}x{seconds} s each; h2load CPU ≤ {client:.2f} of its core"
    rows = [
        Row("5 single-point latency", "GradientAtPoint cached, p50 vs echo", p50["chainrule"], p50["echo"],
            "µs", note=note),
        Row("5 single-point latency", "GradientAtPoint cached, p99 vs echo", p99["chainrule"], p99["echo"],
            "µs", note=note),
    ]  # fmt: skip
    pinning = bool(shutil.which("taskset"))
    return rows, {"runs": figures, "gradient": list(answer.gradient), "pinning": pinning}
