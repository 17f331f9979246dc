"""Jacobian, Series and implicit differentiation through a real server: values, batches, errors, limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
import sympy
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from chainrule.engine import parsing
from chainrule.server.app import Application
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import make_settings
from tests.server.transport.test_grpc_server import rich_status

if TYPE_CHECKING:
    Stub = pb_grpc.DifferentiationServiceAsyncStub


def f64le(values: np.ndarray) -> pb.Array:
    return pb.Array(f64le=values.astype("<f8").tobytes())


async def failure(stub: Stub, rpc: str, request: Message) -> tuple[grpc.StatusCode, list[str], str, str]:
    """(code, field paths, ErrorInfo reason, message) of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, rpc)(request)
    status, details = rich_status(caught.value)
    bad = details.get("BadRequest")
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    fields = [v.field for v in bad.field_violations] if isinstance(bad, error_details_pb2.BadRequest) else []
    return caught.value.code(), fields, info.reason, status.message


# --- Jacobian ------------------------------------------------------------------------------------


async def test_jacobian_at_one_point(stub: Stub) -> None:
    reply = await stub.Jacobian(
        pb.JacobianRequest(expressions=["x^2 y", "5x + sin(y)"], point={"x": 1.0, "y": 2.0})
    )
    assert list(reply.variables) == ["x", "y"]
    assert list(reply.values) == [2.0, 5.0 + np.sin(2.0)]
    assert list(reply.jacobian) == [4.0, 1.0, 5.0, np.cos(2.0)]
    assert reply.nonfinite_count == 0 and not reply.value_arrays and not reply.jacobian_arrays


