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
its value at 256 bits. Where they disagree, the Taylor coefficients come from the Cauchy integral on
a circle of radius 1/8 around the point in the complex plane (the formula evaluated there at 320
bits, where nothing cancels; no symbolic series, whose time has no bound), and the polynomial is used
for 0 < |x - a| < r, with r where its truncation is below a double's rounding. The polynomial is
accepted only where it matches the 256-bit values at points from r down to r/4096, on both sides; a
formula that is not analytic at the point (log(x) at 0, |x|, a pole) fails that and is left as it is.
At the point itself the formula stays as written: sin(x)/x is 0/0 at 0, NaN by the real-valued rule,
as the reference says.

All of this runs where numeric code is generated: in a symbolic worker, under its budget; each
evaluation is one of `reference`'s, bounded. A formula that does not vanish or fail at a candidate
point costs one evaluation there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sympy

from chainrule.engine import reference

__all__ = ["KERNEL", "Patch", "horner", "patches"]

# The kernel the generated code calls (`kernels.taylor_near`).
KERNEL = "taylor_near"
# Where float64 is checked against the truth: dyadic offsets from the point (times its magnitude
# past 1), both sides.
_PROBES = tuple(sign * 2.0**-bits for bits in (7, 17, 27, 37) for sign in (1, -1))
# Relative error of the float64 formula past which the polynomial is worth computing (~5,000 ulps).
_LOSS = 2.0**-40
_TRUTH_PREC = 256
_CIRCLE_PREC = 320
_RADIUS = 8  # the circle's is 1/8: coefficients are exact for functions analytic within 1/4 or so
_SAMPLES = 64  # points on the circle: aliasing of c_k by c_(k+64) (1/8)^64
_TERMS = 32  # coefficients c_0 .. c_31
_MAX_REACH = 2.0  # the polynomial is never used past this, however fast its terms fall
_TRUNCATION = 2.0**-56  # the omitted terms' share of the value at the reach, at most
_MATCH = 2.0**-49  # the polynomial's relative error at the checked points, at most (16 ulps or so)
_MAX_NODES = 200  # larger formulas are left alone: 50 evaluations of one at 320 bits take 0.2 s
_MAX_POINTS = 4  # points a formula is patched at, at most
# The functions a patched formula may call: mpmath evaluates each of them quickly anywhere in the
# complex plane at 320 bits (zeta, polygamma and the like may take seconds there; Derivative and
# Subs, opaque partials, are not functions of the grammar).
_ELEMENTARY = frozenset(
    f"{inverse}{name}{hyperbolic}"
    for name in ("sin", "cos", "tan", "cot", "sec", "csc")
    for inverse in ("", "a")
    for hyperbolic in ("", "h")
) | {"exp", "log", "erf", "erfc", "Abs", "sign"}


@dataclass(frozen=True)
class Patch:
    """Where a formula's Taylor polynomial replaces it: for 0 < |x - at| < reach, the polynomial in
    x - at with `coefficients` of rising degree."""

    symbol: sympy.Symbol
    at: float
    reach: float
    coefficients: tuple[float, ...]


def patches(part: sympy.Expr) -> list[Patch]:
    """The patches of a formula of one variable: at 0 and at the roots of what it divides by, where
    float64 evaluates it badly and it is analytic."""
    symbols = part.free_symbols
    called = {type(node).__name__ for node in part.atoms(sympy.Function)}
    if len(symbols) != 1 or not called <= _ELEMENTARY or part.has(sympy.Derivative, sympy.Subs):
        return []
    (symbol,) = symbols
    try:
        if sympy.count_ops(part) > _MAX_NODES:
            return []
        roots = _candidates(part, symbol)
    except Exception:  # sympy's own failures (its cache, assumptions on huge constants)
        return []  # leave a formula sympy cannot look at as it is: the patch is a refinement
    found = []
    for root in roots:
        at = reference.to_double(root)
        try:
            if not _cancels(part, symbol, root, at):
                continue
            coefficients = _coefficients(part, symbol.name, at)
            patch = None if coefficients is None else _accepted(part, symbol, at, coefficients)
        except (reference.Unsupported, ArithmeticError, ValueError, TypeError):
            continue
        if patch is not None:
            found.append(patch)
    return found


def _candidates(part: sympy.Expr, symbol: sympy.Symbol) -> list[sympy.Rational]:
    """0, and the rational roots of the linear formulas it divides by or takes the sine,
    tangent or logarithm of there (sin(x - 1)/(x - 1), (x - 2)/log(x - 1)): a few at most."""
    roots: set[sympy.Rational] = {sympy.S.Zero}
    for node in sympy.preorder_traversal(part):
        if len(roots) > _MAX_POINTS:
            break
        if not (node.is_Pow and node.exp.is_negative):
            continue
        base = node.base
        zero_of = {sympy.log: 1, sympy.sin: 0, sympy.tan: 0, sympy.sinh: 0, sympy.tanh: 0}
        if base.func in zero_of:
            base = base.args[0] - zero_of[base.func]
        root = _linear_root(base, symbol)
        if root is not None:
            roots.add(root)
    return sorted(roots, key=abs)[:_MAX_POINTS]


