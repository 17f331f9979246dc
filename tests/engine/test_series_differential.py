"""Taylor polynomials of generated expressions against mpmath's numeric derivatives and sympy's `series`.

Seeded, so each run sees the same expressions. Smooth compositions must match the derivatives at the
point (mpmath.taylor) and sympy's own expansion exactly, and every text they come back as reads back.
Compositions with kinks and jumps where their arguments vanish may be refused (FAILED_PRECONDITION),
but a polynomial that comes back must match the one-sided derivatives on each side where the function
is real: a jump or kink smoothed into a polynomial differs there by O(1).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import mpmath
import pytest
import sympy

from chainrule.engine import parsing, series
from chainrule.engine.errors import FailedPrecondition

x = parsing.symbol("x")

AROUND = ["0", "1/2", "pi/2", "-1", "e", "sqrt(2)", "pi/6", "-3/4"]
SMOOTH = ["sin({})", "cos({})", "exp({}/2)", "atan({})", "log(2 + ({})^2)", "sqrt(3 + ({})^2)", "tanh({})"]
JOINS = ["{} + {}", "{} * {}", "{} - {}", "{}/(3 + ({})^2)"]
LEAVES = ["x", "x", "2x", "x/3", "(x - 1)", "1/2"]


def _smooth(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(LEAVES)
    if rng.random() < 0.5:
        return rng.choice(SMOOTH).format(_smooth(rng, depth - 1))
    return rng.choice(JOINS).format(_smooth(rng, depth - 1), _smooth(rng, depth - 1))


def _mp(value: sympy.Expr) -> mpmath.mpf:
    return mpmath.mpf(str(sympy.N(value, mpmath.mp.dps + 10)))


def _smooth_cases() -> list[tuple[str, str, int]]:
    rng = random.Random(18)
    cases: list[tuple[str, str, int]] = []
    while len(cases) < 40:
        text = _smooth(rng, 2)
        if parsing.parse(text).free_symbols:
            cases.append((text, rng.choice(AROUND), rng.randint(0, 5)))
    return cases


@pytest.mark.parametrize(("text", "around", "order"), _smooth_cases())
def test_smooth_expressions_match_mpmath_and_sympy(text: str, around: str, order: int) -> None:
    expr, a = parsing.parse(text), parsing.parse(around)
    found = series.taylor(expr, "", a, order)
    coefficients = [parsing.parse(parsing.to_text(c)) for c in found.coefficients]
    assert len(coefficients) == order + 1 and not any(c.free_symbols for c in coefficients)
    f = sympy.lambdify(x, expr, modules="mpmath")
    with mpmath.workdps(40):
        expected = mpmath.taylor(f, _mp(a), order)
        for k, (ours, theirs) in enumerate(zip(coefficients, expected, strict=True)):
            assert abs(_mp(ours) - theirs) <= 1e-25 * (1 + abs(theirs)), (k, ours, theirs)
    polynomial = sum((c * (x - a) ** k for k, c in enumerate(coefficients)), sympy.S.Zero)
    assert sympy.expand(parsing.parse(found.text) - polynomial) == 0
    shift = parsing.to_text((x - a) ** (order + 1))
    assert found.remainder == f"O({shift})"
    if a.is_Rational and len(text) <= 20:  # sympy's own series takes minutes on some larger ones
        theirs = sympy.series(expr, x, a, order + 1).removeO()
        for t in (a - sympy.Rational(1, 3), a + sympy.Rational(2, 7)):
            difference = (polynomial - theirs).subs(x, t).evalf(40)
            assert abs(difference) < 1e-30, (t, difference)


# A kink or jump of each kind where its argument is 0 (or an integer) at the point, under or over a
# smooth function; orders 0 to 3.
KINKS = ["abs({})", "max({}, {})", "min({}, {})", "sign({})", "floor({})", "ceiling({})", "Heaviside({})",
         "cbrt({})", "sqrt({})", "({})^(5/2)", "({})^(4/3)"]  # fmt: skip
OUTER = ["exp({})", "sin({})", "({})^2", "x*({})", "{} + x^2", "2^({})"]


def _vanishing(rng: random.Random, a: str) -> str:
    return rng.choice([f"(x - {a})", f"(x - {a})^2", f"(x - {a})^3", f"sin(x - {a})", f"(x - {a})*(x + 3)"])


def _kinked(rng: random.Random, a: str, depth: int) -> str:
    if depth == 0:
        return _vanishing(rng, a)
    if rng.random() < 0.6:
        kink = rng.choice(KINKS)
        return kink.format(*[_kinked(rng, a, depth - 1) for _ in range(kink.count("{}"))])
    return rng.choice(OUTER).format(_kinked(rng, a, depth - 1))


def _kinked_cases() -> list[tuple[str, str, int]]:
    rng = random.Random(1818)
    cases = []
    for _ in range(120):
        a = rng.choice(["0", "1", "-1", "1/2"])
        cases.append((_kinked(rng, a, rng.randint(1, 2)), a, rng.randint(0, 3)))
    return cases


def _real_function(expr: sympy.Expr) -> Callable[[mpmath.mpf], mpmath.mpf]:
    def value(t: mpmath.mpf) -> mpmath.mpf:
        # Exactly: sympy's min and max cannot compare the float 0.e-220 that evalf would leave.
        try:
            found = expr.subs(x, sympy.Rational(mpmath.nstr(t, mpmath.mp.dps + 10))).evalf(mpmath.mp.dps + 10)
        except ValueError:  # sympy's max of a complex number
            raise ArithmeticError("not a real") from None
        real, imaginary = found.as_real_imag()
        if not real.is_finite or abs(imaginary) > 1e-50:
            raise ArithmeticError("not a finite real")
        return mpmath.mpf(str(real))

    return value


@pytest.mark.parametrize(("text", "around", "order"), _kinked_cases())
def test_a_polynomial_at_a_kink_matches_the_derivatives_on_each_side(
    text: str, around: str, order: int
) -> None:
    expr, a = parsing.parse(text), parsing.parse(around)
    try:
        found = series.taylor(expr, "x", a, order)
    except FailedPrecondition:
        return  # refusing is allowed; a wrong polynomial is not
    f = _real_function(expr)
    with mpmath.workdps(60):
        point = _mp(a)
        sides, h = 0, mpmath.mpf(10) ** -15
        for side in (1, -1):
            try:
                derivatives = [mpmath.diff(f, point, k, direction=side, h=h) for k in range(order + 1)]
            except ArithmeticError:
                continue  # not real (or not finite) on this side: a one-sided expansion
            sides += 1
            for k, (c, d) in enumerate(zip(found.coefficients, derivatives, strict=True)):
                expected = d / mpmath.factorial(k)
                assert abs(_mp(c) - expected) <= 1e-3 * (1 + abs(expected)), (side, k, c, expected)
        assert sides, "real on neither side, yet a polynomial"
