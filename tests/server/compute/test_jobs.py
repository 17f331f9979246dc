"""Symbolic jobs: a derivative without a closed form has no text but keeps its expression for numbers."""

from __future__ import annotations

import inspect
import pickle
import re

import pytest
import sympy

from chainrule import engine
from chainrule.engine import errors
from chainrule.server import api
from chainrule.server.compute import executors, jobs
from chainrule.server.config import Settings

LIMITS = jobs.Limits.from_settings(Settings())


@pytest.mark.parametrize("mode", list(engine.Simplification))
def test_a_derivative_without_closed_form_carries_its_refusal(mode: engine.Simplification) -> None:
    parsed = jobs.parse_canonical("zeta(x/2 + 3)", LIMITS)
    derived = pickle.loads(pickle.dumps(jobs.derive_parsed(parsed.portable, (), mode, LIMITS)))
    assert derived.text == ""
    assert isinstance(derived.refusal, errors.NoClosedForm)
    assert derived.refusal.metadata == {"function": "zeta", "argument": "1"}
    assert derived.expression.has(sympy.Subs)  # what Evaluate with wrt computes from
    assert derived.variables == ("x",)


def test_huge_exact_numbers_have_a_key_and_a_derivative() -> None:
    parsed = jobs.parse_canonical("3^9100 + x^2", LIMITS)
    assert parsed.size > 4300  # the canonical text writes all 4,342 digits; the key is its digest
    derived = jobs.derive_parsed(parsed.portable, (), engine.Simplification.FAST, LIMITS)
    assert (derived.text, derived.refusal) == ("2*x", None)
    assert jobs.parse_canonical("x^2 + 3^9100", LIMITS).key == parsed.key


def test_every_job_the_api_hands_to_a_pool_is_described_in_words() -> None:
    """A budget or deadline message names what was running: 'derive_implicit_extras did not
    finish' told a caller our function's name (an independent tester)."""
    source = inspect.getsource(api)
    handed = set(re.findall(r"jobs\.([a-z_]+),", source))
    assert handed and all(callable(getattr(jobs, name)) for name in handed)
    described = {name: executors.describe(getattr(jobs, name)) for name in handed}
    assert all(description not in handed and "_" not in description for description in described.values())


@pytest.mark.parametrize(
    ("text", "around"), [("gamma(x)", "5000"), ("gamma(x)", "10^300"), ("exp(gamma(gamma(x)))", "100")]
)
def test_a_series_refuses_a_point_where_a_factorial_is_too_costly(text: str, around: str) -> None:
    """Differentiate refuses gamma(5000) (factorial_argument); a Series around 5000 computed it
    exactly, around 10^5 for its whole budget, and around 10^300 said 'nested too deeply' (an
    independent tester)."""
    parsed = jobs.parse_canonical(text, LIMITS)
    with pytest.raises(errors.LimitExceeded) as caught:
        jobs.expand_series(parsed.portable, "", around, 3, latex=False, limits=LIMITS)
    assert caught.value.metadata["limit"] == "factorial_argument"
    assert [v.field for v in caught.value.violations] == ["around"]


def test_a_series_whose_derivatives_grow_too_large_names_its_order() -> None:
    """The derivative-size limit named `wrt`, a field SeriesRequest does not have."""
    limits = jobs.Limits.from_settings(Settings(max_derivative_nodes=40))
    parsed = jobs.parse_canonical("sin(x)^5*exp(x^2)", limits)
    with pytest.raises(errors.LimitExceeded) as caught:
        jobs.expand_series(parsed.portable, "x", "1", 8, latex=False, limits=limits)
    assert [v.field for v in caught.value.violations] == ["order"]


@pytest.mark.parametrize(
    ("around", "quoted"),
    [("zeta(1)", "'zeta(1)', which is (1/0)"), ("log(-1)", "'log(-1)', which is"), ("inf", "no infinity")],
)
def test_a_series_point_that_is_no_number_is_quoted_as_the_caller_wrote_it(around: str, quoted: str) -> None:
    """The message quoted sympy's rewrite alone ('not sqrt(-1)*pi' for log(-1))."""
    parsed = jobs.parse_canonical("sin(x)", LIMITS)
    with pytest.raises(errors.InvalidArgument) as caught:
        jobs.expand_series(parsed.portable, "x", around, 3, latex=False, limits=LIMITS)
    assert quoted in caught.value.message and caught.value.violations[0].field == "around"
