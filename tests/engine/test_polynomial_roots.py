"""A polynomial of one variable keeps its digits next to every real root (`polynomial_roots`): its
generated code is the product of its factors there, each root as two doubles."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy

from chainrule.engine import numeric, polynomial_roots, programs
from chainrule.engine.limits import EngineLimits

x = sympy.Symbol("x", real=True)
_ULP = 2.0**-53
# Relative error allowed: a few ulps per factor (the worst seen, 11, is x^5 - x - 1's rest of
# degree 4, which has no real root).
_MOST_ULPS = 16
# Values below this are past the normal doubles, where an underflow's rounding is no digit lost.
_NORMAL = 2.0**-1000


def _exact(polynomial: sympy.Expr) -> sympy.Poly:
    """The polynomial as the service reads it: a decimal is its double."""
    exact = polynomial.xreplace({d: sympy.Rational(d) for d in polynomial.atoms(sympy.Float)})
    return sympy.Poly(exact, x)


def _next_to_roots(polynomial: sympy.Poly, seed: int) -> np.ndarray:
    """200 points spread over [-3, 3], then the doubles nearest each real root, those a few ulps
    and a few parts in 10^12 off."""
    rng = np.random.default_rng(seed)
    points: list[np.ndarray] = [rng.uniform(-3.0, 3.0, 200)]
    steps = np.arange(-8, 9, dtype=np.float64)
    for root in polynomial.real_roots():
        at = float(root.evalf(30))
        points += [at + steps * np.spacing(at), at * (1 + steps * 1e-12)]
    return np.concatenate(points)


def _worst_ulps(expr: sympy.Expr, points: np.ndarray, truth: object) -> float:
    compiled = numeric.compile_function(expr, ["x"])
    values = numeric.evaluate(compiled, {"x": points}, len(points)).values
    worst = 0.0
    for point, value in zip(points, values, strict=True):
        true = truth(float(point))  # type: ignore[operator]
        if abs(true) < _NORMAL:
            assert abs(value) < 2 * _NORMAL, (point, value, true)
            continue
        worst = max(worst, float(abs((mpmath.mpf(float(value)) - true) / true)) / _ULP)
    return worst


POLYNOMIALS = [
    x**3 - 2 * x + 1,  # a rational root and two irrational ones
    3 * x**2 - 2,  # +-sqrt(2/3): the cubic's derivative
    x**4 - 10 * x**2 + 1,  # four irrational roots
    sympy.expand((x - sympy.Rational(1, 3)) ** 2 * (x + 5)),  # a double root no double holds
    x**5 - x - 1,  # one real root, a rest of degree 4
    7 * x**3 - x / 10 + sympy.Float(0.1),  # decimals: their doubles
    x**2 - sympy.Float(1e300),  # roots at +-1e150
    x**8 - 3,
]


@pytest.mark.parametrize("polynomial", POLYNOMIALS, ids=str)
def test_a_polynomial_keeps_its_digits_next_to_every_real_root(polynomial: sympy.Expr) -> None:
    exact = _exact(polynomial)

    def truth(point: float) -> mpmath.mpf:
        value = exact.eval(sympy.Rational(point))
        return mpmath.mpf(value.p) / value.q

    with mpmath.workprec(200):
        assert _worst_ulps(polynomial, _next_to_roots(exact, seed=7), truth) <= _MOST_ULPS


@pytest.mark.parametrize(
    "expr", [sympy.sin(x**3 - 2 * x + 1), sympy.exp(x**2 - 2) - 1, sympy.log(x**2 - 1)], ids=str
)
def test_a_polynomial_inside_a_function_keeps_its_digits(expr: sympy.Expr) -> None:
    """Next to the polynomial's roots only: elsewhere sin's argument may be next to a multiple of
    pi, where its own rounding is amplified whatever the polynomial's error."""
    (inner,) = [node for node in sympy.preorder_traversal(expr) if node.is_Add and node.is_polynomial(x)][:1]
    function = sympy.lambdify(x, expr, "mpmath")
    with mpmath.workprec(200):
        points = _next_to_roots(_exact(inner), seed=11)[200:]
        assert _worst_ulps(expr, points, lambda point: function(mpmath.mpf(point))) <= _MOST_ULPS


def test_the_cubic_is_computed_without_a_taylor_polynomial() -> None:
    """The product keeps the digits the Taylor polynomial next to 1 kept, at the formula's cost per
    point: no points to pick out of each chunk (bench/PROFILE.md, "Tenth profile")."""
    cubic = x**3 - 2 * x + 1
    program = programs.generate([cubic, cubic.diff(x)], ["x"], single=False, limits=EngineLimits())
    assert "taylor_near" not in program.names


def test_roots_are_proven_even_where_they_cluster() -> None:
    """x^8 - 2 (2^25 x - 1)^2 has two real roots 2^-75 apart next to 2^-25 (sympy's root isolation
    took 1.6 s on it): each root taken out changes the polynomial's sign across it, and the product
    is the polynomial to far past a double's precision."""
    polynomial = sympy.expand(x**8 - 2 * (2**25 * x - 1) ** 2)
    factored = polynomial_roots.in_real_roots(polynomial)
    assert factored is not None
    written = factored.product
    roots = [
        -factor.as_coeff_Add()[0]
        for factor in sympy.Mul.make_args(written)
        if factor.is_Add and sympy.degree(factor, x) == 1
    ]
    assert roots
    exact = sympy.Poly(polynomial, x)
    for root in roots:
        width = abs(root) * sympy.Rational(1, 2**100)
        assert exact.eval(root - width) * exact.eval(root + width) < 0
    difference = sympy.Poly(sympy.expand(written - polynomial), x)
    largest = max(abs(c) for c in exact.coeffs())
    assert all(abs(c) < largest * sympy.Rational(1, 2**100) for c in difference.coeffs())


def test_a_polynomial_with_no_real_root_stays_as_written() -> None:
    assert polynomial_roots.in_real_roots(x**2 + x + 1) is None
    assert not polynomial_roots.is_factorable(x**9 - 2)  # past the degrees factored
    # Read term by term: sympy's Poly of it is a dense list of 10^9 coefficients (96 s to build).
    assert not polynomial_roots.is_factorable(x**1000000000 + 1)
    assert not polynomial_roots.is_factorable((x + 1) ** 2 - 3)  # a sum of monomials only
    assert not polynomial_roots.is_factorable(x * sympy.Symbol("y") - 1)
    assert not polynomial_roots.is_factorable(x**2 - sympy.sqrt(2))  # coefficients: numbers only


@pytest.mark.parametrize(
    ("polynomial", "points"),
    [
        (x**2 - 4 * x + 3, [1.0, 3.0]),  # -0.0 at 1 as a product: (1 - 3) < 0
        (x**3 - 2 * x + 1, [1.0]),  # +0.0 as a product too
        (x**3 - x, [0.0, -0.0, 1.0, -1.0]),  # x itself a factor: -0.0 at -0.0
        (sympy.expand((x - 2) ** 2 * (x + 1)), [2.0, -1.0]),
    ],
    ids=str,
)
def test_a_root_is_an_unsigned_zero_as_the_sum_gives_it(polynomial: sympy.Expr, points: list[float]) -> None:
    """1/p at a root is +inf, as the sum as written gives it (1/(x^2 - 4x + 3) at 1 was -inf)."""
    compiled = numeric.compile_function(1 / polynomial, ["x"])
    values = numeric.evaluate(compiled, {"x": np.array(points)}, len(points)).values
    assert list(values) == [np.inf] * len(points)
