"""Jacobian, series and implicit differentiation from both clients; UNIMPLEMENTED from an older server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from chainrule.client import (
    AsyncClient,
    ChainruleError,
    Client,
    InvalidArgumentError,
    Jacobian,
    ParseError,
    Series,
    UnimplementedError,
)

XS = [i / 9 + 0.1 for i in range(40)]


def test_jacobian_at_one_point(client: Client) -> None:
    result = client.jacobian(["x^2*y", "5x + sin(y)"], {"x": 1.0, "y": 2.0})
    assert isinstance(result, Jacobian)
    assert result.variables == ("x", "y")
    assert result.values == (2.0, 5.0 + math.sin(2.0))
    assert result.jacobian == ((4.0, 1.0), (5.0, math.cos(2.0)))
    assert result.value_arrays is None and result.nonfinite_count == 0


def test_jacobian_at_many_points_and_in_chunks(client: Client) -> None:
    points: dict[str, float | list[float]] = {"x": XS, "y": 2.0}
    whole = client.jacobian(["x*y", "log(x)"], points=points, variables=["x"])
    assert whole.variables == ("x",) and whole.jacobian is None
    assert whole.value_arrays is not None and whole.jacobian_arrays is not None
    assert whole.jacobian_arrays[0][0] == [2.0] * len(XS)
    assert whole.jacobian_arrays[1][0] == pytest.approx([1 / x for x in XS], rel=1e-15, abs=0)
    chunked = client.jacobian(["x*y", "log(x)"], points=points, variables=["x"], chunk_points=7)
    assert chunked.value_arrays == whole.value_arrays and chunked.jacobian_arrays == whole.jacobian_arrays


def test_series(client: Client) -> None:
    result = client.series("sin(x)", around="pi/2", order=2, latex=True)
    assert isinstance(result, Series)
    assert (result.series, result.coefficients, result.remainder) == (
        "1 - (x - pi/2)^2/2",
        ("1", "0", "-1/2"),
        "O((x - pi/2)^3)",
    )
    assert result.latex is not None and "\\pi" in result.latex
    assert client.series("exp(t)", order=2, around=1).series == "E + E*(t - 1) + E*(t - 1)^2/2"
    assert client.series("cos(x)").latex is None
    assert len(client.series("cos(x)").coefficients) == 6  # the server's default order, 5


@pytest.mark.parametrize(("order", "around"), [("3", 0), (2, True), (2, None)])
def test_a_series_argument_of_the_wrong_type_is_a_type_error(
    client: Client, order: object, around: object
) -> None:
    """'<=' not supported was raised for order "3", and around=True was sent as the text "True"."""
    with pytest.raises(TypeError, match=r"^(order|around) must be"):
        client.series("sin(x)", order=order, around=around)  # type: ignore[arg-type]


def test_a_number_around_is_sent_as_its_exact_text(client: Client) -> None:
    """numpy 2's repr of a float is "np.float64(0.5)", which the server read as a call."""
    numpy = pytest.importorskip("numpy")
    assert client.series("x^2", around=numpy.float64(0.5), order=1).coefficients == ("1/4", "1")
    for around in (math.nan, math.inf, 10**5000):
        with pytest.raises(ValueError, match="around"):
            client.series("x", around=around)


def test_no_taylor_series_is_a_failed_precondition(client: Client) -> None:
    with pytest.raises(ChainruleError) as caught:
        client.series("log(x)")
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.reason == "NO_TAYLOR_SERIES"
    assert "no Taylor series at x = 0" in caught.value.message


def test_implicit_differentiation_and_its_values(client: Client) -> None:
    first = client.differentiate("x^2 + y^2 = 25", dependent="y")
    assert first.derivative == "-x/y" and first.variables == ("x", "y")
    second = client.evaluate("x^2 + y^2 = 25", {"x": 3.0, "y": 4.0}, wrt={"x": 2}, dependent="y")
    assert second.value == -25 / 64
    with pytest.raises(ParseError, match="dependent"):
        client.differentiate("x^2 + y^2 = 25")
    with pytest.raises(InvalidArgumentError) as caught:
        client.differentiate("x^2 + y^2 = 25", "y", dependent="y")
    assert [v.field for v in caught.value.field_violations] == ["dependent"]


def test_the_async_client_has_the_same_calls(target: str) -> None:
    async def scenario() -> tuple[Jacobian, Series, float | None]:
        async with AsyncClient(target) as client:
            jacobian = await client.jacobian(["x*y"], points={"x": [1.0, 2.0], "y": [3.0]}, chunk_points=1)
            series = await client.series("1/(1 - x)", order=3)
            value = await client.evaluate("x^2 + y^2 = 25", {"x": 3, "y": 4}, dependent="y")
            return jacobian, series, value.value

    jacobian, series, value = asyncio.run(scenario())
    assert jacobian.jacobian_arrays == (([3.0, 3.0], [1.0, 2.0]),)
    assert series.series == "1 + x + x^2 + x^3"
    assert value == -0.75


@pytest.fixture(scope="module")
def older_server() -> Iterator[str]:
    """A gRPC server with no chainrule service at all: every call is UNIMPLEMENTED, as from a 0.1 server."""
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_unimplemented_from_an_older_server_says_what_is_needed(older_server: str) -> None:
    with Client(older_server, timeout=5) as client, pytest.raises(UnimplementedError) as caught:
        client.jacobian(["x"], {"x": 1.0})
    message = str(caught.value)
    assert "does not implement Jacobian" in message and "chainrule 0.2.0 or later" in message
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED

    async def scenario() -> None:
        async with AsyncClient(older_server, timeout=5) as client:
            await client.series("sin(x)")

    with pytest.raises(UnimplementedError, match="does not implement Series"):
        asyncio.run(scenario())


def test_jacobian_with_numpy_arrays(client: Client) -> None:
    np = pytest.importorskip("numpy")
    x = np.linspace(0.5, 2.0, 1000)
    result = client.jacobian(["x*y", "x^2"], points={"x": x, "y": np.full(1000, 3.0)}, chunk_points=300)
    assert result.jacobian_arrays is not None and result.value_arrays is not None
    dx2 = result.jacobian_arrays[1][0]
    assert isinstance(dx2, np.ndarray) and dx2.dtype == np.float64
    np.testing.assert_array_equal(dx2, 2 * x)
    np.testing.assert_array_equal(result.jacobian_arrays[0][1], x)
