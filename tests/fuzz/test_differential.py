"""The differential fuzzer's bounded slice: fixed seeds (derandomized), every function of the table at
the root of a few random trees, about 40 s in all.

Random trees (depth <= 4, 1-3 variables, the whole table below the root), printed in our grammar, sent
through the API layer (values, batches, derivatives, gradients with Hessians, derivative texts read
back), every number judged against mpmath (`checks`). `make fuzz MINUTES=20` runs the same checks
with fresh seeds for as long as asked, FULL simplification included (`tests/fuzz/run.py`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule.engine import functions, parsing
from chainrule.server.api import ChainruleApi
from chainrule.server.compute.executors import InlineExecutor
from tests.conftest import make_settings
from tests.fuzz import checks, trees

_EXAMPLES_PER_FUNCTION = 20


@st.composite
def cases(draw: st.DrawFn, root: str | None = None) -> tuple[trees.Node, list[dict[str, float]], int]:
    """A tree over 1-3 variables, 1-3 points (values for the variables it uses) and a rounding seed."""
    count = draw(st.integers(1, 3))
    tree = draw(trees.trees(trees.VARIABLES[:count], root=root))
    used = sorted(tree.variables())
    point = st.fixed_dictionaries({name: trees.coordinates() for name in used})
    points = draw(st.lists(point, min_size=1, max_size=3))
    return tree, points, draw(st.integers(0, 2**31))


@pytest.fixture(scope="module")
def differential() -> Iterator[checks.Differential]:
    loop = asyncio.new_event_loop()
    api = ChainruleApi(make_settings(), InlineExecutor(), InlineExecutor())
    yield checks.Differential(api, loop)
    loop.close()


@pytest.mark.parametrize("function", [spec.name for spec in functions.SPECS])
@settings(
    max_examples=_EXAMPLES_PER_FUNCTION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_every_number_agrees_with_mpmath(
    differential: checks.Differential, function: str, data: st.DataObject
) -> None:
    tree, points, seed = data.draw(cases(function))
    findings = differential.run(tree, points, seed)
    assert not findings, "\n".join(finding.describe() for finding in findings)


def test_a_constant_sympy_folds_in_doubles_is_judged_as_folded(differential: checks.Differential) -> None:
    """tan(1.5e-8 - tan(1.5e-8)) is -1.1e-24 exactly; sympy computes it in doubles as it parses (0.0),
    which is what float64 gives: the checker accepts that, and only that (make fuzz, 2026-12-01)."""
    literal = trees.Node("num", value=sympy.Float(1.5e-8), text="1.5e-8")
    constant = trees.Node(
        "call", "tan", (trees.Node("sub", args=(literal, trees.Node("call", "tan", (literal,)))),)
    )
    tree = trees.Node("mul", args=(constant, trees.Node("var", "x")))
    folded = trees.folded(tree)
    assert float(trees.value(tree, {"x": 1.0})) == pytest.approx(-1.125e-24, rel=1e-12, abs=0)
    number = folded.args[0].value
    assert folded.args[0].kind == "num" and number is not None and float(number) == 0.0
    assert not differential.run(tree, [{"x": 0.75}], seed=1)


def test_a_constant_is_folded_as_sympy_folds_it(differential: checks.Differential) -> None:
    """mpmath's sec(1.5e-8) at 53 bits is 1.0 (the nearest double is 1 + 2^-52), so sympy's
    sqrt(sec(1.5e-8)^sin(x)) has the derivative 0, where the exact one is 5.6e-17 (make fuzz)."""
    literal = trees.Node("num", value=sympy.Float(1.5e-8), text="1.5e-8")
    power = trees.Node(
        "pow",
        args=(trees.Node("call", "sec", (literal,)), trees.Node("call", "sin", (trees.Node("var", "x"),))),
    )
    tree = trees.Node("call", "sqrt", (power,))
    number = trees.folded(tree).args[0].args[0].value
    assert number is not None and float(number) == 1.0
    assert not differential.run(tree, [{"x": 0.0}], seed=3)


def test_a_formula_is_judged_at_the_precision_it_needs(differential: checks.Differential) -> None:
    """d/dx sec((pi - x) + tan(x)) at -2.7e-121: sympy's formula holds sec(x - pi/2), 3.7e120 there,
    which 200 bits of x - pi/2 make 1.8e61; at 400 bits and more it settles (make fuzz)."""
    x = trees.Node("var", "x")
    inner = trees.Node(
        "add",
        args=(
            trees.Node("sub", args=(trees.Node("const", "pi", value=sympy.pi), x)),
            trees.Node("call", "tan", (x,)),
        ),
    )
    tree = trees.Node("call", "sec", (inner,))
    assert not differential.run(tree, [{"x": -2.7268708940775015e-121}], seed=5)


def _number(text: str) -> trees.Node:
    return trees.Node("num", value=parsing.parse(text), text=text)


_X, _Y, _Z = (trees.Node("var", name) for name in "xyz")
_E = trees.Node("const", "e", value=sympy.E)


def test_a_term_past_every_double_on_the_way_is_right(differential: checks.Differential) -> None:
    """d2/dx2 of x/(x^x - e) at 60 divides by (x^x - e)^3 = 1.2e320: float64 made that term 0 and
    the Hessian -3.2e-104 for 3.2e-104 (make fuzz; `widening`)."""
    tree = trees.Node("div", args=(_X, trees.Node("sub", args=(trees.Node("pow", args=(_X, _X)), _E))))
    assert not differential.run(tree, [{"x": 60.0}], seed=7)


def test_a_huge_literal_raises_the_numerical_derivatives_precision(differential: checks.Differential) -> None:
    """d/dy of 1e309 y^2 - y (e - x) at y = 0 is -e; mpmath's differences at 200 bits lost it under
    1e309 h^2 and said 0 (make fuzz)."""
    square = trees.Node("mul", args=(trees.Node("mul", args=(_Y, _Y)), _number("1e309")))
    tree = trees.Node("sub", args=(square, trees.Node("mul", args=(_Y, trees.Node("sub", args=(_E, _X))))))
    assert float(trees.derivative(tree, {"x": 0.0, "y": 0.0}, {"y": 1})) == pytest.approx(
        -math.e, rel=1e-15, abs=0
    )
    assert not differential.run(tree, [{"x": 0.0, "y": 0.0}], seed=11)


def test_a_rounding_onto_a_powers_domain_is_the_formulas(differential: checks.Differential) -> None:
    """(x^z)^10 is x^(10 z) to sympy; at z = -1.9, 10 z is -18.999999999999999 exactly (no real value
    of a negative x's power) and -19 in doubles (a real one): float64's, not a wrong value (make fuzz)."""
    power = trees.Node("pow", args=(trees.Node("pow", args=(_X, _Z)), _number("10")))
    tree = trees.Node(
        "div", args=(trees.Node("neg", args=(trees.Node("pow", args=(_number("1e-3"), _Y)),)), power)
    )
    point = {"x": -1.6055993326821318, "y": -0.04362571680308159, "z": -1.9}
    assert not differential.run(tree, [point], seed=13)


@pytest.mark.parametrize(
    "tree",
    [
        trees.Node("sub", args=(trees.Node("call", "atan2", (_Z, trees.Node("call", "acos", (_E,)))),) * 2),
        trees.Node(
            "pow", args=(trees.Node("call", "log", (trees.Node("neg", args=(_number("2"),)),)), _number("0"))
        ),
    ],
    ids=["u - u", "u^0"],
)
def test_an_identity_sympy_applies_where_a_subtree_has_no_value(
    differential: checks.Differential, tree: trees.Node
) -> None:
    """atan2(z, acos(e)) - atan2(z, acos(e)) is 0 to sympy, though acos(e) has no real value; log(-2)^0
    is 1. The checker continues such trees as sympy does (make fuzz)."""
    assert not differential.run(trees.Node("add", args=(tree, _Z)), [{"z": 1.8324887170181023e-124}], seed=17)


def test_a_formula_whose_terms_cancel_is_judged_by_their_size() -> None:
    """FAST's d/dx of (sec(6) - (1e309 - 1e309))^(sec(x) cos(x)) holds cos(x) tan(x) - sin(x), 0 exactly
    and 5.9e-19 in float64 at -9.7e7, where the simulations' roundings all cancelled (make fuzz): the
    float64 value is within the usual bound, 16 ulp of the formula with its terms made positive."""
    text = "(-sin(x) + cos(x)*tan(x))*log(sec(6))*sec(6)^(cos(x)*sec(x))*sec(x)"
    point = {"x": -96911404.00321113}
    formula = parsing.parse(text)
    assert checks._cancelled(formula, point, 5.888394942663403e-19, 0.0)
    assert not checks._cancelled(formula, point, 1e-12, 0.0)
