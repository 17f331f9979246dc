"""A chunk evaluated again in extended precision where float64 overflowed (or underflowed) on the
way to its values.

A formula may pass through values no double holds on its way to one that it does: d2/dx2 of
Max(x, ...)/(x^x - e) at x = 60 has a term x^(2x) ... / (x^x - e)^3, where the cube is 1.2e320. In
float64 that term is finite/inf = 0, and the sum it belongs to comes out with the wrong sign. Such a
value is neither right nor clearly not a number, so a chunk whose evaluation overflowed anywhere
(`overflow`: the hardware's flag, and the kernels' reports) is computed again with numpy's long
double: 64 bits of mantissa and exponents to 1e4932, so the term is 2e-107 there. Each value the two
runs disagree on beyond rounding (2^-40), at a point whose own float64 evaluation overflows, takes the
wide one, rounded to a double. Where that point's wide evaluation overflowed as well, its values are
not known: one that float64's is within 2^-20 of keeps float64's (the runs differ by a cancellation's
digits), one further away is NaN.

A point evaluated alone gets what it gets in a batch: the points whose own evaluations overflow (in
float64, then in long double) are found by evaluating halves of the disagreeing ones until each
group that overflows is one point (`flagging`), so a point that disagrees only by a cancellation
float64 lost digits to keeps its float64 values, as alone it would. 1/(1 + e^x) at x = 800 is 0.0
both ways (3.6e-348 rounds to it) and stays 0.0; values below the normal doubles agree within
2^-1022. The search takes up to two evaluations a point, and 512 at most in a chunk: past that
(hundreds of points overflowing) every disagreeing point it did not get to is taken as overflowing,
the points it found not to overflow alone keep what they get alone.

An underflow does the same damage from below (x*y at 1e-200 is 0.0: cbrt(x*y) was 0, log(x*y) -inf),
but a Gaussian's tails underflow wherever they are, so only the points whose values it may have
damaged (`doubtful`: a value 0, subnormal or not finite, or an argument whose square is subnormal)
are computed again, and they change as above where their own evaluation underflows.

The wide run computes with long doubles where numpy does (its arithmetic, exp, log, powers, the
hyperbolic functions...) and through each other kernel in float64, arguments rounded to doubles:
scipy has no long double loops. Such a kernel's value past the range of doubles (inf, or an
underflow inside: zeta(2, 1e-200) is inf there) counts as an overflow of the wide run.
gamma (and factorial) past 171.6, where float64 ends, is exp(loggamma) in long double, and 1/x next
to 0 (below 5.6e-309); beta below or past the doubles its sign times exp of log-gammas in long
double; erfc past 26.5 erfcx(x) e^(-x^2) with the exponential in long double.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.special

from chainrule.engine import kernels, overflow, programs

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# Two runs that differ by more than this, relative, disagree: far beyond the ulps that rounding
# in float64 against long double makes, far below any difference an overflow makes. Below the normal
# doubles, where float64 keeps fewer bits, they agree within the smallest normal double.
_AGREEMENT = 2.0**-40
_TINY = sys.float_info.min
_HUGE = sys.float_info.max
_SQUARE_BELOW_NORMAL = 2.0**-511  # its square is 2^-1022, the smallest normal double
# Long doubles a double cannot come near: at most half the smallest subnormal rounds to 0, from the
# largest double and half an ulp on to inf.
_ROUNDS_TO_ZERO = np.longdouble(np.finfo(np.float64).smallest_subnormal) / 2
_ROUNDS_TO_INFINITY = np.longdouble(_HUGE) + np.longdouble(2.0**970)  # its ulp is 2^971
# Where the wide run overflowed too, a float64 value this close to its value is float64's rounding
# (a cancellation loses digits long double keeps), not an overflow's damage, which is gross.
_ROUNDING = 2.0**-20
# Evaluations of parts of a chunk spent finding which points overflow alone (each costs the generated
# code's call, some 50 us): a few points among thousands take a few dozen, n points at most 2n - 1,
# so that one point beside 32 that overflow is found (at 64 in all, every one of them was taken as
# overflowing: NaN for a value that alone is right; an independent hunt); a chunk of hundreds
# overflowing stops at the cap.
_MIN_EVALUATIONS = 64
_MAX_EVALUATIONS = 512


@functools.cache
def namespace() -> Mapping[str, Any]:
    """The names of `programs.namespace()`, each computing in long double where it can."""
    return MappingProxyType(
        {
            name: _WIDE_KERNELS.get(name) or _widened(name, value)
            for name, value in programs.namespace().items()
        }
    )


def _gamma(x: Any) -> Any:
    """gamma in float64, and past its range (171.6 < x < 1755) exp(loggamma x) in long double:
    loggamma's rounding (1e-16 of some 750) makes it good to 1e-13. x^100/gamma(x) at 180 is 3e-102."""
    xs = np.asarray(_narrowed(x), dtype=np.float64)
    result = np.asarray(scipy.special.gamma(xs))
    # Past the doubles away from 0, and below -171.7 towards 0 (gamma(-172.5) is -1.1e-312;
    # 1e300*gamma(x) there was -0.0).
    past, below = np.isinf(result) & (xs != 0), (result == 0) & (xs < 0)
    # In long double even where the double holds it, as every other kernel's value in this run:
    # (x gamma(x))^2 at 1e-160, x^2 gamma(x)^2, squared gamma's 1e160 in doubles (inf; a hunt).
    result = result.astype(np.longdouble)
    if not (past.any() or below.any()):
        return overflow.reported(result)
    wide = xs[past].astype(np.longdouble)
    # Next to 0 gamma is 1/x - euler + O(x): 1/x, where 1/x is past the doubles (|x| < 5.6e-309).
    result[past] = np.where(np.abs(wide) < 1, 1 / wide, _long_double_gamma(xs[past]))
    result[below] = _long_double_gamma(xs[below])
    if below.any() and (result == 0).any():
        overflow.report()  # past long double too (below about -1760)
    return overflow.reported(result)


