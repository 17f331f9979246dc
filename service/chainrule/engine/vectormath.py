"""Float64 sin and cos of arrays on SIMD, for the numpy builds whose own are scalar.

numpy computes float64 sin and cos one element at a time (about 7 ns each on the benchmark
machine), while its float64 tan runs on AVX-512 SIMD (SVML, under 1 ns, within 1 ulp). A gradient
of anything trigonometric needs both sin and cos, and they took two thirds of its evaluation
time (bench/PROFILE.md). Both are built here from tan:

    sin x = 2t / (1 + t^2), t = tan(x/2): no cancellation anywhere, tan does the range reduction.
    cos x = sin(pi/2 - |x|) for |x| <= pi: from pi/4 up the subtraction is exact, so where cos x is
            small it keeps its relative accuracy. Beyond, cos x = +-sin u, u = x - j*pi/2 for the odd
            j nearest x/(pi/2), so |u| <= pi/2 and the zeros of cos x are the zeros of u, computed
            without cancellation (pi/2 in three parts, Cody-Waite; exact products for
            |x| <= 2^19; numpy's cos beyond). Each value's formula follows from its own magnitude.

Every real float64 input takes this path, a single point too, so a value never changes in its last
bits with the size or the other values of the batch it came in (chunked calls join to exactly the
one-call answer).

Against correctly rounded values (mpmath, tests/test_vectormath.py) sin is within 2 ulp and cos
within 3 ulp, over subnormals to 1e300 and next to every multiple of pi/2 tested; numpy's own
SIMD functions (exp, log, tan) promise 4 ulp. NaN and +-Inf give NaN; sin keeps the sign of zero.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# |x| up to which j * _PIO2_1 and j * _PIO2_2 are exact (33-bit constants times j < 2^20).
_REDUCTION_LIMIT = 2.0**19
_PIO2_1 = 1.57079632673412561417e00  # the first 33 bits of pi/2
_PIO2_2 = 6.07710050630396597660e-11  # the next 33 bits
_PIO2_3 = 2.02226624879595063154e-21  # the rest
_ONE_OVER_PI = 0.318309886183790671538
_PIO2_HI = 1.57079632679489655800e00  # pi/2 rounded to a double
_PIO2_LO = 6.12323399573676603587e-17  # pi/2 - _PIO2_HI
_PI = 2 * _PIO2_HI
# x/2 is exact from here up (a normal double), and at 0 (NaN fails the test and goes to numpy too).
_HALVED_EXACTLY = 2.0**-1021
# Up to this many values the same arithmetic runs on Python floats (IEEE doubles, rounded alike),
# with only tan on numpy: a dozen array operations cost about 15 us even for one point.
_SMALL = 8


def simd_tan() -> bool:
    """Whether numpy's float64 tan is the SIMD one: its x86-64 builds use SVML when AVX-512 is there."""
    try:  # a private module of numpy's: it may move
        features = importlib.import_module("numpy._core._multiarray_umath").__cpu_features__
    except (ImportError, AttributeError):
        return False
    return bool(features.get("AVX512_SKX", False))


def _real(x: Any) -> FloatArray | None:
    """`x` as a 1-d float64 array when it is real float64 (array or scalar), else None."""
    if isinstance(x, np.ndarray):
        return x.reshape(-1) if x.dtype == np.float64 else None
    if isinstance(x, float):  # np.float64 is a float too
        return np.array([x], dtype=np.float64)
    return None


def _shaped(result: FloatArray, x: Any) -> Any:
    """`result` in the shape of `x`: a scalar for a scalar, the array's shape for an array."""
    if isinstance(x, np.ndarray):
        return result.reshape(x.shape) if x.ndim != 1 else result
    return np.float64(result[0])


def sin(x: Any) -> Any:
    """Elementwise sin of real float64 values (any size: one point gets what a batch would); else numpy."""
    flat = _real(x)
    if flat is None:
        return np.sin(x)
    values = flat.tolist() if flat.size <= _SMALL else []
    # Python floats raise no underflow flag: a value x/2 rounds below the normal doubles (sin(x)/x at
    # 5e-324 was 0.0) goes through numpy, whose flag sends the point to the wide run.
    if values and all(abs(value) >= _HALVED_EXACTLY or value == 0.0 for value in values):
        return _shaped(_sin_times_small(values, [2.0] * flat.size), x)
    result = _sin_times(flat, 2.0)
    # x/2 rounds where x is below the normal doubles, and 2 tan(x/2) lost x's last bit: sin(5e-324)
    # was 0.0, sin(3x)/x there 4.0 (a hunt, 2026-12-07). sin x is x there (as below 2^-26), and only
    # there is sin that small (next to a multiple of pi it is above 1e-20).
    np.copyto(result, flat, where=np.abs(result) < _HALVED_EXACTLY)
    return _shaped(result, x)


def _sin_times(x: FloatArray, factor: float | FloatArray) -> FloatArray:
    """factor/2 * sin(x), as 2t / (1 + t^2) with t = tan(x/2)."""
    t = np.multiply(x, 0.5)
    np.tan(t, out=t)
    denominator = t * t
    denominator += 1.0
    t *= factor
    t /= denominator
    return t


