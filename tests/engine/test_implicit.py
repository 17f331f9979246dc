"""Implicit differentiation: against numeric derivatives of explicit branches; explain, verify, errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import pytest
import sympy
from sympy.polys import rings
from sympy.polys.polyerrors import HeuristicGCDFailed

from chainrule import engine
from chainrule.engine import explain, implicit, parsing, verify
from chainrule.engine.errors import InvalidArgument, LimitExceeded, ParseError

x, y = parsing.symbol("x"), parsing.symbol("y")


def _derivative(text: str, order: int = 1, dependent: str = "y", wrt: str = "x") -> sympy.Expr:
    lhs, rhs = parsing.parse_equation(text)
    function = implicit.equation_function(lhs, rhs)
    target = implicit.resolve(function, dependent, [(wrt, order)] if wrt else [])
    return implicit.implicit_derivative(function, target)


def test_the_circle_at_three_four() -> None:
    """x^2 + y^2 = 25 at (3, 4): y' = -3/4 and y'' = -25/64."""
    at = {x: 3, y: 4}
    assert _derivative("x^2 + y^2 = 25") == -x / y
    assert _derivative("x^2 + y^2 = 25").subs(at) == sympy.Rational(-3, 4)
    assert _derivative("x^2 + y^2 = 25", 2).subs(at) == sympy.Rational(-25, 64)


# (equation, explicit branch y(x), points x on it, why)
BRANCHES: list[tuple[str, Callable[[mpmath.mpf], mpmath.mpf], tuple[float, ...], str]] = [
    ("x^2 + y^2 = 25", lambda t: mpmath.sqrt(25 - t**2), (3.0, -1.5, 4.2), "the upper half of the circle"),
    ("x^2 + y^2 - 25", lambda t: -mpmath.sqrt(25 - t**2), (3.0, 0.5), "F alone means F = 0; the lower half"),
    ("e^y = x", mpmath.log, (0.5, 2.0, 7.0), "y = log(x)"),
    ("x y = 1", lambda t: 1 / t, (0.25, -3.0), "a hyperbola"),
    (
        "y^3 + y = x",
        lambda t: mpmath.findroot(lambda u: u**3 + u - t, 0),
        (0.0, 2.0, -5.0),
        "a cubic, solved",
    ),
    (
        "sin(y) + 2y = x",
        lambda t: mpmath.findroot(lambda u: mpmath.sin(u) + 2 * u - t, t / 3),
        (1.0,),
        "no closed form",
    ),
    (
        "x^3 + y^3 = 6 x y",
        lambda t: mpmath.findroot(lambda u: t**3 + u**3 - 6 * t * u, 3),
        (3.0, 2.5),
        "the folium of Descartes, through (3, 3)",
    ),
    ("x^2/4 + y^2/9 = 1", lambda t: 3 * mpmath.sqrt(1 - t**2 / 4), (1.0, -0.5), "an ellipse"),
    (
        "sin(x y) = x",
        lambda t: mpmath.findroot(lambda u: mpmath.sin(t * u) - t, 1),
        (0.5,),
        "the dependent variable inside a product inside a function",
    ),
    (
        "y^5 + y = x",
        lambda t: mpmath.findroot(lambda u: u**5 + u - t, 1),
        (3.0, -1.0),
        "a quintic",
    ),
    ("x^y = 2", lambda t: mpmath.log(2) / mpmath.log(t), (3.0, 0.5), "the dependent variable as an exponent"),
    ("atan(y/x) = x", lambda t: t * mpmath.tan(t), (1.0, -0.4), "y inside a quotient inside a function"),
]


@pytest.mark.parametrize(("text", "branch", "points", "why"), BRANCHES)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_matches_numeric_derivatives_of_an_explicit_branch(
    text: str, branch: Callable[[mpmath.mpf], mpmath.mpf], points: tuple[float, ...], why: str, order: int
) -> None:
    derivative = _derivative(text, order)
    with mpmath.workdps(40):
        for at in points:
            on_curve = branch(mpmath.mpf(at))
            numeric = float(mpmath.diff(branch, mpmath.mpf(at), order))
            symbolic = float(
                derivative.evalf(30, subs={x: sympy.Float(at, 30), y: sympy.Float(str(on_curve), 40)})
            )
            assert symbolic == pytest.approx(numeric, rel=1e-10, abs=1e-12), (why, at)


