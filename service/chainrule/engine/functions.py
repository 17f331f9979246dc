"""The one table of functions and constants the expression grammar accepts, and their numeric forms."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.special
import sympy
from numpy.typing import ArrayLike, NDArray

from chainrule.engine import vectormath

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "RESERVED_NAMES",
    "SPECS",
    "FunctionSpec",
    "IntegerPower",
    "RealCeiling",
    "RealFloor",
    "RealRoot",
    "integer_powers",
    "lambdify_modules",
]


class RealRoot(sympy.Function):  # type: ignore[misc]
    """The real n-th root `root(x, n)`: `root(-8, 3)` is -2, where sympy's principal root is complex.

    For even n and negative x there is no real root: the numeric form gives NaN.
    """

    nargs = 2

    @classmethod
    def eval(cls, x: sympy.Expr, n: sympy.Expr) -> sympy.Expr | None:
        if n == 1:
            return x
        if not (x.is_Number and n.is_Integer) or n.is_zero:
            return None
        if x.is_nonnegative:
            return sympy.root(x, n)
        if n.is_odd:
            return -sympy.root(-x, n)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, n = self.args
        if argindex == 1:
            # d/dx x^(1/n) = x^(1/n) / (n x), which holds on both sides of 0 for odd n.
            return self / (n * x)
        if argindex == 2:
            return -self * sympy.log(sympy.Abs(x)) / n**2
        raise sympy.ArgumentIndexError(self, argindex)

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        x, n = self.args
        if not (x.is_number and n.is_number):
            return None
        value, degree = x._eval_evalf(prec) or x, n._eval_evalf(prec) or n
        if value.is_nonnegative:
            return (value ** (1 / degree))._eval_evalf(prec)
        if value.is_negative and n.is_integer and n.is_odd:
            return (-((-value) ** (1 / degree)))._eval_evalf(prec)
        return None

    def _eval_is_extended_real(self) -> bool | None:
        x, n = self.args
        if x.is_extended_real and n.is_integer and n.is_odd:
            return True
        if x.is_nonnegative and n.is_extended_real:
            return True
        return None

    def _sympystr(self, printer: Any) -> str:
        x, n = self.args
        if n == 3:
            return f"cbrt({printer.doprint(x)})"
        return f"root({printer.doprint(x)}, {printer.doprint(n)})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        x, n = self.args
        body = printer.doprint(x)
        tex = rf"\sqrt{{{body}}}" if n == 2 else rf"\sqrt[{printer.doprint(n)}]{{{body}}}"
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"


class RealFloor(sympy.floor):  # type: ignore[misc]
    """`floor` whose derivative is 0 (true except at the integers), not an unevaluated Derivative."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero

    def _sympystr(self, printer: Any) -> str:
        return f"floor({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return str(printer._print_floor(self, exp))


