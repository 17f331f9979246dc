"""Our whitelist grammar: expression text -> sympy expression, with every limit checked before sympy works.

Nothing here calls ``eval``, ``exec``, ``sympify`` or ``parse_expr``: the text is tokenised, parsed
into a small tree of our own (checking length, node count, nesting depth and literal sizes on the
way), and only then turned into sympy objects, bottom-up and without recursion, refusing numeric
powers and factorials whose exact value would be huge.

Precedence, loosest first::

    a + b,  a - b                  sum                          x + 1 - y
    a * b,  a / b,  a b            product, left to right;      1/2x = x/2,  x/2y = xy/2
                                   implicit product binds
                                   like ``*``
    -a,  +a                        sign                         -x^2 = -(x^2),  2^-x = 2^(-x)
    f a                            function without brackets:   sin x^2 = sin(x^2),  sin x y = sin(x)*y,
                                   its argument is one power    sin 2x = sin(2x),  sin x cos x
    a ^ b,  a ** b,  a²            power, right to left         2^3^2 = 2^9,  x² = x^2,  x⁻¹ = 1/x
                                   (at most 8 exponents deep)
    f(a, b),  (a),  name, number   atoms                        sin(x)^2 = (sin x)^2,  sin (x+1)^2 too
    f^n a,  f^n(a),  fⁿ a          a function's power           sin^2 x = sin²x = sin^2(x) = (sin x)^2

Notation:

- Implicit multiplication: ``2x``, ``3(x+1)``, ``(x+1)(x-1)``, ``2 sin(x)``, ``x y``. ``xy`` is one
  variable named ``xy``. A number after another factor needs ``*`` (``2 3`` and ``x 2`` are errors).
- A function name followed by ``(`` is a call, spaces or not: ``sin (x+1)^2`` is ``sin(x+1)^2``,
  (sin(x+1))², as whitespace only separates tokens; without ``(`` the argument is one power
  (``sin x^2`` = sin(x²)). Any other name directly followed by ``(`` is an unknown function:
  ``foo(x)``, and ``x(x+1)`` too; write ``x (x+1)`` or ``x*(x+1)`` for a product.
- A function's power goes between its name and argument as in textbooks: ``sin^2 x``, ``sin^2(x)``
  and ``sin²x`` are (sin x)², a whole number only. ``sin^-1 x`` and ``sin⁻¹x`` are refused as
  ambiguous (arcsin, or 1/sin?): write ``asin(x)`` or ``sin(x)^-1``.
- A derivative is asked for with ``wrt``, not written: ``d/dx sin(x)``, ``d^2/dx^2 ...`` and
  ``∂/∂x ...`` are refused with a message saying so (``d`` and ``dx`` are never read as variables
  there; ``d/(dx)`` divides two variables).
- Numbers: ``12`` and ``2e3`` (= 2000) and ``25e-1`` (= 5/2) are exact; ``1/3`` stays a fraction; a
  literal with a decimal point (``0.5``, ``1.5e3``) is a float (53-bit up to 17 significant digits,
  more precise beyond). ``2e`` is 2·e and ``2e + 3`` is 2·e + 3, but ``2e+3`` is 2000.
- Constants: ``e`` and ``E`` (Euler's number, so ``e^(2x)`` is exp(2x)), ``pi`` and ``π``, plus
  ``EulerGamma``, ``Catalan`` and ``oo`` so that every printed result reads back.
- Operators: the multiplication sign and dots (U+00D7, U+00B7, U+22C5) mean ``*``; the division
  sign (U+00F7) means ``/``; the minus sign (U+2212) means ``-``.
- Variables: ASCII letters, digits and ``_``, starting with a letter, at most 32 characters, not a
  function or constant name. They are real symbols. Other non-ASCII letters are errors (no NFKC).
- Whitespace (newlines included) only separates tokens.
- Equations: ``lhs = rhs`` (one ``=``, loosest of all) only through `parse_equation`, for implicit
  differentiation; anywhere else ``=`` is an error saying so.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import mpmath
import sympy
from sympy.core.exprtools import factor_terms
from sympy.printing.str import StrPrinter
from sympy.simplify.radsimp import fraction

from chainrule.engine import errors, reference
from chainrule.engine.functions import (
    CONSTANTS,
    FUNCTIONS,
    RESERVED_NAMES,
    SPECS,
    ArgumentError,
    FunctionSpec,
    magnitude,
)
from chainrule.engine.limits import ParseLimits, exceeded

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_NAME_LENGTH",
    "ParseLimits",
    "TooSlow",
    "is_valid_variable_name",
    "parse",
    "parse_equation",
    "symbol",
    "to_text",
    "unwritable",
]

MAX_NAME_LENGTH: Final = 32
_FIELD: Final = "expression"
_EQUATION_NEEDS_DEPENDENT: Final = (
    "'=' makes an equation, which only implicit differentiation takes: Differentiate or Evaluate "
    "with `dependent` naming the variable it defines"
)


DEFAULT_LIMITS: Final = ParseLimits()

# ---------------------------------------------------------------------------------------------- tokens

_NUM, _NAME, _OP, _SUP, _END = "num", "name", "op", "sup", "end"

_TOKEN_RE: Final = re.compile(
    r"(?P<ws>[ \t\n\r\f\v\u00a0]+)"
    r"|(?P<num>(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*|π)"
    r"|(?P<op>\*\*|[-+*/^(),=\u00d7\u00b7\u22c5\u2212\u00f7])"
    r"|(?P<sup>[⁺⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)"
)
_OP_ALIASES: Final = {"**": "^", "\u00d7": "*", "\u00b7": "*", "\u22c5": "*", "\u2212": "-", "\u00f7": "/"}
_SUPERSCRIPT_DIGITS: Final = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_VARIABLE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*", re.ASCII)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str  # operators normalised: `**` -> `^`, U+00D7 -> `*`
    start: int
    end: int


def _describe_char(char: str) -> str:
    if char == "'":
        return '"\'"'
    if char.isprintable() and not char.isspace():
        return f"'{char}'"
    return f"U+{ord(char):04X}"


def _tokenize(text: str) -> Iterator[_Token]:
    """Tokens on demand, so the first error reported is the leftmost one the grammar meets."""
    match = _TOKEN_RE.match
    pos, length = 0, len(text)
    last_end, last_kind, last_chunk = -1, _END, ""
    while pos < length:
        found = match(text, pos)
        if found is None:
            if text[pos] == "∂":
                raise _written_derivative("∂", pos)
            raise errors.ParseError(f"unexpected character {_describe_char(text[pos])}", pos)
        kind = found.lastgroup
        end = found.end()
        if kind != "ws":
            chunk = found.group()
            if chunk[0] == "." and last_end == pos and last_kind in (_NUM, _NAME):
                # `x.real`, `1.5.2`: a dot is only ever the start of a number like `.5`.
                raise errors.ParseError("unexpected character '.'", pos)
            if kind == _NAME:
                _check_name(chunk, pos)
                if last_end == pos and last_chunk == "0":
                    _check_not_a_literal_in_base(chunk, pos - 1)
            assert kind is not None
            last_end, last_kind, last_chunk = end, kind, chunk
            yield _Token(kind, _OP_ALIASES.get(chunk, chunk), pos, end)
        pos = end
    while True:
        yield _Token(_END, "", length, length)


# `0x1F`, `0b101`, `0o17` read by the grammar as 0 times a variable (x1F): whatever else they hold,
# 0 (an independent hunt, 2026-12-06). A name after a lone 0 that starts like a literal's digits is
# refused; `0x` and `0y` stay products.
_BASES: Final = {
    "x": ("a hexadecimal", 16, "0123456789abcdefABCDEF"),
    "b": ("a binary", 2, "01"),
    "o": ("an octal", 8, "01234567"),
}


def _check_not_a_literal_in_base(name: str, pos: int) -> None:
    base = _BASES.get(name[0].lower())
    if base is None or len(name) < 2 or name[1] not in base[2]:
        return
    kind, radix, _ = base
    try:
        fix = f"write it in decimal ({int(name[1:], radix)})"
    except ValueError:
        fix = "write it in decimal"
    message = f"'0{_shorten(name)}' looks like {kind} literal; the grammar reads numbers in decimal only"
    raise errors.ParseError(message, pos, fix=fix)


def _check_name(name: str, pos: int) -> None:
    if name[0] == "_":
        raise errors.ParseError(f"invalid name '{_shorten(name)}': names start with a letter", pos)
    if len(name) > MAX_NAME_LENGTH:
        raise errors.ParseError(f"name '{_shorten(name)}' is longer than {MAX_NAME_LENGTH} characters", pos)


# Leibniz notation, which asks for a derivative instead of writing a function: d/dx, d^2/dx^2, d²/dx².
# Possessive quantifiers: no backtracking over long runs of spaces.
_POWER: Final = r"(?:\^\s*+[0-9]++|[²³⁴-⁹]++)?+"
_LEIBNIZ_RE: Final = re.compile(
    rf"(?<![A-Za-z0-9_])d\s*+{_POWER}\s*+/\s*+d\s*+[A-Za-z][A-Za-z0-9_]*+\s*+{_POWER}", re.ASCII
)
# Names people call to differentiate inside the expression (Mathematica, sympy, Maple).
_DERIVATIVE_NAMES: Final = frozenset({"d", "D", "diff", "derivative", "deriv", "grad", "Derivative"})
_HOW_TO_DIFFERENTIATE: Final = (
    "send the function alone (sin(x), not d/dx sin(x)) and name the variable in wrt"
)


def _written_derivative(written: str, pos: int) -> errors.ParseError:
    return errors.ParseError(
        f"'{_shorten(written, 12)}' asks for a derivative inside the expression",
        pos,
        fix=_HOW_TO_DIFFERENTIATE,
    )


def _ambiguous_inverse(name: str, power: str, pos: int) -> errors.ParseError:
    spec = FUNCTIONS[name]
    inverse = FUNCTIONS.get(f"a{spec.name}")
    reading = f"{inverse.name}(x) for the inverse function, or " if inverse is not None else ""
    return errors.ParseError(
        f"'{name}{power}' is ambiguous", pos, fix=f"write {reading}{name}(x)^-1 for 1/{name}(x)"
    )


def _unknown_function(name: str, pos: int) -> errors.UnknownFunction:
    """UnknownFunction with the nearest known name (`Sin`, `sinn` -> `sin`), or how to write a product."""
    if name in _DERIVATIVE_NAMES:
        return errors.UnknownFunction(name, pos, fix=_HOW_TO_DIFFERENTIATE)
    by_case = {known.lower(): known for known in sorted(FUNCTIONS)}  # abs over Abs: lower case last
    suggestion = by_case.get(name.lower()) or next(
        iter(difflib.get_close_matches(name, sorted(FUNCTIONS), n=1, cutoff=0.8)), ""
    )
    fix = "" if suggestion else f"for a product write {name}*(...) or {name} (...)"
    return errors.UnknownFunction(name, pos, suggestion=suggestion, fix=fix)


# ------------------------------------------------------------------------------------------- the tree


class _Node:
    """A node of our own parse tree; `kids` are built first, then `build` makes the sympy object."""

    __slots__ = ("kids", "pos", "span")

    def __init__(self, pos: int, kids: tuple[_Node, ...] = ()) -> None:
        self.pos = pos
        self.kids = kids
        self.span: tuple[int, int] | None = None  # where its text is, for messages about its value


class _Number(_Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: int | tuple[int, int] | tuple[str, int]) -> None:
        super().__init__(pos)
        self.value = value  # int, (p, q) for an exact fraction, or (text, dps) for a float


class _Variable(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name


class _Constant(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name


class _Sum(_Node):
    __slots__ = ("negated",)

    def __init__(self, pos: int, kids: tuple[_Node, ...], negated: tuple[bool, ...]) -> None:
        super().__init__(pos, kids)
        self.negated = negated


class _Product(_Node):
    __slots__ = ("divided",)

    def __init__(self, pos: int, kids: tuple[_Node, ...], divided: tuple[bool, ...]) -> None:
        super().__init__(pos, kids)
        self.divided = divided


class _Negate(_Node):
    __slots__ = ()


class _Power(_Node):
    __slots__ = ()


class _Call(_Node):
    __slots__ = ("spec",)

    def __init__(self, pos: int, spec: FunctionSpec, kids: tuple[_Node, ...]) -> None:
        super().__init__(pos, kids)
        self.spec = spec


# ----------------------------------------------------------------------------------------- the parser


class _Parser:
    """Recursive descent over the tokens; depth is checked on every entry, before Python's stack fills."""

    def __init__(self, text: str, limits: ParseLimits) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.limits = limits
        self.token = next(self.tokens)
        self.previous = self.token
        self.depth = 0
        self.exponent_depth = 0
        self.nodes = 0
        self.variables: set[str] = set()

    # helpers

    def advance(self) -> _Token:
        token = self.previous = self.token
        self.token = next(self.tokens)
        return token

    def is_op(self, *ops: str) -> bool:
        token = self.token
        return token.kind == _OP and token.text in ops

    def enter(self, count: int = 1) -> None:
        self.depth += count
        if self.depth > self.limits.max_depth:
            what = "the expression is nested too deeply"
            raise _over(self.limits, "max_depth", self.depth, what, self.token.start)

    def enter_exponent(self) -> None:
        self.exponent_depth += 1
        if self.exponent_depth > self.limits.max_exponent_depth:
            what = "powers are nested too deeply"
            raise _over(self.limits, "max_exponent_depth", self.exponent_depth, what, self.token.start)

    def count(self, node: _Node) -> _Node:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise _over(
                self.limits, "max_nodes", self.nodes, "the expression is too large", self.previous.start
            )
        return node

    def spanned(self, node: _Node, start: int) -> _Node:
        """`node`, knowing that its text runs from `start` to the last token read."""
        node.span = (start, self.previous.end)
        return node

    def shown(self, token: _Token) -> str:
        return self.text[token.start : token.end]

    def unexpected(self, token: _Token) -> errors.ParseError:
        if token.kind == _END:
            return errors.ParseError("unexpected end of input", token.start)
        if token.kind == _NUM:
            return errors.ParseError(f"unexpected number '{token.text}'", token.start)
        if token.kind == _NAME:
            return errors.ParseError(f"unexpected name '{token.text}'", token.start)
        if token.text == ")":
            return errors.ParseError("unmatched ')'", token.start, fix="remove it, or add a '(' before it")
        return errors.ParseError(f"unexpected '{self.shown(token)}'", token.start)

    def missing_term(self, token: _Token) -> errors.ParseError:
        """Where a term should start: say what is missing after what, rather than what came instead."""
        before = self.previous
        if before is token:
            return errors.ParseError("empty expression", 0)
        if before.kind == _OP and before.text == "(" and token.kind == _OP and token.text == ")":
            return errors.ParseError("empty parentheses", token.start, fix="put an expression inside")
        if before.kind == _OP and before.text != ")" and (token.kind in (_END, _OP)):
            return errors.ParseError(f"expected a term after '{self.shown(before)}'", token.start)
        return self.unexpected(token)

    def expect_close(self, opening: _Token) -> None:
        if self.is_op(")"):
            self.advance()
            return
        if self.token.kind == _END:
            where = opening.start
            raise errors.ParseError(f"'(' at {where} is never closed: add ')'", where, placed=True)
        raise self.unexpected(self.token)

    # grammar: each level of nesting costs at most three Python frames (expression -> operand ->
    # call -> expression); `reserve_stack` makes room for `max_depth` levels before parsing starts.

    def parse(self, *, equation: bool = False) -> list[_Node]:
        """One expression, or with `equation` the sides of `lhs = rhs` (or of F alone)."""
        if self.token.kind == _END:
            raise errors.ParseError("empty expression", 0)
        leibniz = _LEIBNIZ_RE.search(self.text)
        if leibniz is not None:
            raise _written_derivative(leibniz.group().strip(), leibniz.start())
        sides = [self.expression()]
        while self.is_op("="):
            if not equation:
                raise errors.ParseError(_EQUATION_NEEDS_DEPENDENT, self.token.start)
            if len(sides) == 2:
                raise errors.ParseError("an equation has one '='", self.token.start)
            self.advance()
            sides.append(self.expression())
        if self.token.kind != _END:
            raise self.unexpected(self.token)
        return sides

    def expression(self) -> _Node:
        """sum := product (('+' | '-') product)*;  product := signed (('*' | '/') signed | power)*

        The second product form is implicit multiplication. Sums and products share this function,
        and atoms live in `operand`, so one level of nesting costs at most three Python frames.
        """
        start = self.token.start
        terms: list[_Node] = []
        negated = [False]
        while True:
            term_start = self.token.start
            factors = [self.operand(signs=True)]
            divided = [False]
            while True:
                token = self.token
                if token.kind == _OP and token.text in ("*", "/"):
                    self.advance()
                    divided.append(token.text == "/")
                    factors.append(self.operand(signs=True))
                elif token.kind == _NAME or (token.kind == _OP and token.text == "("):
                    divided.append(False)
                    factors.append(self.operand(signs=False))
                elif token.kind == _NUM:
                    raise errors.ParseError(f"missing operator before '{token.text}'", token.start)
                else:
                    break
            if len(factors) == 1:
                terms.append(factors[0])
            else:
                product = _Product(term_start, tuple(factors), tuple(divided))
                terms.append(self.count(self.spanned(product, term_start)))
            if not self.is_op("+", "-"):
                break
            negated.append(self.advance().text == "-")
        if len(terms) == 1:
            return terms[0]
        return self.count(_Sum(start, tuple(terms), tuple(negated)))

    def operand(self, *, signs: bool) -> _Node:
        """signed := ('+' | '-')* power;  power := atom superscript* ('^' signed)?"""
        start = self.token.start
        count = 0
        negative = False
        while signs and self.is_op("+", "-"):
            negative ^= self.advance().text == "-"
            count += 1
        self.enter(count)
        token = self.token
        atom_start = token.start
        if token.kind == _NUM:
            self.advance()
            node = self.count(_Number(token.start, self.number(token)))
        elif token.kind == _NAME:
            self.advance()
            spec = FUNCTIONS.get(token.text)
            node = self.name(token) if spec is None else self.call(token, spec)
        elif token.kind == _OP and token.text == "(":
            self.advance()
            self.enter()
            node = self.expression()
            self.expect_close(token)
            self.depth -= 1
        else:
            raise self.missing_term(token)
        while self.token.kind == _SUP:
            node = self.spanned(self.superscript(node, self.advance()), atom_start)
        if self.is_op("^"):
            caret = self.advance()
            self.enter()
            self.enter_exponent()
            exponent = self.operand(signs=True)
            self.exponent_depth -= 1
            self.depth -= 1
            node = self.count(self.spanned(_Power(caret.start, (node, exponent)), atom_start))
        self.depth -= count
        return self.count(_Negate(start, (node,))) if negative else node

    def superscript(self, base: _Node, token: _Token) -> _Node:
        value = self.integer(token.text.translate(_SUPERSCRIPT_DIGITS), token.start)
        exponent = self.count(_Number(token.start, value))
        return self.count(_Power(token.start, (base, exponent)))

    def name(self, token: _Token) -> _Node:
        """A constant or a variable (never recursive)."""
        name = token.text
        if name in CONSTANTS:
            return self.count(_Constant(token.start, name))
        following = self.token
        if following.kind == _OP and following.text == "(" and following.start == token.end:
            raise _unknown_function(name, token.start)
        if name not in self.variables:
            self.variables.add(name)
            if len(self.variables) > self.limits.max_variables:
                what = "the expression has too many variables"
                raise _over(self.limits, "max_variables", len(self.variables), what, token.start)
        return self.count(_Variable(token.start, name))

    def call(self, token: _Token, spec: FunctionSpec) -> _Node:
        """f(a, ...), f x (bare argument), f²x = f^2 x = f^2(x) = (f x)^2."""
        power = self.function_power(token)
        self.enter()
        if spec.power:
            self.enter_exponent()
        if self.is_op("("):
            opening = self.advance()
            args: list[_Node] = []
            if not self.is_op(")"):
                args.append(self.expression())
                while self.is_op(","):
                    self.advance()
                    args.append(self.expression())
            self.expect_close(opening)
        elif self.token.kind in (_NUM, _NAME) or self.is_op("+", "-"):
            args = [self.bare_argument()]
        else:
            raise errors.ParseError(f"function '{token.text}' needs an argument", token.start)
        self.depth -= 1
        self.exponent_depth -= spec.power
        self.check_arity(token, spec, len(args))
        node = self.count(self.spanned(_Call(token.start, spec, tuple(args)), token.start))
        if power is None:
            return node
        exponent = self.count(_Number(power.start, self.integer(power.text, power.start)))
        return self.count(self.spanned(_Power(power.start, (node, exponent)), token.start))

    def function_power(self, name: _Token) -> _Token | None:
        """The n of `sin²x` or `sin^2 x` (a whole number, as a token of plain digits), if any."""
        if self.token.kind == _SUP:
            power = self.advance()
            digits = power.text.translate(_SUPERSCRIPT_DIGITS)
            if digits[0] == "-":
                raise _ambiguous_inverse(name.text, power.text, power.start)
            return _Token(_NUM, digits.lstrip("+"), power.start, power.end)
        if not self.is_op("^"):
            return None
        caret = self.advance()
        if self.is_op("-"):
            self.advance()
            digits = self.token.text if self.token.kind == _NUM else ""
            raise _ambiguous_inverse(name.text, f"^-{digits}", caret.start)
        power = self.token
        if power.kind != _NUM or not power.text.isdigit():
            raise errors.ParseError(
                f"'{name.text}^' takes a whole number",
                power.start,
                fix=f"{name.text}^2 x is ({name.text} x)^2; for another power write {name.text}(x)^a",
            )
        return self.advance()

    def bare_argument(self) -> _Node:
        """`sin x^2` = sin(x^2); `sin 2x` = sin(2x): a number written against a factor stays with it."""
        start = self.token.start
        node = self.operand(signs=True)
        following = self.token
        leading = node.kids[0] if isinstance(node, _Negate) else node
        if (
            isinstance(leading, _Number)
            and following.start == self.previous.end
            and (following.kind == _NAME or (following.kind == _OP and following.text == "("))
        ):
            factor = self.operand(signs=False)
            product = self.count(_Product(start, (leading, factor), (False, False)))
            node = self.count(_Negate(start, (product,))) if leading is not node else product
        return node

    def check_arity(self, token: _Token, spec: FunctionSpec, count: int) -> None:
        if spec.min_args <= count <= spec.max_args:
            return
        if spec.min_args == spec.max_args:
            wanted = f"{spec.min_args} argument{'s' if spec.min_args != 1 else ''}"
        else:
            wanted = f"{spec.min_args} to {spec.max_args} arguments"
        raise errors.ParseError(f"function '{token.text}' takes {wanted}, got {count}", token.start)

    # literals

    def integer(self, digits: str, pos: int) -> int:
        significant = len(digits.lstrip("+-").lstrip("0"))
        if significant > self.limits.max_integer_digits:
            raise _over(self.limits, "max_integer_digits", significant, _long_number(digits), pos)
        return int(digits)

    def number(self, token: _Token) -> int | tuple[int, int] | tuple[str, int]:
        text = token.text
        mantissa, _, exponent_text = text.lower().partition("e")
        whole, point, fraction = mantissa.partition(".")
        limit = self.limits.max_integer_digits
        exponent_digits = len(exponent_text.lstrip("+-").lstrip("0"))
        if exponent_digits > 9:
            # Over a billion digits, whatever the limit: not worth converting the exponent to find out.
            size = 10.0 ** (exponent_digits - 1) if exponent_digits < 300 else math.inf
            what = _long_number(text)
            raise _over(self.limits, "max_integer_digits", size, what, token.start, about=True)
        exponent = int(exponent_text) if exponent_text else 0
        digits = (whole + fraction).lstrip("0")
        if not digits:
            return (text, 0) if point else 0
        if point:
            if len(digits) > limit or abs(exponent) > limit:
                size = max(len(digits), abs(exponent))
                raise _over(self.limits, "max_integer_digits", size, _long_number(text), token.start)
            return (text, len(digits))
        size = len(digits) + max(exponent, 0)
        if size > limit or -exponent > limit:
            size = max(size, -exponent)
            raise _over(self.limits, "max_integer_digits", size, _long_number(text), token.start)
        if exponent >= 0:
            return int(whole + "0" * exponent)
        return (int(whole), 10**-exponent)


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else text[:keep] + "..."


