"""sympy's rules for functions of numbers, swept: `x + f(±g(k))` for every pair of one-argument
functions of the table and a few exact k, each value judged against mpmath as the fuzzer judges it.

sympy evaluates a function of a number as it builds it, by rules of its own, and a rule can be wrong:
asec(-csc(3)) was 3 - pi/2, the value of asec(csc(3)) (the fuzzer, seed 2844698798); floor(asec(erf(1)))
was 0 (seed 2440281464). A random tree meets a given rule at a given kind of number rarely; this
meets every composition of two functions of the table at every k below, once each way of the sign.

    .venv/bin/python -m tests.fuzz.rules                     # every pair: about 25,000 trees
    .venv/bin/python -m tests.fuzz.rules --outer asec floor  # the pairs with these outside

Findings are printed and written to `--out`/rules.jsonl; the exit status is 1 when there are any.
`test_rules.py` runs a fixed slice of the sweep in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import sympy

from chainrule.engine import functions
from chainrule.server.api import ChainruleApi
from chainrule.server.compute.executors import InlineExecutor
from tests.conftest import make_settings
from tests.fuzz import checks, trees

# Functions of one argument (those taking more are given one where they accept it): the step
# functions take a literal argument only, and their values (0, 1/2, 1, NaN) hold no rule worth a sweep.
_SKIPPED = frozenset({"Heaviside", "DiracDelta"})
ONE_ARGUMENT = tuple(
    spec.name for spec in functions.SPECS if spec.min_args == 1 and spec.name not in _SKIPPED
)


# Exact arguments where sympy's rules fire: zero and one (exact values: asin(1) is pi/2), a half,
# integers past the principal ranges, and a multiple of pi.
def _integer(k: int) -> trees.Node:
    return trees.Node("num", value=sympy.Integer(k), text=str(k))


ARGUMENTS: tuple[trees.Node, ...] = (
    _integer(0),
    _integer(1),
    trees.Node("div", args=(_integer(1), _integer(2))),
    _integer(2),
    _integer(3),
    trees.Node("div", args=(trees.Node("const", "pi", value=sympy.pi), _integer(3))),
)
POINT = {"x": 0.5}
_MEMORY_BYTES = 8 << 30


def compositions(
    outer: Sequence[str] = ONE_ARGUMENT, inner: Sequence[str] = ONE_ARGUMENT
) -> Iterator[trees.Node]:
    """x + f(g(k)) and x + f(-g(k)) for f in `outer`, g in `inner` (and g(k) = k), k in ARGUMENTS."""
    x = trees.Node("var", "x")
    for f in outer:
        for g in (None, *inner):
            for k in ARGUMENTS:
                argument = k if g is None else trees.Node("call", g, (k,))
                for signed in (argument, trees.Node("neg", args=(argument,))):
                    yield trees.Node("add", args=(x, trees.Node("call", f, (signed,))))


def sweep(differential: checks.Differential, cases: Iterator[trees.Node]) -> Iterator[checks.Finding]:
    """Every finding of the value check of each tree, at x = 0.5."""
    for tree in cases:
        yield from differential.run_value(tree, POINT, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", nargs="*", default=list(ONE_ARGUMENT), help="functions outside")
    parser.add_argument("--inner", nargs="*", default=list(ONE_ARGUMENT), help="functions inside")
    parser.add_argument("--out", type=Path, default=Path("build/fuzz"))
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    # As in run.py: a checker that would take the machine's memory raises MemoryError instead.
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    loop = asyncio.new_event_loop()
    api = ChainruleApi(make_settings(), InlineExecutor(), InlineExecutor())
    differential = checks.Differential(api, loop)
    started, count = time.monotonic(), 0
    found: list[checks.Finding] = []
    with (options.out / "rules.jsonl").open("w") as sink:
        for tree in compositions(options.outer, options.inner):
            count += 1
            try:
                findings = differential.run_value(tree, POINT, seed=0)
            except Exception as error:  # the checker's own failure is a finding, and the sweep goes on
                text = trees.to_text(tree)
                findings = [checks.Finding("checker", text, POINT, f"{type(error).__name__}: {error}"[:500])]
            for finding in findings:
                found.append(finding)
                print(finding.describe(), flush=True)
                record = {"check": finding.check, "expression": finding.expression, "detail": finding.detail,
                          "ours": finding.ours, "expected": finding.expected}  # fmt: skip
                sink.write(json.dumps(record, default=str) + "\n")
    print(f"{count} trees in {time.monotonic() - started:.0f} s, {len(found)} findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
