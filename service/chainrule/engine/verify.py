"""Numeric self-checks: a symbolic derivative against a numeric derivative at random points (pure maths).

Two numeric derivatives, both computed at high precision (`PRECISION_DIGITS` significant digits)
through sympy's `evalf` (thread-safe: precision is explicit, no global mpmath state) and a private
mpmath context:

- complex step, d f/dx = Im f(x + ih) / h, for a single first-order derivative of an expression
  without non-analytic pieces (abs, sign, floor, ...): no subtraction, so no cancellation;
- high-precision central differences (`mpmath.diff`) otherwise: higher orders, mixed partials,
  and expressions with kinks or jumps (checked away from them, at random points).

An implicit derivative (`verify_implicit`, y defined by F(x, y) = 0) is checked against central
differences of the branch itself: through each random point (x0, y0) passes the level set
F(x, y) = F(x0, y0), whose implicit derivative is the same expression; y(x) near x0 is solved for
with `findroot` at every abscissa `mpmath.diff` asks for.

Points are drawn from a seeded generator and kept only where the expression and the derivative are
finite reals. The relative error at a point is |symbolic - numeric| / max(|symbolic|, |numeric|,
1e-15): the floor keeps a derivative that is exactly 0 from turning rounding noise into a 100% error.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import mpmath
import sympy

from chainrule.engine import functions, implicit, symbolic

__all__ = [
    "Check",
    "CheckPoint",
    "Method",
    "Verdict",
    "format_check",
    "same_function",
    "verify",
    "verify_implicit",
]

PRECISION_DIGITS = 40
TOLERANCE = 1e-8
_ERROR_FLOOR = 1e-15
# Digits of the function's value below which a derivative's difference is the numeric method's
# noise (of the PRECISION_DIGITS it works with, some are lost to the step's division).
_FUNCTION_DIGITS = 30
# h = 1e-30: truncation error h^2 f'''/6 is ~1e-60 relative where f varies on a scale of 1, and
# still ~1e-28 where it oscillates 1e16 times faster (sin(exp(exp(exp(x)))) at 1.24: with h = 1e-15
# the "numeric" derivative was 8e18 for 4.4e15, a false MISMATCH; an independent attacker). The
# value is evaluated with as many more digits, so the imaginary part keeps PRECISION_DIGITS of them
# (evalf's precision is relative to the whole complex value).
_COMPLEX_STEP_DIGITS = 30
_ATTEMPTS_PER_POINT = 8
# Functions without a complex-analytic form near the real axis (or none sympy evaluates there).
_NON_ANALYTIC: tuple[type, ...] = (
    *functions.KINKED,
    sympy.re,
    sympy.im,
    sympy.arg,
    sympy.atan2,
    sympy.factorial,
    functions.RealRoot,
)


class Verdict(enum.Enum):
    """OK: every point agrees within the tolerance. MISMATCH: some point does not. INCONCLUSIVE: no
    point was found where the expression and its derivative are finite reals."""

    OK = "ok"
    MISMATCH = "mismatch"
    INCONCLUSIVE = "inconclusive"


class Method(enum.Enum):
    """How the numeric derivative was taken."""

    COMPLEX_STEP = "complex_step"
    CENTRAL_DIFFERENCE = "central_difference"


@dataclass(frozen=True)
class CheckPoint:
    """One point: the variables' values, both derivatives there and their relative error."""

    point: tuple[tuple[str, float], ...]
    symbolic: float
    numeric: float
    relative_error: float


@dataclass(frozen=True)
class Check:
    """The outcome of `verify`: a verdict, the worst relative error and the points used."""

    verdict: Verdict
    method: Method
    max_relative_error: float
    tolerance: float
    points: tuple[CheckPoint, ...]


