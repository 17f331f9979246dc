"""The float64 implementations numeric code calls, one per function of the table, by the names it calls.

Each takes float64 arrays (or scalars) and answers float64, element by element, so a point gets
exactly what a batch gets. Each evaluates the function the user wrote on the reals: where it has no
real value the answer is NaN, never a real part and never an error, and no rewrite narrows its domain
(sech(x) is not written through exp(2 log x), cosh(acoth(x)) not through sqrt(x - 1)).

Formulas are chosen for accuracy over the whole real line (docs/accuracy.md has the measured errors):
reciprocal functions switch to their asymptotic forms before the function they divide by overflows
(sech(800) is 0 only because 2e^-800 is), inverse ones avoid the cancellation of 1 - 1/x next to 1
(acoth(x) = log1p(2/(|x| - 1))/2), polygamma of negative arguments uses the reflection formula (scipy
recurs in |x|: 32 s at -2e9). What scipy lacks (Hurwitz zeta left of 1, polygamma of a fractional
order, derivatives without a closed form) is computed point by point with mpmath (`reference`), at a
cost the numeric cost limit charges for (`WEIGHTS`).

`NAMESPACE` is what generated code runs in: every name it calls, and nothing else.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.special

from chainrule.engine import overflow, reference, removable, vectormath
from chainrule.engine.errors import ResourceExhausted

__all__ = ["CALL_OVERHEADS", "GENERIC", "MAX_SCIPY_ORDER", "MPMATH_WEIGHT", "NAMESPACE", "WEIGHTS"]

FloatArray = npt.NDArray[np.float64]

_SIMD = vectormath.simd_tan()
sin: Callable[[Any], Any] = vectormath.sin if _SIMD else np.sin
cos: Callable[[Any], Any] = vectormath.cos if _SIMD else np.cos

# Precision of the point-by-point mpmath paths: 11 bits above a double, so rounding once more is safe.
_PREC = 64
# Beyond this |x| the reciprocal hyperbolic functions use 2 e^-|x| (cosh(710) overflows, sech does not).
_TAIL = 700.0
_LN2 = math.log(2.0)
_HALF_SQRT2 = math.sqrt(0.5)
_TINY = 1e-300  # below, 1/x overflows: acsch and asech switch to log(2/|x|)
MAX_SCIPY_ORDER = 100  # scipy's polygamma multiplies n! by zeta(n + 1, x): both leave the range beyond


def _array(x: Any) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _real(x: Any) -> Any:
    """x as an array of floats in its own precision (a long double run keeps its long doubles)."""
    array = np.asarray(x)
    return array if array.dtype.kind == "f" else array.astype(np.float64)


# --------------------------------------------------------------------------------- trigonometric


# Past this magnitude, a periodic function's argument that was computed (not a variable itself) is
# not known closely enough for its value: it is off by half an ulp at least, 1.2e-10 here and a
# radian past 2^53, so sin(x - 1) at 1e300 was -0.82 (truth 0.042) and cot(e^(2x)) at 40 -123
# (truth -0.70; an independent hunt, 2026-12-06). Such points are computed again in long double
# (`numeric._mend_imprecise`), whose own bound is `PRECISE_WIDE_ARGUMENT`; one that is a
# affine function of exact operands is computed with what its rounding lost (`_of_affine`).
PRECISE_ARGUMENT = 2.0**20


def _large(u: Any, limit: float = PRECISE_ARGUMENT) -> bool:
    """Whether some value of u is past `limit` (a NaN is not): in two passes that skip NaN and make
    no temporary, the usual case being that none is."""
    a = np.asarray(u)
    if a.size == 1:
        return bool(abs(a.flat[0]) > limit)
    return bool(np.fmax.reduce(a, axis=None) > limit or np.fmin.reduce(a, axis=None) < -limit)


# `PRECISE_ARGUMENT` in the long double run, where it computes the argument from exact operands
# (`widening`): past it, off by half an ulp of long double at least (1.2e-10 here).
PRECISE_WIDE_ARGUMENT = 2.0**31


def periodic_argument(
    u: Any, wide_limit: float = PRECISE_WIDE_ARGUMENT, radians: float = 1.0, period: float = 0.0
) -> Any:
    """u, the argument of a periodic function, where it was computed: the points where it is past
    PRECISE_ARGUMENT told to the overflow handler (`overflow.imprecise`). A NaN is no such point.
    `wide_limit` is the long double run's (`widening`): where u holds what long double computes no
    better than a double, this one. `radians`: what a unit of u is (pi s for half turns scaled by
    s: in sin(pi*x*y*2^30), x*y's rounding is 2^30 pi times as large); `period`: the period u is
    reduced modulo exactly (half turns'), for the long double run."""
    limit = PRECISE_ARGUMENT / radians
    if _large(u, limit):
        overflow.imprecise(np.abs(u) > limit)
    return u


def _sum_error(a: Any, b: Any, s: Any) -> Any:
    """What s = a + b rounded off: a + b is exactly s plus it (Knuth's two-sum)."""
    shifted = s - a
    return (a - (s - shifted)) + (b - shifted)


_SPLIT = 134_217_729.0  # 2^27 + 1: Veltkamp's split of a double into two halves of 26 bits


def _halves(a: Any) -> tuple[Any, Any]:
    c = _SPLIT * a
    high = c - (c - a)
    return high, a - high


def _product_error(a: Any, b: Any, p: Any) -> Any:
    """What p = a b rounded off: a b is exactly p plus it (Dekker's two-product). Operands past 2^900
    are scaled down by 2^-128 first, exactly, so that the split does not overflow (cos(x*y) at
    (2^1000, 2^23) was NaN: a regression hunt)."""
    a_scale = np.where(np.abs(a) > _SPLIT_SAFE, _SPLIT_SCALE, 1.0)
    b_scale = np.where(np.abs(b) > _SPLIT_SAFE, _SPLIT_SCALE, 1.0)
    a, b = a * a_scale, b * b_scale
    scaled = a * b
    a_high, a_low = _halves(a)
    b_high, b_low = _halves(b)
    error = ((a_high * b_high - scaled) + a_high * b_low + a_low * b_high) + a_low * b_low
    return error / (a_scale * b_scale)


_SPLIT_SAFE, _SPLIT_SCALE = 2.0**900, 2.0**-128


# Each periodic function from the sine and cosine of its argument.
_FROM_SINE_AND_COSINE: Mapping[str, Callable[[Any, Any], Any]] = {
    "sin": lambda s, c: s,
    "cos": lambda s, c: c,
    "tan": lambda s, c: s / c,
    "sec": lambda s, c: 1.0 / c,
    "csc": lambda s, c: 1.0 / s,
    "cot": lambda s, c: c / s,
}


def _of_affine(name: str, plain: Callable[[Any], Any]) -> Callable[..., Any]:
    """The kernel `<name>_of_affine`: the function of a (k + k_low) + (c + c_low), where a, k and c
    are exact (variables, a variable times a power of 2, whole numbers, the nearest double of a
    constant, whose next digits are the low ones; k is 1 and c 0 where there is no such part): as
    written where the argument is within PRECISE_ARGUMENT, and past it from the argument's double s
    and what it rounded off, e (two-product, two-sum): f(s + e) from sin and cos of s, which numpy
    reduces exactly, and of e. So sin(x - 10) at -1e20, sin(x^2), sin(x/3) and tan(2x + 1) at 5e9
    are right where a computed argument is lost (`periodic_argument`). Where a k_low, itself
    rounded, is past PRECISE_ARGUMENT (x/3 past 2^74), or e is not finite (a split past the
    doubles), NaN."""

    def kernel(a: Any, k: Any, k_low: Any, c: Any, c_low: Any, *, moved: bool = False) -> Any:
        # As the code computed it before (`add_constant` for a constant's two doubles).
        s = a if _is(k, 1) else np.multiply(a, k)
        if not _is(c, 0):
            s = np.add(s, c)
        if not _is(c_low, 0):
            s = np.add(s, c_low)
        value = plain(s)
        if not _large(s):
            return value
        value = np.array(value, dtype=np.result_type(value, np.float64), copy=True)
        shape = value.shape
        large = np.broadcast_to(np.abs(s) > PRECISE_ARGUMENT, shape)
        a_, k_, c_ = (np.broadcast_to(np.asarray(v), shape)[large] for v in (a, k, c))
        with np.errstate(over="ignore"):  # a split past the doubles is no value's overflow: NaN below
            product = a_ * k_
            carried = a_ * k_low
            rounded = product + c_
            # The argument is rounded plus each part, exact but a low double's (rounded itself: 1/3's,
            # 10^50's), added by turning sine and cosine one part at a time: their sum rounds
            # (cos(3x + 2) at 1.2e40 added 2 to a rounding error of 1e24: a regression hunt).
            parts = (_product_error(a_, k_, product), carried, _sum_error(product, c_, rounded), c_low)
        # Low doubles are rounded themselves (1/3's next digits, 10^50's): within 1 their rounding
        # is below half an ulp of 1, as a small argument's (x/3 past 5e16 was 4e-4 off next to a
        # zero of sin: a regression hunt).
        known = (np.abs(carried) <= 1.0) & (np.abs(c_low) <= 1.0)
        sine, cosine = np.sin(rounded), np.cos(rounded)
        for part in parts:
            known &= np.isfinite(part)
            turned_sine, turned_cosine = np.sin(part), np.cos(part)
            sine, cosine = (
                sine * turned_cosine + cosine * turned_sine,
                cosine * turned_cosine - sine * turned_sine,
            )
        unknown = ~known
        if unknown.any():
            # Not known: as for any other argument (`periodic_argument`), the long double run finds
            # what depends on it, and computes it `moved`; float64 keeps the value as written.
            overflow.imprecise(_placed(unknown, large, shape))
            plain_s = np.broadcast_to(s, shape)[large][unknown]
            if moved:
                plain_s = plain_s + np.abs(plain_s) * 2.0**-30 + 1.0
            sine[unknown], cosine[unknown] = np.sin(plain_s), np.cos(plain_s)
        value[large] = _FROM_SINE_AND_COSINE[name](sine, cosine)
        return value

    kernel.__name__ = kernel.__qualname__ = f"{name}_of_affine"
    return kernel


def _placed(subset: Any, where: Any, shape: tuple[int, ...]) -> Any:
    """A mask of `shape` true where `where` is and `subset` (a mask over those places) is."""
    placed = np.zeros(shape, dtype=bool)
    placed[where] = subset
    return placed


def _is(value: Any, number: float) -> bool:
    """Whether a constant argument is `number` (a column never is)."""
    return not isinstance(value, np.ndarray) and value == number


def sec(x: Any) -> Any:
    return 1.0 / cos(x)


def csc(x: Any) -> Any:
    return 1.0 / sin(x)


def cot(x: Any) -> Any:
    return 1.0 / np.tan(x)


def asec(x: Any) -> Any:
    """acos(1/x) as atan2(sqrt((|x|-1)(|x|+1)), sign x): no cancellation next to |x| = 1; NaN inside."""
    a = np.abs(x)
    return np.arctan2(np.sqrt((a - 1.0) * (a + 1.0)), np.sign(x))


def acsc(x: Any) -> Any:
    """asin(1/x) as atan2(sign x, sqrt((|x|-1)(|x|+1))); 1/x where the square would overflow."""
    a = np.abs(x)
    near = np.arctan2(np.sign(x), np.sqrt((a - 1.0) * (a + 1.0)))
    return np.where(a > 1e150, 1.0 / x, near)


def acot(x: Any) -> Any:
    """atan(1/x), and pi/2 at 0 as sympy defines it."""
    return np.where(x == 0, np.pi / 2, np.arctan(1.0 / x))


def atan2(y: Any, x: Any) -> Any:
    """The angle of (x, y); NaN at the origin, where it has none (numpy says 0). A y of -0.0 is 0, as
    on the reals: IEEE's atan2(-0.0, -1) is -pi, the angle below the cut (-0.0 + 0.0 is +0.0)."""
    return np.where((x == 0) & (y == 0), np.nan, np.arctan2(np.add(y, 0.0), x))


# ------------------------------------------------------------------------------------ hyperbolic


def sech(x: Any) -> Any:
    a = np.abs(x)
    return np.where(a < _TAIL, 1.0 / np.cosh(a), 2.0 * np.exp(-a))


def csch(x: Any) -> Any:
    a = np.abs(x)
    return np.where(a < _TAIL, 1.0 / np.sinh(x), np.copysign(2.0 * np.exp(-a), x))


def sech_squared(x: Any, t: Any) -> Any:
    """sech(x)^2 given t = tanh(x), which the code computes anyway (`numeric_code.stable`): 1 - t^2
    where that keeps 14 digits (it is at least 2^-6), and 4e/(1 + e)^2 with e = exp(-2|x|) at the
    points where it does not (1 - t^2 is 1 - 1 = 0 from |x| = 19 on). Computed so at every point it
    cost the headline gradient 40%. The points are picked by index: a boolean mask as random as the
    data costs its branch mispredictions (the kernel took 435 us for 32k points of the headline
    gradient, 12% of them cancelled, with a mask, and takes 120 us with indices). Not `sech`(x)^2:
    numpy's cosh is not vectorised, and one exp underflows only where the result does."""
    if not np.ndim(t):
        result = 1.0 - t * t
        kept = result if result >= _SECH_SQUARED_FROM or np.isnan(result) else _sech_squared_of(x)
        return np.nan if np.isnan(x) else kept
    result = np.multiply(t, t)
    np.subtract(1.0, result, out=result)
    shape = np.shape(result)
    # fmin passes NaN over: where t is NaN, so is the result, and nothing is to mend.
    if np.fmin.reduce(result) < _SECH_SQUARED_FROM:
        cancelled = np.flatnonzero(result < _SECH_SQUARED_FROM)
        result[cancelled] = _sech_squared_of(np.broadcast_to(x, shape)[cancelled])
    if np.isnan(np.min(x)):  # x's NaN too (in our code t = tanh(x) carries it already)
        result[np.isnan(np.broadcast_to(x, shape))] = np.nan
    return result


def log_one_plus(u: Any, w: Any) -> Any:
    """log(w) where w = 1 + u, each written stably on its own (`numeric_code.stable`): log1p(u) where
    1 + u would round u's digits away (|u| < 1/2), log(w) elsewhere, where w may be the better one
    (1 - tanh(x)^2 is sech(x)^2 at 20, while u = -tanh(x)^2 is -1.0 there)."""
    # NaN in either argument gives NaN (|NaN| < 1/2 is False: the comparison is turned round).
    return np.where(np.isnan(w), w, np.where(~(np.abs(u) >= 0.5), np.log1p(u), np.log(w)))


def one_minus_sin(x: Any) -> Any:
    """1 - sin(x): cos(x)^2/(1 + sin(x)) where sin(x) > 0, where 1 - sin(x) rounds sin's digits away
    next to pi/2 (0.0 at 1.57079632679, truth 1.2e-23), and 1 - sin(x) elsewhere, where it is 1 to 2."""
    s = np.sin(x)
    c = np.cos(x)
    return np.where(s > 0, c * c / (1.0 + s), 1.0 - s)  # a NaN x makes s NaN, so 1 - s NaN


def one_less_power(u: Any, p: Any, elsewhere: Any) -> Any:
    """1 - (1 + u)^p: -expm1(p log1p(u)) where 1 + u > 0 ((1 + x)^9 - 1 and (1 + x)^(-3) - 1 were 0
    at 1e-17, cbrt(1 + x) - 1 too), and `elsewhere` (1 - (1 + u)^p computed as written: a whole p's
    power of a negative base, an odd root's) where 1 + u <= 0. Also `elsewhere` where 1 + u is past
    (1/e, e) and the power far from 1 (|p log1p(u)| >= 1): there nothing cancels, and p times the
    rounding of 1 + u costs less than expm1 carrying its argument's rounding times p log1p(u)."""
    positive = np.add(1.0, u) > 0
    logarithm = np.log1p(np.where(positive, u, 0.0))
    exponent = _product_or_infinity(p, logarithm)
    near = positive & ((np.abs(logarithm) <= 1.0) | (np.abs(exponent) < 1.0))
    return _nan_where_any(np.where(near, _one_less_exp(exponent, near), elsewhere), u, p, elsewhere)


def one_less_power_of(b: Any, u: Any, p: Any, power: Any) -> Any:
    """1 - b^p given u = b - 1 written stably and b^p as written (`power`), for a base b as good as u
    (a variable, whose b - 1 is exact next to 1): -expm1(p log b) only where that cancels
    (|p log b| < 1), with log b as log1p(u) where |u| <= 1/2 (b - 1 rounds further out: 1 - x^0.01
    at 1e-14 was 2e-5 off), 1 - b^p as written otherwise, where expm1 would carry its argument's
    rounding times p log b (46 ulps for 1 - x^9 at 1e10)."""
    positive = np.asarray(b) > 0
    near_one = np.abs(u) <= 0.5
    logarithm = np.where(near_one, np.log1p(np.where(near_one, u, 0.0)), np.log(np.where(positive, b, 1.0)))
    exponent = _product_or_infinity(p, logarithm)
    near = positive & (np.abs(exponent) < 1.0)
    # The power, not 1 - b^p: a sum in the formula would be written stably again, this kernel inside
    # itself (asin(x^9) computed 1 - x^9 twice).
    return _nan_where_any(
        np.where(near, _one_less_exp(exponent, near), np.subtract(1.0, power)), b, u, p, power
    )


def _product_or_infinity(p: Any, logarithm: Any) -> Any:
    """p log b, infinite without the overflow flag where it is past the doubles: where that is used
    (`_one_less_exp`) 1 - e^(p log b) overflows itself, or is 1, and where it is not the flag would
    count a branch not taken as an overflow (the long double run, then NaN, as `exp_difference`'s)."""
    with np.errstate(over="ignore"):
        return np.multiply(p, logarithm)


def _one_less_exp(exponent: Any, near: Any) -> Any:
    """1 - e^exponent where `near`, 0 elsewhere: expm1 of a branch not taken raises no overflow; 0 -
    expm1 is +0.0 where e^exponent is 1, as 1 - 1 is (-expm1(0) is -0.0: 1/(1 - x^3) at 1 was -inf)."""
    return 0.0 - np.expm1(np.where(near, exponent, 0.0))


def one_plus_power(u: Any, p: Any, whole: Any) -> Any:
    """(1 + u)^p: exp(p log1p(u)) where |u| < 1/2, where 1 + u rounds away digits of u that a large p
    multiplies ((1 + 1/x)^x at 1e17 was 1.0, truth e), `whole` ((1 + u)^p as written) elsewhere."""
    near = ~(np.abs(u) >= 0.5)  # a NaN u is near: exp(p log1p(NaN)) is NaN
    result = np.where(near, np.exp(np.multiply(p, np.log1p(np.where(near, u, 0.0)))), whole)
    return _nan_where_any(result, p, whole)


def exp_difference(a: Any, b: Any, d: Any) -> Any:
    """e^a - e^b given d = a - b as a rule wrote it (exactly, where a and b share terms: e^x - e^-x
    was 0.0 at 1e-17): -e^a expm1(-d) where d > 0, e^b expm1(d) elsewhere, so neither e^a nor e^b
    is multiplied by a number larger than 1."""
    # Each branch's expm1 only where it is taken: the other's overflows where |d| is large (expm1(2e4),
    # past long double too), and that flag made the long double run of log(exp(x) + exp(-x))' at 1e4
    # count as lost: NaN, truth 1.
    positive = d > 0
    above = -np.exp(a) * np.expm1(np.negative(np.where(positive, d, 0.0)))
    result = np.where(positive, above, np.exp(b) * np.expm1(np.where(positive, 0.0, d)))
    return _nan_where_any(result, a, b)


def atan_complement(u: Any) -> Any:
    """pi/2 - atan(u): atan(1/u) where u > 0, where atan(u) nears pi/2 (pi/2 - atan(x) was 0.0 at
    1e17, 8e-8 off at 1e10), pi/2 - atan(u) elsewhere, where it is pi/2 to pi."""
    positive = u > 0
    return np.where(
        positive, np.arctan(np.divide(1.0, np.where(positive, u, 1.0))), 0.5 * math.pi - np.arctan(u)
    )


def log_cosh(u: Any) -> Any:
    """log(cosh(u)) as |u| + log1p(e^-2|u|) - log 2 (cosh is past long double from 11357 on), and
    as log1p(2 sinh(u/2)^2) below 1, where that form cancels (log(cosh(x)) at 1e-9 is 5e-19)."""
    a = np.abs(u)
    near = a < 1.0
    half = np.sinh(np.where(near, 0.5 * a, 0.0))
    return np.where(near, np.log1p(2.0 * half * half), a + np.log1p(np.exp(-2.0 * a)) - _LN2)


def log_sinh(u: Any) -> Any:
    """log(sinh(u)) as u + log(-expm1(-2u)) - log 2: NaN below 0, where sinh(u) is, and -inf at 0."""
    return u + np.log(np.negative(np.expm1(-2.0 * u))) - _LN2


def sqrt(u: Any) -> Any:
    """The square root with an unsigned zero: IEEE's sqrt(-0.0) is -0.0, and a -0.0 made by a
    negation (-x at x = 0) then gave infinite derivatives the sign of no side: d/dx sqrt(-x) at 0,
    -1/(2 sqrt(-x)), came out +inf where it tends to -inf (a hunt, 2026-12-05)."""
    return unsigned_zero(np.sqrt(u))


def taylor_near(  # noqa: PLR0917 - generated code calls kernels with positional arguments
    u: Any, reach: Any, direct: Any, coefficients: Any, exact: Any = True, side: Any = 0, out: Any = None
) -> Any:
    """`direct`, a formula of u, except where |u| < `reach`: there the formula's Taylor polynomial
    at 0, by `coefficients` of rising degree (`removable`: the formula cancels there). At u = 0 itself
    the formula stays if the point is `exact` (0/0 as written: NaN), else the polynomial gives it.
    A `side` of 1 or -1: only where u has that sign (the formula has no real value on the other).
    `out`: the caller's output, where `direct` may have been computed (`destinations.PATCHING`)."""
    u = np.asarray(u)
    if isinstance(direct, np.ndarray) and u.ndim == 1 and direct.shape == u.shape and direct.dtype == u.dtype:
        # Written in place: the caller's output, or a temporary of the generated code, which nothing
        # else holds when the only references are this frame's and getrefcount's own.
        owned = direct is out or _only_in_caller(direct)
        return _taylor_near_column(u, reach, direct, coefficients, exact=exact, side=side, owned=owned)
    near = (np.abs(u) < reach) & ((u != 0) | (not exact))
    if side:
        near &= np.sign(u) == side
    if not near.any():
        return direct
    shape = np.broadcast_shapes(u.shape, np.shape(direct))
    near = np.broadcast_to(near, shape)
    values = np.zeros(shape, dtype=u.dtype)
    with np.errstate(under="ignore"):  # see `_taylor_near_column`
        values[near] = removable.horner(coefficients, np.broadcast_to(u, shape)[near])
    return np.where(near, values, direct)


def _taylor_near_column(
    u: FloatArray, reach: Any, direct: FloatArray, coefficients: Any, *, exact: Any, side: Any, owned: bool
) -> FloatArray:
    """`taylor_near` of a column and a formula's column of the same length and precision, in one pass
    over u and work only where it is near 0: the generic form's masks, zeros and `np.where` took four
    times what the whole formula did (the cubic x^3 - 2x + 1, near its root at 1, bench/PROFILE.md).
    `direct` is written in place if `owned`, else copied first."""
    points = np.flatnonzero(np.abs(u) < reach)
    if points.size == 0:
        return direct
    near = u[points]
    if exact:
        keep = near != 0
        points, near = points[keep], near[keep]
    if side:
        keep = np.sign(near) == side
        points, near = points[keep], near[keep]
    if points.size == 0:
        return direct
    result = direct if owned else direct.copy()
    # A term past the first underflowing is a term too small to count, not a value to compute again
    # in long double (`widening`).
    with np.errstate(under="ignore"):
        result[points] = removable.horner(coefficients, near)
    return result


# References to an array only the kernel calling `_only_in_caller` holds: its parameter's, this
# function's parameter's and `sys.getrefcount`'s.
_ONLY_IN_CALLER = 3


def _only_in_caller(array: np.ndarray) -> bool:
    """Whether the calling kernel's argument is a temporary of the generated code that nothing else
    holds (a kernel may then write its result into it)."""
    return sys.getrefcount(array) <= _ONLY_IN_CALLER and array.base is None and array.flags.writeable


def unsigned_zero(value: Any) -> Any:
    """`value` with +0.0 for -0.0: a polynomial written as the product of its factors at its roots
    (`polynomial_roots`) is -0.0 at a root wherever the other factors' product is negative, where the
    sum as written was +0.0, and 1/(x^2 - 4x + 3) at 1 came out -inf (+inf as written). Added in
    place to a temporary only this call holds (the product always is one)."""
    if isinstance(value, np.ndarray) and value.ndim and _only_in_caller(value):
        return np.add(value, 0.0, out=value)
    return np.add(value, 0.0)


def add_constant(rest: Any, high: Any, low: Any) -> Any:
    """rest + c for a constant c no double holds, as high + low (its nearest double, and what is
    left): high first, so where rest is next to -c their sum is exact and low keeps c's next digits
    (`x - pi` at the double nearest pi was 0.0, truth -1.2e-16; `1/(x - 1/3)` there inf). The
    second addition is made in the first's fresh array: a polynomial's factors at its irrational
    roots call this once a factor (`polynomial_roots`)."""
    total = np.add(rest, high)
    if isinstance(total, np.ndarray) and total.ndim:
        return np.add(total, low, out=total)
    return np.add(total, low)


def past_exponentials(v: Any, value: Any, below: Any, above: Any) -> Any:
    """`value`, a function of e^v; where e^|v| is past the doubles or `value` is not finite, the same
    function in powers of e^v (`below`, for v <= 0) or of e^-v (`above`), each at most 1, where that
    is finite. There `value` overflows or cancels (in long double too: a sum of terms of x^3 at
    -2000, 6.00000001 where the form in e^x is 6), and the form is its leading terms; a right inf
    stays, as does a NaN that the long double run mends."""
    other = np.where(np.less_equal(v, 0), below, above)
    taken = (~np.isfinite(value) | np.greater(np.abs(v), _LOG_LARGEST)) & np.isfinite(other)
    return np.where(taken, other, value)


_LOG_LARGEST = math.log(np.finfo(np.float64).max)  # 709.78: e^v is past the doubles beyond it


def apart(value: Any) -> Any:
    """`value` itself, a name the code generator's shared subexpressions do not look through."""
    return value


def finite_or(value: Any, otherwise: Any) -> Any:
    """`value` where it is finite, `otherwise` (the same function computed another way, in a form
    that may itself overflow where `value` does not) elsewhere."""
    return np.where(np.isfinite(value), value, otherwise)


def infinite_or(value: Any, otherwise: Any) -> Any:
    """`value`, and `otherwise` (the same function computed another way) where `value` is infinite:
    a NaN stays (no real value there, which the other way may not see)."""
    return np.where(np.isinf(value), otherwise, value)


def nearer_one(s: Any, near_zero: Any, near_one: Any) -> Any:
    """One function in two forms, by the value of a logistic s in [0, 1]: `near_one` where s is above
    1/2 (written in powers of 1 - s, what cancels there), `near_zero` elsewhere (where s is NaN too:
    that form holds s, and is NaN there with it)."""
    return np.where(np.greater(s, 0.5), near_one, near_zero)


def log_power(base: Any, exponent: Any) -> Any:
    """log(base^exponent): exponent log|base| where base > 0 or the exponent is even (a negative base's
    power is positive there: log(x^x) at -12000 was -inf, truth -112711.9), the power's own log
    elsewhere (0 and 1 at a zero base, NaN where the power is negative or has no real value)."""
    logged = (base > 0) | ((base < 0) & (np.mod(exponent, 2.0) == 0))
    magnitude = np.log(np.abs(np.where(logged, base, 1.0)))
    return np.where(logged, exponent * magnitude, np.log(power(np.where(logged, 1.0, base), exponent)))


def log_abs_sinh(u: Any) -> Any:
    """log|sinh(u)|, as `log_sinh` of |u|."""
    return log_sinh(np.abs(u))


def log_signed(sign: Any, magnitude: Any) -> Any:
    """The log of a value of this `sign` and log-magnitude: the magnitude where positive, -inf where
    0, NaN where negative (no real log)."""
    return _nan_where_any(np.where(sign > 0, magnitude, np.where(sign == 0, -math.inf, math.nan)), magnitude)


def log_difference_exp(high: Any, low: Any) -> Any:
    """log(e^high - e^low): high + log(-expm1(low - high)), -inf where they are equal (and finite),
    NaN below."""
    above = high > low
    gap = np.where(above, low - high, -1.0)
    equal = (high == low) & np.isfinite(high)
    return np.where(above, high + np.log(np.negative(np.expm1(gap))), np.where(equal, -math.inf, math.nan))


def log_signed_sum_exp(*logs_and_signs: Any) -> Any:
    """log(s1 e^l1 + s2 e^l2 + ...) given l1, s1, l2, s2, ... (logs of magnitudes, signs; a last sign
    left out is 1): the largest log plus the log of the sum scaled by it, NaN where the sum is
    negative (or a sign NaN), -inf where it is 0. For sums of terms of unknown signs past the doubles
    (log(e^x + x) at 1e5 was inf)."""
    logs, signs = logs_and_signs[0::2], [*logs_and_signs[1::2], 1.0]
    largest = functools.reduce(np.maximum, logs)
    finite = np.isfinite(largest)
    shift = np.where(finite, largest, 0.0)
    scaled = sum(sign * np.exp(log - shift) for log, sign in zip(logs, signs, strict=False))
    result = np.where(finite, shift + np.log(np.where(scaled > 0, scaled, np.nan)), largest)
    result = np.where(finite & (scaled == 0), -math.inf, result)
    return _nan_where_any(result, *signs)


def log_sum_exp(*logs: Any) -> Any:
    """log(e^a + e^b + ...) given a, b, ... (numpy's logaddexp, pairwise: exact where one dominates)."""
    total = logs[0]
    for log in logs[1:]:
        total = np.logaddexp(total, log)
    return total


def log_sum_exp_difference(c: Any, u: Any, v: Any, d: Any) -> Any:
    """log(e^c + e^u) - log(e^c + e^v) given d = u - v as a rule wrote it: log1p(expm1(d)/(1 +
    e^(c - v))) where |d| < 1/2, where the two nearly cancel (softplus(-x) - softplus(x), which is
    -x, was 5e-9 off at 1e-8, and so was binary cross-entropy's partial in its label; an independent
    hunt, 2026-12-07), as written elsewhere. Past e^709 the quotient is 0, as the difference is
    then."""
    near = np.abs(d) < 0.5
    quotient = np.expm1(np.where(near, d, 0.0)) / (1.0 + np.exp(c - v))
    result = np.where(near, np.log1p(quotient), log_sum_exp(c, u) - log_sum_exp(c, v))
    return _nan_where_any(result, c, u, v, d)


def atan_less_quarter(u: Any, less: Any) -> Any:
    """atan(u) - pi/4 given u - 1 written stably (`less`): atan((u - 1)/(u + 1)) where u > -1, where
    the two cancel next to 1 (atan(x) - pi/4 at 1 + 1e-10 was 5e-18 off), atan(u) - pi/4 elsewhere."""
    above = (u > -1) & (u < math.inf)
    result = np.where(
        above, np.arctan(less / np.where(above, less + 2.0, 1.0)), np.arctan(u) - 0.25 * math.pi
    )
    return _nan_where_any(result, u, less)


def atan2_less(y: Any, x: Any, quarters: int) -> Any:
    """atan2(y, x) - quarters pi/2 (quarters 1, -1, 2 or -2), without the constant where the angle
    nears it (atan2(y, x) - pi at (-1, 1e-10) was 1.3e-6 off, atan2(y, x) - pi/2 at (1e-9, 1)
    8e-8; an independent hunt, 2026-12-07): atan2(y, x) - pi/2 is -atan2(x, y) where y > 0, and
    atan2(y, x) + pi/2 is atan2(x, -y) where y < 0; atan2(y, x) - pi is -atan2(y, -x) where
    x < 0 <= y, and so is atan2(y, x) + pi where x < 0 and y < 0. Elsewhere the two differ by pi/2
    or more, and the difference is as written (`atan2`: -0.0 is 0, the origin NaN)."""
    y = np.add(y, 0.0)
    if abs(quarters) == 1:
        near, shifted = quarters * y > 0, np.negative(quarters * np.arctan2(x, quarters * y))
    else:
        near, shifted = (x < 0) & ((y >= 0) if quarters > 0 else (y < 0)), np.negative(np.arctan2(y, -x))
    return np.where(near, shifted, atan2(y, x) - quarters * 0.5 * math.pi)


def acot_complement(u: Any) -> Any:
    """pi/2 - acot(u): atan(u) where u > 0, where acot(u) nears pi/2 (pi/2 - acot(x) was 0.0 at 1e-17),
    pi/2 - acot(u) elsewhere (0 at 0, where acot is pi/2; pi/2 to pi below)."""
    return np.where(u > 0, np.arctan(u), 0.5 * math.pi - acot(u))


def acot_past_half_pi(u: Any) -> Any:
    """acot(u) + pi/2: -atan(u) where u < 0, where acot(u) nears -pi/2, acot(u) + pi/2 elsewhere (pi at 0)."""
    return np.where(u < 0, np.negative(np.arctan(u)), acot(u) + 0.5 * math.pi)


def sin_half_turns(r: Any, offset: Any = 0.0, scale: Any = 1.0, period: Any = 2.0, low: Any = 0.0) -> Any:
    """sin(pi (scale r + offset)), with r reduced exactly (modulo `period`, a whole number of turns
    once scaled) before it is scaled, the offset (a constant in [0, 2), and `low`, what its double
    left out) added exactly and pi multiplies: sin(pi*x) at 1 was 1.2e-16 (0), and at 1e6 + 0.3
    1.6e-10 off, as pi*x rounds to a double first. t = r mod 2 and t - k/2 for the nearest whole k
    are exact; pi times what is left, at most 1/4, loses nothing (`_quadrant`)."""
    turn, quarter = _quadrant(r, offset, scale, period, low)
    return _by_quadrant(quarter, *_sine_cosine(turn))


def cos_half_turns(r: Any, offset: Any = 0.0, scale: Any = 1.0, period: Any = 2.0, low: Any = 0.0) -> Any:
    """cos(pi (scale r + offset)), reduced as `sin_half_turns` (cos(pi*x) at 0.5 was 6.1e-17, not 0)."""
    turn, quarter = _quadrant(r, offset, scale, period, low)
    return _by_quadrant(np.mod(quarter + 1.0, 4.0), *_sine_cosine(turn))


def tan_half_turns(r: Any, offset: Any = 0.0, scale: Any = 1.0, period: Any = 2.0, low: Any = 0.0) -> Any:
    """tan(pi (scale r + offset)), reduced as `sin_half_turns`, and exactly +-1 at odd quarters, where the
    ratio of sine and cosine was 0.9999999999999999 (tan(pi*x) at 0.25: tester round 12)."""
    turn, quarter = _quadrant(r, offset, scale, period, low)
    quarter_turn = np.abs(turn) == 0.25 * math.pi
    tangent = np.where(quarter_turn, np.sign(turn), np.tan(turn))
    return np.where(np.mod(quarter, 2.0) == 0, tangent, np.divide(-1.0, tangent))


def _quadrant(r: Any, offset: Any, scale: Any, period: Any, low: Any) -> tuple[Any, Any]:
    """(pi f, k mod 4) where scale r + offset + low = 2m + k/2 + f, |f| <= 1/4 (and a rounding): r
    modulo the period (a whole number of turns once scaled: 2q for scale p/q) and rint are exact,
    scale times what is left is known to twice a double's digits (`_scaled_turns`: sin(pi*x/3) at
    1e15 + 0.5 was 0.5 off, as x/3 rounds), and the offset is added exactly (its rounding error
    carried, with `low`, what the offset's double left out), so next to a pole or a zero what is
    left keeps its digits."""
    t, t_low = _scaled_turns(np.fmod(r, period), scale, period)
    s, error = _two_sum(t, offset)
    k = np.rint(np.multiply(s, 2.0))
    f = np.add(np.subtract(s, np.multiply(k, 0.5)), np.add(np.add(error, low), t_low))
    return np.multiply(math.pi, f), np.mod(k, 4.0)


def _two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """(s, e) with s = a + b rounded and s + e = a + b exactly (Knuth)."""
    s = np.add(a, b)
    added = np.subtract(s, a)
    return s, np.add(np.subtract(a, np.subtract(s, added)), np.subtract(b, added))


def _split(a: Any) -> tuple[Any, Any]:
    """a as high + low, halves of 26 and 27 bits (Veltkamp's split, Dekker's constant 2^27 + 1):
    products of halves are exact."""
    spread = np.multiply(a, 134217729.0)
    high = np.subtract(spread, np.subtract(spread, a))
    return high, np.subtract(a, high)


def _scaled_turns(m: Any, scale: Any, period: Any) -> tuple[Any, Any]:
    """m p/q as two doubles (their sum good to some 2^-100 of it), for m = r mod `period` (2q) and
    scale = p/q, whole numbers below 2^40; m itself where p/q is 1, m scale where that is exact (q a
    power of two, p = 1). Rounded once, next to a zero or pole of sin(pi*x/3) what is left after the
    nearest half-turn was the rounding's (-0.0 at 3 + 2^-51, truth -4.7e-16: an independent hunt),
    and multiplied by p/q's double, m p/q was off by up to 2p ulps of 1 (sin(pi*x*1000000001) at 0.1
    1e-8 off). So m p is four exact products of halves (`_split`; p in two of 20 bits), summed
    exactly into two doubles (each taken modulo 2q first, exactly, to keep them small); q divides
    the high one, and the remainder of that division, exact, and the low one divided by q are the
    second double."""
    q = np.multiply(period, 0.5)
    p = np.rint(np.multiply(scale, q))  # exact: p/q's double times q is within 2^-13 of p
    if np.all(p == q):
        return m, 0.0
    if np.all(p == 1) and np.all(np.frexp(q)[0] == 0.5):
        return np.multiply(m, scale), 0.0
    if np.all(p == 1):
        total, total_low = m, 0.0
    else:
        m_high, m_low = _split(m)
        p_high = np.multiply(np.floor(np.multiply(p, 2.0**-20)), 2.0**20)
        p_low = np.subtract(p, p_high)
        total, total_low = np.fmod(np.multiply(m_high, p_high), period), 0.0
        for a, b in ((m_high, p_low), (m_low, p_high), (m_low, p_low)):
            total, error = _two_sum(total, np.fmod(np.multiply(a, b), period))
            total_low = np.add(total_low, error)
    t = np.divide(total, q)
    # total - t q is exact, t being total/q rounded: with t q as a product and its error.
    product, product_error = _two_product(t, q)
    remainder = np.subtract(np.subtract(total, product), product_error)
    return t, np.divide(np.add(remainder, total_low), q)


def _two_product(a: Any, b: Any) -> tuple[Any, Any]:
    """(p, e) with p = a b rounded and p + e = a b exactly (Dekker, from `_split` halves)."""
    product = np.multiply(a, b)
    (a_high, a_low), (b_high, b_low) = _split(a), _split(b)
    error = np.subtract(np.multiply(a_high, b_high), product)
    for x, y in ((a_high, b_low), (a_low, b_high), (a_low, b_low)):
        error = np.add(error, np.multiply(x, y))
    return product, error


def _sine_cosine(turn: Any) -> tuple[Any, Any]:
    """sin and cos of pi f, |f| <= 1/4 (a little past it after a rounding), both exactly sqrt(1/2) in
    magnitude at f = +-1/4, where pi/4's rounding made them an ulp apart (sin(pi*x) + cos(pi*x) at
    -1/4 was 1.1e-16)."""
    quarter_turn = np.abs(turn) == 0.25 * math.pi
    sine = np.where(quarter_turn, np.copysign(_HALF_SQRT2, turn), np.sin(turn))
    return sine, np.where(quarter_turn, _HALF_SQRT2, np.cos(turn))


def _by_quadrant(quarter: Any, sine: Any, cosine: Any) -> Any:
    """sin(pi f + quarter pi/2): sin, cos, -sin, -cos of pi f by the quarter (NaN stays NaN)."""
    return np.where(
        quarter == 0, sine, np.where(quarter == 1, cosine, np.where(quarter == 2, -sine, -cosine))
    )


def root_less(root: Any, b: Any, difference: Any) -> Any:
    """sqrt(A) - b given difference = A - b^2 as a rule wrote it: difference/(sqrt(A) + b) where b > 0,
    where the two nearly cancel (sqrt(x^2 + 1) - x at 1e10 was 0.0, truth 5e-11), sqrt(A) - b
    elsewhere, where they add."""
    return _nan_where_any(np.where(b > 0, difference / (root + b), root - b), root, difference)


def _near(b: Any, d: Any) -> tuple[Any, Any]:
    """Where a = b + d is within half of b on the same side of 0 (a/b in [1/2, 3/2]), and d/b there
    (0 elsewhere, so nothing overflows where it is not used)."""
    near = (np.abs(d) <= 0.5 * np.abs(b)) & (b != 0)
    return near, np.divide(np.where(near, d, 0.0), np.where(near, b, 1.0))


def log_difference(a: Any, b: Any, d: Any) -> Any:
    """log(a) - log(b) given d = a - b as a rule wrote it (exactly, where a and b share terms:
    log(x + 1) - log(x) at 1e12 was 1.9e-3 off): log1p(d/b) where a/b is near 1, the two logs
    elsewhere (log1p(d/b) would round d/b next to -1 where a is far below b)."""
    near, ratio = _near(b, d)
    result = np.where(near & (b > 0), np.log1p(ratio), np.log(a) - np.log(b))
    return _nan_where_any(result, a, b, d)


def power_difference(root_a: Any, root_b: Any, b: Any, d: Any, exponent: Any) -> Any:
    """a^p - b^p given both powers (real roots where p = 1/n) and d = a - b as a rule wrote it:
    b^p expm1(p log1p(d/b)) where a/b is near 1 (cbrt(x + 1) - cbrt(x) at 1e12 was 2.6e-4 off,
    (x + 1)^2 - x^2 1.1e-5), the difference of the powers elsewhere."""
    near, ratio = _near(b, d)
    result = np.where(near, root_b * np.expm1(exponent * np.log1p(ratio)), root_a - root_b)
    return _nan_where_any(result, root_a, root_b, b, d, exponent)


def atan_difference(a: Any, b: Any, d: Any) -> Any:
    """atan(a) - atan(b) given d = a - b as a rule wrote it: atan(d/(1 + ab)) where a and b have
    the same sign (atan(x + 1) - atan(x) at 1e12 was 0.0, truth 1e-24), written (d/a)/(b + 1/a)
    where |a| >= 1 so that ab cannot overflow; the two atans elsewhere, where they add."""
    same = (np.sign(a) == np.sign(b)) & (a != 0)
    big = np.abs(a) >= 1
    a_big = np.where(same & big, a, 1.0)
    a_small = np.where(same & ~big, a, 0.0)
    b_same = np.where(same, b, 1.0)
    d_same = np.where(same, d, 0.0)
    quotient = np.where(big, (d_same / a_big) / (b_same + 1.0 / a_big), d_same / (1.0 + a_small * b_same))
    result = np.where(same, np.arctan(quotient), np.arctan(a) - np.arctan(b))
    return _nan_where_any(result, a, b, d)


def _nan_where_any(result: Any, *args: Any) -> Any:
    """`result`, NaN wherever an argument is NaN: np.where passes on one branch's arguments only."""
    for arg in args:
        if np.isnan(np.min(arg)):  # min carries NaN: one pass, no temporary, in the usual case
            result = np.where(np.isnan(arg), np.nan, result)
    return result


def asin_near_one(u: Any, less: Any, more: Any) -> Any:
    """asin(u) given 1 - u and 1 + u written stably: +-(pi/2 - 2 asin(sqrt((1 -+ u)/2))) where
    |u| > 1/2 (asin(sin(x)) at 1.5707963 was 6e-10 off: sin(x) rounds next to 1), asin(u) elsewhere."""
    half_pi = 0.5 * math.pi
    above = half_pi - 2.0 * np.arcsin(np.sqrt(less * 0.5))
    below = 2.0 * np.arcsin(np.sqrt(more * 0.5)) - half_pi
    result = np.where(u > 0.5, above, np.where(u < -0.5, below, np.arcsin(u)))
    return _nan_where_any(result, u, less, more)


def acos_near_one(u: Any, less: Any, more: Any) -> Any:
    """acos(u) given 1 - u and 1 + u written stably: 2 asin(sqrt((1 - u)/2)) where u > 1/2 (acos(tanh(x))
    at 20 was 0.0, truth 4.1e-9: tanh(20) is 1.0), pi - 2 asin(sqrt((1 + u)/2)) where u < -1/2, and
    acos(u) between (the second form was an ulp off next to 0)."""
    result = np.where(
        u > 0.5,
        2.0 * np.arcsin(np.sqrt(less * 0.5)),
        np.where(u < -0.5, math.pi - 2.0 * np.arcsin(np.sqrt(more * 0.5)), np.arccos(u)),
    )
    return _nan_where_any(result, u, less, more)


def _past_one(u: Any, less: Any, more: Any) -> Any:
    """sqrt(u^2 - 1) given 1 - u and 1 + u written stably: |u| - 1 is -(1 - u) or -(1 + u) by sign.
    Never -0.0 (+0.0 added): at u = -1 that is -(+0.0), and asec's arctan2(-0.0, -1) was -pi, not pi
    (`asec(x - 1)` at 0; an independent hunt)."""
    beyond = np.where(u > 0, np.negative(less), np.negative(more))
    return np.add(np.sqrt(beyond * (beyond + 2.0)), 0.0)


def asec_near_one(u: Any, less: Any, more: Any) -> Any:
    """asec(u) given 1 - u and 1 + u written stably (asec(cosh(x)) at 1e-9 was 0.0): as `asec`, with
    |u| - 1 from them."""
    return _nan_where_any(np.arctan2(_past_one(u, less, more), np.sign(u)), u, less, more)


def acsc_near_one(u: Any, less: Any, more: Any) -> Any:
    """acsc(u) given 1 - u and 1 + u written stably: as `acsc`, with |u| - 1 from them."""
    near = np.arctan2(np.sign(u), _past_one(u, less, more))
    return _nan_where_any(np.where(np.abs(u) > 1e150, 1.0 / u, near), u, less, more)


def atanh_near_one(u: Any, less: Any, more: Any) -> Any:
    """atanh(u) given 1 - u and 1 + u written stably: (log(1 + u) - log(1 - u))/2 where |u| >= 1/2
    (atanh(tanh(19)) was inf), atanh(u) where it keeps its digits (and a NaN u stays NaN)."""
    result = np.where(~(np.abs(u) >= 0.5), np.arctanh(u), 0.5 * (np.log(more) - np.log(less)))
    return _nan_where_any(result, less, more)


def acosh_near_one(u: Any, above: Any) -> Any:
    """acosh(u) given u - 1 written stably: log1p(d + sqrt(d (d + 2))) with d = u - 1 where u < 2
    (acosh(cosh(x)) at 1e-9 was 0.0), acosh(u) elsewhere."""
    # The other branch's d (d + 2) overflowed, and was flagged, where u is large (acosh(gamma(x))
    # at 1000, in long double: a regression hunt, 2026-12-06).
    near = np.where(u < 2, above, 0.0)
    result = np.where(u < 2, np.log1p(near + np.sqrt(near * (near + 2.0))), np.arccosh(u))
    # Below -1, d (d + 2) is positive again: acosh(x^3) at -1e5 was -inf, its value is NaN.
    return _nan_where_any(np.where(above < 0, np.nan, result), u, above)


def log_erfc(x: Any) -> Any:
    """log(erfc(x)) = log 2 + log Phi(-x sqrt 2), scipy's log_ndtr: erfc is past the doubles from
    x = 27.3 on (its log -787.9 at 28 was -inf); log1p(-erf(x)) next to 0, where the sum cancels
    (0.0 at 1e-17, truth -1.1e-17)."""
    near = np.abs(x) < 0.5
    tail = np.log(2.0) + scipy.special.log_ndtr(np.multiply(np.where(near, 1.0, x), -math.sqrt(2.0)))
    return np.where(near, np.log1p(np.negative(scipy.special.erf(np.where(near, x, 0.0)))), tail)


def _sech_squared_of(x: Any) -> Any:
    e = np.exp(-2.0 * np.abs(x))
    return 4.0 * e / np.square(1.0 + e)


_SECH_SQUARED_FROM = 2.0**-6


def coth(x: Any) -> Any:
    return 1.0 / np.tanh(x)


def asech(x: Any) -> Any:
    """log((1 + sqrt(1 - x^2)) / x) on (0, 1]: log1p form next to 1, where the value goes to 0."""
    t = np.sqrt((1.0 - x) * (1.0 + x))
    near_one = np.log1p(((1.0 - x) + t) / x)
    return np.where(x > 0.5, near_one, np.log1p(t) - np.log(x))


def acsch(x: Any) -> Any:
    a = np.abs(x)
    return np.where(a < _TINY, np.copysign(_LN2 - np.log(a), x), np.arcsinh(1.0 / x))


def acoth(x: Any) -> Any:
    """atanh(1/x) = sign(x) log1p(2 / (|x| - 1)) / 2: exact next to |x| = 1, NaN for |x| < 1."""
    a = np.abs(x)
    return np.copysign(0.5 * np.log1p(2.0 / (a - 1.0)), x)


# -------------------------------------------------------------------------------- powers, steps


def RealRoot(x: Any, n: Any) -> Any:  # noqa: N802 (the sympy class it implements)
    """Real n-th root: `np.cbrt` for n = 3, sign(x)|x|^(1/n) for odd n, NaN for x < 0 and even n.

    |x|^(1/n) carries the rounding of 1/n times log|x| (100 ulp at 1e280): one Newton step on
    r^n = |x| takes it back to about an ulp.
    """
    xs, ns = _real(x), _real(n)
    if ns.ndim == 0 and ns == 3:
        return np.cbrt(xs)
    a = np.abs(xs)
    r = a ** (1.0 / ns)
    t = r**ns
    usable = np.isfinite(t) & (t > 0)
    corrected = np.where(usable, r + r * ((a - t) / (ns * np.where(usable, t, 1.0))), r)
    magnitude = np.where(ns == 3, np.cbrt(a), np.where(ns == 2, np.sqrt(a), corrected))
    odd = np.mod(ns, 2.0) == 1.0
    return np.where(xs >= 0, magnitude, np.where(odd, -magnitude, np.nan))


def rational_power(base: Any, p: int, q: int) -> Any:
    """base^(p/q) for a p/q no double holds (1/3, 2/3, -5/6): the q-th root (`RealRoot`, about an ulp,
    exact at perfect powers) to the p-th power, NaN for a negative base (the principal power is not
    real there). |x|^(p/q) with p/q rounded carries that rounding times log|x|: floor(x^(1/3)) at
    27 was 2 and x^(2/3) at 1000 99.99999999999997 (an independent hunt, 2026-12-07)."""
    root = RealRoot(np.where(np.less(base, 0), np.nan, base), q)
    return np.where(np.isnan(root), np.nan, np.power(root, p))  # IEEE says NaN^0 = 1


def power(base: Any, exponent: Any) -> Any:
    """base^exponent with a varying exponent: NaN where either is (IEEE says NaN^0 = 1^NaN = 1), and
    for a negative base under a fractional exponent, -inf too (IEEE says (-inf)^-0.5 = 0), or an
    infinite one, whose parity no double tells (IEEE says (-0.9)^inf = 0: `(-(x^z))^((y + c)^(10^20))`
    was 0.0 where its exponent is no whole number; the fuzzer, seed 3044198182)."""
    result = np.power(base, exponent)
    fractional = (exponent != np.floor(exponent)) | np.isinf(exponent)
    undefined = np.isnan(base) | np.isnan(exponent) | ((base < 0) & fractional)
    return np.where(undefined, np.nan, result)


def fractional_power(base: Any, exponent: Any) -> Any:
    """base^p where the formula it stands for is real only for a base >= 0: p a constant that only
    rounds to a whole number (2 + 10^-20 is 2.0, 10^20 + 1/2 is 1e20; x^(2 + 10^-20) at -2 was 4.0),
    or principal powers whose exponents add up to p (sqrt(b)*b^(3/2)). NaN for a negative base,
    `power` elsewhere."""
    return np.where(np.less(base, 0), np.nan, power(base, exponent))


def odd_power(x: Any, n: Any) -> Any:
    """x^n for an odd integer n past 2^53, which a double cannot hold (it rounds to an even one)."""
    return np.copysign(np.abs(x) ** n, x)


def piecewise(*pairs: tuple[Any, Any]) -> Any:
    """The value of the first (condition, value) pair whose condition holds; NaN where none does."""
    conditions = [np.asarray(condition, dtype=bool) for condition, _ in pairs]
    values = [np.asarray(value, dtype=np.float64) for _, value in pairs]
    return np.select(conditions, values, default=np.nan)


def Min(*args: Any) -> Any:  # noqa: N802
    return functools.reduce(np.minimum, args)


def Max(*args: Any) -> Any:  # noqa: N802
    return functools.reduce(np.maximum, args)


def Heaviside(x: Any, h0: Any = 0.5) -> Any:  # noqa: N802
    """NaN where h0 is, at every x: an argument without a value leaves the whole without one
    (numpy's heaviside reads h0 only at 0)."""
    return np.where(np.isnan(h0), np.nan, np.heaviside(x, h0))


def DiracDelta(x: Any, order: Any = 0) -> Any:  # noqa: N802
    """DiracDelta and its derivatives: 0 away from 0, NaN (no finite value) at 0 and of NaN, and
    where the order is NaN."""
    xs = _real(x)
    return np.where((xs == 0) | np.isnan(order), np.nan, xs * 0.0)


def re(x: Any) -> Any:
    return np.positive(x)


def im(x: Any) -> Any:
    return np.where(np.isnan(x), np.nan, 0.0)  # 0 on the reals (and their infinities); NaN stays NaN


def arg(x: Any) -> Any:
    """0 or pi by the sign; NaN at 0, as sympy's arg(0) (numpy's angle of -0.0 would be pi)."""
    return np.where(x == 0, np.nan, np.arctan2(0.0, x))


# -------------------------------------------------------------------------------------- special


def erfc(x: Any) -> Any:
    """erfc(x) = erfcx(x) e^(-x^2) for x > 1/2, with x^2 split exactly: scipy's erfc rounds x^2 first,
    which costs 450 ulp at x = 23.5 (e^(-x^2) multiplies the error of x^2 by x^2)."""
    xs = _array(x)
    high, low = _split(xs)  # high has 26 bits, so high^2 is exact
    tail = scipy.special.erfcx(xs) * np.exp(-high * high) * np.exp(-low * (xs + high))
    # Past 27.3 erfc is below every double; there the split's factors are 0 and inf (NaN).
    return np.where(xs > _ERFC_ZERO, 0.0, np.where(xs > 0.5, tail, scipy.special.erfc(xs)))


_ERFC_ZERO = 27.5


def loggamma(x: Any) -> Any:
    """log(gamma(x)), the principal branch sympy defines: real for x > 0 only (log|gamma| is not it).

    Next to its zeros at 1 and 2 it is the Taylor series in x - 1 (or x - 2), exact in its argument:
    scipy's gammaln keeps an absolute, not a relative, error there.
    """
    xs = _array(x)
    near_one, near_two = (xs > 0.5) & (xs <= 1.5), (xs > 1.5) & (xs < 2.5)
    series = np.where(
        near_one,
        np.polynomial.polynomial.polyval(xs - 1.0, _LGAMMA_AT_1),
        np.polynomial.polynomial.polyval(xs - 2.0, _LGAMMA_AT_2),
    )
    result = np.where(near_one | near_two, series, scipy.special.gammaln(xs))
    # Below 2^-60 it is -log(x) - euler*x + O(x^2), -log(x) in doubles; scipy's is inf below 1e-308.
    result = np.where((xs > 0) & (xs < _LGAMMA_TINY), -np.log(np.where(xs > 0, xs, 1.0)), result)
    return np.where(xs < 0, np.nan, result)


def one_minus_gamma(x: Any, shift: Any) -> Any:
    """1 - gamma(x + shift), `shift` a whole number, without the cancellation next to gamma's ones at
    1 and 2: there it is -expm1 of log gamma's series (`loggamma`) in x + shift - 1 (or - 2), which
    x + (shift - 1) gives exactly, where x + shift is rounded (gamma(x) - 1 at 1.0000001 was 2e-9
    off; factorial(x) - 1 at 1e-10 would have lost six digits to 1 + x)."""
    xs, shifts = _array(x), _array(shift)
    whole, near_one, near_two = shifted_gamma_argument(xs, shifts)
    result = 1.0 - gamma(whole)
    if not (near_one | near_two).any():
        return result
    offset = np.where(near_one, xs + (shifts - 1.0), xs + (shifts - 2.0))
    series = np.where(
        near_one,
        np.polynomial.polynomial.polyval(offset, _LGAMMA_AT_1),
        np.polynomial.polynomial.polyval(offset, _LGAMMA_AT_2),
    )
    return np.where(near_one | near_two, -np.expm1(series), result)


def shifted_gamma_argument(xs: Any, shifts: Any) -> tuple[Any, Any, Any]:
    """x + shift (-0.0 kept: -0.0 + 0.0 is 0.0, and gamma(-0.0) is -inf), and where it is next to 1
    and next to 2: the ranges of log gamma's series (`one_minus_gamma`)."""
    whole = np.where(shifts == 0, xs, xs + shifts)
    return whole, (whole > 0.5) & (whole <= 1.5), (whole > 1.5) & (whole < 2.5)


def _lgamma_series(offset: int, terms: int = 64) -> tuple[float, ...]:
    """Coefficients of log gamma(offset + e) in e: -gamma e + sum (-1)^k (zeta(k) - [offset = 2]) e^k / k."""
    ctx = reference.context(_PREC)
    first = -ctx.euler + (1 if offset == 2 else 0)
    rest = [(-1) ** k * (ctx.zeta(k) - (1 if offset == 2 else 0)) / k for k in range(2, terms)]
    return (0.0, float(first), *(float(c) for c in rest))


def log_gamma(x: Any) -> Any:
    """log(gamma(x)) on the reals without gamma itself, which is past every double from 171.6 (past
    long double from 1755: log(gamma(2000.5)) was inf, its value 13202.7; `numeric_code.stable`):
    `loggamma` for x > 0, log|gamma(x)| where gamma(x) is positive below 0, NaN where it is negative."""
    xs = _array(x)
    below = np.where(gamma_sign(xs) > 0, scipy.special.gammaln(xs), np.nan)
    return np.where(xs > 0, loggamma(np.abs(xs)), below)


def log_abs_gamma(x: Any) -> Any:
    """log|gamma(x)| without gamma, as `log_gamma`: gamma(-200.5) is 0.0 in doubles, its log -864.7."""
    xs = _array(x)
    return np.where(xs > 0, loggamma(np.abs(xs)), scipy.special.gammaln(xs))


_LGAMMA_TINY = 2.0**-60
_LGAMMA_AT_1 = _lgamma_series(1)
_LGAMMA_AT_2 = _lgamma_series(2)


def _at_pole(x: Any) -> Any:
    """Where Gamma has a pole: 0, -1, -2, ..."""
    return (x <= 0) & (x == np.floor(x))


def beta(a: Any, b: Any) -> Any:
    """`_beta`, telling the underflow handler where it is below the normal doubles, which its own
    arithmetic (errors ignored) does not: beta(1000, 1000) is 1e-602, and beta(x, x)*4^x there was
    0.0, truth 0.112 (an independent hunt, 2026-12-06); the long double run computes it
    (`widening._beta`)."""
    result = _beta(a, b)
    _reported_if_below_normal(result)
    return result


def _beta(a: Any, b: Any) -> Any:
    """Gamma(a) Gamma(b) / Gamma(a + b): scipy's, but where one argument is past 10 by log-beta with
    Stirling's corrections (as R's lbeta): scipy's large-argument branch loses 9 digits
    (beta(9e5, 1) off by 1.6e-9 relative, beta(7e5, -0.5) too). The other argument may be negative
    (off its poles) while the sum stays past half the large one; Gamma of it carries the sign.

    Where an argument or the sum is below -171, Gamma of it is no normal double (|Gamma(-171.5)| is
    5e-310) and scipy multiplies it out: beta(-171.5, 2) was 0.0 for 1/(a(a + 1)) = 3.4e-5. There it
    is sign * exp(log|Gamma(a)| + log|Gamma(b)| - log|Gamma(a + b)|), as scipy itself does past
    171.6 (the logs' rounding, some 700 ulp of 1, makes it good to 1e-13)."""
    a, b = np.broadcast_arrays(_array(a), _array(b))
    small, large = np.minimum(a, b), np.maximum(a, b)
    # scipy answers inf for beta(NaN, -4), the pole of the other argument: NaN has no value.
    ordinary = np.where(np.isnan(a) | np.isnan(b), np.nan, scipy.special.beta(a, b))
    pole = _at_pole(small)
    total = a + b
    subnormal = (np.minimum(small, total) < _GAMMA_NORMAL_FROM) & ~pole
    if np.any(subnormal):
        with np.errstate(all="ignore"):
            signs = gamma_sign(a) * gamma_sign(b) * gamma_sign(total)
            logs = scipy.special.gammaln(a) + scipy.special.gammaln(b) - scipy.special.gammaln(total)
            # At a pole of the sum (and of neither argument) beta is 0: 1/Gamma(a + b) is.
            value = np.where(_at_pole(total), 0.0, signs * np.exp(logs))
            ordinary = np.where(subnormal, value, ordinary)
    use = (large >= _STIRLING_FROM) & (small > -0.5 * large) & ~pole
    if not np.any(use):
        return ordinary
    with np.errstate(all="ignore"):
        p, q = np.where(use, small, 1.0), np.where(use, large, _STIRLING_FROM)
        share = p / (p + q)
        tail = _stirling_correction(q) - _stirling_correction(p + q)
        both_large = (
            -0.5 * np.log(q)
            + _LN_SQRT_2PI
            + _stirling_correction(np.maximum(p, _STIRLING_FROM))
            + tail
            + (p - 0.5) * np.log(share)
            + q * np.log1p(-share)
        )
        # log(Gamma(q) / Gamma(p + q)); Gamma(p) itself is finite for p < 10 off its poles.
        ratio = tail + p - p * np.log(p + q) + (q - 0.5) * np.log1p(-share)
        one_large = scipy.special.gamma(np.minimum(p, _STIRLING_FROM)) * np.exp(ratio)
        value = np.where(p >= _STIRLING_FROM, np.exp(both_large), one_large)
        return np.where(use, value, ordinary)


_STIRLING_FROM = 10.0
_GAMMA_NORMAL_FROM = -171.0  # below, |Gamma| leaves the normal doubles (off its poles); scipy is exact above
_LN_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# B_2k / (2k (2k - 1)) for k = 1..7: the terms of log Gamma(x) - Stirling's formula in 1/x^(2k-1);
# the next is below 3e-17 from x = 10 on.
_STIRLING_TERMS = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)


def _stirling_correction(x: FloatArray) -> FloatArray:
    """log Gamma(x) - ((x - 1/2) log x - x + log sqrt(2 pi)) for x >= 10, by its asymptotic series."""
    inverse = 1.0 / x
    square = inverse * inverse
    total = np.zeros_like(x)
    for coefficient in reversed(_STIRLING_TERMS):
        total = total * square + coefficient
    return np.asarray(total * inverse, dtype=np.float64)


def gamma(x: Any) -> Any:
    """scipy's gamma, telling the underflow handler where it is past the doubles towards 0, which
    scipy does not flag: below -171.7 (gamma(-172.5) is -1.1e-312; 1e300*gamma(x) there was -0.0),
    so that the long double run computes it (`widening._gamma`)."""
    result = scipy.special.gamma(x)
    if _reported_if_below_normal(result):
        # With its sign: scipy's is -0.0 at -999999999999999.5, where gamma is positive (1/gamma(x)
        # was -inf there; an independent hunt, 2026-12-06).
        result = np.where(result == 0, np.copysign(0.0, gamma_sign(x)), result)
    return result


_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)