def cos(x: Any) -> Any:
    """Elementwise cos of real float64 values (any size, as `sin`); else numpy."""
    flat = _real(x)
    if flat is None or flat.size == 0:
        return np.cos(x)
    if flat.size <= _SMALL:
        return _shaped(_cos_small(flat), x)
    # Two reductions instead of a mask in the common case (angles); a NaN fails the test.
    if flat.min() >= -_PI and flat.max() <= _PI:
        return _shaped(_cos_half_turn(flat), x)
    return _shaped(_cos_mixed(flat), x)


def _cos_half_turn(x: FloatArray) -> FloatArray:
    # cos x = sin(pi/2 - |x|) for |x| <= pi. From pi/4 up the subtraction is exact (Sterbenz), so
    # the zero at pi/2 keeps its relative accuracy; below pi/4 the result is far from zero.
    w = np.abs(x)
    np.subtract(_PIO2_HI, w, out=w)
    w += _PIO2_LO
    return _sin_times(w, 2.0)


def _cos_mixed(flat: FloatArray) -> FloatArray:
    # Each element gets the formula its own magnitude selects, never one its neighbours do: the
    # majority's formula runs on the whole array, the minority's on its elements, overwriting.
    half_turn = np.abs(flat) <= _PI
    if np.count_nonzero(half_turn) * 2 >= flat.size:
        result = _cos_half_turn(flat)
        rest = ~half_turn
        result[rest] = _cos_wide(flat[rest])
    else:
        result = _cos_wide(flat)
        result[half_turn] = _cos_half_turn(flat[half_turn])
    return result


def _cos_wide(x: FloatArray) -> FloatArray:
    if x.min() >= -_REDUCTION_LIMIT and x.max() <= _REDUCTION_LIMIT:  # a NaN fails this too
        return _cos_near(x)
    far = ~(np.abs(x) <= _REDUCTION_LIMIT)  # NaN and Inf too
    result = _cos_near(np.where(far, 0.0, x))
    np.cos(x, out=result, where=far)
    return result


def _cos_near(x: FloatArray) -> FloatArray:
    # j = 2m + 1, the odd integer nearest x/(pi/2); cos(u + j*pi/2) = (-1)^(m+1) sin(u).
    m = np.multiply(x, _ONE_OVER_PI)
    m -= 0.5
    np.rint(m, out=m)
    j = m + m
    j += 1.0
    u = j * _PIO2_1
    np.subtract(x, u, out=u)
    u -= j * _PIO2_2
    u -= j * _PIO2_3
    # The sign folded into sin's factor 2: -2 for even m, +2 for odd m.
    factor = np.multiply(m, 0.5, out=j)
    np.floor(factor, out=factor)
    factor *= -2.0
    factor += m  # m mod 2
    factor *= 4.0
    factor -= 2.0
    return _sin_times(u, factor)


# The same operations as `_sin_times` and `_cos_near`, in the same order, on Python floats.


def _sin_times_small(xs: list[float], factors: list[float]) -> FloatArray:
    tangents = np.tan(np.array([x * 0.5 for x in xs])).tolist()
    return np.array([(t * f) / (t * t + 1.0) for t, f in zip(tangents, factors, strict=True)])


def _cos_small(flat: FloatArray) -> FloatArray:
    reduced, factors = [], []
    for x in flat.tolist():
        if abs(x) <= _PI:
            reduced.append((_PIO2_HI - abs(x)) + _PIO2_LO)
            factors.append(2.0)
            continue
        if not abs(x) <= _REDUCTION_LIMIT:
            reduced.append(0.0)
            factors.append(2.0)
            continue
        m = float(round(x * _ONE_OVER_PI - 0.5))  # round half to even, as np.rint
        j = m + m + 1.0
        reduced.append(((x - j * _PIO2_1) - j * _PIO2_2) - j * _PIO2_3)
        factors.append((math.floor(m * 0.5) * -2.0 + m) * 4.0 - 2.0)
    result = _sin_times_small(reduced, factors)
    far = ~(np.abs(flat) <= _REDUCTION_LIMIT)
    if far.any():
        np.cos(flat, out=result, where=far)
    return result


_BY_PRODUCTS = frozenset({3, 4})  # exponents computed as products of x


def integer_power(x: Any, n: int) -> Any:
    """x^n for an integer n, as numpy's power of |x| with the sign put back for odd n.

    numpy's float64 power runs on SIMD (SVML under AVX-512) for a positive base, but a negative base
    sends each value down a scalar path about 40 times slower (87 ns a value): x^3 over 32k values
    of both signs took 2.9 ms, over positive ones 74 us. pow(-a, n) is +-pow(a, n) by definition
    (IEEE 754 and C's pow alike), zeros, infinities and NaN included, so this is x^n exactly, and
    the same operations on any number of values: a point gets what a batch would.

    Cubes and fourth powers are products instead (x*x*x, (x*x)^2: 1.3 ms over 10^6 values against
    5.4 ms for the three passes above): two roundings, within 2 ulp of the power, and the same
    zeros, infinities and NaN, since where the power is a finite double so is every partial
    product (|x| < 5.6e102 for a finite cube) and it is normal where the power is.
    """
    if not isinstance(x, np.ndarray | float) or np.iscomplexobj(x):
        return np.power(x, n)
    if n in _BY_PRODUCTS:
        square = x * x
        if isinstance(square, np.ndarray):
            square *= x if n == 3 else square
            return square
        return square * (x if n == 3 else square)
    magnitude = np.power(np.abs(x), n)
    return np.copysign(magnitude, x) if n % 2 else magnitude
