"""Request ids and access lines on both transports: taken or made, returned, logged once per request."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chainrule.engine import errors
from chainrule.server.app import Application
from chainrule.server.logs import JsonFormatter
from chainrule.server.transport import access
from chainrule.server.transport.auth import fingerprint
from chainrule.server.transport.instrumentation import REQUEST_ID_KEY
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import LogLines, log_lines, make_settings
from tests.server.transport.test_rest import FailingApi, fake_client

TOKEN = "access-log-token"


@pytest.fixture
def lines() -> Iterator[LogLines]:
    with log_lines("chainrule.access") as handler:
        yield handler


@pytest.fixture(scope="module")
async def token_app() -> AsyncIterator[Application]:
    app = Application(make_settings(symbolic_workers=0, auth_tokens=TOKEN))
    await app.start()
    yield app
    await app.stop()


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The access line as a JSON collector receives it."""
    line: dict[str, object] = json.loads(JsonFormatter().format(record))
    return line


async def test_rest_takes_returns_and_logs_the_request_id(app: Application, lines: LogLines) -> None:
    body = b'{"expression": "sin(x^2)"}'
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
        response = await client.post(
            "/v1/differentiate",
            content=body,
            headers={"content-type": "application/json", REQUEST_ID_KEY: "abc"},
        )
    assert response.status_code == 200
    assert response.headers[REQUEST_ID_KEY] == "abc"
    [record] = lines.about("abc")
    assert record.levelno == logging.INFO
    line = fields(record)
    assert line["request_id"] == "abc"
    assert (line["transport"], line["method"], line["route"], line["status"], line["code"]) == (
        "http",
        "POST",
        "/v1/differentiate",
        200,
        "OK",
    )
    assert (line["bytes_in"], line["bytes_out"]) == (len(body), len(response.content))
    assert isinstance(line["duration_ms"], float)
    assert record.getMessage().startswith("POST /v1/differentiate 200 in ")


async def test_rest_makes_an_id_when_none_or_a_bad_one_is_sent(app: Application, lines: LogLines) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
        made = (await client.get("/v1/info")).headers[REQUEST_ID_KEY]
        forged = (await client.get("/v1/info", headers={REQUEST_ID_KEY: "x" * 200})).headers[REQUEST_ID_KEY]
    assert made and forged and made != forged and len(forged) < 200
    assert [r.getMessage().split(" in ")[0] for r in lines.about(made)] == ["GET /v1/info 200"]


async def test_rest_client_errors_log_at_info_with_reason_and_field(
    app: Application, lines: LogLines
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
        response = await client.post(
            "/v1/differentiate", json={"expression": "(x + 1))"}, headers={REQUEST_ID_KEY: "bad-rest"}
        )
    assert response.status_code == 400 and response.headers[REQUEST_ID_KEY] == "bad-rest"
    [record] = lines.about("bad-rest")
    assert record.levelno == logging.INFO
    line = fields(record)
    assert (line["status"], line["code"], line["reason"], line["field"]) == (
        400,
        "INVALID_ARGUMENT",
        "PARSE_ERROR",
        "expression",
    )
    message = "unmatched ')' at 7: remove it, or add a '(' before it"
    assert line["error"] == message
    assert record.getMessage().endswith(f"INVALID_ARGUMENT reason=PARSE_ERROR field=expression: {message}")


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (errors.InternalError("internal error"), logging.ERROR),
        (RuntimeError("a bug"), logging.ERROR),
        (errors.ResourceExhausted("busy", retry_after_seconds=1), logging.WARNING),
        (errors.DeadlineExceeded("too slow"), logging.WARNING),
        (errors.NotFound("nothing"), logging.INFO),
    ],
)
async def test_levels_say_whose_problem_it_is(error: Exception, level: int, lines: LogLines) -> None:
    async with fake_client(FailingApi(error)) as client:
        with pytest.MonkeyPatch.context() as patch:  # the bug's traceback is not this test's business
            patch.setattr(logging.getLogger("chainrule.server.transport.rest"), "disabled", True)
            response = await client.post("/v1/evaluate", json={}, headers={REQUEST_ID_KEY: f"lvl-{level}"})
    [record] = lines.about(f"lvl-{level}")
    assert record.levelno == level, record.getMessage()
    assert fields(record)["status"] == response.status_code


async def test_health_and_scrapes_log_at_debug(app: Application, lines: LogLines) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            await client.get(path, headers={REQUEST_ID_KEY: f"probe{path}"})
    for path in ("/healthz", "/readyz", "/metrics"):
        [record] = lines.about(f"probe{path}")
        assert record.levelno == logging.DEBUG


async def test_grpc_access_line(stub: pb_grpc.DifferentiationServiceAsyncStub, lines: LogLines) -> None:
    request = pb.EvaluateRequest(expression="x*y", point={"x": 2, "y": 3})
    call = stub.Evaluate(request, metadata=((REQUEST_ID_KEY, "grpc-line"),))
    response = await call
    [record] = lines.about("grpc-line")
    line = fields(record)
    assert (line["transport"], line["route"], line["status"], line["code"]) == (
        "grpc",
        "/chainrule.v1.DifferentiationService/Evaluate",
        "OK",
        "OK",
    )
    assert (line["bytes_in"], line["bytes_out"]) == (request.ByteSize(), response.ByteSize())
    assert "caller" not in line  # auth is off


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_the_caller_is_named_by_a_fingerprint_when_auth_is_on(
    token_app: Application, lines: LogLines, transport: str
) -> None:
    request_id = f"auth-{transport}"
    headers = {"authorization": f"Bearer {TOKEN}", REQUEST_ID_KEY: request_id}
    if transport == "grpc":
        async with grpc.aio.insecure_channel(f"127.0.0.1:{token_app.grpc_port}") as channel:
            stub = pb_grpc.DifferentiationServiceStub(channel)
            await stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=tuple(headers.items()))
    else:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{token_app.http_port}") as client:
            assert (await client.get("/v1/info", headers=headers)).status_code == 200
    [record] = lines.about(request_id)
    assert fields(record)["caller"] == fingerprint(TOKEN.encode())
    assert TOKEN not in record.getMessage()
    assert fingerprint(TOKEN.encode()).startswith("token:") and len(fingerprint(b"t")) == len("token:") + 8


