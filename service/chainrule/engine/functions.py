"""The one table of functions and constants the expression grammar accepts, and their numeric forms."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import sympy
from sympy.calculus.accumulationbounds import AccumBounds

from chainrule.engine import kernels, reference

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "RESERVED_NAMES",
    "SPECS",
    "FunctionSpec",
    "ImaginaryPart",
    "RealAcoth",
    "RealAtan2",
    "RealCeiling",
    "RealErfc",
    "RealFloor",
    "RealPart",
    "RealRoot",
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
            # log(x), not log|x|: for x < 0 the root is real at odd whole n only, and has no
            # derivative in n (d/dn root(-8, n) at 3 was 0.46; a numbers hunt, 2026-12-07)
            return -self * sympy.log(x) / n**2
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


class _BoundedIntegerPart:
    """floor and ceiling of a number, kept unevaluated past 2^330.

    sympy finds the exact integer part of a number at the precision its magnitude needs: for
    floor(exp(10^6)) that is 1.4 million bits, computed for minutes. Past about 10^104 it gives up
    and leaves the floor as written anyway, after 0.1 to 1.4 s of trying (floor(10^300 zeta(5/2)));
    below, it takes milliseconds. Past 2^330 the constant is left as written and folded like any
    other: its double is the floor's double (a double that large is an integer).

    sympy takes a number it cannot tell from an integer within its precision for that integer: it
    gives floor(tanh(200)) = 1 (tanh(200) is 1 - 2e-174). An answer that `_CHECK_PRECISIONS` tell
    apart from the integer and contradict is dropped: the constant stays as written, and numeric
    code folds it at the precision it needs (`reference.nearest_double`).
    """

    integer_part: str  # the name of mpmath's: floor or ceil

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if not arg.is_Rational and past(arg, _EXACT_INTEGER_PART_BITS):
            return None
        result: sympy.Expr | None = super().eval(arg)  # type: ignore[misc]
        if result is not None and result.is_Integer and arg.is_number and not arg.is_Rational:
            return result if cls._confirmed(arg, int(result)) else None
        return result

    @classmethod
    def _confirmed(cls, arg: sympy.Expr, integer: int) -> bool:
        for prec in _CHECK_PRECISIONS:
            try:
                value = reference.evaluate(arg, prec=prec)
            except reference.Unsupported:
                return True
            ctx = reference.context(prec)
            if not ctx.isfinite(value):
                return True
            if not reference.near_integer(value, prec):
                return int(getattr(ctx, cls.integer_part)(value)) == integer
        return True  # an integer to the last bit folding uses (log(8)/log(2) is 3), as sympy said


_EXACT_INTEGER_PART_BITS = 330
# Bits an integer part is checked at: twice the integer's own, then as many as folding uses.
_CHECK_PRECISIONS = (2 * _EXACT_INTEGER_PART_BITS, reference.SETTLING_PRECISIONS[-1])


def magnitude(number: sympy.Expr) -> sympy.Expr:
    """|number| found at 30 bits, cheap at any magnitude: a Float, or sympy's oo, zoo or nan."""
    return abs(number.evalf(30))


def past(arg: sympy.Expr, bits: int) -> bool:
    """Whether `arg` is a number past 2^bits in magnitude."""
    if not arg.is_number:
        return False
    size = magnitude(arg)
    return bool(size.is_Float and size > sympy.Float(2) ** bits)


def _periodic(build: Callable[[sympy.Expr], sympy.Expr]) -> Callable[[sympy.Expr], sympy.Expr]:
    """A trigonometric function of a number past 2^4096 is NaN, as its value is (`reference`).

    Reducing such a number by pi needs as many bits as its magnitude has: sympy would spend minutes
    on sign(sin(exp(10^6))) (1.4 million bits), and no double argument comes near it.
    """

    def built(arg: sympy.Expr) -> sympy.Expr:
        return sympy.S.NaN if past(arg, reference.PERIODIC_BITS) else build(arg)

    return built


class RealFloor(_BoundedIntegerPart, sympy.floor):  # type: ignore[misc]
    """`floor` whose derivative is 0 (true except at the integers), not an unevaluated Derivative."""

    integer_part = "floor"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero

    def _sympystr(self, printer: Any) -> str:
        return f"floor({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return str(printer._print_floor(self, exp))


