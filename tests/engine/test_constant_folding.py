"""Constants in numeric code: the double nearest their value, however much their formula cancels.

Expected values come from mpmath directly, at 4,000 bits, written by hand: not from
`reference`, which is what folds them. A sum's constant terms fold together (sympy distributes
10^30 over tanh(30) - 1), and a formula that cancels past a precision is evaluated at a higher one.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import mpmath
import numpy as np
import pytest

from chainrule.engine import errors, numeric, parsing, reference

_BITS = 4000
mp = mpmath.mp


def _true(value: Callable[[], mpmath.mpf]) -> float:
    with mpmath.workprec(_BITS):
        return float(value())


def _ours(text: str) -> float:
    """`text` (a constant plus x) evaluated at x = 0, through the same compilation as Evaluate."""
    compiled = numeric.compile_function(parsing.parse(text), ["x"])
    return float(numeric.evaluate(compiled, {"x": np.array([0.0])}, 1).values[0])


CANCELLING = [
    ("x + (tanh(30) - 1)*10^30", lambda: (mp.tanh(30) - 1) * mp.mpf(10) ** 30),
    ("x + 1/(tanh(50) - 1)", lambda: 1 / (mp.tanh(50) - 1)),
    ("x + (tanh(100) - 1)*10^87", lambda: (mp.tanh(100) - 1) * mp.mpf(10) ** 87),
    ("x + (cos(1/10^10) - 1)*10^20", lambda: (mp.cos(mp.mpf(10) ** -10) - 1) * mp.mpf(10) ** 20),
    ("x + (exp(10^-30) - 1)*10^30", lambda: (mp.exp(mp.mpf(10) ** -30) - 1) * mp.mpf(10) ** 30),
    ("x + (sqrt(1 + 10^-40) - 1)*10^40", lambda: (mp.sqrt(1 + mp.mpf(10) ** -40) - 1) * mp.mpf(10) ** 40),
    ("x + (erf(10) - 1)*10^45", lambda: (mp.erf(10) - 1) * mp.mpf(10) ** 45),
    ("x + (atan(10^20) - pi/2)*10^20", lambda: (mp.atan(mp.mpf(10) ** 20) - mp.pi / 2) * mp.mpf(10) ** 20),
    ("x + log(tanh(100))*10^87", lambda: mp.log(mp.tanh(100)) * mp.mpf(10) ** 87),
    ("x + floor(tanh(200))", lambda: mp.floor(mp.tanh(200))),
    ("x + sin(pi*tanh(100))*10^86", lambda: mp.sin(mp.pi * mp.tanh(100)) * mp.mpf(10) ** 86),
    ("x + (1 - cosh(10^-100))*10^200", lambda: (1 - mp.cosh(mp.mpf(10) ** -100)) * mp.mpf(10) ** 200),
]


@pytest.mark.parametrize(("text", "value"), CANCELLING, ids=[text for text, _ in CANCELLING])
def test_a_cancelling_constant_is_the_double_nearest_its_value(
    text: str, value: Callable[[], mpmath.mpf]
) -> None:
    assert _ours(text) == _true(value)


# f(a) - its limit, scaled by a power of ten back to about 1, for exact arguments a where f is within
# 2^-60 .. 2^-1000 of the limit: past 80 bits of cancellation, often past 320. (A decimal literal would
# not do: sympy evaluates a function of a float at once, at the float's precision.)
_NEAR_LIMITS: list[tuple[str, str, Callable[[int], mpmath.mpf], Callable[[random.Random], int]]] = [
    # (f(a) as written, the limit as written, f(a) - limit in mpmath, a random a)
    ("tanh({a})", "1", lambda a: mp.tanh(a) - 1, lambda rng: rng.randint(25, 340)),
    ("erf({a})", "1", lambda a: mp.erf(a) - 1, lambda rng: rng.randint(7, 40)),
    (
        "atan({a})",
        "pi/2",
        lambda a: mp.atan(a) - mp.pi / 2,
        lambda rng: rng.randint(7, 300) * 10 ** rng.randint(10, 250),
    ),
    ("1/cosh({a})", "0", lambda a: 1 / mp.cosh(a), lambda rng: rng.randint(50, 690)),
    (
        "exp(1/{a})",
        "1",
        lambda a: mp.exp(mp.one / a) - 1,
        lambda rng: rng.randint(7, 300) * 10 ** rng.randint(20, 250),
    ),
    (
        "cos(1/{a})",
        "1",
        lambda a: mp.cos(mp.one / a) - 1,
        lambda rng: rng.randint(7, 300) * 10 ** rng.randint(10, 150),
    ),
]


@pytest.mark.parametrize("seed", range(8))
def test_constants_near_a_function_s_limit_against_mpmath(seed: int) -> None:
    rng = random.Random(seed)
    for written, limit, gap, draw in _NEAR_LIMITS:
        a = draw(rng)
        with mpmath.workprec(_BITS):
            scale = -int(mpmath.floor(mpmath.log10(abs(gap(a)))))
            expected = float(gap(a) * mp.mpf(10) ** scale)
        text = f"x + ({written.format(a=a)} - {limit})*10^{scale}"
        assert _ours(text) == expected, text


def test_an_exact_identity_folds_to_zero() -> None:
    assert _ours("x + log(4) - 2*log(2)") == 0.0
    assert _ours("x + (log(4) - 2*log(2))*10^1000") == 0.0


def test_settling_stops_at_the_first_two_precisions_that_agree() -> None:
    expr = parsing.parse("tanh(30) - 1")
    assert reference.nearest_double(expr) == _true(lambda: mp.tanh(30) - 1)
    assert reference.nearest_double(parsing.parse("sqrt(2)")) == 2**0.5


CANNOT_COMPUTE = [
    "x + 1/log(tanh(123456789))",
    "x + csc(log(cos(1e-200)))",
    "x/log(erf(123456))",
    "1/(log(tanh(123456789))*x)",
    "x + coth(acos(tanh(123456789)))",
    "sin(x)*log(cos(1e-100))^(-2)",
]


@pytest.mark.parametrize("text", CANNOT_COMPUTE)
def test_a_constant_sympy_cannot_compute_is_refused_naming_it(text: str) -> None:
    # sympy rounds log(tanh(123456789)) to 0 at 53 bits and divides by it whenever it orders terms
    # (printing, the cache key): refused here, not an INTERNAL later.
    with pytest.raises(errors.ParseError, match="cannot be computed") as raised:
        parsing.parse(text)
    assert "write the constant's value" in str(raised.value)


@pytest.mark.parametrize(
    "text", ["x + log(1 - tanh(123456789))", "x + log(tanh(123456789))", "x*(tanh(123456789) - 1)^(-1)"]
)
def test_a_constant_sympy_can_compute_is_kept(text: str) -> None:
    expr = parsing.parse(text)
    assert str(expr)