async def test_a_refused_token_is_logged_as_the_callers_mistake(
    token_app: Application, lines: LogLines
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{token_app.http_port}") as client:
        response = await client.get(
            "/v1/info", headers={"authorization": "Bearer wrong", REQUEST_ID_KEY: "refused"}
        )
    assert response.status_code == 401 and response.headers[REQUEST_ID_KEY] == "refused"
    [record] = lines.about("refused")
    assert record.levelno == logging.INFO
    assert (fields(record)["code"], fields(record)["reason"]) == ("UNAUTHENTICATED", "INVALID_TOKEN")


async def test_access_log_off_keeps_failures(lines: LogLines) -> None:
    app = Application(make_settings(symbolic_workers=0, access_log=False))
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
            await client.get("/v1/info", headers={REQUEST_ID_KEY: "quiet-ok"})
            await client.post("/v1/evaluate", json={"expression": "1/"}, headers={REQUEST_ID_KEY: "loud-bad"})
    finally:
        await app.stop()
    assert [r.levelno for r in lines.about("quiet-ok")] == [logging.DEBUG]
    assert [r.levelno for r in lines.about("loud-bad")] == [logging.INFO]


async def test_a_stream_the_caller_cancels_is_not_a_server_error(app: Application, lines: LogLines) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), metadata=((REQUEST_ID_KEY, "watch-1"),)
        )
        await watch.read()
        watch.cancel()
        for _ in range(100):  # the server learns of the cancellation a moment later
            if lines.about("watch-1"):
                break
            await asyncio.sleep(0.02)
    [record] = lines.about("watch-1")
    assert record.levelno == logging.INFO
    assert fields(record)["code"] == "CANCELLED"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_failed_requests_past_the_budget_are_counted_in_one_line(
    app: Application, lines: LogLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of refused calls writes the budget's lines and then one line counting the rest by code,
    not a line each (a health-Check flood wrote six times the bytes it sent); bugs are always written."""
    clock = FakeClock()
    monkeypatch.setattr(access, "_failure_lines", access.FailureLines(5, clock=clock))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
        for i in range(30):
            await client.post(
                "/v1/differentiate", json={"expression": "sin("}, headers={REQUEST_ID_KEY: f"flood-{i}"}
            )
        assert len([r for r in lines.records if r.request_id.startswith("flood-")]) == 5  # type: ignore[attr-defined]
        clock.now += 0.25  # a line's worth of the budget again (binary fractions: exact sums)
        await client.post(
            "/v1/differentiate", json={"expression": "sin(x"}, headers={REQUEST_ID_KEY: "after"}
        )
    [report] = [r for r in lines.records if "left out" in r.getMessage()]
    assert report.levelno == logging.WARNING
    assert (
        "25 lines of failed requests left out in the last 0.2 s (over 5 a second)" in report.getMessage()
    ), report.getMessage()
    assert fields(report)["left_out"] == {"INVALID_ARGUMENT": 25}
    assert len(lines.about("after")) == 1
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as client:
        for i in range(10):  # the next report waits for its interval, counting meanwhile
            clock.now += 0.125  # 0.625 lines' worth each: 4 of the 10 left out
            await client.post(
                "/v1/differentiate", json={"expression": "("}, headers={REQUEST_ID_KEY: f"later-{i}"}
            )
        clock.now += access.FailureLines.REPORT_SECONDS
        await client.post("/v1/differentiate", json={"expression": "("}, headers={REQUEST_ID_KEY: "last"})
    reports = [r.getMessage() for r in lines.records if "left out" in r.getMessage()]
    assert len(reports) == 2 and reports[1].startswith(
        "4 lines of failed requests left out in the last 11.1 s"
    )
    async with fake_client(FailingApi(RuntimeError("a bug"))) as client:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(logging.getLogger("chainrule.server.transport.rest"), "disabled", True)
            for i in range(3):
                await client.post("/v1/evaluate", json={}, headers={REQUEST_ID_KEY: f"bug-{i}"})
    assert all(len(lines.about(f"bug-{i}")) == 1 for i in range(3))


def test_the_failure_line_budget_refills_at_its_rate() -> None:
    clock = FakeClock()
    budget = access.FailureLines(2, clock=clock)
    assert [budget.admit(errors.Code.NOT_FOUND) for _ in range(3)] == [True, True, False]
    clock.now += 0.5
    assert [budget.admit(errors.Code.NOT_FOUND) for _ in range(2)] == [True, False]
    clock.now += 100  # refills to one second's worth, not more
    assert [budget.admit(errors.Code.NOT_FOUND) for _ in range(3)] == [True, True, False]
    assert all(access.FailureLines(0, clock=clock).admit(errors.Code.NOT_FOUND) for _ in range(1000))