def _one_minus_gamma(x: Any, shift: Any) -> Any:
    """1 - gamma(x + shift) from `_gamma`, in long double, but next to gamma's ones, where the
    doubles' kernel is exact (`kernels.one_minus_gamma`): (gamma(x) - 1)/gamma(x - 1) at 172.5 is
    171.5 (inf through the doubles' kernel)."""
    xs, shifts = (np.asarray(_narrowed(a), dtype=np.float64) for a in (x, shift))
    whole, near_one, near_two = kernels.shifted_gamma_argument(xs, shifts)
    near = near_one | near_two
    # The doubles' kernel at the points next to 1 and 2 only: its gamma elsewhere flags what is
    # past the doubles, which this run computes (-171.5 was NaN; a regression hunt, 2026-12-06).
    series = kernels.one_minus_gamma(np.where(near, xs, 1.5), np.where(near, shifts, 0.0))
    return np.where(near, series, 1 - _gamma(whole))


def _long_double_gamma(xs: Any) -> Any:
    """Its sign times exp(log|gamma|) in long double."""
    return kernels.gamma_sign(xs) * np.exp(scipy.special.gammaln(xs).astype(np.longdouble))


def _erfc(x: Any) -> Any:
    """erfc in float64, and past its range (x > 27.3, where it is below every double) erfcx(x)
    e^(-x^2) with the exponential in long double: erfc(30) is 2.6e-393 there (sign(erfc(x)) at 30 was
    0, truth 1; an independent hunt, 2026-12-06). Below the long doubles too (x > 106) it underflows."""
    xs = np.asarray(_narrowed(x), dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):  # past 26.5 its value is replaced below
        result = np.asarray(kernels.erfc(xs)).astype(np.longdouble)
    past = xs > _ERFC_BELOW_DOUBLES
    if past.any():
        wide = xs[past].astype(np.longdouble)
        with np.errstate(under="ignore"):
            result[past] = scipy.special.erfcx(xs[past]) * np.exp(-wide * wide)
        if (result[past] < _LONG_DOUBLE_TINY).any():
            overflow.report("underflow")
    return result


