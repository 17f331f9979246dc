"""The symbolic engine: derivatives under limits, simplification and printing (pure sympy, no transport).

Numeric compilation and evaluation live in `numeric.py` and are re-exported here, so callers need
only `engine`. Everything this module returns is a plain sympy expression or tuple: picklable, so
the server can run it in other processes (its symbolic workers).

Derivatives use a memoised chain rule over the expression DAG (`derivative`): sympy's own `diff`
walks the expression as a tree, and higher derivatives are trees with huge sharing, so memoising
per distinct node makes high derivatives about ten times cheaper; the derivative is the same.
"""

from __future__ import annotations

import enum
import pickle
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy
from sympy.core.function import AppliedUndef, ArgumentIndexError
from sympy.printing.latex import LatexPrinter
from sympy.printing.repr import ReprPrinter

from chainrule.engine import bignum, parsing, reference
from chainrule.engine.errors import ChainruleError, InvalidArgument
from chainrule.engine.functions import FUNCTIONS
from chainrule.engine.limits import EngineLimits, exceeded
from chainrule.engine.numeric import (
    CompiledFunction,
    CompiledGradient,
    CompiledJacobian,
    EvaluationResult,
    GradientResult,
    JacobianResult,
    NeedsWidening,
    compile_components,
    compile_function,
    compile_jacobian_components,
    evaluate,
    gather_columns,
    gradient,
    jacobian,
    quick_only,
)

__all__ = [
    "CompiledFunction",
    "CompiledGradient",
    "CompiledJacobian",
    "EngineLimits",
    "EvaluationResult",
    "GradientResult",
    "JacobianResult",
    "NeedsWidening",
    "Portable",
    "Simplification",
    "canonical_key",
    "check_jacobian_rows",
    "check_size",
    "compile_components",
    "compile_function",
    "compile_gradient",
    "compile_jacobian",
    "compile_jacobian_components",
    "derivative",
    "differentiate",
    "evaluate",
    "expression_size",
    "free_variables",
    "gather_columns",
    "gradient",
    "gradient_components",
    "jacobian",
    "jacobian_components",
    "jacobian_variables",
    "quick_only",
    "resolve_wrt",
    "resolved",
    "simplify",
    "to_latex",
]


class Simplification(enum.Enum):
    """How much to tidy a derivative: NONE is the raw chain rule, FAST about linear, FULL `simplify`."""

    NONE = "none"
    FAST = "fast"
    FULL = "full"


DEFAULT_LIMITS = EngineLimits()


class Portable:
    """A sympy expression that crosses process boundaries as its pickle, rebuilt only where it is used.

    Unpickling a sympy tree calls every constructor again (assumptions and all): in a process whose
    sympy cache has not seen the expression it costs about half as much as parsing it. The server
    process needs most derivatives only as text, so it keeps the bytes and forwards them as they are.
    The bytes only ever come from our own symbolic workers.
    """

    __slots__ = ("_blob", "_expression")

    def __init__(self, expression: sympy.Expr | None = None, blob: bytes | None = None) -> None:
        self._expression = expression
        self._blob = blob

    @property
    def expression(self) -> sympy.Expr:
        """The expression, unpickled on first use."""
        if self._expression is None:
            assert self._blob is not None
            # Each node is rebuilt as the worker built it, its constructor not evaluating again: a node
            # the parser had to build unevaluated (acos(sin(10^309/3)), whose evaluation asks sympy a
            # question it cannot decide) would otherwise fail here, in another process (INTERNAL).
            with sympy.evaluate(False):
                self._expression = pickle.loads(self._blob)  # noqa: S301 (bytes from our own symbolic workers)
        return self._expression

    def __reduce__(self) -> tuple[Any, ...]:
        return (Portable, (None, self._pickled()))

    @property
    def pickled_bytes(self) -> int:
        """The size of its pickle, which it holds once it has crossed a process (made here if not)."""
        return len(self._pickled())

    def _pickled(self) -> bytes:
        if self._blob is None:
            self._blob = pickle.dumps(self._expression, protocol=pickle.HIGHEST_PROTOCOL)
        return self._blob


