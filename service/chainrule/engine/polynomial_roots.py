"""Polynomials of one variable written as the product of their factors at their real roots.

Next to a real root r, a polynomial's terms cancel: x^3 - 2x + 1 at x = 1 + 1e-9 is 1e-9, computed
from terms of about 1 whose roundings (1e-16) are left as its error, and at the double nearest the
root 0.618... no digit of it was right. Written as (x - 1)(x - r1)(x - r2), with each irrational
root as two doubles (`kernels.add_constant`: x - r is exact to a double's rounding next to r), every
factor keeps its digits, so the product does, at every x, within a few ulps per factor.

This replaces the Taylor polynomial `removable` would compute next to such a root: that one needs
the points near the root picked out of every chunk (the cubic above took 3 times what numpy does
with the formula as written, bench/PROFILE.md "Tenth profile"), and covered only the roots its
candidates found (3x^2 - 2 at +sqrt(2/3), not at -sqrt(2/3)). The product costs a few operations
more than the formula per point, whatever the points.

The factors come from sympy's exact factorisation over the rationals (`Poly.factor_list`), so a
rational root is exact; an irrational one is refined to `_ROOT_BITS` and proven by a change of sign
(`_real_roots`). A factor with no real root stays as written (its value has no zero to lose digits
next to), and so does the rest of a factor once its real roots are taken out. It runs where numeric
code is generated, in a symbolic worker, under its budget; degrees and coefficients are bounded so
that factoring stays a few milliseconds (at most 30 ms for degree 8 with coefficients from 1e-300
to 1e300; sympy's own real root isolation took seconds where roots cluster, and is not used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

__all__ = ["Factored", "in_real_roots", "is_factorable"]

# Degrees factored: the derivatives and Hessians of what users write are of low degree, and
# factoring's time grows with the degree.
_MAX_DEGREE = 8
_MIN_DEGREE = 2
# Coefficients past this many bits are left as written (factoring's time grows with them); a
# double as a fraction has at most 1,075 (2^-1074, the smallest; 1e300 is 997 bits).
_MAX_COEFFICIENT_BITS = 1100
# Bits of an irrational root: past twice a double's, so its high and low doubles are both right; a
# root is checked over a width of `_ROOT_CHECK_BITS` on each side.
_ROOT_BITS = 128
_ROOT_CHECK_BITS = 120
_NEWTON_STEPS = 100
# numpy's roots with an imaginary part past this share of their magnitude are not tried as real:
# clustered real roots come out of its eigenvalues as pairs a little off the real line.
_NEAR_REAL = 2.0**-10
# Roots whose magnitude is past the normal doubles have no exact high and low part: left as written.
_SMALLEST_ROOT = 2.0**-960
_LARGEST_ROOT = 2.0**960


def is_factorable(node: sympy.Basic) -> bool:
    """Whether `node` is a sum of monomials of one variable, of degree 2 to 8, with numbers (exact,
    or decimals: their doubles) for coefficients. Read term by term: sympy's `Poly` of x^1000000000
    + 1 is a dense list of 10^9 coefficients (96 s to build), so none is built before the degree is
    known."""
    if not node.is_Add:
        return False
    symbols = node.free_symbols
    if len(symbols) != 1:
        return False
    (symbol,) = symbols
    highest = 0
    for term in node.args:
        degree = _monomial_degree(term, symbol)
        if degree is None:
            return False
        highest = max(highest, degree)
    return _MIN_DEGREE <= highest <= _MAX_DEGREE


def _monomial_degree(term: sympy.Expr, symbol: sympy.Symbol) -> int | None:
    """The degree of c x^k (a finite number c, a whole k >= 0) in `symbol`; None for anything else."""
    coefficient, power = term.as_coeff_Mul()
    if not (coefficient.is_Rational or coefficient.is_Float) or not coefficient.is_finite:
        return None
    if power == 1:
        return 0
    if power == symbol:
        return 1
    if power.is_Pow and power.base == symbol and power.exp.is_Integer and power.exp > 0:
        return int(power.exp)
    return None


@dataclass(frozen=True)
class Factored:
    """A polynomial as the product of its factors (`in_real_roots`). `signed_zeros`: whether the
    product is -0.0 at one of its roots, where the sum as written is +0.0 (IEEE's x - a is +0.0 at
    x = a, and a product takes the sign of its other factors): 1/(x^2 - 4x + 3) at 1 would be -inf,
    +inf as written. The caller unsigns such a product's zeros (`kernels.unsigned_zero`)."""

    product: sympy.Expr
    signed_zeros: bool


