"""Hostile input through the real servers: each gets its clear status, nothing runs, the server lives on.

Also the numeric edge cases: overflow, NaN, complex results, division by zero give NaN/±Inf slots
with a count, never an error, and no numpy warning reaches the logs.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chainrule.engine.errors import plain_number
from chainrule.server.app import Application
from chainrule.server.config import limit_settings
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import make_settings, status_detail

MARKER = Path("/tmp/chainrule-hostile-marker")  # what `touch`/`open` in an input would create
MAX_POINTS = 100_000
MAX_BYTES = 4 * 1024 * 1024
BUDGET = 1.5


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Application]:
    MARKER.unlink(missing_ok=True)
    application = Application(
        make_settings(
            symbolic_budget_seconds=BUDGET,
            # Long enough that 100,000 nested parentheses reach the depth check, not the length one.
            max_expression_length=250_000,
            max_points=MAX_POINTS,
            max_request_bytes=MAX_BYTES,
        )
    )
    await application.start()
    yield application
    await application.stop()


@pytest.fixture(scope="module")
async def channel(server: Application) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as opened:
        yield opened


def differentiate(expression: str, *wrt: tuple[str, int], full: bool = False) -> pb.DifferentiateRequest:
    return pb.DifferentiateRequest(
        expression=expression,
        wrt=[pb.Wrt(variable=name, order=order) for name, order in wrt],
        simplification=pb.SIMPLIFICATION_FULL if full else pb.SIMPLIFICATION_UNSPECIFIED,
    )


def points(count: int) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(expression="x^2", points={"x": pb.Array(f64le=bytes(8 * count))})


INVALID = grpc.StatusCode.INVALID_ARGUMENT
LIMIT = "LIMIT_EXCEEDED"

# (id, request, expected code, expected ErrorInfo reason or None)
HOSTILE: list[tuple[str, pb.DifferentiateRequest | pb.EvaluateRequest, grpc.StatusCode, str | None]] = [
    ("os.system", differentiate(f"__import__('os').system('touch {MARKER}')"), INVALID, None),
    ("mro", differentiate("x.__class__.__mro__"), INVALID, "PARSE_ERROR"),
    ("lambda", differentiate("(lambda: 7)()"), INVALID, None),
    ("open", differentiate(f"open('{MARKER}', 'w')"), INVALID, "UNKNOWN_FUNCTION"),
    ("full-width print", differentiate("\uff50\uff52\uff49\uff4e\uff54(1)"), INVALID, "PARSE_ERROR"),
    ("statement separator", differentiate("x; y"), INVALID, "PARSE_ERROR"),
    ("newline import", differentiate("x\n__import__('os')"), INVALID, None),
    ("NUL byte", differentiate("x\x00+1"), INVALID, "PARSE_ERROR"),
    ("9^9^9", differentiate("9^9^9"), INVALID, LIMIT),
    ("factorial(10^9)", differentiate("factorial(10^9)"), INVALID, LIMIT),
    # sympy writes e^(10^30 log(10^-100)) as (10^-100)^(10^30), exactly: it held a thread without end.
    ("e^(k log a)", differentiate("exp(x + log(1e-100)*10^30)"), INVALID, LIMIT),
    ("100,000 nested parentheses", differentiate("(" * 100_000 + "x" + ")" * 100_000), INVALID, LIMIT),
    ("1 MB expression", differentiate("x+" * 500_000 + "x"), INVALID, LIMIT),
    ("order 10^6", differentiate("sin(x)", ("x", 10**6)), INVALID, LIMIT),
    ("order 12 explodes", differentiate("exp(sin(x)*x^x)", ("x", 12)), INVALID, LIMIT),
    (
        "(x+y+z+w)^60 fully simplified",
        differentiate("(x+y+z+w)^60", ("x", 1), full=True),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "COMPUTE_BUDGET_EXCEEDED",
    ),
    # sympy rounds log(tanh(123456789)) to 0 at 53 bits and divides by it whenever it prints or
    # orders the sum (our cache key): once an INTERNAL from the worker (the fuzzer found it).
    ("a constant sympy cannot compute", differentiate("x + 1/log(tanh(123456789))"), INVALID, "PARSE_ERROR"),
    (
        "a constant sympy cannot compute, in Evaluate",
        pb.EvaluateRequest(expression="x/log(cos(1e-200))", point={"x": 1.0}),
        INVALID,
        "PARSE_ERROR",
    ),
    # Valid input sympy fails on, each once an INTERNAL: a pole met differentiating a constant, and
    # the sign of floor(10^100/asin(10^-100)) + 1, which C code generation asks.
    (
        "a pole inside sympy",
        differentiate("x^(sin(loggamma(cbrt(1e-100) - 1) - pi/2)^(-1))"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_COMPUTABLE",
    ),
    (
        "a sign past sympy's precision",
        pb.DifferentiateRequest(expression="(floor(1/asin(1e-100)) + 1)^x", formats=[pb.OUTPUT_FORMAT_C]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_COMPUTABLE",
    ),
    ("DiracDelta of a fractional order", differentiate("x*DiracDelta(pi, 1/2)"), INVALID, "PARSE_ERROR"),
    ("variable __import__", differentiate("x^2", ("__import__", 1)), INVALID, None),
    ("__import__ as a name", differentiate("__import__ + 1"), INVALID, None),
    ("points over the limit", points(2 * MAX_POINTS), INVALID, LIMIT),
    # 10^8 points are 800 MB: far over the message limit, refused before decoding (scaled to 4 MB here).
    ("points over the message size", points(MAX_BYTES // 8 + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, None),
]


async def assert_alive(channel: grpc.aio.Channel) -> None:
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = pb_grpc.DifferentiationServiceStub(channel)
    reply = await stub.Differentiate(differentiate("sin(x^2)"), timeout=5)
    assert reply.derivative == "2*x*cos(x^2)"


@pytest.mark.parametrize(
    ("request_", "code", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
async def test_hostile_input_gets_its_status(
    channel: grpc.aio.Channel,
    request_: pb.DifferentiateRequest | pb.EvaluateRequest,
    code: grpc.StatusCode,
    reason: str | None,
) -> None:
    stub = pb_grpc.DifferentiationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if isinstance(request_, pb.EvaluateRequest):
            await stub.Evaluate(request_, timeout=10)
        else:
            await stub.Differentiate(request_, timeout=10)
    assert caught.value.code() == code, caught.value.details()
    assert caught.value.code() != grpc.StatusCode.INTERNAL
    if reason is not None:
        info = _error_info(caught.value)
        assert info.reason == reason, info
        if reason == LIMIT:
            # The field violation says which limit (by the name GetServerInfo reports), its value and
            # the maximum; the message says the maximum in plain words.
            assert {"limit", "value", "maximum"} <= set(info.metadata)
            assert info.metadata["limit"] in {declaration.name for _, declaration in limit_settings()}
            maximum = plain_number(float(info.metadata["maximum"]))
            assert f"; limit {maximum})" in (caught.value.details() or "")
    assert not MARKER.exists()
    await assert_alive(channel)


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    info = status_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None, "no ErrorInfo"
    return info


REST_HOSTILE = [
    ("os.system", {"expression": f"__import__('os').system('touch {MARKER}')"}, 400),
    ("9^9^9", {"expression": "9^9^9"}, 400),
    ("order 10^6", {"expression": "sin(x)", "wrt": [{"variable": "x", "order": 10**6}]}, 400),
    (
        "full simplification over budget",
        {"expression": "(x+y+z+w)^60", "wrt": [{"variable": "x"}], "simplification": "SIMPLIFICATION_FULL"},
        429,
    ),
]


@pytest.mark.parametrize(("body", "status"), [c[1:] for c in REST_HOSTILE], ids=[c[0] for c in REST_HOSTILE])
async def test_hostile_input_over_rest(
    server: Application, channel: grpc.aio.Channel, body: dict[str, object], status: int
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        reply = await client.post("/v1/differentiate", json=body)
        assert reply.status_code == status, reply.text
        assert reply.json()["code"] not in (2, 13)  # never UNKNOWN or INTERNAL
        assert (await client.get("/healthz")).status_code == 200
    assert not MARKER.exists()
    await assert_alive(channel)


async def test_rest_body_over_the_limit_is_413(server: Application) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        reply = await client.post(
            "/v1/evaluate",
            content=b'{"expression": "' + b"x" * MAX_BYTES + b'"}',
            headers={"content-type": "application/json"},
        )
    assert reply.status_code == 413
    assert reply.json()["details"][0]["fieldViolations"][0]["field"] == "body"


def test_limits_are_all_reported(server: Application) -> None:
    names = {name for name, _, _ in server.api._limit_table()}
    expected = {
        "expression_length", "parse_nodes", "parse_depth", "integer_digits", "power_bits",
        "factorial_argument", "variables", "derivative_order", "derivative_nodes", "points",
        "numeric_cost", "request_bytes", "symbolic_budget_seconds", "worker_memory_bytes",
    }  # fmt: skip
    assert expected <= names


# --- numeric edge cases ---------------------------------------------------------------------------

NAN, INF = math.nan, math.inf

# (expression, x, expected value, reason)
EDGES = [
    ("1/x", 0.0, INF, "division by zero at a point"),
    ("1/0", 1.0, NAN, "unsigned infinity (zoo) has no real value"),
    ("0/0", 1.0, NAN, "indeterminate"),
    ("log(x)", -1.0, NAN, "complex result"),
    ("log(x)", 0.0, -INF, "pole"),
    ("sqrt(x)", -1.0, NAN, "complex result"),
    ("x^x", -0.5, NAN, "complex result of a real power"),
    ("exp(x)", 1000.0, INF, "overflow"),
    ("x^1000", 10.0, INF, "overflow"),
    ("cosh(x)", 1e6, INF, "overflow"),
    ("asin(x)", 2.0, NAN, "outside the domain"),
    ("gamma(x)", 0.0, INF, "pole"),
    ("log(x, 1)", 2.0, NAN, "division by log(1) = 0"),
    ("x*exp(-x)", INF, NAN, "inf times zero"),
    ("x", NAN, NAN, "NaN in, NaN out"),
    ("cbrt(x)", -8.0, -2.0, "real cube root: finite"),
]


def _same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == expected


@pytest.mark.parametrize(("expression", "x", "expected", "reason"), EDGES)
async def test_numeric_edge_cases_fill_slots_and_count(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, expression: str, x: float, expected: float,
    reason: str,
) -> None:  # fmt: skip
    stub = pb_grpc.DifferentiationServiceStub(channel)
    caplog.set_level(logging.DEBUG)
    single = await stub.Evaluate(pb.EvaluateRequest(expression=expression, point={"x": x}), timeout=5)
    assert _same(single.value, expected), reason
    assert single.nonfinite_count == (0 if math.isfinite(expected) else 1)
    # Many points, the raw path: 3 bad slots among 5.
    column = struct.pack("<5d", x, 1.0, x, 2.0, x)
    many = await stub.Evaluate(
        pb.EvaluateRequest(expression=expression, points={"x": pb.Array(f64le=column)}), timeout=5
    )
    values = np.frombuffer(many.values.f64le, dtype="<f8")
    assert _same(float(values[0]), expected) and _same(float(values[4]), expected), reason
    finite_elsewhere = int(np.isfinite(values[[1, 3]]).sum())
    assert many.nonfinite_count == (0 if math.isfinite(expected) else 3) + (2 - finite_elsewhere)
    gradient = await stub.GradientAtPoint(
        pb.GradientAtPointRequest(expression=expression, point={"x": x}, variables=["x"]), timeout=5
    )
    assert _same(gradient.value, expected)
    assert not [r for r in caplog.records if "Warning" in r.getMessage() or r.levelno >= logging.WARNING]
