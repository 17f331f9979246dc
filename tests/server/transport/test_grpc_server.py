"""The gRPC transport against a real server on a loopback port: seed examples, errors, batches."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket

import grpc
import numpy as np
import pytest
import sympy
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from chainrule.engine import parsing
from chainrule.server.app import Application
from chainrule.server.config import Settings
from chainrule.server.transport import grpc_server
from chainrule.server.transport.grpc_server import PortInUseError, _parsed, create_server
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import bytes_left_behind, make_settings, status_detail, threads_calling
from tests.h2raw import NonReadingClient

x = parsing.symbol("x")


def rich_status(error: grpc.aio.AioRpcError) -> tuple[status_pb2.Status, dict[str, object]]:
    """The google.rpc.Status a server sent, and its details by type name."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    details: dict[str, object] = {}
    for packed in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if packed.Is(kind.DESCRIPTOR):  # type: ignore[arg-type]  # upb and python descriptors
                message = kind()
                packed.Unpack(message)
                details[kind.__name__] = message
    return status, details


def same(text: str, expected: sympy.Expr) -> bool:
    return sympy.simplify(parsing.parse(text) - expected) == 0


# The seed lesson's worked examples, exactly as the lesson writes them.
SEED_EXAMPLES = [
    ("(3x + 1)²", 18 * x + 6, "outer 2u at u=3x+1, inner 3"),
    ("sin(x²)", 2 * x * sympy.cos(x**2), "cos(x²), not cos(x), times 2x"),
    ("(sin x)³", 3 * sympy.sin(x) ** 2 * sympy.cos(x), "power outside, sine inside"),
    ("sin(cos x)", -sympy.sin(x) * sympy.cos(sympy.cos(x)), "sine outside, cosine inside"),
    ("e^(2x)", 2 * sympy.exp(2 * x), "exp is its own derivative, times 2"),
]


@pytest.mark.parametrize(("expression", "expected", "reason"), SEED_EXAMPLES)
async def test_seed_examples(
    stub: pb_grpc.DifferentiationServiceAsyncStub, expression: str, expected: sympy.Expr, reason: str
) -> None:
    response = await stub.Differentiate(pb.DifferentiateRequest(expression=expression))
    assert same(response.derivative, expected), reason
    assert list(response.variables) == ["x"]


async def test_outer_derivative_is_evaluated_at_the_inner_function(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    response = await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x^2)"))
    derivative = parsing.parse(response.derivative)
    assert derivative.has(sympy.cos(x**2))
    assert not derivative.has(sympy.cos(x))