_ERFC_BELOW_DOUBLES = 26.5  # erfc(26.55) is the smallest normal double


def _beta(a: Any, b: Any) -> Any:
    """beta in float64, and where that is below or past the doubles, its sign times exp(log|Gamma(a)|
    + log|Gamma(b)| - log|Gamma(a + b)|) in long double: beta(1000, 1000) is 1e-602 (beta(x, x)*4^x
    there was 0.0, truth 0.112; an independent hunt, 2026-12-06). The logs' rounding (1e-16 of their
    sum of magnitudes) makes it good to some 1e-12 at 1000. Off every pole only (0, inf are right there)."""
    narrowed = [np.asarray(_narrowed(arg), dtype=np.float64) for arg in (a, b)]
    if any(_lost(arg, double) for arg, double in zip((a, b), narrowed, strict=True)):
        overflow.report("underflow")
    xs, ys = np.broadcast_arrays(*narrowed)
    with np.errstate(all="ignore"):
        result = np.asarray(kernels.NAMESPACE["beta"](xs, ys)).astype(np.longdouble)
        total = xs + ys
        logs = [scipy.special.gammaln(v) for v in (xs, ys, total)]
        past = ((np.abs(result) < _TINY) | np.isinf(result)) & np.logical_and.reduce(
            [np.isfinite(v) for v in logs]
        )
        if past.any():
            sign = kernels.gamma_sign(xs) * kernels.gamma_sign(ys) * kernels.gamma_sign(total)
            exponent = sum(
                np.asarray(v[past], dtype=np.longdouble) * k for v, k in zip(logs, (1, 1, -1), strict=True)
            )
            result[past] = sign[past] * np.exp(exponent)
    magnitude = np.abs(result[past])
    if np.any(magnitude < _LONG_DOUBLE_TINY):
        overflow.report("underflow")
    return overflow.reported(result)


# The smallest normal long double: below it a value lost bits (or is 0).
_LONG_DOUBLE_TINY = np.finfo(np.longdouble).smallest_normal