def _linear_root(expr: sympy.Expr, symbol: sympy.Symbol) -> sympy.Rational | None:
    slope = expr.diff(symbol)
    if slope.free_symbols or not slope.is_Rational or slope == 0:
        return None
    rest = expr - slope * symbol
    if rest.free_symbols or not rest.is_Rational:
        return None
    root = -rest / slope
    return root if math.isfinite(reference.to_double(root)) else None


def _cancels(part: sympy.Expr, symbol: sympy.Symbol, root: sympy.Rational, at: float) -> bool:
    """Whether float64 loses more than `_LOSS` of the value at a point next to `root` (`at`, its
    double). Not where the formula is finite and not 0 at `root`: every term is then finite there,
    and what float64 loses next to it is what it loses there (one evaluation instead of sixteen, for
    most formulas)."""
    try:
        exact = reference.context(_TRUTH_PREC).mpf(int(root.p)) / int(root.q)
        if _real(reference.evaluate(part, {symbol.name: exact}, prec=_TRUTH_PREC)):
            return False
    except ArithmeticError:
        pass  # undefined there as written
    scale = max(1.0, abs(at))
    for offset in _PROBES:
        point = at + offset * scale
        truth = _real(reference.evaluate(part, {symbol.name: point}, prec=_TRUTH_PREC))
        if truth is None or truth == 0:
            continue
        simulated = _real(reference.evaluate(part, {symbol.name: point}, prec=53, each=_nearest_double))
        if simulated is None or abs(simulated - truth) > _LOSS * abs(truth):
            return True
    return False


def _coefficients(part: sympy.Expr, name: str, at: float) -> list[Any] | None:
    """c_0 .. c_(_TERMS - 1) by the trapezoidal rule on the circle around `at` (exact for a
    polynomial of degree below `_SAMPLES`, geometrically close for an analytic function); None where
    the formula is not finite on the circle. A real function's values on the lower half are the
    conjugates of the upper's."""
    ctx = reference.context(_CIRCLE_PREC)
    half = _SAMPLES // 2
    values = []
    for j in range(half + 1):
        z = ctx.mpf(at) + ctx.expjpi(ctx.mpf(2 * j) / _SAMPLES) / _RADIUS
        value = ctx.mpc(reference.evaluate(part, {name: z}, prec=_CIRCLE_PREC, strict=False))
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
    # from the decay of the last ones, what a_(k+64) may be (1e-55 where log(1 + x^2 e^x) is x^2 +
    # ..., singular at |x| = 0.8 in the complex plane, and that noise was its value at 1e-100).
    rounding = largest * ctx.ldexp(1, 100 - _CIRCLE_PREC)
    decay = max(
        (
            ctx.power(abs(a) / largest, ctx.mpf(1) / k)
            for k, a in enumerate(fourier)
            if k >= _TERMS // 2 and abs(a) > rounding
        ),
        default=ctx.mpf(0),
    )
    noise = rounding + largest * ctx.ldexp(decay**_SAMPLES, 10)
    return [ctx.mpf(0) if abs(a) <= noise else a * ctx.mpf(_RADIUS) ** k for k, a in enumerate(fourier)]


def _accepted(part: sympy.Expr, symbol: sympy.Symbol, at: float, exact: list[Any]) -> Patch | None:
    """The reach where the polynomial's truncation is below rounding, shrunk until the polynomial
    matches the formula's true values at points up to it (a few tries), with its coefficients."""
    nonzero = [k for k, c in enumerate(exact) if c]
    if not nonzero or nonzero[0] >= _TERMS - 3:
        return None
    lowest = nonzero[0]
    reach = _MAX_REACH
    for k in nonzero[-2:]:
        if k > lowest:
            reach = min(
                reach, float((_TRUNCATION * abs(exact[lowest]) / abs(exact[k])) ** (1.0 / (k - lowest)))
            )
    coefficients = tuple(float(c) for c in exact)
    for _ in range(4):
        if _matches(part, symbol.name, at, coefficients, reach):
            # Terms that no longer count at the reach are left out.
            smallest = 2.0**-60 * abs(coefficients[lowest]) * reach**lowest
            last = max(k for k in nonzero if abs(coefficients[k]) * reach**k >= smallest)
            return Patch(symbol, at, reach, coefficients[: last + 1])
        reach /= 4
    return None


def _matches(part: sympy.Expr, name: str, at: float, coefficients: tuple[float, ...], reach: float) -> bool:
    for scale in (1.0, 0.5, 2.0**-3, 2.0**-6, 2.0**-12):
        for offset in (reach * scale * 0.9999, -reach * scale * 0.9999):
            point = at + offset
            truth = _real(reference.evaluate(part, {name: point}, prec=_TRUTH_PREC))
            if truth is None:
                return False
            if abs(horner(coefficients, point - at) - truth) > _MATCH * abs(truth):
                return False
    return True


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