def _over(
    limits: ParseLimits,
    setting: str,
    value: float | int,
    what: str,
    position: int | None,
    *,
    about: bool = False,
) -> errors.LimitExceeded:
    return exceeded(limits, setting, value, field=_FIELD, what=what, about=about, position=position)


def _start(node: _Node) -> int:
    return node.span[0] if node.span else node.pos


def _long_number(text: str) -> str:
    return f"the number {_shorten(text, 20)} is too long"


# ---------------------------------------------------------------------------------------- to sympy


class _Builder:
    """Turns our tree into sympy bottom-up with an explicit stack, checking numeric sizes as it goes.

    Each value carries an estimate of the bits of the largest exact number it holds or would
    produce when raised to a numeric power: sympy multiplies out `(2*sqrt(2)*x)^1000` eagerly.
    """

    def __init__(self, limits: ParseLimits, text: str, seconds: float | None = None) -> None:
        self.limits = limits
        self.text = text
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.checked: set[Any] = set()  # whole constants known to have a floating value

    def source(self, node: _Node) -> str:
        """The text `node` was read from (shortened): how messages name a value."""
        start, end = node.span or (node.pos, node.pos)
        return _shorten(self.text[start:end]) if end > start else "a number in the expression"

    def too_large(
        self, node: _Node, bits: float, problem: str = "too large to compute exactly"
    ) -> errors.LimitExceeded:
        shown: float | int = round(bits) if math.isfinite(bits) else bits
        what = f"{self.source(node)} is {problem}"
        return _over(self.limits, "max_power_bits", shown, what, _start(node), about=True)

    def build(self, root: _Node) -> sympy.Expr:
        values: list[tuple[Any, float]] = []
        constant: list[bool] = []  # per value: whether its node holds no variable
        stack: list[tuple[_Node, bool]] = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if not ready and node.kids:
                stack.append((node, True))
                stack.extend((kid, False) for kid in reversed(node.kids))
                continue
            count = len(node.kids)
            args = values[len(values) - count :] if count else []
            kids_constant = constant[len(constant) - count :] if count else []
            if count:
                del values[len(values) - count :]
                del constant[len(constant) - count :]
            is_constant = not isinstance(node, _Variable) and all(kids_constant)
            if not is_constant:
                for kid, (kid_value, _), kid_constant in zip(node.kids, args, kids_constant, strict=True):
                    if kid_constant:
                        self.check_constant(kid, kid_value)
            try:
                value = self.make(node, args)
            except (errors.ChainruleError, MemoryError):
                # (A MemoryError is the worker's to answer: RESOURCE_EXHAUSTED, its memory measured
                # after; salvaged, it was a 400 and the worker was never looked at.)
                raise
            except ArgumentError as error:
                raise errors.ParseError(f"{error} in {self.source(node)}", node.pos) from None
            except Exception as error:  # sympy's own: ValueError, TypeError, its cache's AttributeError
                value = self.salvage(node, args, error)
            if value[0].is_Float:
                self.check_float(value[0], node)
            if value[0].is_Mul and not is_constant:
                # 1/(c*x) is (1/c)*(1/x) to sympy: a constant factor no node of ours wrote.
                for factor in value[0].args:
                    if factor.is_number:
                        self.check_constant(node, factor)
            values.append(value)
            constant.append(is_constant)
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise TooSlow(f"building {self.source(node)} took longer than its allowance")
        if constant[0]:
            self.check_constant(root, values[0][0])
        return values[0][0]

    def check_constant(self, node: _Node, value: Any) -> None:
        """A whole constant (one not inside a larger one) must have a floating value for sympy.

        sympy takes one whenever it orders terms (printing, our cache key): at 53 bits it rounds
        log(tanh(10^8)) to exactly 0 and then cannot divide by it (1/log(tanh(10^8)) is about
        -e^(2*10^8)/2; 1/log(cos(1e-100)) is -2e200). Checked once per whole constant, as the
        printers would, so a constant of n nodes costs one evaluation, not n.
        """
        if value.is_Atom or value in self.checked:
            return
        self.checked.add(value)
        try:
            complex(value)
        except (TypeError, ValueError):
            pass  # no floating value (floor(exp(10^300))): sympy's printers expect this and go on
        except ArithmeticError:
            raise errors.ParseError(
                f"the constant {self.source(node)} cannot be computed: part of it rounds to 0 at"
                " double precision and is then divided by",
                _start(node),
                fix="write the constant's value as a number instead",
            ) from None

    def salvage(self, node: _Node, args: list[tuple[Any, float]], error: Exception) -> tuple[Any, float]:
        """What `node` is where sympy failed to build it from valid input."""
        if any(_without_real_value(value) for value, _ in args):
            # sympy refuses some functions of what has no real value (Max(DiracDelta(0)): not
            # comparable); by the real-valued rule the value is NaN, as is all built on it.
            return sympy.S.NaN, 0.0
        if isinstance(node, _Call) and all(value.is_number for value, _ in args):
            # sympy's evaluation of a number can fail where it has a value (acos(cos(10^500)): a
            # comparison it cannot decide); kept as written, the constant is folded from its value.
            try:
                with sympy.evaluate(False):
                    return self.make(node, args)
            except (errors.ChainruleError, MemoryError):
                raise
            except Exception:  # noqa: S110 - refused below, naming the first failure
                pass
        raise errors.ParseError(f"cannot build this expression ({type(error).__name__})", node.pos) from None

    def check_float(self, value: Any, node: _Node) -> None:
        """exp(1e300) is a float no double holds and no literal writes back: refuse it like a huge power."""
        _, mantissa, exponent, size = value._mpf_
        bits = abs(exponent + size) if mantissa else 0
        if bits > self.limits.max_power_bits:
            raise self.too_large(node, bits, "too large or too small a number")

    def make(self, node: _Node, args: list[tuple[Any, float]]) -> tuple[Any, float]:
        if isinstance(node, _Number):
            return _make_number(node.value)
        if isinstance(node, _Variable):
            return _real_symbol(node.name), 0.0
        if isinstance(node, _Constant):
            return CONSTANTS[node.name], 0.0
        if isinstance(node, _Sum):
            return self.make_sum(node, args)
        if isinstance(node, _Product):
            return self.make_product(node, args)
        if isinstance(node, _Negate):
            value, bits = args[0]
            return -value, bits
        if isinstance(node, _Power):
            return self.make_power(node, args[0], args[1])
        assert isinstance(node, _Call)
        return self.make_call(node, args)

    def make_sum(self, node: _Sum, args: list[tuple[Any, float]]) -> tuple[Any, float]:
        terms = [-value if negated else value for (value, _), negated in zip(args, node.negated, strict=True)]
        bits = max(bits for _, bits in args) + math.log2(len(args))
        return _with_bits(sympy.Add(*terms), bits)

    def make_product(self, node: _Product, args: list[tuple[Any, float]]) -> tuple[Any, float]:
        bits = sum(bits for _, bits in args)
        if bits > self.limits.max_power_bits:
            raise self.too_large(node, bits)
        factors = [
            sympy.Pow(value, -1) if divided else value
            for (value, _), divided in zip(args, node.divided, strict=True)
        ]
        return _with_bits(sympy.Mul(*factors), bits)

    def make_power(
        self, node: _Node, base: tuple[Any, float], exponent: tuple[Any, float]
    ) -> tuple[Any, float]:
        base_value, base_bits = base
        exp_value, exp_bits = exponent
        sized_below = base_value.is_Rational and exp_value.is_Number  # by its bits
        if base_value.is_number and not sized_below and base_value not in (0, 1):
            # e^(10^400), 2^exp(10^6); (-1)^cosh(10^12), whose parity sympy seeks in all 1.4e12 bits
            self.check_exponent(node, exp_value, base_value)
        if exp_value.is_Number:
            if not exp_value.is_Integer:
                self.check_root(node, base_value, base_bits, exp_value.q if exp_value.is_Rational else 1)
            if not (base_value.is_Number or base_value.is_Mul or base_value.is_Pow):
                # sympy never multiplies out a sum or a function call raised to a number
                return _with_bits(sympy.Pow(base_value, exp_value), base_bits)
            bits = _magnitude(exp_value) * base_bits if base_bits else 0.0
            if base_value.is_Float:
                # A float's bits grow with the power too: 1.5e-8^(10^309) overflows mpmath's exponent.
                bits = _float_power_bits(base_value, exp_value)
                problem = "too large or too small a number"
            else:
                problem = "too large to compute exactly"
            if not bits <= self.limits.max_power_bits:
                raise self.too_large(node, bits, problem)
        else:
            bits = max(base_bits, exp_bits)
        return _with_bits(sympy.Pow(base_value, exp_value), bits)

    def make_call(self, node: _Call, args: list[tuple[Any, float]]) -> tuple[Any, float]:
        spec = node.spec
        if spec.power:
            return self.make_power(node, args[0], args[1])
        values = [value for value, _ in args]
        if spec.exponential:
            self.check_exponent(node, values[0])
        if spec.guard_numbers:
            limit = self.limits.max_factorial_argument
            for value in values:
                if value.is_number and _size(value) > limit:
                    what = f"{self.source(node)} is too costly to compute exactly: its argument is too large"
                    shown = _display_number(value)
                    raise _over(self.limits, "max_factorial_argument", shown, what, _start(node))
        if spec.root:
            index = values[1] if len(values) > 1 else sympy.Integer(2)
            self.check_root(node, *args[0], abs(int(index)) if index.is_Integer else 1)
        bits = max(bits for _, bits in args)
        return _with_bits(spec.build(*values), bits)

    def check_exponent(self, node: _Node, exponent: Any, base: Any = sympy.E) -> None:
        """An exponential of a number past any double: sympy needs as many bits as the number has
        to compare or round the result (Max(exp(10^3000), 1) takes a minute), and its value is
        0 or +-inf as a double anyway.

        And sympy writes e^(k log(a) + u) as a^k e^u, which for a rational a and k is exact:
        e^(10^30 log(10^-100)) asked for a number of 10^32 digits (a thread held without end, memory
        without bound), whatever else the exponent holds; b^(v/log(b)) it writes as e^v first.
        """
        bits = _log_power_bits(exponent if base is sympy.E else _as_exponent_of_e(exponent, base))
        if bits > self.limits.max_power_bits:
            raise self.too_large(node, bits)
        if not exponent.is_number or exponent.is_finite is False:
            return  # a function of 1/0 is NaN (functions._undefined_in)
        size = _size(exponent)
        if size > _MAX_EXPONENT:
            raise self.too_large(node, size * math.log2(math.e), "too large or too small a number")

    def check_root(self, node: _Node, base: Any, bits: float, degree: int) -> None:
        """sympy looks for exact roots of numbers (perfect powers, small factors): cheap only while
        small; and a root of a number of degree 10^200 sends its sign tests to a minimal polynomial
        of that degree (floor(3^(1e-200) - 1) did not return)."""
        if base.is_Rational and bits > self.limits.max_root_bits:
            what = f"{self.source(node)} is too costly to compute exactly: the number under the root is large"
            raise _over(self.limits, "max_root_bits", round(bits), what, _start(node))
        if base.is_number and degree > self.limits.max_root_degree:
            what = f"{self.source(node)} is too costly to compute exactly: the root's degree is too high"
            shown = degree if degree.bit_length() < 64 else _magnitude(sympy.Integer(degree))
            raise _over(self.limits, "max_root_degree", shown, what, _start(node))


