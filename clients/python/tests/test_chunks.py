"""`chunk_points`: one batch as several calls, joined in order, equal to the single call."""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import fractions
import math

import pytest

from chainrule.client import (
    AsyncClient,
    Client,
    InvalidArgumentError,
    LimitExceededError,
    ResourceExhaustedError,
)

XS = [i / 7 - 3 for i in range(101)]  # 101 points: no chunk size below divides it evenly


@pytest.mark.parametrize(("chunk_points", "in_flight"), [(10, 1), (10, 3), (50, 2), (100, 2), (500, 2)])
def test_evaluate_lists_in_chunks_equals_one_call(client: Client, chunk_points: int, in_flight: int) -> None:
    # A number and a one-value list apply to every point.
    points: dict[str, float | list[float]] = {"x": XS, "a": 2.0, "b": [1.5]}
    whole = client.evaluate("a*sin(x) + b", points=points)
    chunked = client.evaluate("a*sin(x) + b", points=points, chunk_points=chunk_points, in_flight=in_flight)
    assert chunked.values == whole.values
    assert chunked.nonfinite_count == whole.nonfinite_count == 0


def test_nonfinite_counts_add_up(client: Client) -> None:
    chunked = client.evaluate("log(x)", points={"x": XS}, chunk_points=7)
    assert chunked.nonfinite_count == sum(1 for x in XS if x <= 0)  # NaN below 0, -Infinity at 0
    assert chunked.values is not None and math.isnan(chunked.values[0])


def test_gradient_and_hessian_in_chunks(client: Client) -> None:
    points = {"x": XS, "y": [x / 2 for x in XS]}
    whole = client.gradient("x^2*y + sin(x*y)", points=points, hessian=True)
    chunked = client.gradient("x^2*y + sin(x*y)", points=points, hessian=True, chunk_points=20)
    assert chunked.variables == whole.variables
    assert chunked.values == whole.values and chunked.gradients == whole.gradients
    assert chunked.hessians == whole.hessians


def test_a_last_slice_of_one_point(client: Client) -> None:
    whole = client.gradient("x^3", points={"x": XS})
    chunked = client.gradient("x^3", points={"x": XS}, chunk_points=25)  # 101 = 4 * 25 + 1
    assert chunked.values == whole.values and chunked.gradients == whole.gradients
    assert chunked.gradients is not None and len(chunked.gradients[0]) == len(XS)


def test_past_the_message_limit_only_in_chunks(target: str) -> None:
    np = pytest.importorskip("numpy")
    x = np.linspace(-1, 1, 40_000)  # 320 kB as f64le
    with Client(target, max_message_bytes=100_000) as small:
        with pytest.raises(ResourceExhaustedError):
            small.evaluate("x^2", points={"x": x})
        chunked = small.evaluate("x^2", points={"x": x}, chunk_points=10_000)
    assert isinstance(chunked.values, np.ndarray)
    np.testing.assert_array_equal(chunked.values, x**2)


def test_a_reply_over_the_servers_limit_goes_through_in_chunks(client: Client) -> None:
    np = pytest.importorskip("numpy")
    # 8 variables with Hessian: 73 columns; 120,000 points reply 70 MB, over the default 64 MiB.
    names = [f"v{k}" for k in range(8)]
    points = {name: (np.arange(120_000) % 97) / 10 + k for k, name in enumerate(names)}
    expression = "v0*v1 + v2*v3 + v4*v5 + v6*v7"
    with pytest.raises(LimitExceededError) as caught:
        client.gradient(expression, points=points, hessian=True)
    assert caught.value.metadata["limit"] == "response_bytes"
    assert int(caught.value.metadata["points_that_fit"]) < 120_000
    chunked = client.gradient(expression, points=points, hessian=True, chunk_points=40_000)
    assert chunked.gradients is not None and chunked.hessians is not None
    np.testing.assert_array_equal(chunked.gradients[0], points["v1"])  # d/dv0 = v1, at every point
    assert len(chunked.hessians) == 8 and len(chunked.hessians[0][1]) == 120_000


def test_a_failing_slice_raises_its_own_error(target: str) -> None:
    xs = [float(i) for i in range(10_001)]  # slices of 5,000 values are over the limit, the last one is not
    with Client(target, max_message_bytes=20_000) as small, pytest.raises(ResourceExhaustedError):
        small.evaluate("x", points={"x": xs}, chunk_points=5_000, in_flight=2)

    async def run() -> None:
        async with AsyncClient(target, max_message_bytes=20_000) as client:
            with pytest.raises(ResourceExhaustedError):
                await client.evaluate("x", points={"x": xs}, chunk_points=5_000, in_flight=2)

    asyncio.run(run())


def test_numpy_gradient_in_chunks(client: Client) -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(3)
    points = {"x": rng.uniform(-2, 2, 30_001), "y": rng.uniform(-2, 2, 30_001)}
    whole = client.gradient("exp(-x^2)*cos(y)", points=points)
    chunked = client.gradient("exp(-x^2)*cos(y)", points=points, chunk_points=4_096, in_flight=3)
    np.testing.assert_array_equal(chunked.values, whole.values)
    for ours, theirs in zip(chunked.gradients or (), whole.gradients or (), strict=True):
        assert isinstance(ours, np.ndarray)
        np.testing.assert_array_equal(ours, theirs)


def test_async_chunks(target: str) -> None:
    async def run() -> None:
        async with AsyncClient(target) as client:
            whole = await client.evaluate("x^2 - 1", points={"x": XS})
            chunked = await client.evaluate("x^2 - 1", points={"x": XS}, chunk_points=9, in_flight=4)
            assert chunked.values == whole.values
            whole_gradient = await client.gradient("x^2", points={"x": XS})
            gradient = await client.gradient("x^2", points={"x": XS}, chunk_points=30)
            assert gradient.gradients == whole_gradient.gradients

    asyncio.run(run())