def _reported_if_below_normal(result: Any) -> bool:
    """Whether some value is below the normal doubles, the underflow handler told (scipy's gamma and
    our beta say nothing of it): the long double run computes such points again."""
    below = bool(np.fmin.reduce(np.abs(result), axis=None) < _SMALLEST_NORMAL)  # fmin passes NaN over
    if below:
        overflow.report("underflow")
    return below


def gamma_sign(x: Any) -> Any:
    """The sign of gamma(x), where gamma itself is past the doubles (gamma(-2000.5) is 0.0, and
    sign(gamma(x)) there was 0, truth -1; an independent hunt, 2026-12-06): 1 for x > 0; between the
    poles below 0, -1 where floor(x) is odd; NaN at the poles, 0 and the negative integers. Not
    scipy's gammasgn, which says 1 at 0 and loses the parity past 1e15 (1/gamma(x) at
    -1000000000000000.5 was +inf; a second hunt)."""
    xs = _array(x)
    with np.errstate(invalid="ignore"):
        below = np.where(np.fmod(np.floor(xs), 2.0) == 0, 1.0, -1.0)
        return np.where(xs > 0, 1.0, np.where((xs < 0) & (xs != np.floor(xs)), below, np.nan))


def factorial(x: Any) -> Any:
    # scipy.special.factorial answers 0 for every negative argument, where gamma(x + 1), which the
    # derivative of factorial is written in, has its poles (negative integers: NaN) and real values.
    return gamma(np.add(x, 1.0))


