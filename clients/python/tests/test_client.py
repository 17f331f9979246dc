"""The blocking Client against a live server: every call, the argument forms and the typed errors."""

from __future__ import annotations

import math

import pytest

from chainrule.client import (
    Client,
    DeadlineExceededError,
    Derivative,
    InvalidArgumentError,
    MissingVariableError,
    ParseError,
    UnknownFunctionError,
)

# (expression, derivative as a Python function of x, why)
SEED_CASES = [
    ("(3x + 1)²", lambda x: 6 * (3 * x + 1), "outer power, inner linear"),
    ("sin(x²)", lambda x: 2 * x * math.cos(x * x), "outer derivative at the inner function"),
    ("(sin x)³", lambda x: 3 * math.sin(x) ** 2 * math.cos(x), "power of a function"),
    ("sin(cos x)", lambda x: -math.sin(x) * math.cos(math.cos(x)), "function of a function"),
    ("e^(2x)", lambda x: 2 * math.exp(2 * x), "exponential of a linear function"),
]


@pytest.mark.parametrize(("expression", "expected", "why"), SEED_CASES)
def test_differentiate_seed_examples(client: Client, expression: str, expected: object, why: str) -> None:
    result = client.differentiate(expression)
    assert isinstance(result, Derivative)
    assert result.variables == ("x",)
    for x in (-0.7, 0.3, 1.1):
        value = client.evaluate(result.derivative, {"x": x}).value
        assert value == pytest.approx(expected(x), rel=1e-12, abs=1e-12), why  # type: ignore[operator]


@pytest.mark.parametrize("wrt", [{"x": 2, "y": 1}, [("x", 2), ("y", 1)], [("x", 2), "y"]])
def test_mixed_partial_in_every_wrt_form(client: Client, wrt: object) -> None:
    result = client.differentiate("x^3 y^2", wrt)  # type: ignore[arg-type]
    assert result.variables == ("x", "y")
    # d³/dx²dy of x³y² is 12xy
    assert client.evaluate(result.derivative, {"x": 1.5, "y": -2.0}).value == pytest.approx(-36.0)


def test_latex_only_when_asked(client: Client) -> None:
    plain = client.differentiate("sin(x^2)", "x")
    fancy = client.differentiate("sin(x^2)", "x", latex=True)
    assert plain.latex is None
    assert fancy.latex is not None and "\\cos" in fancy.latex
    assert fancy.derivative == plain.derivative


@pytest.mark.parametrize("mode", ["none", "fast", "full"])
def test_simplification_modes_agree_numerically(client: Client, mode: str) -> None:
    result = client.differentiate("(x+1)^2 - x^2", simplification=mode)  # type: ignore[arg-type]
    assert client.evaluate(result.derivative, {"x": 3.0}).value == pytest.approx(2.0)


def test_evaluate_one_point(client: Client) -> None:
    result = client.evaluate("x*y + 1", {"x": 2, "y": 3})
    assert result.value == 7.0
    assert result.values is None
    assert result.nonfinite_count == 0


def test_evaluate_zero_is_present(client: Client) -> None:
    assert client.evaluate("x - 1", {"x": 1}).value == 0.0


def test_evaluate_nonfinite_is_counted_not_raised(client: Client) -> None:
    result = client.evaluate("log(x)", points={"x": [-1.0, 1.0, 0.0]})
    assert result.nonfinite_count == 2
    assert isinstance(result.values, list)
    assert math.isnan(result.values[0]) and result.values[1] == 0.0 and result.values[2] == -math.inf


def test_evaluate_lists_give_lists_and_broadcast(client: Client) -> None:
    result = client.evaluate("a*x + b", points={"x": [0.0, 1.0, 2.0], "a": 2.0, "b": [1.0]})
    assert result.values == [1.0, 3.0, 5.0]
    assert result.value is None


def test_evaluate_a_derivative(client: Client) -> None:
    result = client.evaluate("x^3", points={"x": [1.0, 2.0]}, wrt={"x": 2})
    assert result.values == [6.0, 12.0]


def test_gradient_one_point_with_hessian(client: Client) -> None:
    result = client.gradient("x^2*y", {"x": 1.0, "y": 2.0}, hessian=True)
    assert result.variables == ("x", "y")
    assert result.value == 2.0
    assert result.gradient == (4.0, 1.0)
    assert result.hessian == ((4.0, 2.0), (2.0, 0.0))


def test_gradient_keeps_the_callers_variable_order(client: Client) -> None:
    result = client.gradient("x^2*y", {"x": 1.0, "y": 2.0, "z": 5.0}, variables=["z", "y", "x"])
    assert result.variables == ("z", "y", "x")
    assert result.gradient == (0.0, 1.0, 4.0)
    assert result.hessian is None


def test_gradient_many_points_lists(client: Client) -> None:
    result = client.gradient("x*y", points={"x": [1.0, 2.0], "y": [3.0, 4.0]}, hessian=True)
    assert result.values == [3.0, 8.0]
    assert result.gradients == ([3.0, 4.0], [1.0, 2.0])
    assert result.hessians == (([0.0, 0.0], [1.0, 1.0]), ([1.0, 1.0], [0.0, 0.0]))


def test_server_info(client: Client) -> None:
    info = client.server_info()
    assert info.version
    assert {"sin", "cos", "exp", "log"} <= set(info.functions)
    assert "latex" in info.output_formats and "text" in info.output_formats
    assert set(info.simplifications) == {"none", "fast", "full"}
    assert info.limits and info.limit(info.limits[0].name) == info.limits[0].maximum
    assert info.limit("no such limit") is None