def verify(
    expr: sympy.Expr,
    wrt: Sequence[tuple[str, int]],
    derivative: sympy.Expr,
    k: int = 5,
    seed: int = 0,
    *,
    tolerance: float = TOLERANCE,
) -> Check:
    """Compare `derivative` (of `expr` by `wrt`) with a numeric derivative at `k` random points."""
    resolved = symbolic.resolve_wrt(expr, wrt)
    if not resolved:
        return _check_constant(derivative, tolerance)
    names = sorted({*symbolic.free_variables(expr), *(name for name, _ in resolved)})
    symbols = _symbols(expr, names)
    orders = tuple(sum(order for name, order in resolved if name == wanted) for wanted in names)
    method = Method.COMPLEX_STEP if _complex_step_applies(expr, orders) else Method.CENTRAL_DIFFERENCE
    ctx = _context()

    def at(values: Sequence[float]) -> tuple[float, float, float] | None:
        return _check_point(ctx, expr, derivative, symbols, values, orders=orders, method=method)

    return _sampled(names, at, method, k=k, seed=seed, tolerance=tolerance)


def _sampled(
    names: Sequence[str],
    at: Callable[[Sequence[float]], tuple[float, float, float] | None],
    method: Method,
    *,
    k: int,
    seed: int,
    tolerance: float,
) -> Check:
    """The check at `k` random points where `at` gives (symbolic, numeric, relative error)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test points, not secrets
    points: list[CheckPoint] = []
    for _ in range(k * _ATTEMPTS_PER_POINT):
        if len(points) == k:
            break
        values = _draw(rng, len(names), len(points))
        found = at(values)
        if found is not None:
            points.append(CheckPoint(tuple(zip(names, values, strict=True)), *found))
    if not points:
        return Check(Verdict.INCONCLUSIVE, method, 0.0, tolerance, ())
    worst = max(point.relative_error for point in points)
    verdict = Verdict.OK if worst < tolerance else Verdict.MISMATCH
    return Check(verdict, method, worst, tolerance, tuple(points))


def verify_implicit(
    function: sympy.Expr,
    target: implicit.Implicit,
    derivative: sympy.Expr,
    k: int = 5,
    seed: int = 0,
    *,
    tolerance: float = TOLERANCE,
) -> Check:
    """Compare the implicit derivative of F = `function` = 0 with central differences of its branch."""
    names = sorted({*symbolic.free_variables(function), target.variable.name, target.dependent.name})
    symbols = _symbols(function, names)
    ctx = _context()

    def at(values: Sequence[float]) -> tuple[float, float, float] | None:
        assignment = dict(zip(symbols, values, strict=True))
        level = _real_value(ctx, function, assignment)
        wanted = _real_value(ctx, derivative, assignment)
        if level is None or wanted is None:
            return None
        numeric = _branch_derivative(ctx, function, symbols, values, target, level=level)
        if numeric is None or not ctx.isfinite(numeric):
            return None
        error = abs(wanted - numeric) / max(abs(wanted), abs(numeric), ctx.mpf(_ERROR_FLOOR))
        return float(wanted), float(numeric), float(error)

    return _sampled(names, at, Method.CENTRAL_DIFFERENCE, k=k, seed=seed, tolerance=tolerance)


def _branch_derivative(
    ctx: mpmath.MPContext,
    function: sympy.Expr,
    symbols: Sequence[sympy.Symbol],
    values: Sequence[float],
    target: implicit.Implicit,
    *,
    level: mpmath.mpf,
) -> mpmath.mpf | None:
    """d^k y/dx^k at x0 of the branch of F(x, y) = F(x0, y0) through (x0, y0), numerically."""
    f = _callable(ctx, function, symbols)
    names = [symbol.name for symbol in symbols]
    at_x, at_y = names.index(target.variable.name), names.index(target.dependent.name)

    def branch(x: mpmath.mpf) -> mpmath.mpf:
        args = [ctx.mpf(value) for value in values]
        args[at_x] = x

        def residual(y: mpmath.mpf) -> object:
            args[at_y] = y
            return f(*args) - level

        return ctx.findroot(residual, ctx.mpf(values[at_y]))

    try:
        result = ctx.diff(branch, ctx.mpf(values[at_x]), target.order)
    except (ValueError, ZeroDivisionError, TypeError):
        return None  # no branch through the point (F_y = 0 there), or findroot did not converge
    return result if isinstance(result, ctx.mpf) else None


def _check_constant(derivative: sympy.Expr, tolerance: float) -> Check:
    """No variable to differentiate by: the derivative of a constant must be 0."""
    value = _real_value(_context(), derivative, {})
    if value is None:
        return Check(Verdict.INCONCLUSIVE, Method.CENTRAL_DIFFERENCE, 0.0, tolerance, ())
    error = min(float(abs(value)) / _ERROR_FLOOR, 1.0)
    verdict = Verdict.OK if error < tolerance else Verdict.MISMATCH
    point = CheckPoint((), float(value), 0.0, error)
    return Check(verdict, Method.CENTRAL_DIFFERENCE, error, tolerance, (point,))


def same_function(
    a: sympy.Expr, b: sympy.Expr, k: int = 5, seed: int = 0, *, relative: float = 1e-20
) -> bool | None:
    """Whether two expressions agree numerically at `k` random points, to `relative` of the larger
    magnitude (at least 1), or None when there is no point to compare at."""
    names = sorted({symbol.name for symbol in (a.free_symbols | b.free_symbols)})
    symbols = _symbols(a + b, names)
    ctx = _context()
    rng = random.Random(seed)  # noqa: S311 - reproducible test points, not secrets
    compared = 0
    for attempt in range(k * _ATTEMPTS_PER_POINT):
        if compared == k:
            break
        values = _draw(rng, len(names), attempt)
        assignment = dict(zip(symbols, values, strict=True))
        left, right = _real_value(ctx, a, assignment), _real_value(ctx, b, assignment)
        if left is None or right is None:
            continue
        if abs(left - right) > ctx.mpf(relative) * max(abs(left), abs(right), ctx.mpf(1)):
            return False
        compared += 1
    return True if compared else None


def _context() -> mpmath.MPContext:
    # A private context: mpmath's global one is shared by every thread of the process.
    ctx = mpmath.MPContext()
    ctx.dps = PRECISION_DIGITS
    return ctx


def _symbols(expr: sympy.Expr, names: Sequence[str]) -> list[sympy.Symbol]:
    present = {symbol.name: symbol for symbol in expr.free_symbols}
    return [present.get(name) or sympy.Symbol(name, real=True) for name in names]


def _complex_step_applies(expr: sympy.Expr, orders: Sequence[int]) -> bool:
    return sum(orders) == 1 and not expr.atoms(*_NON_ANALYTIC) and not _has_non_analytic(expr)


def _has_non_analytic(expr: sympy.Expr) -> bool:
    return any(isinstance(node, _NON_ANALYTIC) for node in sympy.preorder_traversal(expr))


def _draw(rng: random.Random, count: int, attempt: int) -> tuple[float, ...]:
    """Values in [-3, 3], every other attempt in (0, 3] (the domain of sqrt and log), 6 decimals."""
    low = -3.0 if attempt % 2 == 0 else 0.05
    return tuple(round(rng.uniform(low, 3.0), 6) for _ in range(count))


def _check_point(
    ctx: mpmath.MPContext,
    expr: sympy.Expr,
    derivative: sympy.Expr,
    symbols: Sequence[sympy.Symbol],
    values: Sequence[float],
    *,
    orders: Sequence[int],
    method: Method,
) -> tuple[float, float, float] | None:
    assignment = dict(zip(symbols, values, strict=True))
    value = _real_value(ctx, expr, assignment)
    if value is None:
        return None
    symbolic = _real_value(ctx, derivative, assignment)
    if symbolic is None:
        return None
    numeric = _numeric_derivative(ctx, expr, symbols, values, orders=orders, method=method)
    if numeric is None or not ctx.isfinite(numeric):
        return None
    if not (math.isfinite(float(symbolic)) and math.isfinite(float(numeric))):
        # Past the doubles no caller sees the digits, and 40 of an argument of 10^1000 digits say
        # nothing of sin of it: exp(exp(exp(exp(x)))) and sin(exp(exp(exp(x)))) were reported as
        # mismatches (+Infinity against -Infinity), each counted (an independent attacker).
        return None
    # Measured against the function's own size too: a difference of 40-digit values of 1e300 x is
    # noise some 1e246 in its second derivative, which is exactly 0 (x/1e-300: relative error 1,
    # MISMATCH, for a right derivative; an independent hunt, 2026-12-06).
    floor = max(ctx.mpf(_ERROR_FLOOR), abs(value) * ctx.mpf(10) ** -_FUNCTION_DIGITS)
    error = abs(symbolic - numeric) / max(abs(symbolic), abs(numeric), floor)
    return float(symbolic), float(numeric), float(error)


def _numeric_derivative(
    ctx: mpmath.MPContext,
    expr: sympy.Expr,
    symbols: Sequence[sympy.Symbol],
    values: Sequence[float],
    *,
    orders: Sequence[int],
    method: Method,
) -> mpmath.mpf | None:
    if method is Method.COMPLEX_STEP:
        index = list(orders).index(1)
        step = sympy.Rational(1, 10**_COMPLEX_STEP_DIGITS)
        shifted: dict[sympy.Symbol, sympy.Expr] = {
            s: sympy.Float(v, PRECISION_DIGITS) for s, v in zip(symbols, values, strict=True)
        }
        shifted[symbols[index]] = shifted[symbols[index]] + sympy.I * step
        value = _complex_value(ctx, expr, shifted, PRECISION_DIGITS + _COMPLEX_STEP_DIGITS)
        if value is not None:
            return value.imag * ctx.mpf(10) ** _COMPLEX_STEP_DIGITS
    try:
        result = ctx.diff(_callable(ctx, expr, symbols), [ctx.mpf(v) for v in values], tuple(orders))
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    if isinstance(result, ctx.mpc):
        if abs(result.imag) > abs(result.real) * ctx.mpf(10) ** -20:
            return None
        return result.real
    return result


def _callable(
    ctx: mpmath.MPContext, expr: sympy.Expr, symbols: Sequence[sympy.Symbol]
) -> Callable[..., object]:
    """expr as a function of mpmath numbers, evaluated at the context's current precision."""

    def function(*args: mpmath.mpf) -> object:
        digits = ctx.dps + 5
        assignment = {s: sympy.Float(a, digits) for s, a in zip(symbols, args, strict=True)}
        value = _complex_value(ctx, expr, assignment, digits)
        if value is None:
            return ctx.nan
        return value if value.imag else value.real

    return function


