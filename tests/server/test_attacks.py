"""Issue 15's attacks, scaled down through settings, against a real `chainrule serve` process.

Each attack comes from one loopback address (127.0.0.2) while a bystander on another (127.0.0.3)
keeps making cheap requests, cold and cached, and health checks run on both ports. Each test asserts
outcomes: the attack gets a clear status within its budget, every health check and bystander
request succeeds, and the server's peak resident memory stays under the bound its settings give
(`sizing.memory_bound`, without the worker processes, which run under their own limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chainrule.server.config import Settings
from chainrule.server.sizing import memory_bound
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import status_detail
from tests.relay import grpc_channel_from, http_client_from

CHAINRULE = Path(sys.executable).parent / "chainrule"
ATTACKER, BYSTANDER = "127.0.0.2", "127.0.0.3"
MIB = 1024 * 1024
GRACE = 3.0
# The server's bounds, scaled down so that every attack crosses one in a fraction of a second.
ENVIRON = {
    "CHAINRULE_GRACE_SECONDS": str(GRACE),
    "CHAINRULE_SYMBOLIC_WORKERS": "2",
    "CHAINRULE_SYMBOLIC_SPARES": "1",
    "CHAINRULE_SYMBOLIC_BUDGET_SECONDS": "2",
    "CHAINRULE_COMPUTE_THREADS": "2",
    "CHAINRULE_MAX_REQUEST_BYTES": str(8 * MIB),
    "CHAINRULE_REQUEST_BYTES_IN_FLIGHT": str(16 * MIB),
    "CHAINRULE_MAX_RESPONSE_BYTES": str(4 * MIB),
    "CHAINRULE_MAX_WORKING_BYTES": str(16 * MIB),
    "CHAINRULE_NUMERIC_MEMORY_BYTES": str(32 * MIB),
    "CHAINRULE_CACHE_BYTES": str(2 * MIB),
    "CHAINRULE_CACHE_COMPILED_BYTES": str(4 * MIB),
    "CHAINRULE_CALLS_IN_FLIGHT": "64",
    "CHAINRULE_SYMBOLIC_QUEUE": "8",
    "CHAINRULE_LOG_LEVEL": "ERROR",  # every refusal is a warning otherwise
}
SETTINGS = Settings.from_environ(ENVIRON)
RSS_BOUND = sum(memory_bound(SETTINGS).values()) - memory_bound(SETTINGS)["workers"]
VARIABLES = [f"v{index}" for index in range(32)]
ROUNDS = 3  # bystander rounds at least, each a cold and a cached request and two health checks


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int

    def reset_peak_memory(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_memory(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


@contextlib.contextmanager
def serving(folder: Path, environ: Mapping[str, str]) -> Iterator[Server]:
    """`chainrule serve` with `environ`; drained and gone within the grace period, attacks and all."""
    ready = folder / "ready.json"
    command = [str(CHAINRULE), "serve", "--workers", "1", "--grpc-port", "0", "--http-port", "0"]
    process = subprocess.Popen([*command, "--ready-file", str(ready)], env={**os.environ, **environ})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        ports = json.loads(ready.read_text())
        yield Server(process, int(ports["grpc_port"]), int(ports["http_port"]))
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GRACE + 10) == 0
        assert time.monotonic() - started < GRACE + 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("attacks"), ENVIRON) as started:
        yield started


@dataclass
class Bystander:
    """Cheap requests (a new expression each time, then a cached one) and health checks, in a loop."""

    served: int = 0
    failures: list[str] = field(default_factory=list)


async def _bystand(server: Server, record: Bystander, stop: asyncio.Event) -> None:
    """Health on both ports, and a cold and a cached call over each of gRPC and REST, in a loop."""
    health_channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    health = health_pb2_grpc.HealthStub(health_channel)
    async with (
        health_channel,
        grpc_channel_from(server.grpc_port, BYSTANDER) as channel,
        http_client_from(server.http_port, BYSTANDER, timeout=10) as http,
    ):
        stub: pb_grpc.DifferentiationServiceAsyncStub = pb_grpc.DifferentiationServiceStub(channel)
        cached = pb.EvaluateRequest(expression="x^2", point={"x": 3})
        for index in itertools.count():
            checks: list[tuple[str, Awaitable[object]]] = [
                ("grpc health", health.Check(health_pb2.HealthCheckRequest(), timeout=3)),
                ("http health", http.get("/healthz")),
                (
                    "grpc cold",
                    stub.Differentiate(pb.DifferentiateRequest(expression=_cold(index)), timeout=10),
                ),
                ("grpc cached", stub.Evaluate(cached, timeout=10)),
                ("rest cold", http.post("/v1/differentiate", json={"expression": _cold(index + 10_000)})),
                ("rest cached", http.post("/v1/evaluate", json={"expression": "x^2", "point": {"x": 3}})),
            ]
            for name, check in checks:
                try:
                    answer = await check
                    if isinstance(answer, httpx.Response) and answer.status_code != 200:
                        record.failures.append(f"{name}: HTTP {answer.status_code} {answer.text[:200]}")
                except (grpc.aio.AioRpcError, httpx.HTTPError) as error:
                    record.failures.append(f"{name}: {error!r}"[:300])
            record.served += 1
            if stop.is_set() and record.served >= ROUNDS:
                return
            await asyncio.sleep(0.05)


def _cold(index: int) -> str:
    return f"sin({index + 2}*x) * exp(x/{index + 3})"


@contextlib.asynccontextmanager
async def bystander(server: Server, rss_bound: int = RSS_BOUND) -> AsyncIterator[Bystander]:
    """A bystander running for the whole block; its record, and the server's peak resident memory
    against `rss_bound`, are checked when the block ends."""
    record, stop = Bystander(), asyncio.Event()
    server.reset_peak_memory()
    task = asyncio.ensure_future(_bystand(server, record, stop))
    try:
        yield record
    finally:
        stop.set()
        await task
    assert record.failures == [], record.failures[:5]
    peak = server.peak_memory()
    print(f"peak resident memory {peak / MIB:.0f} MiB, bound {rss_bound / MIB:.0f} MiB")
    assert peak <= rss_bound, (peak / MIB, rss_bound / MIB)


@contextlib.asynccontextmanager
async def attacker(server: Server) -> AsyncIterator[pb_grpc.DifferentiationServiceAsyncStub]:
    async with grpc_channel_from(server.grpc_port, ATTACKER) as channel:
        yield pb_grpc.DifferentiationServiceStub(channel)


def f64le(values: np.ndarray) -> pb.Array:
    return pb.Array(f64le=values.astype("<f8").tobytes())


def retry_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo | None:
    return status_detail(error, error_details_pb2.RetryInfo)


def limit_of(error: grpc.aio.AioRpcError) -> str:
    """The declared name of the limit a LIMIT_EXCEEDED names (ErrorInfo metadata `limit`)."""
    info = status_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "LIMIT_EXCEEDED", info
    return info.metadata["limit"]


async def expect(call: Awaitable[object], code: grpc.StatusCode, within: float) -> grpc.aio.AioRpcError:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert time.monotonic() - started < within
    return caught.value


# --- 1. output size -----------------------------------------------------------------------------


async def test_a_reply_too_large_is_refused_before_computing(server: Server) -> None:
    # 16 variables with Hessian: 273 columns; 20,000 points would reply 43 MB (limit 4 MiB).
    names = VARIABLES[:16]
    rng = np.random.default_rng(15)
    points = {name: f64le(rng.uniform(-1, 1, 20_000)) for name in names}
    request = pb.GradientAtPointRequest(expression="+".join(names), points=points, hessian=True)
    async with bystander(server), attacker(server) as stub:
        for _ in range(3):
            error = await expect(
                stub.GradientAtPoint(request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT, 5
            )
            assert limit_of(error) == "response_bytes" and "273 output columns" in str(error.details())
            assert retry_info(error) is None


async def test_a_small_json_body_cannot_ask_for_a_huge_json_reply(server: Server) -> None:
    names = VARIABLES[:16]
    body = {
        "expression": "+".join(names),
        "hessian": True,
        "points": {n: {"values": [0.5] * 2_000} for n in names},
    }
    async with bystander(server), http_client_from(server.http_port, ATTACKER) as http:
        reply = await http.post("/v1/gradient", json=body)
        assert reply.status_code == 400
        assert reply.json()["details"][1]["metadata"]["limit"] == "response_bytes"


# --- 2. compilation in the budget ---------------------------------------------------------------

# Partials, Hessian and common subexpressions of this take many seconds of sympy (issue 15: 14
# factors took 90 s of CPU); 8 factors are enough to overrun a 2 s budget many times over.
COMPILE_BOMB = "*".join(f"sin({'+'.join(VARIABLES)}+{k})" for k in range(1, 9))


async def test_a_costly_compilation_stops_at_its_deadline_and_others_go_on(server: Server) -> None:
    request = pb.GradientAtPointRequest(
        expression=COMPILE_BOMB, point=dict.fromkeys(VARIABLES, 0.1), hessian=True
    )
    async with bystander(server), attacker(server) as stub:
        calls = [stub.GradientAtPoint(request, timeout=1.5) for _ in range(4)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for outcome in outcomes:
            assert isinstance(outcome, grpc.aio.AioRpcError)
            assert outcome.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Without a deadline of its own, the server's budget stops it, and says retrying won't help.
        error = await expect(
            stub.GradientAtPoint(request, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED, 10
        )
        assert "retrying would cost as much again" in str(error.details())
        assert retry_info(error) is None


# --- 3 and 4. caches ----------------------------------------------------------------------------


async def test_repeated_enums_and_long_texts_cannot_grow_the_caches(server: Server) -> None:
    async with bystander(server), attacker(server) as stub:
        huge = pb.DifferentiateRequest(expression="x^2", formats=[pb.OUTPUT_FORMAT_LATEX] * 200_000)
        error = await expect(stub.Differentiate(huge, timeout=10), grpc.StatusCode.INVALID_ARGUMENT, 5)
        assert limit_of(error) == "field_entries"
        for index in range(60):  # distinct 9,000-character expressions, each a cache entry
            text = "+".join(f"x^{index + 2}" for _ in range(1_500))[:9_000].rstrip("+^x")
            request = pb.DifferentiateRequest(expression=text, formats=[pb.OUTPUT_FORMAT_LATEX] * 64)
            with contextlib.suppress(grpc.aio.AioRpcError):  # some are refused: overload, budget
                await stub.Differentiate(request, timeout=10)
    await assert_caches_within_bounds(server)


async def test_many_distinct_plans_stay_within_the_cache_bounds(tmp_path: Path) -> None:
    # A compiled cache of 256 KiB, which 60 expressions' 120 plans (some 5 KB each) overflow: with the
    # module's 4 MiB, 150 expressions' 300 plans (1.4 MB) never reached the bound it checks.
    environ = {**ENVIRON, "CHAINRULE_CACHE_COMPILED_BYTES": str(256 * 1024)}
    with serving(tmp_path, environ) as small:
        async with bystander(small), attacker(small) as stub:
            for index in range(60):
                expression = f"sin({index}*x)*y + x^2/{index + 1}"
                point = {"x": 0.5, "y": 1.0}
                await stub.Evaluate(pb.EvaluateRequest(expression=expression, point=point), timeout=10)
                await stub.GradientAtPoint(
                    pb.GradientAtPointRequest(expression=expression, point=point), timeout=10
                )
        text = await assert_caches_within_bounds(small, Settings.from_environ(environ))
    evicted = 'chainrule_cache_evictions_total{cache="compiled"}'
    assert any(line.startswith(evicted) and float(line.split()[-1]) > 0 for line in text.splitlines()), text


async def assert_caches_within_bounds(server: Server, settings: Settings = SETTINGS) -> str:
    """Every cache within its byte bound, in the server's metrics (returned)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("chainrule_cache_bytes{"):
            name = line.split('cache="')[1].split('"')[0]
            bound = settings.cache_compiled_bytes if name == "compiled" else settings.cache_bytes
            assert float(line.rsplit(" ", 1)[1]) <= bound, line
    return text