def _make_number(value: int | tuple[int, int] | tuple[str, int]) -> tuple[Any, float]:
    if isinstance(value, int):
        return sympy.Integer(value), _rational_bits(value, 1)
    first, second = value
    if isinstance(first, int):
        return sympy.Rational(first, second), _rational_bits(first, second)
    return _make_float(first, second), 0.0


def _make_float(text: str, significant: int) -> sympy.Float:
    if significant <= 17:
        # Up to 17 digits a literal is a double, as numpy will see it; its repr reads back equal.
        number = float(text)
        if math.isfinite(number) and (number != 0.0 or significant == 0):
            return sympy.Float(number)
    return sympy.Float(text, max(15, significant))


_MAX_EXPONENT = sys.float_info.max  # an exponent past it is past every double


def _size(number: Any) -> float:
    """|number| as a float (inf past the largest double)."""
    try:
        return float(magnitude(number))
    except (TypeError, ValueError, OverflowError):
        return math.inf


def _float_power_bits(base: sympy.Float, exponent: Any) -> float:
    """The binary exponent of base^exponent (about |exponent| log2|base|), before computing it."""
    scale = abs(float(mpmath.log(abs(mpmath.mpf(base._mpf_)), 2))) if base else 0.0
    return _magnitude(exponent) * scale if scale else 0.0


