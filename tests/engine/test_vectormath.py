"""vectormath.sin and cos against correctly rounded values (mpmath), and where they defer to numpy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule.engine import functions, vectormath

Floats = npt.NDArray[np.float64]
HALF_PI_MULTIPLES = np.pi / 2 * np.arange(-2000, 2001)


def _ulps(got: Floats, x: Floats, exact: Callable[[object], object]) -> Floats:
    """Distance from the correctly rounded value, in units of its last place."""
    with mpmath.workprec(200):
        want = np.array([float(exact(mpmath.mpf(float(v)))) for v in x])  # type: ignore[arg-type]
    return np.abs(got - want) / np.spacing(np.abs(want))


def _sample() -> Floats:
    rng = np.random.default_rng(7)
    return np.concatenate(
        [
            rng.uniform(-4, 4, 2000),
            rng.uniform(-1e5, 1e5, 1000),
            rng.uniform(-5e5, 5e5, 500),  # beyond 2^19: cos takes numpy's path there
            10 ** rng.uniform(6, 300, 500) * rng.choice([-1, 1], 500),
            10 ** rng.uniform(-320, -1, 500),
            HALF_PI_MULTIPLES,  # where sin or cos is as close to zero as a double gets
            np.nextafter(HALF_PI_MULTIPLES, np.inf),
            np.nextafter(HALF_PI_MULTIPLES, -np.inf),
        ]
    )


@pytest.mark.parametrize(
    ("ours", "exact", "bound"),
    [(vectormath.sin, mpmath.sin, 2), (vectormath.cos, mpmath.cos, 3)],
    ids=["sin", "cos"],
)
def test_within_a_few_ulp_of_correctly_rounded(
    ours: Callable[[Floats], Floats], exact: Callable[[object], object], bound: int
) -> None:
    x = _sample()
    assert _ulps(ours(x), x, exact).max() <= bound


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_any_finite_double(values: list[float]) -> None:
    x = np.array(values)
    assert _ulps(vectormath.sin(x), x, mpmath.sin).max() <= 2
    assert _ulps(vectormath.cos(x), x, mpmath.cos).max() <= 3


def test_special_values() -> None:
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324])
    with np.errstate(invalid="ignore"):  # as numpy's own sin(inf) warns
        sin, cos = vectormath.sin(x), vectormath.cos(x)
    assert np.array_equal(np.signbit(sin[:2]), [False, True])  # sin keeps the sign of zero
    assert np.all(cos[:2] == 1.0)
    assert np.isnan(sin[2:5]).all() and np.isnan(cos[2:5]).all()
    assert cos[5] == 1.0


def test_sin_below_the_normal_doubles_is_its_argument() -> None:
    # 2 tan(x/2) lost the last bit of a subnormal x (x/2 rounds): sin(5e-324) was 0.0, one ulp of a
    # subnormal but all of its value, and sin(3x)/x there 4.0 (a hunt, 2026-12-07).
    x = np.array([5e-324, -5e-324, 1.5e-323, 2.5e-323, 1e-310, -3e-309, 2.2e-308, 4.5e-308])
    assert vectormath.sin(x).tolist() == x.tolist()
    assert [float(vectormath.sin(np.float64(value))) for value in x] == x.tolist()


def test_input_is_not_modified() -> None:
    x = np.linspace(-1e6, 1e6, 1000)
    before = x.copy()
    vectormath.sin(x)
    vectormath.cos(x)
    assert np.array_equal(x, before)


@pytest.mark.parametrize(
    "value",
    [
        np.linspace(-3, 3, 100).astype(np.float32),
        np.linspace(-3, 3, 100) + 1j,
        np.arange(100),
        2,
        np.zeros(0),
    ],
    ids=["float32", "complex", "int-array", "int", "empty"],
)
def test_what_is_not_real_float64_is_numpy(value: Any) -> None:
    for ours, theirs in [(vectormath.sin, np.sin), (vectormath.cos, np.cos)]:
        got, want = ours(value), theirs(value)
        assert np.asarray(got).dtype == np.asarray(want).dtype
        assert np.array_equal(got, want)


@pytest.mark.parametrize(
    "wide", [7.0, 4.0, 3.0, 1e6], ids=["most-wide", "most-half-turn", "all-half-turn", "far"]
)
def test_a_point_gets_what_a_batch_gets(wide: float) -> None:
    batch = np.linspace(-wide, wide, 1001)  # cos picks its formula by |x| <= pi: in mixed batches too
    for function in (vectormath.sin, vectormath.cos):
        whole = function(batch)
        assert [function(float(v)) for v in batch[::50]] == list(whole[::50])  # Python floats
        assert [function(np.float64(v)) for v in batch[::50]] == list(whole[::50])
        assert np.array_equal(function(batch[10:11]), whole[10:11])  # one-element arrays
        grid = function(batch[:1000].reshape(10, 100))  # any shape
        assert grid.shape == (10, 100) and np.array_equal(grid.reshape(-1), whole[:1000])
        assert isinstance(function(1.5), np.float64)


def test_compiled_functions_use_it_where_numpy_tan_is_simd() -> None:
    custom = functions.lambdify_modules()[0]
    assert isinstance(custom, dict)
    assert (custom.get("sin") is vectormath.sin) == vectormath.simd_tan()
    assert (custom.get("cos") is vectormath.cos) == vectormath.simd_tan()


POWERS = (-5, -4, -3, -2, 3, 4, 5, 7, 12)


@pytest.mark.parametrize("n", POWERS)
def test_integer_power_is_the_power_of_the_magnitude_with_its_sign(n: int) -> None:
    x = np.concatenate([_sample(), -_sample()])
    with np.errstate(all="ignore"):  # huge and tiny values overflow
        got = vectormath.integer_power(x, n)
        magnitude = np.power(np.abs(x), n)
        expected = (x * x * x if n == 3 else (x * x) ** 2) if n in (3, 4) else magnitude  # products
    assert np.array_equal(got, np.copysign(expected, x) if n % 2 else expected, equal_nan=True)
    with np.errstate(all="ignore"):
        want = np.power(x, n)  # numpy's scalar path for the negative bases
    finite = np.isfinite(want) & (want != 0)
    assert np.array_equal(np.isfinite(got), np.isfinite(want))
    assert np.all(np.abs(got[finite] - want[finite]) <= 4 * np.spacing(np.abs(want[finite])))
    normal = finite & (np.abs(want) >= np.finfo(float).tiny)  # products: 2 ulp of a normal power
    assert n not in (3, 4) or np.all(
        np.abs(got[normal] - want[normal]) <= 2 * np.spacing(np.abs(want[normal]))
    )


@pytest.mark.parametrize("n", POWERS)
def test_integer_power_of_special_values_is_c_pow(n: int) -> None:
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1.0, -1.0, 1e300, -1e300]
    with np.errstate(all="ignore"):
        got = vectormath.integer_power(np.array(specials), n)
    for x, value in zip(specials, got, strict=True):
        try:
            want = math.pow(x, n)
        except (ZeroDivisionError, ValueError):  # C's pow: +-inf at zero, by the sign of an odd power
            want = math.copysign(math.inf, x) if n % 2 else math.inf
        except OverflowError:
            want = math.copysign(math.inf, x) if n % 2 else math.inf
        assert value == want or (math.isnan(value) and math.isnan(want)), (x, n, value, want)
        assert math.copysign(1.0, value) == math.copysign(1.0, want) or math.isnan(want), (x, n)


def test_integer_power_of_a_point_is_that_of_a_batch() -> None:
    x = np.linspace(-3.0, 3.0, 1001)
    batch = vectormath.integer_power(x, 3)
    singles = [vectormath.integer_power(x[i : i + 1], 3)[0] for i in range(len(x))]
    assert np.array_equal(batch, singles)
    assert vectormath.integer_power(-2.0, 3) == -8.0 and vectormath.integer_power(2 + 1j, 2) == (2 + 1j) ** 2
