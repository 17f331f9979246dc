"""Operations against real servers: health, reflection, and a SIGTERM drain of `chainrule serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chainrule.server.app import Application
from chainrule.server.transport.grpc_server import SERVICE_NAME
from chainrule.server.transport.instrumentation import REQUEST_ID_KEY
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CHAINRULE = Path(sys.executable).parent / "chainrule"


async def test_health_answers_serving(app: Application, channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == SERVING, service


async def test_reflection_lists_the_service(channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in reflection.ServerReflectionInfo(iter([request])):
        names = {service.name for service in response.list_services_response.service}
        break
    assert SERVICE_NAME in names
    assert "grpc.health.v1.Health" in names


# --- the real command, drained by SIGTERM ---------------------------------------------------------


class Served:
    """A `chainrule serve` subprocess on free ports."""

    def __init__(self, process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
        self.process = process
        self.grpc_port = ports["grpc_port"]
        self.http_port = ports["http_port"]

    async def sample(self, name: str) -> float:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.http_port}/metrics")).text
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
        return values[0] if values else 0.0


# Each takes about 1.7 s of sympy.simplify alone (six at once on two cores: about 5 s), so all are
# seen in flight by /metrics (exposed at most every quarter second) and still running at SIGTERM.
# Calls of a few hundred milliseconds could end between two scrapes.
SLOW = [f"(x + y + z + w)^17 + {k}" for k in range(6)]
X = [pb.Wrt(variable="x")]
# The drain is what these tests check, not capacity: one symbolic worker per call (none waits in the
# queue) and a compute budget as long as the grace, so on a loaded 2-core machine no call runs out
# of either before the drain ends (with the default 2 workers and 5 s, the last of six full
# simplifications sometimes did: RESOURCE_EXHAUSTED).
GRACE_SECONDS = 30


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    ready = tmp_path / "ready.json"
    env = {
        **os.environ,
        "CHAINRULE_GRACE_SECONDS": str(GRACE_SECONDS),
        "CHAINRULE_SYMBOLIC_BUDGET_SECONDS": str(GRACE_SECONDS),
        "CHAINRULE_SYMBOLIC_WORKERS": str(len(SLOW)),
        "CHAINRULE_COMPUTE_THREADS": "4",
    }
    process = subprocess.Popen(
        [
            str(CHAINRULE),
            "serve",
            "--workers",
            "1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--ready-file",
            str(ready),
        ],
        env=env,
    )
    try:
        for _ in range(600):
            if ready.exists() or process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert ready.exists(), "chainrule serve did not become ready"
        yield Served(process, json.loads(ready.read_text()))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_sigterm_drains_calls_in_flight(served: Served) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        )
        assert (await health.read()).status == SERVING
        calls = [
            stub.Differentiate(
                pb.DifferentiateRequest(expression=text, wrt=X, simplification=pb.SIMPLIFICATION_FULL),
                metadata=((REQUEST_ID_KEY, f"drain-{index}"),),
            )
            for index, text in enumerate(SLOW)
        ]
        for _ in range(200):  # until the server has accepted every call
            if await served.sample("chainrule_requests_in_flight") == len(SLOW):
                break
            await asyncio.sleep(0.01)
        assert await served.sample("chainrule_requests_in_flight") == len(SLOW)

        served.process.send_signal(signal.SIGTERM)
        assert (await health.read()).status == NOT_SERVING
        health.cancel()
        responses = await asyncio.gather(*calls)
        assert all(response.derivative for response in responses)
        assert [dict(await call.trailing_metadata())[REQUEST_ID_KEY] for call in calls] == [
            f"drain-{index}" for index in range(len(SLOW))
        ]
    assert await asyncio.to_thread(served.process.wait, 2 * GRACE_SECONDS) == 0


async def test_new_calls_are_refused_while_draining(served: Served) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        )
        assert (await health.read()).status == SERVING
        slow = stub.Differentiate(
            pb.DifferentiateRequest(expression=SLOW[-1], wrt=X, simplification=pb.SIMPLIFICATION_FULL)
        )
        for _ in range(200):
            if await served.sample("chainrule_requests_in_flight") == 1:
                break
            await asyncio.sleep(0.01)
        served.process.send_signal(signal.SIGTERM)
        # Wait for the drain to begin (not a fixed sleep: a loaded machine may take longer to
        # handle the signal), then for the refusal: the server stops accepting right after it
        # reports NOT_SERVING. A call that slips in between is answered; one that meets the
        # listener closing is CANCELLED by grpc, never served: try again.
        assert (await health.read()).status == NOT_SERVING
        health.cancel()
        code = None
        for _ in range(100):
            try:
                await stub.Differentiate(pb.DifferentiateRequest(expression="x^2"), timeout=5)
            except grpc.aio.AioRpcError as refused:
                code = refused.code()
                if code != grpc.StatusCode.CANCELLED:
                    break
            await asyncio.sleep(0.05)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert (await slow).derivative
    assert await asyncio.to_thread(served.process.wait, 2 * GRACE_SECONDS) == 0