def polygamma(n: Any, x: Any) -> Any:
    """The n-th derivative of digamma; sympy's continuation (Espinosa and Moll) for other orders."""
    orders, xs = np.broadcast_arrays(_array(n), _array(x))
    result = np.full(orders.shape, np.nan)
    integer = (orders == np.floor(orders)) & (orders >= 0)
    scipy_orders = integer & (orders <= MAX_SCIPY_ORDER)
    positive = scipy_orders & (xs > 0)
    result[positive] = scipy.special.polygamma(orders[positive].astype(np.int64), xs[positive])
    negative = scipy_orders & (xs < 0) & (xs != np.floor(xs))
    result[negative] = _polygamma_reflected(orders[negative], xs[negative])
    rest = ~scipy_orders & np.isfinite(orders) & np.isfinite(xs)
    result[rest] = _pointwise("polygamma", orders[rest], xs[rest])
    return result if result.ndim else result[()]


def _polygamma_reflected(orders: FloatArray, xs: FloatArray) -> FloatArray:
    """psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) P_n(cot(pi x)) for x < 0 (scipy's time grows in |x|)."""
    result = np.empty_like(xs)
    c = _cot_pi(xs)
    for order in np.unique(orders):
        chosen = orders == order
        k = int(order)
        polynomial = _horner(c[chosen], reference.cot_derivative_polynomial(k))
        mirrored = scipy.special.polygamma(k, 1.0 - xs[chosen])
        result[chosen] = (-1.0) ** k * mirrored - math.pi ** (k + 1) * polynomial
    return result


