"""Explain and verify: the seed's worked examples step by step, every engine table entry checked twice."""

from __future__ import annotations

import grpc
import httpx
import pytest
import sympy
from prometheus_client import CollectorRegistry

from chainrule import engine
from chainrule.engine import explain, implicit, parsing, verify
from chainrule.engine.errors import InvalidArgument
from chainrule.engine.explain import Rule, Step
from chainrule.engine.parsing import parse, to_text
from chainrule.server.app import Application
from chainrule.server.metrics import Metrics
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

from .test_symbolic import CASES, Case

x = sympy.Symbol("x", real=True)


def chain_steps(steps: list[Step]) -> list[Step]:
    return [step for step in steps if step.rule is Rule.CHAIN]


def same(a: str, b: str) -> bool:
    return sympy.simplify(parse(a) - parse(b)) == 0


# --- the seed's worked examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "order"), [("1/0", 1), ("log(x, 1)", 1), ("x + 0/0", 2), ("exp(-1/0)*x", 1)]
)
def test_a_function_defined_nowhere_is_one_step_ending_in_no_derivative(text: str, order: int) -> None:
    """Its rules ended in 0 (a constant's), not in the derivative (0/0): INTERNAL (a hunt, 2026-12-06)."""
    (step,) = explain.explain(parse(text), [("x", order)])
    assert step.result.text == "(0/0)" and "no value anywhere" in step.description


def test_sin_of_x_squared_evaluates_the_outer_derivative_at_the_inner_function() -> None:
    steps = explain.explain(parse("sin(x²)"), ())
    (step,) = chain_steps(steps)
    assert step.chain is not None
    assert step.chain.outer.text == "sin(u)"
    assert step.chain.inner.text == "x^2"
    assert step.chain.outer_derivative_of_u.text == "cos(u)"
    assert step.chain.outer_derivative.text == "cos(x^2)", "f'(g(x)) is cos(x²), never cos(x)"
    assert step.chain.inner_derivative.text == "2*x"
    assert same(step.result.text, "2x cos(x^2)")
    assert steps[step.depends_on[0]].rule is Rule.POWER


def test_linear_inner_function_shows_two_times_inner_times_three() -> None:
    steps = explain.explain(parse("(3x + 1)²"), ())
    (step,) = chain_steps(steps)
    assert step.chain is not None
    assert step.chain.outer_rule is Rule.POWER
    assert step.chain.outer_derivative.text == "2*(3*x + 1)", "shown as written, not as 6x + 2"
    assert step.chain.inner_derivative.text == "3"
    assert step.chain.product.text == "2*(3*x + 1)*3"
    assert r"\cdot 3" in step.chain.product.latex
    assert same(steps[-1].result.text, "18x + 6")


def test_the_two_nestings_of_sin_and_a_power_differ() -> None:
    cube = explain.explain(parse("(sin x)³"), ())
    nested = explain.explain(parse("sin(cos x)"), ())
    (cube_chain,), (nested_chain,) = chain_steps(cube), chain_steps(nested)
    assert cube_chain.chain is not None and nested_chain.chain is not None
    assert (cube_chain.chain.outer.text, cube_chain.chain.inner.text) == ("u^3", "sin(x)")
    assert (nested_chain.chain.outer.text, nested_chain.chain.inner.text) == ("sin(u)", "cos(x)")
    assert same(cube[-1].result.text, "3 sin(x)^2 cos(x)")
    assert same(nested[-1].result.text, "-sin(x) cos(cos(x))")
    assert not same(cube[-1].result.text, nested[-1].result.text)