def test_empty_wrt_is_the_only_other_variable_and_results_read_back() -> None:
    lhs, rhs = parsing.parse_equation("x^3 + y^3 = 6 x y")
    function = implicit.equation_function(lhs, rhs)
    target = implicit.resolve(function, "y", [])
    assert (target.variable, target.dependent, target.order) == (x, y, 1)
    derivative = implicit.implicit_derivative(function, target)
    assert sympy.simplify(parsing.parse(parsing.to_text(derivative)) - (2 * y - x**2) / (y**2 - 2 * x)) == 0


def test_other_variables_are_parameters() -> None:
    lhs, rhs = parsing.parse_equation("x^2/a^2 + y^2/b^2 = 1")
    function = implicit.equation_function(lhs, rhs)
    target = implicit.resolve(function, "y", [("x", 1)])
    a, b = parsing.symbol("a"), parsing.symbol("b")
    assert sympy.simplify(implicit.implicit_derivative(function, target) + b**2 * x / (a**2 * y)) == 0


@pytest.mark.parametrize(
    ("text", "dependent", "wrt", "field", "says"),
    [
        ("x^2 + y^2 = 25", "z", [("x", 1)], "dependent", "does not occur"),
        ("x^2 + y^2 = 25", "y", [("y", 1)], "dependent", "dependent variable"),
        ("x^2 + y^2 = 25", "sin", [("x", 1)], "dependent", "reserved"),
        ("x^2 + y^2 = 25", "y", [("x", 1), ("x", 1)], "wrt", "one variable"),
        ("x^2 + y^2 = a", "y", [], "wrt", "a, x"),
        ("y^2 = 4", "y", [], "expression", "no variable besides"),
        ("x + y = x + y", "y", [("x", 1)], "expression", "holds for every value"),
        ("y = y + 1", "y", [("x", 1)], "expression", "never holds"),
        ("x + floor(y) = 1", "y", [("x", 1)], "dependent", "does not change"),
        # dF/dy was a Dirac delta: y' = 1/(2 DiracDelta(y)), infinite (an independent hunt, 2026-12-06)
        ("sign(y) = x", "y", [("x", 1)], "dependent", "does not change"),
        ("Heaviside(y) = x", "y", [("x", 1)], "dependent", "does not change"),
        ("sign(y)^2 + floor(y) = x", "y", [("x", 1)], "dependent", "does not change"),
        # a typo in wrt answered 0 (tester round 5)
        ("x^2 + y^2 = 25", "y", [("z", 1)], "wrt[0].variable", "'z' does not occur"),
    ],
)
def test_bad_requests_name_the_argument(
    text: str, dependent: str, wrt: list[tuple[str, int]], field: str, says: str
) -> None:
    lhs, rhs = parsing.parse_equation(text)
    with pytest.raises(InvalidArgument) as caught:
        implicit.resolve(implicit.equation_function(lhs, rhs), dependent, wrt)
    assert [v.field for v in caught.value.violations] == [field]
    assert says in caught.value.message


def test_order_over_the_limit_names_wrt() -> None:
    lhs, rhs = parsing.parse_equation("x^2 + y^2 = 25")
    with pytest.raises(LimitExceeded) as caught:
        implicit.resolve(implicit.equation_function(lhs, rhs), "y", [("x", 99)])
    assert [v.field for v in caught.value.violations] == ["wrt[0].order"]


def test_equations_parse_only_on_purpose() -> None:
    assert parsing.parse_equation("x^2 + y^2 = 25") == (x**2 + y**2, 25)
    assert parsing.parse_equation("x y - 1") == (x * y - 1, 0)
    with pytest.raises(ParseError) as needs:
        parsing.parse("x^2 + y^2 = 25")
    assert "dependent" in needs.value.message and needs.value.position == 10
    for text, position in [("x = y = 1", 6), ("x =", 3), ("= 1", 0), ("sin(x = 1)", 6)]:
        with pytest.raises(ParseError) as caught:
            parsing.parse_equation(text)
        assert caught.value.position == position, text
        assert [v.field for v in caught.value.violations] == ["expression"]
    with pytest.raises(ParseError, match="one '='"):
        parsing.parse_equation("x = y = 1")


