"""Every derivative text reads back through our parser, and a derivative the grammar cannot write is refused.

Refused means errors.NoClosedForm (FAILED_PRECONDITION, NO_CLOSED_FORM) from `to_text`, naming the
function and the argument; the derivative itself stays a sympy expression that numeric evaluation uses.
"""

from __future__ import annotations

import pickle

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import engine
from chainrule.engine import codegen, errors, explain, verify
from chainrule.engine.functions import FUNCTIONS, SPECS
from chainrule.engine.parsing import ParseLimits, parse, to_text, unwritable
from chainrule.engine.symbolic import Simplification

# A derivative may hold larger numbers and more nodes than a user's expression may: read it back with room.
ROOMY = ParseLimits(max_length=10**7, max_nodes=10**7, max_depth=200, max_power_bits=10**6)

# (expression, wrt, function, argument, reason)
NO_CLOSED_FORM = [
    ("zeta(x)", "x", "zeta", 1, "d/ds zeta(s) is not a function of the grammar"),
    ("zeta(x/2 + 3)", "x", "zeta", 1, "sympy's Subs for an inner function: the same refusal"),
    ("zeta(x, 2)", "x", "zeta", 1, "Hurwitz zeta by s"),
    ("zeta(2, x) + zeta(x, x)", "x", "zeta", 1, "by a only is -s zeta(s+1, a); by s is not"),
    ("polygamma(x, 2)", "x", "polygamma", 1, "polygamma by its order"),
    ("sin(polygamma(x^2, y))", "x", "polygamma", 1, "deep inside other functions"),
    ("Heaviside(y, x)", "x", "Heaviside", 2, "the value at 0 by itself"),
    ("x zeta(x)^2", "x", "zeta", 1, "in a product rule"),
]


@pytest.mark.parametrize(
    ("text", "wrt", "function", "argument", "reason"), NO_CLOSED_FORM, ids=[row[0] for row in NO_CLOSED_FORM]
)
@pytest.mark.parametrize("mode", list(Simplification))
def test_no_closed_form_names_the_function_and_argument(
    text: str, wrt: str, function: str, argument: int, reason: str, mode: Simplification
) -> None:
    derivative = engine.differentiate(parse(text), [(wrt, 1)], mode)
    with pytest.raises(errors.NoClosedForm) as caught:
        to_text(derivative)
    assert caught.value.code is errors.Code.FAILED_PRECONDITION, reason
    assert caught.value.metadata == {"function": function, "argument": str(argument)}, reason
    assert f"derivative of {function}" in caught.value.message


def test_the_unwritten_derivative_stays_for_numeric_use() -> None:
    """The refusal is the printer's: differentiation, gradients and pickling keep the symbolic object."""
    expr = parse("zeta(x/2 + 3) y")
    derivative = engine.differentiate(expr, [("x", 1)], Simplification.NONE)
    assert derivative.has(sympy.Subs)
    assert pickle.loads(pickle.dumps(derivative)) == derivative
    components = engine.gradient_components(expr, ["x", "y"], hessian=True)
    assert sum(component.has(sympy.Derivative) for component in components) == 3  # f_x, f_xx, f_xy


@pytest.mark.parametrize("text", ["zeta(x)", "zeta(x/2 + 3)", "polygamma(x, 2)"])
def test_explain_and_code_refuse_it_alike(text: str) -> None:
    """Steps and code are text too: the same refusal, never a crash inside sympy's printers."""
    expr = parse(text)
    derivative = engine.differentiate(expr, [("x", 1)], Simplification.FAST)
    with pytest.raises(errors.NoClosedForm):
        explain.explain(expr, [("x", 1)], derivative)
    for language in codegen.Language:
        with pytest.raises(errors.NoClosedForm):
            codegen.generate(derivative, ["x"], language)
    assert verify.verify(expr, [("x", 1)], derivative).verdict is not verify.Verdict.MISMATCH


