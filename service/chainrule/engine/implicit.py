"""Implicit differentiation: d^k y/dx^k where an equation F(x, y) = 0 defines y as a function of x.

Differentiating F(x, y(x)) = 0 by x with the chain rule gives F_x + F_y·y' = 0, so y' = -F_x/F_y,
an expression in x and y. Each higher derivative differentiates the one before it the same way (d/dx
of G(x, y) is G_x + G_y·y') and substitutes y', so every order is an expression in x and y only:
it is built in symbols for F's partial derivatives, then they are put in (`implicit_derivative`).
The result holds on every level set F = c, so it is evaluated at any (x, y) the caller gives:
nothing is solved, and a point off the curve is not an error.

Errors name the engine's arguments: `expression` (the equation), `dependent`, `wrt`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.polys.polyerrors import BasePolynomialError

from chainrule.engine import parsing, symbolic
from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.engine.limits import EngineLimits, exceeded

__all__ = ["Implicit", "implicit_derivative", "prime", "resolve"]


@dataclass(frozen=True)
class Implicit:
    """What to differentiate: y = `dependent` as a function of x = `variable`, `order` times."""

    variable: sympy.Symbol
    dependent: sympy.Symbol
    order: int


def equation_function(lhs: sympy.Expr, rhs: sympy.Expr) -> sympy.Expr:
    """F of the equation lhs = rhs, written F = 0."""
    return lhs - rhs if rhs != 0 else lhs


def resolve(
    function: sympy.Expr,
    dependent: str,
    wrt: Sequence[tuple[str, int]],
    limits: EngineLimits = symbolic.DEFAULT_LIMITS,
) -> Implicit:
    """Check `dependent` and `wrt` against the equation F = 0; an empty `wrt` is its only other variable."""
    parsing.symbol(dependent, field="dependent")  # a valid name, or an error saying why not
    names = symbolic.free_variables(function)
    if not names:  # y = y, x + y = x + y: F is a constant once its terms cancel
        holds = (
            "holds for every value (its two sides are the same)"
            if function == 0
            else f"never holds (its sides differ by the constant {parsing.to_text(function)})"
        )
        raise InvalidArgument(
            f"the equation {holds}, so it does not define '{dependent}'", field="expression"
        )
    if dependent not in names:
        raise InvalidArgument(
            f"'{dependent}' does not occur in the equation, so the equation does not define it",
            field="dependent",
        )
    if len(wrt) > 1:
        raise InvalidArgument(
            "implicit differentiation takes one variable to differentiate by (its order is the "
            "derivative's order)",
            field="wrt",
        )
    if not wrt:
        others = [name for name in names if name != dependent]
        if not others:  # y^2 = 25: y is a constant where the equation holds
            raise InvalidArgument(
                f"the equation has no variable besides '{dependent}', so it fixes '{dependent}' at "
                "constant values: there is nothing to differentiate it by",
                field="expression",
            )
        if len(others) != 1:
            raise InvalidArgument(
                f"say which variable '{dependent}' is a function of (the equation's others: "
                f"{', '.join(others)})",
                field="wrt",
            )
        wrt = ((others[0], 1),)
    ((name, order),) = symbolic.resolve_wrt(function, wrt, limits)
    if name == dependent:
        raise InvalidArgument(
            f"'{dependent}' is the dependent variable: differentiate it by another variable",
            field="dependent",
        )
    if name not in names:  # its derivative would be 0 whatever the equation: most likely a typo
        listed = ", ".join(other for other in names if other != dependent) or "none"
        raise InvalidArgument(
            f"'{name}' does not occur in the equation, so '{dependent}' does not depend on it (the "
            f"equation's other variables: {listed})",
            field="wrt[0].variable",
        )
    target = Implicit(_symbol_in(function, name), _symbol_in(function, dependent), order)
    # Beside its jumps (a sign, a Heaviside) dF/dy is its part without their deltas: sign(y) = x
    # had y' = 1/(2 DiracDelta(y)), served as inf (an independent hunt, 2026-12-06).
    slope = symbolic.derivative(function, target.dependent)
    if slope.replace(sympy.DiracDelta, lambda *_: sympy.S.Zero) == 0:
        raise InvalidArgument(
            f"the equation does not change with '{dependent}' (dF/d{dependent} is 0), so it does not "
            "define it",
            field="dependent",
        )
    return target


def _symbol_in(expr: sympy.Expr, name: str) -> sympy.Symbol:
    found = next((s for s in expr.free_symbols if s.name == name), None)
    return found if isinstance(found, sympy.Symbol) else sympy.Symbol(name, real=True)


def prime(dependent: sympy.Symbol) -> sympy.Symbol:
    """The symbol y' that stands for d(dependent)/dx in explanations (no variable can be named so)."""
    return sympy.Symbol(f"{dependent.name}'", real=True)


def total_derivative(
    expr: sympy.Expr, target: Implicit, slope: sympy.Expr, limits: EngineLimits = symbolic.DEFAULT_LIMITS
) -> sympy.Expr:
    """d/dx of expr(x, y(x)) = expr_x + expr_y · `slope`, where `slope` stands for y'."""
    total = symbolic.derivative(expr, target.variable) + symbolic.derivative(expr, target.dependent) * slope
    symbolic.check_size(total, limits)
    return total