def test_a_four_deep_nest_has_four_chain_factors() -> None:
    steps = explain.explain(parse("sin(cos(exp(x^2)))"), ())
    chains = chain_steps(steps)
    assert len(chains) == 3, "three function layers around x^2, whose own step is the power rule"
    top = steps[-1]
    assert top.chain is not None
    assert [factor.text for factor in top.chain.factors] == [
        "cos(cos(exp(x^2)))",
        "-sin(exp(x^2))",
        "exp(x^2)",
        "2*x",
    ]
    assert top.depends_on == (steps.index(chains[1]),)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("7", Rule.CONSTANT),
        ("x", Rule.VARIABLE),
        ("x + sin(x)", Rule.SUM),
        ("3 sin(x)", Rule.CONSTANT_MULTIPLE),
        ("x sin(x)", Rule.PRODUCT),
        ("sin(x)/(x + 1)", Rule.QUOTIENT),
        ("x^5", Rule.POWER),
        ("sqrt(x)", Rule.POWER),
        ("exp(x)", Rule.EXP),
        ("2^x", Rule.EXP),
        ("ln(x)", Rule.LOG),
        ("tan(x)", Rule.TRIG),
        ("atan(x)", Rule.INVERSE_TRIG),
        ("cosh(x)", Rule.HYPERBOLIC),
        ("x^x", Rule.GENERAL_POWER),
        ("abs(x)", Rule.PIECEWISE),
        ("erf(x)", Rule.SPECIAL),
        ("sin(x^2)", Rule.CHAIN),
    ],
)
def test_the_top_step_names_its_rule(text: str, rule: Rule) -> None:
    steps = explain.explain(parse(text), (("x", 1),), simplification=engine.Simplification.NONE)
    top = next(step for step in reversed(steps) if step.rule is not Rule.SIMPLIFY)
    assert top.rule is rule, f"{text}: {[s.rule for s in steps]}"
    assert all(index < steps.index(top) for index in top.depends_on)


def test_higher_orders_are_explained_pass_by_pass() -> None:
    steps = explain.explain(parse("x^2 y^3"), (("x", 2), ("y", 1)))
    assert [step.order for step in steps] == sorted(step.order for step in steps)
    assert {(step.order, step.variable) for step in steps} == {(1, "x"), (2, "x"), (3, "y")}
    assert same(steps[-1].result.text, "6 y^2")


def test_an_over_long_explanation_summarises_later_passes() -> None:
    steps = explain.explain(parse("x exp(x)"), (("x", 4),), max_steps=3)
    assert [step.rule for step in steps[3:]] == [Rule.SUMMARY] * 3
    assert same(steps[-1].result.text, "(x + 4) exp(x)")


def test_a_wrong_derivative_is_refused_not_explained() -> None:
    with pytest.raises(explain.StepsMismatchError) as caught:
        explain.explain(parse("sin(x^2)"), (), derivative=sympy.cos(x**2))
    assert caught.value.code.name == "INTERNAL"


@pytest.mark.parametrize(("text", "order"), [("acosh(erf(x))", 3), ("acosh(erf(y + x))", 3)])
def test_a_function_real_nowhere_is_explained(text: str, order: int) -> None:
    """No real point to compare the steps and the derivative at, and simplify could not prove the
    third derivatives equal: INTERNAL (an independent hunt, 2026-12-06)."""
    steps = explain.explain(parse(text), [("x", order)])
    assert steps[-1].result.text == to_text(engine.differentiate(parse(text), [("x", order)]))


def test_a_float_whose_rounding_a_function_amplifies_is_explained() -> None:
    """The steps keep log(1.0e150), the engine 345.38776394910684; inside sin of 1.0e150^x that
    rounding is far past any tolerance (an independent hunt: INTERNAL)."""
    lhs, rhs = parsing.parse_equation("sin((1.0e150)^(x) * (y + x)) = y^2 + 0.5 y")
    function = implicit.equation_function(lhs, rhs)
    target = implicit.resolve(function, "y", [("x", 2)])
    derivative = implicit.implicit_derivative(function, target)
    steps = explain.explain_implicit(lhs, rhs, target, derivative)
    assert steps[-1].result.text == to_text(derivative)