class _KeptReal:
    """re or im as sympy evaluates them only where that is re(u) = u or im(u) = 0 (u real wherever
    it has a value) or arg(u); unevaluated elsewhere, our kernels: the identity and 0, NaN kept. sympy writes
    im(erf(x^y)) as i (erf(conj(x^y)) - erf(x^y))/2, which has no float64 value (NaN at every point,
    where the value is 0 wherever x^y is real; the fuzzer, seed 1209857887), and re(log(x)) as
    log|x| and re(sqrt(x)) through arg(x): 0.69 and 8.7e-17 at -2, where the real-valued rule says
    NaN."""

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        value = super().eval(arg)  # type: ignore[misc]
        # (im(log(u)) stays sympy's arg(u): the text printer writes arg so, and reads it back.)
        kept = value is not None and (value == arg or value.is_zero or isinstance(value, sympy.arg))
        return value if kept else None


class RealPart(_KeptReal, sympy.re):  # type: ignore[misc]
    """re, kept where sympy would bring in i (`_KeptReal`)."""

    def _sympystr(self, printer: Any) -> str:
        return f"re({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return str(printer._print_re(self, exp))


class ImaginaryPart(_KeptReal, sympy.im):  # type: ignore[misc]
    """im, kept where sympy would bring in i (`_KeptReal`)."""

    def _sympystr(self, printer: Any) -> str:
        return f"im({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return str(printer._print_im(self, exp))


class RealCeiling(_BoundedIntegerPart, sympy.ceiling):  # type: ignore[misc]
    """`ceiling` whose derivative is 0 (true everywhere except at the integers)."""

    integer_part = "ceil"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero

    def _sympystr(self, printer: Any) -> str:
        return f"ceiling({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        return str(printer._print_ceiling(self, exp))


class RealAcoth(sympy.acoth):  # type: ignore[misc]
    """acoth, kept as written inside sinh, cosh, sech and csch.

    sympy rewrites cosh(acoth(x)) as x/(sqrt(x - 1) sqrt(x + 1)): equal in the complex plane, but on
    the reals the square roots have no value for x < -1, where cosh(acoth(x)) does. sympy's rules test
    `arg.func == acoth`, which this class is not; it prints, reads and differentiates as acoth.
    """


RealAcoth.__name__ = "acoth"  # every printer names a function by its class's __name__


class RealErfc(sympy.erfc):  # type: ignore[misc]
    """erfc, kept as written for a negated argument.

    sympy writes erfc(-u) as 2 - erfc(u): where erfc(-u) is tiny (erfc(3 - x) at x = -5 is 1.1e-29)
    the difference of two numbers near 2 leaves nothing. Numbers still evaluate exactly.
    """

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if not arg.is_number and arg.could_extract_minus_sign():
            return None
        result: sympy.Expr | None = super().eval(arg)
        return result

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        # mpmath's erfc overflows (OverflowError) past about 1e150, and sympy evaluates numbers to
        # order the terms it prints; past 2^64 erfc is 0 or 2 to any precision a double could see.
        (arg,) = self.args
        if (arg - _ERFC_FAR).is_extended_positive:
            return sympy.Float(0, precision=prec)
        if (arg + _ERFC_FAR).is_extended_negative:
            return sympy.Float(2, precision=prec)
        result: sympy.Expr | None = super()._eval_evalf(prec)
        return result


RealErfc.__name__ = "erfc"
_ERFC_FAR = sympy.Integer(2**64)


class RealAtan2(sympy.atan2):  # type: ignore[misc]
    """atan2 of numbers, kept as written where sympy would answer with a complex logarithm (`_atan2`)."""

    @classmethod
    def eval(cls, y: sympy.Expr, x: sympy.Expr) -> None:
        return None


RealAtan2.__name__ = "atan2"


def _atan2(y: sympy.Expr, x: sympy.Expr) -> sympy.Expr:
    """sympy's atan2, but for numbers whose signs sympy cannot decide (atan2(1, -tan(E))): it writes
    those as -I log((x + I y)/sqrt(x^2 + y^2)), equal but not real-valued on the way, so the
    real-valued rule would make it NaN. Kept as atan2, the constant is folded from its value."""
    built: sympy.Expr = sympy.atan2(y, x)
    return RealAtan2(y, x) if built.has(sympy.I) and not (y.has(sympy.I) or x.has(sympy.I)) else built