def _explained(text: str, order: int) -> tuple[list[explain.Step], sympy.Expr]:
    lhs, rhs = parsing.parse_equation(text)
    function = implicit.equation_function(lhs, rhs)
    target = implicit.resolve(function, "y", [("x", order)])
    derivative = implicit.implicit_derivative(function, target)
    return explain.explain_implicit(lhs, rhs, target, derivative), derivative


def test_a_ratio_whose_gcd_sympy_gives_up_on_stays_uncancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    # y' = -F_x/F_y is cancelled where that makes it smaller; where sympy's heuristic gcd gives up
    # ("no luck", as it did in a Hessian: the fuzzer, seed 3248711614) it is the ratio as it is.
    calls = []

    def no_luck(*polynomials: object) -> None:
        calls.append(polynomials)
        raise HeuristicGCDFailed("no luck")

    monkeypatch.setattr(rings, "heugcd", no_luck)
    steps, derivative = _explained("x^2/(y + 7919) + y^3 = 5", 2)
    assert calls
    assert steps[-1].result.text == parsing.to_text(derivative)
    # y' and y'' by the textbook's formulas from F's partials, at (1, 2)
    f = x**2 / (y + 7919) + y**3 - 5
    fx, fy = f.diff(x), f.diff(y)
    first = -fx / fy
    second = -(f.diff(x, 2) + 2 * f.diff(x, y) * first + f.diff(y, 2) * first**2) / fy
    at = {x: 1, y: 2}
    assert float(_derivative("x^2/(y + 7919) + y^3 = 5").subs(at)) == pytest.approx(
        float(first.subs(at)), rel=1e-14
    )
    assert float(derivative.subs(at)) == pytest.approx(float(second.subs(at)), rel=1e-14)


def test_explain_shows_the_chain_rule_at_each_occurrence_of_y() -> None:
    steps, derivative = _explained("x^2 + y^2 = 25", 2)
    assert steps[-1].result.text == parsing.to_text(derivative)
    dependent = [s for s in steps if s.rule is explain.Rule.IMPLICIT and s.expression.text == "y"]
    assert [s.result.text for s in dependent] == ["y'", "y'"]  # once per pass
    (square,) = [s for s in steps if s.expression.text == "y^2"]
    assert square.rule is explain.Rule.CHAIN and square.chain is not None
    assert square.result.text == "2*y*y'"
    assert (square.chain.inner.text, square.chain.inner_derivative.text) == ("y", "y'")
    assert square.chain.outer_derivative.text == "2*y"
    solved = [s for s in steps if s.description.startswith("solve")]
    assert [s.result.text for s in solved] == ["-x/y"]
    assert [s.description for s in steps if s.description.startswith("substitute")] == [
        "substitute y' = -x/y in -(-x*y' + y)/y^2"
    ]
    for index, step in enumerate(steps):
        assert all(dep < index for dep in step.depends_on)


def test_explain_ends_in_the_derivative_for_each_order() -> None:
    for text in ("sin(x y) + e^y = x", "x^3 + y^3 = 6 x y", "y^2 = x"):
        for order in (1, 2, 3):
            steps, derivative = _explained(text, order)
            assert steps[-1].result.text == parsing.to_text(derivative), (text, order)
            assert "y'" not in steps[-1].result.text


def test_verify_of_an_implicit_derivative_uses_the_branch() -> None:
    for text, order in [("x^2 + y^2 = 25", 2), ("sin(x y) + e^y = x", 1), ("x^3 + y^3 = 6 x y", 3)]:
        lhs, rhs = parsing.parse_equation(text)
        function = implicit.equation_function(lhs, rhs)
        target = implicit.resolve(function, "y", [("x", order)])
        derivative = implicit.implicit_derivative(function, target)
        check = verify.verify_implicit(function, target, derivative)
        assert check.verdict is verify.Verdict.OK, text
        assert len(check.points) == 5 and check.method is verify.Method.CENTRAL_DIFFERENCE
        wrong = verify.verify_implicit(function, target, derivative + x / 1000)
        assert wrong.verdict is verify.Verdict.MISMATCH, text


def test_the_implicit_derivative_compiles_like_any_expression() -> None:
    compiled = engine.compile_function(_derivative("x^2 + y^2 = 25", 2), ("x", "y"))
    result = engine.evaluate(compiled, {"x": [3.0, 0.0], "y": [4.0, 5.0]}, 2)
    assert list(result.values) == [-25 / 64, -1 / 5]
    assert math.isclose(result.values[1], -25 / 125)