@pytest.mark.parametrize(
    ("text", "order", "simplification"),
    [
        ("atan2(1/3, 0.5 x)", 1, engine.Simplification.NONE),
        ("0.57*(e-x)*pi/x^x", 3, engine.Simplification.FAST),
        ("atan2(0.3, 1/x)", 3, engine.Simplification.FAST),
    ],
)
def test_floats_grouped_otherwise_end_in_the_derivative(
    text: str, order: int, simplification: engine.Simplification
) -> None:
    """The steps' 1.5/(2.25 x^2 + 1) and the engine's 0.1666.../(0.25 x^2 + 1/9) differ in float
    rounding only: the self-check at 10^-20 called that a mismatch, INTERNAL (an independent hunt)."""
    derivative = engine.differentiate(parse(text), [("x", order)], simplification)
    steps = explain.explain(parse(text), [("x", order)], derivative, simplification)
    assert steps[-1].result.text == to_text(derivative)


def test_a_constant_has_one_step() -> None:
    (step,) = explain.explain(parse("pi e"), ())
    assert (step.rule, step.result.text) == (Rule.CONSTANT, "0")


def test_bad_wrt_is_the_callers_error() -> None:
    with pytest.raises(InvalidArgument):
        explain.explain(parse("x y"), ())


def test_format_steps_spells_out_the_chain() -> None:
    text = explain.format_steps(explain.explain(parse("sin(x^2)"), ()))
    assert "f'(g(x)) = cos(x^2)" in text and "chain rule" in text


# --- every engine table entry: the steps end in the derivative, verify agrees --------------------


@pytest.mark.parametrize("case", CASES, ids=[case.reason for case in CASES])
def test_engine_table_steps_end_in_the_derivative_and_verify(case: Case) -> None:
    derivative = engine.differentiate(case.expr, case.wrt, engine.Simplification.FAST)
    steps = explain.explain(case.expr, case.wrt, derivative)
    assert steps[-1].result.text == to_text(derivative), case.reason
    assert all(index < position for position, step in enumerate(steps) for index in step.depends_on)
    check = verify.verify(case.expr, case.wrt, derivative, k=3)
    assert check.verdict is verify.Verdict.OK, f"{case.reason}: {check}"
    assert check.max_relative_error < 1e-8
    assert check.points


# --- verify ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "order"), [("x/1e-300", 2), ("1e300 x^2 + 1e300 x", 5), ("(1e150 x)^2", 5)])
def test_verify_measures_noise_against_the_functions_size(text: str, order: int) -> None:
    # An exact 0 against central differences of 40-digit values of 1e300 x: MISMATCH (a hunt).
    derivative = engine.differentiate(parse(text), [("x", order)])
    assert verify.verify(parse(text), [("x", order)], derivative).verdict is verify.Verdict.OK


@pytest.mark.parametrize(
    ("text", "wrong", "reason"),
    [
        ("sin(x^2)", "cos(x^2)", "forgot the inner derivative"),
        ("sin(x^2)", "2x cos(x)", "outer derivative at x, not at x^2"),
        ("abs(x^3)", "3x^2", "sign lost (central differences)"),
        ("x^3", "3x", "wrong power"),
        ("1e20 + 1e-3 sin(x)", "0", "small beside the function's size, and still seen"),
    ],
)
def test_verify_catches_wrong_derivatives(text: str, wrong: str, reason: str) -> None:
    check = verify.verify(parse(text), (), parse(wrong), k=5, seed=1)
    assert check.verdict is verify.Verdict.MISMATCH, reason


def test_verify_is_right_where_the_function_oscillates_fast() -> None:
    """sin(exp(exp(exp(x)))) at 1.24 turns 1e16 times faster than x: a complex step of 1e-15 said
    8e18 for 4.4e15, a MISMATCH for a right derivative (an independent attacker); now 1e-30."""
    text = "sin(exp(exp(exp(x))))"
    derivative = engine.differentiate(parse(text), (("x", 1),), engine.Simplification.FAST)
    check = verify.verify(parse(text), (("x", 1),), derivative)
    assert check.method is verify.Method.COMPLEX_STEP
    assert check.verdict is verify.Verdict.OK and len(check.points) == 5
    assert max(value for point in check.points for _, value in point.point) > 1.2


