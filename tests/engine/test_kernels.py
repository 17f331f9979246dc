"""Every float64 kernel numeric code calls: a NaN argument (no real value) gives NaN, whatever the others.

scipy answers beta(NaN, -4) with inf (the pole of the other argument) and numpy's heaviside reads its
second argument only at 0; the fuzzer found `acsch(beta(atanh(y), -4))` at y = 2.68 to be 0 for it.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import numpy as np
import pytest

from chainrule.engine import kernels

# Arguments next to which kernels branch: poles, zeros, edges of domains, infinities, huge values.
_OTHERS = (-4.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 20.0, 1e300, np.inf, -np.inf)
# Not called so: integer powers print only exponents outside {-1, 0, 1, 2}; `partial` takes a
# function's name and orders first, `piecewise` (condition, value) pairs.
_NOT_CALLED = {"integer_power", "odd_power", "partial", "piecewise"}
# Kernels that choose between two computations of one value, each from the same arguments: a NaN
# in the first (the value as written, NaN where its terms overflowed: inf/inf) takes the second
# (`infinite_or`: an infinity in the first), and the second is not read where the first is finite
# (it may overflow where the first does not);
# `taylor_near` takes the formula's polynomial by where its variable is, the formula's value elsewhere.
_CHOOSING = {"finite_or", "infinite_or", "taylor_near", "past_exponentials", "nearer_one"}
# Kernels whose arguments past the first few are constants code generation writes (a bound, the
# low double of a constant, a power of 2, quarter turns; the half turns' offset, scale, period and
# low double, `numeric_code._in_half_turns`): never NaN.
_VALUES_TAKEN = (
    {"periodic_argument": 1, "atan2_less": 2, "rational_power": 1}
    | {name: 2 for name in kernels.NAMESPACE if name.endswith("_of_affine")}
    | {name: 1 for name in kernels.NAMESPACE if name.endswith("_half_turns")}
)


def _arities(function: Any) -> range:
    function = inspect.unwrap(function)  # a kernel whose infinities are reported (`overflow.reporting`)
    if isinstance(function, np.ufunc):
        return range(function.nin, function.nin + 1)
    every = inspect.signature(function).parameters.values()
    parameters = [p for p in every if p.kind is not p.KEYWORD_ONLY]  # code calls with positions only
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return range(1, 3)
    required = sum(p.default is p.empty for p in parameters)
    return range(required, len(parameters) + 1)


CASES = [
    (name, arity)
    for name, function in sorted(kernels.NAMESPACE.items())
    if callable(function) and not inspect.isclass(function) and name not in _NOT_CALLED
    for arity in _arities(function)
    if arity >= 1
]


@pytest.mark.parametrize(("name", "arity"), CASES, ids=[f"{n}/{a}" for n, a in CASES])
def test_a_nan_argument_gives_nan(name: str, arity: int) -> None:
    function = kernels.NAMESPACE[name]
    for position in range(min(arity, _VALUES_TAKEN.get(name, arity))):
        if name in _CHOOSING:
            continue
        for others in itertools.product(_OTHERS, repeat=arity - 1):
            args = [np.array([value]) for value in others]
            args.insert(position, np.array([np.nan]))
            with np.errstate(all="ignore"):
                result = np.asarray(function(*args), dtype=np.float64)
            assert np.isnan(result).all(), (name, [float(a[0]) for a in args], result)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("beta", (-171.5, 2.0)),  # |Gamma(-171.5)| is 5e-310: scipy's product was 0.0
        ("beta", (2.0, -171.2)),
        ("beta", (-171.7, 2.5)),
        ("beta", (-170.2, 2.0)),
        ("beta", (-171.5, 172.5)),
        ("beta", (-171.5, -0.5)),  # the sum is a pole: 0
        ("beta", (-3.5, 2.0)),  # scipy's own, where every Gamma is a normal double
        ("loggamma", (5e-324,)),  # scipy's gammaln is inf below 1e-308
        ("loggamma", (1e-310,)),
        ("loggamma", (1e-300,)),
        ("loggamma", (2.0**-61,)),
    ],
)
def test_the_gamma_family_where_gamma_leaves_the_normal_doubles(name: str, args: tuple[float, ...]) -> None:
    """An independent tester's points, against mpmath: good to 1e-13 (docstring of `kernels.beta`)."""
    import mpmath  # noqa: PLC0415 (the reference, for this test only)

    with mpmath.workdps(50):
        exact = float({"beta": mpmath.beta, "loggamma": mpmath.loggamma}[name](*map(mpmath.mpf, args)).real)
    with np.errstate(all="ignore"):
        value = float(np.asarray(kernels.NAMESPACE[name](*(np.array([a]) for a in args)))[0])
    assert value == pytest.approx(exact, rel=1e-13, abs=0.0)


def test_the_sign_of_a_zero_argument_does_not_change_a_real_value() -> None:
    """On the reals -0.0 is 0: atan2(-0.0, -1) was -pi (IEEE's angle below the cut), pi at +0.0; arg
    of either zero is NaN, as sympy's arg(0) (it was 0 or pi by the zero's sign)."""
    atan2, arg = kernels.NAMESPACE["atan2"], kernels.NAMESPACE["arg"]
    assert atan2(np.array([-0.0, 0.0]), np.array([-1.0, -1.0])).tolist() == [np.pi, np.pi]
    assert np.isnan(arg(np.array([-0.0, 0.0]))).all()
    assert arg(np.array([-2.0, 3.0])).tolist() == [np.pi, 0.0]


_WIDE = (-1e4, -800.0, -20.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 20.0, 800.0, 1e4, 1e300)


def _overflow_flag_without_overflow(function: Any, args: tuple[float, ...]) -> bool:
    wide = [np.array([value], dtype=np.longdouble) for value in args]
    with np.errstate(all="ignore"):
        value = np.asarray(function(*wide))
    try:
        with np.errstate(over="raise", under="ignore", invalid="ignore", divide="ignore"):
            function(*wide)
    except FloatingPointError:
        return bool(np.isfinite(value).all())
    return False


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("exp_difference", lambda a, b: (a, b, a - b)),
        ("one_less_power", lambda u, p: (u, p, 0.5)),
        ("one_less_power_of", lambda b, p: (b, b - 1, p, 0.5)),
    ],
)
def test_a_branch_not_taken_raises_no_overflow(name: str, arguments: Any) -> None:
    """The long double run counts a point whose run raised the overflow flag as lost (NaN where the two
    runs disagree): a kernel that computed the branch it did not take, expm1(2e4), made
    log(exp(x) + exp(-x))' at 1e4 NaN (a hunt, 2026-12-05)."""
    function = kernels.NAMESPACE[name]
    flagged = [
        pair
        for pair in itertools.product(_WIDE, repeat=2)
        if _overflow_flag_without_overflow(function, arguments(*pair))
    ]
    assert not flagged, flagged[:5]