def _complex_value(
    ctx: mpmath.MPContext,
    expr: sympy.Expr,
    assignment: Mapping[sympy.Symbol, sympy.Expr],
    digits: int = PRECISION_DIGITS,
) -> mpmath.mpc | None:
    """The value at a point as an mpmath complex, or None where it is not a finite number."""
    try:
        value = expr.xreplace(dict(assignment)).evalf(digits)
    except (ValueError, ZeroDivisionError, TypeError, ArithmeticError):
        return None
    if not value.is_number or value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return None
    real, imag = value.as_real_imag()
    try:
        result = ctx.mpc(
            ctx.make_mpf(sympy.Float(real, digits)._mpf_), ctx.make_mpf(sympy.Float(imag, digits)._mpf_)
        )
    except (TypeError, ValueError, AttributeError):
        return None
    return result if ctx.isfinite(result) else None


def _real_value(
    ctx: mpmath.MPContext, expr: sympy.Expr, assignment: Mapping[sympy.Symbol, float]
) -> mpmath.mpf | None:
    """The value at a point when it is a finite real (within rounding), else None."""
    floats = {s: sympy.Float(v, PRECISION_DIGITS) for s, v in assignment.items()}
    value = _complex_value(ctx, expr, floats)
    if value is None or abs(value.imag) > abs(value.real) * ctx.mpf(10) ** -25 + ctx.mpf(10) ** -30:
        return None
    return value.real


def format_check(check: Check) -> str:
    """A check for a terminal: the verdict, the method and one line per point."""
    method = check.method.value.replace("_", " ")
    lines = [
        f"verify: {check.verdict.name} (max relative error {check.max_relative_error:.2e}, "
        f"tolerance {check.tolerance:g}, {method})"
    ]
    for point in check.points:
        where = ", ".join(f"{name}={value:g}" for name, value in point.point) or "(no variables)"
        lines.append(
            f"  at {where}: symbolic {point.symbolic:.15g}, numeric {point.numeric:.15g}, "
            f"error {point.relative_error:.1e}"
        )
    return "\n".join(lines)
