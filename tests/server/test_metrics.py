"""Metrics and request ids against a real server with a fresh registry: exact sample values."""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from chainrule.server.api import ChainruleApi
from chainrule.server.app import Application
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.logs import ContextFilter, JsonFormatter, TextFormatter, begin_request, text_format
from chainrule.server.metrics import CallCounts, Metrics
from chainrule.server.transport.grpc_server import create_server
from chainrule.server.transport.instrumentation import REQUEST_ID_KEY, Instrumentation, request_id_from
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import LogLines, log_lines, make_settings

SERVICE = "chainrule.v1.DifferentiationService"


@pytest.fixture
async def server() -> AsyncIterator[Application]:
    application = Application(make_settings(), registry=CollectorRegistry())
    await application.start()
    yield application
    await application.stop()


@pytest.fixture
async def stub(server: Application) -> AsyncIterator[pb_grpc.DifferentiationServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield pb_grpc.DifferentiationServiceStub(channel)


def rpc(method: str, **extra: str) -> dict[str, str]:
    return {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": method, **extra}


def sample(app: Application, name: str, labels: dict[str, str] | None = None) -> float | None:
    return app.registry.get_sample_value(name, labels or {})


async def test_rpc_metrics_count_calls_codes_and_latency(
    server: Application, stub: pb_grpc.DifferentiationServiceAsyncStub
) -> None:
    for _ in range(3):
        await stub.Differentiate(pb.DifferentiateRequest(expression="x^2"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x"))
    assert sample(server, "grpc_server_started_total", rpc("Differentiate")) == 4
    assert sample(server, "grpc_server_handled_total", rpc("Differentiate", grpc_code="OK")) == 3
    assert (
        sample(server, "grpc_server_handled_total", rpc("Differentiate", grpc_code="INVALID_ARGUMENT")) == 1
    )
    assert sample(server, "grpc_server_handling_seconds_count", rpc("Differentiate")) == 4
    assert sample(server, "grpc_server_handling_seconds_bucket", {**rpc("Differentiate"), "le": "+Inf"}) == 4
    assert sample(server, "grpc_server_started_total", rpc("Evaluate")) is None
    assert sample(server, "chainrule_requests_in_flight") == 0


async def test_cache_and_stage_metrics(
    server: Application, stub: pb_grpc.DifferentiationServiceAsyncStub
) -> None:
    for spelling in ["x^3", "x**3", "x^3", "x^3"]:
        await stub.Differentiate(pb.DifferentiateRequest(expression=spelling))
    assert sample(server, "chainrule_cache_misses_total", {"cache": "differentiate"}) == 2
    assert sample(server, "chainrule_cache_hits_total", {"cache": "differentiate"}) == 2
    assert sample(server, "chainrule_cache_misses_total", {"cache": "parse"}) == 2
    assert sample(server, "chainrule_cache_misses_total", {"cache": "derivative"}) == 1
    assert sample(server, "chainrule_cache_hits_total", {"cache": "derivative"}) == 1
    assert sample(server, "chainrule_cache_evictions_total", {"cache": "derivative"}) == 0
    # Each spelling's response, and its gRPC reply by the request's bytes (grpc_server.py).
    assert sample(server, "chainrule_cache_entries", {"cache": "differentiate"}) == 4
    assert (sample(server, "chainrule_cache_bytes", {"cache": "differentiate"}) or 0) > 0
    for stage, count in [("parse", 2), ("differentiate", 1), ("simplify", 1), ("compile", 0)]:
        assert sample(server, "chainrule_stage_seconds_count", {"stage": stage}) == count, stage


async def test_points_compile_and_evaluate(
    server: Application, stub: pb_grpc.DifferentiationServiceAsyncStub
) -> None:
    points = {"x": pb.Array(values=[0.0, 1.0, 2.0, 3.0, 4.0])}
    await stub.Evaluate(pb.EvaluateRequest(expression="x^2", points=points))
    await stub.Evaluate(pb.EvaluateRequest(expression="x^2", point={"x": 1.0}))
    await stub.GradientAtPoint(pb.GradientAtPointRequest(expression="x y", point={"x": 1.0, "y": 2.0}))
    assert sample(server, "chainrule_points_total") == 7
    assert sample(server, "chainrule_stage_seconds_count", {"stage": "compile"}) == 2
    assert sample(server, "chainrule_stage_seconds_count", {"stage": "evaluate"}) == 3
    assert sample(server, "chainrule_cache_hits_total", {"cache": "evaluate"}) == 1


async def test_build_info_and_the_metrics_endpoint(server: Application) -> None:
    assert sample(server, "chainrule_build_info", {"version": VERSION}) == 1
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.http_port}/metrics")
    assert response.status_code == 200
    assert f'chainrule_build_info{{version="{VERSION}"}} 1.0' in response.text
    assert 'chainrule_cache_hits_total{cache="differentiate"}' in response.text


def test_metrics_observe_job_timings_exactly() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, "9.9.9")
    for stage, seconds in (("parse", 0.5), ("differentiate", 0.25), ("simplify", 0.125)):
        metrics.observe_stage(stage, seconds)
    metrics.observe_stage("compile", 2.0)
    metrics.add_points(10)
    assert registry.get_sample_value("chainrule_stage_seconds_sum", {"stage": "parse"}) == 0.5
    assert registry.get_sample_value("chainrule_stage_seconds_sum", {"stage": "simplify"}) == 0.125
    assert registry.get_sample_value("chainrule_stage_seconds_bucket", {"stage": "compile", "le": "1.0"}) == 0
    assert registry.get_sample_value("chainrule_stage_seconds_bucket", {"stage": "compile", "le": "2.5"}) == 1
    assert registry.get_sample_value("chainrule_points_total") == 10
    assert registry.get_sample_value("chainrule_build_info", {"version": "9.9.9"}) == 1


# --- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept", "reason"),
    [
        ("req-123", True, "a caller's id is kept"),
        ("", False, "empty: a new one"),
        ("x" * 129, False, "too long to log"),
        ("bad\nline", False, "control characters would forge log lines"),
        ("caf\u00e9", False, "non-ASCII"),
    ],
)
def test_request_id_from_metadata(sent: str, kept: bool, reason: str) -> None:
    found = request_id_from(((REQUEST_ID_KEY, sent),))
    assert (found == sent) is kept, reason
    assert found and found.isascii() and found.isprintable()


def test_made_request_ids_are_unique() -> None:
    made = {request_id_from(()) for _ in range(1000)}
    assert len(made) == 1000


@pytest.fixture
def records() -> Iterator[LogLines]:
    with log_lines() as handler:
        yield handler


async def test_request_id_is_echoed_and_in_every_log_line(
    stub: pb_grpc.DifferentiationServiceAsyncStub, records: LogLines
) -> None:
    call = stub.Differentiate(pb.DifferentiateRequest(expression="x^2"), metadata=((REQUEST_ID_KEY, "ok-1"),))
    await call
    assert dict(await call.trailing_metadata())[REQUEST_ID_KEY] == "ok-1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Differentiate(
            pb.DifferentiateRequest(expression="1/"), metadata=((REQUEST_ID_KEY, "bad-1"),)
        )
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers[REQUEST_ID_KEY] == "bad-1"
    assert "grpc-status-details-bin" in trailers  # the rich status is still there
    request_lines = [r for r in records.records if r.name == "chainrule.access"]
    assert [(r.levelname, r.request_id) for r in request_lines] == [  # type: ignore[attr-defined]
        ("INFO", "ok-1"),
        ("INFO", "bad-1"),  # the caller's mistake: INFO, with its reason and field
    ]
    line = request_lines[1].getMessage()
    assert line.startswith(f"gRPC /{SERVICE}/Differentiate INVALID_ARGUMENT in "), line
    assert line.endswith("reason=PARSE_ERROR field=expression: expected a term after '/' at 2"), line


