"""One table of requests, sent through gRPC and through REST: identical results, identical errors.

A success must print to the same proto3 JSON either way; a failure must carry the same canonical code
(gRPC status code <-> HTTP status through HTTP_STATUS) and the same google.rpc.Status: message,
BadRequest field violations, ErrorInfo reason and metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import mpmath
import numpy as np
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2

from chainrule.engine import errors
from chainrule.server.app import Application
from chainrule.server.transport.status import HTTP_STATUS
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

Outcome = tuple[int, dict[str, Any]]  # (HTTP status, JSON body)


def f64le(*values: float) -> pb.Array:
    return pb.Array(f64le=np.array(values, dtype="<f8").tobytes())


def values(*items: float) -> pb.Array:
    return pb.Array(values=items)


def wrt(*pairs: tuple[str, int]) -> list[pb.Wrt]:
    return [pb.Wrt(variable=name, order=order) for name, order in pairs]


D, E, G = pb.DifferentiateRequest, pb.EvaluateRequest, pb.GradientAtPointRequest
LATEX, MATHML = pb.OUTPUT_FORMAT_LATEX, pb.OUTPUT_FORMAT_MATHML
J, S = pb.JacobianRequest, pb.SeriesRequest

# (id, request): the RPC and the REST route follow from the request's type.
CASES: list[tuple[str, Message]] = [
    # Differentiate: the seed lesson, options, and every kind of bad input.
    ("seed-square", D(expression="(3x + 1)²")),
    ("seed-sin-square", D(expression="sin(x²)")),
    ("seed-sin-cubed", D(expression="(sin x)³")),
    ("seed-sin-cos", D(expression="sin(cos x)")),
    ("seed-exp", D(expression="e^(2x)")),
    ("mixed-partial-latex",
     D(expression="x^3 y^2 + sin(x y)", wrt=wrt(("x", 2), ("y", 1)), formats=[LATEX])),
    ("constant", D(expression="2 pi")),
    ("simplify-none", D(expression="(x+1)^2", simplification=pb.SIMPLIFICATION_NONE)),
    ("simplify-full", D(expression="sin(x)^2 + cos(x)^2 + x", simplification=pb.SIMPLIFICATION_FULL)),
    ("parse-open-paren", D(expression="sin(x")),
    ("parse-dangling-op", D(expression="1/")),
    ("parse-double-op", D(expression="x +* y")),
    ("parse-empty", D(expression="")),
    ("unknown-function", D(expression="foo(x)")),
    ("python-injection", D(expression="__import__('os')")),
    ("attribute-access", D(expression="x.real")),
    ("several-free-variables", D(expression="x*y")),
    ("order-over-limit", D(expression="x^2", wrt=wrt(("x", 1000)))),
    ("unknown-simplification", D(expression="x", simplification=7)),  # type: ignore[arg-type]
    ("unknown-format", D(expression="x", formats=[9])),  # type: ignore[list-item]
    ("no-closed-form", D(expression="zeta(x)")),
    (
        "no-closed-form-inner",
        D(
            expression="zeta(x/2 + 3)",
            formats=[pb.OUTPUT_FORMAT_LATEX, pb.OUTPUT_FORMAT_PYTHON],
            explain=True,
            verify=True,
        ),
    ),
    ("no-closed-form-order", D(expression="polygamma(x, 2)", simplification=pb.SIMPLIFICATION_FULL)),
    ("huge-integer", D(expression="3^9100 + x^2", formats=list(pb.OutputFormat.values())[2:])),
    ("leibniz", D(expression="d/dx sin(x)")),
    ("inverse-or-reciprocal", D(expression="sin^-1(x)")),
    ("function-power", D(expression="sin^2 x + cos^2(x)")),
    ("nearest-function", D(expression="sinn(x)")),
    ("limit-in-words", D(expression="9^9^9 + x")),
    # Evaluate: one point, many points in both encodings, non-finite values, bad batches.
    ("eval-zero", E(expression="sin(x)", point={"x": 0.0})),
    ("eval-cbrt", E(expression="cbrt(x)", point={"x": -8.0})),
    ("eval-lists-derivative", E(expression="x^3", points={"x": values(1, 2, 3)}, wrt=wrt(("x", 2)))),
    ("eval-f64le", E(expression="sin(x y)", points={"x": f64le(0.5, 1.5), "y": f64le(2.0, 3.0)})),
    ("eval-mixed-broadcast", E(expression="x + y", points={"x": f64le(1, 2, 3), "y": pb.Array(values=[10])})),
    ("eval-nonfinite", E(expression="log(x) + 1/y", points={
        "x": pb.Array(values=[-1, 1, 1]), "y": pb.Array(values=[1, 0, 2])})),
    ("eval-point-and-points", E(expression="x", point={"x": 1}, points={"x": pb.Array(values=[1])})),
    ("eval-both-encodings", E(expression="x", points={"x": pb.Array(values=[1], f64le=b"\0" * 8)})),
    ("eval-ragged-bytes", E(expression="x", points={"x": pb.Array(f64le=b"\0" * 7)})),
    ("eval-lengths-differ", E(expression="x + y", points={
        "x": pb.Array(values=[1, 2]), "y": pb.Array(values=[1, 2, 3])})),
    ("eval-missing-point", E(expression="x + y", point={"x": 1})),
    ("eval-missing-column", E(expression="x + y", points={"y": pb.Array(values=[1])})),
    ("eval-parse-error", E(expression="x +", point={"x": 1})),
    # GradientAtPoint.
    ("grad-one-point", G(expression="x^2 y", variables=["y", "x", "t"], point={"x": 3, "y": 2},
                         hessian=True)),
    ("grad-all-variables", G(expression="x^2 + 3y", point={"x": 1, "y": 5})),
    ("grad-many-f64le", G(expression="x^2 y + sin(z)", points={
        "x": f64le(1, 2), "y": f64le(3, 4), "z": f64le(0, 1)}, hessian=True)),
    ("grad-many-lists", G(expression="x y", points={"x": values(1, 2), "y": values(3)})),
    ("grad-missing", G(expression="x y", point={"x": 1})),
    ("grad-parse-error", G(expression="sin(", point={"x": 1})),
    # GetServerInfo.
    ("server-info", pb.GetServerInfoRequest()),
    # Parse: a text that does not parse is an answer, with the same content either way.
    ("parse-rpc-canonical", pb.ParseRequest(expression="sin x² + y")),
    ("parse-rpc-open-paren", pb.ParseRequest(expression="sin(x")),
    ("parse-rpc-unknown-function", pb.ParseRequest(expression="2 foo(x)")),
    ("parse-rpc-too-long", pb.ParseRequest(expression="x" * 10_001)),
    # Far past the limit REST refused these itself once: a 400 for Parse, LIMIT_EXCEEDED for a name.
    ("parse-rpc-far-too-long", pb.ParseRequest(expression="x" * 200_000)),
    ("diff-far-too-long", D(expression="x+" * 100_000 + "x")),
    ("dependent-far-too-long", D(expression="x^2 + y^2 = 1", dependent="y" * 200_000)),
    ("series-variable-far-too-long", S(expression="x", variable="v" * 200_000)),
    # Implicit differentiation (Differentiate and Evaluate with `dependent`).
    ("implicit-circle", D(expression="x^2 + y^2 = 25", dependent="y", wrt=wrt(("x", 2)), formats=[LATEX])),
    ("implicit-explain", D(expression="x^2 + y^2 = 25", dependent="y", explain=True)),
    ("implicit-no-dependent", D(expression="x^2 + y^2 = 25")),
    ("implicit-dependent-absent", D(expression="x^2 + y^2 = 25", dependent="z")),
    ("implicit-dependent-is-wrt", D(expression="x^2 + y^2 = 25", dependent="y", wrt=wrt(("y", 1)))),
    ("implicit-two-equals", D(expression="x = y = 1", dependent="y")),
    ("implicit-eval", E(expression="x^2 + y^2 = 25", dependent="y", wrt=wrt(("x", 2)),
                        point={"x": 3, "y": 4})),
    ("implicit-eval-no-dependent", E(expression="x^2 + y^2 = 25", point={"x": 3, "y": 4})),
    ("implicit-no-closed-form", D(expression="zeta(x, y) = 1", dependent="y")),
    ("implicit-eval-no-closed-form", E(expression="zeta(x, y) = 1", dependent="y", point={"x": 3, "y": 4})),
    ("implicit-identity", D(expression="x + y = x + y", dependent="y")),
    ("implicit-no-other-variable", D(expression="y^2 = 25", dependent="y")),
    # Jacobian.
    ("jac-one-point", J(expressions=["x^2 y", "sin(x) + y z"], variables=["x", "y"],
                        point={"x": 1, "y": 2, "z": 3})),
    ("jac-many-f64le", J(expressions=["x y", "x + y^2", "exp(x)"],
                         points={"x": f64le(1, 2), "y": f64le(3, 4)})),
    ("jac-many-lists", J(expressions=["log(x)"], points={"x": values(-1, 1)})),
    ("jac-empty", J(expressions=[], point={"x": 1})),
    ("jac-parse-error-row", J(expressions=["x", "sin("], point={"x": 1})),
    ("jac-equation-row", J(expressions=["x = 1"], point={"x": 1})),
    ("jac-variable-twice", J(expressions=["x"], variables=["x", "x"], point={"x": 1})),
    ("jac-missing", J(expressions=["x y"], point={"x": 1})),
    ("jac-too-many-rows", J(expressions=["x"] * 65, point={"x": 1})),
    ("jac-too-many-free-variables", J(expressions=["+".join(f"v{i}" for i in range(40))], point={"v0": 1})),
    # Series.
    ("series-sin", S(expression="sin(x)", around="pi/2", order=2, formats=[LATEX])),
    ("series-default-order", S(expression="exp(x)")),
    ("series-order-zero", S(expression="cos(x)", order=0)),
    ("series-no-taylor-log", S(expression="log(x)")),
    ("series-no-taylor-abs", S(expression="abs(x)", order=3)),
    ("series-around-not-constant", S(expression="sin(x)", around="y")),
    ("series-around-parse-error", S(expression="sin(x)", around="1 +")),
    ("series-order-over-limit", S(expression="sin(x)", order=1000)),
    ("series-mathml", S(expression="sin(x)", formats=[MATHML])),
    ("series-no-closed-form", S(expression="zeta(x)", around="2", order=2)),
    ("series-equation", S(expression="sin(x)", around="x = 1")),
]  # fmt: skip

# RPC name and REST route per request type, as the proto's google.api.http options declare them.
ROUTES: dict[type[Message], tuple[str, str, str]] = {
    pb.DifferentiateRequest: ("Differentiate", "POST", "/v1/differentiate"),
    pb.EvaluateRequest: ("Evaluate", "POST", "/v1/evaluate"),
    pb.GradientAtPointRequest: ("GradientAtPoint", "POST", "/v1/gradient"),
    pb.JacobianRequest: ("Jacobian", "POST", "/v1/jacobian"),
    pb.SeriesRequest: ("Series", "POST", "/v1/series"),
    pb.GetServerInfoRequest: ("GetServerInfo", "GET", "/v1/info"),
    pb.ParseRequest: ("Parse", "POST", "/v1/parse"),
}


def to_json(message: Message) -> dict[str, Any]:
    """The proto3 JSON the REST transport promises (lowerCamelCase, fields without presence printed)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


