"""Exact numbers past Python's 4,300-digit int-to-str guard: every printer writes them, the guard stays."""

from __future__ import annotations

import math
import random
import re
import sys
from collections.abc import Callable, Iterator

import pytest
import sympy

from chainrule import engine
from chainrule.engine import bignum, codegen
from chainrule.engine.parsing import ParseLimits, parse, to_text

BIG = 3**9100  # 4,342 digits: within the parser's power_bits, past the guard


@pytest.fixture
def unguarded() -> Iterator[None]:
    """Python's own str() as the reference, with the guard lifted for this test only."""
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    yield
    sys.set_int_max_str_digits(saved)


@pytest.mark.usefixtures("unguarded")
def test_decimal_matches_str() -> None:
    rng = random.Random(14)
    samples = [0, 1, -1, 10**5000, 10**5000 - 1, -(10**12345), BIG, -BIG, BIG * 10**3000 + 7]
    samples += [rng.getrandbits(rng.randrange(1, 300_000)) * rng.choice((1, -1)) for _ in range(40)]
    for value in samples:
        assert bignum.decimal(value) == str(value)


def test_the_guard_stays_in_force() -> None:
    bignum.decimal(BIG)
    with pytest.raises(ValueError, match="4300"):
        str(BIG)


# (numerator, denominator, expected double, reason)
DOUBLES = [
    (BIG, 1, math.inf, "beyond the range: infinity"),
    (-BIG, 1, -math.inf, "and negative infinity"),
    (1, BIG, 0.0, "below the range: zero"),
    (-1, BIG, -0.0, "with its sign"),
    (BIG, -BIG * 3, -1 / 3, "a quotient of huge numbers can be an ordinary double"),
    (10**400 + 1, 10**400, 1.0, "correctly rounded: 1 + 1e-400 is 1"),
    (2**53 + 1, 1, 2.0**53, "ties to even"),
]


@pytest.mark.parametrize(("p", "q", "expected", "reason"), DOUBLES, ids=[row[3] for row in DOUBLES])
def test_nearest_double(p: int, q: int, expected: float, reason: str) -> None:
    value = bignum.nearest_double(p, q)
    assert value == expected and math.copysign(1, value) == math.copysign(1, expected), reason


x = sympy.Symbol("x", real=True)
N = sympy.Integer(BIG)
# Exact numbers of 4,342 digits wherever sympy keeps them: coefficient, sum, fraction, exponent, root.
EXPRESSIONS = [
    N * x,
    -N * x,
    x / N,
    N + x,
    sympy.sin(N * x),
    x**N,
    x ** (1 / N),
    x ** sympy.Rational(N, 7),
    sympy.Rational(N, N + 1) * x,
    sympy.sqrt(N) * x,
    sympy.exp(N * x),
]

PRINTERS: list[tuple[str, Callable[[sympy.Expr], str]]] = [
    ("key", engine.canonical_key),
    ("text", to_text),
    ("latex", engine.to_latex),
    ("mathml", codegen.mathml),
    *[(language.name, lambda e, lang=language: codegen.generate(e, ["x"], lang).source)
      for language in codegen.Language],
]  # fmt: skip


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize(("name", "printer"), PRINTERS, ids=[name for name, _ in PRINTERS])
def test_every_printer_writes_huge_numbers(
    expr: sympy.Expr, name: str, printer: Callable[[sympy.Expr], str]
) -> None:
    printed = printer(expr)
    if name in ("key", "latex", "mathml"):
        assert re.search(r"[0-9]{2000}", printed)  # exact digits, not a rounded form
    if name in codegen.Language.__members__:
        assert not re.search(r"[0-9]{20}", printed)  # a double literal, as the code computes


# A result may hold larger numbers than the parser admits from a user: read it back under room for them.
ROOMY = ParseLimits(max_power_bits=100_000)


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_text_and_key_read_back(expr: sympy.Expr) -> None:
    assert engine.canonical_key(parse(to_text(expr), ROOMY)) == engine.canonical_key(expr)


# (expression, what the generated code's literal is, reason)
LITERALS = [
    ("2^60 x", "1.152921504606847e+18", "2^60 is past 2^53: its nearest double"),
    ("2^53 x", "9007199254740992", "2^53 is exact in a double: its digits"),
    ("3^9100 x", "inf", "past the range: infinity"),
    ("x/3^9100", "0.0", "1/3^9100 is below the range: zero, never an overflow"),
]


@pytest.mark.parametrize(("text", "literal", "reason"), LITERALS, ids=[row[0] for row in LITERALS])
def test_generated_code_writes_the_double_it_computes(text: str, literal: str, reason: str) -> None:
    source = codegen.generate(parse(text), ["x"], codegen.Language.PYTHON).source
    assert literal in source, reason
