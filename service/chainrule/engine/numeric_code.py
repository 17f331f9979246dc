"""The Python source numeric evaluation runs: sympy expressions printed as calls to `kernels`.

sympy's own numeric printers rewrite the functions they have no name for (sech(u) as 1/cosh(u) through
exp, so (x^2) becomes exp(2 log x) and NaN for x < 0; acoth through log; Heaviside through numpy's
select) and print exact numbers as Python integers, which overflow when numpy converts them. Here:

- every function of the table prints as a call to the kernel of its name, so what runs is what the
  user wrote (a derivative with no closed form, `Subs(Derivative(zeta(xi), xi), xi, u)`, prints as
  `partial("zeta", (1,), u)`);
- every exact number prints as the double nearest it (10^400 is inf, (10^400 + 1)/10^400 is 1.0);
- every constant subexpression (log(10^400), sqrt(2), loggamma(22)) is folded into the double nearest
  its value (`reference`), or NaN when it is not real (sqrt(-2)): exact -> float is one deliberate,
  correctly rounded step, never an OverflowError at run time.

`cost` is what the numeric cost limit charges an expression per point: slow kernels weigh more.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.core.function import Application
from sympy.core.symbol import Str
from sympy.polys.polyerrors import BasePolynomialError
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from chainrule.engine import kernels, parsing, polynomial_roots, reference
from chainrule.engine.errors import NoNumericForm
from chainrule.engine.functions import RealRoot

__all__ = ["NumericPrinter", "Partial", "cost", "fold_constants", "numeric_refusal", "prepare"]

# Bits for folding constants: enough that the double nearest the 80-bit value is the nearest double
# to the true one except in the rarest ties; exact numbers are rounded exactly (reference.to_double).
_FOLD_PREC = 80
_EXACT = 2**53
# numpy turns these integer exponents into square, reciprocal, a copy or ones, whatever the sign of
# the base; other integer powers run as `vectormath.integer_power` (numpy's power is scalar and slow
# for a negative base).
_NUMPY_FAST_EXPONENTS = frozenset({-1, 0, 1, 2})


class Partial(sympy.Function):  # type: ignore[misc]
    """`Partial(name, orders, *point)`: a derivative without a closed form, as one opaque call.

    sympy's `Derivative(zeta(x), x)` holds `zeta(x)`, which common-subexpression elimination would
    replace by a temporary (`Derivative(x0, x)`, no longer a derivative of zeta): numeric code sees
    this instead, printed as `partial("zeta", (1,), x)`.
    """


class Kernel(sympy.Function):  # type: ignore[misc]
    """`Kernel(name, *args)`: a call of one of our kernels that no function of the grammar builds
    (`stable`), printed as `name(*args)`. Known real, as every kernel's value is (or NaN): sympy
    compares and takes the imaginary part of what Min, Max and Heaviside hold as the rules rebuild
    them (the partials of `Min(log10(abs(x)), x - E - y/x)` and `Max(asech(x^x), e)` failed: "not
    comparable"; the fuzzer, seeds 1824045788 and 2488125214)."""

    is_extended_real = True


# A decimal that is a binary fraction this short is written as that fraction (`exact_decimals`).
_SHORT_FRACTION = 2**16


def exact_decimals(expr: sympy.Expr) -> sympy.Expr:
    """`expr` with each decimal that is a short binary fraction (1.0, 0.5, 2.25, 3000.0) as that
    rational, the same number: to sympy 1.0 is not 1, and the rules below compare numbers exactly
    (1.0 - tanh(x)^2 was 0.0 at 20, truth 1.7e-17, where 1 - tanh(x)^2 is sech(x)^2; acos(1.0 - x^2)
    was 0.0 at 1e-9 and cosh(x)^2 - sinh(x)^2 - 1.0 was -1.0 at 20; a hunt, 2026-12-06). Other
    decimals (0.1) stay as written: as fractions they would be 2^55 over, and no rule looks for them."""
    exact: dict[sympy.Basic, sympy.Basic] = {}
    for decimal in expr.atoms(sympy.Float):
        if not math.isfinite(decimal):
            continue
        fraction = sympy.Rational(decimal)
        if fraction.q <= _SHORT_FRACTION and abs(fraction.p) <= _EXACT:
            exact[decimal] = fraction
    return expr.xreplace(exact) if exact else expr


def stable(expr: sympy.Expr) -> sympy.Expr:
    """`expr` with forms float64 evaluates badly written as the same function in forms it evaluates
    well (independent testers found each of them wrong):

    - a sum c - c*t where t tends to 1: 1 - tanh(u)^2 (sympy's derivative of tanh: 0 from |u| = 19
      on, where it is 1.3e-16) is sech(u)^2 (`kernels.sech_squared`), 1 - coth(u)^2 is
      -csch(u)^2, 1 - tanh(u) is 2/(e^2u + 1), 1 - a/b with b a sum holding a is (b - a)/b (the
      logistic function's derivative, 1 - e^x/(e^x + 1), was 0 from x = 37 on; and 1 - b/a is
      (a - b)/a), 1 - u^2 is (1 - u)(1 + u), 1 - (p/q u)^2 for p a power of 2 (q - p u)(q + p u)/q^2,
      and 1 - 1/b^2 is (b - 1)(b + 1)/b^2 (asin, atanh, asec next to 1: 6 digits
      lost to the rounding of u^2); sinh(u)^k cosh(u)^-k is tanh(u)^k first (log(cosh(x))'s);
    - digamma(u) - digamma(u + w), in sympy's derivative of beta, is -`digamma_step`(u, w): the two
      cancel where w is small against u (3 digits lost at u = 30, w = 1e-12);
    - the classic cancellations of a value next to 0: log(1 + u) is log1p(u) (softplus,
      log(1 + e^x), was 0 from x = -37 down), or where a rule rewrote 1 + u (1 - e^-x is
      -expm1(-x)) log1p(u) where |u| < 1/2 and the log of the rewritten sum elsewhere
      (`kernels.log_one_plus`), c - c e^u is -c expm1(u), c - c cos(u) is
      2c sin(u/2)^2, c - c cosh(u) is -2c sinh(u/2)^2 and c - c sqrt(1 + u) is
      -c u/(1 + sqrt(1 + u)) (each was 0 at u = 1e-17), c - c 2^u is -c expm1(u log 2), c - c
      (1 + u)^n is -c u (1 + b + ... + b^(n-1)); c - c erf(u) is c erfc(u), and where t tends to
      -1, c + c tanh(u) is 2c/(e^-2u + 1), c + c erf(u) is c erfc(-u) and c + c cos(u) is
      2c cos(u/2)^2; c -+ c sin(u) is `one_minus_sin` (of -u), c - c sech(u) 2c sinh(u/2)^2 sech(u),
      c - c coth(u) -2c/expm1(2u), c - c sin(u)^2 c cos(u)^2 (and cos, sech: `_PYTHAGOREAN`), and
      c - c (1 + u)^p for other powers p -c expm1(p log1p(u)) (`_one_less_power`), and for any
      base b and a varying p, c - c b^p is -c expm1(p log b), b - 1 written stably; c - c sec(u)
      -2c sin(u/2)^2 sec(u); c is any
      constant (pi, sqrt(2)), and a factor a rule leaves is written the same way (1 - tanh^4);
    - asin(u), acos(u), atanh(u) and acosh(u) where a rule writes 1 - u (or 1 + u): from it
      (`_inverse_at_one`; acos(tanh(x)) at 20 was 0.0, atanh(tanh(19)) inf), and 1 - |v| as
      (1 - v^2)/(1 + |v|) where 1 - v^2 has a rule; log(t) for such t is log1p(-(1 - t)) (`log_one_plus`);
    - (1 + u)^p for a varying or large p is exp(p log1p(u)) near u = 0 (`_power_of_one_plus`);
      c sqrt(A) - c b with A - b^2 shorter than A is its conjugate where they cancel
      (`_root_difference`); k e^a - k e^b is `exp_difference` (`_exp_difference`); an inverse
      trigonometric function less a constant it reaches is another without it (pi/2 - acos(u) is
      asin(u), pi/2 - atan(u) `atan_complement`: `_INVERSE_SHIFTED`); 1 - erfc(u) is erf(u);
      1 - cbrt(1 + u) is `one_less_power`; the log of a power of c + u (c a number) is p
      log_one_plus, and of a ratio or square next to 1 too;
    - a sum over powers of one sum, calling no function that sum does not, is combined over it and
      factored where its terms cancel (the logistic function's derivatives), and so is a
      polynomial in one function's value (log(cosh(x))'s higher derivatives, in tanh; its
      coefficients may hold the variable: x log(cosh(x))'s) (`_combined`); terms sharing a factor
      that calls no function are written as it times their sum (`_summed_under_shared_factors`), a
      constant sympy added up from several c - c t is shared out again (`_constant_shared`), and
      polynomials in several such functions are written one by one (`_polynomials_apart`); one
      whose coefficients call functions is written in powers of 1 - t^2 per monomial of them
      (`_in_powers_of_the_complement`), and so is a polynomial in the logistic s = X/(c + X) of an
      exponential X, in powers of 1 - s (`_in_powers_of_the_logistic`);
    - log(erfc(u)) is `log_erfc` (scipy's log_ndtr) and erfc(u)^k e^(k u^2) is erfcx(u)^k: erfc is
      past the doubles from 27.3 on; the log of exponentials, where it is not finite, is computed in
      the log domain (`_in_log_domain`: log(cosh(x)) at 12000 was inf), and a ratio of exponentials
      with the larger taken into its sum (`_exponential_ratio`: exp(x)/(exp(x) + 1) there was NaN);
    - sin, cos and tan of pi times a varying part plus a constant are computed in half turns, the
      varying part reduced exactly first (`_in_half_turns`);
    - log(gamma(u)) and log(|gamma(u)|) are `log_gamma` and `log_abs_gamma` (gamma is past every
      double from 171.6, past long double from 1755), sign(gamma(u)) and Heaviside(gamma(u)) are of
      `gamma_sign`(u); factorial(u) is gamma(u + 1), what its
      kernel computes, so that gamma(x + 1)/factorial(x) cancels as sympy builds it."""
    for query, rule in _STABLE_REWRITES:
        expr = _rewritten(expr, query, rule)
    return expr


# Kernels of a node as first written and what computes it where that is not finite (`finite_or`)
# or is infinite (`infinite_or`, computed in its log domain): both the same function.
_FALLBACKS = ("finite_or", "infinite_or")

_Query = Callable[[sympy.Basic], bool]
_Rewrite = Callable[[sympy.Basic], "sympy.Basic | None"]


def _is_acoth_or_asech(node: sympy.Basic) -> bool:
    return isinstance(node, (sympy.acoth, sympy.asech))


def _is_inverse_at_one(node: sympy.Basic) -> bool:
    return isinstance(node, _INVERSES_AT_ONE)


def _rewritten(
    expr: sympy.Expr,
    query: _Query,
    rule: _Rewrite,
) -> sympy.Expr:
    """`expr.replace(query, rule)`, with a node whose polynomial algebra sympy gives up on (its
    heuristic gcd's "no luck", a coercion it cannot make) left as written: a rule only rewrites
    for accuracy, and the formula as written still computes the function (the Hessian of
    acoth(x^2) + pi^x - sqrt(x) was refused as NOT_COMPUTABLE; the fuzzer, seed 3248711614)."""

    def guarded_query(node: sympy.Basic) -> bool:
        try:
            return query(node)
        except BasePolynomialError:
            return False

    def guarded_rule(node: sympy.Basic) -> sympy.Basic | None:
        try:
            return rule(node)
        except BasePolynomialError:
            return None

    rewritten: sympy.Expr = expr.replace(guarded_query, guarded_rule)
    return rewritten


def _step_of_gamma(node: sympy.Basic) -> bool:
    return isinstance(node, (sympy.sign, sympy.Heaviside)) and isinstance(node.args[0], sympy.gamma)


def _step_of_gamma_sign(node: sympy.Expr) -> sympy.Expr:
    return node.func(Kernel(Str("gamma_sign"), node.args[0].args[0]), *node.args[1:])


def _zeta_of_one_plus(node: sympy.Basic) -> bool:
    """zeta of 1 plus a varying part: next to its pole, where 1 + u rounds (`kernels.zeta_near_pole`)."""
    if not isinstance(node, sympy.zeta) or not node.args[0].free_symbols:
        return False
    return bool(node.args[0].as_coeff_Add()[0] == 1)


def _zeta_near_pole(node: sympy.zeta) -> sympy.Expr:
    return Kernel(Str("zeta_near_pole"), node.args[0] - 1, *node.args[1:])


def _zeta_less_one(node: sympy.Basic) -> bool:
    """A sum holding c zeta(u) and -c (zeta(u) - 1, 1 - zeta(u)), or log(zeta(u)): zeta is 1 plus
    2^-u and smaller terms, which it rounds away as u grows (`kernels.zeta_minus_one`)."""
    if isinstance(node, sympy.log):
        return _is_riemann_zeta(node.args[0])
    return node.is_Add and _riemann_zeta_term(node) is not None


def _zeta_less_one_written(node: sympy.Expr) -> sympy.Expr:
    if isinstance(node, sympy.log):
        return Kernel(Str("log_zeta"), node.args[0].args[0])
    term = _riemann_zeta_term(node)
    assert term is not None
    number, _ = node.as_coeff_Add()
    coefficient, zeta = term.as_coeff_Mul()
    rest = [t for t in sympy.Add.make_args(node) if t is not term and t is not number]
    return sympy.Add(coefficient * Kernel(Str("zeta_minus_one"), zeta.args[0]), *rest)


def _riemann_zeta_term(node: sympy.Expr) -> sympy.Expr | None:
    """The term c zeta(u) of a sum whose number is -c, if any."""
    number, _ = node.as_coeff_Add()
    if not number:
        return None
    for term in sympy.Add.make_args(node):
        coefficient, factor = term.as_coeff_Mul()
        if _is_riemann_zeta(factor) and coefficient == -number:
            return term
    return None


def _is_riemann_zeta(node: sympy.Basic) -> bool:
    return isinstance(node, sympy.zeta) and len(node.args) == 1 and bool(node.args[0].free_symbols)


_TRIGONOMETRIC = (sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc)


def _of_pi_times(node: sympy.Basic) -> bool:
    """A trigonometric function of pi times something, plus any constant (each varying term of its
    argument holds pi: pi x + pi/4 and pi x + 1 too): sin(pi x) at 1 was 1.2e-16 and tan(pi x) at 0.5
    1.6e16, not a pole, as pi x rounds to a double; tan(pi x) at 1e15 + 0.25 was 0.95, sin(pi x + pi/4)
    there 0.98 (tester round 11), sin(pi x + 1) 0.982 (truth 0.977) and cos(pi x - pi/3) at
    1e15 + 0.125 0.707 (truth 0.793, tester round 12)."""
    # A constant is folded at the precision it needs (`fold_constants`) instead.
    if not isinstance(node, _TRIGONOMETRIC) or not node.free_symbols:
        return False
    varying = [term for term in sympy.Add.make_args(node.args[0]) if term.free_symbols]
    return all(sympy.pi in sympy.Mul.make_args(term) for term in varying)


# An offset whose integer part `fold_constants` computes (its last precision is 5,120 bits; past
# them, floor(offset/2) and offset round alike and the reduction would read as an exact 0).
_LARGEST_OFFSET = 2**4000
# A scale p/q whose period 2q (and multiples up to 2p) are exact doubles.
_EXACT_PERIOD = 2**40


def _in_half_turns(node: sympy.Expr) -> sympy.Expr:
    """The function in half turns: of V + q for the varying part V of its argument over pi and the
    constant q, which the kernels add once V is reduced (x - 1/3 rounds at 1e15, x mod 2 is exact),
    q itself reduced modulo 2 exactly first; V = W p/q is reduced as W modulo 2q (x/3 rounds)."""
    offset, varying = sympy.expand(node.args[0] / sympy.pi).as_independent(*node.free_symbols, as_Add=True)
    if not offset.is_extended_real:
        return node
    try:
        if abs(offset).evalf(15) > _LARGEST_OFFSET:  # its double is +-inf: the function as written, NaN
            return node
        offset -= 2 * sympy.floor(offset / 2)  # folded (`fold_constants`) at the precision it needs
    except (ArithmeticError, ValueError, TypeError):  # sympy's floor of a constant past some 4,000 digits
        return node
    scale, reduced = sympy.factor_terms(varying).as_coeff_Mul()
    if not (scale.is_Rational and scale.q < _EXACT_PERIOD and abs(scale.p) < _EXACT_PERIOD):
        scale, reduced = sympy.S.One, varying
    if offset == 0 and scale == 1:
        turns: tuple[sympy.Expr, ...] = (varying,)
    else:
        # The offset as two doubles, the nearest and what is left, added exactly: x + 1/6 at the
        # double nearest 1/3 rounded onto 1/2, where tan(pi*x + pi/6) was -inf, truth 1.7e16.
        nearest = reference.nearest_double(offset)
        if not math.isfinite(nearest):
            return node
        high = sympy.Rational(nearest)
        turns = (reduced, high, scale, 2 * scale.q, offset - high)  # p/q W mod 2p: W mod 2q
    sine, cosine = Kernel(Str("sin_half_turns"), *turns), Kernel(Str("cos_half_turns"), *turns)
    tangent = Kernel(Str("tan_half_turns"), *turns)
    # Each exactly 0 at its zeros, so the others are infinite at their poles (counted).
    written = {
        sympy.sin: sine,
        sympy.cos: cosine,
        sympy.tan: tangent,
        sympy.cot: 1 / tangent,
        sympy.sec: 1 / cosine,
        sympy.csc: 1 / sine,
    }
    return written[type(node)]


_EXPONENTIALS = (sympy.exp, sympy.cosh, sympy.sinh)


def _log_of_exponentials(node: sympy.Basic) -> bool:
    return (
        isinstance(node, sympy.log)
        and bool(node.free_symbols)
        and any(_exponential(part) for part in sympy.preorder_traversal(node.args[0]))
    )


def _inverse_of_exponentials(node: sympy.Basic) -> bool:
    return (
        isinstance(node, sympy.asinh | sympy.acosh)
        and bool(node.free_symbols)
        and any(_exponential(part) for part in sympy.preorder_traversal(node.args[0]))
    )


def _inverse_in_log_domain(node: sympy.asinh | sympy.acosh) -> sympy.Expr:
    """asinh(u) and acosh(u) as written, and where they are infinite (u past every double, long
    double's too) log(2|u|) with u's sign, computed without u (`_log_magnitude`): asinh(e^x) and
    acosh(2^x) at 1e5 were inf, truth 100000.69 and 69314.7 (a hunt, 2026-12-07). Past 1e154, log(2u)
    is log(u + sqrt(u^2 +- 1)) to the last bit. Only where infinite: acosh(u) of u <= -1 is NaN (not
    real), where log(2|u|) is finite."""
    (u,) = node.args
    magnitude = _log_magnitude(u)
    if magnitude is None:
        return node
    return Kernel(Str("infinite_or"), node, _sign_of(u) * (sympy.log(2) + magnitude))


def _exponential(node: sympy.Basic) -> bool:
    """exp, cosh, sinh or a power with a varying exponent: what may be past long double's range."""
    return isinstance(node, _EXPONENTIALS) or (isinstance(node, sympy.Pow) and bool(node.exp.free_symbols))


def _in_log_domain(node: sympy.log) -> sympy.Expr:
    """log(E), and where it is not finite, computed without E (`_logarithm`): E holds exponentials
    that may be past every double, long double's too (e^11357): log(1 + exp(x)), log(cosh(x)) and
    log(exp(x) + exp(2x)) at 12000 were inf, their values 12000, 11999.3 and 24000. Only there: as
    written, log(E) keeps the rules for E next to 1 (log(e^x/(1 + e^x)) is -log1p(e^-x), which
    x - log(1 + e^x) would cancel to 0.0 at 40)."""
    argument = node.args[0]
    written = _logarithm(argument)
    if written is None:
        return node
    if argument.is_Pow and argument.exp.free_symbols:  # p log b: log(x^x) next to 0 took b^p's rounding
        return written
    if argument.is_Mul and all(
        isinstance(factor, sympy.exp) or not factor.has(sympy.Add) for factor in argument.args
    ):
        # Exponentials beside factors holding no sum (no rule for them next to 1 to keep): the sum
        # of the logs is exact where the product rounds next to 1 (log(exp(x)*exp(y)) at (1e-20,
        # 2e-20) was 0.0, truth 3e-20; `log(exp(x)*Max(1, x))` 8e-8 off at 1e-9; an independent hunt).
        return written
    if argument.is_Add and all(_exponential_or_constant(term) for term in argument.args):
        # Exponentials and positive constants: their logs are as exact as the exponents, and numpy's
        # logaddexp is exact where the sum rounds next to 1 (log(exp(x) + exp(y)) at (1e-12, -40) was
        # 8.5e-5 off: e^x rounds to 1 before the log; an independent hunt). A term such as x^2 e^x
        # stays as written: its log, 2 log|x| + x, is off by |log| ulps where log1p(x^2 e^x) is exact.
        return written
    return Kernel(Str("finite_or"), node, written)


def _power_of_exponentials(node: sympy.Basic) -> bool:
    return (
        isinstance(node, sympy.Pow)
        and node.exp.is_number
        and bool(node.exp.is_positive)
        and not node.exp.is_integer
        and node.base.is_Add
        and any(_exponential(part) for part in sympy.preorder_traversal(node.base))
    )


def _power_in_log_domain(node: sympy.Pow) -> sympy.Expr:
    """b^p for a constant fractional p > 0, b a sum of terms none negative holding exponentials, and
    where b is past every double (long double's too) e^(p log b), log b their log-sum-exp:
    (exp(x) + 1)^(1/1000) at 12000 was inf, truth e^12 (an independent hunt)."""
    written = _log_of_sum(node.base)
    if not (isinstance(written, Kernel) and written.args[0] == Str("log_sum_exp")):
        return node
    return Kernel(Str("finite_or"), node, sympy.exp(node.exp * written))


def _exponential_or_constant(term: sympy.Expr) -> bool:
    """e^u, a positive number, or a positive number times e^u."""
    factors = sympy.Mul.make_args(term)
    exponentials = [factor for factor in factors if isinstance(factor, sympy.exp)]
    constants = [factor for factor in factors if factor.is_number]
    return (
        len(exponentials) <= 1
        and len(exponentials) + len(constants) == len(factors)
        and bool(term.is_positive)
    )


def _logarithm(argument: sympy.Expr) -> sympy.Expr | None:
    """log(argument) without computing the argument, or None where no part of it is an exponential:
    log e^u is u, log cosh and log sinh are kernels; over factors and terms known not negative the
    log of a product is the sum of the logs and of a sum their `log_sum_exp`, of b^p for a varying p
    `log_power`; a product of factors of any sign is the sum of their logs' magnitudes where its sign
    is positive (`log_signed`), and a sum of terms of known signs the `log_difference_exp` of its
    positive and negative parts (log(e^x - 1))."""
    if isinstance(argument, sympy.exp):
        return argument.args[0]
    if isinstance(argument, sympy.cosh | sympy.sinh):
        return Kernel(Str(f"log_{type(argument).__name__}"), argument.args[0])
    if isinstance(argument, sympy.Abs):
        return _log_magnitude(argument.args[0])
    if argument.is_Pow:
        base, exponent = argument.args
        inner = _logarithm(base) if base.is_positive else None
        if inner is not None:
            return exponent * inner
        if exponent.is_even:  # log(sinh(x)^2) at -12000 was inf
            magnitude = _log_magnitude(base)
            return None if magnitude is None else exponent * magnitude
        if not exponent.free_symbols:
            return None
        # b^p for a varying p: p log b where b > 0 (x^x is past long double from 1,600 on), the
        # power's own log elsewhere (a negative base to a whole power).
        return exponent * sympy.log(base) if base.is_positive else Kernel(Str("log_power"), base, exponent)
    if argument.is_Mul:
        magnitude = _log_magnitude(argument)
        if magnitude is None:
            return None
        if all(factor.is_nonnegative for factor in argument.args):
            return magnitude
        unsigned = [factor for factor in argument.args if not factor.is_nonnegative]
        return Kernel(Str("log_signed"), sympy.Mul(*map(sympy.sign, unsigned)), magnitude)
    if argument.is_Add:
        return _log_of_sum(argument)
    return None


def _log_magnitude(argument: sympy.Expr) -> sympy.Expr | None:
    """log|argument| without computing it, or None where no part of it is an exponential."""
    if isinstance(argument, sympy.sinh):
        return Kernel(Str("log_abs_sinh"), argument.args[0])
    if argument.is_Mul:
        logs = [(_log_magnitude(factor), factor) for factor in argument.args]
        if all(written is None for written, _ in logs):
            return None
        return sympy.Add(*(sympy.log(sympy.Abs(f)) if written is None else written for written, f in logs))
    if argument.is_Pow and not argument.exp.free_symbols:
        # |b^p| is |b|^p for a whole p; otherwise b^p has no real value where b < 0 (NaN, not |b|^p)
        inner = _log_magnitude(argument.base) if argument.exp.is_integer else _logarithm(argument.base)
        return None if inner is None else argument.exp * inner
    if argument.is_nonnegative:
        return _logarithm(argument)
    if argument.is_Add:
        return _log_of_signed_sum(argument, magnitude=True)
    return None


def _log_of_sum(argument: sympy.Expr) -> sympy.Expr | None:
    """log of a sum of terms of known signs: of the positive ones' and the negative ones' logs (each
    a `log_sum_exp`), their `log_difference_exp` (NaN where the negative part is larger)."""
    signs = {term: _where_real(term) for term in argument.args}
    positive = [term for term in argument.args if signs[term].is_nonnegative]
    negative = [
        -term for term in argument.args if signs[term].is_nonpositive and not signs[term].is_nonnegative
    ]
    if len(positive) + len(negative) < len(argument.args):
        return _log_of_signed_sum(argument)
    if not positive:
        return None
    logs = [[(_logarithm(term), term) for term in part] for part in (positive, negative)]
    if all(written is None for part in logs for written, _ in part):
        return None
    high, low = ([sympy.log(term) if written is None else written for written, term in part] for part in logs)
    total = Kernel(Str("log_sum_exp"), *high)
    return total if not low else Kernel(Str("log_difference_exp"), total, Kernel(Str("log_sum_exp"), *low))


def _log_of_signed_sum(argument: sympy.Expr, *, magnitude: bool = False) -> sympy.Expr | None:
    """log of a sum some of whose terms' signs are not known (e^x + x), by the sign and log-magnitude
    of each term (`log_signed_sum_exp`), or with `magnitude` log of its magnitude (each sign times
    the sum's, which is known where the sum overflows): log(e^x + x) at 1e5 was inf (a hunt,
    2026-12-07). None where no term's log-magnitude avoids computing it."""
    logs = [_log_magnitude(term) for term in argument.args]
    if all(log is None for log in logs):
        return None
    sign = sympy.sign(argument) if magnitude else sympy.S.One
    signed: list[sympy.Expr] = []
    for term, log in zip(argument.args, logs, strict=True):
        signed += [sympy.log(sympy.Abs(term)) if log is None else log, sign * _sign_of(term)]
    return Kernel(Str("log_signed_sum_exp"), *signed)


def _sign_of(term: sympy.Expr) -> sympy.Expr:
    """sign(term), its exponentials' factors left out (positive: computed, they may overflow)."""
    factors = [factor for factor in sympy.Mul.make_args(term) if not _where_real(factor).is_positive]
    return sympy.sign(sympy.Mul(*factors))


def _log_of_one_plus(node: sympy.Basic) -> bool:
    if not isinstance(node, sympy.log):
        return False
    (argument,) = node.args
    return _log_power(argument) is not None


def _where_real(expr: sympy.Expr) -> sympy.Expr:
    """`expr` for questions of sign, each exponential (e^u, cosh(u), c^u for a number c > 0) a positive
    stand-in: the code computes in the reals, where a value with no real value is NaN and so is all
    it reaches, so e^u is positive wherever it has a value. sympy cannot tell that when u is not
    provably real (1/x, zoo at 0; sqrt(x)): log(1 + e^(e^(1/x))) was computed as log1p of an
    overflowed e^(e^100), inf where it is 2.7e43 (an independent hunt, 2026-12-06). Asked of the
    terms of a log's sum only (`_log_of_sum`), where that was found."""
    positive = {
        node: sympy.Dummy(positive=True)
        for node in sympy.preorder_traversal(expr)
        if isinstance(node, sympy.exp | sympy.cosh)
        or (node.is_Pow and node.base.is_number and node.base.is_positive and not node.exp.is_number)
    }
    return expr.xreplace(positive) if positive else expr


def _log_power(argument: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, bool] | None:
    """(b, p, whether of |b|) where the argument is b^p or a real root of b (p = 1/n), p a real
    constant: p log(b) does not round b^p first, nor overflow with it (log(x^(1/3)) at 1 + 1e-12
    was 2e-4 off, log(cbrt(1 + x)) at 1e-17 0.0, log(x^1000) at 1e10 inf); an even power's is
    p log|b| (b^2 is positive where b < 0); or b itself (p = 1) where b is a sum holding a number c
    (1 + u with u = (c - 1) + the rest, which a rule may write stably: log(2 - e^x) holds 1 - e^x).
    Powers of powers too (1/cbrt(x), cbrt(x)^2), except an even power of a sum holding a number,
    left to `_one_less` (log((1 + u)^2) next to u = 0), and under an even power, a power whose base
    must not be negative (|sqrt(b)| is NaN where b < 0, as sqrt(b) is)."""
    base, exponent, absolute = argument, sympy.S.One, False
    while (level := _constant_power(base)) is not None:
        inner, power = level
        even = _even(power)
        if (even and _holds_a_number(inner)) or (absolute and not even and not _odd_or_real_root(base)):
            break
        base, exponent, absolute = inner, exponent * power, absolute or even
    if not base.free_symbols or (exponent == 1 and not _holds_a_number(base)):
        return None
    if absolute and _holds_a_number(base):  # log|1 + u| is no log1p: left to `_one_less` as it was
        return None
    return base, exponent, absolute


def _odd_or_real_root(power: sympy.Expr) -> bool:
    """Whether `power` (b^p or a real root) is real wherever b is: a real root, or p a whole number."""
    return isinstance(power, RealRoot) or _whole(power.exp)


def _constant_power(factor: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(b, p) for a factor b^p with p a real constant, or a real root of b (p = 1/n)."""
    if isinstance(factor, RealRoot) and factor.args[1].is_Integer:
        return factor.args[0], 1 / factor.args[1]
    if factor.is_Pow and factor.exp.is_number and factor.exp.is_extended_real:
        return factor.base, factor.exp
    return None


def _even(exponent: sympy.Expr) -> bool:
    """An even whole number (log(9)/log(3) too: x^that is 4 at -2), not one that only rounds to it:
    x^(2 + 10^-20) and x^(2 + pi/10^20) are not real at -2, and their logs no log|x| (an
    independent hunt)."""
    return _whole(exponent) and float(exponent) % 2 == 0


def _whole(exponent: sympy.Expr) -> bool:
    """Whether a real constant is a whole number: exactly, not only as its double (`_whole_double`)."""
    return float(exponent).is_integer() and not _whole_double(exponent)


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """base^exponent as a kernel call sympy leaves alone: `power`, or `fractional_power` for a constant
    exponent that only rounds to a whole number (NaN for a negative base, as the exponent says)."""
    return Kernel(Str("fractional_power" if _whole_double(exponent) else "power"), base, exponent)


def _whole_double(exponent: sympy.Expr) -> bool:
    """A constant whose double is a whole number n though it is not: an exact fraction (2 + 10^-20,
    10^20 + 1/2), or a constant whose difference from n is not 0 at any precision that settles
    (2 + pi/10^20; log(9)/log(3) - 2 is 0 at every precision, `reference.nearest_double`)."""
    if exponent.is_Rational:
        return not exponent.is_Integer and float(exponent).is_integer()
    if not (exponent.is_number and exponent.is_extended_real):
        return False
    try:
        whole = float(exponent)
        if not whole.is_integer():
            return False
        return reference.nearest_double(exponent - sympy.Integer(int(whole))) != 0
    except (reference.Unsupported, ArithmeticError, TypeError, ValueError, OverflowError):
        return False


def _holds_a_number(base: sympy.Expr) -> bool:
    return bool(base.is_Add and base.as_coeff_Add()[0] != 0)


def _log_one_plus(node: sympy.log) -> sympy.Expr:
    power = _log_power(node.args[0])
    assert power is not None
    base, exponent, absolute = power
    if _holds_a_number(base) and not absolute:
        return exponent * Kernel(Str("log_one_plus"), base - 1, base)
    # Marked with the argument it had, for the sum rules (log(x^2 + 1) - log(x^2) is a difference
    # of logs: `_difference_of_one_function`); the computed form replaces the mark once they ran.
    computed = exponent * sympy.log(sympy.Abs(base) if absolute else base)
    return Kernel(Str("log_of_power"), computed, node.args[0])


def _in_real_roots_or_same(node: sympy.Expr) -> sympy.Expr:
    """A polynomial of one variable as the product of its factors at its real roots (`polynomial_roots`),
    its zeros unsigned as the sum's were where the product's are not (`kernels.unsigned_zero`)."""
    factored = polynomial_roots.in_real_roots(node)
    if factored is None:
        return node
    return Kernel(Str("unsigned_zero"), factored.product) if factored.signed_zeros else factored.product


def _log_of_a_power(node: sympy.Basic) -> bool:
    return isinstance(node, Kernel) and node.args[0].name == "log_of_power"


def _computed_log(node: Kernel) -> sympy.Expr:
    return node.args[1]


def _unchanged_log_one_plus(node: sympy.Basic) -> bool:
    """log_one_plus(u, 1 + u) where no rule rewrote u or 1 + u: log1p(u) (or log(1 + u)) is as good."""
    return (
        isinstance(node, Kernel) and node.args[0].name == "log_one_plus" and node.args[2] == 1 + node.args[1]
    )


def _plain_log(node: Kernel) -> sympy.Expr:
    u, whole = node.args[1:]
    return Kernel(Str("log1p"), u) if sympy.S.One in whole.args else sympy.log(whole)


def _unstable(node: sympy.Basic) -> bool:
    return bool(
        node.is_Add
        or node.is_Mul
        or isinstance(node, _REWRITTEN_FUNCTIONS)
        or (node.is_Pow and (node.base.is_Add or node.exp.is_Add or _exponent_of_one_plus(node.exp)))
    )


# Inverse functions whose value goes to 0 where their argument goes to 1 (acos(tanh(x)) at 20 was
# 0.0, atanh(tanh(19)) inf): given 1 -+ u written stably, a kernel computes them from it.
_INVERSES_AT_ONE = (sympy.asin, sympy.acos, sympy.atanh, sympy.acosh, sympy.asec, sympy.acsc)
_REWRITTEN_FUNCTIONS = (sympy.log, sympy.factorial, *_INVERSES_AT_ONE)


def _stable_node(node: sympy.Expr) -> sympy.Expr:
    written = _written_stably(node)
    # A constant is folded at the precision it needs (`fold_constants`), which no kernel call has.
    return node if written is not node and not node.free_symbols else written


def _written_stably(node: sympy.Expr) -> sympy.Expr:
    if node.is_Mul:
        return _exponential_ratio(_scaled_erfc(_ratio(_absolute_powers(_log_in_base(node)))))
    if node.is_Add:
        return _stable_sum(node)
    if node.is_Pow:
        # (1 + u)^p also where a rule wrote 1 + u first: 1 - x^3 as (1 - x)(1 + x + x^2), 1 - x^9
        # through `one_less_power_of` ((1 - x^3)^(1/x^3) at 1e-6 is 1/e).
        written = _power_of_one_plus(node)
        if written is not None:
            return written
        return node if node.base.is_Add else _shifted_power(node)
    if isinstance(node, sympy.factorial):
        return sympy.gamma(node.args[0] + 1)
    if isinstance(node, _INVERSES_AT_ONE):
        return _inverse_at_one(node)
    (argument,) = node.args  # a log
    logged = _log_of_erfc(argument)
    if logged is not None:
        return logged
    if isinstance(argument, sympy.gamma):
        return Kernel(Str("log_gamma"), argument.args[0])
    if isinstance(argument, sympy.Abs) and isinstance(argument.args[0], sympy.gamma):
        return Kernel(Str("log_abs_gamma"), argument.args[0].args[0])
    # log(t) is log1p(t - 1), t - 1 as a rule writes it: of functions next to 1, and of a/b next to 1
    # (log(x/(1 + x)) at 1e17 was 0.0) or u^2 (log(x^2) at 1 + 1e-12 was 1e-4 off).
    # A ratio of exponentials is still that ratio for 1 - t (`_exponential_ratio` wrote it first).
    t = argument.args[1] if _kernel_name(argument) == "finite_or" else argument
    if isinstance(t, _LOGGED_NEAR_ONE) or t.is_Mul or t.is_Pow:
        less = _one_less(t)
        if less is not None:
            return Kernel(Str("log_one_plus"), -less, argument)
    return node


def _kernel_name(node: sympy.Basic) -> str | None:
    """The name of the kernel `node` calls, None if it is no `Kernel`."""
    return str(node.args[0].name) if isinstance(node, Kernel) else None


def _log_of_sech(node: sympy.Basic) -> bool:
    return isinstance(node, sympy.log) and isinstance(node.args[0].as_base_exp()[0], sympy.sech)


def _minus_log_cosh(node: sympy.log) -> sympy.Expr:
    """log(sech(u)^k) as -k log(cosh(u))."""
    sech, k = node.args[0].as_base_exp()
    return -k * sympy.log(sympy.cosh(sech.args[0]))


def _reciprocal_inverse(node: sympy.Expr) -> sympy.Expr:
    """acoth(u) as atanh(1/u), asech(u) as acosh(1/u), where a rule writes 1 - 1/u stably; as
    written elsewhere (acoth(x) itself is closer than atanh(1/x), 1/x being rounded), and a constant
    as written (folded at the precision it needs, `fold_constants`)."""
    if not node.free_symbols:
        return node
    (u,) = node.args
    if _one_less(u) is None and _one_more(u) is None:
        return node  # u as written: acoth(x) is exact next to +-1 (1 -+ 1/x would be too, 1/x not)
    inverse = sympy.atanh if isinstance(node, sympy.acoth) else sympy.acosh
    reciprocal = 1 / u
    written = _inverse_at_one(inverse(reciprocal, evaluate=False))  # as is: sympy takes a sign out
    if not isinstance(written, inverse):
        return written
    # 1/u with no division left (acoth(1/x) is atanh(x): 3.9e-6 off at 0.999999999999 as atanh of
    # x divided twice; a second hunt) is closer than u itself.
    return node if reciprocal.is_Pow and reciprocal.exp == -1 else written


def _log_in_base(node: sympy.Expr) -> sympy.Expr:
    """log(u)^k/log(2)^k as log2(u)^k, and log(u)^k/log(10)^k as log10(u)^k: exact at the powers of
    the base, where log(8)/log(2) is 3 + 4.4e-16 (log2(x) - 3 at 8 was -4.4e-16, and asin(log2(x))'
    at 2 6.9e7 where it is infinite; a hunt, 2026-12-05)."""
    factors = list(sympy.Mul.make_args(node))
    changed = False
    for base, name in ((2, "log2"), (10, "log10")):
        for factor in factors:
            power, k = factor.as_base_exp()
            divisor = sympy.log(base) ** -k
            if isinstance(power, sympy.log) and k.is_Integer and k > 0 and divisor in factors:
                factors.remove(factor)
                factors.remove(divisor)
                factors.append(Kernel(Str(name), power.args[0]) ** k)
                changed = True
                break
    return sympy.Mul(*factors) if changed else node


def _inverse_at_one(node: sympy.Expr) -> sympy.Expr:
    """asin(u), acos(u), atanh(u) or acosh(u) from 1 - u (and 1 + u) written stably, where a rule
    writes either: `kernels.asin_near_one` and the like (each uses the function itself where u is
    away from +-1, and the stable form where the function would take u's rounding)."""
    (u,) = node.args
    less, more = _one_less(u), _one_more(u)
    if isinstance(node, sympy.acosh):
        return node if less is None else Kernel(Str("acosh_near_one"), u, -less)
    if less is None and more is None:
        return node
    less, more = (1 - u) if less is None else less, (1 + u) if more is None else more
    return Kernel(Str(_NEAR_ONE[type(node)]), u, less, more)


_NEAR_ONE = {
    sympy.asin: "asin_near_one",
    sympy.acos: "acos_near_one",
    sympy.atanh: "atanh_near_one",
    sympy.asec: "asec_near_one",
    sympy.acsc: "acsc_near_one",
}
_NEAR_ONE_OF = {name: function for function, name in _NEAR_ONE.items()}


def _ratio(node: sympy.Expr) -> sympy.Expr:
    """sinh(u)^k cosh(u)^-k as tanh(u)^k (coth(u)^-k for k < 0). The two factors are taken out of
    the product, not divided by: with a kernel in u sympy left (sinh(u)^-1 cosh(u))^-1 standing
    beside them, and the rule recursed without end (coth(asin(sin(x)))'', the fuzzer)."""
    factors = list(sympy.Mul.make_args(node))
    cosh = {f.as_base_exp()[0].args[0]: f for f in factors if isinstance(f.as_base_exp()[0], sympy.cosh)}
    for factor in factors:
        base, exponent = factor.as_base_exp()
        other = cosh.get(base.args[0]) if isinstance(base, sympy.sinh) else None
        if other is not None and other.as_base_exp()[1] == -exponent:
            u = base.args[0]
            ratio = sympy.tanh(u) ** exponent if exponent.is_positive else sympy.coth(u) ** -exponent
            rest = [f for f in factors if f is not factor and f is not other]
            return _ratio(sympy.Mul(*rest, ratio))
    return node


def _exponential_ratio(node: sympy.Expr) -> sympy.Expr:
    """e^a over a power of a sum holding a term c e^b, and where that is not finite, the same with
    e^-b taken into the sum: exp(x)/(exp(x) + 1) at 12000 was NaN (inf/inf in both runs, long
    double's range ends at e^11356), truth 1; it is 1/(1 + e^-x) there. c^u counts as e^(u log c)
    (2^x log(2)/(2^x + 1)^2 at 1e4 was inf/inf, NaN). Not written again here: e^-b into a sum of
    e^-b is the first form back. (Each exponential of the sum taken in turn, where the one before
    is not finite, mended log(e^(x^3) + e^x)' at 30, NaN for 2700, and was left: in the higher
    derivatives the second form was finite where its terms cancel, where NaN had sent the point to
    the long double run that computed it; the regression check, 2026-12-06.)"""
    if not node.is_Mul:
        return node
    factors = sympy.Mul.make_args(node)
    if not any(_exponent(factor) is not None and factor.free_symbols for factor in factors):
        return node
    for factor in factors:
        base, exponent = factor.as_base_exp()
        if not (base.is_Add and exponent.is_Number and exponent.is_negative):
            continue
        exponents = (_exponent(term.as_coeff_Mul()[1]) for term in base.args)
        scale = next((u for u in exponents if u is not None and u.free_symbols), None)
        if scale is None:
            continue
        others = [other for other in factors if other is not factor]
        return Kernel(Str("finite_or"), node, _shifted_ratio(base, exponent, others, scale))
    return node


def _shifted_ratio(
    base: sympy.Expr, exponent: sympy.Expr, others: Sequence[sympy.Expr], scale: sympy.Expr
) -> sympy.Expr:
    """The product of `others` and base^exponent with e^-scale taken into the sum `base`."""
    # powsimp: e^(x - y) e^(y - x) is 1 (sympy leaves exponentials of sums apart); c^u as e^(u log c)
    # first, which powsimp does not merge with e^-(u log c) (log(2^(e^(1/x)) + 1)' at 0.01 was NaN).
    scale = _natural(scale)  # as the terms are written: e^(2^x) is e^(e^(x log 2)) there
    shifted = sympy.Add(*(sympy.powsimp(_natural(term) * sympy.exp(-scale)) for term in base.args))
    rest = sympy.Mul(*map(_natural, others), sympy.exp(exponent * scale))
    # Sums beside it distributed over: e^-2x (1 - e^x) is 0 (-inf) at 6000, e^-2x - e^-x is 0.
    terms = sympy.Add.make_args(sympy.expand_mul(rest) if _cheap_to_expand(rest) else rest)
    written = sympy.Add(*map(sympy.powsimp, itertools.chain.from_iterable(map(_expm1_apart, terms))))
    return written * shifted**exponent


def _natural(term: sympy.Expr) -> sympy.Expr:
    """The term with every c^u in it (c a number above 0, u varying) written e^(u log c)."""
    return term.replace(
        lambda node: node.is_Pow and _exponent(node) is not None,
        lambda node: sympy.exp(node.exp * sympy.log(node.base)),
    )


def _expm1_apart(term: sympy.Expr) -> tuple[sympy.Expr, ...]:
    """The term with expm1(u) e^w as e^(u + w) - e^w, its terms: in the form taken where e^u is past
    the doubles, expm1(u) is inf there and e^w 0 (x^2 e^x/(1 + e^x)'' at 1e5 was NaN, truth 2, once
    x^2 e^x - x^2 was x^2 expm1(x); the regression hunt of 2026-12-05)."""
    factors = sympy.Mul.make_args(term)
    if not any(isinstance(f, sympy.exp) for f in factors) or all(_kernel_name(f) != "expm1" for f in factors):
        return (term,)
    apart = term.replace(lambda node: _kernel_name(node) == "expm1", lambda node: sympy.exp(node.args[1]) - 1)
    return tuple(sympy.Add.make_args(sympy.expand_mul(apart)))


def _erfc_of(node: sympy.Expr) -> sympy.Expr | None:
    """u where `node` is erfc(u), as parsed or as a rule wrote it (1 - erf(u), a kernel call)."""
    if isinstance(node, sympy.erfc):
        return node.args[0]
    if isinstance(node, Kernel) and node.args[0].name == "erfc":
        return node.args[1]
    return None


def _log_one_plus_of_erfc(node: sympy.Basic) -> bool:
    """log(1 + u) where a rule wrote 1 + u as erfc (log(1 - erf(x)) was -inf at 28, tester round 12),
    or as a product holding erfc (the Gaussian log-CDF, log((1 + erf(x/sqrt(2)))/2))."""
    return (
        isinstance(node, Kernel)
        and node.args[0].name == "log_one_plus"
        and any(_erfc_of(factor.as_base_exp()[0]) is not None for factor in sympy.Mul.make_args(node.args[2]))
    )


def _log_one_plus_of_exponentials(node: sympy.Basic) -> bool:
    """log(1 + u) where a rule wrote 1 + u with exponentials (1 - tanh(x) as 2/(e^2x + 1)), and u
    has none: a log of exponentials has its log domain already (`_in_log_domain`), which a second
    one inside made NaN (log(1 - 1/cosh(x)) at 12000, truth -0.0; a regression hunt)."""
    return (
        isinstance(node, Kernel)
        and node.args[0].name == "log_one_plus"
        and node.args[2] != 1 + node.args[1]
        and not any(_exponential(part) for part in sympy.preorder_traversal(node.args[1]))
        and any(_exponential(part) for part in sympy.preorder_traversal(_with_exponentials(node.args[2])))
    )


def _with_exponentials(node: sympy.Expr) -> sympy.Expr:
    """`node` with sech(u)^2 as its kernel holds it, 1/cosh(u)^2 (1 - tanh(x)^2's log: -inf at 1e4)."""
    return node.replace(lambda n: _kernel_name(n) == "sech_squared", lambda n: sympy.cosh(n.args[1]) ** -2)


def _log_one_plus_in_log_domain(node: Kernel) -> sympy.Expr:
    """As written, and where that is not finite the log of the rewritten sum without computing it:
    2/(e^2x + 1) is 0 past long double, and log(1 - tanh(x)) was -inf at 6000, truth -11999.3 (a hunt,
    2026-12-05)."""
    logarithm = _logarithm(_with_exponentials(node.args[2]))
    return node if logarithm is None else Kernel(Str("finite_or"), node, logarithm)


def _log_erfc(node: Kernel) -> sympy.Expr:
    logged = _log_of_erfc(node.args[2])
    return node if logged is None else logged


def _log_of_erfc(argument: sympy.Expr) -> sympy.Expr | None:
    """log(argument) for a product holding erfc(u)^k: erfc is past the doubles from 27 on, its log
    is not. log(erfc(u)) is `log_erfc`; with other factors R, k log Phi(-u sqrt 2) + log(2^k R),
    Phi's log scipy's log_ndtr: log(erfc(x)/2) at 30 was -inf (-904.7), the Gaussian log-CDF
    log((1 + erf(x/sqrt(2)))/2) at -40 -inf (-804.6), and at 20 0.0 (-2.8e-89), where log 2 +
    log(erfc/2) cancel (a hunt, 2026-12-05). None where it holds no erfc."""
    found: list[tuple[sympy.Expr, sympy.Expr]] = []
    others: list[sympy.Expr] = []
    for factor in sympy.Mul.make_args(argument):
        base, k = factor.as_base_exp()
        u = _erfc_of(base)
        if u is not None and k.is_number:
            found.append((u, k))
        else:
            others.append(factor)
    if not found:
        return None
    if not others and found == [(found[0][0], 1)]:
        return Kernel(Str("log_erfc"), found[0][0])
    rest = sympy.Mul(*others)
    total = sum(k for _, k in found)
    logs = sympy.Add(*(k * Kernel(Str("log_ndtr"), -sympy.sqrt(2) * u) for u, k in found))
    other = sympy.log(2**total * rest)
    return logs + (stable(other) if other.free_symbols else other)


def _scaled_erfc(node: sympy.Expr) -> sympy.Expr:
    """erfc(u)^k e^(k u^2) as erfcx(u)^k, k a nonzero integer (log(erfc(x))'s derivatives:
    e^-x^2/erfc(x) is 0/0 from x = 27 on, 1/erfcx(x) there about x sqrt(pi); e^x^2 erfc(x) is inf
    times 0); other terms of the exponent stay. The product as written where that is not finite:
    toward -inf erfcx(u) overflows where erfc(u) is 2 (the partial of erfc(x - y)/(erfc(y)(-x)) in
    y at -1e5 was NaN, e^(y^2)/erfcx(y)^2 there; the fuzzer, seed 2027767536)."""
    scaled = _with_erfcx(node)
    return node if scaled is node else Kernel(Str("finite_or"), scaled, node)


def _with_erfcx(node: sympy.Expr) -> sympy.Expr:
    if not node.is_Mul:
        return node
    factors = list(node.args)
    exponentials = [f for f in factors if isinstance(f, sympy.exp)]
    for factor in factors:
        base, k = factor.as_base_exp()
        u = _erfc_of(base)
        if u is None or not (k.is_Integer and k.is_nonzero):
            continue
        for exponential in exponentials:
            rest = sympy.expand(exponential.args[0] - k * u**2)
            if sympy.count_ops(rest) < sympy.count_ops(exponential.args[0]):
                scaled = Kernel(Str("erfcx"), u) ** k * sympy.exp(rest)
                return _with_erfcx(node / (factor * exponential) * scaled)
    return _over_erfc_term_by_term(node, factors)


def _over_erfc_term_by_term(node: sympy.Expr, factors: Sequence[sympy.Expr]) -> sympy.Expr:
    """A sum over erfc(u)^k with exponentials in its terms, the division taken into each term where
    then none divides by erfc: log(erfc(x/sqrt(2)))'' holds (c e^-x^2/erfc(u) + c' x e^(-x^2/2))/erfc(u)
    for u = x/sqrt(2), 0/0 from x = 38 on and 901 at 30 (truth -0.999), and log(x erfc(x))' (c x
    e^-x^2 + erfc(x))/(x erfc(x)), NaN at 30 (a hunt, 2026-12-05): term by term, c/erfcx(u)^2 +
    c' x/erfcx(u), and c/erfcx(x) + 1/x."""
    sums = [factor for factor in factors if factor.is_Add and factor.has(sympy.exp)]
    if len(sums) != 1 or not any(_divides_by_erfc(factor) for factor in factors):
        return node
    others = [factor for factor in factors if factor is not sums[0]]
    terms = [_with_erfcx(sympy.Mul(term, *others)) for term in sums[0].args]
    if any(_divides_by_erfc(factor) for term in terms for factor in sympy.Mul.make_args(term)):
        return node
    return sympy.Add(*terms)


def _divides_by_erfc(factor: sympy.Expr) -> bool:
    base, k = factor.as_base_exp()
    return bool(k.is_negative) and _erfc_of(base) is not None


_HALF_PI = sympy.pi / 2


# f(u) - K for an inverse trigonometric f and a constant K it reaches, written without K where f(u)
# nears it: (sign, g, negated) for sign * g(-u if negated else u), g a function or a kernel's name.
# pi/2 - acos(x) and pi/2 - acot(x) at 1e-17 were 0.0 (tester round 12), pi/2 - asin(x) at
# 1 - 1e-10 lost 5 digits, atan(x) - pi/4 at 1 + 1e-10 9. sympy keeps acos(-u) and asec(-u) as written.
_INVERSE_SHIFTED: dict[tuple[type, sympy.Expr], tuple[int, type | str, bool]] = {
    (sympy.acos, _HALF_PI): (-1, sympy.asin, False),
    (sympy.acos, sympy.pi): (-1, sympy.acos, True),
    (sympy.asin, _HALF_PI): (-1, sympy.acos, False),
    (sympy.asin, -_HALF_PI): (1, sympy.acos, True),
    (sympy.asec, _HALF_PI): (-1, sympy.acsc, False),
    (sympy.asec, sympy.pi): (-1, sympy.asec, True),
    (sympy.acsc, _HALF_PI): (-1, sympy.asec, False),
    (sympy.acsc, -_HALF_PI): (1, sympy.asec, True),
    (sympy.atan, _HALF_PI): (-1, "atan_complement", False),
    (sympy.atan, -_HALF_PI): (1, "atan_complement", True),
    (sympy.atan, sympy.pi / 4): (1, "atan_less_quarter", False),
    (sympy.atan, -sympy.pi / 4): (-1, "atan_less_quarter", True),
    (sympy.acot, _HALF_PI): (-1, "acot_complement", False),
    (sympy.acot, -_HALF_PI): (1, "acot_past_half_pi", False),
}


_QUARTERS = (sympy.S.One, sympy.S.NegativeOne, sympy.Integer(2), sympy.Integer(-2))


def _inverse_shifted(node: sympy.Expr, constant: sympy.Expr) -> sympy.Expr | None:
    """`node` + `constant` written without the constant (`_INVERSE_SHIFTED`), or None. asin and acos
    may already be their kernels next to +-1 (`_inverse_at_one`): acos(sin(x)) is
    acos_near_one(sin(x), 1 - sin(x), 1 + sin(x)); the function they become is too."""
    if isinstance(node, sympy.atan2):
        quarters = -constant / _HALF_PI  # atan2(y, x) less pi/2, pi, -pi/2 or -pi
        return Kernel(Str("atan2_less"), *node.args, quarters) if quarters in _QUARTERS else None
    function, argument = _inverse_of(node)
    shift = None if function is None else _INVERSE_SHIFTED.get((function, -constant))
    if shift is None:
        return None
    sign, written, negated = shift
    if isinstance(node, Kernel):
        u, less, more = argument
        return sign * Kernel(Str(_NEAR_ONE[written]), *((-u, more, less) if negated else (u, less, more)))
    (u,) = argument
    u = -u if negated else u
    if written == "atan_less_quarter":  # from u - 1 written stably: atan(e^x) - pi/4 at 1e-17 was 0.0
        return sign * Kernel(Str(written), u, _less_one(u))
    return sign * (Kernel(Str(written), u) if isinstance(written, str) else written(u))


def _inverse_of(node: sympy.Expr) -> tuple[type | None, tuple[sympy.Expr, ...]]:
    """The inverse trigonometric function `node` computes, and its arguments (u, 1 - u and 1 + u of
    its kernel next to +-1)."""
    name = _kernel_name(node)
    if name is not None:
        return _NEAR_ONE_OF.get(name), node.args[1:]
    return type(node), node.args


def _stable_sum(node: sympy.Expr, *, combine: bool = True) -> sympy.Expr:
    """The sum with the first rule that applies applied, then the terms it left untouched written
    again: a sum may hold several cancellations (x log(x + 1) - x log(x)'s derivative holds
    1 - x/(x + 1) and log(x + 1) - log(x); the second was left, 3.7e9 off at 1e12). The terms left
    are not combined over a denominator again (`combine`): factoring costs milliseconds a sum,
    for a shape the whole sum would have shown."""
    written = _stable_sum_once(node, combine=combine)
    if written is node or not written.is_Add:
        return written
    terms = set(node.args)
    untouched = [term for term in written.args if term in terms]
    if len(untouched) < 2 or len(untouched) == len(written.args):
        return written
    new = [term for term in written.args if term not in terms]
    return sympy.Add(_stable_sum(sympy.Add(*untouched), combine=False), *new)


def _stable_sum_once(node: sympy.Expr, *, combine: bool) -> sympy.Expr:
    # Before c - c sqrt(1 + u) below: sqrt(x^2 + 1) - 1 - x is that, but the two that cancel where
    # x is large are sqrt(x^2 + 1) and x (-1.0 at 1e10, truth -0.99999999995).
    root = _root_difference(node)
    if root is not None:
        return root
    # Before c - c f(u) below: cosh(x)^2 - sinh(x)^2 - 1 is 0, where 1 - cosh(x)^2 and the sinh(x)^2
    # left beside it, each some 6e16 at 20, were rounded apart (-8.0).
    hyperbolic = _hyperbolic_cancelled(node)
    if hyperbolic is not None:
        return hyperbolic
    # Before c - c t^2 below: in a polynomial in t whose coefficients vary, that pair is one part of
    # what cancels (2x t^3 - 2x t - 3t^2 + 3 is (t^2 - 1)(2x t - 3), whose two halves, each some
    # sech^2, were computed apart: the third derivative of x log(cosh(x)) at 20 was 5.1e-17, truth
    # -6.3e-16; a hunt, 2026-12-05).
    if combine and not _polynomial_in_one_function(node) and _polynomial_form(node) is not None:
        factored = _stable_combined(node)
        if factored is not None:
            return factored
    polynomials = _polynomials_apart(node) if combine else None
    if polynomials is not None:
        return polynomials
    complement = _in_powers_of_the_complement(node) or _in_powers_of_the_logistic(node)
    if complement is not None:
        return complement
    terms = list(node.args)
    # Before c + k t below: in a polynomial in one function t tending to 1, c + k t is one part of
    # what cancels (-2t^3 + 2t^2 + t - 1 is (1 - t)(2t^2 - 1): t - 1 alone written stably, the
    # rest rounded to 0.0, gave -8.5e-18 at 20 for +8.5e-18, the sign of the negated polynomial; a
    # numbers hunt, 2026-12-07). A constant and one term (1 - tanh(x)^2) stay the rules' below.
    if combine and sum(1 for term in terms if term.free_symbols) > 1 and _polynomial_in_one_function(node):
        factored = _stable_combined(node)
        if factored is not None:
            return factored
    # Constant terms are folded together exactly (`fold_constants`): only a variable one is written.
    # A power last: c - c e^u is -c expm1(u) whatever else the sum holds (exp(x^7) - 1 - x^7 lost it
    # to 1 + x^7, a power's rule; a hunt).
    varying = sorted(
        (
            (term, *term.as_independent(*term.free_symbols, as_Add=False))
            for term in terms
            if term.free_symbols
        ),
        key=lambda split: bool(split[2].is_Pow),
    )
    for constant in (term for term in terms if not term.free_symbols):
        for term, coefficient, rest in varying:
            others = [t for t in terms if t is not constant and t is not term]
            written = _constant_and_term(constant, coefficient, rest, alone=not others)
            if written is not None:
                return sympy.Add(*others, written)
    shared = _constant_shared(terms, varying)
    if shared is not None:
        return shared
    scaled = _summed_under_shared_factors(terms)
    if scaled is not None:
        return scaled
    paired = _varying_pair(terms)
    if paired is not None:
        return paired
    digammas = {term: term.as_coeff_Mul() for term in terms if _is_digamma(term.as_coeff_Mul()[1])}
    for first, (c, low) in digammas.items():
        for second, (d, high) in digammas.items():
            step = _step(low.args[1], high.args[1])
            if c == -d and step is not None:  # c (digamma(u) - digamma(u + w)) is -c digamma_step(u, w)
                others = [t for t in terms if t is not first and t is not second]
                return sympy.Add(*others, -c * Kernel(Str("digamma_step"), low.args[1], step))
    written = _exp_difference(node) or _difference_of_one_function(node) or _log_sum_exp_difference(node)
    if written is not None:
        return written
    return (_stable_combined(node) if combine else None) or node


def _log_sum_exp_difference(node: sympy.Expr) -> sympy.Expr | None:
    """k log(e^c + e^u) - k log(e^c + e^v) (`log_sum_exp` of two, the same c: softplus written so) as
    `kernels.log_sum_exp_difference` of u - v, where the two nearly cancel; None where the sum holds
    no such pair."""
    seen: dict[tuple[sympy.Expr, sympy.Expr], sympy.Expr] = {}  # (c, k): the term k log_sum_exp(c, u)
    for term in node.args:
        k, kernel = term.as_coeff_Mul()
        if _kernel_name(kernel) != "log_sum_exp" or len(kernel.args) != 3:
            continue
        c = kernel.args[1]
        other = seen.get((c, -k))
        if other is not None:
            u, v = (kernel.args[2], other.as_coeff_Mul()[1].args[2])[:: 1 if k > 0 else -1]
            rest = [t for t in node.args if t is not term and t is not other]
            difference = Kernel(Str("log_sum_exp_difference"), c, u, v, sympy.expand(u - v))
            return sympy.Add(*rest, abs(k) * difference)
        seen[(c, k)] = term
    return None


def _stable_combined(node: sympy.Expr) -> sympy.Expr | None:
    """The sum combined (`_combined`) and written stably again; None where it does not combine."""
    combined = _combined(node)
    if combined is None or combined in _COMBINING.get(()):
        return None
    # A combined sum is written stably again, and may hold its own sum combined back to where it
    # started (-1 + 3/u - 4/u^2 with u = pi + 2 log(1/x), the third derivative of
    # log(pi/2 + log(1/x)): RecursionError, a hunt, 2026-12-05): each sum is combined once a branch.
    token = _COMBINING.set((*_COMBINING.get(()), node, combined))
    try:
        return stable(combined)
    finally:
        _COMBINING.reset(token)


def _in_powers_of_the_complement(node: sympy.Expr) -> sympy.Expr | None:
    """A polynomial in t = f(u), f tending to +-1 (tanh, coth, sin, cos, erf), of degree 2 or more,
    whose coefficients c_k vary (and may call other functions), as E(t^2) + t O(t^2) with each part
    that vanishes at t^2 = 1 written s^q P(t^2), s = 1 - t^2 written stably (sech(u)^2 for tanh):
    c - c t^2 is c s whatever c is, and next to t = 0 the quotient P is the polynomial as it was.
    The second derivative of log(cosh(g)), g'^2 - g'^2 t^2 + g'' t, was 0.0 for g = e^(1/x) at
    0.01 (g'^2 some 1e45 rounded the rest away; truth 2.7e51) and 7e-7 off for g = e^x sin(x) at
    30, where `_polynomial_form` takes coefficients of no function but t's (an independent hunt,
    2026-12-06)."""
    if len(node.args) > _COMPLEMENT_TERMS:
        return None
    squared = {
        factor.base
        for term in node.args
        for factor in sympy.Mul.make_args(term)
        if factor.is_Pow
        and isinstance(factor.base, _TENDING_TO_ONE)
        and factor.exp.is_Integer
        and factor.exp > 1
    }
    for t in sorted(squared, key=sympy.default_sort_key):
        coefficients = _coefficients_in(node, t)
        if coefficients is None or max(coefficients) < 2:
            continue
        if not any(c.atoms(Application) for c in coefficients.values()):
            continue  # numbers and powers of the variables: `_polynomial_form` and the rules below
        parts = [_parts_over_one_less(coefficients, parity) for parity in (0, 1)]
        if not any(power for part in parts for power, _ in part):
            continue  # nothing cancels where t^2 is 1
        complement = _one_less(t**2)
        if complement is None:
            continue
        square = t**2
        even, odd = (
            sympy.Add(*(complement**q * sympy.Add(*(c * square**m for m, c in enumerate(quotient)))
                        for q, quotient in part))
            for part in parts
        )  # fmt: skip
        return stable(even + t * odd)
    return None


def _parts_over_one_less(
    coefficients: Mapping[int, sympy.Expr], parity: int
) -> list[tuple[int, list[sympy.Expr]]]:
    """The even (`parity` 0) or odd part of the polynomial sum of c_k t^k, a polynomial in v = t^2,
    as parts (q, Q) meaning (1 - v)^q Q(v) (`_by_monomial`, `_over_one_less`)."""
    halved = {k // 2: coefficient for k, coefficient in coefficients.items() if k % 2 == parity}
    return [_over_one_less(group) for group in _by_monomial(halved).values()]


def _by_monomial(
    coefficients: Mapping[int, sympy.Expr], expand: Callable[[sympy.Expr], sympy.Expr] = sympy.expand
) -> dict[sympy.Expr, list[sympy.Expr]]:
    """The polynomial sum of c_m v^m as one polynomial for each monomial of the coefficients' terms,
    its coefficients that monomial times numbers (e^(2/x)/x^2 in -24e^(2/x)/x^2 + 24e^(2/x)/x^2 v,
    beside 24 + 36/x: the part that cancels where v = 1 is a polynomial of its own). None (empty)
    where a coefficient expands to more than `_COMPLEMENT_TERMS` terms, no derivative's shape."""
    grouped: dict[sympy.Expr, dict[int, sympy.Expr]] = {}
    for m, coefficient in coefficients.items():
        terms = _monomials(coefficient, expand)
        if terms is None:
            return {}
        for number, monomial in terms:
            group = grouped.setdefault(monomial, {})
            group[m] = group.get(m, sympy.S.Zero) + number
    return {
        monomial: [monomial * group.get(m, sympy.S.Zero) for m in range(max(group) + 1)]
        for monomial, group in grouped.items()
    }


def _monomials(
    coefficient: sympy.Expr, expand: Callable[[sympy.Expr], sympy.Expr] = sympy.expand
) -> list[tuple[sympy.Expr, sympy.Expr]] | None:
    """The (number, monomial) of each term of the coefficient expanded; None past `_COMPLEMENT_TERMS`."""
    terms = sympy.Add.make_args(expand(coefficient))
    return None if len(terms) > _COMPLEMENT_TERMS else [term.as_coeff_Mul() for term in terms]


def _in_powers_of_the_logistic(node: sympy.Expr) -> sympy.Expr | None:
    """A polynomial in the logistic s = P/(P + q) of an exponential P = p e^a (or p c^v, a = v log c;
    p and q rationals above 0), whose coefficients vary and may call functions, written as a sum
    over the monomials of its coefficients of (1 - s)^r R(s), 1 - s = q/(P + q), r as large as that
    monomial's terms cancel where s is 1. sympy's derivatives of log(P + q) and P/(P + q) write its
    powers as e^(ia)/(P + q)^k, perhaps all times e^(da). The third derivative of log(1 + e^g),
    g^(3) s + 3 g' g'' s (1 - s) + g'^3 s (1 - s)(1 - 2s) expanded, was 1.6e52 for g = e^(1/x) at
    0.01 (terms some 1e142 cancelling; truth 2.9e55) and 2e-7 off at 0.1; the sixth derivative of
    log(1 + e^x) at 40 5.7e-14, truth 4.2e-18; the third of 2^x/(2^x + 1) NaN at 1e4; the fifth of
    log(3 + 2e^(x/3)) at 300 -3.6e-17, truth -2.3e-46; the derivative of tanh(x) e^x/(e^x + 1) at 40
    0.0 (a session's hunt, 2026-12-06). That form where s is above 1/2, the sum as the other rules
    write it below (`kernels.nearer_one`). None where no such polynomial cancels. (Two exponentials
    p e^a + q e^b, products multiplied out, were tried and left: where a/b is constant `_both_ways`
    writes them better, and elsewhere the forms lost what the rules' had, a second hunt found.)"""
    # Each sum once a branch, as `_stable_combined` does: a shape this rule did not foresee must not
    # send it round without end.
    if len(node.args) > _COMPLEMENT_TERMS or node in _COMBINING.get(()):
        return None
    terms = [_as_first_written(term) for term in node.args]
    sums = {
        factor.base: logistic
        for term in terms
        for factor in sympy.Mul.make_args(term)
        if factor.is_Pow
        and factor.exp.is_Integer
        and factor.exp < 0
        and (logistic := _logistic_sum(factor.base)) is not None
    }
    for total in sorted(sums, key=sympy.default_sort_key):
        if (node, total) in _NOT_LOGISTIC.get(()):
            continue
        logistic = sums[total]
        # Only kernels of this sum as first written: another's fallback stays (the log1p(e^(e^(1/x)))
        # of log(1 + e^(e^(1/x))) beside e^x/(e^x + 1), without its log_sum_exp, was inf at 0.1).
        found = _logistic_powers([_as_first_written(term, total) for term in node.args], total, logistic)
        if found is None:
            continue
        powers, d = found
        held = [_monomials(coefficient, _products_expanded) for coefficient, _, _ in powers]
        monomials = [m for m in held if m is not None]
        if len(monomials) < len(held):
            continue
        involved, parts = _cancelling_part(powers, monomials)
        if not involved:
            continue
        # s and 1 - s as kernels' values, in [0, 1] either way they are computed: the rules would
        # write an R such as 1 - 2s over the sum again, in a form that overflows where P does
        # (the third derivative of log(1 + e^-g), g = e^(1/x), went NaN at 0.01 that way).
        s, complement = logistic.shares(total)
        token = _COMBINING.set((*_COMBINING.get(()), node))
        try:
            # Each monomial's part written stably on its own (the sum of them, the monomials apart,
            # took the rules seconds for a fifth derivative); the terms not involved as they were,
            # their sum written stably (a second logistic's terms among them: e^x/(e^x + 1) + 2^x/(2^x
            # + 1)' at 40 was 5e-5 off with them split by monomial).
            cancelled = sympy.Add(
                *(
                    _stable_around_calls(complement**r * sympy.Add(*(c * s**m for m, c in enumerate(R))))
                    for r, R in parts
                )
            )
            rest = sympy.Add(*(term for t, term in enumerate(node.args) if t not in involved))
            near_one = (stable(sympy.exp(d * logistic.a)) * cancelled if d else cancelled) + (
                _stable_sum(rest) if rest.is_Add else rest
            )
        finally:
            _COMBINING.reset(token)
        # Where s is below 1/2, the sum as the other rules write it: what cancels there, if anything,
        # cancels across monomials (4 sinh(x) + 4 cosh(x) in the third derivative of e^x/(e^x + 1)
        # cosh(x): 0.0 at -40 for -2.1e-18 written in powers of 1 - s).
        ignoring = _NOT_LOGISTIC.set((*_NOT_LOGISTIC.get(()), (node, total)))
        try:
            near_zero = _stable_sum(node)
        finally:
            _NOT_LOGISTIC.reset(ignoring)
        # The form near 1 in variables of its own (`kernels.apart`), as `_both_ways` writes its
        # forms: sharing subexpressions with the other, the code generator grouped its sums
        # otherwise (4 sinh(x) and 4 cosh(x) of some 1e17 added with a term of 4.5 between them).
        apart = {symbol: Kernel(Str("apart"), symbol) for symbol in near_one.free_symbols}
        return Kernel(Str("nearer_one"), s, near_zero, _replaced(near_one, apart))
    return None


def _replaced(expr: sympy.Expr, values: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    """`expr` with each symbol of `values` replaced by its value, a derivative without a closed form
    by one at that point: xreplace made Derivative(zeta(x), x) one by Kernel(apart, x), which sympy
    refuses (zeta(x) times a logistic of y had no partials; a numbers hunt, 2026-12-07)."""
    if not expr.has(sympy.Derivative):
        return expr.xreplace(values)
    return expr.subs(values, simultaneous=True)


def _stable_around_calls(expr: sympy.Expr) -> sympy.Expr:
    """`expr` written stably with every function call in it left as it is: written stably already
    (a term's log1p(e^x) lost its log_sum_exp fallback when its kernel was written again: the third
    derivative of log(1 + e^x)^2 at 1e4 was NaN; the regression hunt, 2026-12-06)."""
    calls = {call: sympy.Dummy(real=True) for call in expr.atoms(Application)}
    return stable(expr.xreplace(calls)).xreplace({dummy: call for call, dummy in calls.items()})


# The sums `_in_powers_of_the_logistic` is writing without itself, and the sum of exponentials it
# is not to write them in there (its form where that logistic is below 1/2; another's may apply).
_NOT_LOGISTIC: contextvars.ContextVar[tuple[tuple[sympy.Expr, sympy.Expr], ...]] = contextvars.ContextVar(
    "not_logistic"
)


def _logistic_polynomial(powers: Sequence[tuple[sympy.Expr, int, int]]) -> dict[sympy.Expr, list[sympy.Expr]]:
    """The terms (coefficient, i, k), each the coefficient times s^i (1 - s)^(k - i), as polynomials
    in s, one for each monomial of the coefficients (`_by_monomial`)."""
    coefficients: dict[int, sympy.Expr] = {}
    for coefficient, i, k in powers:
        for m in range(k - i + 1):
            share = coefficient * sympy.binomial(k - i, m) * (-1) ** m
            coefficients[i + m] = coefficients.get(i + m, sympy.S.Zero) + share
    return _by_monomial(coefficients, _products_expanded)


def _cancelling_part(
    powers: Sequence[tuple[sympy.Expr, int, int]],
    monomials: Sequence[Sequence[tuple[sympy.Expr, sympy.Expr]]],
) -> tuple[set[int], list[tuple[int, list[sympy.Expr]]]]:
    """The terms (indices) of the monomials whose polynomials in s cancel where s is 1 past how
    their terms are written (X/(1 + X)^2 is s - s^2 too), and of every monomial those terms hold;
    and those monomials' polynomials as (r, R), (1 - s)^r R(s) (`_over_one_less`). Every term of
    such a monomial is among the terms, so its polynomial is theirs alone."""
    written: dict[sympy.Expr, int] = {}  # the least power of 1 - s a monomial's terms are written with
    for (_, i, k), held in zip(powers, monomials, strict=True):
        for _, monomial in held:
            written[monomial] = min(written.get(monomial, k - i), k - i)
    divided = {monomial: _over_one_less(group) for monomial, group in _logistic_polynomial(powers).items()}
    reached = {monomial for monomial, (power, _) in divided.items() if power > written.get(monomial, 0)}
    involved: set[int] = set()
    while True:
        more = {t for t, held in enumerate(monomials) if any(m in reached for _, m in held)} - involved
        if not more:
            return involved, [divided[monomial] for monomial in reached if monomial in divided]
        involved |= more
        reached |= {m for t in more for _, m in monomials[t]}


def _products_expanded(expr: sympy.Expr) -> sympy.Expr:
    """expr with its products and whole powers of sums multiplied out, arguments of functions left
    as they are (x (1 + y) inside sin is not x + x y)."""
    if expr.is_Add:
        return sympy.Add(*map(_products_expanded, expr.args))
    if expr.is_Mul:
        return sympy.expand_mul(sympy.Mul(*map(_products_expanded, expr.args)), deep=False)
    if expr.is_Pow and expr.base.is_Add and expr.exp.is_Integer and expr.exp > 0:
        return sympy.expand_multinomial(_products_expanded(expr.base) ** expr.exp, deep=False)
    return expr


def _as_first_written(term: sympy.Expr, holding: sympy.Expr | None = None) -> sympy.Expr:
    """The term with what a rule wrote with a fallback (`finite_or`: the logistic e^g/(e^g + 1),
    also as 1/(1 + e^-g) where e^g overflows) or in two forms (`nearer_one`) as first written: each
    such kernel, or those whose first form holds `holding`."""

    def first(n: sympy.Basic) -> sympy.Basic:
        return n.args[_FIRST_WRITTEN[str(n.args[0])]]

    # Holding it outside any function: log(1 + e^x)'s kernel holds 1 + e^x inside log_one_plus.
    return term.replace(
        lambda n: (
            _kernel_name(n) in _FIRST_WRITTEN
            and (holding is None or any(part == holding for part in _outside_functions(first(n))))
        ),
        first,
    )


# The argument of each such kernel that holds the form first written.
_FIRST_WRITTEN = {**dict.fromkeys(_FALLBACKS, 1), "nearer_one": 2}


@dataclass(frozen=True)
class _LogisticSum:
    """A sum p e^a + q, p and q rationals above 0, a varying (c^v is e^(v log c))."""

    p: sympy.Expr
    a: sympy.Expr
    q: sympy.Expr

    def shares(self, total: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
        """s = p e^a/(p e^a + q), where e^a is past the doubles 1/(1 + q e^-a/p), and 1 - s (0, not
        NaN, there)."""
        s = Kernel(
            Str("finite_or"),
            self.p * sympy.exp(self.a) / total,
            1 / (1 + self.q / self.p * sympy.exp(-self.a)),
        )
        return s, self.q / total


def _logistic_sum(total: sympy.Expr) -> _LogisticSum | None:
    """The sum as p e^a + q (`_LogisticSum`); None where it is no such sum."""
    if not (total.is_Add and len(total.args) == 2):
        return None
    q, term = total.as_coeff_Add()
    p, exponential = term.as_coeff_Mul()
    a = _exponent(exponential)
    # Rationals: a monomial of the coefficients is then the same with p^-i q^(i - k) multiplied in.
    if a is None or not a.free_symbols or not (p.is_Rational and p > 0 and q.is_Rational and q > 0):
        return None
    return _LogisticSum(p, a, q)


# Exponential factors of one term tried together at most: their subsets are searched.
_EXPONENTIAL_FACTORS = 4


def _logistic_powers(
    terms: Sequence[sympy.Expr], total: sympy.Expr, logistic: _LogisticSum
) -> tuple[list[tuple[sympy.Expr, int, int]], int] | None:
    """([(coefficient, i, k) for each term], d): each term is e^(da) times a coefficient times
    e^(ia)/total^k, `total` p e^a + q, 0 <= i <= k, the coefficient holding p^-i q^(i - k). None
    where a term is not of that form. A coefficient may call functions of e^a (log(1 + e^x) beside
    the logistic of x)."""
    found = []
    for term in terms:
        k = 0
        rest: list[sympy.Expr] = []
        exponentials: list[tuple[sympy.Expr, sympy.Expr]] = []
        for factor in sympy.Mul.make_args(term):
            w = _exponent(factor)
            if factor.is_Pow and factor.base == total and factor.exp.is_Integer:
                k -= int(factor.exp)
            elif w is not None and factor.free_symbols:
                exponentials.append((factor, w))
            elif _holds_kin(_as_first_written(factor), logistic) or (
                not isinstance(factor.as_base_exp()[0], Application) and factor.has(total)
            ):
                return None
            else:
                rest.append(factor)
        power = _power_of_s(exponentials, logistic) if len(exponentials) <= _EXPONENTIAL_FACTORS else None
        if power is None:
            return None
        i, used = power
        left = [f for f, _ in exponentials if f not in used]
        if any(_holds_kin(f, logistic) for f in left):
            return None
        found.append((sympy.Mul(*rest, *left), i, k))
    # e^(da) set aside: the fifth derivative of log(3 + 2e^(x/3)) holds
    # e^(x/3) - 30e^(2x/3)/(2e^(x/3) + 3) + ...
    d = max(0, *(i - k for _, i, k in found))
    if any(i < d for _, i, _ in found):
        return None
    return [
        (coefficient * logistic.p ** (d - i) * logistic.q ** (i - d - k), i - d, k)
        for coefficient, i, k in found
    ], d


def _holds_kin(factor: sympy.Expr, logistic: _LogisticSum) -> bool:
    """Whether the factor holds, outside any function, an exponential whose exponent is a rational
    multiple of the sum's: a power of its exponential left over, or a sum of another logistic of it
    (8e^x/(e^2x + 1) beside e^x/(e^x + 1): where both are written so, the sum's terms went their
    separate ways and the third derivative at 800 was -3.9e-18 for 0; the regression hunt,
    2026-12-06)."""
    return any(
        (w := _exponent(part)) is not None and part.free_symbols and sympy.cancel(w / logistic.a).is_Rational
        for part in _outside_functions(factor)
    )


def _outside_functions(expr: sympy.Expr) -> Iterator[sympy.Expr]:
    """The nodes of `expr` not inside a function's arguments (an exponential is one itself)."""
    yield expr
    if not isinstance(expr, Application):
        for arg in expr.args:
            yield from _outside_functions(arg)


def _power_of_s(
    exponentials: Sequence[tuple[sympy.Expr, sympy.Expr]], logistic: _LogisticSum
) -> tuple[int, tuple[sympy.Expr, ...]] | None:
    """(i, the factors) where the product of most of the term's exponential factors is e^(ia),
    i >= 0; None where no such product is found."""
    factors = [f for f, _ in exponentials]
    exponents = dict(exponentials)
    for size in range(len(factors), -1, -1):
        for chosen in itertools.combinations(factors, size):
            i = sympy.cancel(sympy.Add(*(exponents[f] for f in chosen)) / logistic.a)
            if i.is_Integer and i >= 0:
                return int(i), chosen
    return None


# Sums of more terms than this, or coefficients expanding to more, are left as written (the
# search costs time in every sum: 400 sines took minutes).
_COMPLEMENT_TERMS = 64


def _over_one_less(coefficients: list[sympy.Expr]) -> tuple[int, list[sympy.Expr]]:
    """(q, Q) where the polynomial sum of c_m v^m is (1 - v)^q Q(v), q as large as the coefficients
    cancel exactly at v = 1 (synthetic division by v - 1, its remainder the sum at 1)."""
    power = 0
    while len(coefficients) > 1:
        quotient: list[sympy.Expr] = []
        carried = sympy.S.Zero
        for coefficient in reversed(coefficients[1:]):
            carried = coefficient + carried
            quotient.append(carried)
        if sympy.expand(coefficients[0] + carried) != 0:
            break
        # P(v) = (v - 1) Q(v) = (1 - v) (-Q(v)); Q's coefficients were found highest first.
        coefficients, power = [-c for c in reversed(quotient)], power + 1
    return power, coefficients


def _coefficients_in(node: sympy.Expr, t: sympy.Expr) -> dict[int, sympy.Expr] | None:
    """{k: c_k} where the sum is the polynomial sum of c_k t^k with no c_k holding t; else None."""
    coefficients: dict[int, sympy.Expr] = {}
    for term in node.args:
        coefficient, power = term.as_coeff_exponent(t)
        if coefficient.has(t) or not (power.is_Integer and power >= 0):
            return None
        coefficients[int(power)] = coefficients.get(int(power), sympy.S.Zero) + coefficient
    return coefficients


def _constant_and_term(
    constant: sympy.Expr, coefficient: sympy.Expr, rest: sympy.Expr, *, alone: bool
) -> sympy.Expr | None:
    """c + k r written where it cancels (c a number, r varying), or None where no rule applies;
    `alone`: the sum holds nothing else."""
    shifted = _inverse_shifted(rest, constant / coefficient)
    if shifted is not None:  # c f(u) + k is c (f(u) - K), an inverse function where it nears K
        return coefficient * shifted
    if coefficient == -constant:
        written = _one_less(rest)
    elif coefficient == constant:
        written = _one_more(rest)
    else:  # c + k r is c (1 - t), t = -k r/c: 1 - (2 - x^4)^2/4, acos(1 - x^4/2)' (a hunt)
        written = _one_less(-coefficient / constant * rest)
        if written is None and alone:  # c + k r alone: 1 - 4x^2, not 1 - 4t^2 + 3t^4,
            # where the whole sum cancels (the fourth derivative of log(cosh(x)) at 20 was 0.0)
            written = _one_less_scaled_square(-coefficient / constant * rest)
    if written is None or (not alone and _power_by_logarithm(written)):
        return None
    return constant * written


def _polynomials_apart(node: sympy.Expr) -> sympy.Expr | None:
    """A sum of polynomials in several functions tending to +-1, each with the constant it needs to
    vanish at 1 (those sympy added into one), written as such sums one by one: the third derivative
    of log(cosh(x)) + log(cosh(2x)) is 2t1^3 - 2t1 + 16t2^3 - 16t2 (0.0 at 20, truth -3.4e-17; a
    hunt, 2026-12-05), the fourth holds -6t1^4 + 8t1^2 - 96t2^4 + 128t2^2 - 34. None unless the
    sum holds two such polynomials whose constants add up to its own."""
    groups: dict[sympy.Expr, list[sympy.Expr]] = {}
    constant, rest = sympy.S.Zero, []
    for term in node.args:
        functions = term.atoms(Application)
        function = next(iter(functions)) if len(functions) == 1 else None
        if not term.free_symbols:
            constant += term
        elif isinstance(function, _TENDING_TO_ONE):
            groups.setdefault(function, []).append(term)
        else:
            rest.append(term)
    polynomials = [sympy.Add(*group) for group in groups.values() if len(group) > 1]
    if len(polynomials) < 2 or len(polynomials) != len(groups):
        return None
    own = [-polynomial.subs(function, 1) for polynomial, function in zip(polynomials, groups, strict=True)]
    if any(value.free_symbols for value in own) or sympy.Add(*own) != constant:
        return None
    return sympy.Add(*rest, *(_stable_sum(p + c) for p, c in zip(polynomials, own, strict=True)))


# At most this many terms with a rule are tried as a group that shares a constant (2^n groups).
_SHARING_TERMS = 6


def _constant_shared(
    terms: Sequence[sympy.Expr], varying: Sequence[tuple[sympy.Expr, sympy.Expr, sympy.Expr]]
) -> sympy.Expr | None:
    """c + k1 r1 + k2 r2 + ... with c = -(k1 + k2 + ...) as -k1 (1 - r1) - k2 (1 - r2) - ..., each
    1 - r written by its rule (and with c = k1 + k2 + ..., k1 (1 + r1) + ...): sympy adds the
    constants of the terms it is given, and tanh(x) + tanh(2x)'s derivative, (1 - t1^2) + 2 (1 -
    t2^2), is 3 - t1^2 - 2 t2^2, with no pair c - c t left for the rule of one (0.0 at 20, truth
    1.7e-17; a hunt, 2026-12-05). None where no group of terms shares the constant so."""
    constants = [term for term in terms if not term.free_symbols]
    functions = [entry for entry in varying if entry[2].atoms(Application)]
    if len(constants) != 1 or not 1 < len(functions) <= 2 * _SHARING_TERMS:
        return None
    (constant,) = constants
    for complement, sign in ((_one_less, -1), (_one_more, 1)):
        written = [(term, coefficient, complement(rest)) for term, coefficient, rest in functions]
        ruled = [entry for entry in written if entry[2] is not None][:_SHARING_TERMS]
        for size in range(len(ruled), 1, -1):
            for group in itertools.combinations(ruled, size):
                if sign * sum(coefficient for _, coefficient, _ in group) != constant:
                    continue
                chosen = {term for term, _, _ in group}
                others = [term for term in terms if term is not constant and term not in chosen]
                return sympy.Add(*others, *(sign * coefficient * less for _, coefficient, less in group))
    return None


def _summed_under_shared_factors(terms: Sequence[sympy.Expr]) -> sympy.Expr | None:
    """The sum with the terms g r1 + g r2 + ... for g the factors of a term that call no function
    written as g (r1 + r2 + ...), that sum written stably: 4x^2 - 4x^2 (e^(x^2) + 1) e^(-x^2), in
    the second derivative of 1 - (e^(x^2) + 1)/e^(x^2), is -4x^2 e^(-x^2) (-5.7e-14 at 10, truth
    -1.5e-41; a hunt, 2026-12-05), and sqrt(x) (24t^5 - 40t^3 + 16t) a polynomial in t = tanh(x)
    that cancels as a whole (the fifth derivative of sqrt(x) log(cosh(x))); every term with g, so
    that the rule for c - c t sees the pair that cancels whichever it meets first. None where no
    such sum is written otherwise."""
    tried: set[frozenset[sympy.Expr]] = set()
    for first in terms:
        scales = frozenset(
            factor
            for factor in sympy.Mul.make_args(first.as_coeff_Mul()[1])
            if factor.free_symbols and not factor.atoms(Application)
        )
        if not scales or scales in tried:
            continue
        tried.add(scales)
        inner, others = [], []
        for term in terms:
            factors = sympy.Mul.make_args(term)
            if scales.issubset(factors):
                inner.append(sympy.Mul(*(factor for factor in factors if factor not in scales)))
            else:
                others.append(term)
        within = sympy.Add(*inner)
        if len(inner) < 2 or not within.is_Add or not within.atoms(Application):
            continue
        written = _stable_sum(within)
        if written == within:
            continue
        if written.has(sympy.exp) and not written.has(Kernel):
            # Combined over a sum of exponentials, it is inf/inf where they pass the doubles, where
            # the terms as they were are finite: -1 - 1/(1 + e^-x) as -(2e^x + 1)/(e^x + 1) made
            # the third derivative of x^2 log(1 + e^-x) + x^2 e^-x NaN at 1e5 (the regression hunt).
            written = Kernel(Str("finite_or"), written, within)
        return sympy.Add(*others, sympy.Mul(*scales) * written)
    return None


def _varying_pair(terms: Sequence[sympy.Expr]) -> sympy.Expr | None:
    """The sum with a pair a + b, b = -a r for r tending to 1, written a (1 - r) with 1 - r written
    stably, where a calls functions (a factor of no function or a number is the rules' above): the
    second derivative of log(1 + e^g) holds g'^2 - g'^2 e^g/(e^g + 1), which is g'^2/(e^g + 1) and
    for g = e^(1/x) at 0.01 (g'^2 some 1e45) rounded the rest of the sum away: 5.4e49, truth
    2.7e51 (an independent hunt, 2026-12-06). None where no pair is such."""
    if len(terms) > _PAIRED_TERMS:
        return None
    written = [_as_first_written(term) for term in terms]
    for first, a in enumerate(written):
        if not a.atoms(Application):
            continue
        for second in range(first + 1, len(terms)):
            r = -written[second] / a
            if not _tends_to_one(r):
                continue
            less = _one_less(r)
            if less is not None:
                others = [term for k, term in enumerate(terms) if k not in (first, second)]
                return sympy.Add(*others, terms[first] * less)
    return None


def _tends_to_one(r: sympy.Expr) -> bool:
    """Whether r is of a shape that tends to 1 where it cancels against 1: p/q for a sum q holding p
    (the logistic e^g/(e^g + 1)), or a power of a function tending to +-1. A rule for 1 - r alone
    is not enough: 1 - x^(-1/2) has one, and pairing by it took the third derivative of
    log(1 + exp(sqrt(x))) apart where it had cancelled exactly (8.5e-9 off at 1e8, NaN from 1e12;
    the regression hunt, 2026-12-06)."""
    numerator, denominator = r.as_numer_denom()
    if denominator.is_Add and numerator.free_symbols and numerator in denominator.args:
        return True
    base, exponent = r.as_base_exp()
    return isinstance(base, _TENDING_TO_ONE) and exponent.is_Integer and exponent > 0


# Sums of up to this many terms are searched for such pairs (each pair a division and the rules'
# search: more would cost compile time on sums where nothing pairs).
_PAIRED_TERMS = 8


# The sums being combined on the way to this one (`_stable_sum_once`).
_COMBINING: contextvars.ContextVar[tuple[sympy.Expr, ...]] = contextvars.ContextVar("combining")


def _exp_difference(node: sympy.Expr) -> sympy.Expr | None:
    """k e^a - k e^b as k `exp_difference`(a, b, a - b), a - b as sympy writes it (2x for e^x - e^-x,
    which was 0.0 at 1e-17, truth 2e-17); None where the sum holds no such pair."""
    scaled: dict[sympy.Expr, tuple[sympy.Expr, sympy.Expr]] = {}
    for term in node.args:
        # Every exponential factor, e^u and c^u for a number c > 0 (as e^(u log c)), is one: the
        # term is k e^a, k the other factors (not term / e^a: sympy leaves e^(x + y) e^(-x - y)).
        factors = sympy.Mul.make_args(term)
        exponents = [_exponent(f) for f in factors]
        if all(exponent is None for exponent in exponents):
            continue
        a = sympy.Add(*[exponent for exponent in exponents if exponent is not None])
        k = sympy.Mul(*[f for f, exponent in zip(factors, exponents, strict=True) if exponent is None])
        pair = scaled.get(-k)
        if pair is not None:
            other, b = pair
            rest = [t for t in node.args if t is not term and t is not other]
            return sympy.Add(*rest, k * Kernel(Str("exp_difference"), a, b, sympy.expand(a - b)))
        scaled[k] = (term, a)
    return None


def _exponent(factor: sympy.Expr) -> sympy.Expr | None:
    """u for a factor e^u, or u log c for c^u (c a number above 0, u varying); None otherwise."""
    if isinstance(factor, sympy.exp):
        return factor.args[0]
    if factor.is_Pow and factor.base.is_number and factor.base.is_positive and factor.exp.free_symbols:
        return factor.exp * sympy.log(factor.base)
    return None


def _difference_of_one_function(node: sympy.Expr) -> sympy.Expr | None:
    """k f(A) - k f(B), for f one of log, atan, sin, cos or a constant power (real roots and products
    of powers of A too: cbrt(A)/A), where A and B share a term (it cancels symbolically in A - B:
    log(x + 1) - log(x), cbrt(x + 1) - cbrt(x), 1/((x + 1)^2 + 1) - 1/(x^2 + 1), sin(x + h) -
    sin(x)), in a form computed from A - B (`_DIFFERENCES`): float64 rounds f(A) and f(B) each on
    its own, and their difference lost the digits they share (log(x + 1) - log(x) at 1e12 was
    1.9e-3 off, atan(x + 1) - atan(x) 0.0, truth 1e-24). Where nothing cancels symbolically
    (log(x) - log(y)) the sum is left: the difference would cost more for nothing certain. None
    where the sum holds no such pair."""
    if len(node.args) > _DIFFERENCE_TERMS:
        return None
    # Grouped by function first: the coefficients (a division each) only where two terms share one.
    kinds: dict[tuple[str, sympy.Expr], list[tuple[sympy.Expr, _OneArgument]]] = {}
    for term in node.args:
        for found in _functions_of_one_argument(term):
            kinds.setdefault((found.name, found.exponent), []).append((term, found))
    for (name, exponent), candidates in kinds.items():
        seen: dict[sympy.Expr, tuple[sympy.Expr, sympy.Expr, _OneArgument]] = {}
        for term, found in _may_pair(candidates):
            k = found.coefficient()
            number, factor = k.as_coeff_Mul()
            pair = seen.get(factor)
            seen[factor] = (number, term, found)
            if pair is None or pair[0] != -number:
                continue
            _, other, other_found = pair
            a, b = found.argument, other_found.argument
            # Constants are folded at the precision they need (`fold_constants`) instead.
            if not (a.free_symbols or b.free_symbols) or not (_cheap_to_expand(a) and _cheap_to_expand(b)):
                continue
            if _share_terms(a, b):
                d = sympy.expand(a - b)
                rest = [t for t in node.args if t is not term and t is not other]
                written = _DIFFERENCES[name](a, b, d, exponent, found.written(), other_found.written())
                return sympy.Add(*rest, k * written)
    return None


def _may_pair(candidates: list[tuple[sympy.Expr, _OneArgument]]) -> list[tuple[sympy.Expr, _OneArgument]]:
    """The candidates whose argument shares a term with the argument of one in another term, not
    both constant: only those may pair, and only their coefficients (a product each) are worth
    building. A Hessian entry of exp(v0 v1 ... v31) holds 30 squares in one term, and building
    every one's coefficient took 9 of the 12 s its 496 sums took (attack suite, huge-output)."""
    terms_of: dict[sympy.Expr, frozenset[sympy.Expr]] = {}
    for _, found in candidates:
        a = found.argument
        if a not in terms_of:
            terms_of[a] = (
                frozenset(sympy.Add.make_args(sympy.expand(a))) if _cheap_to_expand(a) else frozenset()
            )

    def pairs(term: sympy.Expr, a: sympy.Expr, other: sympy.Expr, b: sympy.Expr) -> bool:
        return (
            other is not term and bool(a.free_symbols or b.free_symbols) and bool(terms_of[a] & terms_of[b])
        )

    return [
        (term, found)
        for term, found in candidates
        if any(pairs(term, found.argument, other, seen.argument) for other, seen in candidates)
    ]


@dataclass(frozen=True)
class _OneArgument:
    """A function of one argument found in a term: `name` ("power" for products of powers and real
    roots, with their total `exponent`), and how to write it and the term's other factors, built
    only for terms that may pair (a sympy product each)."""

    name: str
    exponent: sympy.Expr
    argument: sympy.Expr
    written: Callable[[], sympy.Expr]
    coefficient: Callable[[], sympy.Expr]


def _functions_of_one_argument(term: sympy.Expr) -> Iterator[_OneArgument]:
    """Each factor of `term` that is log, atan, sin or cos of an argument A, and each A whose powers
    and real roots multiply in `term` (cbrt(A)/A: power -2/3), other than to the power 0 or 1."""
    factors = sympy.Mul.make_args(term)

    def others(*taken: sympy.Expr) -> Callable[[], sympy.Expr]:
        return lambda: sympy.Mul(*(f for f in factors if not any(f is t for t in taken)))

    powers: dict[sympy.Expr, list[tuple[sympy.Expr, sympy.Expr, sympy.Expr, bool]]] = {}
    for factor in factors:
        if isinstance(factor, sympy.log | sympy.atan | sympy.sin | sympy.cos):
            name = type(factor).__name__
            yield _OneArgument(name, sympy.S.One, factor.args[0], _given(factor), others(factor))
        elif isinstance(factor, Kernel) and factor.args[0].name == "log_one_plus":  # log(1 + u), marked
            yield _OneArgument("log", sympy.S.One, factor.args[2], _given(factor), others(factor))
        elif _log_of_a_power(factor):  # log(b^p), marked
            yield _OneArgument("log", sympy.S.One, factor.args[2], _given(factor.args[1]), others(factor))
        else:
            power = _as_power(factor)
            if power is not None:
                base, exponent, real = power
                # sympy's raw derivatives write cbrt(x + y)/(3x + 3y): the argument is x + y
                content, argument = base.as_content_primitive() if base.is_Add else (sympy.S.One, base)
                scale = content**exponent if content != 1 else content
                powers.setdefault(argument, []).append((factor, exponent, scale, real))
    for a, grouped in powers.items():
        exponent = grouped[0][1] if len(grouped) == 1 else sum((e for _, e, _, _ in grouped), sympy.S.Zero)
        # Real roots (cbrt) and principal powers (x^(1/3), NaN below 0) of one argument: not mixed.
        fractional = [real for _, e, _, real in grouped if not e.is_Integer]
        if exponent in (0, 1) or (any(fractional) and not all(fractional)):
            continue
        rest = others(*(f for f, _, _, _ in grouped))
        scale = sympy.Mul(*(c for _, _, c, _ in grouped if c != 1))
        if any(fractional):
            value = functools.partial(_real_power, a, exponent)
        elif fractional and exponent.is_Integer:
            # Principal powers whose exponents add up to a whole number (sqrt(A) A^(3/2) is A^2)
            # are NaN where A < 0, as each was: A^2 there was -8.49 where the rule says NaN
            # (sqrt(x + 1)*sqrt(2x + 2)^3 - 2*sqrt(2)*x^2 at -2; an independent hunt).
            value = functools.partial(Kernel, Str("fractional_power"), a, exponent)
        else:
            value = functools.partial(sympy.Pow, a, exponent)
        yield _OneArgument("power", exponent, a, value, _scaled(rest, scale))


def _given(value: sympy.Expr) -> Callable[[], sympy.Expr]:
    return lambda: value


def _scaled(value: Callable[[], sympy.Expr], scale: sympy.Expr) -> Callable[[], sympy.Expr]:
    return lambda: value() * scale


def _as_power(factor: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr, bool] | None:
    """(A, e, whether a real root) for a factor A^e: a power (A^pi, A^2.5 too), a real root or a
    power of one (1/cbrt(A), cbrt(A)^2, cbrt(A)^pi)."""
    level = _constant_power(factor)
    if level is not None:
        base, exponent = level
        if isinstance(factor, RealRoot):
            return base, exponent, True
        inner = _as_power(base)
        if inner is not None and inner[2]:
            return inner[0], inner[1] * exponent, True
        return base, exponent, False
    if factor.is_Add:
        return factor, sympy.S.One, False
    return None


def _real_power(a: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """A^e with real roots: A^(p/q) as cbrt's kind (q odd: real below 0 too)."""
    p, q = exponent.as_numer_denom()
    return (RealRoot(a, q) if q != 1 else a) ** p


def _cheap_to_expand(expr: sympy.Expr) -> bool:
    """At most _COMBINED_NODES nodes and no power of a sum above the 8th: (x + y + z + w)^60 expands
    to 40,000 terms."""
    for count, part in enumerate(sympy.preorder_traversal(expr)):
        if count > _COMBINED_NODES or (
            part.is_Pow and part.base.is_Add and part.exp.is_Number and abs(part.exp) > 8
        ):
            return False
    return True


def _share_terms(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether A and B, expanded, share a term: what cancels symbolically in A - B (x + y and x;
    x^2 + 1 and x^2), where their values may nearly coincide."""
    return bool(set(sympy.Add.make_args(sympy.expand(a))) & set(sympy.Add.make_args(sympy.expand(b))))


_Difference = Callable[[sympy.Expr, sympy.Expr, sympy.Expr, sympy.Expr, sympy.Expr, sympy.Expr], sympy.Expr]

# How f(A) - f(B) is written from d = A - B (and f(A), f(B) as written): the sum-to-product identities
# for sin and cos; kernels choosing by the values for the others (log1p(d/B) is no good where A is
# far below B).
_DIFFERENCES: Mapping[str, _Difference] = {
    "log": lambda a, b, d, *_: Kernel(Str("log_difference"), a, b, d),
    "atan": lambda a, b, d, *_: Kernel(Str("atan_difference"), a, b, d),
    "sin": lambda a, b, d, *_: 2 * sympy.cos(sympy.expand((a + b) / 2)) * sympy.sin(d / 2),
    "cos": lambda a, b, d, *_: -2 * sympy.sin(sympy.expand((a + b) / 2)) * sympy.sin(d / 2),
    "power": lambda a, b, d, p, fa, fb: Kernel(Str("power_difference"), fa, fb, b, d, p),
}
_DIFFERENCE_TERMS = 32


def _hyperbolic_cancelled(node: sympy.Expr) -> sympy.Expr | None:
    """The sum with cosh(u) and sinh(u) written as exponentials, where that cancels terms: a sum
    holding two of cosh(u), sinh(u), e^u and e^-u (cosh(x) - sinh(x) is e^-x, and was 0.0 at 20;
    cosh(x)^2 - sinh(x)^2 is 1; the derivative of e^-x sinh(x), e^-x cosh(x) - e^-x sinh(x), is
    e^-2x). None where nothing cancels."""
    if not _small_polynomial(node):
        return None
    seen: dict[sympy.Expr, set[str]] = {}
    for function in node.atoms(sympy.cosh, sympy.sinh, sympy.exp):
        (u,) = function.args
        key = -u if isinstance(function, sympy.exp) and u.could_extract_minus_sign() else u
        seen.setdefault(key, set()).add(type(function).__name__)
    for u, kinds in seen.items():
        if len(kinds) < 2 or kinds == {"exp"}:
            continue
        written = sympy.expand(node.xreplace(_halves([sympy.cosh(u), sympy.sinh(u)])))
        if len(sympy.Add.make_args(written)) < len(node.args):
            return stable(written)
    # Of arguments that are multiples of one another, all at once: cosh(2x) - 2 sinh(x)^2 is 1 (it was
    # 0.0 at 20), cosh(2x) - 2 cosh(x)^2 is -1.
    hyperbolic = node.atoms(sympy.cosh, sympy.sinh)
    if len(hyperbolic) >= 2:
        written = sympy.expand(node.xreplace(_halves(hyperbolic)))
        if len(sympy.Add.make_args(written)) < len(node.args):
            return stable(written)
    return None


def _halves(functions: Iterable[sympy.Expr]) -> dict[sympy.Expr, sympy.Expr]:
    """cosh(u) and sinh(u) as (e^u +- e^-u)/2."""
    sign = {sympy.cosh: 1, sympy.sinh: -1}
    return {f: (sympy.exp(f.args[0]) + sign[type(f)] * sympy.exp(-f.args[0])) / 2 for f in functions}


def _root_difference(node: sympy.Expr) -> sympy.Expr | None:
    """c (sqrt(A) - b) where the sum is c sqrt(A) and terms adding up to -c b, c a number, and
    A - b^2 is shorter than A (symbolically cancelled: sqrt(x^2 + 1) - x, the quadratic formula's
    -b + sqrt(b^2 - 4ac)), as c `root_less`(sqrt(A), b, A - b^2): where b > 0 the two nearly cancel
    (sqrt(x^2 + 1) - x at 1e10 was 0.0, log(x + sqrt(x^2 + 1)) at -1e10 -inf); likewise a term
    t/sqrt(A) and a number c, c (sqrt(A) - b)/sqrt(A) with b = -t/c. None otherwise."""
    if not _small_polynomial(node):
        return None
    node = _one_root_over(node)
    for term in node.args:
        for factor in sympy.Mul.make_args(term):
            if not (factor.is_Pow and abs(factor.exp) == sympy.S.Half and factor.base.free_symbols):
                continue
            # The sum is k (sqrt(A) - b) / sqrt(A)^e: k = c and e = 0 for a term c sqrt(A), k = the
            # other terms and e = 1 for a term t / sqrt(A) (x/sqrt(x^2 + 1) - 1, the derivative above).
            root = sympy.sqrt(factor.base)
            others = node - term
            k, over = (term / root, 0) if factor.exp > 0 else (others, 1)
            if not k.is_number:
                continue
            # A number among the others may stand beside the difference (sqrt(x^2 + 1) - x - 1).
            constant = others.as_coeff_Add()[0] if over == 0 else sympy.S.Zero
            for aside in dict.fromkeys((sympy.S.Zero, constant)):
                b = -(others - aside) / k if over == 0 else -(term * root) / k
                difference = _as_product(sympy.expand(factor.base - b**2))
                # A number is shorter however it counts (-1/4 is two operations, as x^2 + x is).
                if difference.is_number or sympy.count_ops(difference) < sympy.count_ops(
                    sympy.expand(factor.base)
                ):
                    return aside + k * Kernel(Str("root_less"), root, b, difference) / root**over
    return None


def _one_root_over(node: sympy.Expr) -> sympy.Expr:
    """The sum with a term over two roots of sums that are never negative written over one root of
    their product, expanded (sympy splits sqrt(P Q) into sqrt(P) sqrt(Q) where it can): the cosine of
    the angle between two vectors, (a c + b d)/(sqrt(a^2 + b^2) sqrt(c^2 + d^2)), is then a/sqrt(B),
    whose 1 - a/sqrt(B) `_root_difference` writes (acos of it was 0.0 for nearly parallel vectors,
    at (1, 0, 1, 1e-8), truth 1e-8; an independent hunt, 2026-12-07)."""
    for term in node.args:
        roots = [
            factor
            for factor in sympy.Mul.make_args(term)
            if factor.is_Pow and factor.exp == -sympy.S.Half and factor.base.is_Add
        ]
        if len(roots) == 2 and all(root.base.is_nonnegative for root in roots):
            (p, q) = (root.base for root in roots)
            merged = term * sympy.sqrt(p) * sympy.sqrt(q) / sympy.sqrt(sympy.expand(p * q))
            return node - term + merged
    return node


def _as_product(difference: sympy.Expr) -> sympy.Expr:
    """A small polynomial factored where that makes it a product or a power: a²d² - 2abcd + b²c² is
    (ad - bc)², which expanded cancels where a/b and c/d nearly agree."""
    if difference.is_Add and len(difference.args) <= _FACTORED_TERMS and _small_polynomial(difference):
        factored = sympy.factor(difference)
        if not factored.is_Add:
            return factored
    return difference


_FACTORED_TERMS = 6


def _may_combine(node: sympy.Basic) -> bool:
    if not (node.is_Add and node.free_symbols):
        return False
    rest = _without_common_factors(node)[1]
    if not rest.is_Add:
        return False
    mirrored = _one_of_mirrored_sums(rest, _mirrors(rest))
    if _merged(rest, mirrored):
        return True
    rest = mirrored
    # A polynomial in one function as it stands waits for the rules (log(1 - tanh(x)^2) is log1p of
    # -tanh(x)^2, not the log of a product); one of products, which they would take apart first, not.
    return _shares_a_denominator(rest) or (
        not _polynomial_in_one_function(rest) and _polynomial_form(rest) is not None
    )


def _mirrors(node: sympy.Expr) -> dict[sympy.Expr, sympy.Expr]:
    """Each sum 1 + e^-v under a term of the sum `node` that also holds e^v + 1, and its v."""
    if not node.is_Add:
        return {}
    sums = {
        factor.base
        for term in node.args
        for factor in sympy.Mul.make_args(term)
        if factor.is_Pow and factor.exp.is_negative and factor.base.is_Add and len(factor.base.args) == 2
    }
    mirrors = {}
    for whole in sums:
        exponential = next((term for term in whole.args if isinstance(term, sympy.exp)), None)
        if exponential is None or sympy.S.One not in whole.args:
            continue
        v = -exponential.args[0]
        if v.could_extract_minus_sign() is False and 1 + sympy.exp(v) in sums:
            mirrors[whole] = v
    return mirrors


def _one_of_mirrored_sums(node: sympy.Expr, mirrors: Mapping[sympy.Expr, sympy.Expr]) -> sympy.Expr:
    """The sum with 1 + e^-v written as e^-v (e^v + 1) (`_mirrors`), so that its terms are over
    powers of one sum (`_shares_a_denominator`): the second derivative of binary cross-entropy,
    y log(1 + e^-x) + (1 - y) log(1 + e^x), holds e^-x/(1 + e^-x) - e^-2x/(1 + e^-x)^2 and the
    same of e^x, each pair cancelling (0.0 at 40, truth 4.2e-18; a hunt, 2026-12-05)."""
    if not mirrors:
        return node
    written = node.xreplace({whole: sympy.exp(-v) * (sympy.exp(v) + 1) for whole, v in mirrors.items()})
    # powsimp: e^-(x + y) e^(x + y) is 1 (sympy leaves exponentials of sums apart).
    return sympy.Add(*map(sympy.powsimp, sympy.Add.make_args(written)))


def _either_way(combined: sympy.Expr, scales: Iterable[sympy.Expr]) -> sympy.Expr:
    """A sum combined over e^v + 1, and where it is not finite (e^2v past long double: NaN at 6000),
    the same in e^-v, which is finite there: -(e^x - 1) e^x/(e^x + 1)^3 is -(1 - e^-x) e^-x/(1 +
    e^-x)^3. factor writes e^(x + y) as e^x e^y: combined again first."""
    ahead = sympy.powsimp(combined, deep=True, combine="exp")
    behind, back = ahead, {}
    for v in scales:  # e^v as 1/w, w a symbol: sympy would write 1/e^-v back as e^v at once
        w = sympy.Dummy(positive=True)
        behind, back[w] = behind.subs(sympy.exp(v), 1 / w), sympy.exp(-v)
    behind = sympy.factor(sympy.cancel(sympy.together(behind))).xreplace(back)
    return Kernel(Str("finite_or"), ahead, behind)


# The largest constant c of an exponential e^(c + kv) taken out as a factor e^c.
_LARGEST_OFFSET_EXPONENT = 40
# The largest ratio written both ways: cancel's cost grows fast with it (a logistic function's sixth
# derivative is some 60 operations).
_TWO_WAY_OPERATIONS = 240


def _both_ways(node: sympy.Expr) -> sympy.Expr:
    """`node`, and where it is not finite or e^|v| is past the doubles, in its largest subexpressions
    that are ratios of powers of one exponential w = e^v (with polynomials in anything else), that
    ratio written in w where v <= 0 and in 1/w where v > 0, where that is finite
    (`kernels.past_exponentials`: a right inf stays, as does a NaN the long double run mends).
    Exponentials of both signs over a sum of them are inf/inf past the doubles on either side, where
    no rule wrote them otherwise: the logistic function 1/(1 + e^-x)'s second derivative was NaN at
    -6000 (truth 0), x/(1 + e^-x)'s first NaN at 1e5 (truth 1); and past e^709 the sums as written
    cancel in long double too (x^3 e^-x/(1 + e^-x)''' at -2000: 6.00000001). Each form's
    exponentials are at most 1 (e^min(v, 0), e^min(-v, 0)): past the doubles in the side not taken,
    they made the long double run that mends the others overflow too (x^100 e^x/(1 + e^x)^2' at 5650
    went from 0.0 to NaN; the regression hunt)."""
    if not isinstance(node, sympy.Expr) or not node.has(sympy.exp):
        return node
    plain = _as_exponentials(node) if sympy.count_ops(node) <= _TWO_WAY_OPERATIONS else None
    scale = None if plain is None else _one_exponential(plain)
    if scale is None:
        if isinstance(node, (sympy.Add, sympy.Mul, sympy.Pow)):
            args = [_both_ways(arg) for arg in node.args]
        elif _kernel_name(node) in _FALLBACKS:  # its second form: the same function
            args = [node.args[0], _both_ways(node.args[1]), node.args[2]]
        else:
            return node
        # As it was where nothing changed, and unevaluated where something did: sympy would
        # distribute a number over a sum again, and the rules' order of operations would be lost.
        return node if args == list(node.args) else node.func(*args, evaluate=False)
    w, t = sympy.Dummy(positive=True), sympy.Dummy(positive=True)
    try:
        numerator, denominator = sympy.fraction(sympy.cancel(sympy.together(_in_powers(plain, scale, w))))
    except BasePolynomialError:  # sympy's gcd gave up: as written (`_rewritten`)
        return node
    if not (numerator.is_polynomial(w) and denominator.is_polynomial(w)):
        return node
    degree = max(sympy.degree(numerator, w), sympy.degree(denominator, w))

    def behind(polynomial: sympy.Expr) -> sympy.Expr:
        return sympy.expand(polynomial.subs(w, 1 / t) * t**degree)

    # The forms in variables of their own (`kernels.apart`): sharing subexpressions with `node`, the
    # code generator grouped its sums otherwise, and high derivatives that cancel moved (the fourth
    # of x^3 e^-x/(1 + e^-x) at -40: -7e-10, was 0.0, truth 2e-13; the regression hunt).
    apart = {symbol: Kernel(Str("apart"), symbol) for symbol in node.free_symbols}
    v = _replaced(scale, apart)
    below = _replaced(numerator / denominator, {w: sympy.exp(sympy.Min(v, 0)), **apart})
    above = _replaced(behind(numerator) / behind(denominator), {t: sympy.exp(sympy.Min(-v, 0)), **apart})
    return Kernel(Str("past_exponentials"), v, node, below, above)


def _one_exponential(node: sympy.Expr) -> sympy.Expr | None:
    """v where every exponential in `node` (`_as_exponentials`) is e^(c + k v) for a constant c and
    rational multiples k of one v, positive and negative or one of them dividing, none of them
    inside another function (k v = x or -2x, v = x; k v = x/2 or x, v = x/2); None otherwise."""
    varying: set[sympy.Expr] = set()
    multiples: set[sympy.Rational] = set()
    for exponent in _exponents(node):
        if exponent is None:
            return None
        offset, part = exponent.as_independent(*exponent.free_symbols, as_Add=True)
        multiple, scale = part.as_coeff_Mul()
        # A large offset, e^c past the doubles or next to them, would be a factor of the forms' terms,
        # which cancel to 1e-19 where the truth is 1e-35 (e^(800 + x)/(1 + e^(800 + x))'' at -720).
        if not multiple.is_Rational or abs(offset) > _LARGEST_OFFSET_EXPONENT:
            return None
        varying.add(scale)
        multiples.add(multiple)
    if len(varying) != 1:
        return None
    # Of one sign, past the doubles only where one of them divides (e^x + 1 alone is just inf).
    divides = any(
        power.exp.is_negative and next(_exponents(power.base), None) is not None
        for power in node.atoms(sympy.Pow)
    )
    if not (max(multiples) > 0 > min(multiples) or divides):
        return None
    return varying.pop() / math.lcm(*(multiple.q for multiple in multiples))


def _as_exponentials(node: sympy.Expr) -> sympy.Expr:
    """`node` with the kernels the rules wrote for sums of exponentials read back as those sums:
    expm1(u) as e^u - 1, `exp_difference`(a, b, a - b) as e^a - e^b, `add_constant`(rest, high, low)
    as rest + high + low, and `finite_or` as its first form."""
    name = _kernel_name(node)
    if name in _AS_EXPONENTIALS:
        return _as_exponentials(_AS_EXPONENTIALS[name](node.args[1:]))
    if not node.has(Kernel):
        return node
    return node.func(*(_as_exponentials(arg) for arg in node.args))


_AS_EXPONENTIALS: dict[str | None, Callable[[tuple[sympy.Expr, ...]], sympy.Expr]] = {
    "expm1": lambda args: sympy.exp(args[0]) - 1,
    "exp_difference": lambda args: sympy.exp(args[0]) - sympy.exp(args[1]),
    "add_constant": lambda args: args[0] + args[1] + args[2],
    **dict.fromkeys(_FALLBACKS, lambda args: args[0]),
    "nearer_one": lambda args: args[1],
}


def _exponents(node: sympy.Basic) -> Iterator[sympy.Expr | None]:
    """The varying exponents of the exponentials in `node`, as `_as_exponentials` reads it; None for
    one inside another function, where a ratio cannot reach it."""
    if not node.free_symbols:
        return
    if isinstance(node, sympy.exp):
        argument = node.args[0]
        yield None if argument.has(sympy.exp) else argument
    elif isinstance(node, (sympy.Add, sympy.Mul)) or (isinstance(node, sympy.Pow) and node.exp.is_Integer):
        for arg in node.args:
            yield from _exponents(arg)
    elif node.has(sympy.exp):
        yield None


def _in_powers(node: sympy.Expr, scale: sympy.Expr, w: sympy.Dummy) -> sympy.Expr:
    """`node`, as `_as_exponentials` reads it, with each e^(c + k v) as e^c w^k for v = `scale`."""

    def power(exponential: sympy.exp) -> sympy.Expr:
        exponent = exponential.args[0]
        offset, varying = exponent.as_independent(*exponent.free_symbols, as_Add=True)
        return sympy.exp(offset) * w ** (varying / scale)

    return node.replace(lambda part: isinstance(part, sympy.exp) and part.free_symbols, power)


def _merged(node: sympy.Expr, written: sympy.Expr) -> bool:
    """Whether `written`, the sum `node` written otherwise, has fewer terms: some merged or cancelled."""
    return len(sympy.Add.make_args(written)) < len(node.args)


def _without_common_factors(node: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """(c, s) with the sum `node` = c s: c the factors with a symbol every term has (log(x) + 1 in
    both terms of x^x/(x^x + 1)'s derivative, which kept it from being combined: a function the
    denominator does not call), s the sum of what is left."""
    terms = [sympy.Mul.make_args(term) for term in node.args]
    common = {factor for factor in set(terms[0]).intersection(*terms[1:]) if factor.free_symbols}
    if not common:
        return sympy.S.One, node
    rest = sympy.Add(*(sympy.Mul(*(f for f in factors if f not in common)) for factors in terms))
    return sympy.Mul(*common), rest


def _combined_or_same(node: sympy.Expr) -> sympy.Expr:
    combined = _combined(node)  # 0 too: the sixth derivative of (x^6 - 1)/(x + 1) (4.4e-9, truth 0)
    return node if combined is None else combined


# Remembered: a sum none of whose terms a rule rewrites is tried again as `stable` reaches it
# (factoring costs 5 to 50 ms a sum).
@functools.lru_cache(maxsize=256)
def _combined(node: sympy.Expr) -> sympy.Expr | None:
    """The sum as one factored fraction where its terms cancel symbolically: terms over powers of
    one sum that call no other functions (`_shares_a_denominator`; sympy's derivatives of the
    logistic function: e^x/(e^x + 1) - e^2x/(e^x + 1)^2 is e^x/(e^x + 1)^2, which float64 made
    -2.2e-16 at x = 40, 4.2e-18 its value), or a polynomial in
    one function (log(cosh(x))'s fourth derivative holds 1 - 4t^2 + 3t^4 = (1 - t^2)(1 - 3t^2) of
    t = tanh(x): 0 at 20). None where nothing cancels, or the sum is too large to try cheaply."""
    # 1 - x^p as written: its kernel (`_one_less_any_power`) is opaque to together and cancel, and
    # the third derivative of (1 - x^3)/(1 - x), 0, came out 5e-16 (a hunt); the combined sum is
    # written stably again.
    node = node.replace(_power_by_logarithm_kernel, _written_power)
    mirrors = _mirrors(node)
    mirrored = _one_of_mirrored_sums(node, mirrors)
    try:
        combined = _factored(mirrored) if mirrored.is_Add else None
    except BasePolynomialError:  # sympy's gcd gave up: the sum as written (as in `_rewritten`), here
        # so that the rule calling this still applies its other rewrites
        return None
    if combined is not None and mirrors:
        return _either_way(combined, mirrors.values())
    # ... or where only writing 1 + e^-x as e^-x (e^x + 1) merged terms: 1/(1 + e^-x) + 1/(1 + e^x)'
    return mirrored if combined is None and _merged(node, mirrored) else combined


def _factored(node: sympy.Expr) -> sympy.Expr | None:
    """`_combined` of a sum as it stands."""
    common, node = _without_common_factors(node)
    if not node.is_Add:
        return None
    shared, polynomial = _shares_a_denominator(node), _polynomial_form(node)
    if not (shared or polynomial is not None):
        return None
    if polynomial is not None and not shared:
        node = polynomial
    # The terms' common factor aside: the k-th derivative of e^5x/(e^5x + 1) is 5^k times small numbers.
    content, primitive = node.as_content_primitive()
    if primitive.could_extract_minus_sign():
        # -4 + 1/(x^2 (1 + 1/(4 x^2))) as 4 - 1/(...) is: its cancelled form, -16x^2/(4x^2 + 1),
        # counted a negation more and was not taken (0.0 at 1e-20, truth 4; an independent hunt).
        content, primitive = -content, -primitive
    content *= common
    if len(node.free_symbols) > _COMBINED_VARIABLES or not (
        _small_polynomial(primitive) or _rational_in_one_function(primitive)
    ):
        return None  # cancel's gcd over big numbers or high powers can take minutes (atan2's partials)
    together = sympy.together(primitive)
    cancelled = sympy.cancel(together)
    if shared:
        cancelled = _over_the_written_denominator(together, cancelled)
    combined = sympy.factor(cancelled)
    # factor may split what cancel kept whole (e^5x + 1 into cyclotomic factors in e^x): the shorter,
    # but factored at the price of a sign: -(x - y)(x + y) is exact next to x = y, y^2 - x^2 is not.
    shortest = combined if sympy.count_ops(combined) <= sympy.count_ops(cancelled) + 1 else cancelled
    if shared and (sympy.count_ops(shortest) < sympy.count_ops(primitive) or _merges_terms(primitive)):
        return content * shortest  # terms cancelled
    factors = [f for f in sympy.Mul.make_args(combined) if f.free_symbols]
    # Each factor is then written stably; a power of one too: 1 - 2t + t^2 is (t - 1)^2 (42 times
    # its value at 20 as written; a numbers hunt, 2026-12-07).
    repeated = len(factors) == 1 and factors[0].is_Pow and factors[0].exp.is_Integer and factors[0].exp > 1
    return content * combined if polynomial is not None and (len(factors) > 1 or repeated) else None


def _over_the_written_denominator(together: sympy.Expr, cancelled: sympy.Expr) -> sympy.Expr:
    """`cancelled` over the denominator of the terms `together` as they wrote it where nothing
    cancelled against it: cancel multiplies it out, (1 - x^6)^2 into x^12 - 2x^6 + 1, whose rounding
    next to x = 1 no later rule can undo (asin(x^3)''' at 1 - 1e-12 was inf, truth 9.2e29), where the
    power of the sum as written is what the rules for 1 - u then write exactly."""
    numerator, denominator = sympy.fraction(together)
    if sympy.cancel(sympy.denom(cancelled) / denominator).free_symbols:
        return cancelled  # a factor cancelled: the denominator is another one
    return sympy.expand(numerator) / denominator


def _merges_terms(primitive: sympy.Expr) -> bool:
    """Whether the sum's numerators, over their common denominator, have like terms that merge:
    2y^2/(x^2 + y^2) - 1 is (2y^2 - x^2 - y^2)/(x^2 + y^2) = (y^2 - x^2)/(x^2 + y^2), as many
    operations as written, but 0 where x = y, where the sum as written was 0.56 (its two terms 1 and
    1 + 2^-53: atan2's mixed partial at x = y = 1e-8, truth 0; a hunt)."""
    denominator = sympy.denom(sympy.together(primitive))
    apart = sum(
        len(sympy.Add.make_args(sympy.expand(sympy.cancel(term * denominator)))) for term in primitive.args
    )
    return len(sympy.Add.make_args(sympy.expand(sympy.cancel(primitive * denominator)))) < apart


# Sums up to this many nodes, over at most this many variables, are tried (factoring them costs 5 to
# 50 ms); larger ones stay as they are.
_COMBINED_NODES = 60
_COMBINED_VARIABLES = 2
_COMBINED_NUMBER = 64


def _small_polynomial(
    node: sympy.Expr, nodes: int = _COMBINED_NODES, largest: int = _COMBINED_NUMBER
) -> bool:
    """At most `nodes` nodes, no float, every number and power at most `largest`: what cancel and
    factor finish in milliseconds."""
    for count, part in enumerate(sympy.preorder_traversal(node)):
        if count > nodes or part.is_Float:
            return False
        if part.is_Rational and max(abs(int(part.p)), int(part.q)) > largest:
            return False
    return True


# A rational function of one function's value t, written in a symbol of its own, is factored up to
# this many nodes: univariate, cancel and factor take milliseconds.
_RATIONAL_NODES = 8 * _COMBINED_NODES
_RATIONAL_NUMBER = 2**16  # the sixth derivative's coefficients pass 64 (`_COMBINED_NUMBER`)
_T = sympy.Dummy("t")


def _rational_in_one_function(node: sympy.Expr) -> bool:
    """Whether `node` is a small rational function of one function tending to +-1 (tanh(x), one
    call): the derivatives of log(1 - tanh(x)) are such, with powers of 1 - t^2 over powers of
    1 - t past `_COMBINED_NODES`: their third to sixth at 20 came out 1e2 to 1e21 times the truth,
    some of the wrong sign, where the whole is t (1 - t)^2 (1 + t) (a numbers hunt, 2026-12-07)."""
    functions = node.atoms(Application)
    if len(functions) != 1 or not isinstance(next(iter(functions)), _TENDING_TO_ONE):
        return False
    written = node.xreplace({next(iter(functions)): _T})
    if not written.is_rational_function(_T):
        return False
    return _small_polynomial(written, nodes=_RATIONAL_NODES, largest=_RATIONAL_NUMBER)


def _shares_a_denominator(node: sympy.Expr) -> bool:
    """Whether the terms are over powers of one sum (or one variable: 1/x - (x + 1)/x^2, the quotient
    rule's two terms for (x + 1)/x, cancelled to 0.0 at 1e17, truth -1e-34; an independent hunt)
    and, apart from it, call only functions that sum calls (e^x and e^2x over e^x + 1; x^2 over
    sqrt(x^2 + y^2)): what can cancel against it. Sums
    that also hold other functions (sin(x*y)/(1 + x^2 + y^2) and its partials) are left: trying to
    factor them made compiling the headline gradient's Hessian eight times slower, for nothing."""
    counted: dict[sympy.Expr, int] = {}
    powers: dict[sympy.Expr, set[sympy.Expr]] = {}
    for term in node.args:
        denominators = {
            f.base: f.exp
            for f in sympy.Mul.make_args(term)
            if f.is_Pow and (f.base.is_Add or f.base.is_Symbol) and f.exp.is_negative
        }
        for base, exponent in denominators.items():
            counted[base] = counted.get(base, 0) + 1
            powers.setdefault(base, set()).add(exponent)
    # One sum under several terms, or the only sum under any, the other terms free of it
    # (e^(x+2) - e^(2x+4)/(e^(x+2) + 1), sympy's simplified logistic derivative, nested).
    shared = [base for base, count in counted.items() if count > 1] or list(counted)
    if len(shared) > 1:  # a sum before a variable: x^2 (1 + 1/(4x^2)) is over the sum
        shared = [base for base in shared if base.is_Add]
    if len(shared) != 1:
        return False
    (base,) = shared
    # Over one power of it alone, the numerators add as they are: nothing cancels against the sum.
    if len(powers[base]) == 1 and counted[base] == len(node.args):
        return False
    allowed = _functions(base)
    return all(
        _functions(sympy.Mul(*(f for f in sympy.Mul.make_args(term) if f.as_base_exp()[0] != base)))
        <= allowed
        for term in node.args
    )


def _functions(expr: sympy.Expr) -> set[type]:
    # Constants (log(2) beside 2^x) cancel nothing: only functions of the variables count.
    return {type(f) for f in expr.atoms(Application) if f.free_symbols}


# Functions whose log is next to 0 where they are next to 1 (log(cos(x)) at 1e-9 was 0.0, -5e-19).
_LOGGED_NEAR_ONE = (
    sympy.cos,
    sympy.sin,
    sympy.sec,
    sympy.csc,
    sympy.cosh,
    sympy.sech,
    sympy.tanh,
    sympy.coth,
    sympy.erf,
    sympy.Abs,
)
# Functions whose values tend to +-1, where a polynomial in them may cancel (1 - tanh^2); tan^2 + 1,
# in every derivative of tan, never does, and trying to factor it made compiling 1.7 times slower.
_TENDING_TO_ONE = (sympy.tanh, sympy.coth, sympy.sin, sympy.cos, sympy.erf)


def _polynomial_form(node: sympy.Expr) -> sympy.Expr | None:
    """The sum as a polynomial in one function's value (`_polynomial_in_one_function`), expanded if
    it holds products of such (exp(x) (1 - tanh(x))'s second derivative holds 2 (1 - t^2) t + 2 t^2
    - t - 1, which is (t - 1)(1 - 2t^2): 0.0 at 20, truth 4.1e-9; tester round 12); None if not one."""
    if _polynomial_in_one_function(node):
        return node
    functions = node.atoms(Application)
    if len(functions) != 1 or not isinstance(next(iter(functions)), _TENDING_TO_ONE):
        return None
    if not _small_polynomial(node.as_content_primitive()[1]):  # as `_combined` will factor it
        return None
    if _polynomial_in_one_function(node, varying=True):
        return node
    expanded = sympy.expand(node)
    return expanded if expanded.is_Add and _polynomial_in_one_function(expanded, varying=True) else None


def _polynomial_in_one_function(node: sympy.Expr, *, varying: bool = False) -> bool:
    """Powers of one function's value (one above the first), and perhaps a constant: 1 - 4t^2 + 3t^4;
    with `varying` coefficients, terms free of the function too: x log(cosh(x))'s third derivative
    holds 2x t^3 - 2x t - 3t^2 + 3 = (t^2 - 1)(2x t - 3) (its value at 20 was 5.1e-17, truth
    -6.3e-16, the sum's two halves each sech^2 cancelled apart; a hunt, 2026-12-05)."""
    bases: set[sympy.Expr] = set()
    highest = 0
    for term in node.args:
        if not term.free_symbols:
            continue
        _, rest = term.as_coeff_Mul()
        if varying:
            rest = sympy.Mul(*(factor for factor in sympy.Mul.make_args(rest) if factor.atoms(Application)))
            if rest == 1:
                continue
        base, exponent = rest.as_base_exp()
        if not (isinstance(base, _TENDING_TO_ONE) and exponent.is_Integer and exponent > 0):
            return False
        bases.add(base)
        highest = max(highest, int(exponent))
    return len(bases) == 1 and highest >= 2


def _one_less(t: sympy.Expr) -> sympy.Expr | None:
    """1 - t written without the cancellation where t tends to 1 (`stable`); None if no rule applies."""
    if t.is_Mul and t.args[0] is sympy.S.NegativeOne:  # 1 - (-f) is 1 + f: log(-tanh(x)) at -20 was 0.0
        return _one_more(-t)
    complement = _complement(t) or _over_a_root(t, 1)
    if complement is not None:
        return complement
    rule = _rule_for(_ONE_LESS_OF, t)
    if rule is not None:
        return rule(t, t.args[0])
    if t.is_Add and sympy.S.One in t.args:  # 1 - (1 + v) is -v exactly: acos(1 - x) from x itself
        return 1 - t
    if t.is_Add:
        found = _term_with_rule(t, _ONE_LESS_OF)
        if found is not None:  # 1 - (f + v) is (1 - f) - v: atanh(cos(x) - x^3) at 1e-5 was 9e-8 off
            term, rule = found
            return rule(term, term.args[0]) - (t - term)
    if t.is_Pow and t.exp == -1:  # 1 - 1/b is (b - 1)/b where 1 - b has a rule (atanh(1/coth(x)))
        less = _one_less(t.base)
        if less is not None:
            return _finite_or(-less / t.base, 1 - t)
    one_plus = _exactly_one_plus(t)  # ... and 1 - (1 - x)(1 + x), once a rule factored 1 - x^2, x^2
    if one_plus is not None:  # (atanh(1 - x^2)' = -2x/(1 - (1 - x^2)^2) at 1e-12 was 9007, truth -1e12)
        return -one_plus
    if isinstance(t, RealRoot) and t.args[1].is_Integer:  # cbrt(1 + u) - 1 was 0.0 at 1e-17
        u = _exactly_one_plus(t.args[0])
        return None if u is None else Kernel(Str("one_less_power"), u, 1 / t.args[1], 1 - t)
    if _kernel_name(t) == "one_minus_gamma":  # 1 - (1 - gamma(u)) is gamma(u), tiny or not: where a
        # rule wrote gamma(u) - 1 first, atanh(gamma(x) - 1)' at -171.5 was 1 - 1 in a divisor (inf)
        v, k = t.args[1:]
        return sympy.gamma(v + k)
    if isinstance(t, Kernel) and t.args[0].name == "one_plus_power":  # (1 + u)^p, written already
        u, exponent, whole = t.args[1:]
        return Kernel(Str("one_less_power"), u, exponent, 1 - whole)
    if isinstance(t, sympy.Abs):  # 1 - |v| is (1 - v^2)/(1 + |v|) where 1 - v^2 has a rule (|cos u|)
        square = _one_less(t.args[0] ** 2)
        return None if square is None else square / (1 + t)
    if t.is_Pow and t.base.is_positive and not t.base.free_symbols:  # 1 - 2^u is -expm1(u log 2)
        return -Kernel(Str("expm1"), _exactly_scaled(t.exp, sympy.log(t.base)))
    shifted = _exponential_shifted(t)
    if shifted is not None:  # 1 - 2^u/2 is -expm1((u - 1) log 2): 2 - 2^x next to 1 was 2.8e-5 off
        return -Kernel(Str("expm1"), shifted)
    base, exponent = _common_power(t)
    if base.free_symbols and not exponent.free_symbols:
        power = _one_less_power(base, exponent)
        if power is not None:
            return power
    if t.is_Pow and t.base.free_symbols and t.exp.free_symbols and _exactly_one_plus(t.base) is None:
        # 1 - b^p for a varying p is -expm1(p log b), with b - 1 written stably: x^(1/x) - 1 at 1e15
        # was 2.9e-3 off, as x^(1/x) rounds next to 1 ((1 + u)^p has its own rule, above).
        # (x^x - 1 at 1e-17 was 0.135 off, as x - 1 rounds: log b is log(x) there.)
        return Kernel(Str("one_less_power_of"), t.base, _less_one(t.base), t.exp, _power(t.base, t.exp))
    if t.is_Pow and t.exp.is_Integer and t.exp.is_odd and 2 < t.exp <= _POWERS:
        # 1 - f^n for an odd n is (1 - f)(1 + f + ... + f^(n-1)) where 1 - f has a rule (1 - sech(x)^3
        # at 1e-9 was 0.0, tester round 12). An even n is a square, below: as (1 - f)(1 + f + ...)
        # its second factor cancelled next to -1 (1 - tanh(x)^6 at -20 was 0.0). Where 1 - f is a
        # plain difference, `_one_less_any_power`: factored, a product sympy cancels against a
        # divisor made (x^3 - 1)/(x - 1) 3 at 1, where it is 0/0, and exp(x^7) - 1 - x^7 lost expm1.
        less = _one_less(t.base)
        if less is not None:
            return less * sympy.Add(*(t.base**k for k in range(int(t.exp))))
    root = _square_root_of(t)
    if root is None:
        return _one_less_any_power(t)
    if isinstance(root, sympy.tanh):  # with tanh(u), which the code computes anyway
        return Kernel(Str("sech_squared"), root.args[0], root)
    if isinstance(root, sympy.coth):
        return -(sympy.csch(root.args[0]) ** 2)
    pythagorean = _PYTHAGOREAN.get(type(root))  # 1 - sin(u)^2 is cos(u)^2 (1 - sin(u) cancels too)
    if pythagorean is not None:
        return pythagorean(root.args[0]) ** 2
    # Each factor written stably in turn: 1 - tanh^4 is (1 - tanh^2)(1 + tanh^2), which holds sech^2.
    if root.is_Pow and root.exp == -1:  # 1/b is rounded before 1 - 1/b cancels
        b = root.base
        return _less_one(b) * _plus_one(b) / b**2
    return _one_less_or_difference(root) * _plus_one(root)


_EXACT_SHIFT_DENOMINATOR = 64
_SHIFT_RANGE = (sympy.Rational(1, 2**900), sympy.Integer(2**900))
_SHIFT_EXPONENT = 620  # e^620 is 2^894


def _exponential_shifted(t: sympy.Expr) -> sympy.Expr | None:
    """(u + k) log b for t = q b^u (or q e^u) where q is b^k for a k that is an exact double (a
    whole number, a half...): 1 - t is -expm1 of it, and u + k is exact where t nears 1 (sympy writes
    2^x - 2 as 2 (1 - 2^x/2), e^x - e as e (1 - e^-1 e^x), 10^x - 100 likewise: each was some 2e-5
    off next to its zero, where b^u rounds; an independent hunt, 2026-12-06). None otherwise."""
    if not t.is_Mul:
        return None
    q, power = t.as_independent(*t.free_symbols, as_Add=False)
    q = sympy.Rational(q) if q.is_Float else q  # a decimal is its double: 0.5 - 2^x
    # q is looked at only as e^k or as a rational number, exactly: comparing another constant
    # evaluates it (log(tanh(100))*10^87 divided by zero in mpmath: a CI run). Within the doubles,
    # with room: c (1 - t) for a c past them (10^400 - 10^x) was 0 or inf times what cancels.
    if isinstance(power, sympy.exp) and isinstance(q, sympy.exp):
        u, log_base, k = power.args[0], sympy.S.One, q.args[0]
        if not (k.is_Rational and abs(k) < _SHIFT_EXPONENT):
            return None
    elif power.is_Pow and power.base.is_Rational and power.base.is_positive and power.base != 1:
        if not (q.is_Rational and _SHIFT_RANGE[0] < q < _SHIFT_RANGE[1]):
            return None
        u, log_base = power.exp, sympy.log(power.base)
        # b^k == q checked exactly (4^x/2 is 4^(x - 1/2)); the ratio evaluated by sympy
        ratio = float(sympy.N(sympy.log(q) / log_base, 20))
        k = sympy.Rational(ratio).limit_denominator(_EXACT_SHIFT_DENOMINATOR)
        if power.base**k != q:
            return None
    else:
        return None
    if k == 0 or k.q & (k.q - 1) or abs(k) > _EXACT_PERIOD:
        return None
    return _exactly_scaled(u + k, log_base)


def _exactly_scaled(u: sympy.Expr, factor: sympy.Expr) -> sympy.Expr:
    """u times `factor`, a sum's rational content taken out of it, so that its terms cancel exactly:
    3x - 3 as 3(x - 1), which is exact next to 1 where 3x rounds (8 - 2^(3x) at 1 - 1e-9 was 3.7e-8
    off, 1 - 2^(3x + 3) at -1 + 1e-12 8e-5)."""
    content, primitive = u.as_content_primitive()
    # Only where each varying term is then a plain ±v: (3x - 1)/3 for x - 1/3 would round 3x.
    plain = primitive.is_Add and all(
        abs(term.as_coeff_Mul()[0]) == 1 for term in primitive.args if term.free_symbols
    )
    if content == 1 or not plain:
        return u * factor
    # A kernel's product: sympy distributes a number over a sum (3 (x - 1) is 3x - 3 again).
    return Kernel(Str("multiply"), content * factor, primitive)


_Rule = Callable[[sympy.Expr, sympy.Expr], sympy.Expr]
# 1 - f(u) for the functions tending to 1, each written from f and u.
_ONE_LESS_OF: Mapping[type, _Rule] = {
    sympy.tanh: lambda t, u: 2 / (sympy.exp(2 * u) + 1),
    sympy.exp: lambda t, u: -Kernel(Str("expm1"), _exactly_scaled(u, sympy.S.One)),
    sympy.cos: lambda t, u: 2 * sympy.sin(u / 2) ** 2,
    sympy.cosh: lambda t, u: -2 * sympy.sinh(u / 2) ** 2,
    # cos(u)^2/(1 + sin(u)) where sin(u) > 0 (`kernels.one_minus_sin`)
    sympy.sin: lambda t, u: Kernel(Str("one_minus_sin"), u),
    # 1 - 1/cosh(u) as tanh(u/2) tanh(u), not 2 sinh(u/2)^2 sech(u), which is inf times 0 from
    # u = 1420 (log(sech(x)) and asin(sech(x)) at 800 were NaN; a hunt, 2026-12-05).
    sympy.sech: lambda t, u: sympy.tanh(u / 2) * sympy.tanh(u),
    sympy.sec: lambda t, u: -2 * sympy.sin(u / 2) ** 2 * t,  # 1 - 1/cos(u)
    sympy.csc: lambda t, u: -Kernel(Str("one_minus_sin"), u) * t,  # 1 - 1/sin(u), next to pi/2
    sympy.coth: lambda t, u: -2 / Kernel(Str("expm1"), 2 * u),
    # a kernel call: sympy would write erfc(-u) back as 2 - erfc(u)
    sympy.erf: lambda t, u: Kernel(Str("erfc"), u),
    sympy.erfc: lambda t, u: sympy.erf(u),  # 1 - erfc(u) was 0.0 at 1e-17
    sympy.gamma: lambda t, u: Kernel(Str("one_minus_gamma"), *_whole_apart(u)),
}
# 1 + f(u) for the functions tending to -1.
_ONE_MORE_OF: Mapping[type, _Rule] = {
    sympy.tanh: lambda t, u: 2 / (sympy.exp(-2 * u) + 1),
    sympy.erf: lambda t, u: Kernel(Str("erfc"), -u),
    sympy.cos: lambda t, u: 2 * sympy.cos(u / 2) ** 2,
    sympy.sin: lambda t, u: Kernel(Str("one_minus_sin"), -u),
    sympy.sec: lambda t, u: 2 * sympy.cos(u / 2) ** 2 * t,  # 1 + 1/cos(u), next to -1 at pi
    sympy.csc: lambda t, u: Kernel(Str("one_minus_sin"), -u) * t,  # 1 + 1/sin(u), next to -pi/2
}


def _whole_apart(u: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """u as (v, k), v + k = u, k the whole number u's sum holds (0 if none): factorial(x) is gamma(x + 1)."""
    k, v = u.as_coeff_Add()
    return (v, k) if k.is_Integer else (u, sympy.S.Zero)


def _finite_or(written: sympy.Expr, as_is: sympy.Expr) -> sympy.Expr:
    """`written`, or where it is not finite `as_is`: (b - 1)/b is inf/inf where b is infinite and
    1 - 1/b is 1 (1/gamma(x) - 1 at 1756 and at 0 was NaN; a regression hunt, 2026-12-06)."""
    return Kernel(Str("finite_or"), written, as_is)


def _term_with_rule(t: sympy.Expr, rules: Mapping[type, _Rule]) -> tuple[sympy.Expr, _Rule] | None:
    """The first term of the sum `t` that `rules` has a rule for (a function tending to 1, or -1),
    and the rule."""
    for term in sympy.Add.make_args(t):
        rule = _rule_for(rules, term)
        if rule is not None:
            return term, rule
    return None


def _rule_for(rules: Mapping[type, _Rule], t: sympy.Expr) -> _Rule | None:
    """The rule for t's function, or for the sympy function it refines (functions.RealErfc)."""
    return next((rules[kind] for kind in type(t).__mro__ if kind in rules), None)


def _power_by_logarithm_kernel(node: sympy.Basic) -> bool:
    return _kernel_name(node) == "one_less_power_of"


def _written_power(node: Kernel) -> sympy.Expr:
    """1 - b^p as written, of a `one_less_power_of` kernel."""
    return 1 - node.args[4]


def _power_by_logarithm(written: sympy.Expr) -> bool:
    """Whether `_one_less_any_power` wrote it: for 1 - x^p alone, not for 1 and x^p paired among other
    terms, whose sum cancels as a whole ((1 - x^5)^3 multiplied out next to 1: 1 - x^15 exact
    changed nothing but the rounding, 5e-11 off then 2.4e-9; a hunt)."""
    return bool(written.find(_power_by_logarithm_kernel))


def _one_less_any_power(t: sympy.Expr) -> sympy.Expr | None:
    """1 - f^p for a constant p no rule above wrote (a square, an odd power up to _POWERS of an f
    whose 1 - f has a rule) as `kernels.one_less_power_of`: -expm1(p log f) where it cancels, with
    f - 1 written stably (for a variable, exact next to 1, where f^p rounds before 1 - f^p cancels:
    asin(x^9)' and atanh(x^1.5)' at 1 - 1e-8 were 2.6e-10 and 1e-9 off)."""
    if not (t.is_Pow and t.base.free_symbols and t.exp.is_number and t.exp.is_real):
        return None
    return Kernel(Str("one_less_power_of"), t.base, _less_one(t.base), t.exp, t)


def _one_less_or_difference(t: sympy.Expr) -> sympy.Expr:
    written = _one_less(t)
    return 1 - t if written is None else written


def _less_one(t: sympy.Expr) -> sympy.Expr:
    """-(1 - t), written stably."""
    return -_one_less_or_difference(t)


def _plus_one(t: sympy.Expr) -> sympy.Expr:
    written = _one_more(t)
    return 1 + t if written is None else written


_POWERS = 8  # 1 - (1 + u)^n up to this n is written as a product (n terms in the second factor)
# 1 - f(u)^2 for an f tending to +-1, as the square of its complement.
_PYTHAGOREAN: Mapping[type, Callable[[sympy.Expr], sympy.Expr]] = {
    sympy.sin: sympy.cos,
    sympy.cos: sympy.sin,
    sympy.sech: sympy.tanh,
}


def _one_less_scaled_square(t: sympy.Expr) -> sympy.Expr | None:
    """1 - t for t = (p/q y)^2 as (q - p y)(q + p y)/q^2, exact where p y is (p a power of 2): sympy
    writes asin(2x)' as 2/sqrt(1 - 4x^2), whose 4x^2 rounded before 1 - 4x^2 cancelled (2.3e-10 off
    next to 1/2, asin(x/2)' next to 2 too; a hunt, 2026-12-05); None for another t (pi^2 x^2)."""
    base, exponent = _common_power(t)
    if exponent != 2 or base is t:
        return None
    scale, y = base.as_coeff_Mul()
    if not (scale.is_Rational and y.free_symbols and abs(scale) != 1):
        return None
    p, q = abs(scale.p), scale.q
    if p & (p - 1):  # 3y rounds, and q - 3y then cancels what it rounded (1 - 9x^2 next to 1/3 lost
        return None  # 1e-4 of its value, 1 - 100x^2 at 0.1 was inf: a regression hunt)
    return sympy.Mul(sympy.Rational(1, q * q), q - p * y, q + p * y)


def _one_less_power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr | None:
    """1 - b^p where b is 1 + u exactly (`_exactly_one_plus`): 1 - sqrt(1 + u) is -u/(1 + sqrt(1 + u)),
    1 - b^n is -u (1 + b + ... + b^(n-1)) and 1 - b^-n is u (1 + b + ... + b^(n-1))/b^n (n from 3,
    and from 1, up to _POWERS), any other power `kernels.one_less_power` (each was 0 at u = 1e-17;
    1 - sqrt(1 - x^2) too, whose 1 - x^2 a rule had factored first)."""
    u = _exactly_one_plus(base)
    if u is None:
        return None
    if exponent == sympy.S.Half:
        return -u / (1 + sympy.sqrt(base))
    if exponent == 2:  # (1 - b)(1 + b), each with its rules: b a product ((1 - x)(1 + x), from 1 - x^2)
        return _one_less_or_difference(base) * _plus_one(base)  # is no square to the rule for squares
    if exponent in (0, 1):  # 1 - b has rules of its own
        return None
    n = abs(int(exponent)) if exponent.is_Integer else 0
    if 0 < n <= _POWERS:
        powers = sympy.Add(*(base**k for k in range(n)))
        return -u * powers if exponent > 0 else u * powers / base**n
    return Kernel(Str("one_less_power"), u, exponent, 1 - _power(base, exponent))


# (1 + u)^p for a constant |p| up to this is as good computed as written: p times 1 + u's rounding.
_EXACT_POWER = 64


def _absolute_powers(node: sympy.Expr) -> sympy.Expr:
    """The product with u^2k |u|^m as |u|^(2k + m) for a real u: the Pythagorean rules write
    acos(cos(x))'' as cos/|sin| - cos |sin|/sin^2, two terms of 1e9 at 1e-9 that cancel to -1.2e-7
    (truth 0); merged, they cancel exactly as sympy adds them (tester round 11)."""
    factors = sympy.Mul.make_args(node)
    absolute = {
        base.args[0]
        for base, exponent in (f.as_base_exp() for f in factors)
        if isinstance(base, sympy.Abs) and exponent.is_Integer
    }
    if not absolute:
        return node
    kept: list[sympy.Expr] = []
    powers: dict[sympy.Expr, sympy.Expr] = {}
    merged = False
    for factor in factors:
        base, exponent = factor.as_base_exp()
        if isinstance(base, sympy.Abs) and base.args[0] in absolute and exponent.is_Integer:
            powers[base.args[0]] = powers.get(base.args[0], sympy.S.Zero) + exponent
        elif base in absolute and exponent.is_Integer and exponent.is_even and base.is_extended_real:
            powers[base] = powers.get(base, sympy.S.Zero) + exponent
            merged = True
        else:
            kept.append(factor)
    if not merged:
        return node
    return sympy.Mul(*kept, *(sympy.Abs(u) ** k for u, k in powers.items()))


def _shifted_power(node: sympy.Pow) -> sympy.Expr:
    """b^(p + k) for a varying p and a whole k as b^p b^k: p + k is rounded where p is large, and for
    b < 0 its parity with it (d/dx x^y is y x^(y - 1): +1e20 at (-1, 1e20), truth -1e20, as
    1e20 - 1 rounds to the even 1e20; tester round 11). `power` keeps sympy from joining them again.
    Where the product is not finite, the power as written: b^p b^k is 0 times inf at b = 0 (x^(y - 1)
    at (0, 2.5) was NaN, truth 0), and at 1e-200 for p = 60.5, k = -60 (1e-100; an independent hunt)."""
    k, p = node.exp.as_coeff_Add()
    if not (p.free_symbols and k.is_Integer and 0 < abs(k) <= _EXACT_POWER):
        return node
    return Kernel(
        Str("finite_or"), Kernel(Str("power"), node.base, p) * node.base**k, _power(node.base, node.exp)
    )


def _power_of_a_sum(node: sympy.Basic) -> bool:
    return bool(node.is_Pow and node.base.is_Add and _exponent_of_one_plus(node.exp))


def _power_of_one_plus_or_same(node: sympy.Pow) -> sympy.Expr:
    written = _power_of_one_plus(node)
    return node if written is None else written


def _exponent_of_one_plus(exponent: sympy.Expr) -> bool:
    """Whether (1 + u)^p for this p is computed from log1p(u): p varies, or is a number past _EXACT_POWER."""
    return bool(exponent.free_symbols) or bool(exponent.is_Number and abs(exponent) > _EXACT_POWER)


def _power_of_one_plus(node: sympy.Pow) -> sympy.Expr | None:
    """(1 + u)^p for a varying p or |p| past _EXACT_POWER, as exp(p log1p(u)) where |u| < 1/2
    (`kernels.one_plus_power`): (1 + 1/x)^x at 1e17 was 1.0, e, as 1 + 1/x rounds to 1. None where
    p is another constant or the base no 1 + u."""
    base, exponent = node.args
    if not _exponent_of_one_plus(exponent):
        return None
    u = _exactly_one_plus(base)
    return None if u is None else Kernel(Str("one_plus_power"), u, exponent, _power(base, exponent))


def _common_power(t: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """(b, p) where t is b^p, or a product of powers to one exponent ((1 - x)^3 (1 + x)^3, what
    sympy makes of (1 - x^2)^3 once a rule factored 1 - x^2)."""
    if not t.is_Mul:
        base, exponent = t.as_base_exp()
        return base, exponent
    coefficient, rest = t.as_coeff_Mul()
    powers = [factor.as_base_exp() for factor in sympy.Mul.make_args(rest)]
    exponents = {exponent for _, exponent in powers}
    if len(exponents) != 1:
        return t, sympy.S.One
    exponent = exponents.pop()
    # A positive rational coefficient that is a power too joins the base: (2 - x^4)^2/4 is
    # (1 - x^4/2)^2 (acos(1 - x^4/2)' at 1e-5 was inf, truth 2e-5; a hunt, 2026-12-05).
    root = coefficient ** (1 / exponent) if coefficient.is_positive and exponent.is_Integer else None
    if coefficient != 1 and not (root is not None and root.is_Rational):
        return t, sympy.S.One
    return sympy.Mul(*(base for base, _ in powers)) * (1 if root is None else root), exponent


def _exactly_one_plus(b: sympy.Expr) -> sympy.Expr | None:
    """u where b is 1 + u symbolically: a sum holding 1, or a small product of such sums that a rule
    wrote from one ((1 - x)(1 + x) from 1 - x^2), or of one sum and a power; None otherwise."""
    if b.is_Add:
        return b - 1 if sympy.S.One in b.args else None
    if _power_by_logarithm_kernel(b):  # 1 - x^9, as the rule wrote it
        return _exactly_one_plus(_written_power(b))
    # ... or of one such sum and a power: (t^2 + 1)/t^2 is 1 + 1/t^2, cot's second derivative next to
    # pi/2 held it less 1 (7% off at 1.5707963; a hunt, 2026-12-05).
    factors = sympy.Mul.make_args(b)
    sums = [f for f in factors if f.is_Add]
    if not (b.is_Mul and len(factors) <= 3 and sums and all(len(f.args) <= _POWERS for f in sums)):
        return None
    if len(sums) < len(factors) - 1 or not all(f.is_Add or f.is_Pow for f in factors):
        return None
    expanded = sympy.expand(b)
    return expanded - 1 if expanded.is_Add and sympy.S.One in expanded.args else None


def _one_more(t: sympy.Expr) -> sympy.Expr | None:
    """1 + t written without the cancellation where t tends to -1 (`stable`); None if no rule applies."""
    if t.is_Add and sympy.S.NegativeOne in t.args:  # 1 + (v - 1) is v exactly: asin(1 - x) is -asin(x - 1)
        return 1 + t
    if t.is_Mul and t.args[0] is sympy.S.NegativeOne:  # 1 + (-f) is 1 - f: acos(-tanh(x)) at 20 was pi
        return _one_less(-t)
    rule = _rule_for(_ONE_MORE_OF, t)
    if rule is not None:
        return rule(t, t.args[0])
    if t.is_Add:
        found = _term_with_rule(t, _ONE_MORE_OF)
        if found is not None:  # 1 + (f + v) is (1 + f) + v where f tends to -1
            term, rule = found
            return rule(term, term.args[0]) + (t - term)
        found = _term_with_rule(-t, _ONE_LESS_OF)
        if found is not None:  # 1 + (-f + v) is (1 - f) + v: atanh(x^3 - cos(x)) next to -1
            term, rule = found
            return rule(term, term.args[0]) + (t + term)
    if t.is_Pow and t.exp == -1:  # 1 + 1/b is (1 + b)/b where 1 + b has a rule (atanh(1/(x - 1)))
        more = _one_more(t.base)
        if more is not None:
            return _finite_or(more / t.base, 1 + t)
    if isinstance(t, _ODD):  # 1 + f(u) is 1 - f(-u): 1 + coth(x) at -20 was 0.0 (tester round 11)
        return _one_less(type(t)(-t.args[0], evaluate=False))
    over_a_root = _over_a_root(t, -1)
    if over_a_root is not None:
        return over_a_root
    if t.is_Pow and t.exp.is_Integer and t.exp.is_odd and abs(t.exp) > 1:
        # 1 + f^n for an odd n is 1 - (-f)^n, written as in `_one_less`: (1 + f)(1 - f + ... + f^(n-1))
        # where 1 + f has a rule, up to _POWERS; else from 1 + f (atanh(x^3)''' at -1 + 1e-8 was 1.7%
        # off, acoth(x^3) at -1 - 1e-8 8e-11).
        more = _one_more(t.base)
        if more is not None and 0 < t.exp <= _POWERS:
            return more * sympy.Add(*((-t.base) ** k for k in range(int(t.exp))))
        return Kernel(Str("one_less_power_of"), -t.base, -_plus_one(t.base), t.exp, -t)
    return None


def _over_a_root(t: sympy.Expr, sign: int) -> sympy.Expr | None:
    """1 - t (`sign` 1) or 1 + t (-1) for t = a/sqrt(B), as the sum `_root_difference` writes: the
    inverse functions ask for 1 -+ u, never forming the sum it looks at. x/sqrt(x^2 + 1) rounds to 1
    from 1e8 on, and atanh of it, asinh(x), was inf there, truth 19.1; acos of it 0.0, truth 1e-8 (a
    hunt, 2026-12-05). None for other t."""
    whole = 1 - sign * t
    return _root_difference(whole) if whole.is_Add else None


# Odd functions that tend to 1 somewhere, so to -1 at the mirror point.
_ODD = (sympy.tanh, sympy.coth, sympy.erf, sympy.sin)


def _is_digamma(node: sympy.Expr) -> bool:
    return isinstance(node, sympy.polygamma) and node.args[0] == 0


def _step(low: sympy.Expr, high: sympy.Expr) -> sympy.Expr | None:
    """w where `high` is written u + w with `low` = u (its terms among high's): then w is exact, where
    high - low computed in float64 would carry high's rounding."""
    inner = set(sympy.Add.make_args(low))
    outer = sympy.Add.make_args(high)
    if len(outer) <= len(inner) or not inner <= set(outer):
        return None
    return sympy.Add(*(term for term in outer if term not in inner))


def _complement(node: sympy.Expr) -> sympy.Expr | None:
    """1 - `node` as (b - a)/b where `node` is a/b with b a sum holding a's terms, so that b - a is
    shorter than b (sympy's derivative of the logistic function holds 1 - e^x/(e^x + 1), 1 - 1 = 0
    from x = 37 on, where (e^x + 1 - e^x)/(e^x + 1) is 1/(e^x + 1)), and as (a - b)/a where it is b/a
    for one term a; None otherwise."""
    factors = sympy.Mul.make_args(node)
    denominators = [f.base for f in factors if f.is_Pow and f.exp == -1 and f.base.is_Add]
    if len(denominators) > 1 and _small_polynomial(node):
        # ... and a/b with b a product of sums, expanded: the square of the cosine of the angle
        # between two vectors, 1 - (ac + bd)²/((a² + b²)(c² + d²)), is (ad - bc)²/(...) (the partials
        # of the angle were 1e-4 off for nearly parallel vectors; an independent hunt, 2026-12-07).
        whole = sympy.Mul(*denominators)
        expanded = sympy.expand(whole)
        difference = _as_product(sympy.expand(expanded - node * whole))
        return difference / whole if sympy.count_ops(difference) < sympy.count_ops(expanded) else None
    if len(denominators) == 1:
        (whole,) = denominators
        part = node * whole
        difference = whole - part
        return difference / whole if len(sympy.Add.make_args(difference)) < len(whole.args) else None
    # ... and b/a, the sum over one of its terms: 1 - (e^u + 1) e^-u is -e^-u (+1.1e-16 at 40, truth
    # -4.2e-18: y'' of the implicit log(1 + e^y) = x; a hunt, 2026-12-05).
    numerators = [f for f in factors if f.is_Add]
    if len(numerators) != 1 or denominators:
        return None
    (whole,) = numerators
    term = whole / node  # a, the one term: node is whole/a
    if term.is_Add or not term.free_symbols:
        return None
    difference = term - whole
    return difference / term if len(sympy.Add.make_args(difference)) < len(whole.args) else None


def _square_root_of(node: sympy.Expr) -> sympy.Expr | None:
    """u where `node` is u^2 (x^2, x^-2 = (1/x)^2, tanh(x)^2), else None."""
    if not (node.is_Pow and node.exp.is_Integer and int(node.exp) % 2 == 0 and node.exp != 0):
        return None
    half = int(node.exp) // 2
    return node.base if half == 1 else node.base**half


def prepare(parts: Sequence[sympy.Expr]) -> tuple[list[sympy.Expr], dict[sympy.Symbol, float]]:
    """`parts` ready to print: written in stable forms (`stable`), constants folded (placeholders
    and their values), derivatives opaque."""
    # im as its kernel first, which no rebuild evaluates: sympy takes im of anything real for 0, and
    # a placeholder and every Kernel are real to it, so im(asech(x) - pi), NaN where asech is, came
    # out 0.0 at -53 once folded (the fuzzer, seed 820857374), and im(log10(x)/9.9) 0.0 at -3.7
    # once a rule wrote log(x)/log(10) as its kernel (the fuzzer, seed 1259732176).
    kept = [part.replace(lambda node: isinstance(node, sympy.im), _im_kernel) for part in parts]
    folded, constants = fold_constants([_both_ways(stable(part)) for part in kept])
    memo: dict[sympy.Basic, sympy.Basic] = {}
    checked = [_periodic_arguments_checked(part, constants.keys()) for part in folded]
    return [_opaque(part, memo) for part in checked], constants


# Kernels of a periodic function of their first argument (`_in_half_turns`: of pi times it).
_PERIODIC_KERNELS = frozenset({"sin_half_turns", "cos_half_turns", "tan_half_turns", "one_minus_sin"})


def _periodic_arguments_checked(part: sympy.Expr, placeholders: Iterable[sympy.Symbol]) -> sympy.Expr:
    """`part` with each periodic function of an argument computed on the way written so that a large
    argument does not go unnoticed: an argument off by half an ulp is a whole period off past 2^53
    (`kernels.PRECISE_ARGUMENT`). Of an affine function of exact operands (variables, whole numbers,
    a constant as two doubles: `_exact_operands`), the function of the argument and what its
    rounding lost (`kernels._of_affine`); of anything else, its argument checked
    (`kernels.periodic_argument`).
    A variable, a constant and a variable times a power of 2 are exact: nothing to check."""
    constants = frozenset(placeholders)

    def exact(node: sympy.Expr) -> bool:
        if node.is_Symbol:
            return node not in constants
        if node.is_Rational or node.is_Float:  # a decimal is its double (0.5, 2.5)
            return _is_a_double(sympy.Rational(node))
        # One of its exact arguments, or one negated: csc(Max(9, y, z) - 1) at y = 4.2e7 was NaN, its
        # argument taken for computed (the fuzzer, seed 3207926227).
        if isinstance(node, (sympy.Max, sympy.Min, sympy.Abs)):
            return all(exact(argument) for argument in node.args)
        scale, rest = node.as_coeff_Mul()
        return _power_of_two(scale) and rest.is_Symbol and rest not in constants

    def checked(node: sympy.Expr) -> sympy.Expr:
        if isinstance(node, Kernel):  # of pi times it, and times a scale (`_in_half_turns`)
            name, argument, *rest = node.args
            # (`_in_half_turns`: W, offset, scale p/q, the period 2q it reduces W modulo, low)
            scale, period = (abs(rest[1]), rest[2]) if len(rest) > 2 else (sympy.S.One, sympy.Integer(2))
            return Kernel(name, _checked_argument(argument, constants, sympy.pi * scale, period), *rest)
        argument = node.args[0]
        operands = _exact_operands(argument, exact)
        if operands is None:
            return node.func(_checked_argument(argument, constants))
        return Kernel(Str(f"{type(node).__name__}_of_affine"), *operands)

    def computed(node: sympy.Basic) -> bool:
        if isinstance(node, _TRIGONOMETRIC):
            argument = node.args[0]
        elif isinstance(node, Kernel) and str(node.args[0]) in _PERIODIC_KERNELS:
            argument = node.args[1]
        else:
            return False
        return not (argument.is_Number or exact(argument))

    return part.replace(computed, checked)


def _checked_argument(
    argument: sympy.Expr,
    constants: frozenset[sympy.Symbol],
    radians: sympy.Expr = sympy.S.One,
    period: sympy.Expr = sympy.S.Zero,
) -> sympy.Expr:
    """`periodic_argument` of it (`radians` a unit of it), with the magnitude past which even the
    long double run cannot know it: 2^31, or 2^20 (float64's) where it holds what long double
    computes no better than a double (sec(x/3) at 2e9 is sec(0.333...*x): 2.3e-8 off in long double
    too, sin(gamma(x)) at 13 1.7e-6; a regression hunt, 2026-12-06)."""
    rounded = _no_better_in_long_double(argument, constants)
    limit = kernels.PRECISE_ARGUMENT if rounded else kernels.PRECISE_WIDE_ARGUMENT
    return Kernel(Str("periodic_argument"), argument, sympy.Float(limit), sympy.Float(float(radians)), period)


# What the long double run computes in long double (`widening`): any other function, in doubles.
_IN_LONG_DOUBLE = (sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.sinh, sympy.cosh, sympy.tanh)


def _no_better_in_long_double(node: sympy.Basic, constants: frozenset[sympy.Symbol]) -> bool:
    """Whether `node` computes with what long double holds or computes no better than a double: a
    constant its double only rounds (a placeholder: e, a folded constant; a number such as 1/3),
    or a function computed in doubles (gamma, a kernel without long double loops). A constant
    added as two doubles (`add_constant`) is exact."""
    if isinstance(node, Kernel):
        name = str(node.args[0])
        if name == "add_constant":
            return _no_better_in_long_double(node.args[1], constants)
        if name not in kernels.GENERIC:
            return True
    elif isinstance(node, Application) and not isinstance(node, _IN_LONG_DOUBLE):
        return True
    if node.is_Symbol:
        return node in constants
    if node.is_Rational or node.is_Float:
        return not _is_a_double(sympy.Rational(node))
    return node.is_Number or any(_no_better_in_long_double(arg, constants) for arg in node.args)


def _is_a_double(number: sympy.Rational) -> bool:
    """Whether a double holds `number` exactly (1/2, 2^60; not 1/3 or 2^53 + 1)."""
    double = reference.nearest_double(number)
    return math.isfinite(double) and sympy.Rational(double) == number


def _exact_operands(
    argument: sympy.Expr, exact: Callable[[sympy.Expr], bool]
) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr, sympy.Expr, sympy.Expr] | None:
    """(a, k, k_low, c, c_low) for an argument a (k + k_low) + (c + c_low) with a, k and c exact and
    k + k_low, c + c_low constants as two doubles where they are constants (`kernels._of_affine`):
    x + y, x - 1, x + 1/3 (`add_constant`), 3x, x/3, x*y, x^2, 2x + 1, x/7 - 2, x y + z. None for
    any other argument."""
    zero = sympy.S.Zero
    if isinstance(argument, Kernel) and str(argument.args[0]) == "add_constant":
        _, rest, high, low = argument.args
        scaled = _exact_product(rest, exact)
        return None if scaled is None else (*scaled, high, low)
    if argument.is_Add and len(argument.args) == 2:
        for term, other in (argument.args, argument.args[::-1]):
            scaled = _exact_product(term, exact)
            if scaled is not None and exact(other):
                return (*scaled, other, zero)
        return None
    scaled = _exact_product(argument, exact)
    return None if scaled is None else (*scaled, zero, zero)


def _exact_product(
    term: sympy.Expr, exact: Callable[[sympy.Expr], bool]
) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr] | None:
    """(a, k, k_low) for a term a (k + k_low): an exact a times 1, a rational constant as two doubles
    (x/3), or an exact factor (x*y, 2x*y, x^2); None for any other term."""
    if exact(term):
        return (term, sympy.S.One, sympy.S.Zero)
    if term.is_Pow and term.exp == 2 and exact(term.base):
        return (term.base, term.base, sympy.S.Zero)
    scale, rest = term.as_coeff_Mul()
    scale = sympy.Rational(scale) if scale.is_Float else scale  # a decimal is its double
    factors = sympy.Mul.make_args(rest)
    if scale.is_Rational and len(factors) == 1 and exact(rest):
        high = sympy.Rational(reference.nearest_double(scale))
        return (rest, high, sympy.Rational(reference.nearest_double(scale - high)))
    if _power_of_two(scale) and len(factors) == 2 and all(map(exact, factors)):
        return (factors[0], scale * factors[1], sympy.S.Zero)
    if _power_of_two(scale) and rest.is_Pow and rest.exp == 2 and exact(rest.base):
        return (rest.base, scale * rest.base, sympy.S.Zero)
    return None


def _power_of_two(number: sympy.Expr) -> bool:
    """Whether `number` is +-2^k (multiplying by it is exact)."""
    return bool(number.is_Rational) and all(part & (part - 1) == 0 for part in (abs(number.p), number.q))


def _im_kernel(node: sympy.im) -> sympy.Expr:
    return Kernel(Str("im"), *node.args)


def _opaque(node: sympy.Basic, memo: dict[sympy.Basic, sympy.Basic]) -> Any:
    found = memo.get(node)
    if found is not None:
        return found
    if isinstance(node, (sympy.Subs, sympy.Derivative)):
        try:
            name, orders, args = reference.derivative_call(node)
        except reference.Unsupported:
            raise _derivative_refusal(node) from None
        point = [_opaque(arg, memo) for arg in args]
        found = Partial(Str(name), sympy.Tuple(*orders), *point)
    elif node.args and node.has(sympy.Subs, sympy.Derivative):
        found = node.func(*(_opaque(arg, memo) for arg in node.args))
    else:
        found = node
    memo[node] = found
    return found


def fold_constants(parts: Sequence[sympy.Expr]) -> tuple[list[sympy.Expr], dict[sympy.Symbol, float]]:
    """`parts` with each constant subexpression replaced by a placeholder symbol, and their values.

    The constant terms of a sum (and factors of a product) fold as one: sympy distributes numbers
    over sums, so `x + (tanh(30) - 1)*10^30` is `x - 10^30 + 10^30*tanh(30)`, whose constants
    rounded apart cancel to 0 in float64 where together they are -17513.02.
    """
    constant: dict[sympy.Basic, bool] = {}
    placeholders: dict[sympy.Basic, sympy.Basic] = {}
    values: dict[sympy.Symbol, float] = {}
    folded: dict[sympy.Basic, sympy.Basic] = {}

    def is_constant(node: sympy.Basic) -> bool:
        found = constant.get(node)
        if found is None:
            found = not node.is_Symbol and all(is_constant(arg) for arg in node.args)
            constant[node] = found
        return found

    def placeholder(node: sympy.Basic) -> sympy.Basic:
        found = placeholders.get(node)
        if found is None:
            value = _folded(node) if _needs_folding(node) else None
            if value is None:
                found = node
            else:
                found = sympy.Symbol(f"_k{len(values)}", real=True)
                values[found] = value
            placeholders[node] = found
        return found

    def fold(node: sympy.Basic) -> sympy.Basic:
        found = folded.get(node)
        if found is None:
            if is_constant(node):
                found = placeholder(node)
            elif node.is_Add or node.is_Mul:
                numbers = [arg for arg in node.args if is_constant(arg)]
                others = [fold(arg) for arg in node.args if not is_constant(arg)]
                split = _split_constant(sympy.Add(*numbers)) if node.is_Add and numbers else None
                if split is not None:
                    high, low = (placeholder(part) for part in split)
                    found = Kernel(Str("add_constant"), sympy.Add(*others), high, low)
                else:
                    found = node.func(*others, *([placeholder(node.func(*numbers))] if numbers else []))
            elif node.is_Pow and is_constant(node.exp) and _whole_double(node.exp):
                # Its placeholder's double is whole: the kernel keeps the fraction's domain.
                found = Kernel(Str("fractional_power"), fold(node.base), placeholder(node.exp))
            elif node.args:
                found = node.func(*(fold(arg) for arg in node.args))
            else:
                found = node
            folded[node] = found
        return found

    return [fold(part) for part in parts], values


def _split_constant(constant: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr] | None:
    """A sum's constant term that no double holds as its nearest double and what is left, both exact
    (`kernels.add_constant`); None where a double holds it, or its value is not known."""
    if constant.is_Float:  # a decimal literal is its double
        return None
    try:
        high = reference.nearest_double(constant)
        if (
            not math.isfinite(high)
            or high == 0
            or (constant.is_Rational and sympy.Rational(high) == constant)
        ):
            return None
        low = reference.nearest_double(constant - sympy.Rational(high))
    except reference.Unsupported:
        return None
    if not math.isfinite(low) or low == 0:
        return None
    return sympy.Rational(high), sympy.Rational(low)


def _needs_folding(node: sympy.Basic) -> bool:
    # Exact numbers print as themselves; a Tuple is a Derivative's (variable, order), not a value.
    return isinstance(node, sympy.Expr) and not (node.is_Rational or node.is_Float)


def _folded(node: sympy.Basic) -> float | None:
    try:
        return reference.nearest_double(node)
    except reference.Unsupported:
        return None


class NumericPrinter(PythonCodePrinter):  # type: ignore[misc]
    """Prints for `kernels.NAMESPACE`: functions by name, numbers and folded constants as doubles."""

    def __init__(self, constants: Mapping[sympy.Symbol, float]) -> None:
        super().__init__({"fully_qualified_modules": False, "inline": True, "strict": True})
        self.constants = constants

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, sympy.Basic):
            if expr.is_Symbol and expr in self.constants:
                return _literal(self.constants[expr])
            if expr.is_Number or expr.is_NumberSymbol:
                return _literal(_double(expr))
            if isinstance(expr, Partial):
                return self._partial(expr)
            if isinstance(expr, Kernel):
                name, *args = expr.args
                return f"{name.name}({', '.join(self._print(arg) for arg in args)})"
            if isinstance(expr, Application) and not isinstance(expr, _PRINTED_HERE):
                return self._call(expr)
        return str(super()._print(expr, **kwargs))

    def _handle_UnevaluatedExpr(self, expr: Any) -> Any:  # noqa: N802 (sympy's name)
        # sympy's would rebuild every re(u) as sympy's own re, which writes re(log(x)) as log|x|
        # (0.69 at -2, where the real-valued rule says NaN: `functions.RealPart`); we make no
        # UnevaluatedExpr for it to unwrap.
        return expr

    def _call(self, expr: Application) -> str:
        name = reference.kernel_name(expr)
        if name is None or name not in kernels.NAMESPACE:  # a bug: every function of the table has one
            raise RuntimeError(f"no kernel for {type(expr).__name__}")
        return f"{name}({', '.join(self._print(arg) for arg in expr.args)})"

    def _partial(self, expr: Partial) -> str:
        name, orders, *point = expr.args
        printed = ", ".join(self._print(arg) for arg in point)
        return f"partial({name.name!r}, {tuple(int(k) for k in orders)!r}, {printed})"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:  # noqa: N802
        # Every branch is computed and the first true condition chooses (numpy has no short circuit).
        pairs = ", ".join(f"({self._print(cond)}, {self._print(value)})" for value, cond in expr.args)
        return f"piecewise({pairs})"

    def _print_And(self, expr: sympy.And) -> str:  # noqa: N802
        return "(" + " & ".join(self._print(arg) for arg in expr.args) + ")"

    def _print_Or(self, expr: sympy.Or) -> str:  # noqa: N802
        return "(" + " | ".join(self._print(arg) for arg in expr.args) + ")"

    def _print_Not(self, expr: sympy.Not) -> str:  # noqa: N802
        return f"(~{self._print(expr.args[0])})"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:  # noqa: N802
        base, exponent = expr.args
        if exponent is sympy.S.Half:
            return f"sqrt({self._print(base)})"
        if exponent is sympy.S.NegativeOne:
            return f"1/{self.parenthesize(base, PRECEDENCE['Pow'])}"
        if exponent.is_Integer and int(exponent) not in _NUMPY_FAST_EXPONENTS:
            n = int(exponent)
            if abs(n) <= _EXACT:
                return f"integer_power({self._print(base)}, {n})"
            if n % 2:
                return f"odd_power({self._print(base)}, {self._print(exponent)})"
        if _rounded_rational(exponent):
            p, q = exponent.as_numer_denom()
            return f"rational_power({self._print(base)}, {int(p)}, {int(q)})"
        if not exponent.is_Integer:
            # Also for a constant fractional exponent: IEEE says (-inf)^0.25 = inf, the rule NaN.
            # (One that only rounds to a whole number is `fractional_power`: `fold_constants`.)
            return f"power({self._print(base)}, {self._print(exponent)})"
        # A small one as an integer literal (`b**2`): numpy squares an array for it in long double
        # too, where for 2.0 it calls powl, which flags an overflow past 2^8192
        # (`widening._flagged_by_value`); a large one as a double (an int past them is an error).
        power = PRECEDENCE["Pow"]
        if int(exponent) in _NUMPY_FAST_EXPONENTS:  # 2: -1 is above, 0 and 1 sympy leaves no power of
            return f"{self.parenthesize(base, power)}**{int(exponent)}"
        return f"{self.parenthesize(base, power)}**{self.parenthesize(exponent, power)}"


def _rounded_rational(exponent: sympy.Expr) -> bool:
    """A small fraction p/q no double holds (q not a power of 2: 1/3, -2/3, 5/6): a root, then a
    power (`kernels.rational_power`), not a power of its rounding."""
    if not exponent.is_Rational or exponent.is_Integer:
        return False
    p, q = int(exponent.p), int(exponent.q)
    return q & (q - 1) != 0 and abs(p) <= _ROOT_THEN_POWER and q <= _ROOT_THEN_POWER


_ROOT_THEN_POWER = 12  # past it, the power's own rounding (about p ulps) outweighs the exponent's


# Nodes other than the table's functions that print as code of their own (below), not as kernel calls.
_PRINTED_HERE = (sympy.Piecewise, sympy.And, sympy.Or, sympy.Not)


def _double(number: sympy.Basic) -> float:
    if number is sympy.S.NaN or number is sympy.S.ComplexInfinity:
        return math.nan
    if number is sympy.S.Infinity:
        return math.inf
    if number is sympy.S.NegativeInfinity:
        return -math.inf
    if number.is_NumberSymbol:
        return float(reference.evaluate(number, prec=_FOLD_PREC))
    return reference.to_double(number)


def _literal(value: float) -> str:
    """A double as Python source: repr reads back exactly; negatives in parentheses (-2.0**x is -(2**x))."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "(-inf)"
    text = repr(value)
    return f"({text})" if value < 0 or text.startswith("-") else text


def numeric_refusal(parts: Sequence[sympy.Expr]) -> NoNumericForm | None:
    """Why `parts` cannot be compiled, or None: a derivative sympy leaves unevaluated that is not one
    of a table function by its own arguments (`reference.derivative_call`) has no numeric form."""
    for node in _distinct_nodes(part for part in parts if part.has(sympy.Derivative)):
        if isinstance(node, (sympy.Subs, sympy.Derivative)):
            try:
                reference.derivative_call(node)
            except reference.Unsupported:
                return _derivative_refusal(node)
    return None


def _derivative_refusal(node: sympy.Basic) -> NoNumericForm:
    """The refusal of a derivative without a numeric form, named by its function and argument as the
    text's refusal names it."""
    found = parsing.unwritable(node)
    function, argument = "Derivative", 0
    message = "the derivative has no closed form in our grammar"
    if found is not None:
        function, argument = found.metadata["function"], int(found.metadata.get("argument", "0"))
        message = found.message
    return NoNumericForm(
        f"{message}, and no numeric form either: its values cannot be computed",
        function=function,
        argument=argument,
    )


# The least `cost` of an expression that calls an mpmath kernel (its weight, less the node's 1).
MPMATH_COST = kernels.MPMATH_WEIGHT - 1


def cost(expr: sympy.Basic) -> int:
    """Extra cost per point of the expression's slow kernels, over one unit per node (`kernels.WEIGHTS`)."""
    extra = 0
    for node in _distinct_nodes([expr]):
        if isinstance(node, (sympy.Subs, sympy.Derivative)):
            extra += _partial_weight(node)
        elif isinstance(node, Application):
            extra += _weight(node) - 1
    return extra


# What one numpy call costs at one point, whatever it computes (operations of about 1 ns): a node of
# the code is one call.
CALL_COST = 1_000


def overhead(parts: Sequence[sympy.Expr]) -> int:
    """What one evaluation of `parts` as `prepare` wrote them costs besides its cost per point: a
    call per operation, and its kernels' fixed costs beyond that (`kernels.CALL_OVERHEADS`), which
    dominate at a few points. A 10 KB sum of 631 sines at one point was charged 4 us and took 7 ms on
    the event loop (tester round 7)."""
    total = 0
    for node in _distinct_nodes(parts):
        if node.args:  # an operation (symbols, numbers and kernel names have none)
            total += CALL_COST
            if isinstance(node, Application):
                total += kernels.CALL_OVERHEADS.get(_kernel_called(node), 0)
    return total


def _kernel_called(node: Application) -> str:
    if isinstance(node, Kernel):
        return str(node.args[0].name)
    return reference.kernel_name(node) or ""


def _distinct_nodes(roots: Iterable[sympy.Basic]) -> Iterator[sympy.Basic]:
    """Each distinct node below `roots` once (sympy shares subtrees: a walk of the tree repeats them).

    Below an unevaluated derivative only the point it is taken at: the derivative is one evaluation.
    """
    seen: set[sympy.Basic] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        if isinstance(node, sympy.Subs):
            stack.extend(node.args[2])
        elif isinstance(node, sympy.Derivative):
            stack.extend(node.expr.args)
        else:
            stack.extend(node.args)


def _partial_weight(node: sympy.Subs | sympy.Derivative) -> int:
    """mpmath differentiates numerically with about three evaluations per order; zeta's derivatives
    in s (and through them in a) grow as the order squared: at most 15 ms a point at order 1, 2.1 s
    at order 20, where numbers of both signs and every size were tried (kernels.pointwise_budget
    bounds what this estimate misses)."""
    try:
        name, orders, _ = reference.derivative_call(node)
    except reference.Unsupported:
        return kernels.WEIGHTS["partial"]
    if name == "zeta":
        return int(kernels.WEIGHTS["partial"] * (1 + sum(orders)) ** 2)
    return int(kernels.WEIGHTS["partial"] * 3 ** sum(orders))


def _weight(node: Application) -> int:
    name = _kernel_called(node)
    if name == "polygamma" and not _vectorised_order(node.args[0]):
        return kernels.MPMATH_WEIGHT
    if name == "zeta" and len(node.args) == 2 and (node.args[0] - 1).is_extended_positive is not True:
        return kernels.MPMATH_WEIGHT
    return kernels.WEIGHTS.get(name, 1)


def _vectorised_order(order: sympy.Basic) -> bool:
    return bool(order.is_Integer and 0 <= int(order) <= kernels.MAX_SCIPY_ORDER)


# `stable`'s rewrites, in the order they apply (declared last, as it names rules from all over).
_STABLE_REWRITES: tuple[tuple[_Query, _Rewrite], ...] = (
    # log(1 + u) holds both u and 1 + u (`kernels.log_one_plus`), each then written stably on
    # its own: the rules below rewrite the sum itself (1 - e^-x as -expm1(-x)), and log1p needs u.
    # Sums that cancel over a shared denominator are combined as sympy wrote them, before the
    # rules below rewrite their terms into kernels that `together` cannot see into (the
    # derivative of e x/(e^x - x) holds e^x - 1, which became expm1(x), and its two terms, each
    # about e/x, then cancelled in float64: NaN, truth 0.0, at x = -67006, make fuzz).
    (_may_combine, _combined_or_same),
    # Before the rules below rewrite 1 + u (1 + sin(x) as one_minus_sin(-x): then inf at 1e-17).
    (_zeta_of_one_plus, _zeta_near_pole),
    (_zeta_less_one, _zeta_less_one_written),
    # Where gamma is past the doubles its sign is still known (`kernels.gamma_sign`).
    (_step_of_gamma, _step_of_gamma_sign),
    # Logs of exponentials first: log(1 + e^x) is not log1p(e^x) where e^x is past every double.
    # log(sech(u)) is -log(cosh(u)), which has its log domain: sech is 0 from u = 710 on
    # (log(sech(x)) at 800 was NaN; a hunt, 2026-12-05).
    (_log_of_sech, _minus_log_cosh),
    (_log_of_exponentials, _in_log_domain),
    (_inverse_of_exponentials, _inverse_in_log_domain),
    (_log_of_one_plus, _log_one_plus),
    # Inverse functions next to +-1 from their arguments as written, before those are rewritten
    # below: 1 - x^2 becomes (1 - x)(1 + x), whose 1 - u has no rule (acos(1 - x^2) at 1e-12 was
    # 0.0, truth 1.4e-12; a hunt, 2026-12-05). Those no rule writes are looked at again below.
    # acoth(u) and asech(u) go through the rules of atanh(1/u) and acosh(1/u) (acoth(coth(x)) at
    # 20 was inf, asech(sech(x)) at 1e-9 0.0; a hunt).
    (_is_acoth_or_asech, _reciprocal_inverse),
    # (1 + u)^p for a varying p from its base as written, before a rule writes 1 + u as a product
    # (1 + sin(x)^5 as (1 + sin(x))(1 - sin(x) + ...)) whose u no one sees.
    (_power_of_a_sum, _power_of_one_plus_or_same),
    (_is_inverse_at_one, _stable_node),
    (_unstable, _stable_node),
    (_log_one_plus_of_erfc, _log_erfc),
    (_log_one_plus_of_exponentials, _log_one_plus_in_log_domain),
    (_unchanged_log_one_plus, _plain_log),
    (_log_of_a_power, _computed_log),
    # After the rules above, which see sums as written (1 - x^2 next to +-1 as (1 - x)(1 + x)).
    (polynomial_roots.is_factorable, _in_real_roots_or_same),
    # Last, so that the rules above still see sin and cos (1 - cos(pi x) as 2 sin(pi x/2)^2
    # first), and the powers as written (a power in its log domain first hid sqrt(3 + e^x) -
    # e^(x/2) from the rule for differences of roots: 1048576.0 at 100).
    (_of_pi_times, _in_half_turns),
    (_power_of_exponentials, _power_in_log_domain),
    # Again: the rules above write zeta(u) - 1 anew (zeta(u)^2 - 1 as (zeta(u) - 1)(zeta(u) + 1),
    # 1/zeta(u) - 1 with it inside `one_less_power_of`): 0.0 at 60, truth 1.7e-18 (a hunt).
    (_zeta_less_one, _zeta_less_one_written),
)