def in_real_roots(node: sympy.Expr) -> Factored | None:
    """`node` (`is_factorable`) as its leading number times its factors at its real roots, each
    (x - r)^m, and the rest; None where no real root is found (in the doubles' range), or its
    coefficients are too large to factor cheaply."""
    (symbol,) = node.free_symbols
    exact = node.xreplace({decimal: sympy.Rational(decimal) for decimal in node.atoms(sympy.Float)})
    polynomial = sympy.Poly(exact, symbol, domain=sympy.QQ)
    if any(_bits(c) > _MAX_COEFFICIENT_BITS for c in polynomial.coeffs()):
        return None
    leading, factors = polynomial.factor_list()
    pieces: list[sympy.Expr] = [sympy.Rational(leading)]
    # The roots doubles hold, each with its piece's index and multiplicity: where a piece is exactly 0.
    zeros: list[tuple[sympy.Rational, int, int]] = []
    rooted = False
    for factor, multiplicity in factors:
        roots = _real_roots(factor)
        if not roots:
            pieces.append(factor.as_expr() ** multiplicity)
            continue
        rooted = True
        pieces.append(sympy.Rational(factor.LC()) ** multiplicity)
        linear = [symbol - root for root in roots]
        for root, term in zip(roots, linear, strict=True):
            pieces.append(term**multiplicity)
            if sympy.Rational(float(root)) == root:
                zeros.append((root, len(pieces) - 1, multiplicity))
        if len(roots) < factor.degree():
            # The rest of the factor, whose coefficients (quotients by the refined roots) are right
            # to `_ROOT_BITS`, far past what a double keeps.
            rest, _ = sympy.div(factor.monic(), sympy.Poly(sympy.Mul(*linear), symbol, domain=sympy.QQ))
            pieces.append(rest.as_expr() ** multiplicity)
    if not rooted:
        return None
    # Three or more factors, or a power: sympy distributes a number over a lone sum (3(x - 1) is
    # 3x - 3, which cancels again), and a polynomial of degree 2 or more with a real root has two.
    return Factored(sympy.Mul(*pieces), _signed_zeros(pieces, zeros, symbol))


def _signed_zeros(
    pieces: list[sympy.Expr], zeros: list[tuple[sympy.Rational, int, int]], symbol: sympy.Symbol
) -> bool:
    """Whether the product of `pieces` is -0.0 at one of the `zeros` (or at x = -0.0, where x is a
    factor to an odd power)."""
    for root, zero, multiplicity in zeros:
        if root == 0 and multiplicity % 2:
            return True
        others = sympy.Mul(*(piece.subs(symbol, root) for k, piece in enumerate(pieces) if k != zero))
        if others < 0:
            return True
    return False


def _real_roots(factor: sympy.Poly) -> list[sympy.Rational]:
    """Real roots of an irreducible factor (so each is simple): exact for a linear one; else each
    root numpy finds next to the real line, refined by Newton's method to `_ROOT_BITS` and kept only
    where the factor changes sign across it exactly (rational arithmetic): a proof of a root there.
    Not sympy's root isolation: its time grows without bound as roots cluster (x^8 - 2(2^50 x - 1)^2
    took 4 s). A root not found stays in the rest, as written (`removable` looks at it there)."""
    if factor.degree() == 1:
        low, high = factor.all_coeffs()[::-1]
        return _in_doubles([-sympy.Rational(low) / sympy.Rational(high)])
    coefficients = [float(c) for c in factor.all_coeffs()]
    if not all(map(math.isfinite, coefficients)) or not coefficients[0]:
        return []
    try:
        with np.errstate(all="ignore"):
            guesses = np.roots(coefficients)
    except np.linalg.LinAlgError:  # no eigenvalues (its iteration did not converge): none found
        return []
    found: list[sympy.Rational] = []
    with mpmath.workprec(_ROOT_BITS + 32):
        exact = [mpmath.mpf(c.p) / c.q for c in map(sympy.Rational, factor.all_coeffs())]
    for guess in guesses:
        if abs(guess.imag) > _NEAR_REAL * abs(guess):
            continue
        root = _refined(exact, float(guess.real))
        if root is not None and _changes_sign(factor, root) and not any(_same(root, r) for r in found):
            found.append(root)
    return _in_doubles(found)


def _refined(coefficients: list[mpmath.mpf], guess: float) -> sympy.Rational | None:
    """Newton's method from `guess` at `_ROOT_BITS` (plus guard bits) on the polynomial of these
    `coefficients` (highest degree first), None if it does not settle."""
    with mpmath.workprec(_ROOT_BITS + 32):
        slopes = [c * (len(coefficients) - 1 - k) for k, c in enumerate(coefficients[:-1])]
        x = mpmath.mpf(guess)
        for _ in range(_NEWTON_STEPS):
            slope = mpmath.polyval(slopes, x)
            if not slope:
                return None
            step = mpmath.polyval(coefficients, x) / slope
            x -= step
            if abs(step) <= abs(x) * mpmath.mpf(2) ** -_ROOT_BITS:
                return _exactly(x)
        return None


def _exactly(value: mpmath.mpf) -> sympy.Rational:
    """The binary fraction `value` is, exactly."""
    sign, mantissa, exponent, _ = value._mpf_
    return sympy.Rational(-mantissa if sign else mantissa) * sympy.Rational(2) ** exponent


def _changes_sign(factor: sympy.Poly, root: sympy.Rational) -> bool:
    """Whether the factor has opposite signs at the ends of `root`'s interval (exactly): a root
    within it."""
    width = _width(root)
    below, above = factor.eval(root - width), factor.eval(root + width)
    return bool(below * above < 0)


def _same(root: sympy.Rational, other: sympy.Rational) -> bool:
    """Whether two roots' intervals meet: Newton's method from two guesses settled on one root (a
    root taken out twice would be a double root the polynomial does not have)."""
    return bool(abs(root - other) <= _width(root) + _width(other))


def _width(root: sympy.Rational) -> sympy.Rational:
    return abs(root) * sympy.Rational(1, 2**_ROOT_CHECK_BITS)


def _in_doubles(roots: list[sympy.Rational]) -> list[sympy.Rational]:
    """The roots within the normal doubles' range (0 too): a root past it has no exact high and low."""
    return [r for r in roots if not r or _SMALLEST_ROOT <= abs(r) <= _LARGEST_ROOT]


def _bits(coefficient: sympy.Rational) -> int:
    return max(int(coefficient.p).bit_length(), int(coefficient.q).bit_length())