def resolved(value: sympy.Expr | Portable) -> sympy.Expr:
    """The expression itself, whether given plainly or as a `Portable`."""
    return value.expression if isinstance(value, Portable) else value


def free_variables(expr: sympy.Basic) -> tuple[str, ...]:
    """The names of the expression's free symbols, sorted."""
    return tuple(sorted(symbol.name for symbol in expr.free_symbols))


def resolve_wrt(
    expr: sympy.Basic, wrt: Sequence[tuple[str, int]], limits: EngineLimits = DEFAULT_LIMITS
) -> tuple[tuple[str, int], ...]:
    """Validate `wrt` and fill in defaults: order 0 means 1; empty means the only free variable."""
    if not wrt:
        names = free_variables(expr)
        if len(names) > 1:
            listed = ", ".join(names)
            raise InvalidArgument(
                f"the expression has several variables ({listed}): say which to differentiate by",
                field="wrt",
            )
        return tuple((name, 1) for name in names)
    resolved: list[tuple[str, int]] = []
    for index, (name, raw_order) in enumerate(wrt):
        parsing.check_variable_name(name, f"wrt[{index}].variable")
        if raw_order < 0:
            raise InvalidArgument(f"order {raw_order} is negative", field=f"wrt[{index}].order")
        order = raw_order or 1
        if order > limits.max_derivative_order:
            field = f"wrt[{index}].order"
            raise exceeded(limits, "max_derivative_order", order, field=field, what="the order is too high")
        resolved.append((name, order))
    # The whole total, not the running one where it passed the limit (64 entries of order 1 said 21).
    total = sum(order for _, order in resolved)
    if total > limits.max_derivative_order:
        what = "the total order of the derivative is too high"
        raise exceeded(limits, "max_derivative_order", total, field="wrt", what=what)
    return tuple(resolved)