def _without_real_value(value: Any) -> bool:
    """Whether sympy knows `value` is not real, it holds 1/0 (zoo/log(x): any function of 1/0 is
    NaN), or it is a number with no real value (DiracDelta(0))."""
    if value.is_extended_real is False or value.has(sympy.zoo, sympy.nan):
        return True
    if not value.is_number:
        return False
    try:
        return math.isnan(reference.evaluate(value))
    except reference.Unsupported:
        return False


def _as_exponent_of_e(exponent: Any, base: Any) -> Any:
    """v where sympy writes base^exponent as e^v (an exponent over log(base), as Pow recognises it);
    0 where it does not."""
    coefficient, rest = factor_terms(exponent, sign=False).as_coeff_Mul()
    numerator, denominator = fraction(rest)
    if isinstance(denominator, sympy.log) and denominator.args[0] == base:
        return coefficient * numerator
    return sympy.S.Zero


def _log_power_bits(exponent: Any) -> float:
    """The bits of the largest exact power a^k sympy makes of e^exponent: a term k log(a) with a
    and k rational becomes a^k (exp's own rule: one log factor, the rest numbers)."""
    bits = 0.0
    for term in sympy.Add.make_args(exponent):
        factors = sympy.Mul.make_args(term)
        logs = [factor for factor in factors if isinstance(factor, sympy.log)]
        if len(logs) != 1 or not logs[0].args[0].is_Rational:
            continue
        power = sympy.Mul(*(factor for factor in factors if factor is not logs[0]))
        if power.is_Rational:
            base = logs[0].args[0]
            bits = max(bits, _magnitude(power) * _rational_bits(int(base.p), int(base.q)))
    return bits