async def test_a_made_request_id_is_returned(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    call = stub.Differentiate(pb.DifferentiateRequest(expression="x^2"))
    await call
    assert dict(await call.trailing_metadata())[REQUEST_ID_KEY]


def test_json_log_lines_carry_the_request_id() -> None:
    def log_inside_a_request() -> logging.LogRecord:
        begin_request("json-7")
        record = logging.LogRecord("chainrule", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
        record.color_message = "\x1b[1mhello\x1b[0m"  # uvicorn's, dropped from JSON lines
        ContextFilter().filter(record)
        return record

    record = contextvars.copy_context().run(log_inside_a_request)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "json-7"
    assert line["message"] == "hello world"
    assert line["level"] == "WARNING"
    assert line["pid"] == os.getpid()
    assert "color_message" not in line and "trace_id" not in line


async def test_extra_response_metadata_joins_the_trailers() -> None:
    settings = make_settings()
    registry = CollectorRegistry()
    api = ChainruleApi(settings, InlineExecutor(), InlineExecutor())
    instrumentation = Instrumentation(
        Metrics(registry, VERSION), response_metadata=[("x-chainrule-worker", "7")]
    )
    server, port = create_server(settings, api, instrumentation=instrumentation)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = pb_grpc.DifferentiationServiceStub(channel).Differentiate(
                pb.DifferentiateRequest(expression="x")
            )
            assert (await call).derivative == "1"
            trailers = dict(await call.trailing_metadata())
    finally:
        await server.stop(None)
    assert trailers["x-chainrule-worker"] == "7"
    assert trailers[REQUEST_ID_KEY]
    assert registry.get_sample_value("grpc_server_handled_total", rpc("Differentiate", grpc_code="OK")) == 1


def test_counts_published_later_add_up_to_every_call() -> None:
    # CallCounts adds the event loop's counts to the series when they are collected: each collection
    # sees every call started and ended before it, in flight or not.
    registry = CollectorRegistry()
    metrics = Metrics(registry, VERSION)
    labels = rpc("Deferred")
    ok = metrics.handled.labels(*labels.values(), "OK")
    calls = CallCounts(metrics, metrics.started.labels(*labels.values()), ok)
    for round_ in range(1, 4):
        for _ in range(5):
            calls.started += 1
            calls.ok += 1
            calls.ended += 1
        calls.started += 1  # in flight while collected, then ending other than OK
        assert registry.get_sample_value("chainrule_requests_in_flight") == 1
        assert registry.get_sample_value("grpc_server_started_total", labels) == 6 * round_
        assert (
            registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "OK"})
            == 5 * round_
        )
        calls.ended += 1
    assert registry.get_sample_value("chainrule_requests_in_flight") == 0


def test_text_log_lines_cannot_be_forged_from_a_request() -> None:
    # A variable name holding CR LF and a line of its own split the access line in two, and NUL and
    # ESC reached the log (an independent attacker): each record stays one line as far as a reader
    # or a collector splitting on newlines can tell.
    forged = "y\r\n2026-12-06 12:00:00,000 INFO chainrule.access [forged]: ok\x00\x1b[31m\u2028\u202e"
    record = logging.LogRecord(
        "chainrule", logging.INFO, __file__, 1, "unknown variable '%s'", (forged,), None
    )
    ContextFilter().filter(record)
    line = TextFormatter(text_format(several_processes=False, tracing=False)).format(record)
    assert line.endswith(
        "unknown variable 'y\\x0d\n    2026-12-06 12:00:00,000 INFO chainrule.access [forged]: "
        "ok\\x00\\x1b[31m\\u2028\\u202e'"
    ), line
    assert all(not part.strip() or part.startswith(" ") for part in line.split("\n")[1:])
