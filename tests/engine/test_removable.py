"""Formulas of one variable that cancel next to a point get their Taylor polynomial there (removable.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import sympy

from chainrule import engine
from chainrule.engine import kernels, numeric, parsing, reference, removable, symbolic

# Both sides of 0, from where the formulas lose a few digits to where float64 kept none of them.
_POINTS = np.array([s * 10.0**e for e in (-1, -3, -5, -7, -8, -10, -14) for s in (1, -1)])


def _formula(text: str, order: int) -> object:
    expr = parsing.parse(text)
    return symbolic.differentiate(expr, [("x", order)]) if order else expr


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("sin(x)/x", 1),
        ("sin(x)/x", 2),  # -2.98 at 1e-8 where it is -1/3
        ("sin(x)/x", 3),  # -8e8 at 1e-8 where it is 2e-9
        ("sin(x)/x", 5),
        ("(1 - cos(x))/x^2", 1),
        ("x/sin(x)", 2),
        ("x/tan(x)", 1),
        ("x*cot(x)", 2),
        ("sinh(x)/x", 2),
        ("atan(x)/x", 2),
        ("log(1 + x)/x", 1),
        ("(exp(x) - 1)/x", 1),
        ("x - sin(x)", 0),  # 6 digits lost at 1e-5
        ("tan(x) - x", 0),
        ("1/x - 1/sin(x)", 1),
    ],
)
def test_values_next_to_zero_are_right_to_a_few_ulps(text: str, order: int) -> None:
    formula = _formula(text, order)
    function = numeric.compile_function(formula, ["x"])
    got = numeric.evaluate(function, {"x": _POINTS}, len(_POINTS)).values
    for point, value in zip(_POINTS, got, strict=True):
        # The formula's terms cancel from 1e86 to 1e-15 at 1e-14 (sin(x)/x, fifth derivative): the
        # reference needs the bits to see it.
        truth = float(reference.evaluate(formula, {"x": float(point)}, prec=2000))
        assert math.isclose(value, truth, rel_tol=1e-14, abs_tol=1e-300), (text, order, point, value, truth)


def test_the_formula_is_kept_at_zero_itself_and_past_the_reach() -> None:
    formula = _formula("sin(x)/x", 2)
    (patch,) = removable.patches(formula)
    reach = patch.reach
    points = np.array([0.0, -0.0, reach, -1.5 * reach, 40.0])
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": points}, len(points)).values
    assert math.isnan(got[0]) and math.isnan(got[1])  # 0/0 as written: NaN by the real-valued rule
    for point, value in zip(points[2:], got[2:], strict=True):
        truth = float(reference.evaluate(formula, {"x": float(point)}, prec=320))
        assert math.isclose(value, truth, rel_tol=1e-14)


@pytest.mark.parametrize(
    "text",
    [
        "log(x)",  # a logarithmic singularity: no Taylor polynomial
        "1/x + sin(x)",  # a pole
        "abs(x)/x",  # not analytic
        "sqrt(x)*sin(x)/x",  # a branch point
        "exp(x) + x",  # nothing cancels
        "x^3 - 2*x",  # nothing cancels: a polynomial is evaluated as written
        "sin(x*y)/x",  # two variables: not handled
    ],
)
def test_formulas_without_a_cancelling_taylor_polynomial_are_left_alone(text: str) -> None:
    assert removable.patches(parsing.parse(text)) == []


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("log(x)/(x - 1)", 1.0),
        ("(x - 1)/log(x)", 1.0),
        ("sin(x - 1/2)/(2*x - 1)", 0.5),
        ("(exp(x + 3) - 1)/(x + 3)", -3.0),
        ("sin(x - 1)/(x - 1)", 1.0),
        ("sin(x)/(x - pi)", math.pi),  # at the double nearest pi too: -1, where the formula is 0/0
        ("(x - pi)/sin(x)", math.pi),  # the first derivative at pi + 1e-9: 122, truth -3.3e-10
    ],
)
@pytest.mark.parametrize("order", [0, 2])
def test_values_next_to_other_roots_of_what_a_formula_divides_by(text: str, at: float, order: int) -> None:
    formula = _formula(text, order)
    points = np.array([at, *(at + s * 10.0**e for e in (-2, -5, -8, -11) for s in (1, -1))])
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": points}, len(points)).values
    for point, value in zip(points, got, strict=True):
        truth = float(reference.evaluate(formula, {"x": float(point)}, prec=2000))
        if math.isnan(truth):  # 0/0 at a root that is a double, as written
            assert math.isnan(value)
        else:
            assert math.isclose(value, truth, rel_tol=1e-14, abs_tol=1e-30), (
                text,
                order,
                point,
                value,
                truth,
            )


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("x - log(x) - 1", 1.0),  # 2e-2 off at 1 + 1e-7 (an independent hunt, 2026-12-07)
        ("x*log(x) - x + 1", 1.0),
        ("exp(x - 1) - x", 1.0),
        ("exp(x) - E*x", 1.0),
        ("2*sqrt(x) - x - 1", 1.0),
        ("x^x - x", 1.0),
        ("x^3 - 3*x + 2", 1.0),
        ("1/x + x - 2", 1.0),
        ("cos(x) + x - pi/2", math.pi / 2),  # the wrong sign at pi/2 + 1e-7
        ("sin(x) - 1 + (x - pi/2)^2/2", math.pi / 2),  # a zero of the fourth order
        # A constant less a function where the function reaches it: 4.5e-8 to 1e-6 off at
        # a(1 + 1e-10) (the same hunt), and through a function inside (`log(log(x))`).
        ("log(x) - 1", math.e),
        ("cos(x) - 1/2", math.pi / 3),
        ("acos(x) - pi/3", 0.5),
        ("tanh(x) - 1/2", math.atanh(0.5)),
        ("2^x - 3", math.log2(3)),
        ("x^2 - 2", math.sqrt(2)),
        ("log(log(x))", math.e),
        # An even power's negative root as well as its positive one (100% off at -sinh(1)).
        ("asinh(x)^2 - 1", -math.sinh(1)),
        ("atan(x)^2 - 1/4", -math.tan(0.5)),
        ("sin(x)^2 - 1/4", -math.pi / 6),
        ("x^2 - 2", -math.sqrt(2)),
    ],
)
def test_values_next_to_where_a_formula_vanishes_and_its_terms_do_not(text: str, at: float) -> None:
    formula = parsing.parse(text)
    points = np.array([at + s * at * 10.0**e for e in (-3, -5, -7, -9, -11) for s in (1, -1)])
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": points}, len(points)).values
    for point, value in zip(points, got, strict=True):
        truth = float(reference.evaluate(formula, {"x": float(point)}, prec=2000))
        assert math.isclose(value, truth, rel_tol=1e-13), (text, point, value, truth)


def test_gradients_of_one_variable_get_it_too() -> None:
    compiled = engine.compile_gradient(parsing.parse("sin(x)/x"), ["x"], hessian=True)
    result = engine.gradient(compiled, {"x": np.array([1e-8, -3e-9])}, 2)
    np.testing.assert_allclose(result.gradients[0], [-1e-8 / 3, 1e-9], rtol=1e-14)
    np.testing.assert_allclose(result.hessians[0], [-1 / 3, -1 / 3], rtol=1e-14)


def test_the_kernel_chooses_by_the_point_and_broadcasts() -> None:
    coefficients = (1.0, 0.0, -1 / 6)  # sin(x)/x's first terms
    u = np.array([0.0, 1e-3, -1e-3, 0.5, np.nan])
    direct = np.array([np.nan, 7.0, 7.0, 7.0, np.nan])
    got = kernels.taylor_near(u, 0.1, direct, coefficients)
    np.testing.assert_array_equal(got[[0, 3, 4]], direct[[0, 3, 4]])
    np.testing.assert_allclose(got[1:3], 1 - 1e-6 / 6, rtol=1e-16)
    assert kernels.taylor_near(np.array([2e-3]), 0.1, 5.0, coefficients)[0] == pytest.approx(1 - 4e-6 / 6)
    long_double = kernels.taylor_near(
        np.array([1e-3], dtype=np.longdouble), 0.1, np.longdouble(0), coefficients
    )
    assert long_double.dtype == np.longdouble


@pytest.mark.parametrize(("exact", "side"), [(True, 0), (False, 0), (True, 1), (False, -1)])
def test_a_column_gets_what_the_generic_form_gives_and_a_held_formula_stays_as_it_was(
    exact: bool, side: int
) -> None:
    """A column of the formula's own length takes the one-pass path, which writes a temporary in
    place: a formula the caller still holds (a shared subexpression) must come back unchanged."""
    coefficients = (1.0, 0.0, -1 / 6)
    u = np.random.default_rng(7).normal(scale=0.2, size=4_096)
    u[[0, 1, 2]] = [0.0, -0.0, np.nan]
    held = np.cos(u) * 3.0
    before = held.copy()
    generic = kernels.taylor_near(u[None, :], 0.1, held[None, :], coefficients, exact, side)[0]
    from_held = kernels.taylor_near(u, 0.1, held, coefficients, exact, side)
    from_temporary = kernels.taylor_near(u, 0.1, np.cos(u) * 3.0, coefficients, exact, side)
    np.testing.assert_array_equal(held, before)
    np.testing.assert_array_equal(from_held, generic)
    np.testing.assert_array_equal(from_temporary, generic)
    assert not np.array_equal(generic, held, equal_nan=True)  # some points were near, and taken


# Independent hunts: each was wrong where the polynomial was used, or where it was not made.
@pytest.mark.parametrize(
    ("text", "order", "points"),
    [
        # A zero of the formula inside what had been the reach: the polynomial's rounding against a
        # value that vanishes (5.6e-17 where it is 4.2e-17); the reach stops half way to it now.
        ("cos(x)*(x - sin(x))/x^3", 0, [1.5707963267948966, 1.5707963267948963, 0.3]),
        # A pole of small residue past the circle: the reach stops within the series' own radius.
        ("(x - sin(x))/x^3 + 10^-18/cos(10x)", 0, [0.1570796, 0.01, 0.07]),
        # A root no double holds: at its double the formula is 0/0, the function finite (-3, 1.5).
        ("sin(3x - 1)/(3x - 1)", 2, [0.3333333333333333, 0.33333334]),
        ("(3x - 1)/log(3x)", 1, [0.3333333333333333]),
        # A root far from 0: the polynomial is in (x - a)/2^k, so neither its terms nor its reach
        # leave the doubles (2e-5 off at 1e6 + 3.3, and no patch at all at 1e15).
        ("log(x/1000000)/(x - 1000000)", 1, [1000003.3, 999990.0, 1000000.001]),
        ("log(x/10^15)/(x - 10^15)", 0, [999999999999999.9]),
        # Zeros of high order: coefficients that vanish told from those that are merely small.
        ("x^20*(x - sin(x))", 0, [1e-3, 1e-5]),
        ("(x - sin(x))^5", 0, [1e-4, 1e-5]),
        # A second hunt. A branch point or pole inside the circle: another series there (c_0 was
        # 1 + 4.9e-8), now told by two circles that disagree.
        ("(exp(x) - 1)/x + atan(10x)/1000000", 0, [-1.3972785634759592e-10, 1e-10, 0.01]),
        ("(exp(x) - 1)/x + atan(10x)/1000000", 1, [-7.450580570719247e-09, 1e-3]),
        ("(exp(x) - 1)/x + 10^-10/cos(20x)", 1, [1.7788108787864264e-4]),
        ("(exp(x) - 1)/x + 10^-9*tanh(15x)", 0, [1e-5, 1e-3, -0.01]),
        # High orders next to a root no double holds: the checks' truth at rising precision (256 bits
        # said 15925248 where it is 0.2, and no patch was made: 4.4e29 at 1e-9 from the root).
        ("sin(x - 1/3)/(x - 1/3)", 4, [0.33333333433333334, 0.3334333, 0.3]),
        ("(exp(x - 1/3) - 1)/(x - 1/3)", 6, [0.33333334, 0.333]),
        # A third hunt (2026-12-04). Odd and even terms falling at different rates: the last two
        # said the series converged within 1.9e-12, and the formula stayed (3.0 at 1e-9).
        ("(1 - coth(x))*sin(3*x)", 1, [1e-9, 1e-11, -1e-6, 0.3]),
        ("(1 - coth(x))*sin(pi*x)", 1, [1e-9, 1e-11, 0.2]),
        # The cancelling factor beside functions no patch is built for (-0.0 at 1e-8, truth 1.9e-9).
        ("gamma(sin(x)/x)", 1, [1e-8, 1.234e-6, -3e-5]),
        ("digamma(sinh(x)/x)", 1, [1e-8, 2e-7]),
        ("loggamma(sinh(x)/x)", 1, [1e-8]),
        # A hunt of 2026-12-05: the cancelling factor inside a sum beside such functions (1.72 at
        # 1e-8, truth 0.192), and cancelling terms of a sum beside them.
        ("gamma(sin(x)/x)", 2, [1e-8, 1e-5, -2e-4]),
        ("digamma(sin(x)/x)*exp(x)", 2, [1e-8, 3e-6]),
        ("sin(x)/x + gamma(x + 1)", 1, [1e-8, 1e-5, -4e-4]),
        ("(1 - cos(x))/x^2 + zeta(x + 2)", 1, [1e-8, 2e-6]),
        # A second hunt: the product rule's terms share the other factor and cancel only together
        # (-1.49 at 1e-8, truth -0.545), and a constant term cancels with the rest of the sum.
        ("digamma(x + 2)*sin(x)/x", 2, [1e-8, 1e-3]),
        ("gamma(x + 2)*sin(x)/x", 2, [1e-8]),
        ("gamma(x + 2)*(exp(x) - 1)/x", 3, [1e-10]),
        ("gamma(x + 2)*(x - sin(x))/x^3", 1, [1e-8, -1e-6, 1e-4]),
        ("gamma(x + 2)*x/tan(x)", 1, [1e-8]),
        # ... and abs and sign beside the cancelling factor: no polynomial on a Cauchy circle.
        ("abs(x - 2)*(x - sin(x))/x^3", 1, [1e-8, 1e-3]),
        ("abs(x - 2)*(x - sin(x))/x^3", 2, [1e-8]),
        ("sign(x + 3)*sin(x)/x", 2, [1e-8]),
        # A hunt of 2026-12-07: a cancelling formula inside abs, sign, Heaviside, Min and Max (0.0 at
        # 1e-8, truth 1.7e-17; derivatives 0.0 and NaN), a level crossed inside one (0.0, 4.9e-17).
        ("abs(sin(x)/x - 1)", 0, [1e-8, -1e-5]),
        ("abs(sin(x)/x - 1)", 1, [1e-8]),
        ("abs(sin(x)/x - 1)", 2, [1e-8, 3e-6]),
        ("sign(x - sin(x))", 0, [1e-9, -1e-9]),
        ("sign(sin(x)/x - 1)*exp(x)", 0, [1e-8]),
        ("Heaviside(log10(x) - 3)", 0, [1000.0000000000001, 999.9999999999999]),
        ("Max(log10(x) - 3, 0)", 0, [1000.0000000000001]),
        ("Min(x - sin(x), 1)", 1, [1e-5, 2e-7]),
        # A hunt of 2026-12-05: gamma and polygamma cancel next to their poles as 1/x does
        # (digamma(x) + 1/x's derivative at 1e-12: -1.3e8, truth 1.64; x digamma(x)' 1e-4 off).
        ("digamma(x) + 1/x", 1, [1e-12, 1e-8, -1e-8]),
        ("x*digamma(x)", 1, [1e-12, 1e-8, -3e-5]),
        ("x*gamma(x)", 1, [1e-12, -1e-8]),
        ("gamma(x) - 1/x", 0, [1e-12, 1e-8]),
        ("1/gamma(x)", 2, [1e-12, -1e-9]),
        ("(x + 1)*gamma(x)", 1, [-1 + 1e-9, -1 - 1e-7]),
        ("x^2*polygamma(1, x)", 1, [1e-10, -1e-7]),
        ("loggamma(x)/(x - 2)", 1, [2 - 1e-9, 2 + 1e-7]),  # 1e-7 off
        # ... and formulas analytic at the point, written through a branch real on one side only
        # (6.7e7 at 1e-12, truth -1/120): the polynomial on that side.
        ("cos(sqrt(x))", 3, [1e-12, 1e-5]),
        ("sec(sqrt(x))", 5, [1e-5]),
        ("sin(sqrt(x))/sqrt(x)", 3, [1e-5, 3e-9]),
        ("sech(tanh(sqrt(x)))", 3, [1e-9]),
        ("cos(acosh(x))", 4, [1.000001]),
        # A formula that is a polynomial next to the point: its series ends, and its last terms were
        # taken for a truncation (patched 1.3e-9 around 1: 2.6e18 at 1 + 1e-8, truth 1344).
        ("(x^8 - 1)/(x - 1)", 4, [1.00000001, 1.0000001, 1.001, 0.9]),
        ("(x^9 - 1)/(x - 1)", 3, [1.0001, 1.00000001]),
        ("(x^5 - 1)/(x - 1)", 1, [1.00000001]),
        ("((1 + x)^9 - 1)/x", 3, [1e-3, 1e-8]),
        # High orders and deep cancellations: terms of k!/x^(k+1) past 256 bits at the nearest probe
        # looked like a pole's growth, and got no polynomial (a hunt, 2026-12-07: 0.0 at 1e-3, truth
        # -0.0909; -1478188 for a first derivative, truth 5.5e-9; 2.2e8 for a value, truth 2.8e-6).
        ("sin(x)/x", 10, [1e-3, 1e-8, 0.5]),
        # ... and terms of 20!/x^21 on the circles of 1/64 and 1/512, past 320 bits: their series
        # disagreed, and the polynomial reached 0.127 only (-256 at 1, truth 0.0275).
        ("sin(x)/x", 20, [1.0, 0.3]),
        ("(exp(x) - 1)/x", 20, [1.0, -1.5]),
        ("(1 - cos(x))/x^2", 12, [0.01, 0.5]),
        ("(x - sin(x))/x^3", 5, [1e-3, 1e-5, 0.1]),
        ("(sin(x) - x + x^3/6 - x^5/120)/x^7", 1, [1e-3, 1e-2, 0.1]),
        ("(cos(x) - 1 + x^2/2 - x^4/24)/x^6", 1, [1e-3, 1e-2]),
        ("(sin(x) - x + x^3/6 - x^5/120 + x^7/5040)/x^9", 0, [1e-3, 1e-2, 0.1]),
    ],
)
def test_what_the_first_version_got_wrong(text: str, order: int, points: list[float]) -> None:
    formula = _formula(text, order)
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": np.array(points)}, len(points))
    for point, value in zip(points, got.values, strict=True):
        truth = float(reference.evaluate(formula, {"x": point}, prec=1000))
        assert math.isclose(value, truth, rel_tol=1e-14), (text, point, value, truth)


_FAR = [s * 10.0**e for e in (2, 4, 5, 7, 9, 12, 16) for s in (1, -1)]


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("x^3*(1/x - sin(1/x))", 0),  # 0.0 at 1e9, truth 1/6 (an independent hunt, 2026-12-06)
        ("x^3*(tan(1/x) - 1/x)", 0),
        ("x^3*(sinh(1/x) - 1/x)", 0),  # 0.172 at 1e7
        ("x*(exp(1/x) - 1) - 1", 0),
        ("x*sin(1/x)", 1),  # 3.7e-6 off at 1e5, 0.0 at 1e8
        ("x*sin(1/x)", 2),
        ("x*atan(1/x)", 1),
        ("x^2*(1 - cos(1/x))", 1),
        ("x*(sqrt(1 + 1/x) - 1)", 1),  # a root, not a function: 0.0 at 1e20 (a second hunt)
        ("(x - 1)*sin(1/(x - 1))", 1),  # shifted: 0.0 at 1e8
        ("(x - 2)^3*(1/(x - 2) - sin(1/(x - 2)))", 0),
    ],
)
def test_a_formula_of_1_over_x_that_cancels_far_out_gets_its_polynomial_in_1_over_x(
    text: str, order: int
) -> None:
    formula = _formula(text, order)
    points = np.array(_FAR)
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": points}, len(points)).values
    for point, value in zip(_FAR, got, strict=True):
        truth = float(reference.evaluate(formula, {"x": point}, prec=1000))
        assert math.isclose(value, truth, rel_tol=1e-13, abs_tol=1e-300), (text, order, point, value, truth)


def test_formulas_calling_more_than_elementary_functions_are_left_alone() -> None:
    """zeta at 1/2 + 1.25e6 i, on the circle, took mpmath seconds (or failed inside it)."""
    formula = parsing.parse("zeta(10^7*x + 1/2)*(x - sin(x))/x^3")
    assert removable.patches(formula) == []
    numeric.compile_function(formula, ["x"])


@pytest.mark.parametrize(
    ("text", "points"),
    [
        ("y*sin(x)/x", {"x": [1e-8, 1e-5, 0.7], "y": [2.0, 1e-6, -3.0]}),
        ("exp(y)*(x - sin(x))", {"x": [1e-5, 3e-3], "y": [1.0, -2.0]}),
        ("sin(x)/x + y^2", {"x": [1e-8, -1e-4], "y": [5.0, 0.5]}),
    ],
)
def test_a_factor_of_one_variable_gets_it_in_a_formula_of_several(
    text: str, points: dict[str, list[float]]
) -> None:
    """The partial of y sin(x)/x in x is y (cos(x)/x - sin(x)/x^2): its factor of x is patched."""
    compiled = engine.compile_gradient(parsing.parse(text), ["x", "y"], hessian=True)
    n = len(points["x"])
    result = engine.gradient(compiled, {name: np.array(values) for name, values in points.items()}, n)
    components = symbolic.gradient_components(parsing.parse(text), ["x", "y"], True)
    computed = [result.value, *result.gradients, result.hessians[0], result.hessians[3]]
    for component, values in zip([*components[:4], components[5]], computed, strict=True):
        for k in range(n):
            truth = float(
                reference.evaluate(component, {"x": points["x"][k], "y": points["y"][k]}, prec=3000)
            )
            assert math.isclose(values[k], truth, rel_tol=1e-14, abs_tol=1e-300), (text, component, k)


@pytest.mark.parametrize(
    ("text", "points"),
    [
        ("sin(x*y)/(x*y)", {"x": [1e-8, 1e-154, 1e-5, 2.0, -1e-3], "y": [3.0, 3.0, 3.0, 3.0, 1e-6]}),
        ("(1 - cos(x*y))/(x*y)^2", {"x": [1e-5, 1e-9, 0.5], "y": [3.0, -2.0, 4.0]}),
        ("(exp(x + y) - 1)/(x + y)", {"x": [1e-9, 1e-8, 1.5], "y": [2e-9, -1e-8 + 1e-15, -0.25]}),
        ("z*(x*y - sin(x*y))/(x*y)^3", {"x": [1e-4, 1e-7, 3.0], "y": [2.0, 5.0, 0.5], "z": [1.5, -1.0, 2.0]}),
        ("sin(x^2 + y^2)/(x^2 + y^2)", {"x": [1e-5, 3e-9, 1.25], "y": [2e-5, -1e-9, 0.5]}),
        # w = 0 where the part is not 0/0: written in w, y^k g(w)/w^k was (a regression hunt: NaN).
        ("sin(x*y)/x", {"x": [1.0, -3.0, 2e-8], "y": [0.0, 0.0, 3.0]}),
        ("(exp(x*y*z) - 1)/(x*y)", {"x": [1.0, 1e-9], "y": [2.0, 3.0], "z": [0.0, 2.0]}),
    ],
)
def test_a_function_of_one_argument_of_several_variables_gets_it_there(
    text: str, points: dict[str, list[float]]
) -> None:
    """The partials of sin(x y)/(x y) are y g'(w) and w g''(w) + g'(w), w = x y: their terms cancel
    next to w = 0 whatever x and y are (-3.33e-8 at (1e-8, 3), truth -3e-8; -2.2e138 at (1e-154, 3))."""
    _assert_every_component_right(text, points)


@pytest.mark.parametrize(
    ("text", "points"),
    [
        ("sin(x)/x*cos(y)/y", {"x": [1e-8, 1e-8, 0.5], "y": [3.0, 1e-8, -2.0]}),
        ("(1 - cos(x))/x^2*exp(y)*(y - sin(y))", {"x": [1e-6, 2e-4, 1.5], "y": [1e-3, 1e-6, 0.75]}),
        ("sin(x)/x*sin(y)/y*(1 - cos(z))/z^2", {"x": [1e-6, 0.5], "y": [1e-5, 1e-7], "z": [1e-4, 2.0]}),
    ],
)
def test_a_sum_of_products_of_factors_of_one_variable_is_separated(
    text: str, points: dict[str, list[float]]
) -> None:
    """The mixed partial of sin(x)/x cos(y)/y is four terms, each a factor in x times one in y, that
    cancel next to x = 0 only as (cos(x) - sin(x)/x)/x: 0.0 at (1e-8, 3), truth -2.1e-10."""
    _assert_every_component_right(text, points)


def _assert_every_component_right(text: str, points: dict[str, list[float]]) -> None:
    """The value, gradient and Hessian of `text` at `points` against 3,000 bits."""
    names = sorted(points)
    compiled = engine.compile_gradient(parsing.parse(text), names, hessian=True)
    n = len(points["x"])
    result = engine.gradient(compiled, {name: np.array(values) for name, values in points.items()}, n)
    components = symbolic.gradient_components(parsing.parse(text), names, True)
    upper = [result.hessians[i * len(names) + j] for i, j in numeric.upper_triangle(len(names))]
    computed = [result.value, *result.gradients, *upper]
    for component, values in zip(components, computed, strict=True):
        for k in range(n):
            truth = float(reference.evaluate(component, {name: points[name][k] for name in names}, prec=3000))
            assert math.isclose(values[k], truth, rel_tol=1e-12, abs_tol=1e-300), (
                text,
                component,
                k,
                values[k],
            )


@pytest.mark.parametrize(
    ("text", "points"),
    [
        ("log(1 + x^2)", [1e-5, -3e-8, 0.25]),  # log1p(x^2) as the code computes it
        ("exp(x^2) - 1", [1e-5, -3e-7]),
        ("exp(x) - 1", [1e-9, -2e-12]),  # expm1(x)
    ],
)
def test_a_formula_its_code_already_computes_well_gets_no_polynomial(text: str, points: list[float]) -> None:
    """Written as they are, these lose digits next to 0 (the 53-bit simulation says so); the code
    computes them through log1p and expm1, which keep them: no polynomial is built (some 55 ms for
    each partial of y*log(1 + x^2) that holds it), and the values are right."""
    formula = parsing.parse(text)
    assert removable.patches(formula) != []  # as written, every operation rounded, it cancels
    compiled = numeric.compile_function(formula, ["x"])
    assert removable.KERNEL not in compiled.program.names
    got = numeric.evaluate(compiled, {"x": np.array(points)}, len(points))
    for point, value in zip(points, got.values, strict=True):
        truth = float(reference.evaluate(formula, {"x": point}, prec=3000))
        assert math.isclose(value, truth, rel_tol=1e-15), (text, point, value, truth)


def test_a_formula_that_cancels_as_its_code_computes_it_keeps_its_polynomial() -> None:
    compiled = numeric.compile_function(_formula("sin(x)/x", 2), ["x"])
    assert removable.KERNEL in compiled.program.names


def test_a_polynomial_for_one_side_leaves_the_other_not_a_number() -> None:
    formula = _formula("cos(sqrt(x))", 3)
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": np.array([-1e-12, -1e-5])}, 2)
    assert np.isnan(got.values).all()


def test_gamma_of_what_grows_without_bound_gets_no_polynomial() -> None:
    """mpmath's gamma of gamma(x) next to 0 is astronomically large and slow: the Hessian of
    gamma(gamma(gamma(x))) took minutes to compile (make fuzz, 2026-12-05); 20 ms as before now."""
    formula = parsing.parse("gamma(gamma(x))*x")
    assert not removable.elementary(formula)
    assert removable.elementary(parsing.parse("gamma(x^2 + 1)*x"))
    engine.compile_gradient(parsing.parse("gamma(gamma(gamma(x)))"), ["x"], hessian=True)


def test_a_plan_tries_few_polynomials_of_formulas_calling_polygamma() -> None:
    """Each costs 0.2 to 0.5 s on the circles: a plan tries three at most (`programs.generate`)."""
    first, second = (_formula(text, 1) for text in ("x*digamma(x)", "digamma(x) + 1/x"))
    with removable.tries(slow=1, every=12, costly=100):
        assert removable.patches(first)
        with pytest.raises(removable.OutOfTries):
            removable.patches(second)
    assert removable.patches(second)  # outside a plan: as many as it needs


def test_a_plan_tries_a_dozen_polynomials_in_all() -> None:
    """Each costs 0.1 s or more: a Hessian of a function of x*y built nine (1.4 s of 2.8 s)."""
    first, second = (_formula(text, 1) for text in ("sin(x)/x", "(1 - cos(x))/x^2"))
    with removable.tries(slow=3, every=1, costly=100):
        assert removable.patches(first)
        with pytest.raises(removable.OutOfTries):
            removable.patches(second)


def test_a_formula_calling_polygamma_is_not_evaluated_at_4096_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """mpmath's psi at 4,096 bits took 0.47 s a point: the Hessian of acsc(beta(x + E, 1)) took 20 s
    to compile, its probes next to a pole of digamma (the differential fuzz slice)."""
    evaluate = reference.evaluate
    precisions: list[int] = []

    def recording(part: Any, values: Any = None, prec: int = 53, **options: Any) -> Any:
        if isinstance(part, sympy.Expr) and part.has(sympy.gamma, sympy.polygamma):
            precisions.append(prec)
        return evaluate(part, values, prec=prec, **options)

    monkeypatch.setattr(reference, "evaluate", recording)
    engine.compile_gradient(parsing.parse("acsc(beta(x + E, e/e))"), ["x"], hessian=True)
    assert precisions and max(precisions) <= 4 * 320  # the circles' precision where 320 bits lose digits


def test_a_level_past_the_doubles_is_no_point_to_patch() -> None:
    """sympy builds exp(-123456788 log 2) as the exact rational 2^-123456788, and converting it took
    minutes: the level of log2(y) + 123456788 (tests/fuzz/slow_plans.py). Such a point is past
    the doubles; one within them is still solved."""
    y = sympy.Symbol("y", real=True)
    assert removable._solved(sympy.log(y) / sympy.log(2) + 123456788, sympy.S.Zero, y) == []
    assert removable._solved(y ** sympy.Rational(1, 1000000) - 3, sympy.S.Zero, y) == []
    assert removable._solved(sympy.log(y) + 3, sympy.S.Zero, y) == [sympy.exp(-3)]
    assert removable._solved(sympy.sqrt(y) - 3, sympy.S.Zero, y) == [9]
    # An even power: both roots (y^(2/3) = 4 at +-8).
    assert removable._solved(y ** sympy.Rational(2, 3) - 4, sympy.S.Zero, y) == [8, -8]


def test_polygamma_of_an_order_that_is_not_whole_is_not_patched() -> None:
    """mpmath computes it as Hurwitz's zeta, 0.3 to 0.46 s a point at 1,024 bits."""
    y = sympy.Symbol("y", real=True)
    assert not removable.elementary(sympy.polygamma(y, y) / y)
    assert not removable.elementary(sympy.polygamma(sympy.Float(1.5e-8), y) / y)
    assert removable.elementary(sympy.polygamma(2, y) / y)


def test_evaluations_at_1024_bits_of_a_formula_calling_polygamma_are_counted() -> None:
    """Looking for where a formula cancels is not a try, and each of its probes evaluates it at
    1,024 bits: a plan has `costly` of those for formulas calling polygamma."""
    part = _formula("(x + 1)*gamma(x)", 1)  # gamma(x)*(x*digamma(x) + digamma(x) + 1): 54 of them
    with removable.tries(slow=3, every=12, costly=100):
        assert removable.patches(part)
    with removable.tries(slow=3, every=12, costly=2), pytest.raises(removable.OutOfTries):
        removable.patches(part)


def test_a_point_next_to_the_largest_doubles_has_a_scale_a_double_holds() -> None:
    """The level of 1e309 - 6y is at 1.7e308, whose scale was 2^1024: an OverflowError, answered
    INTERNAL (make fuzz, 2026-12-08)."""
    formula = parsing.parse("(-(y - (1e309))) - (5 * y)")
    compiled = numeric.compile_function(formula, ["y"])
    value = numeric.evaluate(compiled, {"y": np.array([1.0])}, 1).values[0]
    assert value == float(reference.evaluate(formula, {"y": 1.0}, prec=200))