def differentiate(
    expr: sympy.Expr,
    wrt: Sequence[tuple[str, int]],
    simplification: Simplification = Simplification.FAST,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> sympy.Expr:
    """The derivative of `expr` by `wrt` (mixed partials in the order given), then simplified.

    A constant differentiates to 0. The derivative's size is checked after every single order, so
    an exploding high derivative stops as soon as it passes `max_derivative_nodes`.
    """
    steps = resolve_wrt(expr, wrt, limits)
    if not steps:  # a constant: 0, unless it has no value (1/0, log(x, 1)): then neither has its derivative
        return sympy.S.NaN if expr.has(*UNDEFINED) else sympy.S.Zero
    symbols = {symbol.name: symbol for symbol in expr.free_symbols}
    result = expr
    try:
        for name, order in steps:
            variable = symbols.get(name) or sympy.Symbol(name, real=True)
            for _ in range(order):
                result = derivative(result, variable)
                _check_size(result, limits)
        return simplify(result, simplification)
    except RecursionError:
        raise InvalidArgument(
            "the expression is nested too deeply to differentiate", field="expression"
        ) from None


# A power's exponent past which simplifying is not tried: sympy takes the numeric content out of its
# base as an exact power, and (2 (x + 1e20))^(1e20) made 2^(10^20) (past the worker's budget and
# memory; `tests/fuzz/slow_plans.py`).
_HUGE_EXPONENT = 10**6


def _huge_power(expr: sympy.Expr) -> bool:
    return any(power.exp.is_Number and abs(power.exp) > _HUGE_EXPONENT for power in expr.atoms(sympy.Pow))


def simplify(expr: sympy.Expr, simplification: Simplification) -> sympy.Expr:
    """Apply one simplification level to an expression.

    FULL is sympy's `simplify`, kept only when its result can still be written in our grammar and is
    finite wherever the unsimplified form is (`_no_worse`); otherwise it is the FAST form. Neither
    is tried on an expression with a power past `_HUGE_EXPONENT`. sign(u) is hidden from it:
    `simplify` rewrites it as Piecewise((0, Eq(u, 0)), (u/Abs(u), True)), longer and not in the
    grammar.
    """
    if simplification is Simplification.NONE or _huge_power(expr):
        return expr
    # factor_terms pulls out common factors and numeric content in one bottom-up pass;
    # it neither expands powers nor looks for polynomial gcds (cancel/factor are not linear).
    fast = sympy.factor_terms(expr)
    if not _beyond_doubles(fast) <= _beyond_doubles(expr):
        # factor_terms pulled 10^-618 out of (10^-618 - acos(x))/...: 10^618 multiplies both sides
        # of a quotient, inf/inf in float64, where the unsimplified form only adds 0.0.
        fast = expr
    if simplification is Simplification.FAST:
        return fast
    try:
        if expr.has(sympy.sign):
            full = sympy.simplify(expr.replace(sympy.sign, _OpaqueSign)).replace(_OpaqueSign, sympy.sign)
        else:
            full = sympy.simplify(expr)
    except MemoryError:
        raise  # the worker's memory bound: it is replaced, and the caller told
    except Exception:
        # (replacing sign inside Derivative(zeta(sign(x)), sign(x)) rebuilt a derivative by a non-symbol)
        return fast
    return full if parsing.unwritable(full) is None and _no_worse(full, expr) else fast


_OpaqueSign = sympy.Function("sign_", real=True)


def _beyond_doubles(expr: sympy.Expr) -> set[sympy.Rational]:
    """The exact numbers in `expr` that no double holds to full precision: past the largest double,
    or non-zero and below the smallest normal one (numeric code rounds them to inf, 0 or subnormals)."""
    return {number for number in expr.atoms(sympy.Rational) if number and not _normal_double(number)}


def _normal_double(number: sympy.Rational) -> bool:
    double = abs(bignum.nearest_double(int(number.p), int(number.q)))
    return sys.float_info.min <= double <= sys.float_info.max


# Values each variable takes where FULL's form is checked: a fixed spread of signs and magnitudes.
_SAMPLES = (-31.7, -6.1, -1.9, -0.73, -0.21, 0.17, 0.62, 1.37, 2.9, 8.3, 27.1, 95.0)
_SAMPLE_POINTS = 24


def _no_worse(simplified: sympy.Expr, original: sympy.Expr) -> bool:
    """Whether FULL's form is finite, in float64, wherever the unsimplified derivative is.

    sympy.simplify keeps a function in the complex plane, not its float64 values on the reals: it may
    write exp(p^2)*...*exp(-p^2) apart (NaN from p = 27 on, where exp(p^2) overflows) or go through
    sqrt(x^2 - 1) where the original had real values. Such a form is not returned; FAST's is.
    """
    names = sorted(set(free_variables(original)) | set(free_variables(simplified)))
    columns = {
        name: np.array([_SAMPLES[(7 * k + 5 * i * i + 3 * i) % len(_SAMPLES)] for k in range(_SAMPLE_POINTS)])
        for i, name in enumerate(names)
    }
    try:
        before, after = (
            # (Finiteness at the samples only: no Taylor polynomials, whose coefficients cost more.)
            evaluate(compile_function(form, names, taylor=False), columns, _SAMPLE_POINTS).values
            for form in (original, simplified)
        )
    except ChainruleError:
        return False  # FULL's form has no numeric evaluation at all
    return not bool(np.any(np.isfinite(before) & ~np.isfinite(after)))


# Constants with no real value: what is built on them has none either, nor a derivative (sympy's
# d/dx of x^2 + 1/0, which it writes as zoo, is 0: a derivative of "0" for a function that is
# nowhere defined; an independent hunt, 2026-12-06).
UNDEFINED = (sympy.S.NaN, sympy.S.ComplexInfinity, sympy.S.Infinity, sympy.S.NegativeInfinity)


def derivative(expr: sympy.Expr, variable: sympy.Symbol) -> sympy.Expr:
    """d expr / d variable by the chain rule, memoised over distinct subexpressions.

    Real-valued semantics: |u|' = sign(u)·u' and sign(u)' = 2·δ(u)·u' for any u; floor and ceiling
    have derivative 0 (everywhere but their jumps). Node types with rules of their own
    (Piecewise, Min/Max, Derivative...) fall back to sympy's `diff` for that node.
    """
    return _Differentiator(variable).d(expr)


class DependsOn:
    """`has(node)`: whether `node` contains `variable`, memoised per distinct subexpression.

    sympy's own `has` walks the whole subtree on every call; the differentiator and the explainer
    ask about every node of a tree whose subexpressions repeat.
    """

    def __init__(self, variable: sympy.Symbol) -> None:
        self.variable = variable
        self.depends: dict[sympy.Basic, bool] = {}

    def has(self, node: sympy.Basic) -> bool:
        found = self.depends.get(node)
        if found is None:
            found = node == self.variable if not node.args else any(self.has(arg) for arg in node.args)
            self.depends[node] = found
        return found


class _Differentiator(DependsOn):
    def __init__(self, variable: sympy.Symbol) -> None:
        super().__init__(variable)
        self.memo: dict[sympy.Basic, sympy.Expr] = {}

    def d(self, node: sympy.Expr) -> sympy.Expr:
        found = self.memo.get(node)
        if found is None:
            # A constant's is 0; an undefined value (Min(sqrt(-2), x) is NaN, 1/0) has none either.
            constant = sympy.S.NaN if node in UNDEFINED else sympy.S.Zero
            found = self._rule(node) if self.has(node) else constant
            self.memo[node] = found
        return found

    def _rule(self, node: sympy.Expr) -> sympy.Expr:
        if node == self.variable:
            return sympy.S.One
        if isinstance(node, sympy.Add):
            return sympy.Add(*[self.d(arg) for arg in node.args])
        if isinstance(node, sympy.Mul):
            return self._product(node.args)
        if isinstance(node, sympy.Pow):
            return self._power(node)
        if isinstance(node, sympy.Abs):
            return sympy.sign(node.args[0]) * self.d(node.args[0])
        if isinstance(node, sympy.log) and isinstance(node.args[0], sympy.Abs):
            inner = node.args[0].args[0]
            if inner.is_real is not False:
                # log|u|' = sign(u)·u'/|u| = u'/u: sign(u)/|u| was inf/inf where u is past the
                # doubles (log(abs(gamma(x)))' at 2000.5 NaN, truth digamma(2000.5)), and u'/u
                # cancels what sympy can (gamma(x)·digamma(x)/gamma(x) is digamma(x)).
                return self.d(inner) / inner
        if isinstance(node, sympy.sign):
            # Built as the parser builds it: of an argument with no real value, NaN (not sympy's ValueError).
            return 2 * FUNCTIONS["DiracDelta"].build(node.args[0]) * self.d(node.args[0])
        if isinstance(node, (sympy.floor, sympy.ceiling)):
            # Zero wherever it exists (everywhere but the jumps), as numeric frameworks define it;
            # sympy would leave an unevaluated Derivative that can be neither printed back nor evaluated.
            return sympy.S.Zero
        if isinstance(node, (sympy.Subs, sympy.Derivative)):
            return self._unevaluated(node)
        if isinstance(node, (sympy.re, sympy.im)):
            # As sympy defines them for a real variable, but through our rules: sympy's diff of
            # re(Subs(d polygamma(xi, y)/d xi, xi, y)) substituted into its own dummy (xi + 1).
            return type(node)(self.d(node.args[0]))
        if _has_own_chain_rule(node):
            try:
                return sympy.Add(
                    *[node.fdiff(i + 1) * self.d(arg) for i, arg in enumerate(node.args) if self.has(arg)]
                )
            except ArgumentIndexError:
                pass
        return sympy.diff(node, self.variable)

    def _unevaluated(self, node: sympy.Subs | sympy.Derivative) -> sympy.Expr:
        """The derivative of a partial sympy left unevaluated (d/dx of polygamma(x, a) by its order),
        by the chain rule over the function's arguments. sympy's own diff of such a Subs substituted
        into its own dummy (Subs(..., xi, xi + 1)): a variable nobody can give a value."""
        try:
            _, orders, args = reference.derivative_call(node)
        except reference.Unsupported:
            return sympy.diff(node, self.variable)
        derivative = node.args[0] if isinstance(node, sympy.Subs) else node
        function = type(derivative.expr)
        terms = []
        for index, arg in enumerate(args):
            if self.has(arg):
                raised = [order + (position == index) for position, order in enumerate(orders)]
                terms.append(_partial_at(function, raised, args) * self.d(arg))
        return sympy.Add(*terms)

    def _product(self, factors: tuple[sympy.Expr, ...]) -> sympy.Expr:
        gammas = {
            i: found
            for i, factor in enumerate(factors)
            if self.has(factor) and (found := _gamma_power(factor))
        }
        if len(gammas) >= 2:
            return self._product_of_gammas(factors, gammas)
        terms = [
            sympy.Mul(*factors[:i], self.d(factor), *factors[i + 1 :])
            for i, factor in enumerate(factors)
            if self.has(factor)
        ]
        return sympy.Add(*terms)

    def _product_of_gammas(
        self, factors: tuple[sympy.Expr, ...], gammas: dict[int, tuple[sympy.Expr, sympy.Expr]]
    ) -> sympy.Expr:
        """d(R G) for G a product of powers of gamma: R' G + R G (sum of k psi(u) u'), its logarithmic
        derivative kept whole. Term by term (k gamma(u)^k psi(u) u' times the others), the digammas of
        gamma(x)gamma(y)/gamma(x + y) cancel where y is small against x, and no rule can see that they
        do: its x-partial at (20, 1e-10) was 2.5e-5 off, its mixed partial -12917 for 0.183 (an
        independent hunt, 2026-12-06); beta's derivative, beta (psi(x) - psi(x + y)), was right."""
        power = sympy.Mul(*(factors[i] for i in gammas))
        rest = sympy.Mul(*(factor for i, factor in enumerate(factors) if i not in gammas))
        logarithmic = sympy.Add(*(k * sympy.polygamma(0, u) * self.d(u) for u, k in gammas.values()))
        return self.d(rest) * power + rest * power * logarithmic

    def _power(self, node: sympy.Pow) -> sympy.Expr:
        base, exponent = node.args
        if not self.has(exponent):
            return exponent * base ** (exponent - 1) * self.d(base)
        if base.is_zero:
            # 0^u is 0 wherever it is finite (u > 0), so is its derivative; log(0) would make it 0*(1/0).
            return sympy.S.Zero
        inner = self.d(exponent) * _log_of_base(base, exponent)
        if self.has(base):
            inner += exponent * self.d(base) / base
        return node * inner


def _gamma_power(factor: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(u, k) for a factor gamma(u)^k with a constant k, else None."""
    base, exponent = factor.as_base_exp()
    if isinstance(base, sympy.gamma) and exponent.is_number:
        return base.args[0], exponent
    return None


# Functions that are constant between their jumps: an exponent built from them has derivative 0 there.
_STEPS = (sympy.Min, sympy.Max, sympy.Heaviside, sympy.floor, sympy.ceiling, sympy.sign, sympy.Piecewise)


def _log_of_base(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """The log(b) of d(b^u) = b^u (u' log b + u b'/b), as |b| where b may be negative and u' may be 0.

    Where u is locally constant (Max(4, x) below 4) the term is u' log b = 0 * log b, and for b < 0,
    where b^u is real only for integer u, log b is NaN: 0 * NaN is NaN, the true term 0. log|b| makes
    it 0; wherever u' is not 0 and b < 0, b^u itself is NaN (u not an integer), and so is the sum.
    """
    if base.is_positive or not exponent.has(*_STEPS):
        return sympy.log(base)
    return sympy.log(sympy.Abs(base))


def _partial_at(function: type, orders: Sequence[int], args: Sequence[sympy.Expr]) -> sympy.Expr:
    """d^orders function at args: sympy's closed form where it has one, else an unevaluated partial
    by the function's own arguments (one dummy each), the shape numeric code evaluates."""
    dummies = [sympy.Dummy(f"xi_{index + 1}", real=True) for index in range(len(args))]
    pairs = [(dummy, order) for dummy, order in zip(dummies, orders, strict=True) if order]
    evaluated = sympy.diff(function(*dummies), *pairs)
    if not evaluated.has(sympy.Derivative, sympy.Subs):
        return evaluated.xreplace(dict(zip(dummies, args, strict=True)))
    unevaluated = sympy.Derivative(function(*dummies), *pairs, evaluate=False)
    return PartialAt(unevaluated, dummies, args)


class PartialAt(sympy.Subs):  # type: ignore[misc]
    """A partial derivative at a point whose identity is the derivative and the point as written.

    sympy's Subs names each variable after its point to compare two of them, so with a repeated
    point (zeta(x, x)) d^2/ds^2 and d^2/(ds da) were one object to it: an Add merged them into
    2 d^2/ds^2. Here variables are told apart by their position only.
    """

    def _hashable_content(self) -> tuple[Any, ...]:
        return (self.expr.xreplace(self.canonical_variables), self.point)


def _has_own_chain_rule(node: sympy.Basic) -> bool:
    """A function whose derivative is its own `fdiff` times the inner derivative (sin, erf, atan2...)."""
    cls = type(node)
    return (
        isinstance(node, sympy.Function)
        and not isinstance(node, AppliedUndef)
        and cls.fdiff is not sympy.Function.fdiff
        and cls._eval_derivative is sympy.Function._eval_derivative
    )


def expression_size(expr: sympy.Basic) -> int:
    """Nodes of the expression as a tree (what printing costs), computed in time linear in its DAG."""
    sizes: dict[sympy.Basic, int] = {}
    stack: list[tuple[sympy.Basic, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if node in sizes:
            continue
        if expanded or not node.args:
            sizes[node] = 1 + sum(sizes[arg] for arg in node.args)
        else:
            stack.append((node, True))
            stack.extend((arg, False) for arg in node.args if arg not in sizes)
    return sizes[expr]


def check_size(expr: sympy.Expr, limits: EngineLimits) -> None:
    """LimitExceeded (naming `wrt`) when a derivative is larger than `max_derivative_nodes`."""
    _check_size(expr, limits)


def _check_size(expr: sympy.Expr, limits: EngineLimits) -> None:
    size = expression_size(expr)
    if size > limits.max_derivative_nodes:
        raise exceeded(
            limits, "max_derivative_nodes", size, field="wrt", what="the derivative grows too large"
        )


class _LatexPrinter(parsing.TimedPrinter, LatexPrinter):  # type: ignore[misc]
    """sympy's LaTeX printer, writing integers of any size (`bignum`)."""

    def _print_int(self, expr: int) -> str:
        return bignum.decimal(expr)

    def _print_Rational(self, expr: sympy.Rational) -> str:  # noqa: N802
        if expr.q == 1:
            return self._print_int(int(expr.p))
        sign = "- " if expr.p < 0 else ""
        return rf"{sign}\frac{{{bignum.decimal(abs(int(expr.p)))}}}{{{bignum.decimal(int(expr.q))}}}"

    def _print_Pow(self, expr: sympy.Pow) -> str:  # noqa: N802
        # x^(1/q) is printed as a root with `%d` % q, which a huge q would not survive.
        if expr.exp.is_Rational and not bignum.fits_double_exactly(int(expr.exp.q)):
            saved = self._settings["root_notation"]
            self._settings["root_notation"] = False
            try:
                return str(super()._print_Pow(expr))
            finally:
                self._settings["root_notation"] = saved
        return str(super()._print_Pow(expr))


def to_latex(expr: sympy.Basic, *, seconds: float | None = None) -> str:
    """LaTeX through sympy's printer; parsing.TooSlow once it has taken more than `seconds`."""
    return str(_LatexPrinter.until(seconds).doprint(expr))


class _KeyPrinter(ReprPrinter):  # type: ignore[misc]
    """`sympy.srepr`, writing integers of any size (`bignum`)."""

    def _print_int(self, expr: int) -> str:
        return bignum.decimal(expr)

    def _print_Integer(self, expr: sympy.Integer) -> str:  # noqa: N802
        return f"Integer({bignum.decimal(int(expr.p))})"

    def _print_Rational(self, expr: sympy.Rational) -> str:  # noqa: N802
        return f"Rational({bignum.decimal(int(expr.p))}, {bignum.decimal(int(expr.q))})"


def canonical_key(expr: sympy.Basic) -> str:
    """A text equal for equal expressions (assumptions included): sympy's `srepr` for numbers of any size."""
    return str(_KeyPrinter().doprint(expr))


def gradient_components(
    expr: sympy.Expr,
    variables: Sequence[str],
    hessian: bool,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> tuple[sympy.Expr, ...]:
    """(f, df/dv1..df/dvn[, d2f/dvi dvj for i <= j, row-major]): raw derivatives, ready for CSE."""
    symbols = {symbol.name: symbol for symbol in expr.free_symbols}
    chosen = [symbols.get(name) or sympy.Symbol(name, real=True) for name in variables]
    partials = []
    for variable in chosen:
        partials.append(derivative(expr, variable))
        _check_size(partials[-1], limits)
    seconds = []
    if hessian:
        for i, first in enumerate(partials):
            for variable in chosen[i:]:
                seconds.append(derivative(first, variable))
                _check_size(seconds[-1], limits)
    # The second partials as Evaluate's are (FAST): as differentiated, a function of a non-linear
    # argument passed `numeric_code`'s 60 nodes for combining its cancelling terms (the Hessian of
    # exp(x^2)/(1 + exp(x^2)) at 6.5 was -5.7e-14, truth -7.5e-17; of exp(x*y)/(1 + exp(x*y)) the
    # wrong sign), and a shared denominator combined into one that cancels (log(x + sqrt(x^2 + 1))
    # at -1e10: inf, truth 1e-20; a hunt, 2026-12-05). The first partials stay as differentiated:
    # combined already, they share more subexpressions with one another (the gradient's CSE).
    return (expr, *partials, *(simplify(second, Simplification.FAST) for second in seconds))


def compile_gradient(
    expr: sympy.Expr,
    variables: Sequence[str],
    hessian: bool,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> CompiledGradient:
    """Differentiate and compile value, gradient and (optionally) Hessian into one CSE'd function."""
    components = gradient_components(expr, variables, hessian, limits)
    return compile_components(components, variables, hessian, limits)


def jacobian_variables(expressions: Sequence[sympy.Expr]) -> tuple[str, ...]:
    """The default columns of a Jacobian: every free variable of every row, sorted."""
    return tuple(sorted({symbol.name for expr in expressions for symbol in expr.free_symbols}))


def check_jacobian_rows(count: int, limits: EngineLimits = DEFAULT_LIMITS) -> None:
    """A Jacobian has at least one row and at most `max_jacobian_rows` (field `expressions`)."""
    if not count:
        raise InvalidArgument("a Jacobian needs at least one expression", field="expressions")
    if count > limits.max_jacobian_rows:
        raise exceeded(limits, "max_jacobian_rows", count, field="expressions", what="too many expressions")


def jacobian_components(
    expressions: Sequence[sympy.Expr],
    variables: Sequence[str],
    limits: EngineLimits = DEFAULT_LIMITS,
) -> tuple[sympy.Expr, ...]:
    """(f_1..f_m, then df_i/dv_j row-major): raw derivatives, ready for one CSE over the system."""
    check_jacobian_rows(len(expressions), limits)
    symbols = {symbol.name: symbol for expr in expressions for symbol in expr.free_symbols}
    chosen = [symbols.get(name) or sympy.Symbol(name, real=True) for name in variables]
    partials = []
    for expr in expressions:
        for variable in chosen:
            partials.append(derivative(expr, variable))
            _check_size(partials[-1], limits)
    return (*expressions, *partials)


def compile_jacobian(
    expressions: Sequence[sympy.Expr],
    variables: Sequence[str],
    limits: EngineLimits = DEFAULT_LIMITS,
) -> CompiledJacobian:
    """Differentiate every row by every column and compile values and Jacobian into one CSE'd function."""
    components = jacobian_components(expressions, variables, limits)
    return compile_jacobian_components(components, variables, len(expressions), limits)