# --- 6. huge maps -------------------------------------------------------------------------------


async def test_a_map_of_many_entries_is_refused_and_the_loop_keeps_answering(server: Server) -> None:
    point = {f"k{index}": 1.0 for index in range(300_000)}  # ~6 MB of map entries
    async with bystander(server), attacker(server) as stub:
        for _ in range(3):
            error = await expect(
                stub.Evaluate(pb.EvaluateRequest(expression="x", point=point), timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
                5,
            )
            assert limit_of(error) == "field_entries" and "limit 64" in str(error.details())
    body = json.dumps({"expression": "x", "points": {f"k{i}": {"values": [1.0]} for i in range(100_000)}})
    async with bystander(server), http_client_from(server.http_port, ATTACKER) as http:
        reply = await http.post("/v1/evaluate", content=body, headers={"content-type": "application/json"})
        assert reply.status_code == 400 and "field_entries" in reply.text


# --- 7. fairness --------------------------------------------------------------------------------

SLOW = "(x+y+z+w)^60"  # full simplification: minutes of sympy, always cut at the budget


async def test_one_caller_cannot_take_every_worker(server: Server) -> None:
    async with bystander(server) as record, attacker(server) as stub:
        slow = [
            stub.Differentiate(
                pb.DifferentiateRequest(
                    expression=f"{SLOW} + {index}",
                    wrt=[pb.Wrt(variable="x")],
                    simplification=pb.SIMPLIFICATION_FULL,
                ),
                timeout=30,
            )
            for index in range(24)
        ]
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
        assert record.served >= 2
    codes = {outcome.code() for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)}
    assert codes <= {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert len(outcomes) == 24 and all(isinstance(outcome, grpc.aio.AioRpcError) for outcome in outcomes)


COSTLY_CALLERS = [f"127.0.1.{index}" for index in range(2, 6)]


async def test_many_addresses_sending_full_budget_work_leave_a_worker_to_others(server: Server) -> None:
    # 60 addresses sending a full-budget Series each, over and over, took turns with another caller's
    # cold requests, and 3 of 8 were refused after waiting out their budget (an independent hunt):
    # once their work has cost a worker, such callers together hold all but one.
    numbers = itertools.count(100)

    async def send(address: str) -> grpc.StatusCode:
        request = pb.DifferentiateRequest(
            expression=f"{SLOW} + {next(numbers)}",
            wrt=[pb.Wrt(variable="x")],
            simplification=pb.SIMPLIFICATION_FULL,
        )
        async with grpc_channel_from(server.grpc_port, address) as channel:
            try:
                await pb_grpc.DifferentiationServiceStub(channel).Differentiate(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    for pair in (COSTLY_CALLERS[:2], COSTLY_CALLERS[2:]):  # each address's work costs a worker once
        assert await asyncio.gather(*map(send, pair)) == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    ending = time.monotonic() + 6.0

    async def keep_sending(address: str) -> None:
        while time.monotonic() < ending:
            assert await send(address) == grpc.StatusCode.RESOURCE_EXHAUSTED

    async with bystander(server):
        await asyncio.gather(*map(keep_sending, COSTLY_CALLERS))


# --- 10. overload -------------------------------------------------------------------------------


async def test_overload_is_resource_exhausted_with_a_retry_delay_never_cancelled(server: Server) -> None:
    # Small batches computed on the numeric threads, 600 at once over 10 connections: past the 64
    # calls in flight (one connection alone never has more open: its client queues the rest). Small:
    # grpc itself holds the messages of calls beyond the limit until they are refused, and that is
    # bounded by connections (their limits are the transport's), not by these settings. Each call
    # costs milliseconds of numpy (30 terms at 5,000 points), so the two numeric threads fall behind
    # however slowly a loaded machine lets this client send; a cheap one let them keep up.
    x = f64le(np.linspace(0, 1, 5_000))
    expression = " + ".join(f"sin({k} x)^2" for k in range(1, 31))
    request = pb.EvaluateRequest(expression=expression, points={"x": x})
    async with bystander(server), contextlib.AsyncExitStack() as stack:
        stubs = [await stack.enter_async_context(attacker(server)) for _ in range(10)]
        await stubs[0].Evaluate(request, timeout=10)
        calls = [stub.Evaluate(request, timeout=30) for stub in stubs for _ in range(60)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert refused, "600 calls at once over 10 connections should pass the limit of 64 in flight"
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        info = retry_info(error)
        assert info is not None and info.retry_delay.ToTimedelta().total_seconds() > 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        text = (await http.get("/metrics")).text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("chainrule_overload_rejections_total{")
    )
    assert counted >= len(refused)


async def test_a_burst_on_a_fresh_connection_is_refused_with_a_retry_delay_not_reset(server: Server) -> None:
    # 200 calls opened at once on one new connection, before its client has read the server's
    # SETTINGS: with the stream limit at the 64 calls in flight, grpc reset the excess as
    # REFUSED_STREAM (UNAVAILABLE, uncounted); with room for a burst the call limit refuses them.
    x = f64le(np.linspace(0, 1, 5_000))
    expression = " + ".join(f"cos({k} x)^2" for k in range(1, 31))
    request = pb.EvaluateRequest(expression=expression, points={"x": x})
    # The plan compiled first, on a connection of its own: compiled under the burst, on a loaded
    # machine, it ran out of its time budget once (COMPUTE_BUDGET_EXCEEDED carries no RetryInfo:
    # retrying would not help), which is not what this test is about.
    async with attacker(server) as warm:
        await warm.Evaluate(request, timeout=30)
    async with bystander(server), attacker(server) as stub:
        outcomes = await asyncio.gather(
            *(stub.Evaluate(request, timeout=30) for _ in range(200)), return_exceptions=True
        )
    refused = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert refused, "200 calls at once should pass the limit of 64 in flight"
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert retry_info(error) is not None