async def test_mixed_partial_and_latex(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    request = pb.DifferentiateRequest(
        expression="x^3 y^2 + sin(x y)",
        wrt=[pb.Wrt(variable="x", order=2), pb.Wrt(variable="y", order=1)],
        formats=[pb.OUTPUT_FORMAT_LATEX],
    )
    response = await stub.Differentiate(request)
    y = parsing.symbol("y")
    expected = sympy.diff(x**3 * y**2 + sympy.sin(x * y), x, 2, y)
    assert same(response.derivative, expected)
    assert response.latex and "\\" in response.latex
    assert list(response.variables) == ["x", "y"]


async def test_constant_differentiates_to_zero(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    response = await stub.Differentiate(pb.DifferentiateRequest(expression="2 pi"))
    assert response.derivative == "0"
    assert list(response.variables) == []


MALFORMED = [
    ("sin(x", "PARSE_ERROR"),
    ("1/", "PARSE_ERROR"),
    ("x +* y", "PARSE_ERROR"),
    ("", "PARSE_ERROR"),
    ("foo(x)", "UNKNOWN_FUNCTION"),
    ("__import__('os')", "PARSE_ERROR"),
    ("x.real", "PARSE_ERROR"),
]


@pytest.mark.parametrize(("expression", "reason"), MALFORMED)
async def test_malformed_text_is_invalid_argument_with_position(
    stub: pb_grpc.DifferentiationServiceAsyncStub, expression: str, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Differentiate(pb.DifferentiateRequest(expression=expression))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status, details = rich_status(caught.value)
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == reason
    position = int(info.metadata["position"])
    assert 0 <= position <= len(expression)
    if expression:  # (a missing one is said to be required)
        assert re.search(rf"\bat {position}\b", status.message), status.message
    bad_request = details["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == ["expression"]
    # The server is unharmed: a normal request right after succeeds.
    ok = await stub.Differentiate(pb.DifferentiateRequest(expression="x^2"))
    assert same(ok.derivative, 2 * x)


async def test_several_free_variables_without_wrt_names_them(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Differentiate(pb.DifferentiateRequest(expression="x*y"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x" in (caught.value.details() or "") and "y" in (caught.value.details() or "")


async def test_evaluate_one_point_returns_value_even_when_zero(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    response = await stub.Evaluate(pb.EvaluateRequest(expression="sin(x)", point={"x": 0.0}))
    assert response.HasField("value") and response.value == 0.0
    response = await stub.Evaluate(pb.EvaluateRequest(expression="cbrt(x)", point={"x": -8.0}))
    assert response.value == pytest.approx(-2.0, rel=1e-15, abs=0)


async def test_evaluate_derivative_at_points_as_lists(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    request = pb.EvaluateRequest(
        expression="x^3", points={"x": pb.Array(values=[1.0, 2.0, 3.0])}, wrt=[pb.Wrt(variable="x", order=2)]
    )
    response = await stub.Evaluate(request)
    assert list(response.values.values) == [6.0, 12.0, 18.0]
    assert response.values.f64le == b""


async def test_nonfinite_values_are_counted_not_errors(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    request = pb.EvaluateRequest(
        expression="log(x) + 1/y",
        points={"x": pb.Array(values=[-1.0, 1.0, 1.0]), "y": pb.Array(values=[1.0, 0.0, 2.0])},
    )
    response = await stub.Evaluate(request)
    values = list(response.values.values)
    assert np.isnan(values[0]) and np.isinf(values[1]) and values[2] == 0.5
    assert response.nonfinite_count == 2


def f64le(values: np.ndarray) -> pb.Array:
    return pb.Array(f64le=values.astype("<f8").tobytes())


def columns(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261130)
    return {name: rng.uniform(0.5, 2.0, n) for name in "wxyz"}


async def test_evaluate_a_million_points_matches_numpy(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    data = columns(1_000_000)
    request = pb.EvaluateRequest(
        expression="sin(x y) + exp(-z^2) log(1 + w^2)", points={k: f64le(v) for k, v in data.items()}
    )
    response = await stub.Evaluate(request)
    got = np.frombuffer(response.values.f64le, dtype="<f8")
    w, xs, y, z = data["w"], data["x"], data["y"], data["z"]
    expected = np.sin(xs * y) + np.exp(-(z**2)) * np.log(1 + w**2)
    assert np.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert response.nonfinite_count == 0


async def test_gradient_and_hessian_at_many_points(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    # 21 columns of 250,000 points: 42 MB, within the default reply (64 MiB) and working (256 MiB) limits.
    data = columns(250_000)
    request = pb.GradientAtPointRequest(
        expression="x^2 y + sin(z) w",
        points={k: f64le(v) for k, v in data.items()},
        hessian=True,
    )
    response = await stub.GradientAtPoint(request)
    assert list(response.variables) == ["w", "x", "y", "z"]
    w, xs, y, z = data["w"], data["x"], data["y"], data["z"]
    grads = [np.frombuffer(a.f64le, dtype="<f8") for a in response.gradients]
    expected = [np.sin(z), 2 * xs * y, xs**2, w * np.cos(z)]
    for got, want in zip(grads, expected, strict=True):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    hessians = [np.frombuffer(a.f64le, dtype="<f8") for a in response.hessians]
    assert len(hessians) == 16
    zero = np.zeros_like(xs)
    want_h = [
        zero,
        zero,
        zero,
        np.cos(z),
        zero,
        2 * y,
        2 * xs,
        zero,
        zero,
        2 * xs,
        zero,
        zero,
        np.cos(z),
        zero,
        zero,
        -w * np.sin(z),
    ]
    for got, want in zip(hessians, want_h, strict=True):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


async def test_gradient_at_one_point(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    request = pb.GradientAtPointRequest(
        expression="x^2 y", variables=["y", "x", "t"], point={"x": 3.0, "y": 2.0}, hessian=True
    )
    response = await stub.GradientAtPoint(request)
    assert list(response.variables) == ["y", "x", "t"]
    assert response.value == 18.0
    assert list(response.gradient) == [9.0, 12.0, 0.0]
    assert list(response.hessian) == [0.0, 6.0, 0.0, 6.0, 4.0, 0.0, 0.0, 0.0, 0.0]


async def test_gradient_by_some_of_the_variables(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    # The parameters-only gradient: by x alone, with y given in the point too.
    request = pb.GradientAtPointRequest(
        expression="x*y", variables=["x"], point={"x": 1.5, "y": 2.0}, hessian=True
    )
    response = await stub.GradientAtPoint(request)
    assert list(response.variables) == ["x"]
    assert (response.value, list(response.gradient), list(response.hessian)) == (3.0, [2.0], [0.0])


async def test_gradient_by_parameters_over_data_columns(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    # Fitting a*x + b: the gradient by a and b, x a column, a and b broadcast.
    xs = np.array([0.0, 1.0, 2.0, 3.0])
    request = pb.GradientAtPointRequest(
        expression="(a*x + b)^2",
        variables=["a", "b"],
        points={"x": f64le(xs), "a": pb.Array(values=[2.0]), "b": pb.Array(values=[1.0])},
    )
    response = await stub.GradientAtPoint(request)
    residual = 2.0 * xs + 1.0
    value, by_a, by_b = (np.frombuffer(a.f64le, "<f8") for a in (response.values, *response.gradients))
    np.testing.assert_array_equal(value, residual**2)
    np.testing.assert_array_equal(by_a, 2 * residual * xs)
    np.testing.assert_array_equal(by_b, 2 * residual)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GradientAtPointRequest(expression="x*y", variables=["x"], point={"x": 1.0}), "point.y"),
        (
            pb.GradientAtPointRequest(
                expression="x*y", variables=["x"], points={"x": pb.Array(values=[1.0])}
            ),
            "points.y",
        ),
    ],
)
async def test_gradient_missing_variable_names_the_field_sent(
    stub: pb_grpc.DifferentiationServiceAsyncStub, request_: pb.GradientAtPointRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GradientAtPoint(request_)
    _, details = rich_status(caught.value)
    bad_request = details["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == [field]


BAD_BATCHES = [
    (pb.EvaluateRequest(expression="x", point={"x": 1.0}, points={"x": pb.Array(values=[1.0])}), "points"),
    (pb.EvaluateRequest(expression="x", points={"x": pb.Array(values=[1.0], f64le=b"\0" * 8)}), "points.x"),
    (pb.EvaluateRequest(expression="x", points={"x": pb.Array(f64le=b"\0" * 7)}), "points.x.f64le"),
    (
        pb.EvaluateRequest(
            expression="x + y",
            points={"x": pb.Array(values=[1.0, 2.0]), "y": pb.Array(values=[1.0, 2.0, 3.0])},
        ),
        "points.x",
    ),
    (pb.EvaluateRequest(expression="x + y", point={"x": 1.0}), "point.y"),
    (pb.EvaluateRequest(expression="x + y", points={"y": pb.Array(values=[1.0])}), "points.x"),
]


@pytest.mark.parametrize(("request_", "field"), BAD_BATCHES)
async def test_bad_batches_name_the_field(
    stub: pb_grpc.DifferentiationServiceAsyncStub, request_: pb.EvaluateRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Evaluate(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, details = rich_status(caught.value)
    bad_request = details["BadRequest"]
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert field in [v.field for v in bad_request.field_violations]


# Columns of 40,000 points (320 kB): requests this big have their columns read from their bytes.
BIG = 40_000
BIG_BAD_BATCHES = [
    (
        pb.EvaluateRequest(expression="x", points={"x": pb.Array(f64le=b"\0" * (8 * BIG + 4))}),
        "points.x.f64le",
    ),
    (
        pb.EvaluateRequest(expression="x+y", points={"x": f64le(np.ones(BIG)), "y": f64le(np.ones(BIG - 1))}),
        "points.y",
    ),
    (pb.EvaluateRequest(expression="x", point={"x": 1.0}, points={"x": f64le(np.ones(BIG))}), "points"),
    (pb.EvaluateRequest(expression="x + y", points={"x": f64le(np.ones(BIG))}), "points.y"),
    (
        pb.EvaluateRequest(expression="x", points={"x": pb.Array(values=[1.0], f64le=b"\0" * 8 * BIG)}),
        "points.x",
    ),
]


@pytest.mark.parametrize(("request_", "field"), BIG_BAD_BATCHES)
async def test_bad_big_batches_name_the_field(
    stub: pb_grpc.DifferentiationServiceAsyncStub, request_: pb.EvaluateRequest, field: str
) -> None:
    await test_bad_batches_name_the_field(stub, request_, field)


async def test_big_columns_in_any_layout_are_read_alike(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    # Columns as views of the request's bytes (x: f64le alone) or parsed by protobuf (y: a list).
    data = columns(BIG)
    points = {"x": f64le(data["x"]), "y": pb.Array(values=data["y"].tolist())}
    for request in (
        pb.GradientAtPointRequest(expression="x^3 y", points=points),
        pb.GradientAtPointRequest(expression="x^3 y", points={"x": points["x"], "y": f64le(data["y"])}),
    ):
        response = await stub.GradientAtPoint(request)
        xs, y = data["x"], data["y"]
        for got, want in zip(
            (response.values, *response.gradients), (xs**3 * y, 3 * xs**2 * y, xs**3), strict=True
        ):
            assert np.allclose(np.frombuffer(got.f64le, "<f8"), want, rtol=1e-13, atol=0)


async def test_a_big_batch_is_read_without_parsing_its_columns() -> None:
    data = columns(BIG)
    views = pb.EvaluateRequest(
        expression="x*y", points={k: f64le(v) for k, v in data.items()}
    ).SerializeToString()
    request, read = await _parsed(pb.EvaluateRequest, views, 64, asyncio.to_thread)
    assert request.expression == "x*y" and not request.points
    assert read.points is not None and set(read.points) == set(data) and read.request_bytes < 16
    listed = pb.EvaluateRequest(expression="x", points={"x": pb.Array(values=data["x"].tolist())})
    request, read = await _parsed(pb.EvaluateRequest, listed.SerializeToString(), 64, asyncio.to_thread)
    assert read.points is None and request == listed


async def test_missing_variable_reason(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Evaluate(pb.EvaluateRequest(expression="x + y", point={"x": 1.0}))
    _, details = rich_status(caught.value)
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "MISSING_VARIABLE"
    assert "'y'" in (caught.value.details() or "")


async def test_server_info_lists_functions_and_limits(stub: pb_grpc.DifferentiationServiceAsyncStub) -> None:
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    assert info.version
    assert {"sin", "arcsin", "log", "ln", "cbrt", "root"} <= set(info.functions)
    assert {limit.name for limit in info.limits} >= {"expression_length", "points", "derivative_order"}


async def test_health_serves(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(
        health_pb2.HealthCheckRequest(service="chainrule.v1.DifferentiationService")
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request])):
        names = [s.name for s in response.list_services_response.service]
        assert "chainrule.v1.DifferentiationService" in names
        break


async def test_a_taken_port_fails_clearly(app: Application) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=str(taken)):
            create_server(make_settings(grpc_port=taken), app.api)


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12" + b"\xff" * 300_000])
async def test_a_request_that_is_not_a_message_is_invalid_argument(
    channel: grpc.aio.Channel, data: bytes
) -> None:
    # Requests are parsed by the servicer (big ones on a thread), so garbage is the caller's mistake.
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/chainrule.v1.DifferentiationService/Evaluate"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(data, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, found = rich_status(caught.value)
    info = found["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "MALFORMED_MESSAGE"


async def test_a_call_without_its_message_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    # Handlers read their message themselves (transport/receiving.py): a call may end without one.
    call: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
        "/chainrule.v1.DifferentiationService/Evaluate"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(iter(()), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = status_detail(caught.value, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "NO_MESSAGE", info


async def test_a_message_over_the_limit_is_refused_by_grpc_and_the_server_serves_on(
    channel: grpc.aio.Channel, stub: pb_grpc.DifferentiationServiceAsyncStub
) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/chainrule.v1.DifferentiationService/Evaluate"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(bytes(Settings().max_request_bytes + 1), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in str(caught.value.details())
    assert rpc_status.from_call(caught.value) is None, "grpc's own status: no RetryInfo, never retried"
    reply = await stub.Evaluate(pb.EvaluateRequest(expression="x + 1", point={"x": 1.0}), timeout=10)
    assert reply.value == 2.0


_COSTLY = " + ".join(f"sin({k}*x)^2" for k in range(1, 80))  # + a new term each call: never cached


@pytest.mark.parametrize(
    ("expression", "timeout", "code"),
    [
        ("x + 1", None, grpc.StatusCode.OK),
        ("x + y", None, grpc.StatusCode.INVALID_ARGUMENT),
        (_COSTLY, 0.05, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
    ids=["answered", "refused: no column for y", "out of time in a cold parse"],
)
async def test_a_finished_call_leaves_nothing_for_the_garbage_collector(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
    expression: str,
    timeout: float | None,
    code: grpc.StatusCode,
) -> None:
    """Ten finished 2 MB calls hold no request or reply once done, however they ended. A call in a
    reference cycle lived until a full collection: its done callback held the instrumented context
    and its request (20 calls of 48 MB held 1 GB); grpc keeps the exception that aborts a call, whose
    frames held the request; and an error shared by a single-flight computation's waiters held every
    waiter's frames, and the worker killed for it (tests/conftest.py, `bytes_left_behind`)."""
    points = {"x": pb.Array(f64le=np.linspace(0, 1, 250_000).tobytes())}
    calls = itertools.count()

    async def call() -> None:
        text = expression if timeout is None else f"{expression} + {next(calls)}*x"
        try:
            await stub.Evaluate(pb.EvaluateRequest(expression=text, points=points), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            assert error.code() == code
        else:
            assert code == grpc.StatusCode.OK

    held = await bytes_left_behind(call)
    assert held < 3_000_000, f"{held:,} bytes held after the calls"


@pytest.mark.parametrize("window", [64 * 1024, 1024 * 1024])
async def test_a_call_waiting_to_read_is_held_at_the_stream_window_set(window: int) -> None:
    """GRPC_STREAM_WINDOW_BYTES is the initial window grpc announces, and what a call that waits for
    a receiving slot may send before its handler reads (sizing's `receiving` term counts it)."""
    app = Application(
        make_settings(symbolic_workers=0, grpc_receiving_calls=1, grpc_stream_window_bytes=window)
    )
    await app.start()
    try:
        async with NonReadingClient(app.grpc_port, "127.0.0.1") as client:
            async with asyncio.timeout(5):
                while client.initial_window != window:  # the server's SETTINGS
                    await asyncio.sleep(0.01)
            declared = 8 * 1024 * 1024
            await client.start_call("Evaluate", declared=declared, sent=declared // 2)  # takes the slot
            reading = client.sent
            assert reading > window, "the message being read got a window of its length"
            await client.start_call("Evaluate", declared=declared, sent=declared // 2)  # waits
            assert client.sent - reading == window
    finally:
        await app.stop()


async def test_a_big_request_is_parsed_in_the_callers_share_of_the_numeric_threads(
    stub: pb_grpc.DifferentiationServiceAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing holds the GIL: on asyncio's own threads, shared by every caller, eight 10 MB messages
    # of one address kept another caller's Evaluate waiting 8.5 s (an attack hunt, 2026-12-05).
    threads = threads_calling(monkeypatch, grpc_server, "_counted_then_parsed")
    listed = {"x": pb.Array(values=np.linspace(0, 1, 40_000).tolist())}  # listed: not split on the loop
    reply = await stub.Evaluate(pb.EvaluateRequest(expression="x^2", points=listed), timeout=60)
    assert len(reply.values.values) + len(reply.values.f64le) // 8 == 40_000
    assert len(threads) == 1 and threads[0].startswith("numeric"), threads


async def test_a_long_reply_is_serialised_in_the_callers_share_of_the_numeric_threads(
    stub: pb_grpc.DifferentiationServiceAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cached 16 MB Differentiate reply costs some 2 ms a copy: many calls asking for it at once
    # held the event loop (an independent attacker). Past OFFLOAD_BYTES (256 KiB) it is copied on a
    # numeric thread, behind their fair admission.
    threads = threads_calling(monkeypatch, grpc_server, "_bytes_of")
    monkeypatch.setattr(grpc_server, "OFFLOAD_BYTES", 1024)  # scaled down, as the reply is
    expression = "*".join(f"sin({k}*x)" for k in range(1, 20))  # 19 terms of 19 factors
    reply = await stub.Differentiate(pb.DifferentiateRequest(expression=expression), timeout=60)
    assert reply.ByteSize() > grpc_server.OFFLOAD_BYTES
    assert len(threads) == 1 and threads[0].startswith("numeric"), threads
