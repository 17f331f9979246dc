"""Taylor polynomials: the sum of f^(k)(a)/k! (x - a)^k for k up to the order, with exact coefficients.

The coefficients are the derivatives at the point (the memoised chain rule of `symbolic`), so the
polynomial exists exactly where the textbook says: every derivative up to the order is a finite real
at a. Where one is not, the error is `FailedPrecondition` (reason NO_TAYLOR_SERIES) naming which
derivative and why: log(x) at 0 is -oo there, |x| at 0 has a first derivative whose limits from the
left and the right differ, sqrt(x) at 0 has an infinite first derivative. A Laurent or Puiseux
expansion is never returned as a polynomial.

A value 0/0 at the point (sin(x)/x at 0) is a removable singularity: its two-sided limit is used.
Where the expression has no kinks, sympy's expansion from both sides gives the coefficients at once
if it is a polynomial of the order (limits of ever longer derivatives took seconds each).
A derivative with a kink or jump at the point (abs, sign, Heaviside of something that is 0 there,
floor of an integer, min/max of equal arguments) is evaluated by its two-sided limit, since
sign(0) = 0 would silently smooth over the kink of |x| at 0 (x |x| is still differentiable there).
The function itself must equal that limit: sign(x^2) is 0 at 0 and 1 beside it, a jump.

Errors name the engine's arguments: `expression`, `variable`, `around`, `order`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.core.evalf import PrecisionExhausted
from sympy.ntheory import perfect_power

from chainrule.engine import functions, parsing, reference, symbolic
from chainrule.engine.errors import FailedPrecondition, InvalidArgument
from chainrule.engine.limits import EngineLimits, exceeded

__all__ = ["DEFAULT_ORDER", "NO_TAYLOR_SERIES", "Series", "taylor"]

DEFAULT_ORDER = 5
NO_TAYLOR_SERIES = "NO_TAYLOR_SERIES"

_NOT_FINITE: tuple[sympy.Basic | type, ...] = (
    sympy.nan,
    sympy.zoo,
    sympy.oo,
    sympy.S.NegativeInfinity,
    sympy.AccumBounds,
    sympy.DiracDelta,
)


@dataclass(frozen=True)
class Series:
    """A Taylor polynomial: `coefficients[k]` multiplies (variable - around)^k."""

    variable: sympy.Symbol
    around: sympy.Expr
    coefficients: tuple[sympy.Expr, ...]

    @property
    def order(self) -> int:
        return len(self.coefficients) - 1

    @property
    def polynomial(self) -> sympy.Expr:
        """The polynomial as one sympy expression (which may multiply out (x - a))."""
        shift = self.variable - self.around
        return sympy.Add(*[c * shift**k for k, c in enumerate(self.coefficients)])

    @property
    def terms(self) -> tuple[sympy.Expr, ...]:
        """The nonzero terms c_k (x - a)^k in ascending powers, for printing as written (2*(x - 1))."""
        shift = self.variable - self.around
        terms = []
        for k, c in enumerate(self.coefficients):
            if c == 0:
                continue
            if k == 1 and self.around != 0:
                # sympy would multiply out c (x - a); unevaluated, it prints as written.
                factors = () if c == 1 else (sympy.S.NegativeOne,) if c == -1 else sympy.Mul.make_args(c)
                terms.append(sympy.Mul(*factors, _Parenthesised(shift), evaluate=False))
            else:
                terms.append(c * shift**k)
        return tuple(terms)

    @property
    def text(self) -> str:
        """The polynomial in chainrule's grammar, ascending powers of (x - a); it parses back."""
        return _joined([parsing.to_text(term) for term in self.terms])

    @property
    def latex(self) -> str:
        return _joined([symbolic.to_latex(term) for term in self.terms])

    @property
    def remainder(self) -> str:
        """The order of the omitted terms as text, e.g. `O((x - pi/2)^3)`."""
        return f"O({parsing.to_text((self.variable - self.around) ** (self.order + 1))})"


class _Parenthesised(sympy.Function):  # type: ignore[misc]
    """(x - a) as one factor for printing: text `(x - 1)`, LaTeX `\\left(x - 1\\right)`."""

    prints_as_parentheses = True  # the text reads back as its argument (parsing.unwritable)

    def _sympystr(self, printer: Any) -> str:
        return f"({printer.doprint(self.args[0])})"

    def _latex(self, printer: Any) -> str:
        return rf"\left({printer.doprint(self.args[0])}\right)"


def _joined(terms: list[str]) -> str:
    if not terms:
        return "0"
    rest = [f" - {term[1:].lstrip()}" if term.startswith("-") else f" + {term}" for term in terms[1:]]
    return terms[0] + "".join(rest)