# (expression, wrt, reason): sympy's simplify would leave the grammar; FULL keeps what reads back.
FULL_STAYS_IN_THE_GRAMMAR = [
    ("Abs(x) x", "x", "sign(x) becomes Piecewise((0, Eq(x, 0)), (x/Abs(x), True)) inside simplify"),
    ("x sign(x)", "x", "the same through sign's own derivative"),
    ("Abs(sin x)", "x", "sign of an inner function"),
    ("(2x + sgn(x)) (sign(e) - pi x)", "x", "sign of a constant next to sign(x)"),
    ("cot(sign(factorial(x)))", "x", "Piecewise of a DiracDelta with 1/0 in one branch"),
]


@pytest.mark.parametrize(
    ("text", "wrt", "reason"), FULL_STAYS_IN_THE_GRAMMAR, ids=[row[0] for row in FULL_STAYS_IN_THE_GRAMMAR]
)
def test_full_simplification_stays_in_the_grammar(text: str, wrt: str, reason: str) -> None:
    full = engine.differentiate(parse(text), [(wrt, 1)], Simplification.FULL)
    assert not full.has(sympy.Piecewise), reason
    assert unwritable(full) is None
    fast = engine.differentiate(parse(text), [(wrt, 1)], Simplification.FAST)
    assert verify.same_function(parse(to_text(full), ROOMY), fast) is not False


# (expression, derivative text, reason): constructs sympy makes that the printer writes in the grammar.
WRITTEN = [
    ("x im(log(x))", "im(log(x))", "sympy makes im(log(x)) into arg(x): written back as im(log(x))"),
    ("im(log(x - 1)) x^2", "2*x*im(log(x - 1))", "arg of an inner expression"),
    ("floor(x) x", "floor(x)", "floor's derivative is 0 (RealFloor)"),
    ("cbrt(x)", "cbrt(x)/(3*x)", "the real cube root, a class of our own"),
]


@pytest.mark.parametrize(("text", "expected", "reason"), WRITTEN, ids=[row[0] for row in WRITTEN])
def test_constructs_sympy_makes_are_written_in_the_grammar(text: str, expected: str, reason: str) -> None:
    derivative = engine.differentiate(parse(text), [("x", 1)], Simplification.FAST)
    assert to_text(derivative) == expected, reason
    assert parse(expected) == derivative


# -------------------------------------------------------------------------- the read-back property

_NAMED = [(spec, name) for spec in SPECS for name in spec.names]
_LEAVES = st.sampled_from(["x", "y", "2", "3", "1/2", "0.5", "pi", "e", "x^2", "2x", "-x"])


def _call(named: tuple[object, str], args: list[str]) -> str:
    spec = FUNCTIONS[named[1]]
    count = max(spec.min_args, min(len(args), spec.max_args))
    padded = [*args, "x", "2", "y"][:count]
    if spec.name == "DiracDelta" and count == 2:
        padded[1] = "1"  # the derivative's order: a whole number
    return f"{named[1]}({', '.join(padded)})"


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    calls = st.builds(_call, st.sampled_from(_NAMED), st.lists(children, min_size=1, max_size=3))
    ops = st.sampled_from(["+", "-", "*", "/", "^", " "])  # " " is the implicit product
    operators = st.builds(lambda a, op, b: f"({a}){op}({b})", children, ops, children)
    return st.one_of(calls, operators)


EXPRESSIONS = st.recursive(_LEAVES, _extend, max_leaves=5)


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=EXPRESSIONS, mode=st.sampled_from(list(Simplification)), order=st.sampled_from([1, 1, 2]))
def test_every_derivative_text_reads_back(text: str, mode: Simplification, order: int) -> None:
    """For random expressions of the grammar: the text of d/dx reads back to an equal expression."""
    try:
        expr = parse(text)
    except errors.InvalidArgument:
        return  # the generator's text can break a rule (a huge power, an argument sympy refuses)
    derivative = engine.differentiate(expr, [("x", order)], mode)
    try:
        printed = to_text(derivative)
    except errors.NoClosedForm as refusal:
        # Only a derivative sympy cannot evaluate is refused, and it names one of our functions.
        assert derivative.has(sympy.Derivative)
        assert refusal.metadata["function"] in FUNCTIONS
        return
    back = parse(printed, ROOMY)
    if back != derivative:
        assert verify.same_function(back, derivative) is not False, (text, printed)