async def via_grpc(stub: pb_grpc.DifferentiationServiceAsyncStub, request: Message) -> Outcome:
    rpc, _, _ = ROUTES[type(request)]
    try:
        response = await getattr(stub, rpc)(request)
    except grpc.aio.AioRpcError as error:
        trailers = dict(error.trailing_metadata() or ())
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == error.code().value[0]
        return HTTP_STATUS[errors.Code(status.code)], json_format.MessageToDict(status)
    return 200, to_json(response)


async def via_rest(client: httpx.AsyncClient, request: Message) -> Outcome:
    _, method, path = ROUTES[type(request)]
    if method == "GET":
        response = await client.get(path)
    else:
        body = json_format.MessageToJson(request)
        response = await client.post(path, content=body, headers={"content-type": "application/json"})
    return response.status_code, response.json()


@pytest.fixture(scope="session")
async def rest_client(app: Application) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=30) as client:
        yield client


@pytest.mark.parametrize("request_", [case for _, case in CASES], ids=[name for name, _ in CASES])
async def test_grpc_and_rest_agree(
    stub: pb_grpc.DifferentiationServiceAsyncStub, rest_client: httpx.AsyncClient, request_: Message
) -> None:
    grpc_status, grpc_body = await via_grpc(stub, request_)
    rest_status, rest_body = await via_rest(rest_client, request_)
    assert rest_status == grpc_status
    assert rest_body == grpc_body