@dataclass(frozen=True)
class FunctionSpec:
    """One accepted function: its canonical name (what the printer writes), aliases and arity.

    `build` receives sympy arguments and returns the sympy expression; numeric code calls the kernel
    named after the sympy class it builds (`kernels.NAMESPACE`). `guard_numbers` marks functions that
    sympy evaluates eagerly and expensively on numbers (factorial(10^9)): the parser refuses numeric
    arguments above `max_factorial_argument`.
    `power` marks `pow`, which goes through the parser's numeric-power check; `root` marks the
    roots, whose exact value sympy searches for (slow on numbers of thousands of bits);
    `exponential` marks functions that grow like exp: the parser refuses a numeric argument past
    any double (sympy compares exp(10^1000) with 1 in seconds, exp(10^3000) in a minute).
    """

    name: str
    min_args: int
    max_args: int
    build: Callable[..., sympy.Expr]
    aliases: tuple[str, ...] = ()
    summary: str = ""
    guard_numbers: bool = False
    power: bool = False
    root: bool = False
    exponential: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _undefined_in(build: Callable[..., sympy.Expr]) -> Callable[..., sympy.Expr]:
    """Any function of 1/0 (sympy's unsigned infinity) or NaN is NaN: it has no real value to take.

    sympy continues through infinity (asec(1/0) is pi/2, acot(1/0) is 0), which is no real value;
    and it answers cos(oo) with the interval [-1, 1], which is none either.
    """

    def built(*args: sympy.Expr) -> sympy.Expr:
        if any(arg is sympy.S.ComplexInfinity or arg is sympy.S.NaN for arg in args):
            return sympy.S.NaN
        result = build(*args)
        return sympy.S.NaN if isinstance(result, AccumBounds) else result

    return built


def _one(name: str, ctor: Callable[..., sympy.Expr], *aliases: str, summary: str = "") -> FunctionSpec:
    return FunctionSpec(name, 1, 1, ctor, aliases=aliases, summary=summary)


