"""A fixed slice of the rule sweep (`rules.py`): every function of the table inside the functions whose
rules at numbers were found wrong before (asec, floor and their kind), at every argument: about 20 s."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from chainrule.server.api import ChainruleApi
from chainrule.server.compute.executors import InlineExecutor
from tests.conftest import make_settings
from tests.fuzz import checks, rules, trees

# Inverses sympy evaluates by rules of its own; functions taking a number that is not real to a real one.
OUTER = ("asec", "acsc", "acot", "asech", "acsch", "acoth", "floor", "ceiling", "Abs", "sign", "re", "im")


@pytest.fixture(scope="module")
def differential() -> Iterator[checks.Differential]:
    loop = asyncio.new_event_loop()
    yield checks.Differential(ChainruleApi(make_settings(), InlineExecutor(), InlineExecutor()), loop)
    loop.close()


@pytest.mark.parametrize("outer", OUTER)
def test_every_function_of_a_number_inside_agrees_with_mpmath(
    differential: checks.Differential, outer: str
) -> None:
    findings = list(rules.sweep(differential, rules.compositions([outer])))
    assert not findings, "\n".join(finding.describe() for finding in findings)


def test_the_sweep_meets_every_function_at_every_argument() -> None:
    swept = [trees.to_text(tree) for tree in rules.compositions(["asec"], ["csc"])]
    assert len(swept) == 2 * len(rules.ARGUMENTS) * 2  # csc(k) and k itself, each signed both ways
    assert "x + asec(-csc(3))" in swept