def test_parse_error_carries_its_position(client: Client) -> None:
    with pytest.raises(ParseError) as caught:
        client.differentiate("(x + 1))")
    error = caught.value
    assert error.position == 7
    assert error.reason == "PARSE_ERROR"
    assert error.domain == "chainrule.dev"
    assert [v.field for v in error.field_violations] == ["expression"]
    assert "7" in error.message


def test_unknown_function_is_a_parse_error(client: Client) -> None:
    with pytest.raises(UnknownFunctionError) as caught:
        client.differentiate("2 + foo(x)")
    assert isinstance(caught.value, ParseError)
    assert caught.value.reason == "UNKNOWN_FUNCTION"
    assert caught.value.position == 4
    assert "foo" in caught.value.message


@pytest.mark.parametrize("text", ["sin(x", "1/", "x +* y", "", "__import__('os')", "x.real"])
def test_malformed_text_is_rejected_with_a_position(client: Client, text: str) -> None:
    with pytest.raises(ParseError) as caught:
        client.differentiate(text, "x")
    assert caught.value.position is not None and 0 <= caught.value.position <= len(text)


def test_missing_variable(client: Client) -> None:
    with pytest.raises(MissingVariableError) as caught:
        client.evaluate("x*y", {"x": 1.0})
    assert caught.value.reason == "MISSING_VARIABLE"
    assert "y" in caught.value.message
    assert caught.value.field_violations


def test_point_and_points_together_is_invalid(client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.evaluate("x", {"x": 1.0}, points={"x": [1.0]})
    assert caught.value.field_violations


def test_a_deadline_too_short_for_the_work(target: str) -> None:
    # a million points cannot travel, be computed and come back within a millisecond
    points = {"x": [0.5] * 1_000_000}
    with Client(target) as fresh, pytest.raises(DeadlineExceededError) as caught:
        fresh.evaluate("sin(x) * exp(x)", points=points, timeout=0.001)
    assert caught.value.code.name == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("timeout", [math.inf, 1e300])
def test_an_endless_timeout_is_no_deadline(target: str, timeout: float) -> None:
    """grpc's conversion of infinity or 1e300 overflowed: the call failed at once with
    DEADLINE_EXCEEDED (an independent tester)."""
    with Client(target, timeout=timeout) as fresh:
        assert fresh.evaluate("2x", {"x": 2.0}, timeout=timeout).value == 4.0


@pytest.mark.parametrize("timeout", [math.nan, -1.0])
def test_a_timeout_that_is_no_duration_is_refused(client: Client, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        client.evaluate("2x", {"x": 2.0}, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        Client("127.0.0.1:1", timeout=timeout)


def test_a_number_past_the_doubles_is_a_value_error_naming_it(client: Client) -> None:
    for point, points in (({"x": 10**400}, None), (None, {"x": [1.0, -(10**400)]}), (None, {"x": 10**400})):
        with pytest.raises(ValueError, match="past the largest double"):
            client.evaluate("x", point, points=points)


def test_token_and_metadata_are_accepted(target: str) -> None:
    with Client(target, token="secret", metadata={"x-request-id": "abc"}, timeout=None) as fresh:  # noqa: S106
        assert fresh.evaluate("2x", {"x": 2.0}).value == 4.0


def test_differentiate_explains_verifies_and_writes_code(client: Client) -> None:
    result = client.differentiate(
        "sin(x^2)", explain=True, verify=True, formats=["latex", "mathml", "c", "javascript"]
    )
    chain = result.steps[-1].chain
    assert chain is not None and result.steps[-1].rule == "chain"
    assert (chain.outer_derivative.text, chain.inner_derivative.text) == ("cos(x^2)", "2*x")
    assert result.steps[-1].result.text == result.derivative
    assert result.check is not None and result.check.verdict == "ok"
    assert result.check.max_relative_error < 1e-8 and set(result.check.points[0].point) == {"x"}
    assert result.latex and result.mathml and result.mathml.startswith("<mrow>")
    assert [code.format for code in result.code] == ["c", "javascript"]
    assert result.code[0].parameters == ("x",) and "#include <math.h>" in result.code[0].source
    plain = client.differentiate("sin(x^2)")
    assert (plain.steps, plain.check, plain.mathml, plain.code) == ((), None, None, ())


def test_server_info_lists_what_each_format_supports(client: Client) -> None:
    support = client.server_info().format_support
    assert "erf" in support["c"] and "erf" not in support["javascript"]
    assert {"mathml", "python", "c", "javascript"} <= set(client.server_info().output_formats)


def test_parse_reads_text_or_answers_where_it_goes_wrong(client: Client) -> None:
    reading = client.parse("sin x² + y")
    assert reading.ok and reading.error is None
    assert (reading.canonical, reading.variables) == ("y + sin(x^2)", ("x", "y"))
    assert r"\sin" in reading.latex
    broken = client.parse("π + (x")  # no exception: a text that does not parse is an answer
    assert not broken.ok and broken.error is not None
    assert (broken.error.reason, broken.error.position) == ("PARSE_ERROR", 4)  # the '(' never closed
    assert str(broken) == broken.error.message and broken.canonical == ""
    too_long = client.parse("x" * 10_001)
    assert too_long.error is not None and too_long.error.position == 10_000
    assert too_long.error.metadata["limit"] == "expression_length"
