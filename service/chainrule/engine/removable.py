"""Taylor polynomials where a formula of one variable cancels: next to 0, and next to the roots of
what it divides by.

The derivatives of sin(x)/x are sums of terms that grow like 1/x^k next to 0 and cancel to a value
of order 1: float64 kept no digit of the second derivative at 1e-8 (-2.98 where it is -1/3) and the
third was -8e8 where it is 2e-9. The same happens next to a zero of a sum whose terms vanish to a
lower order than the sum (x - sin(x) lost six digits at 1e-5), and next to 1 in log(x)/(x - 1). No
rewrite of the formula reaches all of them: a function with a removable singularity or a high-order
zero at a point is its Taylor polynomial there, so that is what is computed there.

`patches` looks at 0 and at the real roots of the linear formulas the formula divides by (or divides
by the sine, tangent or logarithm of). It finds a point where float64 fails by evaluating the formula
as float64 would (every operation rounded to a double) at a few points next to it and comparing with
its value at 256 bits, and where they disagree, the code that will run (whose rewrites may keep the
digits: log(1 + x^2) is log1p(x^2)). Where that disagrees too, the Taylor coefficients come from the
Cauchy integral on a circle of radius 1/8 around the point in the complex plane (the formula
evaluated there at 320 bits, where nothing cancels; no symbolic series, whose time has no bound),
and the polynomial is used for 0 < |x - a| < r, with r where its truncation is below a double's
rounding. The polynomial is
accepted only where it matches the 256-bit values at points from r down to r/4096, on both sides; a
formula that is not analytic at the point (log(x) at 0, |x|, a pole) fails that and is left as it is.
At the point itself the formula stays as written: sin(x)/x is 0/0 at 0, NaN by the real-valued rule,
as the reference says.

All of this runs where numeric code is generated: in a symbolic worker, under its budget; each
evaluation is one of `reference`'s, bounded. A formula that does not vanish or fail at a candidate
point costs one evaluation there.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy

from chainrule.engine import reference

__all__ = ["KERNEL", "MAX_NODES", "Patch", "elementary", "horner", "patches"]

# The kernel the generated code calls (`kernels.taylor_near`).
KERNEL = "taylor_near"
# Where float64 is checked against the truth: dyadic offsets from the point (times its magnitude
# past 1), both sides.
_PROBES = tuple(sign * 2.0**-bits for bits in (7, 17, 27, 37) for sign in (1, -1))
# Relative error of the float64 formula past which the polynomial is worth computing (~5,000 ulps).
_LOSS = 2.0**-40
_TRUTH_PREC = 256
_PRECISIONS = (_TRUTH_PREC, 4 * _TRUTH_PREC, 16 * _TRUTH_PREC)  # `_truth`'s
_SLOW_PRECISIONS = _PRECISIONS[:2]
_CIRCLE_PREC = 320
# The circles' radii, in parts of the point's scale (`Patch`): 1/8, exact for functions analytic within
# 1/4 or so, then 1/64 and 1/512 for a singularity closer to the point (log(10x)/(10x - 1) next to
# 1/10); the coefficients of two circles must agree, on the first `_COMPARED`.
_RADII = (8, 64, 512)
_COMPARED = 12
_SAMPLES = 64  # points on the circle: aliasing of c_k by c_(k+64) (1/8)^64
_TERMS = 40  # coefficients c_0 .. c_39
_MAX_REACH = 2.0  # the polynomial is never used past this (in the point's scale, `Patch`)
_TRUNCATION = 2.0**-56  # the omitted terms' share of the value at the reach, at most
_MATCH = 2.0**-49  # the polynomial's relative error at the checked points, at most (16 ulps or so)
MAX_NODES = 200  # larger formulas are left alone: 50 evaluations of one at 320 bits take 0.2 s
_MAX_POINTS = 4  # points a formula is patched at, at most
# The functions a patched formula may call: mpmath evaluates each of them quickly anywhere in the
# complex plane at 320 bits (zeta and the like may take seconds there; Derivative and Subs, opaque
# partials, are not functions of the grammar). gamma and polygamma (digamma) cancel next to their
# poles as 1/x does, and loggamma next to its zeros (loggamma(x)/(x - 2)' 1e-7 off next to 2):
# the derivative of x digamma(x) was 1e-4 off at 1e-12, digamma(x) + 1/x's -1.3e8 (truth 1.64;
# a hunt, 2026-12-05); polygamma costs 2 to 5 ms an evaluation there, so such a patch takes 0.2
# to 0.5 s to build (`patches` builds one at most).
# Not abs and sign: analytic on the real line away from their kink, they are not on a Cauchy circle
# (|z - 2| there), so a group holding abs(x - 2) got no polynomial, and its cancelling factor none
# either: (abs(x - 2)*(x - sin(x))/x^3)' was 1e8 at 1e-8, truth -1/6 (a second hunt, 2026-12-05).
_ELEMENTARY = frozenset(
    f"{inverse}{name}{hyperbolic}"
    for name in ("sin", "cos", "tan", "cot", "sec", "csc")
    for inverse in ("", "a")
    for hyperbolic in ("", "h")
) | {"exp", "log", "erf", "erfc", "gamma", "polygamma", "loggamma"}


@dataclass(frozen=True)
class Patch:
    """Where a formula's Taylor polynomial replaces it: for 0 < |t| < reach, t = (x - at)/scale, the
    polynomial in t with `coefficients` of rising degree. `scale` is the power of two at or above
    |at| (1 from 0 to 1): t is exact, and neither t^k nor the coefficients leave the doubles where
    the point is far from 0."""

    symbol: sympy.Symbol
    at: float
    scale: float
    reach: float
    coefficients: tuple[float, ...]
    # Whether `at` is the point itself, where the formula stays as written (0/0: NaN); else the
    # point is not a double, the formula's value at `at` is finite, and the polynomial gives it.
    exact: bool = True
    # 1 or -1 where the formula has real values on that side of the point only (cos(sqrt(x)) at 0):
    # the polynomial is used there, and the other side keeps the formula's NaN.
    side: int = 0
    # The polynomial is in 1/x, at x = +-inf (`at` 0, `scale` 1; `_at_infinity`).
    reciprocal: bool = False


# The formula's values as the generated code computes them, at an array of points (`patches`).
Float64 = Callable[[Any], Any]


def patches(part: sympy.Expr, float64: Float64 | None = None) -> list[Patch]:
    """The patches of a formula of one variable: at 0 and at the roots of what it divides by, where
    float64 evaluates it badly and it is analytic. `float64(points)`, if given, is the formula as
    the generated code computes it (after `numeric_code.prepare`'s rewrites): where that keeps its
    digits next to a point (log(1 + x^2) is log1p(x^2)), the point needs no polynomial."""
    symbols = part.free_symbols
    if len(symbols) != 1 or not elementary(part):
        return []
    (symbol,) = symbols
    try:
        if sympy.count_ops(part) > MAX_NODES:
            return []
        roots = _candidates(part, symbol)
        taken = {at for _, at in roots}
        levels = [(level, at) for level, at in _levels(part, symbol) if at not in taken]
    except Exception:  # sympy's own failures (its cache, assumptions on huge constants)
        return []  # leave a formula sympy cannot look at as it is: the patch is a refinement
    found = []
    # polygamma is slow on the circles (above): one polynomial of a formula that calls it, at the
    # point nearest 0 where it cancels, and a few of them a plan (`tries`), bound what a
    # Hessian of several such variables costs
    # (1/gamma(x) + 1/gamma(y) + 1/gamma(z) took 6 s with four points each, past the budget).
    slow = part.has(sympy.polygamma)
    attempts = 1 if slow else len(roots) + len(levels)
    for root, at in roots + levels:
        if not attempts:
            break
        # The formula's other roots of what it divides by are poles, or points of their own: the
        # polynomial stops at half the way to them (not at the levels, where it is analytic).
        scale = _scale(at)
        others = [abs(other - at) / scale for _, other in roots if other != at]
        try:
            if not _cancels(part, symbol, root, at, float64):
                continue
            attempts -= 1
            _spend_try(slow)
            coefficients = _taylor_coefficients(part, symbol.name, (at, scale))
            limit = min(others, default=math.inf) / 2
            patch = (
                None if coefficients is None else _accepted(part, symbol, (at, scale), coefficients, limit)
            )
        except (reference.Unsupported, ArithmeticError, ValueError, TypeError):
            continue
        if patch is not None:
            found.append(dataclasses.replace(patch, exact=_exact(root, at)))
    others = [abs(1 / at) for _, at in roots if at]
    return found + _at_infinity(part, symbol, min(others, default=math.inf) / 2, float64)


# The variable of a formula at infinity, t = 1/x: a name no caller's variable has (they start with a letter).
_RECIPROCAL = sympy.Symbol("_reciprocal", real=True)


def _at_infinity(
    part: sympy.Expr, symbol: sympy.Symbol, limit: float, float64: Float64 | None
) -> list[Patch]:
    """The patch of a formula of 1/x that cancels as x grows: 1/x - sin(1/x) there is u - sin(u) next
    to u = 0, and x^3 (1/x - sin(1/x)) was 0.0 at 1e9 (truth 1/6), the derivative of x sin(1/x),
    sin(1/x) - cos(1/x)/x, 3.7e-6 off at 1e5 (an independent hunt, 2026-12-06). Its polynomial in
    t = 1/x at t = 0, found as at a finite point, reaching `limit` (half the way to 1/x of the
    formula's finite points) at most. Looked at only where a function or a root is taken of a power
    of 1/x (each look is some 16 evaluations of the formula)."""
    roots = [power for power in part.atoms(sympy.Pow) if not power.exp.is_integer]  # sqrt(1 + 1/x)
    if not any(_of_reciprocal(call, symbol) for call in [*part.atoms(sympy.Function), *roots]):
        return []
    inverted = part.xreplace({symbol: 1 / _RECIPROCAL})
    reciprocal = None if float64 is None else _reciprocal_of(float64)
    try:
        if not _cancels(inverted, _RECIPROCAL, sympy.S.Zero, 0.0, reciprocal):
            return []
        _spend_try()
        coefficients = _taylor_coefficients(inverted, _RECIPROCAL.name, (0.0, 1.0))
        patch = (
            None
            if coefficients is None
            else _accepted(inverted, _RECIPROCAL, (0.0, 1.0), coefficients, limit)
        )
    except (reference.Unsupported, ArithmeticError, ValueError, TypeError):
        return []
    return [] if patch is None else [dataclasses.replace(patch, symbol=symbol, reciprocal=True)]


# Functions of 1/u however written: acot(u) is atan(1/u), acoth(u) atanh(1/u), acsc(u) asin(1/u),
# asec(u) acos(1/u) (x^3 (acot(x) - 1/x) at 1e6 was 7.8e-5 off, as atan(1/x) it was right; a hunt,
# 2026-12-07).
_OF_RECIPROCALS = (sympy.acot, sympy.acoth, sympy.acsc, sympy.asec)


def _of_reciprocal(call: sympy.Basic, symbol: sympy.Symbol) -> bool:
    """Whether `call` takes a negative power of a polynomial in x: 1/x, 1/(x - 2)^2 (the shifted
    ones were not looked at: (x - 1) sin(1/(x - 1))' was 0.0 at 1e8; a second hunt), or is a
    function of the reciprocal of one (`_OF_RECIPROCALS`)."""
    if isinstance(call, _OF_RECIPROCALS) and call.args[0].has(symbol) and call.args[0].is_polynomial(symbol):
        return True
    return any(
        node.is_Pow and node.exp.is_negative and node.base.has(symbol) and node.base.is_polynomial(symbol)
        for arg in call.args
        for node in sympy.preorder_traversal(arg)
    )


def _reciprocal_of(float64: Float64) -> Float64:
    def at_reciprocals(points: Any) -> Any:
        with np.errstate(divide="ignore"):
            return float64(1.0 / np.asarray(points))

    return at_reciprocals


class OutOfTries(Exception):
    """The plan's tries of polynomials are spent (`tries`)."""


# What is left of a plan's tries: [of formulas calling polygamma, of all formulas, of evaluations of
# formulas calling polygamma at `_SLOW_PRECISIONS[-1]`]; None outside one.
_TRIES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("tries", default=None)


@contextlib.contextmanager
def tries(slow: int, every: int, costly: int) -> Iterator[None]:
    """Within: at most `slow` polynomials tried for formulas calling polygamma (0.2 to 0.5 s each;
    the second hunt's three-variable Hessians took 3 s with one a formula), `every` in all (0.1
    to 0.15 s each: a two-variable Hessian of a function of x*y built nine, 1.4 s of its 2.8), and
    `costly` evaluations of a formula calling polygamma at 1,024 bits (2 to 30 ms each, a patch of
    one some 45 of them: looking for where such a formula cancels is not a try, and the
    Hessian of acsc(beta(x + E, 1)) made 64, with 32 more at 4,096 bits, 20 s;
    `tests/fuzz/slow_plans.py`), then `OutOfTries`: a formula past them is computed as written."""
    token = _TRIES.set([slow, every, costly])
    try:
        yield
    finally:
        _TRIES.reset(token)


def _spend_try(slow: bool = False, costly: bool = False) -> None:
    left = _TRIES.get()
    if left is None:
        return
    kinds = (2,) if costly else (0, 1) if slow else (1,)
    if any(left[kind] <= 0 for kind in kinds):
        raise OutOfTries
    for kind in kinds:
        left[kind] -= 1


def elementary(part: sympy.Expr) -> bool:
    """Whether the formula calls only functions a patch may be built for (`_ELEMENTARY`), gamma and
    its kin of polynomials only (polygamma of a whole order): of anything that can grow without
    bound next to a point, mpmath's gamma is astronomically large and slow (the Hessian of
    gamma(gamma(gamma(x))) took minutes where it took 20 ms; make fuzz, 2026-12-05)."""
    functions = part.atoms(sympy.Function)
    called = {type(node).__name__ for node in functions}
    # Min and Max are no sympy.Function: without a look for them, Max(log10(x) - 3, 0) was patched
    # whole, no polynomial fits its kink, and its argument was left unpatched (a hunt, 2026-12-07).
    if not called <= _ELEMENTARY or part.has(sympy.Derivative, sympy.Subs, sympy.Min, sympy.Max):
        return False
    # polygamma of an order other than a whole number is Hurwitz's zeta in mpmath: 0.3 to 0.46 s a
    # point at 1,024 bits (polygamma(x, 1.5e-8) in an exponent took 5 s; `tests/fuzz/slow_plans.py`).
    return all(
        node.args[-1].is_polynomial()
        and not node.args[-1].atoms(sympy.Function)
        and (not isinstance(node, sympy.polygamma) or node.args[0].is_Integer)
        for node in functions
        if isinstance(node, _GAMMA_FAMILY)
    )


_GAMMA_FAMILY = (sympy.gamma, sympy.polygamma, sympy.loggamma)


def _candidates(part: sympy.Expr, symbol: sympy.Symbol) -> list[tuple[sympy.Expr, float]]:
    """0, and the real roots of the linear formulas it divides by, or divides by the logarithm,
    sine or tangent of where they vanish (at 1, and at 0 and +-pi), or whose gamma or polygamma
    has a pole (at 0, -1, ...), with the doubles nearest them: sin(x - 1)/(x - 1), (x - 2)/log(x - 1),
    sin(x)/(x - pi), (x - pi)/sin(x), (x + 1) gamma(x). The nearest few."""
    zeros: dict[Any, tuple[sympy.Expr, ...]] = {
        sympy.log: (sympy.S.One,),
        sympy.sin: (sympy.S.Zero, sympy.pi, -sympy.pi),
        sympy.tan: (sympy.S.Zero, sympy.pi, -sympy.pi),
        sympy.sinh: (sympy.S.Zero,),
        sympy.tanh: (sympy.S.Zero,),
    }
    roots: set[sympy.Expr] = {sympy.S.Zero}
    for node in sympy.preorder_traversal(part):
        if len(roots) > 4 * _MAX_POINTS:
            break
        if isinstance(node, (sympy.gamma, sympy.polygamma)):
            # Poles where a factor or term may cancel them: (x + 1) gamma(x) next to -1.
            for n in range(_MAX_POINTS):
                root = _linear_root(node.args[-1] + n, symbol)
                if root is not None:
                    roots.add(root)
            continue
        if not (node.is_Pow and node.exp.is_negative):
            continue
        base = node.base
        for linear in [base.args[0] - z for z in zeros[base.func]] if base.func in zeros else [base]:
            root = _linear_root(linear, symbol)
            if root is not None:
                roots.add(root)
    return _nearest(roots)


# Arguments where a function is 0 or at an extremum, so that a sum holding it may vanish there to a
# second order or more, and float64 lose every digit next to it: x - log(x) - 1 at 1 (2e-2 off at
# 1 + 1e-7), exp(x - 1) - x at 1, cos(x) + x - pi/2 at pi/2 (the wrong sign at pi/2 + 1e-7; an
# independent hunt, 2026-12-07).
_HALF_PI = sympy.pi / 2
_LEVELS: dict[Any, tuple[sympy.Expr, ...]] = {
    sympy.log: (sympy.S.One,),
    sympy.exp: (sympy.S.Zero,),
    sympy.sin: (sympy.S.Zero, _HALF_PI, -_HALF_PI),
    sympy.cos: (sympy.S.Zero, _HALF_PI, -_HALF_PI),
    sympy.cosh: (sympy.S.Zero,),
    # the odd functions, and erfc (1 there)
    **dict.fromkeys(
        (
            sympy.tan,
            sympy.sinh,
            sympy.tanh,
            sympy.asin,
            sympy.atan,
            sympy.asinh,
            sympy.atanh,
            sympy.erf,
            sympy.erfc,
        ),
        (sympy.S.Zero,),
    ),
}


# A function's inverse, for a sum of a constant and one term k f(u) that vanishes where f(u) is
# -c/k: `log(x) - 1` next to e lost 4.5e-8 of its value at e(1 + 1e-10), `cos(x) - 1/2` and
# `acos(x) - pi/3` 1e-6, `tanh(x) - 1/2` 5e-7 (an independent hunt, 2026-12-07). Where f(u) never
# reaches the level (`asin(x) - 2`), the formula is finite and not 0 at the point found, which costs
# one evaluation (`_cancels`).
_INVERSES: dict[Any, Any] = {
    sympy.sin: sympy.asin,
    sympy.cos: sympy.acos,
    sympy.tan: sympy.atan,
    sympy.exp: sympy.log,
    sympy.log: sympy.exp,
    sympy.sinh: sympy.asinh,
    sympy.cosh: sympy.acosh,
    sympy.tanh: sympy.atanh,
    sympy.asin: sympy.sin,
    sympy.acos: sympy.cos,
    sympy.atan: sympy.tan,
    sympy.asinh: sympy.sinh,
    sympy.acosh: sympy.cosh,
    sympy.atanh: sympy.tanh,
}


def _levels(part: sympy.Expr, symbol: sympy.Symbol) -> list[tuple[sympy.Expr, float]]:
    """1, and the points where a function's argument reaches one of its `_LEVELS`, or a power's base
    1 (not a whole power), or where a sum of a constant and one term vanishes, with the doubles
    nearest them: where the formula is finite, and may vanish to a higher order than its terms, or
    to a value far below them. Arguments are solved through the functions `_INVERSES` inverts
    (`log(log(x))` at e). The nearest few. Each costs one evaluation where the formula does not
    vanish (`_cancels`)."""
    points: set[sympy.Expr] = {sympy.S.One}
    for node in sympy.preorder_traversal(part):
        if len(points) > 4 * _MAX_POINTS:
            break
        if node.is_Pow and not (node.exp.is_integer and node.exp.is_nonnegative):
            reached = [(node.base, sympy.S.One)]
        elif isinstance(node, sympy.Function) and node.func in _LEVELS:
            reached = [(node.args[0], level) for level in _LEVELS[node.func]]
        elif node.is_Add:
            constant, varying = node.as_independent(symbol, as_Add=True)
            reached = [(varying, -constant)] if constant != 0 else []
        else:
            continue
        points.update(root for argument, value in reached for root in _solved(argument, value, symbol))
    return _nearest(points)


# Layers of an argument `_solved` looks through (k u + c, u^p, b^u, f(u)), at most.
_SOLVED_LAYERS = 6


def _solved(
    argument: sympy.Expr, value: sympy.Expr, symbol: sympy.Symbol, layers: int = _SOLVED_LAYERS
) -> list[sympy.Expr]:
    """The real x where `argument` is `value`, found through the layers of it that invert: k u + c,
    u^p, b^u and the functions of `_INVERSES`, down to a linear u. An even power has two roots:
    asinh(x)^2 - 1 cancels next to -sinh(1) as next to sinh(1) (the value there was 100% off, the
    negative root never tried; a hunt, 2026-12-08)."""
    if not layers or not value.is_real:
        return []
    root = _linear_root(argument - value, symbol)
    if root is not None:
        return [root]
    constant, argument = argument.as_independent(symbol, as_Add=True)
    coefficient, argument = argument.as_independent(symbol, as_Add=False)
    if coefficient == 0:
        return []
    value = (value - constant) / coefficient
    if argument.is_Pow and argument.exp.is_number and argument.exp != 0:
        if _past_doubles(sympy.log(abs(value)) / argument.exp):
            return []
        root = value ** (1 / argument.exp)
        even = argument.exp.is_Rational and argument.exp.p % 2 == 0
        values = [root, -root] if even else [root]
        return [found for v in values for found in _solved(argument.base, v, symbol, layers - 1)]
    if argument.is_Pow and argument.base.is_number and argument.base.is_positive:
        return _solved(argument.exp, sympy.log(value) / sympy.log(argument.base), symbol, layers - 1)
    if isinstance(argument, sympy.Function) and type(argument) in _INVERSES:
        if type(argument) in _GROWING_INVERSES and _past_doubles(value):
            return []
        return _solved(argument.args[0], _INVERSES[type(argument)](value), symbol, layers - 1)
    return []


# Inverses whose value is of the size of e^|value|: sympy writes exp(-123456788 log 2) as the exact
# rational 2^-123456788 as it builds it, and converting that took minutes (`tests/fuzz/slow_plans.py`,
# the level of log2(y) + 123456788). Such a point is past the doubles, which no patch is for.
_GROWING_INVERSES = frozenset({sympy.log, sympy.asinh, sympy.acosh})
# |log| of a magnitude past every double (e^709.8 is the largest, e^-745 the smallest subnormal).
_LOG_PAST_DOUBLES = 750.0


def _past_doubles(logarithm: sympy.Expr) -> bool:
    """Whether e^logarithm, a real constant, is past the doubles' range (or cannot be told cheaply)."""
    try:
        return not abs(float(logarithm.evalf(15))) <= _LOG_PAST_DOUBLES
    except (TypeError, ValueError):
        return True


def _nearest(points: set[sympy.Expr]) -> list[tuple[sympy.Expr, float]]:
    """The `_MAX_POINTS` points nearest 0 with the doubles nearest them (one point a double); a
    point whose value no double holds is left out."""
    by_double: dict[float, sympy.Expr] = {}
    for point in points:
        try:
            at = reference.nearest_double(point)
        except (reference.Unsupported, ArithmeticError, ValueError, TypeError):
            continue
        if math.isfinite(at):
            by_double.setdefault(at, point)
    return [(by_double[at], at) for at in sorted(by_double, key=abs)][:_MAX_POINTS]


def _linear_root(expr: sympy.Expr, symbol: sympy.Symbol) -> sympy.Expr | None:
    slope = expr.diff(symbol)
    if slope.free_symbols or slope == 0:
        return None
    rest = expr - slope * symbol
    if rest.free_symbols:
        return None
    return -rest / slope


def _exact(root: sympy.Expr, at: float) -> bool:
    """Whether the double `at` is the point `root` itself."""
    return bool(root.is_Rational and sympy.Rational(at) == root)


def _cancels(
    part: sympy.Expr, symbol: sympy.Symbol, root: sympy.Expr, at: float, float64: Float64 | None
) -> bool:
    """Whether float64 loses more than `_LOSS` of the value at a point next to `root` (`at`, its
    double). Not where the formula is finite and not 0 at `root`: every term is then finite there,
    and what float64 loses next to it is what it loses there (one evaluation instead of sixteen, for
    most formulas). The formula as written is judged first, every operation rounded (`_simulated`,
    no code to compile); where it loses, the code that would run (`float64`) is judged too."""
    try:
        value = _real(reference.evaluate(part, {symbol.name: at}, prec=_TRUTH_PREC))
        if _exact(root, at) and value:
            return False
        # A root no double holds is judged at its double, which is next to it: finite there
        # (log(10x)/(10x - 1) at the double nearest 1/10) is not enough, float64 must also keep the
        # value there (it makes 10x - 1 zero); one evaluation more instead of sixteen (cos(x) + x at
        # the doubles nearest +-pi/2, a level of any formula calling cos).
        if value and not _loses(_simulated(part, symbol.name, at), value):
            return False
    except ArithmeticError:
        pass  # undefined there as written
    probes = [at + offset * _scale(at) for offset in _PROBES]
    # At rising precisions (`_truth`): the tenth derivative of sin(x)/x is terms of 10!/x^11 that
    # cancel to 0.09, past 256 bits at the nearest probe, whose value then looked like a pole's: no
    # polynomial, and 0.0 at 1e-3 (truth -0.0909), 4e70 at 1e-8 (a hunt, 2026-12-07).
    truths = [_truth(part, symbol.name, point) for point in probes]
    if _pole(truths):
        return False
    checked = [(point, truth) for point, truth in zip(probes, truths, strict=True) if truth]
    if not any(_loses(_simulated(part, symbol.name, point), truth) for point, truth in checked):
        return False
    if float64 is None or not checked:
        return True
    try:
        with np.errstate(all="ignore"):
            values = np.asarray(float64(np.array([point for point, _ in checked])))
    except Exception:  # no code for this formula alone (a refinement): judged as written, above
        return True
    if values.dtype.kind == "c":  # as numeric.py reads generated code's values
        values = np.where(values.imag == 0, values.real, np.nan)
    values = np.broadcast_to(values, len(checked))
    return any(_loses(float(value), truth) for value, (_, truth) in zip(values, checked, strict=True))


def _pole(truths: list[float | None]) -> bool:
    """Whether the true values at `_PROBES` grow toward the point on a side (2^20 times from the
    farthest probe to the nearest): a pole, where no polynomial is right. Told before any polynomial
    is tried: a formula calling polygamma gets one try, and the third derivative of (x + 2) gamma(x)
    spent it at its pole at 0, not at -2, where it cancels (-2.6e11 next to -2, truth 4.3; a second
    hunt, 2026-12-05)."""
    for side in (0, 1):
        far, near = truths[side], truths[len(truths) - 2 + side]
        if far is not None and near is not None and abs(near) > 2.0**20 * max(abs(far), 2.0**-1000):
            return True
    return False


def _simulated(part: sympy.Expr, name: str, x: float) -> float | None:
    """The formula at x as float64 evaluates it as written: every real intermediate rounded."""
    return _real(reference.evaluate(part, {name: x}, prec=53, each=_nearest_double))


def _loses(value: float | None, truth: float) -> bool:
    return value is None or not math.isfinite(value) or abs(value - truth) > _LOSS * abs(truth)


def _coefficients(part: sympy.Expr, name: str, point: tuple[float, float], radius: int) -> list[Any] | None:
    """c_0 .. c_(_TERMS - 1), of the polynomial in t = (x - at)/scale (`point` is (at, scale)), by
    the trapezoidal rule on the circle of radius scale/`radius` around `at` (exact for a
    polynomial of degree below `_SAMPLES`, geometrically close for an analytic function); None where
    the formula is not finite on the circle. A real function's values on the lower half are the
    conjugates of the upper's."""
    at, scale = point
    prec = _circle_precision(part, name, at + scale / radius)
    ctx = reference.context(prec)
    half = _SAMPLES // 2
    values = []
    for j in range(half + 1):
        z = ctx.mpf(at) + ctx.expjpi(ctx.mpf(2 * j) / _SAMPLES) * scale / radius
        value = ctx.mpc(reference.evaluate(part, {name: z}, prec=prec, strict=False))
        if not ctx.isfinite(value):
            return None
        values.append(value)
    largest = max(abs(value) for value in values)
    # The circle's Fourier coefficients a_k = c_k r^k: each is off by a_(k+64), a_(k+128), ...
    # (aliasing), and by rounding at the circle's precision.
    fourier = []
    for k in range(_TERMS):
        total = values[0].real + (-1) ** k * values[half].real
        for j in range(1, half):
            total += 2 * (values[j] * ctx.expjpi(ctx.mpf(-2 * j * k) / _SAMPLES)).real
        fourier.append(total / _SAMPLES)
    # A coefficient that is 0 (odd and even functions, a zero of order m) comes out as that error:
    # from how fast the last eight fall off against the eight before, what a_(k+64) may be (1e-55
    # where log(1 + x^2 e^x) is x^2 + ..., singular at |x| = 0.8 in the complex plane: that noise
    # was its value at 1e-100). Eight, as single coefficients dip (odd and even parts).
    rounding = largest * ctx.ldexp(1, 100 - prec)
    last = max(abs(a) for a in fourier[-8:])
    before = max(abs(a) for a in fourier[-16:-8])
    noise = rounding
    if last > rounding and before > rounding:
        decay = min(ctx.mpf(1), (last / before) ** (ctx.mpf(1) / 8))
        noise += last * ctx.ldexp(decay ** (_SAMPLES - _TERMS + 1), 10)
    return [ctx.mpf(0) if abs(a) <= noise else a * ctx.mpf(radius) ** k for k, a in enumerate(fourier)]


def _circle_precision(part: sympy.Expr, name: str, x: float) -> int:
    """`_CIRCLE_PREC`, or four times it where the formula's value on the circle (at its real point x)
    loses more than 220 of those bits to its own cancellation: the 20th derivative of sin(x)/x is
    terms of 20!/x^21 that cancel to 0.03, 2^250 on the circle of 1/512, where the circles' series
    disagreed and its polynomial reached 0.127 only (-256 at 1, truth 0.0275; a hunt, 2026-12-07)."""
    try:
        low = reference.evaluate(part, {name: x}, prec=_CIRCLE_PREC, strict=False)
        high = reference.evaluate(part, {name: x}, prec=4 * _CIRCLE_PREC, strict=False)
        if abs(low - high) <= abs(high) * mpmath.ldexp(1, 100 - _CIRCLE_PREC):
            return _CIRCLE_PREC
    except (reference.Unsupported, ArithmeticError, ValueError, TypeError):
        return _CIRCLE_PREC
    return 4 * _CIRCLE_PREC


def _taylor_coefficients(part: sympy.Expr, name: str, point: tuple[float, float]) -> list[Any] | None:
    """The coefficients from the largest circle whose agree with the next smaller one's: a pole or a
    branch point inside a circle gives another series there (1e-6 atan(10x) beside (e^x - 1)/x:
    its branch cut crosses the circle of 1/8, and c_0 came out 1 + 4.9e-8); None where no two agree."""
    larger = _coefficients(part, name, point, _RADII[0])
    for radius in _RADII[1:]:
        smaller = _coefficients(part, name, point, radius)
        if larger is not None and smaller is not None and _agree(larger, smaller):
            return larger
        larger = smaller
    return None


def _agree(first: list[Any], second: list[Any]) -> bool:
    """Whether the first `_COMPARED` coefficients of two circles are one series: each within 2^-40
    of the larger of the two, or both 0."""
    return all(
        abs(a - b) <= 2.0**-40 * max(abs(a), abs(b))
        for a, b in zip(first[:_COMPARED], second[:_COMPARED], strict=True)
    )


def _accepted(
    part: sympy.Expr, symbol: sympy.Symbol, point: tuple[float, float], exact: list[Any], limit: float
) -> Patch | None:
    """The reach where the polynomial's truncation is below rounding, within `limit` and half the
    way to the nearest other zero of the polynomial, shrunk until the polynomial matches the formula's
    true values across it (a few tries), with its coefficients."""
    nonzero = [k for k, c in enumerate(exact) if c]
    if not nonzero or nonzero[0] >= _TERMS - 3:
        return None
    lowest = nonzero[0]
    reach = min(limit, _MAX_REACH)
    # A series whose last eight coefficients (or more) are 0 ends: they and the ones after are below
    # the circle's rounding (`_coefficients`), nothing is left out at any reach up to _MAX_REACH and
    # no radius shows. Its last terms are no truncation: the fourth derivative of
    # (x^8 - 1)/(x - 1), a cubic, was patched 1.3e-9 around 1 only (2.6e18 at 1 + 1e-8, truth 1344).
    ends = nonzero[-1] < _TERMS - 8
    for k in [] if ends else nonzero[-2:]:
        if k > lowest:
            reach = min(
                reach, float((_TRUNCATION * abs(exact[lowest]) / abs(exact[k])) ** (1.0 / (k - lowest)))
            )
    if not ends and len(nonzero) >= 3 and nonzero[-2] > lowest:
        # Within half the radius the last terms say the series converges in: a pole of small
        # residue past the circle shows only there (1e-18/cos(10x) beside (x - sin(x))/x^3 at 0.157).
        # The largest of what the last few say: a series whose odd and even terms fall at different
        # rates said 1.9e-12 from its last two (an independent hunt: the derivative of
        # (1 - coth(x))*sin(3x), 3.0 at 1e-9, truth 3.000000007), where a pole makes every one small.
        high = nonzero[-1]
        radius = max(
            float((abs(exact[low]) / abs(exact[high])) ** (1.0 / (high - low)))
            for low in nonzero[-5:-1]
            if low > lowest
        )
        reach = min(reach, radius / 2)
    coefficients = tuple(float(c) for c in exact)
    # Next to a zero of the polynomial away from the point, its rounding (of the size of its terms) is
    # not small against its value: cos(x)(x - sin(x))/x^3 at pi/2 was 5.6e-17, truth 4.2e-17, where
    # the formula as written is right. Half way to such a zero, unless the formula is worse there
    # too (the third derivative of (e^x - 1 - x)/x^2 + atan(x)/x vanishes at 0.016, where the
    # formula as float64 computes it is 1e-7 off). A zero closer than 2^-26 is the point's own,
    # moved off it as the point is not a double (the derivative of (x - pi)/sin(x) vanishes at pi).
    roots: Any = np.roots(coefficients[lowest : nonzero[-1] + 1][::-1]) if nonzero[-1] > lowest else []
    check = _Check(part, symbol.name, point, coefficients)
    real_side = _real_side(check, reach)
    sides = (1, -1) if real_side == 0 else (real_side,)
    for root in sorted(float(abs(root)) for root in roots if 2.0**-26 < abs(root) < reach):
        if not all(check.near(side * root) for side in sides):
            reach = root / 2
            break
    for _ in range(4):
        checked = {0.0, *(side * reach * 0.9999 * part_of for part_of in _CHECKS for side in sides)}
        if all(check(t) for t in checked):
            # Terms that no longer count at the reach are left out.
            smallest = 2.0**-60 * abs(coefficients[lowest]) * reach**lowest
            last = max(k for k in nonzero if abs(coefficients[k]) * reach**k >= smallest)
            return Patch(symbol, *point, reach, coefficients[: last + 1], side=real_side)
        reach /= 4
    return None


def _real_side(check: _Check, reach: float) -> int:
    """1 or -1 where the formula has no real value anywhere on the other side of the point within
    the reach, but has on this one: a formula analytic at the point written through a branch (the
    third derivative of cos(sqrt(x)) at 1e-12 was 6.7e7, truth -1/120, sqrt being real on the right
    only; a hunt, 2026-12-05); 0 otherwise."""
    at, scale = check.point
    parts = (0.5, 2.0**-6, 2.0**-12)
    real = {
        side: [_truth(check.part, check.name, at + side * reach * p * scale) is not None for p in parts]
        for side in (1, -1)
    }
    for side in (1, -1):
        if all(real[side]) and not any(real[-side]):
            return side
    return 0


# Where the polynomial is checked, in parts of the reach on each side: evenly across it (a pole of
# small residue inside it), and down to 1/4096 of it (the lowest terms); and the point itself.
_CHECKS = (*(k / 12 for k in range(12, 0, -1)), 2.0**-3, 2.0**-6, 2.0**-12)


@dataclass(frozen=True)
class _Check:
    """Whether the polynomial is right at a point: within `_MATCH` of the formula's true value, or of
    its own rounding (the size of its terms, next to a zero of the function)."""

    part: sympy.Expr
    name: str
    point: tuple[float, float]
    coefficients: tuple[float, ...]

    def __call__(self, t: float) -> bool:
        """At at + t scale: a value where the formula has none fails, but at the point itself."""
        at, scale = self.point
        x = at + t * scale
        truth = _truth(self.part, self.name, x)
        if truth is None:
            return x == at  # 0/0 at the point itself: the formula stays there
        u = (x - at) / scale
        error = abs(horner(self.coefficients, u) - truth)
        terms = horner([abs(c) for c in self.coefficients], abs(u))
        return bool(error <= _MATCH * max(abs(truth), terms))

    def near(self, t: float) -> bool:
        """Just past t, a zero of the polynomial: as right as there, or no further from the truth than
        the formula as float64 computes it (which the polynomial's rounding is not, next to a zero
        away from the point where nothing cancels)."""
        at, scale = self.point
        x = at + t * (1 + 2.0**-20) * scale
        truth = _truth(self.part, self.name, x)
        if truth is None:
            return False
        error = abs(horner(self.coefficients, (x - at) / scale) - truth)
        if error <= _MATCH * abs(truth):
            return True
        simulated = _simulated(self.part, self.name, x)
        return simulated is not None and error <= abs(simulated - truth)


def _truth(part: sympy.Expr, name: str, x: float) -> float | None:
    """The formula's value at x as a double, at rising precisions until two agree (next to a root no
    double holds, the fourth derivative of sin(x - 1/3)/(x - 1/3) cancels from 1e83: 256 bits said
    15925248, truth 0.2); None where it has none, or none settles. A formula calling gamma or
    polygamma stops at 1,024 bits: at 4,096 mpmath's psi took 0.47 to 0.7 s a point (the Hessian of
    acsc(beta(x + E, 1)), its probes next to a pole of digamma, 20 s to compile: the differential
    fuzz slice), and its gamma 5 s the first time in a process. Evaluations of a formula calling
    polygamma at 1,024 bits are counted against the plan's `tries`."""
    previous = None
    costly = part.has(sympy.polygamma)
    for prec in _SLOW_PRECISIONS if costly or part.has(sympy.gamma) else _PRECISIONS:
        if costly and prec == _SLOW_PRECISIONS[-1]:
            _spend_try(costly=True)
        value = _real(reference.evaluate(part, {name: x}, prec=prec))
        if value is None or (previous is not None and abs(value - previous) <= 2.0**-60 * abs(value)):
            return value
        previous = value
    return None


# The exponent of the largest power of two a double holds.
_LARGEST_EXPONENT = 1023


def _scale(at: float) -> float:
    """The power of two at or above |at|, 1 at least, 2^1023 at most (the largest a double holds:
    the level of `1e309 - 6y` is at 1.7e308, whose scale 2^1024 was an OverflowError, INTERNAL;
    make fuzz, 2026-12-08)."""
    return math.ldexp(1.0, min(max(0, math.frexp(at)[1]), _LARGEST_EXPONENT)) if at else 1.0


def horner(coefficients: Any, x: Any) -> Any:
    """c_0 + c_1 x + ... by Horner's rule (floats, or numpy arrays of points)."""
    total = coefficients[-1] + 0 * x
    for c in reversed(coefficients[:-1]):
        total = total * x + c
    return total


def _real(value: Any) -> float | None:
    """A finite real value as a float; None otherwise."""
    if hasattr(value, "_mpc_"):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _nearest_double(value: Any) -> Any:
    # Every real intermediate rounded to a double: the formula evaluated as float64 evaluates it.
    return value if hasattr(value, "_mpc_") or isinstance(value, float) else float(value)
