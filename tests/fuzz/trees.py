"""Random expression trees over the whole function table, printed in our grammar, valued with mpmath.

A tree is what the fuzzer means; its text is what the service reads. The reference value of a tree is
computed node by node (`reference`, at `PREC` bits) from the tree itself, never from sympy's parse of
the text: sympy rewrites as it builds (cosh(acoth(x)) becomes x/(sqrt(x-1) sqrt(x+1))), and a rewrite
that changes the real function is one of the things this fuzzer is for.

Three evaluations of a tree:
- strict: the real-valued rule (an intermediate that is not real makes the value NaN);
- continued: in the complex plane, to recognise an identity sympy applied (sin(asin(x)) is x);
- rounded: every node rounded to a double, nudged by an ulp at random, which estimates how much a
  float64 evaluation of this very formula can be off (cancellation, overflow of an intermediate).
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import sympy
from hypothesis import strategies as st

from chainrule.engine import functions, parsing, reference
from chainrule.engine.errors import ChainruleError
from chainrule.engine.limits import ParseLimits

PREC = 200  # bits: 60 digits, the reference every float64 result is compared with
NEAR = 1e-6  # points this close to a kink, pole or branch point are not compared

VARIABLES = ("x", "y", "z")


@dataclass(frozen=True)
class Node:
    """One node: kind is var, num, const, neg, add, sub, mul, div, pow or call.

    `name` is the variable, constant or function as written (an alias, perhaps); `value` is a number's
    exact value and `text` how it is written.
    """

    kind: str
    name: str = ""
    args: tuple[Node, ...] = ()
    value: sympy.Expr | None = None
    text: str = ""
    implicit: bool = field(default=False, compare=False)

    def variables(self) -> set[str]:
        if self.kind == "var":
            return {self.name}
        return set().union(*(arg.variables() for arg in self.args)) if self.args else set()

    def size(self) -> int:
        return 1 + sum(arg.size() for arg in self.args)


# ------------------------------------------------------------------------------------------- printing

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^"}


def to_text(node: Node) -> str:
    """The tree in our grammar: every compound operand in parentheses, so only the tree is read."""
    if node.kind == "var":
        return node.name
    if node.kind in ("num", "const"):
        return node.text or node.name
    if node.kind == "neg":
        return f"-{_operand(node.args[0])}"
    if node.kind == "call":
        return f"{node.name}({', '.join(to_text(arg) for arg in node.args)})"
    left, right = (_operand(arg) for arg in node.args)
    if node.kind == "mul" and node.implicit:
        return f"{left} {right}" if not left.startswith("(") or not right.startswith("(") else left + right
    return f"{left} {_BINARY[node.kind]} {right}"


def _operand(node: Node) -> str:
    text = to_text(node)
    if node.kind in ("var", "call", "const") or (node.kind == "num" and _plain_number(text)):
        return text
    return f"({text})"


def _plain_number(text: str) -> bool:
    return all(ch.isdigit() or ch == "." for ch in text)


# ------------------------------------------------------------------------------------------ strategies

_NUMBERS: list[tuple[str, sympy.Expr]] = [
    *((str(k), sympy.Integer(k)) for k in range(0, 11)),
    ("0.5", sympy.Float(0.5)),
    ("2.75", sympy.Float(2.75)),
    ("0.1", sympy.Float(0.1)),
    ("1e-3", sympy.Rational(1, 1000)),
    ("2e3", sympy.Integer(2000)),
    ("1e20", sympy.Integer(10**20)),
    ("1.5e-8", sympy.Float(1.5e-8)),
    ("123456789", sympy.Integer(123456789)),
    ("1e309", sympy.Integer(10**309)),
]
_CONSTANTS = {"pi": sympy.pi, "e": sympy.E, "E": sympy.E}
_STEP_ARGUMENTS = {"DiracDelta": 1, "Heaviside": 1}  # the position that must be a number literal


def _number(draw: st.DrawFn) -> Node:
    text, value = draw(st.sampled_from(_NUMBERS))
    return Node("num", value=value, text=text)


def _leaf(draw: st.DrawFn, names: Sequence[str]) -> Node:
    kind = draw(st.sampled_from(["var", "var", "var", "num", "num", "const"]))
    if kind == "var":
        return Node("var", draw(st.sampled_from(list(names))))
    if kind == "const":
        name = draw(st.sampled_from(sorted(_CONSTANTS)))
        return Node("const", name, value=_CONSTANTS[name])
    return _number(draw)


def _small_integer(draw: st.DrawFn, low: int, high: int) -> Node:
    k = draw(st.integers(low, high))
    return Node("num", value=sympy.Integer(k), text=str(k))


@st.composite
def trees(draw: st.DrawFn, names: Sequence[str], depth: int = 4, root: str | None = None) -> Node:
    """A random tree of at most `depth` levels over the variables `names` and the whole table;
    `root` names the function at its root (so a short run still covers every function)."""
    # hypothesis draws small integers first: a leaf is the rare end of the range, not its start.
    if root is None and (depth <= 1 or draw(st.integers(0, 9)) >= 8):
        return _leaf(draw, names)
    kind = (
        "call"
        if root
        else draw(st.sampled_from(["call", "call", "call", "add", "sub", "mul", "div", "pow", "neg"]))
    )
    below = trees(names, depth - 1)
    if kind == "neg":
        return Node("neg", args=(draw(below),))
    if kind != "call":
        left, right = draw(below), draw(below)
        if kind == "pow" and draw(st.booleans()):
            right = _small_integer(draw, -3, 4)
        implicit = kind == "mul" and draw(st.integers(0, 3)) == 0 and left.kind in ("num", "var", "call")
        return Node(kind, args=(left, right), implicit=implicit and right.kind != "num")
    spec = functions.FUNCTIONS[root] if root else draw(st.sampled_from(functions.SPECS))
    count = draw(st.integers(spec.min_args, min(spec.max_args, 3)))
    args = [draw(below) for _ in range(count)]
    if spec.name == "polygamma" and draw(st.integers(0, 4)) > 0:
        args[0] = _small_integer(draw, 0, 3)
    if spec.name == "root" and draw(st.integers(0, 4)) > 0:
        args[1] = _small_integer(draw, 2, 5)
    if spec.name in _STEP_ARGUMENTS and count > 1:
        args[1] = _small_integer(draw, 0, 2) if spec.name == "DiracDelta" else _number(draw)
    return Node("call", draw(st.sampled_from(spec.names)), args=tuple(args))


def coordinates() -> st.SearchStrategy[float]:
    """Values of a variable: mostly moderate, sometimes huge or tiny, of either sign."""
    moderate = st.floats(-4.0, 4.0, allow_nan=False)
    wide = st.builds(
        lambda sign, exponent, mantissa: sign * mantissa * 10.0**exponent,
        st.sampled_from([-1.0, 1.0]),
        st.integers(-12, 12),
        st.floats(1.0, 9.99),
    )
    return st.one_of(moderate, moderate, moderate, wide)


# ------------------------------------------------------------------------------------------ reference


@functools.cache
def _template(kind: str, name: str, constants: tuple[sympy.Expr | None, ...]) -> sympy.Expr:
    """One node as a sympy expression of placeholders _t0, _t1... (a constant argument stays a number:
    DiracDelta(x, 2) needs its order)."""
    args = [sympy.Symbol(f"_t{i}") if constant is None else constant for i, constant in enumerate(constants)]
    if kind == "neg":
        return -args[0]
    if kind == "add":
        return sympy.Add(*args, evaluate=False)
    if kind == "sub":
        return sympy.Add(args[0], -args[1], evaluate=False)
    if kind == "mul":
        return sympy.Mul(*args, evaluate=False)
    if kind == "div":
        return sympy.Mul(args[0], sympy.Pow(args[1], -1, evaluate=False), evaluate=False)
    if kind == "pow":
        return sympy.Pow(*args, evaluate=False)
    return functions.FUNCTIONS[name].build(*args)


class Evaluation:
    """A tree's value at one point, node by node; `values` keeps each node's (for the checks of kinks)."""

    def __init__(
        self,
        ctx: Any,
        point: Mapping[str, Any],
        *,
        strict: bool = True,
        each: Callable[[Any], Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self.point = point
        self.strict = strict
        self.each = each
        self.values: list[tuple[Node, list[Any], Any]] = []

    def __call__(self, node: Node) -> Any:
        if node.kind == "var":
            return self._rounded(self.ctx.convert(self.point[node.name]))
        if node.kind in ("num", "const"):
            assert node.value is not None
            return self._rounded(self.ctx.convert(reference.evaluate(node.value, prec=self.ctx.prec)))
        children = [self(arg) for arg in node.args]
        if not self.strict and (absorbed := _absorbed(self.ctx, node, children)) is not None:
            self.values.append((node, children, absorbed))
            return absorbed
        constants = tuple(
            arg.value if arg.kind == "num" and (node.kind == "call" and _needs_literal(node, i)) else None
            for i, arg in enumerate(node.args)
        )
        template = _template(node.kind, node.name, constants)
        values = {f"_t{i}": child for i, child in enumerate(children) if constants[i] is None}
        result = reference.evaluate(template, values, prec=self.ctx.prec, strict=self.strict)
        result = self._rounded(self.ctx.convert(result))
        self.values.append((node, children, result))
        return result

    def _rounded(self, value: Any) -> Any:
        return value if self.each is None else self.each(value)


def _absorbed(ctx: Any, node: Node, children: Sequence[Any]) -> Any:
    """What sympy makes of u^0, u/u, log(u, u), 0*u, 0/u, u - u and u + (-u) whatever u is (1, 1, 1,
    0, 0, 0, 0, even where u has no value), continuing a tree as sympy's identities do; None for
    other nodes."""
    kind, args = node.kind, node.args
    same = len(args) == 2 and args[0] == args[1]
    if (kind == "pow" and children[1] == 0) or (kind == "div" and same):
        return ctx.one
    if kind == "call" and functions.FUNCTIONS[node.name].name == "log" and same:
        return ctx.one  # log(x, x) is log(x)/log(x)
    if (
        (kind == "mul" and any(child == 0 for child in children))
        or (kind == "div" and children[0] == 0)
        or (kind == "sub" and same)
        or (kind == "add" and any(Node("neg", args=(a,)) in args for a in args))
    ):
        return ctx.zero
    return None


def _needs_literal(node: Node, index: int) -> bool:
    spec = functions.FUNCTIONS[node.name]
    return (spec.name == "DiracDelta" and index == 1) or (spec.name == "polygamma" and index == 0)


def value(tree: Node, point: Mapping[str, float], *, strict: bool = True, prec: int = PREC) -> Any:
    """The tree's value at `point` (an mpf; NaN when it has none; an mpc possible when not strict)."""
    ctx = reference.context(prec)
    return Evaluation(ctx, point, strict=strict)(tree)


