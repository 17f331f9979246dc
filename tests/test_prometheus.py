"""A real Prometheus scrapes a real chainrule server with the deploy config; figures read back by PromQL.

Needs the `prometheus` binary (Debian package `prometheus`); tests/prometheus_server.py says how
it runs and when its absence skips or fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from chainrule.server.app import Application
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests import prometheus_server
from tests.conftest import make_settings
from tests.prometheus_server import eventually, wait_ready

prometheus_server.require()


@pytest.fixture
async def server() -> AsyncIterator[Application]:
    application = Application(make_settings(), registry=CollectorRegistry())
    await application.start()
    yield application
    await application.stop()


@pytest.fixture
def prometheus(server: Application, tmp_path: Path) -> Iterator[str]:
    with prometheus_server.running(f"127.0.0.1:{server.http_port}", tmp_path) as base:
        yield base


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