def _rational_bits(p: int, q: int) -> float:
    return max(math.log2(abs(p)) if p else 0.0, math.log2(q))


def _with_bits(value: Any, estimate: float) -> tuple[Any, float]:
    if value.is_Rational:
        return value, _rational_bits(int(value.p), int(value.q))
    if value.is_Mul:
        # A function's value may carry a rational factor its arguments did not (acsc(-1) is -pi/2):
        # raised to 123456789, sympy multiplies out 2^123456789.
        coefficient = value.as_coeff_Mul()[0]
        if coefficient.is_Rational:
            return value, max(estimate, _rational_bits(int(coefficient.p), int(coefficient.q)))
    return value, estimate


def _magnitude(number: Any) -> float:
    """|number| as a float, infinite when too large for one (a 1000-digit integer exponent)."""
    if number.is_Rational:
        p, q = abs(int(number.p)), int(number.q)
        if p.bit_length() - q.bit_length() > 1000:
            return math.inf
        return p / q
    try:
        return abs(float(number))
    except (OverflowError, TypeError, ValueError):
        return math.inf


def _display_number(number: Any) -> float | int:
    if number.is_Integer and abs(int(number.p)).bit_length() < 64:
        return int(number.p)
    magnitude = _magnitude(number)
    return magnitude if number >= 0 else -magnitude