def first_derivative(function: sympy.Expr, target: Implicit) -> sympy.Expr:
    """y' = -F_x/F_y, with the factors F_x and F_y share cancelled where that makes it smaller:
    exp(x y) = x y has y' = -y/x, and each order taken on the uncancelled form grew past the size
    limit by the seventh (a regression hunt, 2026-12-06); a small ratio only (`cancel` multiplies
    out, and its time grows with the functions called)."""
    ratio = -symbolic.derivative(function, target.variable) / symbolic.derivative(function, target.dependent)
    tidied = sympy.factor_terms(ratio)
    if symbolic.expression_size(ratio) > _CANCELLED_SIZE:
        return tidied
    try:
        cancelled = sympy.factor_terms(sympy.cancel(ratio))
    except BasePolynomialError:  # sympy's gcd gave up ("no luck"): the ratio as it is
        return tidied
    return cancelled if symbolic.expression_size(cancelled) < symbolic.expression_size(tidied) else tidied


# The nodes of -F_x/F_y up to which its common factors are cancelled (`first_derivative`).
_CANCELLED_SIZE = 200


def implicit_derivative(
    function: sympy.Expr,
    target: Implicit,
    simplification: symbolic.Simplification = symbolic.Simplification.FAST,
    limits: EngineLimits = symbolic.DEFAULT_LIMITS,
) -> sympy.Expr:
    """d^order y/dx^order for the equation `function` = 0, in terms of x and y: the smaller of two
    forms, each where it is within the size limit.

    Order by order (`_order_by_order`), each differentiating the one before, cancels what F's
    partials share (exp(x y) = 2: y' = -y/x, y^(k) = (-1)^k k! y/x^k) but keeps apart terms that
    cancel exactly, to cancel in floating point: for log(1 + e^y) = x, (e^y + 1)e^-y - 1 is e^-y,
    0.0 at y = 40, so y'' was 0.0 there (truth -4.2e-18) and the third derivative at 400 had the
    wrong sign (an independent hunt, 2026-12-06). The general formula in F's partials
    (`_by_partials`) combines those, -(e^y + 1)e^-2y, but not what the partials share: for
    exp(x y) = 2 its third was -6y(-x^2 y^2 + 2xy(xy + 1) - (xy + 1)^2)/x^3, 0.0 at (1e4, 1e4)
    (a regression hunt). The smaller form has fewer terms to cancel: in the hunts' cases it was
    the better one but next to a branch point, where both cancel (x = acosh(y)'s fifth at
    y = 1.000001 is 9e-3 off; docs/accuracy.md)."""
    try:
        forms: list[sympy.Expr] = []
        refusal: LimitExceeded | None = None
        for form in (_by_partials, _order_by_order):
            try:
                forms.append(form(function, target, limits))
            except LimitExceeded as refused:
                refusal = refused
        if not forms:
            assert refusal is not None
            raise refusal
        derivative = min(forms, key=symbolic.expression_size)
        return symbolic.simplify(derivative, simplification)
    except RecursionError:
        raise InvalidArgument(
            "the expression is nested too deeply to differentiate", field="expression"
        ) from None


def _order_by_order(function: sympy.Expr, target: Implicit, limits: EngineLimits) -> sympy.Expr:
    """y^(k): y' differentiated k - 1 times (d/dx of G(x, y) is G_x + G_y·y'), tidied at each order."""
    first = first_derivative(function, target)
    symbolic.check_size(first, limits)
    current = first
    for _ in range(target.order - 1):
        current = sympy.factor_terms(total_derivative(current, target, first, limits))
    return current


def _by_partials(function: sympy.Expr, target: Implicit, limits: EngineLimits) -> sympy.Expr:
    """y^(k) = N_k/F_y^(2k - 1), N_k a polynomial in F's partial derivatives F_ij (i times by x, j
    times by y), built in symbols standing for them: N_1 = -F_x and, as d/dx of F_ij is
    F_(i+1)j + F_i(j+1)·y', N_(k+1) = F_y·sum_ij dN_k/dF_ij (F_(i+1)j F_y - F_i(j+1) F_x)
    - (2k - 1) N_k (F_xy F_y - F_yy F_x) (the circle's y'' is -(F_xx F_y^2 - 2 F_xy F_x F_y
    + F_yy F_x^2)/F_y^3). Its like terms combine exactly; the partials, each with its own like
    terms combined (`_combined`), are put in at the end."""
    x, y = target.variable, target.dependent
    partials = _partials(function, x, y, target.order, limits)
    names = [index for index, value in partials.items() if not value.is_Rational]
    ring, *generators = sympy.polys.rings.ring([f"F{i}_{j}" for i, j in names], sympy.QQ)
    by_index = dict(zip(names, generators, strict=True))

    def partial(i: int, j: int) -> Any:
        generator = by_index.get((i, j))
        return ring(partials[i, j]) if generator is None else generator

    # The formula's size once the partials are put in, checked before they are (a formula of
    # 10,000 terms in partials of some hundred nodes each took half a minute to build and refuse).
    sizes = [symbolic.expression_size(partials[index]) for index in names]

    def check_size(numerator: Any) -> None:
        size = sum(sum(map(operator.mul, powers, sizes)) for powers in numerator.itermonoms())
        if size > limits.max_derivative_nodes:
            what = "the derivative grows too large"
            raise exceeded(limits, "max_derivative_nodes", size, field="wrt", what=what)

    fx, fy = partial(1, 0), partial(0, 1)
    numerator = -fx
    for k in range(1, target.order):
        chain = sum(
            (
                numerator.diff(by_index[i, j]) * (partial(i + 1, j) * fy - partial(i, j + 1) * fx)
                for i, j in names
                if i + j <= k
            ),
            ring.zero,
        )
        numerator = fy * chain - (2 * k - 1) * numerator * (partial(1, 1) * fy - partial(0, 2) * fx)
        check_size(numerator)
    formula = numerator.as_expr() / fy.as_expr() ** (2 * target.order - 1)
    values = {symbol: _combined(partials[index]) for index, symbol in zip(names, ring.symbols, strict=True)}
    derivative = sympy.factor_terms(formula.xreplace(values))
    symbolic.check_size(derivative, limits)
    return derivative