def _horner(x: FloatArray, coefficients: Sequence[int]) -> FloatArray:
    """The polynomial of `coefficients` (rising degree) at x, infinite where x is: numpy's polyval
    adds x*0 first, NaN at x = ±inf (digamma(-1e-310), past the doubles, was NaN, not +inf; an attack
    hunt, 2026-12-07)."""
    result = np.full_like(x, float(coefficients[-1]))
    for coefficient in reversed(coefficients[:-1]):
        result = result * x + float(coefficient)
    return result


def _cot_pi(x: FloatArray) -> FloatArray:
    """cot(pi x) to an ulp or two: reduced exactly to r = x - round(x), and next to a half-integer
    written as tan(pi s) with s = 1/2 - |r| (cos(pi r) there is small and pi r carries an absolute error)."""
    r = x - np.round(x)
    s = 0.5 - np.abs(r)
    return np.where(
        np.abs(r) <= 0.25, np.cos(np.pi * r) / np.sin(np.pi * r), np.copysign(np.tan(np.pi * s), r)
    )


def _sin_pi(x: FloatArray) -> FloatArray:
    """sin(pi x), reduced exactly: relative accuracy next to every integer (zeta's trivial zeros)."""
    k = np.round(x)
    return np.where(np.mod(k, 2.0) == 0, 1.0, -1.0) * np.sin(np.pi * (x - k))


