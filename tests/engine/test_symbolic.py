"""The symbolic engine: derivative tables, finite-difference checks, wrt resolution and limits."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import engine
from chainrule.engine import parsing, symbolic
from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.engine.functions import RealRoot
from chainrule.engine.parsing import parse, to_text
from chainrule.engine.symbolic import EngineLimits, Simplification

x, y, z = (sympy.Symbol(name, real=True) for name in "xyz")
Wrt = tuple[tuple[str, int], ...]


def p(text: str) -> sympy.Expr:
    """Table entries are written as users write them and built by our own parser."""
    return parse(text)


@dataclass(frozen=True)
class Case:
    """One derivative: `domain` is where random points for the finite-difference check are drawn."""

    text: str
    wrt: Wrt
    expected: str
    reason: str
    domain: tuple[float, float] = (-2.0, 2.0)
    numeric: bool = True  # False where the derivative is a distribution (DiracDelta)

    @property
    def expr(self) -> sympy.Expr:
        return p(self.text)


X1 = (("x", 1),)
CASES = [
    # The seed lesson's worked examples, exactly as written there.
    Case("(3x + 1)²", (), "6(3x + 1)", "seed: power of a linear inner function"),
    Case("sin(x²)", (), "2x cos(x²)", "seed: outer derivative at the inner"),
    Case("(sin x)³", (), "3 sin(x)² cos(x)", "seed: opposite nesting"),
    Case("sin(cos x)", (), "-sin(x) cos(cos(x))", "seed: trig in trig"),
    Case("e^(2x)", (), "2e^(2x)", "seed: exponential"),
    # Orders and mixed partials.
    Case("sin(x)", (("x", 4),), "sin(x)", "fourth derivative of sin is sin"),
    Case("x exp(x)", (("x", 3),), "(x + 3) exp(x)", "Leibniz rule, third order"),
    Case(
        "x^3 y^2 + sin(x y)",
        (("x", 2), ("y", 1)),
        "12 x y - 2 y sin(x y) - x y^2 cos(x y)",
        "mixed partial d3/dx2dy",
    ),
    Case("x^2 y^3", (("y", 1), ("x", 1)), "6 x y^2", "mixed partial, y first"),
    Case("x y z", (("x", 1), ("y", 1), ("z", 1)), "1", "three variables, one each"),
    Case("x^5", (("x", 0),), "5x^4", "order 0 means 1"),
    Case("x^3", (("x", 4),), "0", "differentiated past its degree"),
    # Piecewise functions under real symbols.
    Case("abs(x)", X1, "sign(x)", "real symbols: |x|' = sign(x)", (0.1, 2.0)),
    Case("abs(sin(x))", X1, "sign(sin(x)) cos(x)", "|u|' = sign(u)u'", (0.1, 3.0)),
    Case("sign(x)", X1, "2 DiracDelta(x)", "sign' is a delta", numeric=False),
    # Exponentials, logarithms, powers.
    Case("ln(x)", X1, "1/x", "natural log", (0.1, 3.0)),
    Case("log(x, 2)", X1, "1/(x log(2))", "log with a base", (0.1, 3.0)),
    Case("log10(x^2 + 1)", X1, "2x/((x^2 + 1) log(10))", "log10 of an inner function"),
    Case("x^x", X1, "x^x (log(x) + 1)", "general power", (0.2, 2.0)),
    Case("2^x", X1, "2^x log(2)", "constant base"),
    Case("sqrt(x)", X1, "1/(2 sqrt(x))", "square root", (0.1, 3.0)),
    Case("cbrt(x)", X1, "cbrt(x)/(3x)", "real cube root, positive side", (0.2, 2.0)),
    Case("cbrt(x^2 + 1)", X1, "2x cbrt(x^2 + 1)/(3(x^2 + 1))", "real cube root of an inner function"),
    Case("root(x, 5)", X1, "root(x, 5)/(5x)", "real fifth root, negative side", (-2.0, -0.2)),
    Case("(x^2 + 1)/(x - 1)", X1, "(x^2 - 2x - 1)/(x - 1)^2", "quotient", (1.2, 3.0)),
    # Trigonometric and inverse trigonometric.
    Case("tan(x)", X1, "1 + tan(x)^2", "tan", (-1.2, 1.2)),
    Case("sec(x)", X1, "sec(x) tan(x)", "sec", (-1.2, 1.2)),
    Case("csc(x)", X1, "-csc(x) cot(x)", "csc", (0.2, 3.0)),
    Case("cot(x)", X1, "-1 - cot(x)^2", "cot", (0.2, 3.0)),
    Case("arcsin(x)", X1, "1/sqrt(1 - x^2)", "asin", (-0.9, 0.9)),
    Case("acos(x)", X1, "-1/sqrt(1 - x^2)", "acos", (-0.9, 0.9)),
    Case("atan(x)", X1, "1/(1 + x^2)", "atan"),
    Case("atan2(y, x)", X1, "-y/(x^2 + y^2)", "atan2 by x", (0.2, 2.0)),
    Case("atan2(y, x)", (("y", 1),), "x/(x^2 + y^2)", "atan2 by y", (0.2, 2.0)),
    # Hyperbolic and inverse hyperbolic.
    Case("sinh(x)", X1, "cosh(x)", "sinh"),
    Case("cosh(x)", X1, "sinh(x)", "cosh"),
    Case("tanh(x)", X1, "1 - tanh(x)^2", "tanh"),
    Case("asinh(x)", X1, "1/sqrt(x^2 + 1)", "asinh"),
    Case("acosh(x)", X1, "1/(sqrt(x - 1) sqrt(x + 1))", "acosh", (1.1, 3.0)),
    Case("atanh(x)", X1, "1/(1 - x^2)", "atanh", (-0.9, 0.9)),
    # Special functions.
    Case("erf(x)", X1, "2 exp(-x^2)/sqrt(pi)", "erf"),
    Case("gamma(x)", X1, "gamma(x) polygamma(0, x)", "gamma", (0.3, 4.0)),
    Case("loggamma(x)", (("x", 2),), "polygamma(1, x)", "loggamma, second order", (0.3, 4.0)),
    # Deep nesting: one factor per layer.
    Case(
        "sin(exp(cos(x^2)))",
        X1,
        "-2x sin(x^2) exp(cos(x^2)) cos(exp(cos(x^2)))",
        "three layers of chain rule",
    ),
    # Constants and defaults.
    Case("5", (), "0", "a constant with empty wrt"),
    Case("pi e", (("x", 2),), "0", "a constant by a named variable"),
    Case("cos x", (), "-sin(x)", "empty wrt: the only free variable"),
]


def _ids(cases: list[Case]) -> list[str]:
    return [case.reason for case in cases]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("mode", [Simplification.NONE, Simplification.FAST])
def test_derivative_table(case: Case, mode: Simplification) -> None:
    got = engine.differentiate(case.expr, case.wrt, mode, EngineLimits())
    assert _same(got, p(case.expected)), f"{case.reason}: got {got}"
    assert _same(parse(to_text(got)), got), f"{case.reason}: {to_text(got)!r} does not read back"


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    # The parser evaluates as it builds (6(3x + 1) reads back as 18x + 6): equal as expressions.
    return a == b or sympy.simplify(a - b) == 0


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("(3x + 1)²", {"6*(3*x + 1)", "18*x + 6"}),
        ("sin(x²)", {"2*x*cos(x^2)"}),
        ("(sin x)³", {"3*sin(x)^2*cos(x)"}),
        ("sin(cos x)", {"-sin(x)*cos(cos(x))"}),
        ("e^(2x)", {"2*exp(2*x)"}),
        ("x^2 e^x", {"x*(x + 2)*exp(x)"}),
    ],
)
def test_fast_form_reads_naturally(text: str, allowed: set[str]) -> None:
    assert to_text(engine.differentiate(p(text), (), Simplification.FAST)) in allowed


def test_full_simplification_goes_further_than_fast() -> None:
    expr = sympy.sin(x) / sympy.cos(x)
    fast = engine.differentiate(expr, (("x", 1),), Simplification.FAST)
    full = engine.differentiate(expr, (("x", 1),), Simplification.FULL)
    assert sympy.count_ops(full) < sympy.count_ops(fast)
    assert sympy.simplify(full - sympy.cos(x) ** -2) == 0


def _mp_function(expr: sympy.Expr, names: tuple[str, ...]) -> Callable[..., object]:
    symbols = [sympy.Symbol(name, real=True) for name in names]
    modules = [{"RealRoot": _mp_real_root}, "mpmath"]
    return sympy.lambdify(symbols, expr, modules=modules)


def _mp_real_root(value: mpmath.mpf, n: int) -> mpmath.mpf:
    return mpmath.sign(value) * abs(value) ** (mpmath.mpf(1) / n)


def _orders(case: Case, names: tuple[str, ...]) -> tuple[int, ...]:
    wrt = engine.resolve_wrt(case.expr, case.wrt)
    return tuple(sum(order for name, order in wrt if name == wanted) for wanted in names)


NUMERIC_CASES = [case for case in CASES if case.numeric and case.expr.free_symbols]


@pytest.mark.parametrize("case", NUMERIC_CASES, ids=_ids(NUMERIC_CASES))
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_derivative_matches_finite_differences(case: Case, data: st.DataObject) -> None:
    names = engine.free_variables(case.expr)
    low, high = case.domain
    point = [data.draw(st.floats(low, high), label=name) for name in names]
    derivative = engine.differentiate(case.expr, case.wrt, Simplification.FAST)
    ours = float(engine.compile_function(derivative, names)([np.float64(v) for v in point]))
    f = _mp_function(case.expr, names)
    with mpmath.workdps(30):
        reference = complex(mpmath.diff(f, [mpmath.mpf(v) for v in point], _orders(case, names)))
    if not np.isfinite(ours) or abs(reference.imag) > 1e-9 or abs(reference.real) > 1e8:
        return  # off the function's smooth real domain
    assert ours == pytest.approx(reference.real, rel=1e-7, abs=1e-7), f"{case.reason} at {point}"


# Random expression trees: the memoised chain rule must agree with sympy's own diff.
_leaves = st.sampled_from([x, y, sympy.Integer(2), sympy.Rational(1, 3), x + 1])
_unary = st.sampled_from([sympy.sin, sympy.cos, sympy.exp, sympy.atan, sympy.tanh, sympy.erf])


def _extend(children: st.SearchStrategy[sympy.Expr]) -> st.SearchStrategy[sympy.Expr]:
    return st.one_of(
        st.builds(sympy.Add, children, children),
        st.builds(sympy.Mul, children, children),
        st.builds(lambda base, n: base**n, children, st.integers(2, 3)),
        st.builds(lambda f, arg: f(arg), _unary, children),
        st.builds(lambda arg: sympy.log(1 + arg**2), children),
        st.builds(lambda a, b: (1 + a**2) ** b, children, children),
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(expr=st.recursive(_leaves, _extend, max_leaves=8), at=st.floats(-1.5, 1.5))
def test_memoised_chain_rule_agrees_with_sympy_diff(expr: sympy.Expr, at: float) -> None:
    ours = engine.derivative(expr, x)
    theirs = sympy.diff(expr, x)
    point = {x: sympy.Float(at), y: sympy.Float(0.7)}
    a, b = complex(ours.evalf(20, subs=point)), complex(theirs.evalf(20, subs=point))
    assert a == pytest.approx(b, rel=1e-9, abs=1e-9), f"d/dx {expr}"


# wrt resolution.


@pytest.mark.parametrize(
    ("text", "wrt"),
    [
        ("x^2 + 1/0", [("x", 1)]),  # sympy's zoo absorbs x^2, and its d/dx is 0
        ("log(x, 1)", [("x", 1)]),  # log(x)/log(1)
        ("1/0", []),
        ("x*sin(2^19999)", []),  # a trigonometric function past 2^4096 is NaN (docs/accuracy.md)
        ("sin(exp(exp(100)))*x", [("x", 2)]),
    ],
)
def test_a_function_defined_nowhere_has_no_derivative(text: str, wrt: list[tuple[str, int]]) -> None:
    """Its derivative was 0, self-checked VERDICT_OK (an independent hunt, 2026-12-06)."""
    assert symbolic.differentiate(parse(text), wrt) is sympy.nan


def test_resolve_wrt_defaults() -> None:
    assert engine.resolve_wrt(sympy.sin(x), ()) == (("x", 1),)
    assert engine.resolve_wrt(sympy.Integer(3), ()) == ()
    assert engine.resolve_wrt(x * y, (("y", 0), ("x", 2))) == (("y", 1), ("x", 2))


def test_several_free_symbols_need_a_wrt() -> None:
    with pytest.raises(InvalidArgument) as caught:
        engine.differentiate(x * y + z, (), Simplification.FAST)
    assert "x, y, z" in caught.value.message
    assert caught.value.violations[0].field == "wrt"


@pytest.mark.parametrize(
    ("wrt", "field", "reason"),
    [
        ((("x", 1), ("1x", 1)), "wrt[1].variable", "starts with a digit"),
        ((("", 1),), "wrt[0].variable", "empty name"),
        ((("sin", 1),), "wrt[0].variable", "a function name is reserved"),
        ((("pi", 1),), "wrt[0].variable", "a constant name is reserved"),
        ((("x" * 33, 1),), "wrt[0].variable", "longer than 32 characters"),
        ((("x", -1),), "wrt[0].order", "negative order"),
    ],
)
def test_bad_wrt_names_the_field(wrt: Wrt, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        engine.resolve_wrt(x, wrt)
    assert caught.value.violations[0].field == field, reason


@pytest.mark.parametrize(
    ("wrt", "field"),
    [
        ((("x", 21),), "wrt[0].order"),
        ((("x", 1_000_000),), "wrt[0].order"),
        ((("x", 10), ("y", 11)), "wrt"),
    ],
)
def test_total_order_is_limited(wrt: Wrt, field: str) -> None:
    with pytest.raises(LimitExceeded) as caught:
        engine.differentiate(x * y, wrt, Simplification.FAST, EngineLimits(max_derivative_order=20))
    assert caught.value.violations[0].field == field
    assert caught.value.metadata["maximum"] == "20"


@pytest.mark.timeout(30)  # stops at the size limit long before order 12 (bench/ measures how soon)
def test_exploding_derivative_stops_early() -> None:
    with pytest.raises(LimitExceeded) as caught:
        engine.differentiate(
            sympy.exp(sympy.sin(x) * x**x), (("x", 12),), Simplification.FAST, EngineLimits()
        )
    assert caught.value.metadata["limit"] == "derivative_nodes"


def test_size_limit_is_checked_after_each_order() -> None:
    limits = EngineLimits(max_derivative_nodes=200)
    expr = sympy.exp(sympy.sin(x) * x**x)
    assert engine.expression_size(engine.differentiate(expr, (("x", 2),), Simplification.NONE, limits)) <= 200
    with pytest.raises(LimitExceeded):
        engine.differentiate(expr, (("x", 3),), Simplification.NONE, limits)


def test_expression_size_counts_the_tree_not_the_dag() -> None:
    shared = sympy.sin(x) + sympy.cos(x)  # 5 nodes
    assert engine.expression_size(shared) == 5
    assert engine.expression_size(shared * sympy.exp(shared)) == 1 + 5 + 1 + 5


def test_results_pickle() -> None:
    got = engine.differentiate(sympy.atan2(y, x) * RealRoot(x, 3), (("x", 2),), Simplification.FAST)
    assert pickle.loads(pickle.dumps(got)) == got
    components = engine.gradient_components(x**2 * y, ["x", "y"], hessian=True)
    assert pickle.loads(pickle.dumps(components)) == components


def test_gradient_components_order() -> None:
    value, dx, dy, dxx, dxy, dyy = engine.gradient_components(x**3 * y**2, ["x", "y"], hessian=True)
    assert (value, dx, dy) == (x**3 * y**2, 3 * x**2 * y**2, 2 * x**3 * y)
    assert (dxx, dxy, dyy) == (6 * x * y**2, 6 * x**2 * y, 2 * x**3)


def test_latex() -> None:
    assert engine.to_latex(engine.differentiate(sympy.sin(x**2), (), Simplification.FAST)) == (
        r"2 x \cos{\left(x^{2} \right)}"
    )


def test_an_expression_built_unevaluated_crosses_processes() -> None:
    # The parser builds acos(sin(10^309/3)) unevaluated (sympy's acos cannot decide 'ang > pi' for
    # it); unpickled in another process with evaluation, it raised TypeError there (INTERNAL; make fuzz).
    expression = parsing.parse("acos(sin((1e309) / 3))")
    crossed = pickle.loads(pickle.dumps(symbolic.Portable(expression))).expression
    assert crossed == expression and sympy.srepr(crossed) == sympy.srepr(expression)


@pytest.mark.parametrize("text", ["-re(polygamma(y, y))", "im(polygamma(y, y)) + y"])
def test_re_and_im_of_a_partial_without_closed_form_differentiate_twice(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sympy's own diff of re(Subs(d polygamma(xi, y)/d xi, xi, y)) substituted into its own dummy
    # (xi + 1): the Hessian read a variable 'xi_1' no caller can give (the fuzzer, seed 2681275829).
    # Its mpmath partials take about 0.9 s of the 1 s budget: a loaded machine must not fail it.
    monkeypatch.setattr(engine.numeric, "_MIN_POINTWISE_SECONDS", 30.0)
    expression = parsing.parse(text)
    components = symbolic.gradient_components(expression, ("y",), True)
    assert all(part.free_symbols <= expression.free_symbols for part in components)
    compiled = symbolic.compile_gradient(expression, ("y",), hessian=True)
    result = engine.numeric.gradient(compiled, {"y": np.array([3.5])}, 1)
    assert result.nonfinite_count == 0


@pytest.mark.parametrize("mode", [Simplification.FAST, Simplification.FULL])
def test_a_power_past_a_million_is_not_simplified(mode: Simplification) -> None:
    """sympy takes the numeric content out of a power's base as an exact power: the derivative of
    (2 (x + 1e20))^(1e20) made 2^(10^20), past any budget (tests/fuzz/slow_plans.py)."""
    derivative = symbolic.differentiate(
        parsing.parse("(2*(x + 1e20))^(1e20)"), [("x", 1)], Simplification.NONE
    )
    assert symbolic.simplify(derivative, mode) == derivative
    small = parsing.parse("(2*x + 2)^3")
    assert symbolic.simplify(small, Simplification.FAST) == 8 * (parsing.parse("x + 1")) ** 3
