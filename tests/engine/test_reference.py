"""The engine's mpmath reference (`reference.evaluate`): the parser folds constants with it, and the
fuzzer's checks judge by it, so no value may cost it unbounded time or memory."""

from __future__ import annotations

import math

import mpmath
import sympy

from chainrule.engine import reference
from chainrule.engine.functions import RealRoot


def _power(base: int, exponent: sympy.Expr) -> float:
    return float(reference.evaluate(sympy.Pow(sympy.Integer(base), exponent, evaluate=False)))


def test_a_power_of_one_past_every_integer_is_at_once() -> None:
    """cosh(10^12) at 200 bits is an mpf of 1.4e12 bits' magnitude, integer-valued: mpmath made it a
    Python int of that many bits to raise 1 to it (24 GB, OOM in make fuzz)."""
    huge = sympy.cosh(sympy.Integer(10) ** 12)
    assert _power(1, huge) == 1.0
    assert _power(-1, huge) == 1.0  # even: its low bits are past the precision (2^k times the mantissa)
    assert _power(-1, sympy.Integer(2) ** 70 + 1) == -1.0


def test_a_complex_root_of_a_vanishing_degree_is_at_once() -> None:
    """root(-2, 9^-(1.1e9)) continues through exp(log(-2) * 9^(1.1e9)): mpmath computed ln 2 to 3.5e9
    bits for it (a make fuzz run stopped there); so far past any double it is NaN, or 0 far left."""
    tiny = sympy.Pow(9, -1_100_000_000, evaluate=False)
    assert str(reference.evaluate(RealRoot(-2, tiny, evaluate=False), strict=False)) == "nan"
    assert reference.evaluate(RealRoot(sympy.Rational(-1, 2), tiny, evaluate=False), strict=False) == 0


def test_beta_keeps_an_argument_below_the_other_s_last_bit() -> None:
    """beta(a, b) with b past a's magnitude by more than the precision: mpmath's a + b rounded to b,
    Gamma(b) / Gamma(a + b) to 1, and the value was Gamma(a) (beta(sin x, x^x) at x = 92.8, found by
    make fuzz: 2e181 times too small); Gamma(a) b^-a it is."""
    a, b = -0.9930887935049116, 3.762963488855683e182
    expected = math.gamma(a) * b ** (-a)
    assert math.isclose(reference.at("beta", [a, b], 64), expected, rel_tol=1e-12)
    assert math.isclose(reference.at("beta", [b, 1e-300], 64), 1e300, rel_tol=1e-12)  # (1/a) b^-a, a tiny


def test_beta_of_an_argument_billions_of_bits_small_is_its_reciprocal() -> None:
    # The bits kept for a + b followed the magnitudes' gap without end: 9^-1,100,000,000 (what
    # make fuzz's reference met inside gamma(beta(9^y, y^0))) asked mpmath for a billion-bit sum.
    tiny = sympy.Pow(9, -1_100_000_000, evaluate=False)
    value = reference.evaluate(sympy.beta(tiny, 1), strict=False)
    assert abs(mpmath.log(value) / (1_100_000_000 * mpmath.log(9)) - 1) < 1e-12


def test_hurwitz_zeta_is_accurate_at_thousands_of_bits() -> None:
    # Folding a periodic function of 10^1000 zeta(3, 1/3) needs the argument to 3,400 bits; the
    # Euler-Maclaurin series there needs 820 Bernoulli terms, and stopping at 400 left zeta wrong
    # from its 2,500th bit (cos of it was -0.455, not -0.897).
    prec = 3456
    ours = reference.evaluate(sympy.zeta(3, sympy.Rational(1, 3)), prec=prec)
    with mpmath.workprec(prec + 64):
        exact = mpmath.zeta(3, mpmath.mpf(1) / 3)
        assert abs(ours - exact) <= abs(exact) * mpmath.ldexp(1, 8 - prec)
