"""Symbolic jobs: a derivative without a closed form has no text but keeps its expression for numbers."""

from __future__ import annotations

import pickle

import pytest
import sympy

from chainrule import engine
from chainrule.engine import errors
from chainrule.server.compute import jobs
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