class RealCeiling(sympy.ceiling):  # type: ignore[misc]
    """`ceiling` whose derivative is 0 (true everywhere except at the integers)."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero

    def _sympystr(self, printer: Any) -> str:
        return f"ceiling({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return str(printer._print_ceiling(self, exp))


class IntegerPower(sympy.Function):  # type: ignore[misc]
    """base^n for an integer n that numpy has no fast path for, in numeric code only (`integer_powers`):
    it is bound to `vectormath.integer_power` (numpy's own power is scalar and slow for negative bases)."""

    nargs = 2


# numpy turns these exponents into square, reciprocal, a copy or ones, whatever the sign of the base.
_NUMPY_FAST_EXPONENTS = frozenset({-1, 0, 1, 2})


def integer_powers(expr: sympy.Basic) -> sympy.Basic:
    """`expr` for numeric code: each integer power outside numpy's fast exponents an `IntegerPower`."""

    def slow(node: sympy.Basic) -> bool:
        return bool(node.is_Pow and node.exp.is_Integer and int(node.exp) not in _NUMPY_FAST_EXPONENTS)

    return expr.replace(slow, lambda node: IntegerPower(node.base, node.exp))


def _real_root_numpy(x: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """Real n-th root: exact `np.cbrt` for n = 3, sign(x)|x|^(1/n) for odd n, NaN for x < 0 and even n."""
    xs = np.asarray(x, dtype=np.float64)
    ns = np.asarray(n, dtype=np.float64)
    if ns.ndim == 0 and ns == 3:
        return np.cbrt(xs)
    with np.errstate(all="ignore"):
        magnitude = np.abs(xs) ** (1.0 / ns)
        odd = np.mod(ns, 2.0) == 1.0
        result = np.where(xs >= 0, magnitude, np.where(odd, -magnitude, np.nan))
    return np.asarray(result, dtype=np.float64)


def _dirac_delta_numpy(x: ArrayLike, order: ArrayLike = 0) -> NDArray[np.float64]:
    """DiracDelta and its derivatives: 0 away from 0, NaN (no finite value) at 0."""
    xs = np.asarray(x, dtype=np.float64)
    _ = order
    return np.where(xs == 0, np.nan, 0.0)


@dataclass(frozen=True)
class FunctionSpec:
    """One accepted function: its canonical name (what the printer writes), aliases and arity.

    `build` receives sympy arguments and returns the sympy expression. `numpy` is set for the
    functions we implement ourselves (`lambdify_name` is then the name lambdify prints for it).
    `guard_numbers` marks functions that sympy evaluates eagerly and expensively on numbers
    (factorial(10^9)): the parser refuses numeric arguments above `max_factorial_argument`.
    `power` marks `pow`, which goes through the parser's numeric-power check; `root` marks the
    roots, whose exact value sympy searches for (slow on numbers of thousands of bits).
    """

    name: str
    min_args: int
    max_args: int
    build: Callable[..., sympy.Expr]
    aliases: tuple[str, ...] = ()
    summary: str = ""
    numpy: Callable[..., Any] | None = None
    lambdify_name: str | None = None
    guard_numbers: bool = False
    power: bool = False
    root: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _one(name: str, ctor: Callable[..., sympy.Expr], *aliases: str, summary: str = "") -> FunctionSpec:
    return FunctionSpec(name, 1, 1, ctor, aliases=aliases, summary=summary)


def _log(x: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.log(x) if base is None else sympy.log(x, base)


def _heaviside(x: sympy.Expr, h0: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.Heaviside(x) if h0 is None else sympy.Heaviside(x, h0)


def _dirac(x: sympy.Expr, order: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.DiracDelta(x) if order is None else sympy.DiracDelta(x, order)


def _zeta(s: sympy.Expr, a: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.zeta(s) if a is None else sympy.zeta(s, a)


_TRIG = [
    _one("sin", sympy.sin),
    _one("cos", sympy.cos),
    _one("tan", sympy.tan),
    _one("sec", sympy.sec),
    _one("csc", sympy.csc),
    _one("cot", sympy.cot),
    _one("asin", sympy.asin, "arcsin"),
    _one("acos", sympy.acos, "arccos"),
    _one("atan", sympy.atan, "arctan"),
    _one("asec", sympy.asec, "arcsec"),
    _one("acsc", sympy.acsc, "arccsc"),
    _one("acot", sympy.acot, "arccot"),
    FunctionSpec("atan2", 2, 2, sympy.atan2, aliases=("arctan2",), summary="atan2(y, x)"),
]

_HYPERBOLIC = [
    _one("sinh", sympy.sinh),
    _one("cosh", sympy.cosh),
    _one("tanh", sympy.tanh),
    _one("sech", sympy.sech),
    _one("csch", sympy.csch),
    _one("coth", sympy.coth),
    _one("asinh", sympy.asinh, "arsinh", "arcsinh"),
    _one("acosh", sympy.acosh, "arcosh", "arccosh"),
    _one("atanh", sympy.atanh, "artanh", "arctanh"),
    _one("asech", sympy.asech, "arsech", "arcsech"),
    _one("acsch", sympy.acsch, "arcsch", "arccsch"),
    _one("acoth", sympy.acoth, "arcoth", "arccoth"),
]

_POWERS = [
    _one("exp", sympy.exp),
    FunctionSpec("log", 1, 2, _log, aliases=("ln",), summary="natural log; log(x, base)"),
    _one("log10", lambda x: sympy.log(x, 10)),
    _one("log2", lambda x: sympy.log(x, 2)),
    FunctionSpec("sqrt", 1, 1, sympy.sqrt, summary="principal square root (NaN for x < 0)", root=True),
    FunctionSpec("cbrt", 1, 1, lambda x: RealRoot(x, 3), summary="real cube root: cbrt(-8) = -2", root=True),
    FunctionSpec(
        "root",
        2,
        2,
        RealRoot,
        aliases=("nthRoot",),
        summary="real n-th root root(x, n): root(-8, 3) = -2",
        numpy=_real_root_numpy,
        lambdify_name="RealRoot",
        root=True,
    ),
    FunctionSpec("pow", 2, 2, sympy.Pow, summary="pow(a, b) = a^b", power=True),
]

_PIECEWISE = [
    _one("Abs", sympy.Abs, "abs"),
    _one("sign", sympy.sign, "sgn"),
    FunctionSpec(
        "floor", 1, 1, RealFloor, summary="floor; derivative 0", numpy=np.floor, lambdify_name="RealFloor"
    ),
    FunctionSpec(
        "ceiling",
        1,
        1,
        RealCeiling,
        aliases=("ceil",),
        summary="ceiling; derivative 0",
        numpy=np.ceil,
        lambdify_name="RealCeiling",
    ),
    FunctionSpec("Min", 1, 16, sympy.Min, aliases=("min",)),
    FunctionSpec("Max", 1, 16, sympy.Max, aliases=("max",)),
    FunctionSpec("Heaviside", 1, 2, _heaviside, summary="step; Heaviside(0) = 1/2"),
    FunctionSpec(
        "DiracDelta",
        1,
        2,
        _dirac,
        summary="DiracDelta(x, k): k-th derivative of the delta",
        numpy=_dirac_delta_numpy,
        lambdify_name="DiracDelta",
    ),
    _one("re", sympy.re, summary="real part (identity on reals)"),
    _one("im", sympy.im, summary="imaginary part (0 on reals)"),
]


def _guarded(spec: FunctionSpec) -> FunctionSpec:
    return dataclasses.replace(spec, guard_numbers=True)


def _factorial_numpy(x: ArrayLike) -> NDArray[np.float64]:
    # scipy.special.factorial answers 0 for every negative argument, where gamma(x + 1), which the
    # derivative of factorial is written in, has its poles (negative integers: NaN) and real values.
    return np.asarray(scipy.special.gamma(np.add(x, 1.0)), dtype=np.float64)


_SPECIAL = [
    _one("erf", sympy.erf),
    _one("erfc", sympy.erfc),
    _guarded(_one("gamma", sympy.gamma)),
    _guarded(_one("loggamma", sympy.loggamma, "lgamma")),
    _guarded(_one("digamma", sympy.digamma)),
    _guarded(FunctionSpec("polygamma", 2, 2, sympy.polygamma, summary="polygamma(n, x)")),
    _guarded(FunctionSpec("beta", 2, 2, sympy.beta)),
    _guarded(
        FunctionSpec(
            "factorial",
            1,
            1,
            sympy.factorial,
            summary="factorial; gamma(x + 1) off the integers",
            numpy=_factorial_numpy,
            lambdify_name="factorial",
        )
    ),
    _guarded(FunctionSpec("zeta", 1, 2, _zeta, summary="Riemann zeta; zeta(s, a) Hurwitz")),
]

SPECS: tuple[FunctionSpec, ...] = (*_TRIG, *_HYPERBOLIC, *_POWERS, *_PIECEWISE, *_SPECIAL)
"""Every accepted function once, in documentation order."""


def _index(specs: tuple[FunctionSpec, ...]) -> Mapping[str, FunctionSpec]:
    table: dict[str, FunctionSpec] = {}
    for spec in specs:
        for name in spec.names:
            if name in table:
                raise RuntimeError(f"function name {name!r} defined twice")
            table[name] = spec
    return MappingProxyType(table)


FUNCTIONS: Mapping[str, FunctionSpec] = _index(SPECS)
"""Every accepted function name (aliases included) -> its spec. Names are case-sensitive."""

CONSTANTS: Mapping[str, sympy.Expr] = MappingProxyType(
    {
        "e": sympy.E,
        "E": sympy.E,
        "pi": sympy.pi,
        "π": sympy.pi,
        # What sympy can print for numbers such as digamma(1) or loggamma(0): readable back.
        "EulerGamma": sympy.EulerGamma,
        "Catalan": sympy.Catalan,
        "oo": sympy.oo,
    }
)
"""Constant names -> values."""

RESERVED_NAMES: frozenset[str] = frozenset(FUNCTIONS) | frozenset(CONSTANTS)
"""Names that can never be variables."""

KINKED: tuple[type, ...] = (
    sympy.Abs,
    sympy.sign,
    sympy.floor,
    sympy.ceiling,
    sympy.Heaviside,
    sympy.DiracDelta,
    sympy.Min,
    sympy.Max,
    sympy.Piecewise,
)
"""Functions with kinks or jumps: no derivative there, and a value that may differ from a limit."""


def lambdify_modules() -> list[object]:
    """The `modules` argument for `sympy.lambdify`: our own implementations, then scipy.special, then numpy.

    "scipy" selects sympy's SciPy printer (erf, erfc, gamma, gammaln, polygamma, beta, zeta,
    factorial from `scipy.special`); everything else is numpy, but sin and cos are
    `vectormath`'s where numpy's tan is SIMD and its sin and cos are not, and so is `IntegerPower`.
    """
    custom = {spec.lambdify_name: spec.numpy for spec in SPECS if spec.numpy is not None}
    custom[IntegerPower.__name__] = vectormath.integer_power
    if _SIMD_TAN:
        custom |= {"sin": vectormath.sin, "cos": vectormath.cos}
    return [custom, "scipy", "numpy"]


_SIMD_TAN = vectormath.simd_tan()