def _log(x: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.log(x) if base is None else sympy.log(x, base)


def _heaviside(x: sympy.Expr, h0: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.Heaviside(x) if h0 is None else sympy.Heaviside(x, h0)


class ArgumentError(ValueError):
    """An argument a function cannot take whatever the rest of the expression: the parser reports
    it at the call, with this message."""


def _dirac(x: sympy.Expr, order: sympy.Expr | None = None) -> sympy.Expr:
    if order is None:
        return sympy.DiracDelta(x)
    if not (order.is_Integer and order >= 0):
        # sympy takes DiracDelta(pi, e) as written and fails at the first derivative or printing.
        raise ArgumentError("DiracDelta's order (its second argument) must be an integer 0 or more")
    return sympy.DiracDelta(x, order)


def _on_reals(build: Callable[..., sympy.Expr]) -> Callable[..., sympy.Expr]:
    """A function sympy defines for real arguments only (Min, Heaviside): NaN for a number that is not real.
    atan2 too, which sympy takes as 0 at (0, asin(2)) (the fuzzer, seed 1655106691); and those
    that take a number that is not real to one that is (Abs, sign, re, im, floor, ceiling: the floor
    of asec(erf(1)), 0.60i, was 0; the fuzzer, seed 2440281464).

    sympy refuses `Min(sqrt(-2), x)` (ValueError: not comparable); it is valid input whose value, by
    the real-valued rule, is NaN, and so is every value built from it.
    """

    def built(*args: sympy.Expr) -> sympy.Expr:
        # Every variable is real: an argument holding i (x + acosh(0) is x + i pi/2) is not.
        if any((arg.is_number and not _is_real_number(arg)) or arg.has(sympy.I) for arg in args):
            return sympy.S.NaN
        try:
            return build(*args)
        except ValueError:  # DiracDelta(asech(e)/(y + e)): "defined only for real values"
            if any(_holds_non_real_number(arg) for arg in args):
                return sympy.S.NaN
            raise  # the parser makes what has no real value NaN (Min(x + asin(2)))

    return built


def _holds_non_real_number(expr: sympy.Expr) -> bool:
    """Whether a constant subexpression of `expr` has no real value (asech(e) in asech(e)/(y + e))."""
    return any(
        node.is_number and not node.is_Atom and not _is_real_number(node)
        for node in sympy.preorder_traversal(expr)
    )


def _is_real_number(number: sympy.Expr) -> bool:
    known: bool | None = number.is_extended_real
    if known is None:  # cbrt(log(-1)): sympy cannot tell; its value can
        return not math.isnan(reference.evaluate(number))
    return known and number is not sympy.S.NaN


def _asec(arg: sympy.Expr) -> sympy.Expr:
    """asec; sympy's rule for asec(-csc(k)) at a number k forgets the sign: 3 - pi/2 for
    asec(-csc(3)), the value of asec(csc(3)); it is pi minus that (the fuzzer, seed 2844698798;
    of every inverse of a trigonometric or hyperbolic function of +-f(k), the one rule wrong)."""
    negated = -arg
    if isinstance(negated, sympy.csc) and negated.args[0].is_number:
        return sympy.pi - sympy.asec(negated)
    return sympy.asec(arg)


def _zeta(s: sympy.Expr, a: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.zeta(s) if a is None else sympy.zeta(s, a)


_TRIG = [
    _one("sin", _periodic(sympy.sin)),
    _one("cos", _periodic(sympy.cos)),
    _one("tan", _periodic(sympy.tan)),
    _one("sec", _periodic(sympy.sec)),
    _one("csc", _periodic(sympy.csc)),
    _one("cot", _periodic(sympy.cot)),
    _one("asin", sympy.asin, "arcsin"),
    _one("acos", sympy.acos, "arccos"),
    _one("atan", sympy.atan, "arctan"),
    _one("asec", _asec, "arcsec"),
    _one("acsc", sympy.acsc, "arccsc"),
    _one("acot", sympy.acot, "arccot"),
    FunctionSpec("atan2", 2, 2, _on_reals(_atan2), aliases=("arctan2",), summary="atan2(y, x)"),
]


def _exponential(spec: FunctionSpec) -> FunctionSpec:
    return dataclasses.replace(spec, exponential=True)


_HYPERBOLIC = [
    _exponential(_one("sinh", sympy.sinh)),
    _exponential(_one("cosh", sympy.cosh)),
    _exponential(_one("tanh", sympy.tanh)),
    _exponential(_one("sech", sympy.sech)),
    _exponential(_one("csch", sympy.csch)),
    _exponential(_one("coth", sympy.coth)),
    _one("asinh", sympy.asinh, "arsinh", "arcsinh"),
    _one("acosh", sympy.acosh, "arcosh", "arccosh"),
    _one("atanh", sympy.atanh, "artanh", "arctanh"),
    _one("asech", sympy.asech, "arsech", "arcsech"),
    _one("acsch", sympy.acsch, "arcsch", "arccsch"),
    _one("acoth", RealAcoth, "arcoth", "arccoth"),
]

_POWERS = [
    _exponential(_one("exp", sympy.exp)),
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
        root=True,
    ),
    FunctionSpec("pow", 2, 2, sympy.Pow, summary="pow(a, b) = a^b", power=True),
]

_PIECEWISE = [
    _one("Abs", _on_reals(sympy.Abs), "abs"),
    _one("sign", _on_reals(sympy.sign), "sgn"),
    FunctionSpec("floor", 1, 1, _on_reals(RealFloor), summary="floor; derivative 0"),
    FunctionSpec("ceiling", 1, 1, _on_reals(RealCeiling), aliases=("ceil",), summary="ceiling; derivative 0"),
    FunctionSpec("Min", 1, 16, _on_reals(sympy.Min), aliases=("min",)),
    FunctionSpec("Max", 1, 16, _on_reals(sympy.Max), aliases=("max",)),
    FunctionSpec("Heaviside", 1, 2, _on_reals(_heaviside), summary="step; Heaviside(0) = 1/2"),
    FunctionSpec(
        "DiracDelta", 1, 2, _on_reals(_dirac), summary="DiracDelta(x, k): k-th derivative of the delta"
    ),
    _one("re", _on_reals(RealPart), summary="real part (identity on reals)"),
    _one("im", _on_reals(ImaginaryPart), summary="imaginary part (0 on reals)"),
]


def _guarded(spec: FunctionSpec) -> FunctionSpec:
    return dataclasses.replace(spec, guard_numbers=True)


_SPECIAL = [
    _one("erf", sympy.erf),
    _one("erfc", RealErfc),
    _guarded(_one("gamma", sympy.gamma)),
    _guarded(_one("loggamma", sympy.loggamma, "lgamma")),
    _guarded(_one("digamma", sympy.digamma)),
    _guarded(FunctionSpec("polygamma", 2, 2, sympy.polygamma, summary="polygamma(n, x)")),
    _guarded(FunctionSpec("beta", 2, 2, sympy.beta)),
    _guarded(
        FunctionSpec("factorial", 1, 1, sympy.factorial, summary="factorial; gamma(x + 1) off the integers")
    ),
    _guarded(FunctionSpec("zeta", 1, 2, _zeta, summary="Riemann zeta; zeta(s, a) Hurwitz")),
]

SPECS: tuple[FunctionSpec, ...] = tuple(
    dataclasses.replace(spec, build=_undefined_in(spec.build))
    for spec in (*_TRIG, *_HYPERBOLIC, *_POWERS, *_PIECEWISE, *_SPECIAL)
)
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
    """The `modules` argument for `sympy.lambdify`: the one namespace numeric code runs in.

    It holds every name `numeric_code.NumericPrinter` prints (`kernels.NAMESPACE`), nothing else.
    """
    return [dict(kernels.NAMESPACE)]
