"""OpenTelemetry tracing against a real server: the caller's trace continues on both transports, with
a span per stage of work (worker processes included), and log lines carry the trace id.

Spans go to the SDK's in-memory exporter through a provider of the test's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chainrule.server.app import Application
from chainrule.server.config import ConfigError, Settings
from chainrule.server.tracing import Tracing, configure_tracing
from chainrule.server.transport.instrumentation import REQUEST_ID_KEY
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import LogLines, log_lines, make_settings

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
async def traced(exporter: InMemorySpanExporter) -> AsyncIterator[Application]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # One symbolic worker process: the stage spans of parse and differentiate come from it.
    app = Application(make_settings(symbolic_workers=1, symbolic_spares=0), tracing=Tracing(provider))
    await app.start()
    yield app
    await app.stop()


def in_trace(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    spans = [span for span in exporter.get_finished_spans() if span.context.trace_id == TRACE_ID]
    exporter.clear()
    return spans


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    return {
        span.name: span for span in spans if span.parent and span.parent.span_id == parent.context.span_id
    }


async def test_grpc_continues_the_callers_trace_with_stage_spans_from_the_worker(
    traced: Application, exporter: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        await stub.Differentiate(
            pb.DifferentiateRequest(expression="sin(x^2) * exp(3 x) / (1 + y)", wrt=[pb.Wrt(variable="x")]),
            metadata=(("traceparent", TRACEPARENT), (REQUEST_ID_KEY, "traced-1")),
        )
    spans = in_trace(exporter)
    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.name == "chainrule.v1.DifferentiationService/Differentiate"
    assert server.parent is not None and server.parent.span_id == PARENT_ID
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert server.attributes["chainrule.request_id"] == "traced-1"
    stages = children(spans, server)
    assert {"parse", "differentiate", "simplify"} <= set(stages)
    worker = traced.pool.worker_pids() if traced.pool is not None else []
    for name in ("parse", "differentiate", "simplify"):
        stage = stages[name]
        assert stage.attributes is not None and stage.attributes["process.pid"] in worker, name
        assert stage.attributes["process.pid"] != os.getpid()
        assert stage.start_time is not None and stage.end_time is not None
        assert server.start_time is not None and server.end_time is not None
        assert server.start_time <= stage.start_time <= stage.end_time <= server.end_time, name


async def test_rest_continues_the_callers_trace_with_compile_and_evaluate(
    traced: Application, exporter: InMemorySpanExporter
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced.http_port}") as client:
        response = await client.post(
            "/v1/evaluate",
            json={
                "expression": "cos(x) * y^3",
                "points": {"x": {"values": list(range(500))}, "y": {"values": [2]}},
            },
            headers={"traceparent": TRACEPARENT},
        )
    assert response.status_code == 200
    spans = in_trace(exporter)
    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.name == "POST /v1/evaluate"
    assert server.parent is not None and server.parent.span_id == PARENT_ID
    stages = children(spans, server)
    assert {"parse", "compile", "evaluate"} <= set(stages)
    assert stages["evaluate"].attributes is not None
    assert stages["evaluate"].attributes["process.pid"] == os.getpid()  # numeric work stays in the server


async def test_a_failed_call_ends_its_span_with_the_code(
    traced: Application, exporter: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Differentiate(
                pb.DifferentiateRequest(expression="sin(x"), metadata=(("traceparent", TRACEPARENT),)
            )
    # The client has the status before the server's interceptor ends the span: wait for it (bounded).
    for _ in range(500):
        if any(span.kind is SpanKind.SERVER for span in exporter.get_finished_spans()):
            break
        await asyncio.sleep(0.01)
    [server] = [span for span in in_trace(exporter) if span.kind is SpanKind.SERVER]
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 3
    assert server.status.is_ok  # INVALID_ARGUMENT is the caller's mistake, not a server error


@pytest.fixture
def lines() -> Iterator[LogLines]:
    with log_lines("chainrule.access", logging.INFO) as handler:
        yield handler


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_log_lines_carry_the_trace_id(traced: Application, lines: LogLines, transport: str) -> None:
    if transport == "grpc":
        async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as channel:
            stub = pb_grpc.DifferentiationServiceStub(channel)
            await stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=(("traceparent", TRACEPARENT),))
    else:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced.http_port}") as client:
            await client.get("/v1/info", headers={"traceparent": TRACEPARENT})
    [record] = lines.records
    assert record.trace_id == f"{TRACE_ID:032x}"  # type: ignore[attr-defined]
    assert record.span_id not in {"-", f"{PARENT_ID:016x}"}  # type: ignore[attr-defined]


def test_tracing_is_off_by_default() -> None:
    assert configure_tracing(Settings.from_environ({})) is None


def test_exporters_come_from_the_standard_variables() -> None:
    tracing = configure_tracing(Settings.from_environ({"OTEL_TRACES_EXPORTER": "console,otlp"}))
    assert tracing is not None
    try:
        processors = tracing.provider._active_span_processor._span_processors
        names = [type(p.span_exporter).__name__ for p in processors]  # type: ignore[attr-defined]
        assert names == ["ConsoleSpanExporter", "OTLPSpanExporter"]
        assert tracing.provider.resource.attributes["service.name"] == "chainrule"
    finally:
        tracing.shutdown()


@pytest.mark.parametrize("value", ["jaeger", "otlp,zipkin"])
def test_unknown_exporters_fail_at_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        Settings.from_environ({"OTEL_TRACES_EXPORTER": value})


def test_without_the_otel_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'chainrule\[otel\]'"):
        configure_tracing(Settings.from_environ({"OTEL_TRACES_EXPORTER": "console"}))