# ----------------------------------------------------------------------------------------- public API


class TooSlow(Exception):  # a signal to the caller, not an error of the text
    """The parse took longer than the `seconds` it was given: parse it again where time is budgeted.

    The limits bound a parse's size, not its time: sympy evaluates functions of numbers as it
    builds them (the integer part of 10^99 zeta(7/2) takes 30 ms), and 400 of them fit in an
    expression. A caller that must answer quickly (the server's Parse, in a worker of its own) gives
    an allowance, and moves a parse that exceeds it to where the full budget applies. The server's
    pool raises it too for a task it stopped at such a caller's hold (one sympy step can outlast
    any allowance): the same signal, the same move.
    """


def parse(text: str, limits: ParseLimits = DEFAULT_LIMITS, *, seconds: float | None = None) -> sympy.Expr:
    """Parse `text`; raise errors.ParseError / errors.UnknownFunction / errors.LimitExceeded, or
    TooSlow once building its sympy tree has taken more than `seconds` (None: no allowance)."""
    (expr,) = _parse_sides(text, limits, equation=False, seconds=seconds)
    return expr


def parse_equation(text: str, limits: ParseLimits = DEFAULT_LIMITS) -> tuple[sympy.Expr, sympy.Expr]:
    """Parse `lhs = rhs` into its two sides; text without `=` is F, meaning F = 0 (rhs is 0)."""
    sides = _parse_sides(text, limits, equation=True)
    return (sides[0], sides[1]) if len(sides) == 2 else (sides[0], sympy.S.Zero)