def taylor(
    expr: sympy.Expr,
    variable: str,
    around: sympy.Expr,
    order: int,
    limits: EngineLimits = symbolic.DEFAULT_LIMITS,
) -> Series:
    """The Taylor polynomial of `expr` in `variable` around the constant `around`, of degree `order`.

    An empty `variable` means the expression's only free variable.
    """
    x = _variable(expr, variable)
    check_around(around)
    if not around.is_Rational:  # a 0 or 1/2 written so that sympy cannot tell is expanded around it
        around = _or_exact(around)
    expr = _exact_constants(expr, x)
    if order < 0:
        raise InvalidArgument(f"order {order} is negative", field="order")
    if order > limits.max_series_order:
        raise exceeded(limits, "max_series_order", order, field="order", what="the series order is too high")
    coefficients: list[sympy.Expr] = []
    _check_zero_powers(expr, x, around)
    _check_real_parts(expr, x, around)
    function = current = _off_poles(_settled_kinks(expr, x, around), x, around)
    expandable = _expandable(function)  # asked at the first 0/0 only: the expansion does not change
    try:
        for k in range(order + 1):
            if k:
                if k == 1:
                    _check_steps_settle(expr, x, around)
                current = symbolic.derivative(current, x)
                symbolic.check_size(current, limits)
            value = _substituted(current, x, around)
            if value is sympy.nan and expandable:
                expandable = False
                # The function's expansion, whichever derivative met 0/0 first: the derivative's own
                # coefficients, returned as the function's, made sqrt(x^4 + x^6)'s series 2x + 2x^3
                # (a hunt, 2026-12-07).
                expanded = _expanded(function, x, around, order, coefficients)
                if expanded is not None:
                    return Series(x, around, expanded)
            value = _value_at(current, x, around, k, expr, value=value)
            coefficients.append(_written(value / sympy.factorial(k)))
    except RecursionError:
        raise InvalidArgument("the expression is nested too deeply to expand", field="expression") from None
    return Series(x, around, tuple(coefficients))