@pytest.mark.parametrize(
    ("points", "chunk_points", "in_flight", "message"),
    [
        ({"x": XS}, 0, 2, "chunk_points"),
        ({"x": XS}, 10, 0, "in_flight"),
    ],
)
def test_bad_chunking_is_refused_before_any_call(
    client: Client, points: dict[str, list[float]], chunk_points: int, in_flight: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.evaluate("x", points=points, chunk_points=chunk_points, in_flight=in_flight)


def test_columns_of_different_lengths_are_the_servers_error_chunked_or_not(client: Client) -> None:
    """Chunked, the client raised ValueError where the call unchunked raised the server's
    InvalidArgumentError (an independent tester): one call either way."""
    points = {"x": XS, "y": [1.0, 2.0]}
    errors = []
    for chunk_points in (None, 10):
        with pytest.raises(InvalidArgumentError) as caught:
            client.evaluate("x*y", points=points, chunk_points=chunk_points)
        errors.append((caught.value.message, caught.value.field_violations))
    assert errors[0] == errors[1]


def test_point_and_points_together_are_refused_chunked_or_not(client: Client) -> None:
    """Chunked, `point` was dropped and the call answered (an independent tester)."""
    for chunk_points in (None, 10):
        with pytest.raises(InvalidArgumentError):
            client.evaluate("x*y", {"y": 2.0}, points={"x": XS}, chunk_points=chunk_points)


def test_columns_of_no_values_in_chunks_are_one_call_of_no_points(client: Client) -> None:
    """No slice at all had no answer to join: gradient and jacobian raised IndexError (a tester)."""
    points: dict[str, list[float]] = {"x": [], "y": []}
    chunked, whole = (client.gradient("x*y", points=points, chunk_points=n) for n in (5, None))
    assert dataclasses.astuple(chunked) == dataclasses.astuple(whole)
    assert chunked.values == [] and chunked.gradients == ([], [])
    rows, whole_rows = (client.jacobian(["x", "x^2"], points={"x": []}, chunk_points=n) for n in (5, None))
    assert dataclasses.astuple(rows) == dataclasses.astuple(whole_rows)
    assert client.evaluate("x", points={"x": []}, chunk_points=5).values == []


def test_an_order_past_what_a_request_carries_is_refused_by_name(client: Client) -> None:
    with pytest.raises(ValueError, match="order for 'x' must be 0"):
        client.differentiate("x^3", wrt={"x": 2**32})
    with pytest.raises(ValueError, match="order must be 0"):
        client.series("exp(x)", order=2**32)


def test_what_is_not_a_column_of_real_numbers_is_refused_by_name(client: Client) -> None:
    """A complex column went as its real part, a string value as the number it spells, and
    chunk_points=True as 1 (an independent tester)."""
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match="real numbers"):
        client.evaluate("x", points={"x": np.array([1 + 5j])})
    with pytest.raises(TypeError, match="must hold numbers"):
        client.evaluate("x", points={"x": ["1.5"]})  # type: ignore[list-item]
    with pytest.raises(TypeError, match="chunk_points"):
        client.evaluate("x", points={"x": [1.0, 2.0]}, chunk_points=True)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        client.evaluate("x", points={"x": np.ones((2, 2))}, chunk_points=1)
    assert client.evaluate("x", points={"x": np.array([1, 2], dtype=np.int32)}).values is not None
    with pytest.raises(TypeError, match="must hold numbers"):
        client.evaluate("x", points={"x": [np.complex64(1 + 5j)]})  # float() kept its real part


@pytest.mark.parametrize("chunk_points", [None, 2])
def test_numpy_numbers_broadcast_as_python_numbers_do(client: Client, chunk_points: int | None) -> None:
    """np.int64(2) and np.float32(2) were iterated as columns (TypeError), and a 0-d array had no
    len() once chunked (an independent hunt)."""
    np = pytest.importorskip("numpy")
    for number in (np.int64(2), np.float32(2), np.array(2.0), 2):
        got = client.evaluate("a*x", points={"x": [1.0, 2.0, 3.0], "a": number}, chunk_points=chunk_points)
        assert got.values is not None and [float(v) for v in got.values] == [2.0, 4.0, 6.0], number


def test_a_hessian_over_no_variables_is_empty_chunked_or_not(client: Client) -> None:
    """Chunked, it came back as None, as if not asked for (an independent hunt)."""
    for chunk_points in (None, 2):
        got = client.gradient("5", points={"z": [1.0, 2.0, 3.0]}, hessian=True, chunk_points=chunk_points)
        assert got.hessians == ()
    assert client.gradient("5", points={"z": [1.0, 2.0, 3.0]}, chunk_points=2).hessians is None


def test_other_numbers_and_what_is_no_number_chunked_or_not(client: Client) -> None:
    """b"abc" chunked went as 97, 98, 99; Decimal and Fraction were iterated; a boolean array went as
    0 and 1 and a masked array's masked entries as 1e20 (an independent hunt, 2026-12-06)."""
    np = pytest.importorskip("numpy")
    for chunk_points in (None, 2):
        for number in (decimal.Decimal("2"), fractions.Fraction(2)):
            got = client.evaluate(
                "a*x", points={"x": [1.0, 2.0, 3.0], "a": number}, chunk_points=chunk_points
            )
            assert list(got.values or ()) == [2.0, 4.0, 6.0]
        for bad in (b"abc", True, np.array([True, False, True]), np.ma.masked_array([1.0, 2, 3], [0, 1, 0])):
            with pytest.raises(TypeError):
                client.evaluate("a*x", points={"x": [1.0, 2.0, 3.0], "a": bad}, chunk_points=chunk_points)