def check_costly_at(
    expr: sympy.Expr, substitution: Mapping[sympy.Basic, sympy.Expr], limits: ParseLimits, field: str
) -> None:
    """Refuse, as the parser refuses gamma(10^6), a function sympy evaluates exactly on numbers
    (`guard_numbers`) whose argument becomes too large a number once `substitution` is made: making
    it would compute the value (Series of gamma(x) around 10^5 spent its whole budget on gamma(10^5)).
    Inner calls first, so an argument is evaluated only once those within it are known to be cheap."""
    for node in sympy.postorder_traversal(expr):
        spec = _spec_of(node) if isinstance(node, sympy.Function) else None
        if spec is None or not spec.guard_numbers:
            continue
        for argument in node.args:
            value = argument.xreplace(substitution)
            if value.is_number and _size(value) > limits.max_factorial_argument:
                what = (
                    f"{to_text(node)} at that point ({field}) is too costly to compute exactly: "
                    "its argument is too large"
                )
                raise exceeded(
                    limits, "max_factorial_argument", _display_number(value), field=field, what=what
                )


def _parse_sides(
    text: str, limits: ParseLimits, *, equation: bool, seconds: float | None = None
) -> list[sympy.Expr]:
    if len(text) > limits.max_length:
        raise _over(limits, "max_length", len(text), "the expression is too long", limits.max_length)
    reserve_stack(limits.max_depth, sympy_work=False)  # sympy's, for the default limits: at import
    parser = _Parser(text, limits)
    try:
        trees = parser.parse(equation=equation)
    except RecursionError:
        # Only reachable if max_depth is configured beyond what the Python stack holds.
        what = "the expression is nested too deeply"
        raise _over(limits, "max_depth", parser.depth, what, parser.token.start) from None
    builder = _Builder(limits, text, seconds)
    return [builder.build(tree) for tree in trees]


# Frames one level of nesting may take: three in the recursive descent (`sin(` goes through
# expression, operand and call); some forty where sympy builds, evaluates, differentiates or expands
# it: sin(sin(...(x + 0) + 1...) + 83) failed (RecursionError) under Python's default limit of 1,000,
# within the depth limit of 100 (an attack hunt, 2026-12-07).
_PARSER_FRAMES_PER_LEVEL: Final = 3
_SYMPY_FRAMES_PER_LEVEL: Final = 40
_FRAMES_FOR_CALLERS: Final = 400
# sympy's frames, unlike the parser's, recurse through C too (its caches, __new__, comparisons), on
# the thread's stack (8 MiB), which Python's limit does not watch before 3.12: never beyond this.
_MAX_SYMPY_RECURSION: Final = 10_000


def reserve_stack(max_depth: int, *, sympy_work: bool = True) -> None:
    """Make sure `max_depth` levels of nesting fit under the interpreter's recursion limit, for the
    parser and (`sympy_work`) for the sympy work on what it built, at most `_MAX_SYMPY_RECURSION`
    for the latter; the limit is never lowered. Since Python 3.11 calls between Python functions use
    no C stack, so the parser's frames are safe whatever the depth. The depth check still stops
    hostile input at `max_depth`; nesting sympy recurses too deeply on (under limits configured
    deeper than the default) is INVALID_ARGUMENT (`errors.refusing_library_failures`)."""
    parser = _PARSER_FRAMES_PER_LEVEL * max_depth + _FRAMES_FOR_CALLERS
    engine = min(_SYMPY_FRAMES_PER_LEVEL * max_depth + _FRAMES_FOR_CALLERS, _MAX_SYMPY_RECURSION)
    needed = max(parser, engine) if sympy_work else parser
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


# Once at import for the default limits, in every process that parses (the symbolic workers too),
# not inside a request: a test runner may lower it for a test (hypothesis does) and warn when it
# is changed there.
reserve_stack(DEFAULT_LIMITS.max_depth)


def is_valid_variable_name(name: str) -> bool:
    """True for an ASCII identifier of at most 32 characters that is not a function or constant."""
    return (
        len(name) <= MAX_NAME_LENGTH
        and _VARIABLE_RE.fullmatch(name) is not None
        and name not in RESERVED_NAMES
    )


def check_variable_name(name: str, field: str) -> None:
    """InvalidArgument for `field` unless `name` is a valid variable name: one message, every field,
    saying why and what a name may be (wrt and variables said 'not a valid variable name' where
    variable and dependent said 'is reserved', neither how to mend it: an independent tester)."""
    if is_valid_variable_name(name):
        return
    shown = _shorten(name)
    if name in RESERVED_NAMES:
        kind = "function" if name in FUNCTIONS else "constant"
        why = f"'{shown}' is reserved (a {kind} name) and cannot be a variable"
    elif not name:
        why = "the variable name is empty"
    else:
        why = f"'{shown}' is not a valid variable name"
    rule = f"a letter, then letters, digits or _, at most {MAX_NAME_LENGTH} characters (ASCII)"
    raise errors.InvalidArgument(f"{why}: a variable's name is {rule}", field=field)


def symbol(name: str, *, field: str = "variable") -> sympy.Symbol:
    """The canonical (real) Symbol for variable `name`; InvalidArgument if the name is not valid."""
    check_variable_name(name, field)
    return _real_symbol(name)


def _real_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


class TimedPrinter:
    """A sympy printer that gives up (TooSlow) once its `deadline` (time.monotonic) has passed:
    printing a big expression can take longer than parsing it (900 factors: parsed in 0.25 s,
    written as text in 0.5 s and as LaTeX in 0.7 s). Checked at every node it prints."""

    deadline: float | None = None

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TooSlow
        return super()._print(expr, **kwargs)  # type: ignore[misc, no-any-return]

    @classmethod
    def until(cls, seconds: float | None) -> Any:
        """A fresh printer that gives up after `seconds` (None: never)."""
        printer = cls()
        printer.deadline = None if seconds is None else time.monotonic() + seconds
        return printer