def _flagged_by_value(function: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A power (numpy's long double power, glibc's powl) whose overflow and underflow are told by its
    value: powl sets the overflow flag for any value past 2^8192 and the underflow flag for any below
    2^-8192, though long double holds both, so (x^x + 1)^2 at x = 470 (5.9e2511) made the wide run
    NaN from there on (tester round 11). An infinite value of finite arguments is an overflow, a
    value below the normal long doubles of a nonzero base an underflow."""

    @functools.wraps(function)
    def power(base: Any, exponent: Any) -> Any:
        with np.errstate(over="ignore", under="ignore"):
            result = function(base, exponent)
        with np.errstate(all="ignore"):
            magnitude = np.abs(result)
            arguments = np.isfinite(base) & np.isfinite(exponent) & (base != 0)
            if np.any(np.isinf(magnitude) & arguments):
                overflow.report()
            if np.any((magnitude < _LONG_DOUBLE_TINY) & arguments):
                overflow.report("underflow")
        return result

    return power


def _periodic_argument(
    u: Any, wide_limit: float = kernels.PRECISE_WIDE_ARGUMENT, radians: float = 1.0, period: float = 0.0
) -> Any:
    """u, moved by a radian in `unknown_arguments_moved` where it is too large for a periodic
    function's value to be known (`kernels.periodic_argument`): the values that change with it are
    not known. Where u is reduced modulo a `period` exactly (half turns), by a quarter turn, and
    where no double near u is a quarter turn away, NaN (a move of whole periods changes nothing:
    sin(pi*x*0.1) at 4.6e19 kept -0.7071; a regression hunt)."""
    if not _MOVED.get():
        return u
    magnitude = np.abs(u)
    unknown = magnitude > wide_limit / radians
    if period:  # a quarter turn of the function, which may repeat many times in `period`
        quarter = np.pi / 2 / radians
        moved = np.where(np.spacing(magnitude) > quarter / 4, np.nan, u + quarter)
        return np.where(unknown, moved, u)
    # A radian, or where that is below long double's ulp, some eight ulps (whole radians).
    step = np.maximum(1.0 / radians, magnitude * 2.0**-60)
    return np.where(unknown, u + step, u)


# The periodic functions in long double, for arguments far from their poles (`_moved_affine`).
_WIDE_PERIODIC: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "sin": np.sin,
        "cos": np.cos,
        "tan": np.tan,
        "sec": lambda u: 1 / np.cos(u),
        "csc": lambda u: 1 / np.sin(u),
        "cot": lambda u: 1 / np.tan(u),
    }
)


def _moved_affine(kernel: Callable[..., Any], name: str) -> Callable[..., Any]:
    """An `_of_affine` kernel in the long double run: in doubles (its arguments are exact there),
    and `moved` in `unknown_arguments_moved` (`kernels._of_affine`); but where its argument is below
    2^-511, the function of the argument computed in long double: in doubles x*y at 1e-300 is 0,
    and sin(x*y)/(x*y) was 0.0 there in GradientAtPoint, where (1/x)(1/y) sin(x*y) took the place of
    0/0 (a hunt, 2026-12-07)."""
    plain = _WIDE_PERIODIC[name.removesuffix("_of_affine")]

    @functools.wraps(kernel)
    def wide(a: Any, k: Any, k_low: Any, c: Any, c_low: Any) -> Any:
        value = _in_doubles(functools.partial(kernel, moved=_MOVED.get()))(a, k, k_low, c, c_low)
        with np.errstate(all="ignore"):
            argument = (np.multiply(a, k) + np.multiply(a, k_low)) + (np.add(c, c_low))
            tiny = (np.abs(argument) < _SQUARE_BELOW_NORMAL) & (argument != 0)
            if not np.any(tiny):
                return value
            return np.where(tiny, plain(np.where(tiny, argument, 1.0)), value)

    return wide


_MOVED: contextvars.ContextVar[bool] = contextvars.ContextVar("moved", default=False)


@contextlib.contextmanager
def unknown_arguments_moved() -> Iterator[None]:
    """Long double runs in this block compute each periodic function whose argument is too large to
    know at that argument plus a radian: the values that differ from a run outside it depend on one
    (`numeric._mend_imprecise`); those that do not, x + 0*sin(x^3) or x + e^-x sin(x^3) at 2000.5,
    keep theirs (as NaN they were: a regression hunt, 2026-12-06)."""
    token = _MOVED.set(True)
    try:
        yield
    finally:
        _MOVED.reset(token)


_WIDE_KERNELS: Mapping[str, Callable[..., Any]] = {
    "gamma": _gamma,
    "periodic_argument": _periodic_argument,
    **{
        name: _moved_affine(kernels.NAMESPACE[name], name)
        for name in kernels.NAMESPACE
        if name.endswith("_of_affine")
    },
    # The doubles' sin and cos are `vectormath`'s, through tan(x/2): x/2 rounds below the normal
    # doubles, so sin(x)/x at 5e-324 was 0.0 (and 5e-14 off at 1e-310) even in the wide run that
    # such points get. numpy's have long double loops.
    "sin": np.sin,
    "cos": np.cos,
    "factorial": lambda x: _gamma(np.add(x, 1.0)),
    "one_minus_gamma": _one_minus_gamma,
    "erfc": _erfc,
    "beta": _beta,
    **{
        name: _flagged_by_value(kernels.NAMESPACE[name])
        for name in ("power", "fractional_power", "integer_power", "odd_power")
    },
}


def _widened(name: str, value: Any) -> Any:
    if isinstance(value, np.ufunc):
        return value if _has_long_double_loop(value) else _in_doubles(value)
    if callable(value) and not isinstance(value, type) and name not in kernels.GENERIC:
        return _in_doubles(value)
    return value


def _has_long_double_loop(ufunc: np.ufunc) -> bool:
    return any(set(signature.replace("->", "")) == {"g"} for signature in ufunc.types)


def _in_doubles(function: Callable[..., Any]) -> Callable[..., Any]:
    # A value it answers past the doubles counts as an overflow of the wide run (`contained`'s
    # underflow). Generated code calls a one-output ufunc with `out=`, None in a run without destinations.
    # Its value goes back to long double, so what is computed from it is too: beta(a, b)^2 stayed a
    # double and overflowed again in the wide run (beta(sin x, x^x)^2 / x^(2x) at x = 92.8, make fuzz).
    # An argument past the doubles (x*y at 1e-300 is 1e-600) is lost in narrowing: so is the value.
    @functools.wraps(function)
    def narrowing(*args: Any, **keywords: Any) -> Any:
        narrowed = [_narrowed(arg) for arg in args]
        if any(_lost(arg, double) for arg, double in zip(args, narrowed, strict=True)):
            overflow.report("underflow")
        return _rewidened(function(*narrowed, **keywords))

    return overflow.contained(narrowing, underflow=True)


def _narrowed(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "fc" and value.dtype.itemsize > 8:
        if value.dtype.kind == "c":
            return value.astype(np.complex128)
        return to_doubles(value)
    return value


def to_doubles(values: Any) -> Any:
    """Long doubles rounded to doubles, as `astype` rounds them, faster where many are past the
    doubles: the processor converts a value that rounds to inf, to 0 or to a subnormal some 200
    times slower than a normal one (a Gaussian's tails, 1e-391 in long double, took 70 ms a million
    points). Those past either end get their infinity or signed zero without converting."""
    array = np.asarray(values)
    if array.dtype != np.longdouble:
        return array.astype(np.float64)
    with np.errstate(all="ignore"):
        magnitude = np.abs(array)
        ordinary = _normal(magnitude)
        if ordinary.all():
            return array.astype(np.float64)
        result = np.where(ordinary, array, 1.0).astype(np.float64)
        past = magnitude >= _ROUNDS_TO_INFINITY
        result[past] = np.where(np.signbit(array[past]), -np.inf, np.inf)
        gone = magnitude <= _ROUNDS_TO_ZERO
        result[gone] = np.where(np.signbit(array[gone]), -0.0, 0.0)
        # The few in between (subnormals, the edge of the largest double, NaN) the slow way.
        between = np.flatnonzero(~(ordinary | past | gone))
        result[between] = array[between].astype(np.float64)
    return result


def _normal(magnitude: Any) -> Any:
    """Where |x| (`magnitude`) is a normal double: not 0, not subnormal, not past the doubles, not NaN."""
    return (magnitude >= _TINY) & (magnitude <= _HUGE)  # NaN compares False


def _lost(wide: Any, double: Any) -> bool:
    """Whether narrowing `wide` to `double` lost a value: below the normal doubles, or past them."""
    if double is wide or not isinstance(double, np.ndarray | np.generic) or double.dtype.kind != "f":
        return False
    with np.errstate(all="ignore"):
        magnitude = np.abs(double)
        return bool(np.any(((magnitude < _TINY) & (wide != 0)) | (np.isinf(double) & np.isfinite(wide))))


def _rewidened(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "fc":
        return value.astype(np.clongdouble if value.dtype.kind == "c" else np.longdouble)
    return np.longdouble(value) if isinstance(value, float) else value


def widened(arrays: Sequence[FloatArray]) -> list[Any]:
    """The columns as long doubles."""
    return [array.astype(np.longdouble) for array in arrays]


def mend(
    values: Sequence[FloatArray],
    wide: Sequence[FloatArray],
    wide_lost: bool,
    damaged: Callable[[bool, IntArray], BoolArray],
    fed: Callable[[int], int | None] = lambda point: None,
) -> None:
    """Correct one chunk's float64 `values` (one array per output, in place) where the wide run's,
    rounded to doubles (`wide`, broadcast to them), disagree; `wide_lost`: the wide run went past
    its own range somewhere. `damaged(wide, points)` tells which of those points (indices) overflow
    (or underflow: `numeric._mend_underflowed`) in their own float64 (or wide) evaluation, or may
    (`flagging` did not get to them): only such a point's values change, so that alone it gets
    the same. `fed(point)`, once `damaged(True, ...)` found the point: the outputs (bit k for
    output k) that what overflowed in its wide run feeds, None if not known (all of them); the
    others take their wide values there (exp(x)/(exp(x) + 1) at 6000 was NaN in GradientAtPoint,
    where only its derivative's (e^x + 1)^2 is past long double)."""
    disagree = np.zeros(len(values[0]), dtype=bool)
    for ours, again in zip(values, wide, strict=True):
        disagree |= ~((ours == again) | (np.isnan(ours) & np.isnan(again)) | _within(ours, again, _AGREEMENT))
    points = np.flatnonzero(disagree)
    if not len(points):
        return
    # Only points damaged alone: one that differs by a cancellation's digits keeps its values.
    points = points[damaged(False, points)]
    unknown: BoolArray = np.zeros(len(points), dtype=bool)
    if wide_lost and len(points):
        unknown = damaged(True, points)
    known, lost = points[~unknown], points[unknown]
    feeding = [fed(int(point)) for point in lost]
    for index, (ours, again) in enumerate(zip(values, wide, strict=True)):
        ours[known] = again[known]
        spared = np.array([bits is not None and not bits >> index & 1 for bits in feeding], dtype=bool)
        ours[lost[spared]] = again[lost[spared]]
        # Not known: float64's value within rounding of the wide one stays (a cancellation's digits,
        # not an overflow's damage), or equal to it (exp(x) - 1 at 1e300 is inf both ways: NaN
        # beside another row that overflowed in float64 alone, inf alone; an independent hunt), one
        # further away is NaN.
        unsure = lost[~spared]
        mine, theirs = ours[unsure], again[unsure]
        ours[unsure[~((mine == theirs) | _within(mine, theirs, _ROUNDING))]] = np.nan


def doubtful(values: Sequence[FloatArray], columns: Sequence[FloatArray]) -> IntArray:
    """The points (indices) where an underflow on the way may have done damage: where some value is
    0, below the normal doubles or not finite (`cbrt(x*y)` at 1e-300 is 0.0 in float64), or some
    argument is so small that its square is below them (x*x at 1e-160 is 1e-320, a subnormal of 10
    bits: cbrt(x*x) there was wrong in the 6th digit)."""
    suspect = np.zeros(len(values[0]), dtype=bool)
    for array in values:
        suspect |= ~_normal(np.abs(array))
    for column in columns:
        magnitude = np.abs(column)
        suspect |= (magnitude < _SQUARE_BELOW_NORMAL) & (magnitude > 0)  # broadcasts a single value
    return np.flatnonzero(suspect)


def flagging(
    evaluate: Callable[[IntArray], object],
    points: IntArray,
    watch: overflow.Watch,
    *,
    underflow: bool = False,
    lines: dict[int, set[int]] | None = None,
) -> BoolArray:
    """Which of `points` overflow (or with `underflow`, overflow or underflow) when evaluated alone,
    found by halving the groups that do (`evaluate(indices)` under `watch`), or may: those in groups
    not yet halved to single points when the evaluations run out (2n - 1 find all of n points; at
    least _MIN_EVALUATIONS, at most _MAX_EVALUATIONS). `lines` gets, for each point found, the
    lines of generated code that did (`overflow.Watch.lines`)."""
    found = np.zeros(len(points), dtype=bool)
    groups = [np.arange(len(points))]
    kinds = ("overflow", "underflow") if underflow else ("overflow",)
    for _ in range(min(max(_MIN_EVALUATIONS, 2 * len(points) - 1), _MAX_EVALUATIONS)):
        if not groups:
            return found
        group = groups.pop()
        watch.clear()
        evaluate(points[group])
        flagged = watch.seen or (underflow and watch.underflowed)
        if flagged and len(group) == 1:
            found[group[0]] = True
            if lines is not None:
                lines[int(points[group[0]])] = set().union(*(watch.lines.get(kind, ()) for kind in kinds))
        elif flagged:
            groups += [group[: len(group) // 2], group[len(group) // 2 :]]
    for group in groups:
        found[group] = True
    return found


def _within(values: FloatArray, again: Any, tolerance: float) -> Any:
    return np.abs(values - again) <= tolerance * np.abs(again) + _TINY
