"""The differential fuzzer's bounded slice: fixed seeds (derandomized), every function of the table at
the root of a few random trees, about 40 s in all.

Random trees (depth <= 4, 1-3 variables, the whole table below the root), printed in our grammar, sent
through the API layer (values, batches, derivatives, gradients with Hessians, derivative texts read
back), every number judged against mpmath (`checks`). `make fuzz MINUTES=20` runs the same checks
with fresh seeds for as long as asked, FULL simplification included (`tests/fuzz/run.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule.engine import functions
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
    assert float(trees.value(tree, {"x": 1.0})) == pytest.approx(-1.125e-24, rel=1e-12)
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