def test_the_table_covers_successes_and_each_error_reason() -> None:
    """Guard the table itself: it must keep exercising both outcomes and every documented reason."""
    names = {name for name, _ in CASES}
    assert {"seed-sin-square", "eval-f64le", "grad-many-f64le", "server-info"} <= names
    assert {"parse-open-paren", "unknown-function", "eval-missing-point", "order-over-limit"} <= names
    assert {
        "no-closed-form",
        "huge-integer",
        "jac-many-f64le",
        "series-sin",
        "series-no-taylor-log",
        "implicit-circle",
    } <= names
    assert {type(request) for _, request in CASES} == set(ROUTES)


# (expression, function, argument): derivatives the grammar cannot write, refused alike by both transports.
NO_CLOSED_FORM = [
    ("zeta(x)", "zeta", "1"),
    ("zeta(x/2 + 3)", "zeta", "1"),
    ("zeta(x, 2)", "zeta", "1"),
    ("polygamma(x, 2)", "polygamma", "1"),
    ("Heaviside(x, x^2)", "Heaviside", "2"),
]


@pytest.mark.parametrize(
    ("expression", "function", "argument"), NO_CLOSED_FORM, ids=[r[0] for r in NO_CLOSED_FORM]
)
async def test_no_closed_form_is_a_failed_precondition_on_both(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
    rest_client: httpx.AsyncClient,
    expression: str,
    function: str,
    argument: str,
) -> None:
    request = D(expression=expression)
    grpc_status, grpc_body = await via_grpc(stub, request)
    rest_status, rest_body = await via_rest(rest_client, request)
    code = errors.Code.FAILED_PRECONDITION
    assert grpc_body["code"] == rest_body["code"] == code
    assert grpc_status == rest_status == HTTP_STATUS[code] == 400
    (info,) = [d for d in rest_body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["reason"] == "NO_CLOSED_FORM"
    assert info["metadata"] == {"function": function, "argument": argument}
    # The numeric RPCs give its values all the same (mpmath, point by point): the message says so.
    assert "Evaluate with wrt, or GradientAtPoint, computes its values numerically" in rest_body["message"]


# Those derivatives have values: Evaluate with wrt, GradientAtPoint and Jacobian give the same ones on
# both transports (tests/server/test_every_number.py checks them against mpmath).
WITHOUT_CLOSED_FORM = [
    E(expression="zeta(x)", wrt=wrt(("x", 1)), point={"x": 2.5}),
    G(expression="zeta(x/2 + 3) y", point={"x": 1.0, "y": 2.0}),
    J(expressions=["x", "polygamma(x, 2)"], point={"x": 1.5}),
]


@pytest.mark.parametrize("request_", WITHOUT_CLOSED_FORM, ids=["evaluate", "gradient", "jacobian"])
async def test_derivatives_without_closed_form_have_the_same_values_on_both(
    stub: pb_grpc.DifferentiationServiceAsyncStub, rest_client: httpx.AsyncClient, request_: Message
) -> None:
    grpc_status, grpc_body = await via_grpc(stub, request_)
    rest_status, rest_body = await via_rest(rest_client, request_)
    assert grpc_status == rest_status == 200 and grpc_body == rest_body
    assert int(rest_body.get("nonfiniteCount", 0)) == 0  # proto3 JSON writes an int64 as a string


@pytest.mark.parametrize(
    "request_", [D(), E(point={"x": 1}), G(point={"x": 1})], ids=["differentiate", "evaluate", "gradient"]
)
async def test_a_missing_expression_is_said_to_be_required(
    stub: pb_grpc.DifferentiationServiceAsyncStub, rest_client: httpx.AsyncClient, request_: Message
) -> None:
    for status, body in (await via_grpc(stub, request_), await via_rest(rest_client, request_)):
        assert status == 400
        assert body["message"] == "expression is required: send one, such as sin(x^2)"
        assert body["details"][0]["fieldViolations"][0]["field"] == "expression"


async def test_an_implicit_derivative_without_closed_form_has_values(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    """y' of zeta(x, y) = 1 is -F_x/F_y, with F_x = d/dx zeta(x, y) computed as Evaluate with wrt
    computes it; Evaluate with `dependent` refused it as Differentiate does (an independent tester)."""
    request = E(expression="zeta(x, y) = 1", dependent="y", wrt=wrt(("x", 1)), point={"x": 3, "y": 4})
    value = (await stub.Evaluate(request)).value
    mpmath.mp.dps = 30
    f_x = mpmath.diff(lambda s: mpmath.zeta(s, 4), 3)
    f_y = -3 * mpmath.zeta(4, 4)
    assert value == pytest.approx(float(-f_x / f_y), rel=1e-13, abs=0)