def digamma(x: Any) -> Any:
    """scipy's psi, and the reflection formula with an accurate cot(pi x) left of 0."""
    xs = _array(x)
    left = (xs < 0) & (xs != np.floor(xs))
    if not np.any(left):
        return scipy.special.psi(xs)
    result = scipy.special.psi(xs)
    result[left] = _polygamma_reflected(np.zeros(int(np.count_nonzero(left))), xs[left])
    return result


def digamma_step(u: Any, w: Any) -> Any:
    """digamma(u + w) - digamma(u) without subtracting the two (`numeric_code.stable`: sympy writes
    d/dx beta(x, y) with digamma(x) - digamma(x + y), which lost 3 digits at (30, 1e-12)).

    Where u and u + w are positive: both are carried past _STEP_TO by digamma's recurrence (each
    step adds w/((u + k)(u + w + k)), no cancellation), and there the asymptotic series is taken as
    a difference, each term with log1p and expm1 of w/U: log1p(w/U) + w/(2U(U + w)) -
    sum B_2k/(2k) U^-2k expm1(-2k log1p(w/U)). Where both are below 1, the reflection formula
    takes them to 1 - u and 1 - u - w, plus pi sin(pi w)/(sin(pi (u + w)) sin(pi u)), the
    difference of the cotangents (beta's partial at (-0.5, 1e-12) was 3.4e-5 off). Elsewhere the
    two digammas, subtracted."""
    us, ws = np.broadcast_arrays(_array(u), _array(w))
    with np.errstate(all="ignore"):
        finite = np.isfinite(us) & np.isfinite(ws)
        reflected = finite & (np.maximum(us, us + ws) < 1) & (np.minimum(us, us + ws) <= 0)
        if np.any(reflected):
            mirrored = digamma_step(np.where(reflected, 1.0 - us, 1.0), np.where(reflected, -ws, 0.0))
            # sin(pi x) reduced exactly: sin(pi w) is 0 for an integer w, not 1.2e-16 over a tiny
            # sine (beta(x, 1)'s partial at -1e-12 was 5e-5 off).
            # Over the larger sine first: the product of two tiny ones is below the doubles (at
            # (-1e-160, 3e-160) 1e-5 off, inf at (1e-300, -2e-300); a second hunt, 2026-12-06).
            a, b = _sin_pi(us + ws), _sin_pi(us)
            larger = np.abs(a) >= np.abs(b)
            cotangents = np.pi * _sin_pi(ws) / np.where(larger, a, b) / np.where(larger, b, a)
            by_reflection = np.where(
                reflected, mirrored + cotangents, digamma_step(np.where(reflected, 1.0, us), ws)
            )
            # An integer step is the recurrence's finite sum, also at a pole of digamma (beta(x, 1) = 1/x).
            stepped = reflected & (ws == np.round(ws)) & (np.abs(ws) <= _STEP_TO)
            if np.any(stepped):
                by_reflection[stepped] = _integer_step(us[stepped], ws[stepped])
            return by_reflection
        low = np.minimum(us, us + ws)
        stable = (low > 0) & finite
        steps = np.where(stable, np.maximum(np.ceil(_STEP_TO - low), 0.0), 0.0)
        carried = np.zeros(us.shape)
        for k in range(int(_STEP_TO)):
            # w/(a b) as w/max(a, b) (at most 1: w = b - a, both positive here) over min(a, b): the
            # product a b is below the doubles from a = 1e-154 (digamma(x + y) - digamma(x) at
            # (1e-160, 2e-160) was 1e-5 off, and inf at 1e-200; an independent hunt, 2026-12-06).
            a, b = us + k, us + ws + k
            term = ws / np.maximum(a, b) / np.minimum(a, b)
            carried += np.where(k < steps, term, 0.0)
        big = us + steps
        ratio = np.log1p(ws / big)
        tail = sum(
            c * big ** (-2.0 * k) * np.expm1(-2.0 * k * ratio) for k, c in enumerate(_DIGAMMA_SERIES, start=1)
        )
        asymptotic = ratio + ws / (2.0 * big * (big + ws)) - tail + carried
        return np.where(stable, asymptotic, digamma(us + ws) - digamma(us))


