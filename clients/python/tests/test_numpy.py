"""The numpy paths: arrays go out as raw f64le and come back as float64 arrays (skipped without numpy)."""

from __future__ import annotations

import asyncio

import pytest

from chainrule.client import AsyncClient, Client

np = pytest.importorskip("numpy")

POINTS = 100_000


def test_evaluate_arrays_round_trip(client: Client) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-2, 2, POINTS), rng.uniform(0.5, 3, POINTS)
    result = client.evaluate("sin(x) * y^2 + exp(x/3)", points={"x": x, "y": y})
    assert isinstance(result.values, np.ndarray)
    assert result.values.dtype == np.float64 and result.values.shape == (POINTS,)
    np.testing.assert_allclose(result.values, np.sin(x) * y**2 + np.exp(x / 3), rtol=1e-12, atol=1e-12)
    assert result.nonfinite_count == 0


def test_arrays_of_other_dtypes_are_sent_as_float64(client: Client) -> None:
    result = client.evaluate("x / 2", points={"x": np.arange(5, dtype=np.int32)})
    np.testing.assert_array_equal(result.values, np.arange(5) / 2)


def test_an_array_may_mix_with_lists_and_scalars(client: Client) -> None:
    result = client.evaluate("a*x + b", points={"x": np.array([0.0, 1.0, 2.0]), "a": [2.0], "b": 1.0})
    assert isinstance(result.values, np.ndarray)
    np.testing.assert_array_equal(result.values, [1.0, 3.0, 5.0])


def test_nonfinite_values_come_back_in_place(client: Client) -> None:
    result = client.evaluate("1/x", points={"x": np.array([0.0, 2.0, -0.0])})
    assert result.nonfinite_count == 2
    np.testing.assert_array_equal(result.values, [np.inf, 0.5, -np.inf])


def test_gradient_and_hessian_arrays(client: Client) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, POINTS), rng.uniform(-1, 1, POINTS)
    result = client.gradient("x^2*y + y^3", points={"x": x, "y": y}, hessian=True)
    assert result.variables == ("x", "y") and result.gradients is not None and result.hessians is not None
    np.testing.assert_allclose(result.values, x**2 * y + y**3, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.gradients[0], 2 * x * y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.gradients[1], x**2 + 3 * y**2, rtol=1e-12, atol=1e-12)
    expected = [[2 * y, 2 * x], [2 * x, 6 * y]]
    for row in range(2):
        for col in range(2):
            np.testing.assert_allclose(result.hessians[row][col], expected[row][col], rtol=1e-12, atol=1e-12)


def test_two_dimensional_arrays_are_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        client.evaluate("x", points={"x": np.zeros((2, 2))})


def test_async_arrays(target: str) -> None:
    x = np.linspace(0, 1, 1000)

    async def scenario() -> object:
        async with AsyncClient(target) as client:
            return (await client.evaluate("x^2", points={"x": x}, wrt="x")).values

    values = asyncio.run(scenario())
    assert isinstance(values, np.ndarray)
    np.testing.assert_allclose(values, 2 * x, rtol=1e-12, atol=1e-12)