def nearest(value: Any) -> Any:
    """A rounding for `reference.evaluate(each=...)`: every real value to its nearest double."""
    return value if hasattr(value, "_mpc_") or isinstance(value, float) else float(value)


class _Rounding:
    """Rounds an mpf to a double and, where that rounding lost something, nudges it one ulp up or
    down a third of the time each (the double itself is returned: mpmath takes it as it is, and no
    context's precision changes). A value a double holds exactly is not moved: the exponent 2 of
    x^2 is exact in float64 too, and nudged to 2.0000000000000004 it made x^2 of a negative x NaN."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, value: Any) -> Any:
        if hasattr(value, "_mpc_") or isinstance(value, float):
            return value
        double = float(value)
        if math.isfinite(double) and double != value:
            step = self.rng.choice((-1, 0, 1))
            if step:
                double = math.nextafter(double, math.inf * step)
        return double


def exact(tree: Node) -> bool:
    """Whether every number in the tree is exact (no float literal such as 0.1)."""
    if tree.kind == "num":
        return bool(tree.value is not None and tree.value.is_Rational)
    return all(exact(arg) for arg in tree.args)


def folded(tree: Node) -> Node:
    """The tree as sympy builds it from text: a constant subtree holding a float literal is one
    Float, computed by sympy at 53 bits as it is parsed (tan(1.5e-8 - tan(1.5e-8)) is 0.0, where its
    exact value is -1.1e-24; mpmath's sec(1.5e-8) at 53 bits is 1.0, not the nearest double). The
    value is the parser's own, so it is sympy's to the bit. The checks accept a formula that is
    either tree's function."""
    if tree.kind in ("var", "num", "const"):
        return tree
    if not tree.variables() and not exact(tree):
        with contextlib.suppress(ChainruleError):
            value = parsing.parse(to_text(tree))
            if value.is_Number and value.is_finite:
                return Node("num", value=value, text=str(value))
    return Node(
        tree.kind, tree.name, tuple(folded(arg) for arg in tree.args), tree.value, tree.text, tree.implicit
    )


def rounding(seed: int) -> Callable[[Any], Any]:
    """A rounding for `reference.evaluate(each=...)`, to estimate a sympy formula's own float error."""
    return _Rounding(random.Random(seed))


_MAX_LITERAL_BITS = 4096


def derivative(tree: Node, point: Mapping[str, float], orders: Mapping[str, int], prec: int = PREC) -> Any:
    """d^orders tree at point by mpmath's numerical differentiation of the strict reference, or None
    where the tree has no finite real value nearby, or where two precisions disagree (tanh(x 1e309)
    turns from -1 to 1 within 1e-309 of 0: no step size sees that); such a derivative is not compared.

    The precision grows with the tree's literals: at y = 0, 1e309 y^2 - e y differs by 1e309 h^2 over a
    step h and by e h, so d/dy is -e only if the sum keeps 1,027 bits more than the derivative's."""
    prec += _literal_bits(tree)
    first = _differentiated(tree, point, orders, prec)
    if first is None:
        return None
    second = _differentiated(tree, point, orders, prec + 40)
    if second is None:
        return None
    scale = max(1.0, abs(float(value(tree, point, prec=prec))))
    if abs(first - second) > 1e-25 * max(abs(first), abs(second)) + 1e-40 * scale:
        return None
    return first


def _literal_bits(tree: Node) -> int:
    """The bits of magnitude of the tree's numbers past 1 (at most _MAX_LITERAL_BITS)."""
    if tree.kind == "num" and tree.value is not None:
        if tree.value.is_zero:
            return 0
        magnitude = mpmath.mag(reference.evaluate(abs(tree.value), prec=64))
        return min(_MAX_LITERAL_BITS, max(0, int(magnitude)))
    return min(_MAX_LITERAL_BITS, sum(_literal_bits(arg) for arg in tree.args))


def _differentiated(tree: Node, point: Mapping[str, float], orders: Mapping[str, int], prec: int) -> Any:
    names = sorted(orders)
    diff_ctx = mpmath.MPContext()
    diff_ctx.prec = prec

    def at(*where: Any) -> Any:
        shifted = dict(point)
        shifted.update({name: where[i] for i, name in enumerate(names)})
        result = value(tree, shifted, prec=diff_ctx.prec)
        if not diff_ctx.isfinite(result):
            raise _NoValue
        return diff_ctx.convert(result)

    try:
        found = diff_ctx.diff(
            at, tuple(diff_ctx.convert(point[name]) for name in names), tuple(orders[n] for n in names)
        )
    except (_NoValue, ZeroDivisionError, ValueError):
        return None
    return found


class _NoValue(Exception):
    pass


# ------------------------------------------------------------------------------------- kinks and poles


def near_singularity(evaluation: Evaluation) -> bool:
    """Whether some node's arguments lie within NEAR of a point where it is not smooth (a kink, a jump,
    a pole, a branch point, the edge of its domain): numerical differences are meaningless there and
    a last-bit difference in an argument may move the value across."""
    return any(_singular(node, [_real_float(v) for v in args]) for node, args, _ in evaluation.values)


def _real_float(value: Any) -> float:
    if hasattr(value, "_mpc_"):
        return math.nan
    return float(value)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= NEAR * max(1.0, abs(a), abs(b))


def _near_integer(a: float, *, nonpositive: bool = False) -> bool:
    if not math.isfinite(a) or (nonpositive and a > NEAR):
        return False
    return _close(a, round(a))


def _near_any(a: float, points: Sequence[float]) -> bool:
    return any(_close(a, p) for p in points)


def _near_period(a: float, offset: float) -> bool:
    """a within NEAR of offset + k pi (tan, cot, sec, csc poles and zeros)."""
    if not math.isfinite(a):
        return False
    k = round((a - offset) / math.pi)
    return abs(a - offset - k * math.pi) <= NEAR


_EDGES: dict[str, tuple[float, ...]] = {
    "Abs": (0.0,), "sign": (0.0,), "Heaviside": (0.0,), "DiracDelta": (0.0,), "acot": (0.0,),
    "coth": (0.0,), "csch": (0.0,), "acsch": (0.0,), "log": (0.0,), "ln": (0.0,), "log10": (0.0,),
    "log2": (0.0,), "sqrt": (0.0,), "cbrt": (0.0,), "asin": (-1.0, 1.0), "acos": (-1.0, 1.0),
    "atanh": (-1.0, 1.0), "acoth": (-1.0, 1.0), "asec": (-1.0, 0.0, 1.0), "acsc": (-1.0, 0.0, 1.0),
    "acosh": (1.0,), "asech": (0.0, 1.0), "zeta": (1.0,), "loggamma": (0.0,),
}  # fmt: skip
_POLES = {"gamma", "loggamma", "digamma", "factorial", "beta", "polygamma"}
_PERIODIC = {"sin", "cos", "tan", "sec", "csc", "cot"}
_CHAOS = 1e8
# The parser refuses a constant polygamma past the same argument ("too costly to compute exactly").
_HURWITZ_LARGEST = ParseLimits().max_factorial_argument


def _singular(node: Node, args: list[float]) -> bool:
    if any(math.isnan(a) for a in args):
        return False  # no value: the check of values handles it
    if node.kind == "div":
        return abs(args[1]) <= NEAR * max(1.0, abs(args[0]))
    if node.kind == "pow":
        base, exponent = args
        return abs(base) <= NEAR or (base < 0 and _near_integer(exponent))
    if node.kind != "call":
        return False
    spec = functions.FUNCTIONS[node.name]
    name = spec.name
    if name in _EDGES and _near_any(args[0], _EDGES[name]):
        return True
    if name in ("floor", "ceiling"):
        return _near_integer(args[0])
    if name in ("Min", "Max"):
        return any(_close(a, b) for i, a in enumerate(args) for b in args[i + 1 :])
    if name in _PERIODIC and abs(args[0]) > _CHAOS:
        return True  # a period is smaller than the argument's last bit: numerical derivatives are noise
    if name in ("tan", "sec"):
        return _near_period(args[0], math.pi / 2)
    if name in ("cot", "csc"):
        return _near_period(args[0], 0.0)
    if name == "atan2":
        y, x = args
        return abs(y) <= NEAR * max(1.0, abs(x)) and x <= NEAR
    if name == "root":
        return abs(args[0]) <= NEAR or args[1] == 0 or _near_integer(args[1])
    if name == "log" and len(args) == 2:
        return _near_any(args[1], (0.0, 1.0))
    if name == "pow":
        return abs(args[0]) <= NEAR or (args[0] < 0 and _near_integer(args[1]))
    if name == "factorial":
        return _near_integer(args[0] + 1.0, nonpositive=True)
    if name == "polygamma":
        # An order next to a whole one but not one is Hurwitz's zeta, whose truth at a huge argument
        # (mpmath's numerical derivative of our reference's, at -y + 1e309) spent over ten minutes
        # of `make fuzz` in one bignum operation, which no signal interrupts (2026-12-07).
        huge = abs(args[1]) > _HURWITZ_LARGEST and not args[0].is_integer()
        return _near_integer(args[1], nonpositive=True) or not _near_integer(args[0]) or huge
    if name == "beta":
        return any(_near_integer(a, nonpositive=True) for a in (*args, args[0] + args[1]))
    if name == "zeta" and len(args) == 2:
        return _close(args[0], 1.0) or _near_integer(args[1], nonpositive=True)
    if name in _POLES:
        return _near_integer(args[0], nonpositive=True)
    return False