def _integer_step(u: FloatArray, w: FloatArray) -> FloatArray:
    """digamma(u + w) - digamma(u) for integers |w| <= _STEP_TO: sum 1/(u + k), k from 0 to w - 1
    (minus the sum over k from w to -1 for w < 0)."""
    total = np.zeros(u.shape)
    for k in range(int(_STEP_TO)):
        total += np.where(k < w, 1.0 / (u + k), 0.0) - np.where(-k - 1 >= w, 1.0 / (u - k - 1), 0.0)
    return total


_STEP_TO = 10.0
# B_2k / 2k of digamma's asymptotic series; past 10 the 9th term is below 3e-18 of its value.
_DIGAMMA_SERIES = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12, -3617 / 8160)


def zeta(s: Any, a: Any = None) -> Any:
    """Riemann zeta (scipy, on the whole line), Hurwitz zeta(s, a) everywhere it is real."""
    if a is None:
        return _riemann_zeta(_array(s))
    ss, aa = np.broadcast_arrays(_array(s), _array(a))
    result = np.full(ss.shape, np.nan)
    scipy_part = (ss > 1) & (aa > 0) & np.isfinite(ss)
    result[scipy_part] = _hurwitz(ss[scipy_part], aa[scipy_part])
    # zeta(n + 1, a) = (-1)^(n+1) psi^(n)(a) / n! for a < 0 (scipy's own recurs in |a|).
    reflected = (ss >= 2) & (ss == np.floor(ss)) & (ss <= MAX_SCIPY_ORDER) & (aa < 0) & (aa != np.floor(aa))
    orders = ss[reflected] - 1.0
    sign = np.where(np.mod(orders, 2.0) == 1.0, 1.0, -1.0)
    result[reflected] = sign * _polygamma_reflected(orders, aa[reflected]) / scipy.special.gamma(orders + 1.0)
    rest = ~(scipy_part | reflected) & np.isfinite(ss) & np.isfinite(aa)
    result[rest] = _pointwise("zeta", ss[rest], aa[rest])
    return result if result.ndim else result[()]