def _settled_kinks(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> sympy.Expr:
    """`expr` as it is on both sides of x = a, without the kinks that are none there.

    |g| where g(a) = 0 but g keeps its sign beside a is +-g there, and min or max of arguments equal
    at a is one of them where their differences keep their signs: |1 - cos(x)| at 0 is 1 - cos(x),
    min(x^2, x^4) is x^4. Differentiated as written, the kink's Dirac delta survived into the fourth
    derivative and the series was refused where it exists (a hunt, 2026-12-05). A kink whose
    argument changes sign (|x^3 - x^4|), or whose side cannot be told, stays as written.
    """
    if not expr.has(sympy.Abs, sympy.sign, sympy.Min, sympy.Max):
        return expr
    if expr.has(sympy.sign):
        expr = expr.replace(lambda node: isinstance(node, sympy.Mul), _signed_magnitudes)

    def settled(node: sympy.Expr) -> sympy.Expr:
        if isinstance(node, (sympy.Abs, sympy.sign)):
            # |c g| = |c| |g| and sign(c g) = sign(c) sign(g) for c free of x: a parameter's sign is
            # no kink in x (|a*x| at x = 1 was refused, "limits differ", where it is |a| x; a hunt).
            constant, varying = node.args[0].as_independent(x, as_Add=False)
            if constant != 1 and varying.has(x):
                return node.func(constant) * settled(node.func(varying))
        if isinstance(node, sympy.Abs):
            side = _side_sign(node.args[0], x, a)
            return side * node.args[0] if side else node
        if isinstance(node, _EVEN):  # cos(c |g|) is cos(c g): no kink whatever g's sign does
            constant, varying = node.args[0].as_independent(x, as_Add=False)
            if isinstance(varying, sympy.Abs):
                return node.func(constant * varying.args[0])
        if isinstance(node, (sympy.Min, sympy.Max)):
            least = _least_beside(node.args if isinstance(node, sympy.Min) else [-p for p in node.args], x, a)
            return node if least is None else node.args[least]
        return node

    # `replace` works from the leaves up: an inner kink is settled (or known to stay) before the
    # sign of what holds it is asked.
    return expr.replace(
        lambda node: isinstance(node, (sympy.Abs, sympy.sign, sympy.Min, sympy.Max, *_EVEN)), settled
    )


# Even functions: of |g| they are of g. Differentiated through |x|, cos(|x|)'s fourth derivative was
# a Dirac delta at 0 and its series refused (a hunt, 2026-12-07).
_EVEN = (sympy.cos, sympy.cosh, sympy.sec, sympy.sech)


def _signed_magnitudes(node: sympy.Expr) -> sympy.Expr:
    """A product holding sign(g) and |g| with g itself: sign(g) |g| is g everywhere, 0 included.
    Differentiated as written, its third derivative was a Dirac delta at 0 and the series of
    abs(x)*sign(x), which is x, refused at order 3 (a hunt, 2026-12-05)."""
    if not isinstance(node, sympy.Mul):
        return node
    factors = list(node.args)
    for sign in [f for f in factors if isinstance(f, sympy.sign)]:
        magnitude = sympy.Abs(sign.args[0])
        if sign in factors and magnitude in factors:
            factors.remove(sign)
            factors.remove(magnitude)
            factors.append(sign.args[0])
    return node if len(factors) == len(node.args) else sympy.Mul(*factors)


_MAX_POLE_SHIFT = 64  # gamma(x) around -64 is a product of 65 factors; past that it stays as written


def _off_poles(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> sympy.Expr:
    """`expr` with gamma, polygamma and factorial at a pole (their argument a whole number <= 0 at
    x = a) written by their recurrence from an argument past it: gamma(u) = gamma(u + n + 1)/(u (u + 1)
    ... (u + n)), polygamma(m, u) = polygamma(m, u + 1) - (-1)^m m!/u^(m + 1). The pole is then a
    power of u, which the derivatives and limits take: 1/gamma(x) at 0 (x/gamma(x + 1), entire) and
    x*digamma(x) were refused "no limit there that can be determined" (sympy's limit and series
    cannot take polygamma at its pole)."""
    if not expr.has(sympy.gamma, sympy.polygamma, sympy.factorial):
        return expr

    def pole_order(u: sympy.Expr) -> int | None:
        at = _at(u, x, a)
        if at.is_integer and at.is_nonpositive and -at <= _MAX_POLE_SHIFT:
            return int(-at)
        return None

    def shifted(node: sympy.Expr) -> sympy.Expr:
        if isinstance(node, sympy.polygamma):
            m, u = node.args
            n = pole_order(u)
            if n is None or not (m.is_integer and m.is_nonnegative):
                return node
            poles = sympy.Add(*((-1) ** m * sympy.factorial(m) / (u + k) ** (m + 1) for k in range(n + 1)))
            return sympy.polygamma(m, u + n + 1) - poles
        u = node.args[0] + (1 if isinstance(node, sympy.factorial) else 0)  # factorial(v) = gamma(v + 1)
        n = pole_order(u)
        if n is None:
            return node
        return sympy.gamma(u + n + 1) / sympy.Mul(*(u + k for k in range(n + 1)))

    return expr.replace(
        lambda node: isinstance(node, (sympy.gamma, sympy.polygamma, sympy.factorial)), shifted
    )


def _least_beside(
    arguments: list[sympy.Expr] | tuple[sympy.Expr, ...], x: sympy.Symbol, a: sympy.Expr
) -> int | None:
    """The index of the argument less than every other on both sides of x = a, if that can be told."""
    least = 0
    for i in range(1, len(arguments)):
        difference = arguments[i] - arguments[least]
        at = _at(difference, x, a)
        if at.is_zero:
            side = _side_sign(difference, x, a)
        else:
            side = -1 if at.is_negative else 1 if at.is_positive else 0
        if not side:
            return None
        if side < 0:
            least = i
    return least


def _side_sign(g: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> int:
    """1 or -1: the sign g keeps on both sides of x = a where g(a) = 0 (by its leading term c t^m
    at x = a + t, m even); 0 if g is not 0 at a, changes sign there, or its leading term cannot be
    told (a kink of its own inside, or sympy cannot find it)."""
    if g.has(*functions.KINKED) or not _at(g, x, a).is_zero:
        return 0
    t = sympy.Dummy("t")
    try:
        leading = g.subs(x, a + t).as_leading_term(t)
    except Exception:  # sympy fails in many ways (PoleError, NotImplementedError, ...)
        return 0
    c, m = leading.as_coeff_exponent(t)
    if c.has(t) or c.free_symbols or not m.is_integer or not m.is_even or not m.is_positive:
        return 0
    c = c.evalf(30)
    return 1 if c.is_positive else -1 if c.is_negative else 0


def _at(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> sympy.Expr:
    """`expr` at x = a, the logs of rationals that are powers written k log(b): sympy leaves
    log(8)/log(2) a ratio whose being 3 it cannot tell (is_integer, is_zero: None), and evalf of
    log(8)/log(2) - 3 is some 1e-31, not 0. floor(log(x, 2)) at 8 had the series 3 (it jumps
    there), 1/(log(x, 2) - 3) the series 1/0 (a hunt, 2026-12-05). Not sympy's expand_log(force=True),
    which factors integers: log(x)/log(3) around a 52-digit semiprime did not return in a minute."""
    value = expr.subs(x, a)
    if value.is_number and value.has(sympy.log):
        value = value.replace(
            lambda node: isinstance(node, sympy.log) and node.args[0].is_Rational and node.args[0] > 0,
            _log_of_powers,
        )
    if value.is_number and value.is_zero is None and _digits(value) is sympy.S.Zero:
        return sympy.S.Zero
    return value


# A constant sympy cannot evaluate to 30 correct digits (evalf's `strict`) with this many digits of
# working precision is taken for 0 where it is below 10^-500 (a zero it cannot prove evaluates to
# ever smaller numbers as the precision grows); otherwise it has no value we can tell. Below
# 10^-570 or so a constant that is not 0 is taken for 0 too. Beyond the 600 digits that takes, the
# digits of the largest point to expand around (2^PERIODIC_BITS): sin(10^620) needs 650 to be
# reduced by pi, and with 600 sin(x) around 10^620 was refused as having no Taylor series (an
# independent attacker, 2026-12-06).
_WORKING_DIGITS = 600 + math.ceil(reference.PERIODIC_BITS * math.log10(2))
_TINY = sympy.Float(10) ** -500
_SUM_DIGITS = 60


def _exact_constants(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """`expr` with each sum's constant part that is a rational number sympy cannot prove written as
    that number: floor(x - log(6) + log(2) + log(3)) had the series 1 around 1, where it jumps."""

    def whole(node: sympy.Add) -> sympy.Expr:
        constant, rest = node.as_independent(x, as_Add=True)
        if not constant.is_number or constant.is_rational is not None:  # told already: 1/2, pi/2
            return node
        return _or_exact(constant) + rest

    return expr.replace(lambda node: isinstance(node, sympy.Add) and node.has(x), whole)


def _or_exact(value: sympy.Expr) -> sympy.Expr:
    """The rational number (of a denominator up to 10^6) the constant `value` is written to be where
    sympy cannot prove it (log(6) - log(2) - log(3) + 1 is 1: floor(x) there had the series 1, where
    it jumps; cos(pi/7) + cos(3 pi/7) + cos(5 pi/7) is 1/2), else `value`."""
    number = _digits(value)
    if number is None or not number.is_real:
        return value
    nearest = sympy.Rational(str(number)).limit_denominator(10**6)
    return nearest if _digits(value - nearest) is sympy.S.Zero else value


def _digits(value: sympy.Expr) -> sympy.Expr | None:
    """The number `value` to 30 digits, or None where it has none we can tell: a zero sympy cannot
    prove (cos(pi/7) + cos(3 pi/7) + cos(5 pi/7) - 1/2, log(6) - log(2) - log(3)) is 0 (1/x around
    one such point had coefficients 1/(that zero): 10^139 at 30 digits; an independent hunt,
    2026-12-06), and 1 over it, or log of it, has no value. A constant that is only small (1e-202,
    sqrt(2) less its first 201 digits) keeps its value: taken for 0 at 300 digits, it was (a second
    hunt, the same day)."""
    try:
        found = value.evalf(30, strict=True, maxn=_WORKING_DIGITS)
        # sympy leaves some unevaluated (floor(exp(2800)), past what its floor evaluates): no value.
        return None if found.atoms(sympy.Function) else found
    except PrecisionExhausted:
        pass
    summed = _summed_digits(value)
    if summed is not None:
        return summed
    try:
        if bool(abs(value.evalf(30, maxn=_WORKING_DIGITS)) < _TINY):
            return sympy.S.Zero
    except (TypeError, ValueError):  # no number to compare (a value sympy cannot order)
        pass
    return None


def _summed_digits(value: sympy.Expr) -> sympy.Expr | None:
    """A sum of terms each with 30 digits, to 30 digits where they do not cancel past _SUM_DIGITS:
    sympy's evalf of a sum could fail to tell a term's factor from 0 where each term alone had its
    digits (the second derivative of sin(sin(sin(sin(sin(x))))) at 10^6: "sin(1000000) from zero",
    so its Taylor series was refused; an independent hunt, 2026-12-06)."""
    if not isinstance(value, sympy.Add):
        return None
    try:
        terms = [term.evalf(_SUM_DIGITS, strict=True, maxn=_WORKING_DIGITS) for term in value.args]
    except PrecisionExhausted:
        return None
    if not all(term.is_real for term in terms):
        return None
    total = sympy.Add(*terms)
    largest = max(abs(term) for term in terms)
    if largest == 0 or abs(total) < largest * sympy.Float(10) ** (30 - _SUM_DIGITS):
        return None  # cancelling past the digits held: no 30 digits to tell
    return total.evalf(30)


def _log_of_powers(node: sympy.log) -> sympy.Expr:
    """log(p/q) as log p - log q, each log(b^k) as k log(b) (`perfect_power`: a few integer roots)."""
    ratio = node.args[0]
    terms = []
    for integer, sign in ((ratio.p, 1), (ratio.q, -1)):
        if integer != 1:
            base, exponent = perfect_power(integer) or (integer, 1)
            terms.append(sign * exponent * sympy.log(sympy.Integer(base), evaluate=False))
    return sympy.Add(*terms)


def _substituted(current: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> sympy.Expr | None:
    """`current` at x = a as written (NaN for 0/0, and where a derivative sympy cannot write is of a
    function with a pole there); None where sympy refuses to substitute (its Min and Max refuse
    what they cannot compare: Max(zoo, 0))."""
    try:
        value = _at(current, x, a)
    except (ValueError, TypeError):
        return None
    return sympy.nan if _derivative_at_a_pole(current, x, a) else value


def _derivative_at_a_pole(current: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> bool:
    """Whether `current` holds a derivative sympy leaves unevaluated (zeta's in s) of a function that
    is infinite at x = a: its value there is not known, and sympy took 1/zeta(1)^2 for 0 and the
    product with it for 0. 1/zeta(x) around 1 had the series 0, truth (x - 1) - EulerGamma (x - 1)^2
    (a hunt, 2026-12-07)."""
    # zeta'(x + 1) is Subs(Derivative(zeta(u), u), u, x + 1): the point is the Subs's
    points_of = {
        holder.expr: dict(zip(holder.variables, holder.point, strict=True))
        for holder in current.atoms(sympy.Subs)
    }
    for node in current.atoms(sympy.Derivative):
        inner = node.expr.xreplace(points_of.get(node, {}))
        if inner.has(x) and _at(inner, x, a).has(*_NOT_FINITE):
            return True
    return False


def _expandable(expr: sympy.Expr) -> bool:
    """Whether sympy's expansion can be asked: no kinks, and only sympy's own functions (of ours,
    such as the real root, it has no leading term, and its limits recursed without end: minutes
    under the raised recursion limit a deep parse leaves)."""
    if expr.atoms(*functions.KINKED):
        return False
    return all(type(f).__module__.startswith("sympy.") for f in expr.atoms(sympy.Function))


def _expanded(
    expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr, order: int, known: list[sympy.Expr]
) -> tuple[sympy.Expr, ...] | None:
    """The coefficients of `expr` at a removable singularity by sympy's own expansion; None where that
    is not a Taylor polynomial of the order (Laurent, Puiseux or log terms), or disagrees with the
    coefficients `known` from the derivatives.

    At 0/0 each derivative's value is a limit, and the limits grow with the order: x/(exp(x) - 1) at
    order 5 took more than 5 s that way, 0.15 s by expansion. Only for expressions without kinks,
    where the expansion is the Taylor polynomial whenever it is one.
    """
    sides = [_one_sided(expr, x, a, order, side) for side in ("+", "-")]
    if sides[0] is None or sides[1] is None or sides[0] != sides[1]:
        return None  # sympy expands from one side: exp(-1/x) at 0 is 0 from the right only
    coefficients = [_written(c) for c in sides[0]]
    if not all(_finite_real(c) and not c.free_symbols for c in coefficients):
        return None
    agree = all(_close(found, c) for found, c in zip(known, coefficients, strict=False))
    return tuple(coefficients) if agree else None


def _one_sided(
    expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr, order: int, side: str
) -> list[sympy.Expr] | None:
    """The coefficients of sympy's expansion of `expr` from one side of a, where it is a polynomial
    in x - a of degree `order` at most with the remainder O((x - a)^(order + 1))."""
    try:
        expansion = sympy.series(expr, x, a, order + 1, dir=side)
    except Exception:  # sympy fails in many ways (PoleError, ...): the derivatives decide then
        return None
    t = sympy.Dummy("t")
    remainder = expansion.getO()
    if remainder is None or remainder.expr.subs(x, a + t) != t ** (order + 1):
        return None
    try:
        polynomial = sympy.Poly(sympy.expand(expansion.removeO().subs(x, a + t)), t)
    except sympy.PolynomialError:
        return None
    if polynomial.degree() > order:
        return None
    return [polynomial.coeff_monomial(t**k) for k in range(order + 1)]


def _written(coefficient: sympy.Expr) -> sympy.Expr:
    """A coefficient with its common factors taken out, or multiplied out where that is shorter: the
    quadratic coefficient of gamma(x)/gamma(x + 1) at 1 came as (1 - EulerGamma)^2/2 + EulerGamma^2/2
    + EulerGamma (1 - EulerGamma) + 1/2, which is 1."""
    factored = sympy.factor_terms(coefficient)
    expanded = sympy.factor_terms(sympy.expand(coefficient))
    return expanded if sympy.count_ops(expanded) < sympy.count_ops(factored) else factored


def _close(p: sympy.Expr, q: sympy.Expr) -> bool:
    difference = abs(sympy.N(p - q, 30))
    return bool(difference <= 1e-25 * max(1, abs(sympy.N(p, 30))))


def _variable(expr: sympy.Expr, name: str) -> sympy.Symbol:
    if name:
        found = next((s for s in expr.free_symbols if s.name == name), None)
        return found if isinstance(found, sympy.Symbol) else parsing.symbol(name, field="variable")
    names = symbolic.free_variables(expr)
    if len(names) != 1:
        reason = f"several variables ({', '.join(names)})" if names else "no variable"
        raise InvalidArgument(f"the expression has {reason}: say which to expand in", field="variable")
    symbol = next(iter(expr.free_symbols))
    assert isinstance(symbol, sympy.Symbol)
    return symbol


_NOT_NUMBERS = frozenset({"inf", "infinity", "nan", "oo"})  # names a caller may mean as numbers


def check_around(around: sympy.Expr, written: str = "") -> None:
    """InvalidArgument unless `around` (as the caller `written` it, if known) is a finite real constant."""
    shown = f"'{written.strip()}'" if written.strip() else parsing.to_text(around)
    if around.free_symbols:
        names = symbolic.free_variables(around)
        infinite = any(name.lower() in _NOT_NUMBERS for name in names)
        hint = " (a variable here: the grammar has no infinity or NaN)" if infinite else ""
        raise InvalidArgument(
            "the point to expand around must be a constant such as 0, 1/2 or pi/2, "
            f"not {shown}, an expression in {', '.join(names)}{hint}",
            field="around",
        )
    if not _finite_real(around):
        if around.is_number and not around.has(*_NOT_FINITE) and _digits(around) is None:
            raise InvalidArgument(
                f"the point to expand around, {shown if len(shown) <= 60 else shown[:57] + '...'}, could "
                "not be evaluated to 30 digits: write it as a number or a simpler constant",
                field="around",
            )
        value = parsing.to_text(around)
        why = f"{shown}, which is {value}" if written.strip() and value != written.strip() else shown
        raise InvalidArgument(
            f"the point to expand around must be a finite real number, not {why}", field="around"
        )
    # sin of such a number is reduced by pi in as many bits as it has: sin(x) around exp(exp(100))
    # ran out of its time budget (an independent hunt, 2026-12-06); no double comes near it.
    if functions.past(around, reference.PERIODIC_BITS):
        raise InvalidArgument(
            f"the point to expand around must be below 2^{reference.PERIODIC_BITS} (about 1e1233) in "
            f"magnitude, not {shown if len(shown) <= 60 else shown[:57] + '...'}",
            field="around",
        )


def _value_at(
    current: sympy.Expr, x: sympy.Symbol, a: sympy.Expr, k: int, expr: sympy.Expr, *, value: sympy.Expr | None
) -> sympy.Expr:
    """f^(k)(a), or its two-sided limit where that is what the value means; FailedPrecondition if
    none. `value`: `current` at a as written (`_substituted`)."""
    if value is None:
        raise _no_series(expr, x, a, k, "is not a finite real there (min or max of one that is not)")
    if value.has(sympy.DiracDelta):
        raise _no_series(expr, x, a, k, "is a Dirac delta there (a jump below it)")
    kink = _kink_at(current, x, a)
    if not kink and _finite_real(value):
        return value
    # Undefined as written (0/0 is nan, atan(1/0) the bounds of atan): its limit says what it is.
    if not kink and value is not sympy.nan and not value.has(sympy.AccumBounds):
        raise _no_series(expr, x, a, k, _not_finite(value))
    try:
        limit = sympy.limit(_limit_ready(current, x, a), x, a, dir="+-")
    except ValueError:
        raise _no_series(
            expr, x, a, k, "does not exist there (its limits from the left and the right differ)"
        ) from None
    except (NotImplementedError, sympy.PoleError, RecursionError):
        raise _no_series(expr, x, a, k, "has no limit there that can be determined") from None
    if limit.has(sympy.Limit):  # sympy could not take it, and our grammar cannot write it
        raise _no_series(expr, x, a, k, "has no limit there that can be determined")
    if isinstance(limit, sympy.AccumBounds):
        low, high = (parsing.to_text(bound) for bound in limit.args)
        raise _no_series(expr, x, a, k, f"oscillates between {low} and {high} near there")
    if limit.has(sympy.AccumBounds):  # bounds our grammar cannot write: 2 + AccumBounds(-1, 1)*pi
        raise _no_series(expr, x, a, k, "oscillates near there")
    if limit in (sympy.oo, -sympy.oo, sympy.zoo):  # zoo: of both signs, as 1/x; our grammar writes it 1/0
        raise _no_series(expr, x, a, k, "tends to infinity there")
    if not _finite_real(limit):
        raise _no_series(expr, x, a, k, f"tends to {parsing.to_text(limit)} there")
    if k == 0 and _finite_real(value) and sympy.S(value).equals(limit) is False:
        # The limit stands in for a value that is not there (0/0), not for one that is: sign(x^2)
        # is 0 at 0 and 1 beside it, so it is not even continuous there.
        why = f"is {parsing.to_text(value)} there but tends to {parsing.to_text(limit)} beside it (a jump)"
        raise _no_series(expr, x, a, k, why)
    return limit


def _limit_ready(current: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> sympy.Expr:
    """`current` as sympy's limit takes it right, equal to it near x = a (not at a itself).

    sympy's limit is wrong or fails on several of our functions, so they are written with sign and
    |.|, which it takes right: deltas away from the point vanish near it (its limit does not
    terminate on them); min and max are written with |.| (it cannot take them: "MRV set computation
    for functions in several variables"); Heaviside(g) is (1 + sign(g))/2 (its limit of
    Heaviside(x - x^3) at 0 is 1/2 from either side); floor(g) near an integer n = g(a) is n or n - 1
    by the sign of g - n (its limit of exp(floor(x)) at 0 from the left is 1), and a constant near
    any other value; the real root of g is sign(g)|g|^(1/n) (its limit recursed without end).
    """
    near = current.xreplace({delta: sympy.S.Zero for delta in current.atoms(sympy.DiracDelta)})
    # `replace` works from the leaves up, so a min inside a max is rewritten too.
    near = near.replace(lambda node: isinstance(node, (sympy.Min, sympy.Max)), _min_max_near)
    near = near.replace(sympy.Heaviside, lambda argument, *_: (1 + sympy.sign(argument)) / 2)
    near = near.replace(functions.RealRoot, _real_root_near)
    # Off their cuts, as sympy's limit takes them from each side: the half-angle form of atan2 (its
    # y/(r + x) tends to +-oo as y tends to 0 beside a negative x), acot(u) as atan(1/u).
    near = near.replace(sympy.atan2, lambda y, x: 2 * sympy.atan(y / (sympy.sqrt(x**2 + y**2) + x)))
    near = near.replace(sympy.acot, lambda u: sympy.atan(1 / u))
    near = near.replace(sympy.arg, lambda u: sympy.pi * (1 - sympy.sign(u)) / 2)
    return near.replace(
        lambda node: isinstance(node, (sympy.floor, sympy.ceiling)), lambda node: _step_near(node, x, a)
    )


def _min_max_near(node: sympy.Expr) -> sympy.Expr:
    """max(a, b) = (a + b + |a - b|)/2, min with -|a - b|, folded over more arguments. Not sympy's
    rewrite(Abs): it writes sign(x) as a Piecewise too, whose limit it gets wrong (min(1, sign(x)): 0)."""
    plus_or_minus = 1 if isinstance(node, sympy.Max) else -1
    result, *rest = node.args
    for argument in rest:
        result = (result + argument + plus_or_minus * sympy.Abs(result - argument)) / 2
    return result


def _real_root_near(radicand: sympy.Expr, degree: sympy.Expr) -> sympy.Expr:
    if degree.is_integer and degree.is_odd:
        return sympy.sign(radicand) * sympy.Abs(radicand) ** (1 / degree)
    return radicand ** (1 / degree)  # the principal root: the real one where there is one


def _step_near(node: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> sympy.Expr:
    """floor(g) or ceiling(g) on both sides of x = a, without the step function."""
    inner = node.args[0]
    # What the argument tends to, not its value: floor(Heaviside(x^2)) is 1 beside 0, not floor(1/2).
    at = sympy.limit(inner, x, a, dir="+-") if inner.has(sympy.sign, sympy.Abs) else _at(inner, x, a)
    if at.is_integer is None and at.is_number:
        at = _or_exact(at)
    if at.is_integer:  # floor: n - 1 below n, else n; ceiling: n + 1 above n, else n
        if isinstance(node, sympy.floor):
            below = sympy.sign(at - inner)
            return at - (below + sympy.Abs(below)) / 2
        above = sympy.sign(inner - at)
        return at + (above + sympy.Abs(above)) / 2
    if at.is_integer is False and at.is_real:
        return node.func(at)  # a constant near a
    return node


def _check_steps_settle(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> None:
    """FailedPrecondition where a floor or ceiling jumps ever more often next to x = a (its argument
    has no finite limit there: floor(1/x) at 0). A derivative is taken between the jumps, where the
    step is constant, so its limit is not the derivative at a: the first derivative of 1/floor(1/x)
    at 0 came out 0 and of x^2 floor(1/x) 2, both truly 1 (a hunt, 2026-12-05)."""
    for node in expr.atoms(sympy.floor, sympy.ceiling):
        inner = node.args[0]
        if _finite_real(_at(inner, x, a)):
            continue
        try:
            tends_to = sympy.limit(inner, x, a, dir="+-")
        except (ValueError, NotImplementedError, sympy.PoleError, RecursionError):
            tends_to = sympy.nan
        if not _finite_real(tends_to) or tends_to.has(sympy.AccumBounds):
            why = f"cannot be determined there: {parsing.to_text(node)} jumps ever more often next to it"
            raise _no_series(expr, x, a, 1, why)


def _check_zero_powers(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> None:
    """FailedPrecondition where a power of 0 has an exponent that is 0 at x = a (or may be): 0^u is
    1 there, 0 where u > 0 and infinite where u < 0, a jump whatever u does beside a. Its value at a
    was taken for its series: 0^x at 0 had the series 1, x*0^x the series x (a hunt, 2026-12-05)."""
    for power in expr.atoms(sympy.Pow):
        if power.base.is_zero and power.exp.has(x) and _at(power.exp, x, a).is_zero is not False:
            why = f"jumps there: {parsing.to_text(power)} is 1 where its exponent is 0, 0 or infinite beside"
            raise _no_series(expr, x, a, 0, why)
        # x^y at 0 is 1, 0 or infinite by the sign of the parameter y: 0^y, y 0^(y - 1)... are no
        # coefficients (they were returned as such: an independent hunt, 2026-12-06).
        exponent = _at(power.exp, x, a)
        if power.base.has(x) and exponent.free_symbols and _at(power.base, x, a).is_zero is not False:
            names = ", ".join(symbolic.free_variables(exponent))
            shown = parsing.to_text(power)
            why = f"depends on {names} there: {shown} is 1, 0 or infinite there by the sign of its exponent"
            raise _no_series(expr, x, a, 0, why)


def _check_real_parts(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> None:
    """FailedPrecondition where a part of `expr` has a value at x = a that is not real: the function
    is not real there, as Evaluate has it (NaN), even where the parts' complex values multiply to a
    real one. sqrt(x - 2) sqrt(x - 3) at 1 had the series -sqrt(2) + ..., i sqrt(1) times i sqrt(2),
    and cos(sqrt(x)) at -1 that of cosh(sqrt(-x)) (a hunt, 2026-12-07). The smallest such part is
    named."""
    found = (node for node in expr.atoms(sympy.Pow, sympy.Function) if node.has(x))
    parts = sorted(found, key=lambda node: (sympy.count_ops(node), sympy.default_sort_key(node)))
    for part in parts:
        value = _at(part, x, a)
        if value.free_symbols or value.has(*_NOT_FINITE):
            continue  # a parameter's, or no value at all: the derivatives say what that means
        number = _digits(value)
        if number is None or number.is_real is not False:
            continue
        real, imaginary = number.as_real_imag()
        if abs(imaginary) > _IMAGINARY_NOISE * max(1, abs(real)):
            why = f"is not real there: {parsing.to_text(part)} is {parsing.to_text(value)}"
            raise _no_series(expr, x, a, 0, why)


# An imaginary part this small against the value, at 30 digits, is evalf's rounding, not the value's.
_IMAGINARY_NOISE = sympy.Float("1e-20")


def _kink_at(current: sympy.Expr, x: sympy.Symbol, a: sympy.Expr) -> bool:
    """Whether some abs, sign, floor, min... of `current` has a kink or jump at x = a (or may have)."""
    for node in current.atoms(*functions.KINKED, *_BRANCH_CUTS):
        if not node.has(x):  # constant in x, whatever its own kinks (|a| of a parameter a)
            continue
        args = [_at(arg, x, a) for arg in node.args]
        if isinstance(node, sympy.atan2):  # its cut: y = 0 where x is not positive
            if args[0].is_zero is not False and args[1].is_positive is not True:
                return True
        elif isinstance(node, (sympy.floor, sympy.ceiling)):
            if args[0].is_integer is not False:
                return True
        elif isinstance(node, (sympy.Min, sympy.Max)):
            if any((p - q).is_zero is not False for i, p in enumerate(args) for q in args[i + 1 :]):
                return True
        elif isinstance(node, sympy.Piecewise) or args[0].is_zero is not False:
            return True
    return False


# Functions whose real values jump across a branch cut, where their derivatives do not show it
# (d/dy atan2(y, -1) is -1/(1 + y^2) while atan2 jumps from -pi to pi at y = 0): atan2(y, x) at
# y = 0 for x <= 0, acot(u) at u = 0 (-pi/2 to pi/2), arg(u) at u = 0 (pi to 0).
_BRANCH_CUTS: tuple[type, ...] = (sympy.atan2, sympy.acot, sympy.arg)


def _not_finite(value: sympy.Expr) -> str:
    if value.has(sympy.zoo, sympy.oo, sympy.S.NegativeInfinity):
        return "is infinite there"
    if value.is_number and _digits(value) is None:
        return (
            f"cannot be evaluated there: {parsing.to_text(value)} does not settle at any precision "
            "(a pole, written so that it does not simplify, is likely)"
        )
    return f"is {parsing.to_text(value)} there, not a finite real"


def _finite_real(value: sympy.Expr) -> bool:
    if value.has(*_NOT_FINITE):
        return False
    if value.is_number:
        number = _digits(value)
        return number is not None and bool(number.is_real) and bool(number.is_finite)
    return value.is_real is not False  # it holds other variables: real unless shown otherwise


def _no_series(expr: sympy.Expr, x: sympy.Symbol, a: sympy.Expr, k: int, why: str) -> FailedPrecondition:
    what = "the value" if k == 0 else f"the {_ordinal(k)} derivative"
    point = f"{x.name} = {parsing.to_text(a)}"
    return FailedPrecondition(
        f"{parsing.to_text(expr)} has no Taylor series at {point}: {what} {why}",
        field="expression",
        reason=NO_TAYLOR_SERIES,
        metadata={"derivative_order": str(k)},
    )


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"