def test_verify_picks_the_method() -> None:
    assert verify.verify(parse("sin(x)"), (), parse("cos(x)")).method is verify.Method.COMPLEX_STEP
    assert verify.verify(parse("abs(x)"), (), parse("sign(x)")).method is verify.Method.CENTRAL_DIFFERENCE
    second = verify.verify(parse("sin(x)"), (("x", 2),), parse("-sin(x)"))
    assert second.method is verify.Method.CENTRAL_DIFFERENCE


def test_verify_is_reproducible_and_skips_points_off_the_domain() -> None:
    first = verify.verify(parse("log(x)"), (), parse("1/x"), seed=3)
    assert first == verify.verify(parse("log(x)"), (), parse("1/x"), seed=3)
    # All five points were found, each inside log's domain (x > 0): an empty list cannot pass.
    assert len(first.points) == 5 and first.verdict is verify.Verdict.OK
    assert all(value > 0 for point in first.points for _, value in point.point)


def test_verify_without_a_real_point_is_inconclusive() -> None:
    check = verify.verify(parse("sqrt(-1 - x^2)"), (), parse("-x/sqrt(-1 - x^2)"))
    assert check.verdict is verify.Verdict.INCONCLUSIVE


# --- through the real server -----------------------------------------------------------------------


async def test_grpc_differentiate_explains_and_verifies(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    reply = await stub.Differentiate(
        pb.DifferentiateRequest(expression="sin(x^2)", explain=True, verify=True)
    )
    assert reply.steps[-1].result.text == reply.derivative
    chain = reply.steps[-1].chain
    assert reply.steps[-1].rule == pb.Step.RULE_CHAIN
    assert (chain.outer_derivative.text, chain.inner_derivative.text) == ("cos(x^2)", "2*x")
    assert list(reply.steps[-1].depends_on) == [0]
    assert reply.check.verdict == pb.Check.VERDICT_OK
    assert reply.check.max_relative_error < 1e-8 and len(reply.check.points) == 5
    assert set(reply.check.points[0].point) == {"x"}
    plain = await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x^2)"))
    assert not plain.steps and not plain.HasField("check"), "explain/verify are part of the cache key"


async def test_grpc_code_for_a_missing_function_is_failed_precondition(
    stub: pb_grpc.DifferentiationServiceAsyncStub,
) -> None:
    request = pb.DifferentiateRequest(
        expression="x erf(x)", formats=[pb.OUTPUT_FORMAT_C, pb.OUTPUT_FORMAT_JAVASCRIPT]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Differentiate(request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "erf" in (caught.value.details() or "") and "JavaScript" in (caught.value.details() or "")


async def test_rest_differentiate_explains_verifies_and_writes_code(app: Application) -> None:
    body = {
        "expression": "(3x + 1)^2",
        "explain": True,
        "verify": True,
        "formats": ["OUTPUT_FORMAT_MATHML", "OUTPUT_FORMAT_JAVASCRIPT"],
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=30) as client:
        response = await client.post("/v1/differentiate", json=body)
        info = (await client.get("/v1/info")).json()
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["steps"][-1]["rule"] == "RULE_CHAIN"
    assert reply["steps"][-1]["chain"]["product"]["text"] == "2*(3*x + 1)*3"
    assert reply["check"]["verdict"] == "VERDICT_OK"
    assert reply["mathml"].startswith("<mrow>")
    (code,) = reply["code"]
    assert code["format"] == "OUTPUT_FORMAT_JAVASCRIPT" and code["source"].startswith("/**")
    support = {entry["format"]: entry["functions"] for entry in info["formatSupport"]}
    assert "erf" in support["OUTPUT_FORMAT_C"] and "erf" not in support["OUTPUT_FORMAT_JAVASCRIPT"]


def test_metrics_count_mismatches() -> None:
    metrics = Metrics(CollectorRegistry(), VERSION)
    metrics.verify_mismatches.inc()
    assert metrics.registry.get_sample_value("chainrule_verify_mismatches_total") == 1
    assert metrics.registry.get_sample_value("chainrule_explain_mismatches_total") == 0