async def test_jacobian_at_many_points_keeps_the_encoding(
    stub: Stub,
) -> None:
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(0.5, 2.0, 1000), rng.uniform(-1.0, 1.0, 1000)
    reply = await stub.Jacobian(
        pb.JacobianRequest(
            expressions=["x y", "log(x) + y^2"],
            variables=["y", "x"],  # the columns' order is the caller's
            points={"x": f64le(xs), "y": f64le(ys)},
        )
    )
    columns = [np.frombuffer(array.f64le, dtype="<f8") for array in reply.jacobian_arrays]
    expected = [xs, ys, 2 * ys, 1 / xs]  # d(xy)/dy, d(xy)/dx, d(log x + y^2)/dy, .../dx
    assert list(reply.variables) == ["y", "x"] and len(columns) == 4
    for ours, theirs in zip(columns, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    np.testing.assert_allclose(np.frombuffer(reply.value_arrays[1].f64le), np.log(xs) + ys**2, rtol=1e-14)


@pytest.mark.parametrize(
    ("request_", "code", "fields", "reason"),
    [
        (pb.JacobianRequest(point={"x": 1}), grpc.StatusCode.INVALID_ARGUMENT, ["expressions"],
         "INVALID_ARGUMENT"),
        (pb.JacobianRequest(expressions=["x", "sin("], point={"x": 1}), grpc.StatusCode.INVALID_ARGUMENT,
         ["expressions[1]"], "PARSE_ERROR"),
        (pb.JacobianRequest(expressions=["x", "x = 1"], point={"x": 1}), grpc.StatusCode.INVALID_ARGUMENT,
         ["expressions[1]"], "PARSE_ERROR"),
        (pb.JacobianRequest(expressions=["x y"], variables=["x", "x"], point={"x": 1, "y": 1}),
         grpc.StatusCode.INVALID_ARGUMENT, ["variables[1]"], "INVALID_ARGUMENT"),
        (pb.JacobianRequest(expressions=["x y", "z"], point={"x": 1}), grpc.StatusCode.INVALID_ARGUMENT,
         ["point.y", "point.z"], "MISSING_VARIABLE"),
        (pb.JacobianRequest(expressions=["x"] * 65, point={"x": 1}), grpc.StatusCode.INVALID_ARGUMENT,
         ["expressions"], "LIMIT_EXCEEDED"),
        # Rows of 20 variables each: 40 together, past the 32 of a request, whatever `variables` says
        # (64 such rows were compiled, then refused for 2,047 missing values; an independent attacker).
        (pb.JacobianRequest(expressions=["+".join(f"sin(r{row}v{i})" for i in range(20)) for row in (0, 1)],
                            variables=["r0v0"], point={"r0v0": 1}), grpc.StatusCode.INVALID_ARGUMENT,
         ["expressions"], "LIMIT_EXCEEDED"),
    ],
)  # fmt: skip
async def test_jacobian_bad_input_names_the_field(
    stub: Stub,
    request_: pb.JacobianRequest,
    code: grpc.StatusCode,
    fields: list[str],
    reason: str,
) -> None:
    assert (await failure(stub, "Jacobian", request_))[:3] == (code, fields, reason)


async def test_jacobian_reply_is_sized_before_it_is_computed() -> None:
    # 2 rows x (1 value + 2 partials) x 300 points x 8 bytes: 14,400 bytes of columns, over 16,000
    # with the reply's framing; by one variable, 2 x (1 + 1) columns fit.
    app = Application(make_settings(max_response_bytes=16_000, symbolic_workers=0))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = pb_grpc.DifferentiationServiceStub(channel)
            column = f64le(np.linspace(1, 2, 300))
            request = pb.JacobianRequest(expressions=["x y", "x + y"], points={"x": column, "y": column})
            code, fields, reason, message = await failure(stub, "Jacobian", request)
            assert (code, fields, reason) == (grpc.StatusCode.INVALID_ARGUMENT, ["points"], "LIMIT_EXCEEDED")
            assert "300 points x 6 output columns" in message
            within = pb.JacobianRequest(
                expressions=["x y", "x + y"], variables=["x"], points={"x": column, "y": column}
            )
            assert len((await stub.Jacobian(within)).jacobian_arrays) == 2  # 2 x 1 x 300
            assert app.caches.compiled.stats.misses == 1  # the refused one was never compiled
    finally:
        await app.stop()


# --- Series --------------------------------------------------------------------------------------


async def test_series_around_pi_over_2(stub: Stub) -> None:
    reply = await stub.Series(
        pb.SeriesRequest(expression="sin(x)", around="pi/2", order=2, formats=[pb.OUTPUT_FORMAT_LATEX])
    )
    assert reply.series == "1 - (x - pi/2)^2/2"
    assert list(reply.coefficients) == ["1", "0", "-1/2"]
    assert reply.remainder == "O((x - pi/2)^3)"
    assert reply.variable == "x" and "\\pi" in reply.latex


async def test_series_defaults_and_order_zero(stub: Stub) -> None:
    reply = await stub.Series(pb.SeriesRequest(expression="exp(x)"))
    assert list(reply.coefficients) == ["1", "1", "1/2", "1/6", "1/24", "1/120"]
    assert reply.remainder == "O(x^6)" and reply.latex == ""
    x = parsing.symbol("x")
    assert sympy.expand(parsing.parse(reply.series) - sympy.series(sympy.exp(x), x, 0, 6).removeO()) == 0
    zero = await stub.Series(pb.SeriesRequest(expression="cos(t)", order=0))
    assert (zero.series, list(zero.coefficients), zero.remainder) == ("1", ["1"], "O(t)")


async def test_series_around_a_decimal_is_exact(stub: Stub) -> None:
    """The coefficients are exact, and `around` is an exact constant: a decimal such as the Python
    client's `around=0.1` (sent as "0.1") is 1/10, not the double nearest it (whose square is
    0.010000000000000002)."""
    reply = await stub.Series(pb.SeriesRequest(expression="x^2", around="0.1", order=2))
    assert list(reply.coefficients) == ["1/100", "1/5", "1"]
    assert reply.remainder == "O((x - 1/10)^3)"
    half = await stub.Series(pb.SeriesRequest(expression="sin(x)", around="0.5", order=1))
    assert list(half.coefficients) == ["sin(1/2)", "cos(1/2)"]  # as for around="1/2" or "5e-1"


@pytest.mark.parametrize(
    ("request_", "code", "fields", "reason"),
    [
        (pb.SeriesRequest(expression="log(x)"), grpc.StatusCode.FAILED_PRECONDITION, ["expression"],
         "NO_TAYLOR_SERIES"),
        (pb.SeriesRequest(expression="abs(x)", order=1), grpc.StatusCode.FAILED_PRECONDITION, ["expression"],
         "NO_TAYLOR_SERIES"),
        (pb.SeriesRequest(expression="max(log(x), x)"), grpc.StatusCode.FAILED_PRECONDITION, ["expression"],
         "NO_TAYLOR_SERIES"),  # was INTERNAL: sympy's Max(zoo, 0) raises ValueError
        (pb.SeriesRequest(expression="sin(x)", around="y"), grpc.StatusCode.INVALID_ARGUMENT, ["around"],
         "INVALID_ARGUMENT"),
        (pb.SeriesRequest(expression="sin(x)", around="1 +"), grpc.StatusCode.INVALID_ARGUMENT, ["around"],
         "PARSE_ERROR"),
        (pb.SeriesRequest(expression="sin(x)", order=21), grpc.StatusCode.INVALID_ARGUMENT, ["order"],
         "LIMIT_EXCEEDED"),
        (pb.SeriesRequest(expression="x y"), grpc.StatusCode.INVALID_ARGUMENT, ["variable"],
         "INVALID_ARGUMENT"),
        (pb.SeriesRequest(expression="x = 1"), grpc.StatusCode.INVALID_ARGUMENT, ["expression"],
         "PARSE_ERROR"),
        (pb.SeriesRequest(expression="x", formats=[pb.OUTPUT_FORMAT_C]), grpc.StatusCode.INVALID_ARGUMENT,
         ["formats[0]"], "INVALID_ARGUMENT"),
    ],
)  # fmt: skip
async def test_series_errors_name_the_field_and_say_why(
    stub: Stub,
    request_: pb.SeriesRequest,
    code: grpc.StatusCode,
    fields: list[str],
    reason: str,
) -> None:
    found = await failure(stub, "Series", request_)
    assert found[:3] == (code, fields, reason)
    if reason == "NO_TAYLOR_SERIES":
        assert "has no Taylor series at x = 0" in found[3]


async def test_an_error_quoting_a_long_field_fits_in_what_clients_read(stub: Stub) -> None:
    # Quoted in the message and again in its violation, 6,000 characters made 12.9 KB of trailers:
    # grpc's clients refuse some past 8 KiB (RESOURCE_EXHAUSTED in the client, not our status), all
    # past 16 KiB (an independent attacker, 2026-12-07).
    request = pb.SeriesRequest(expression="sin(x)", around="x+" * 3000 + "1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Series(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = caught.value.trailing_metadata() or ()
    sent = sum(
        len(key) + (4 * -(-len(value) // 3) if key.endswith("-bin") else len(value))
        for key, value in trailers
    )
    assert sent + len((caught.value.details() or "").encode()) < 8 * 1024


# --- implicit differentiation --------------------------------------------------------------------


async def test_implicit_derivatives_of_the_circle(stub: Stub) -> None:
    first = await stub.Differentiate(pb.DifferentiateRequest(expression="x^2 + y^2 = 25", dependent="y"))
    assert first.derivative == "-x/y" and list(first.variables) == ["x", "y"]
    for order, expected in [(1, -0.75), (2, -25 / 64)]:
        reply = await stub.Evaluate(
            pb.EvaluateRequest(
                expression="x^2 + y^2 = 25", dependent="y", wrt=[pb.Wrt(variable="x", order=order)],
                point={"x": 3.0, "y": 4.0},
            )
        )  # fmt: skip
        assert reply.value == expected
    # Off the curve is not an error: nothing is solved.
    off = await stub.Evaluate(
        pb.EvaluateRequest(expression="x^2 + y^2 = 25", dependent="y", point={"x": 1, "y": 1})
    )
    assert off.value == -1.0


async def test_implicit_explain_verify_and_code(stub: Stub) -> None:
    reply = await stub.Differentiate(
        pb.DifferentiateRequest(
            expression="x^2 + y^2 = 25", dependent="y", wrt=[pb.Wrt(variable="x", order=2)],
            explain=True, verify=True, formats=[pb.OUTPUT_FORMAT_JAVASCRIPT],
        )
    )  # fmt: skip
    assert reply.steps[-1].result.text == reply.derivative
    chain = next(step for step in reply.steps if step.expression.text == "y^2")
    assert chain.rule == pb.Step.RULE_CHAIN and chain.result.text == "2*y*y'"
    assert any(step.rule == pb.Step.RULE_IMPLICIT and step.result.text == "y'" for step in reply.steps)
    assert reply.check.verdict == pb.Check.VERDICT_OK
    assert list(reply.code[0].parameters) == ["x", "y"] and "d^2y/dx^2" in reply.code[0].source


@pytest.mark.parametrize(
    ("request_", "fields", "says"),
    [
        (pb.DifferentiateRequest(expression="x^2 + y^2 = 25"), ["expression"], "`dependent`"),
        (pb.DifferentiateRequest(expression="x^2 + y^2 = 25", dependent="z"), ["dependent"],
         "does not occur"),
        (pb.DifferentiateRequest(expression="x^2 + y^2 = 25", dependent="y", wrt=[pb.Wrt(variable="y")]),
         ["dependent"], "dependent variable"),
        (pb.DifferentiateRequest(expression="x = y = 1", dependent="y"), ["expression"], "one '='"),
        (pb.DifferentiateRequest(expression="x^2 + y^2 = a", dependent="y"), ["wrt"], "which variable"),
        (pb.DifferentiateRequest(expression="x^2 + y^2 = 25", dependent="y",
                                 wrt=[pb.Wrt(variable="x"), pb.Wrt(variable="x")]), ["wrt"], "one variable"),
    ],
)  # fmt: skip
async def test_implicit_bad_input_names_the_field(
    stub: Stub,
    request_: pb.DifferentiateRequest,
    fields: list[str],
    says: str,
) -> None:
    code, found, _, message = await failure(stub, "Differentiate", request_)
    assert (code, found) == (grpc.StatusCode.INVALID_ARGUMENT, fields)
    assert says in message


async def test_server_info_lists_the_new_limits(stub: Stub) -> None:
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    limits = {limit.name: limit.maximum for limit in info.limits}
    assert limits["series_order"] == 20 and limits["jacobian_rows"] == 64
    assert limits["response_bytes"] == 64 * 1024 * 1024  # what bounds a Jacobian's reply