class _TextPrinter(TimedPrinter, StrPrinter):  # type: ignore[misc]
    """sympy's str printer, adjusted so that everything it writes reads back through `parse`."""

    def _print_Float(self, expr: sympy.Float) -> str:  # noqa: N802
        if expr._prec == 53:
            number = float(expr)
            if math.isfinite(number):
                text = repr(number)
                mantissa, _, exponent = text.partition("e")
                if exponent and "." not in mantissa:
                    mantissa += ".0"  # `1e-05` would read back as the exact 1/100000
                return f"{mantissa}e{int(exponent)}" if exponent else text
        return str(super()._print_Float(expr))

    def _print_Integer(self, expr: sympy.Integer) -> str:  # noqa: N802
        return _integer_text(int(expr.p))

    def _print_Rational(self, expr: sympy.Rational) -> str:  # noqa: N802
        return f"{_integer_text(int(expr.p))}/{_integer_text(int(expr.q))}"

    def _print_ImaginaryUnit(self, expr: Any) -> str:  # noqa: N802
        return "sqrt(-1)"

    def _print_ComplexInfinity(self, expr: Any) -> str:  # noqa: N802
        return "(1/0)"

    def _print_NaN(self, expr: Any) -> str:  # noqa: N802
        return "(0/0)"

    def _print_Infinity(self, expr: Any) -> str:  # noqa: N802
        return "oo"

    def _print_NegativeInfinity(self, expr: Any) -> str:  # noqa: N802
        return "-oo"

    def _print_arg(self, expr: Any) -> str:
        # sympy makes im(log(u)) of a real u into arg(u), which the grammar has no name for.
        return f"im(log({self._print(expr.args[0])}))"


_CHUNK_DIGITS: Final = 500


def _integer_text(value: int) -> str:
    """Decimal digits; integers too long for one literal become a sum of chunks that reads back equal."""
    if value.bit_length() < 1600:
        return str(value)
    sign = "-" if value < 0 else ""
    chunks: list[int] = []
    rest = abs(value)
    base = 10**_CHUNK_DIGITS
    while rest:
        rest, chunk = divmod(rest, base)
        chunks.append(chunk)
    expr = str(chunks[-1])
    for chunk in reversed(chunks[:-1]):
        expr = f"({expr})*10^{_CHUNK_DIGITS} + {chunk}"
    return f"{sign}({expr})"


_PRINTER: Final = _TextPrinter()


def to_text(expr: sympy.Expr, *, seconds: float | None = None) -> str:
    """Print `expr` in our grammar (`^` for powers); `parse` reads the text back to an equal expression.

    Raises errors.NoClosedForm when part of `expr` cannot be written in the grammar (`unwritable`),
    TooSlow once printing has taken more than `seconds` (None: no allowance).
    """
    refusal = unwritable(expr)
    if refusal is not None:
        raise refusal
    printer = _PRINTER if seconds is None else _TextPrinter.until(seconds)
    # The printed text has no string literals, so `**` is only ever the power operator; replacing
    # it beats copying the half-dozen branches of sympy's `_print_Pow` into an override.
    text = str(printer.doprint(expr)).replace("**", "^")
    # Variables d and dx divide as d/(dx): `d/dx` would be refused as Leibniz notation.
    return _PRINTED_LEIBNIZ_RE.sub(r"\1(\2)", text) if "/d" in text else text


_PRINTED_LEIBNIZ_RE: Final = re.compile(r"(?<![A-Za-z0-9_])(d(?:\^[0-9]+)?/)(d[A-Za-z0-9_]*)", re.ASCII)


# ------------------------------------------------------------------------------ what the grammar writes


def _function_classes() -> Mapping[type, tuple[FunctionSpec, ...]]:
    """The sympy class each function of the table builds (`cbrt` builds RealRoot) -> its specs.

    Classes named as in the table (sin, Min) are found by name; this finds the others.
    """
    x, y = sympy.Symbol("x", real=True), sympy.Symbol("y", real=True)
    found: dict[type, tuple[FunctionSpec, ...]] = {}
    for spec in SPECS:
        # (re and im of a real variable are the variable and 0: of sqrt(x), they stay.)
        for args in ((x, y), (sympy.sqrt(x), sympy.sqrt(y))):
            built = spec.build(*args[: spec.min_args])
            if isinstance(built, sympy.Function):
                found[type(built)] = (*found.get(type(built), ()), spec)
                break
    return found


_FUNCTION_CLASSES: Final = _function_classes()
_CONSTANT_VALUES: Final = frozenset(CONSTANTS.values())
# Numbers `_TextPrinter` writes as expressions: sqrt(-1), (1/0), (0/0), oo, -oo.
_PRINTED_NUMBERS: Final = frozenset({sympy.I, sympy.zoo, sympy.nan, sympy.oo, -sympy.oo})
_ORDINALS: Final = ("first", "second", "third", "fourth")


def _spec_of(node: sympy.Basic) -> FunctionSpec | None:
    """The table's spec for a function node: by class, or by name for sympy's own floor, ceiling..."""
    named = FUNCTIONS.get(type(node).__name__)
    candidates = _FUNCTION_CLASSES.get(type(node), ()) + ((named,) if named else ())
    count = len(node.args)
    return next((spec for spec in candidates if spec.min_args <= count <= spec.max_args), None)


def _writable(node: sympy.Basic) -> bool:
    if node.is_Atom:
        if node.is_Symbol:
            return not isinstance(node, sympy.Dummy)
        return bool(node.is_Number) or node in _CONSTANT_VALUES or node in _PRINTED_NUMBERS
    if isinstance(node, (sympy.Add, sympy.Mul, sympy.Pow, sympy.arg)):
        return True
    if getattr(type(node), "prints_as_parentheses", False):  # a grouping for printing (series.py)
        return True
    return _spec_of(node) is not None  # Min and Max are no sympy.Function: found by name


def unwritable(expr: sympy.Basic) -> errors.NoClosedForm | None:
    """Why `expr` cannot be written in our grammar, as the error to raise; None when it can.

    A derivative sympy leaves unevaluated (Derivative, Subs: d/ds zeta(s) has no closed form in
    the grammar) names the function and the argument; anything else names the construct.
    """
    seen: set[sympy.Basic] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        if not _writable(node):
            return _refusal(node)
        seen.add(node)
        stack.extend(node.args)
    return None


def _refusal(node: sympy.Basic) -> errors.NoClosedForm:
    point: dict[sympy.Basic, sympy.Basic] = {}
    if isinstance(node, sympy.Subs):  # d/du f(u) at u = g(x): sympy's chain rule for f(g(x))
        point = dict(zip(node.variables, node.point, strict=True))
        node = node.expr
    call = node.expr if isinstance(node, sympy.Derivative) else None
    spec = _spec_of(call) if call is not None else None
    if call is None or spec is None:
        name = type(node).__name__
        message = f"the derivative needs {name}, which our grammar cannot write"
        return errors.NoClosedForm(message, function=name)
    variable = node.variables[0]
    argument = call.args.index(variable) + 1 if variable in call.args else 0
    shown = call.xreplace(point)
    where = f" (in {_shorten(to_text(shown), 60)})" if unwritable(shown) is None else ""
    which = f" by its {_ORDINALS[argument - 1]} argument" if 0 < argument <= len(_ORDINALS) else ""
    return errors.NoClosedForm(
        f"the derivative of {spec.name}{which}{where} has no closed form in our grammar",
        function=spec.name,
        argument=argument,
    )