def _partials(
    function: sympy.Expr, x: sympy.Symbol, y: sympy.Symbol, order: int, limits: EngineLimits
) -> dict[tuple[int, int], sympy.Expr]:
    """F's partial derivatives F_ij for 1 <= i + j <= order, each from one of lower order."""
    found: dict[tuple[int, int], sympy.Expr] = {(0, 0): function}
    for total in range(1, order + 1):
        for i in range(total, -1, -1):
            j = total - i
            lower, variable = ((i - 1, j), x) if i else ((i, j - 1), y)
            found[i, j] = symbolic.derivative(found[lower], variable)
            symbolic.check_size(found[i, j], limits)
    del found[0, 0]
    return found


_MULTIPLIED_OUT_TERMS = 20_000


def _combined(derivative: sympy.Expr) -> sympy.Expr:
    """A partial derivative of F as one fraction whose numerator's like terms in the functions it
    calls are combined: F_yy of log(1 + e^y) is e^y/(1 + e^y) - e^2y/(1 + e^y)^2 as differentiated,
    whose terms cancel in floating point (to 0.0 at y = 40), and e^y/(1 + e^y)^2 combined.

    Multiplied out as a polynomial in those calls only (`_frozen`): the parts of the numerator that
    call no function stay as they are, as multiplied out they cancel where they are small against
    their terms ((x - 1000)^5, or (x - r)^3 with r = sqrt(x^2 + y^2) where r is near x). Kept only
    where that is no larger, and only where the product has at most _MULTIPLIED_OUT_TERMS terms: a
    power of a long sum multiplies out into millions (sympy takes seconds for tens of thousands)."""
    combined = sympy.together(derivative)
    numerator, denominator = sympy.fraction(combined)
    parts: dict[sympy.Expr, sympy.Dummy] = {}
    frozen, calls = _frozen(numerator, parts)
    if not calls or _terms_multiplied_out(frozen) > _MULTIPLIED_OUT_TERMS:
        return sympy.factor_terms(combined)
    thawed = {dummy: part for part, dummy in parts.items()}
    expanded = sympy.expand(frozen).xreplace(thawed)
    if symbolic.expression_size(expanded) > symbolic.expression_size(numerator):
        return sympy.factor_terms(combined)
    return sympy.factor_terms(expanded / denominator)


def _frozen(expr: sympy.Expr, parts: dict[sympy.Expr, sympy.Dummy]) -> tuple[sympy.Expr, bool]:
    """`expr` as a polynomial in symbols standing for its function calls (and roots of what calls
    one) and for its parts that call none, each part a symbol of its own (`parts`); and whether it
    calls a function."""
    if expr.is_Atom:
        return expr, False
    if isinstance(expr, sympy.Function):
        return parts.setdefault(expr, sympy.Dummy()), True
    frozen = [_frozen(arg, parts) for arg in expr.args]
    if not any(calls for _, calls in frozen):
        return parts.setdefault(expr, sympy.Dummy()), False
    if isinstance(expr, sympy.Pow) and not expr.exp.is_Integer:
        return parts.setdefault(expr, sympy.Dummy()), True
    return expr.func(*(arg for arg, _ in frozen)), True


def _terms_multiplied_out(expr: sympy.Expr) -> int:
    """How many terms `expr` has once its products and whole powers are multiplied out, at most
    (before like terms combine): a sum adds its terms' counts, a product multiplies them, and a
    power n of a sum of k terms has C(k + n - 1, n)."""
    if isinstance(expr, sympy.Add):
        return sum(_terms_multiplied_out(term) for term in expr.args)
    if isinstance(expr, sympy.Mul):
        return math.prod(_terms_multiplied_out(factor) for factor in expr.args)
    if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp > 1:
        return math.comb(_terms_multiplied_out(expr.base) + int(expr.exp) - 1, int(expr.exp))
    return 1
