"""A real Prometheus scrapes a real chainrule server with the deploy config; figures read back by PromQL.

The scrape config is `deploy/prometheus/prometheus.yml` with its target pointed at the test
server's HTTP port and a short scrape interval. Needs the `prometheus` binary (Debian package
`prometheus`): skipped with the reason when it is missing, except under CI (`CI=true`), where a
missing binary fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from chainrule.server.app import Application
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus")

if PROMETHEUS is None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("prometheus is not installed; CI must install it (apt-get install -y prometheus)")
    pytest.skip("prometheus binary not found (apt-get install -y prometheus)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_config(target: str, folder: Path) -> Path:
    """The deploy config, scraping `target` every 200 ms; its rule files copied along."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(
        {"scrape_interval": "200ms", "scrape_timeout": "200ms", "evaluation_interval": "1s"}
    )
    for rule_file in config.get("rule_files", []):
        shutil.copy(CONFIG.parent / rule_file, folder / rule_file)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "chainrule"]
    job["static_configs"] = [{"targets": [target]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def server() -> AsyncIterator[Application]:
    application = Application(make_settings(), registry=CollectorRegistry())
    await application.start()
    yield application
    await application.stop()


@pytest.fixture
def prometheus(server: Application, tmp_path: Path) -> Iterator[str]:
    assert PROMETHEUS is not None
    port = free_port()
    config = scrape_config(f"127.0.0.1:{server.http_port}", tmp_path)
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        if process.returncode not in (0, -15):
            print((tmp_path / "prometheus.log").read_text())


async def wait_ready(client: httpx.AsyncClient, base: str) -> None:
    for _ in range(300):
        try:
            if (await client.get(f"{base}/-/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("prometheus did not become ready")


async def query(client: httpx.AsyncClient, base: str, promql: str) -> float | None:
    response = await client.get(f"{base}/api/v1/query", params={"query": promql})
    body = response.json()
    assert body["status"] == "success", body
    results = body["data"]["result"]
    return float(results[0]["value"][1]) if results else None


async def eventually(client: httpx.AsyncClient, base: str, promql: str, expected: float) -> None:
    """Poll until Prometheus has scraped a value equal to `expected` (scrapes run every 200 ms)."""
    seen = None
    for _ in range(150):
        seen = await query(client, base, promql)
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{promql}: expected {expected}, last seen {seen}")


async def test_prometheus_reads_cache_hits_and_requests_per_method(
    server: Application, prometheus: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        for _ in range(5):
            await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x^2)"))
        for x in (1.0, 2.0):
            await stub.Evaluate(pb.EvaluateRequest(expression="x^2", point={"x": x}))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x"))

    async with httpx.AsyncClient(timeout=5) as client:
        await wait_ready(client, prometheus)
        await eventually(client, prometheus, 'up{job="chainrule"}', 1)
        await eventually(client, prometheus, 'chainrule_cache_hits_total{cache="differentiate"}', 4)
        await eventually(client, prometheus, 'chainrule_cache_hits_total{cache="evaluate"}', 1)
        await eventually(
            client,
            prometheus,
            'sum(grpc_server_handled_total{grpc_method="Differentiate",grpc_code="OK"})',
            5,
        )
        await eventually(
            client, prometheus, 'sum by (grpc_method) (grpc_server_started_total{grpc_method="Evaluate"})', 2
        )
        await eventually(client, prometheus, 'grpc_server_handled_total{grpc_code="INVALID_ARGUMENT"}', 1)
        await eventually(client, prometheus, "chainrule_points_total", 2)
