"""Scenario 10: REST over one kept-alive HTTP/1.1 connection, against gRPC and a bare uvicorn echo.

A cached Differentiate, one call at a time on one connection (what a connection pool does per
connection): h2load `--h1 -c 1 -m 1` posts the JSON body to `/v1/differentiate` and logs every
request's time; the same request as a gRPC call (h2load over HTTP/2) and the same JSON reply from
a bare uvicorn app (`echo_http.py`: same uvicorn and h11 protocol, no Starlette, middleware or
metrics) run in alternating rounds, pinned as in latency.py. Before TCP_NODELAY was set on the
listening socket every reply on a kept-alive connection waited for the client's delayed ACK:
about 44 ms instead of about 1 ms (issue 15, item 11); the p50 rows show where it stands now.

    .venv/bin/python bench/rest.py --seconds 3 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

import harness
from common import Row, chainrule_command, median, server_env
from latency import GRPC_HEADERS, percentiles

from chainrule.v1 import chainrule_pb2 as pb

EXPRESSION = harness.EXPRESSION
PATH = "/v1/differentiate"
GRPC_PATH = "/chainrule.v1.DifferentiationService/Differentiate"
JSON_HEADERS = ("content-type: application/json",)
Runs = list[tuple[float, float, float, float]]


def _post(port: int, body: bytes) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: bytes = response.read()
    return answer


def measure(seconds: int, rounds: int, connections: int) -> dict[str, Runs]:
    """Alternating rounds of the uvicorn echo, chainrule's REST and chainrule's gRPC: h2load figures
    on one connection (latency) and on `connections` (throughput, as a connection pool would)."""
    cpu = harness.SERVER_CPU
    figures: dict[str, Runs] = {}
    with tempfile.TemporaryDirectory() as folder:
        json_body, grpc_body, reply = (
            Path(folder, "body.json"),
            Path(folder, "body.grpc"),
            Path(folder, "reply"),
        )
        json_body.write_text(json.dumps({"expression": EXPRESSION}))
        grpc_body.write_bytes(
            harness.grpc_frame(pb.DifferentiateRequest(expression=EXPRESSION).SerializeToString())
        )
        with harness.running(chainrule_command(cpu), server_env()) as (_, ports):
            reply.write_bytes(_post(ports["http_port"], json_body.read_bytes()))  # fills the cache
            echo_command = harness.pinned(
                cpu, [sys.executable, str(harness.ROOT / "bench/echo_http.py"), "--body-file", str(reply)]
            )
            with harness.running(echo_command, server_env()) as (_, echo):
                targets = {
                    "echo": (echo["http_port"], json_body, PATH, JSON_HEADERS, True),
                    "rest": (ports["http_port"], json_body, PATH, JSON_HEADERS, True),
                    "grpc": (ports["grpc_port"], grpc_body, GRPC_PATH, GRPC_HEADERS, False),
                }
                for _ in range(rounds):
                    for name, (port, body, path, headers, h1) in targets.items():
                        for count in (1, connections):
                            figures.setdefault(f"{name} {count}", []).append(
                                percentiles(port, body, seconds, path, headers, h1, count)
                            )
    return figures


def run(seconds: int, rounds: int, connections: int = 4) -> tuple[list[Row], dict[str, object]]:
    """Rows of scenario 10; starts its own pinned servers."""
    figures = measure(seconds, rounds, connections)
    p50 = {name: median([run[0] for run in runs]) for name, runs in figures.items() if name.endswith(" 1")}
    rate = {
        name: median([run[3] for run in runs])
        for name, runs in figures.items()
        if name.endswith(f" {connections}")
    }
    client = max(run[2] for runs in figures.values() for run in runs)
    rest_p50 = p50["rest 1"] / 1e3
    latency = (
        f"h2load --h1 -c 1 -m 1 (gRPC: HTTP/2, -c 1 -m 1), {rounds}x{seconds} s each; h2load CPU "
        f"≤ {client:.2f} of its core; REST p50 {rest_p50:.2f} ms (about 44 ms before TCP_NODELAY)"
    )
    throughput = (
        f"h2load --h1 -c {connections} -m 1 (gRPC: HTTP/2, -c {connections} -m 1), {rounds}x{seconds} s each"
    )
    scenario = "10 REST, kept-alive connections"
    rows = [
        Row(scenario, "cached Differentiate p50 on one connection vs bare uvicorn echo", p50["rest 1"],
            p50["echo 1"], "µs", note=latency),
        Row(scenario, "cached Differentiate p50 on one connection, REST vs gRPC", p50["rest 1"],
            p50["grpc 1"], "µs", note=latency),
        Row(scenario, f"cached Differentiate req/s on {connections} connections vs bare uvicorn echo",
            rate[f"rest {connections}"], rate[f"echo {connections}"], "1/s", higher_is_better=True,
            note=throughput),
        Row(scenario, f"cached Differentiate req/s on {connections} connections, REST vs gRPC",
            rate[f"rest {connections}"], rate[f"grpc {connections}"], "1/s", higher_is_better=True,
            note=throughput),
    ]  # fmt: skip
    return rows, {"runs": figures, "expression": EXPRESSION}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for row in run(args.seconds, args.rounds)[0]:
        print(f"{row.measure}: {row.chainrule:.4g} vs {row.baseline:.4g} {row.unit}, ratio {row.ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