def zeta_minus_one(s: Any) -> Any:
    """zeta(s) - 1: right of 1 the Hurwitz zeta(s, 2), which keeps what zeta(s) rounds away (2^-s
    and smaller: zeta(x) - 1 was 9e-8 off at 40 and 0.0 from 53; a hunt, 2026-12-07); left of 1,
    zeta(s) - 1, where zeta is not next to 1."""
    ss = _array(s)
    right = ss > 1
    result = np.where(
        right, zeta(np.where(right, ss, 2.0), 2.0), _riemann_zeta(np.where(right, 0.0, ss)) - 1.0
    )
    return result if result.ndim else result[()]


def log_zeta(s: Any) -> Any:
    """log(zeta(s)): right of 1 log1p of the Hurwitz zeta(s, 2) (`zeta_minus_one`: log(zeta(x)) was
    0.0 at 60); left of 1 log(zeta(s)) as written, where zeta may be small (next to its zeros at the
    negative even integers, which 1 + (zeta(s) - 1) rounds away: -inf at -2 - 2^-50; a regression
    hunt, 2026-12-07) and is never next to 1."""
    ss = _array(s)
    right = ss > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(
            right,
            np.log1p(zeta(np.where(right, ss, 2.0), 2.0)),
            np.log(_riemann_zeta(np.where(right, 0.0, ss))),
        )
    return result if result.ndim else result[()]


def zeta_near_pole(u: Any, a: Any = None) -> Any:
    """zeta(1 + u) (or zeta(1 + u, a)) where 1 + u rounds away the digits of a small u: next to the
    pole at 1 the function is about 1/u, so -s zeta(s + 1, a), the derivative of zeta(s, a) in a,
    was -0.99999992 at s = 1e-10 (truth -0.99999999996) and NaN at 1e-20 (truth -1; a hunt). There
    it is 1/u plus the part without the pole, zeta(x) - 1/(x - 1) at x = 1 + u (x - 1 is exact), whose
    limit at x = 1 is -digamma(a): only where 1/u outweighs that part 256 times (|u| < 2^-8 and
    |u digamma(a)| < 2^-8), so the sum cannot cancel: zeta(1.4, 1e50) is 2.5e-20 where 1/u and the
    rest are 2.5 and -2.5 (a hunt: -4.4e-16), and zeta(1 + u, 0.1) has a zero at u = -0.127. Elsewhere
    zeta(1 + u) as written, which loses at most 2^8 ulp of u's rounding there."""
    us = _array(u)
    x = 1.0 + us
    whole = zeta(x) if a is None else zeta(x, a)
    small = np.abs(us) < _POLE_REACH
    if not np.any(small):
        return whole
    us, x, whole, small, shift = np.broadcast_arrays(us, x, whole, small, 1.0 if a is None else _array(a))
    with np.errstate(all="ignore"):
        regular = -digamma(np.where(small & (shift > 0), shift, 1.0))
        near = small & (shift > 0) & (np.abs(us * regular) < _POLE_REACH)
        rest = np.where(x == 1.0, regular, whole - 1.0 / (x - 1.0))
        result = np.where(near, 1.0 / us + rest, whole)
    return result if result.ndim else result[()]


_POLE_REACH = 2.0**-8


# ------------------------------------------------------------------------- point by point (mpmath)


_HURWITZ_TERMS = 10  # terms summed before Euler-Maclaurin's tail
_BERNOULLI = tuple(
    float(reference.context(_PREC).bernoulli(2 * j) / reference.context(_PREC).factorial(2 * j))
    for j in range(1, 10)
)


def _hurwitz(s: FloatArray, a: FloatArray) -> FloatArray:
    """zeta(s, a) for s > 1, a > 0 by Euler-Maclaurin: ten terms, the integral, nine Bernoulli terms.

    Every term is one correctly rounded power of positive numbers: scipy's exp(-s log a) costs a
    hundred ulp when s log a is large (zeta(25, 48)).
    """
    total = np.zeros_like(s)
    for k in range(_HURWITZ_TERMS):
        total += np.power(a + k, -s)
    w = a + _HURWITZ_TERMS
    power = np.power(w, -s)  # w^-s, then w^(-s-2j+1) as the terms go
    tail = w * power / (s - 1.0) + 0.5 * power
    factor = s * power / w  # s (s+1)...(s+2j-2) w^(-s-2j+1)
    for j, coefficient in enumerate(_BERNOULLI):
        tail += coefficient * factor
        factor = factor * (s + 2 * j + 1) * (s + 2 * j + 2) / (w * w)
    return total + tail


def _riemann_zeta(s: FloatArray) -> FloatArray:
    """scipy's zeta right of -1; left, the functional equation with sin(pi s / 2) reduced exactly
    (scipy loses hundreds of ulp next to the trivial zeros), until gamma(1 - s) overflows. Not
    between -1 and 0: there zeta(1 - s) is next to its pole, and 1 - s rounded loses the digits of
    s (zeta(-2e-9) was off by 2e-8 relative; scipy's own is within 4 ulp)."""
    left = (s < -1) & (s > -170)
    if not np.any(left):
        return np.asarray(scipy.special.zeta(s), dtype=np.float64)
    reflected = (
        np.exp2(s)
        * np.power(np.pi, s - 1.0)
        * _sin_pi(s / 2.0)
        * scipy.special.gamma(1.0 - s)
        * scipy.special.zeta(1.0 - s)
    )
    return np.asarray(np.where(left, reflected, scipy.special.zeta(s)), dtype=np.float64)


# When the kernels of the call being computed must stop, in the CPU time of the thread computing it
# (time.thread_time()): the call's own cost, not the time it waited for the GIL or a core on a busy
# machine (a wall-clock deadline refused calls within their budget under load); None: no bound.
_POINTWISE_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "chainrule_pointwise_deadline", default=None
)


@contextlib.contextmanager
def pointwise_budget(seconds: float) -> Iterator[None]:
    """Bound the CPU time the point-by-point (mpmath) kernels take inside this block: past `seconds`
    the next point raises ResourceExhausted (COMPUTE_BUDGET_EXCEEDED). The numeric cost limit
    charges them by an estimate; one point's cost varies a thousandfold with its arguments, and
    they run on a numeric thread, which nothing can stop from outside. Chunks computed again in
    long double (`widening`, some 50 times slower) are bound by the same time (`check_budget`)."""
    token = _POINTWISE_DEADLINE.set(time.thread_time() + seconds)
    try:
        yield
    finally:
        _POINTWISE_DEADLINE.reset(token)


def _pointwise(name: str, *columns: FloatArray, orders: tuple[int, ...] = ()) -> FloatArray:
    out = np.empty(len(columns[0]) if columns else 0)
    for index, values in enumerate(zip(*(column.tolist() for column in columns), strict=True)):
        out[index] = reference.at(name, values, _PREC, orders)
        what = f"the evaluation of {name} point by point (mpmath)"
        check_budget(what, index + 1, len(out), function=name, instead="(or derivatives of lower order)")
    return out


_ONE_POINT_INSTEAD = "a derivative of lower order or a simpler expression"


def check_budget(what: str, done: int, total: int, *, function: str = "", instead: str = "") -> None:
    """Raise ResourceExhausted (COMPUTE_BUDGET_EXCEEDED) once the time of the `pointwise_budget`
    block is spent: `what` took it, `done` of `total` points done; `function`: the slow one, if one
    is; `instead`: what else to ask for."""
    deadline = _POINTWISE_DEADLINE.get()
    # Once every point is done, the work is too: refused then, it was only wasted (Evaluate of a long
    # trigonometric sum at 500,000 huge arguments, refused "500,000 of 500,000 points done" at every
    # other try; an independent hunt, 2026-12-06).
    if deadline is not None and done < total and time.thread_time() > deadline:
        # For one point, "fewer points" was advice no caller could follow (an independent tester).
        ask = f"fewer points{' ' + instead if instead else ''}" if total > 1 else _ONE_POINT_INSTEAD
        raise ResourceExhausted(
            f"{what} took longer than its cost allows ({done:,} of {total:,} points done); retrying "
            f"would cost as much again: ask for {ask}",
            reason="COMPUTE_BUDGET_EXCEEDED",
            metadata={"budget": "numeric_cost", **({"function": function} if function else {})},
        )


def partial(name: str, orders: tuple[int, ...], *args: Any) -> Any:
    """A derivative of a table function with no closed form (zeta in s, polygamma in its order), by mpmath."""
    columns = np.broadcast_arrays(*(_array(arg) for arg in args))
    out = _pointwise(name, *(column.reshape(-1) for column in columns), orders=orders)
    return out.reshape(columns[0].shape) if columns[0].ndim else out[0]


# ------------------------------------------------------------------------------------- the table

MPMATH_WEIGHT = 2_000_000


@dataclass(frozen=True)
class _Kernel:
    """One name generated code calls, and what the numeric cost limit and `widening` know of it."""

    function: Any
    # What one evaluation costs per point, in units of one numpy arithmetic operation (about 1 ns):
    # measured by scripts/accuracy.py --timing. The numeric cost limit charges expression nodes by
    # these, so slow functions get proportionally fewer points per call.
    weight: int = 1
    # What one call costs whatever the number of points, in the same units, where it is far above a
    # ufunc's microsecond: the numpy calls inside it (loggamma's series are ~130 of them). At one
    # point 500 loggamma terms were charged 17,500 (17 us, so computed on the event loop) and took
    # 200 ms there (tester round 6). Measured by scripts/accuracy.py --overheads (at one point,
    # against np.sin); listed where it is far above a ufunc's microsecond.
    overhead: int = 0
    # Its own operations may overflow where its value does not (np.where computes both branches:
    # cosh(800) inside sech(800)), or it answers inf without the overflow flag (scipy's gamma(200)):
    # it is called with the flag ignored, and an infinity it answers reported (`overflow.contained`),
    # so the flag means what `widening` needs: a value past the doubles. numpy's ufuncs and kernels
    # whose every overflow is their value's (x^x, sin: none) are not.
    contained: bool = False
    # Built from numpy operations alone, so it computes in whatever precision it is given: `widening`
    # calls it on long doubles (the others, and every ufunc without a long double loop, get doubles).
    # Given doubles, a kernel past their range (csc at 1e-310) or of an argument lost in them
    # (Heaviside(x*y) at 1e-200, 0.5 for 1) answered the same in the wide run, and was kept
    # (an independent hunt, 2026-12-06).
    generic: bool = False


_TABLE: Mapping[str, _Kernel] = MappingProxyType(
    {
        "periodic_argument": _Kernel(periodic_argument, weight=1, overhead=2_000),
        **{
            # The reciprocal ones answer inf at their poles without the overflow flag, as sec does.
            f"{name}_of_affine": _Kernel(
                _of_affine(name, plain), weight=6, overhead=4_000, contained=name in {"sec", "csc", "cot"}
            )
            for name, plain in (
                ("sin", sin),
                ("cos", cos),
                ("tan", np.tan),
                ("sec", sec),
                ("csc", csc),
                ("cot", cot),
            )
        },
        "sin": _Kernel(sin, weight=2),
        "cos": _Kernel(cos, weight=3, overhead=4_000),
        "tan": _Kernel(np.tan, weight=2),
        "sec": _Kernel(sec, weight=4, overhead=6_500, contained=True, generic=True),
        "csc": _Kernel(csc, weight=3, overhead=4_500, contained=True, generic=True),
        "cot": _Kernel(cot, weight=3, contained=True, generic=True),
        "asin": _Kernel(np.arcsin, weight=10),
        "acos": _Kernel(np.arccos, weight=10),
        "atan": _Kernel(np.arctan, weight=10),
        "asec": _Kernel(asec, weight=25, overhead=4_000, contained=True, generic=True),
        "acsc": _Kernel(acsc, weight=30, overhead=5_500, contained=True, generic=True),
        "acot": _Kernel(acot, weight=15, overhead=4_000, contained=True, generic=True),
        "atan2": _Kernel(atan2, weight=15, overhead=5_000, contained=True, generic=True),
        "sinh": _Kernel(np.sinh, weight=10),
        "cosh": _Kernel(np.cosh, weight=10),
        "tanh": _Kernel(np.tanh, weight=10),
        "sech": _Kernel(sech, weight=25, overhead=5_000, contained=True, generic=True),
        "csch": _Kernel(csch, weight=25, overhead=5_000, contained=True, generic=True),
        "coth": _Kernel(coth, weight=12, overhead=2_500, contained=True, generic=True),
        "asinh": _Kernel(np.arcsinh, weight=15),
        "acosh": _Kernel(np.arccosh, weight=15),
        "atanh": _Kernel(np.arctanh, weight=15),
        "asech": _Kernel(asech, weight=30, overhead=6_500, contained=True, generic=True),
        "acsch": _Kernel(acsch, weight=25, overhead=5_000, contained=True, generic=True),
        "acoth": _Kernel(acoth, weight=20, overhead=4_000, contained=True, generic=True),
        "exp": _Kernel(np.exp, weight=2),
        "log": _Kernel(np.log, weight=2),
        "sqrt": _Kernel(sqrt, weight=2, generic=True),
        "RealRoot": _Kernel(RealRoot, weight=10, overhead=50_000, contained=True, generic=True),
        "odd_power": _Kernel(odd_power, generic=True),
        "integer_power": _Kernel(vectormath.integer_power, generic=True),
        "power": _Kernel(power, overhead=3_000, generic=True),
        "rational_power": _Kernel(rational_power, weight=12, overhead=50_000, contained=True, generic=True),
        "fractional_power": _Kernel(fractional_power, weight=3, overhead=4_000, generic=True),
        "Abs": _Kernel(np.abs),
        "sign": _Kernel(np.sign),
        "floor": _Kernel(np.floor),
        "ceiling": _Kernel(np.ceil),
        "Min": _Kernel(Min, generic=True),
        "Max": _Kernel(Max, generic=True),
        "Heaviside": _Kernel(Heaviside, overhead=4_000, contained=True, generic=True),
        "piecewise": _Kernel(piecewise, overhead=20_000, contained=True),
        # The operators' ufuncs, called by name where an output is computed in its column (`destinations`).
        "add": _Kernel(np.add),
        "subtract": _Kernel(np.subtract),
        "multiply": _Kernel(np.multiply),
        "divide": _Kernel(np.divide),
        "negative": _Kernel(np.negative),
        "DiracDelta": _Kernel(DiracDelta, overhead=4_500, contained=True, generic=True),
        "re": _Kernel(re, generic=True),
        "im": _Kernel(im, generic=True),
        "arg": _Kernel(arg, generic=True),
        "erf": _Kernel(scipy.special.erf, weight=10),
        "erfc": _Kernel(erfc, weight=10, overhead=30_000, contained=True),
        "gamma": _Kernel(gamma, weight=30, overhead=3_000, contained=True),
        "gamma_sign": _Kernel(gamma_sign, weight=10, overhead=2_000),
        # two 64-term series by Horner: a pass over the points per term
        "loggamma": _Kernel(loggamma, weight=300, overhead=350_000, contained=True),
        "log_gamma": _Kernel(log_gamma, weight=300, overhead=350_000),
        "log_abs_gamma": _Kernel(log_abs_gamma, weight=300, overhead=350_000),
        "one_minus_gamma": _Kernel(one_minus_gamma, weight=330, overhead=355_000, contained=True),
        "sech_squared": _Kernel(sech_squared, weight=4, overhead=6_000, generic=True),
        "log1p": _Kernel(np.log1p, weight=3),
        "log2": _Kernel(np.log2, weight=3),
        "log10": _Kernel(np.log10, weight=3),
        "log_one_plus": _Kernel(log_one_plus, weight=6, overhead=3_000, generic=True),
        "one_minus_sin": _Kernel(one_minus_sin, weight=8, overhead=3_000, generic=True),
        "one_less_power": _Kernel(one_less_power, weight=10, overhead=10_000, generic=True),
        "one_less_power_of": _Kernel(one_less_power_of, weight=10, overhead=10_000, generic=True),
        "one_plus_power": _Kernel(one_plus_power, weight=10, overhead=7_500, generic=True),
        "exp_difference": _Kernel(exp_difference, weight=8, overhead=7_500, generic=True),
        "root_less": _Kernel(root_less, weight=4, overhead=6_000, generic=True),
        "log_difference": _Kernel(log_difference, weight=12, overhead=8_500, generic=True),
        "power_difference": _Kernel(power_difference, weight=16, overhead=11_000, generic=True),
        "atan_difference": _Kernel(atan_difference, weight=30, overhead=20_000, generic=True),
        "atan_complement": _Kernel(atan_complement, weight=12, overhead=3_500, generic=True),
        "acot_complement": _Kernel(acot_complement, weight=14, overhead=4_000, generic=True),
        "atan2_less": _Kernel(atan2_less, weight=36, overhead=8_000, generic=True),
        "atan_less_quarter": _Kernel(atan_less_quarter, weight=14, overhead=4_000, generic=True),
        "log_cosh": _Kernel(log_cosh, weight=8, overhead=4_000, generic=True),
        "log_sinh": _Kernel(log_sinh, weight=8, overhead=4_000, generic=True),
        "log_sum_exp": _Kernel(log_sum_exp, weight=10, overhead=3_000, generic=True),
        "log_sum_exp_difference": _Kernel(
            log_sum_exp_difference, weight=30, overhead=12_000, contained=True, generic=True
        ),
        "log_signed_sum_exp": _Kernel(log_signed_sum_exp, weight=16, overhead=8_000, generic=True),
        "log_abs_sinh": _Kernel(log_abs_sinh, weight=9, overhead=4_500, generic=True),
        "log_signed": _Kernel(log_signed, weight=6, overhead=4_000, generic=True),
        "log_difference_exp": _Kernel(log_difference_exp, weight=10, overhead=5_000, generic=True),
        "log_power": _Kernel(log_power, weight=12, overhead=6_000, generic=True),
        "finite_or": _Kernel(finite_or, weight=3, overhead=2_000, generic=True),
        "infinite_or": _Kernel(infinite_or, weight=3, overhead=2_000, generic=True),
        "nearer_one": _Kernel(nearer_one, weight=3, overhead=2_000, generic=True),
        "past_exponentials": _Kernel(past_exponentials, weight=6, overhead=3_000, generic=True),
        "apart": _Kernel(apart, weight=0, overhead=200, generic=True),
        "add_constant": _Kernel(add_constant, weight=2, overhead=1_500, generic=True),
        "unsigned_zero": _Kernel(unsigned_zero, generic=True),
        # abs, two comparisons and a choice over every point; the polynomial only where it is used
        removable.KERNEL: _Kernel(taylor_near, weight=5, overhead=6_000, generic=True),
        "acot_past_half_pi": _Kernel(acot_past_half_pi, weight=14, overhead=4_000, generic=True),
        "sin_half_turns": _Kernel(sin_half_turns, weight=12, overhead=7_500, generic=True),
        "cos_half_turns": _Kernel(cos_half_turns, weight=12, overhead=8_000, generic=True),
        "tan_half_turns": _Kernel(tan_half_turns, weight=14, overhead=9_000, generic=True),
        "asin_near_one": _Kernel(asin_near_one, weight=10, overhead=40_000, generic=True),
        "acos_near_one": _Kernel(acos_near_one, weight=10, overhead=40_000, generic=True),
        "atanh_near_one": _Kernel(atanh_near_one, weight=10, overhead=25_000, generic=True),
        "asec_near_one": _Kernel(asec_near_one, weight=10, overhead=25_000, generic=True),
        "acsc_near_one": _Kernel(acsc_near_one, weight=10, overhead=25_000, generic=True),
        "acosh_near_one": _Kernel(acosh_near_one, weight=10, overhead=25_000, generic=True),
        "log_erfc": _Kernel(log_erfc, weight=30),
        "log_ndtr": _Kernel(scipy.special.log_ndtr, weight=30),
        "erfcx": _Kernel(scipy.special.erfcx, weight=10),
        "expm1": _Kernel(np.expm1, weight=3),
        "digamma": _Kernel(digamma, weight=30, overhead=25_000, contained=True),
        "digamma_step": _Kernel(digamma_step, weight=150, overhead=350_000),
        "polygamma": _Kernel(polygamma, weight=300, overhead=120_000, contained=True),
        "beta": _Kernel(beta, weight=60, overhead=60_000, contained=True),
        "factorial": _Kernel(factorial, weight=30, overhead=3_500, contained=True),
        "zeta": _Kernel(zeta, weight=200, overhead=350_000, contained=True),
        "zeta_near_pole": _Kernel(zeta_near_pole, weight=210, overhead=360_000, contained=True),
        "zeta_minus_one": _Kernel(zeta_minus_one, weight=400, overhead=700_000, contained=True),
        "log_zeta": _Kernel(log_zeta, weight=410, overhead=700_000, contained=True),
        "partial": _Kernel(partial, weight=MPMATH_WEIGHT, contained=True),
        "inf": _Kernel(math.inf),
        "nan": _Kernel(math.nan),
    }
)
NAMESPACE: Mapping[str, Any] = MappingProxyType(
    {name: overflow.contained(k.function) if k.contained else k.function for name, k in _TABLE.items()}
)
"""Every name generated numeric code calls (functions by their sympy class names, the operators' ufuncs),
and inf and nan."""
WEIGHTS: Mapping[str, int] = MappingProxyType({name: k.weight for name, k in _TABLE.items()})
"""Cost per point of each kernel, in numpy operations (`_Kernel.weight`)."""
CALL_OVERHEADS: Mapping[str, int] = MappingProxyType({name: k.overhead for name, k in _TABLE.items()})
"""What one call of each kernel costs whatever the number of points (`_Kernel.overhead`)."""
GENERIC: frozenset[str] = frozenset(name for name, k in _TABLE.items() if k.generic)
"""The kernels that compute in whatever precision they are given (`_Kernel.generic`)."""
