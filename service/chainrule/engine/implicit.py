"""Implicit differentiation: d^k y/dx^k where an equation F(x, y) = 0 defines y as a function of x.

Differentiating F(x, y(x)) = 0 by x with the chain rule gives F_x + F_y·y' = 0, so y' = -F_x/F_y,
an expression in x and y. Each higher derivative differentiates the one before it the same way (d/dx
of G(x, y) is G_x + G_y·y') and substitutes y', so every order is an expression in x and y only. The
result holds on every level set F = c, so it is evaluated at any (x, y) the caller gives: nothing is
solved, and a point off the curve is not an error.

Errors name the engine's arguments: `expression` (the equation), `dependent`, `wrt`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from chainrule.engine import parsing, symbolic
from chainrule.engine.errors import InvalidArgument
from chainrule.engine.limits import EngineLimits

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
    """y' = -F_x/F_y."""
    return sympy.factor_terms(
        -symbolic.derivative(function, target.variable) / symbolic.derivative(function, target.dependent)
    )


def implicit_derivative(
    function: sympy.Expr,
    target: Implicit,
    simplification: symbolic.Simplification = symbolic.Simplification.FAST,
    limits: EngineLimits = symbolic.DEFAULT_LIMITS,
) -> sympy.Expr:
    """d^order y/dx^order for the equation `function` = 0, in terms of x and y."""
    try:
        first = first_derivative(function, target)
        symbolic.check_size(first, limits)
        current = first
        for _ in range(target.order - 1):
            # Tidied at each order: the next one differentiates it again.
            current = _combined(total_derivative(current, target, first, limits))
        return symbolic.simplify(current, simplification)
    except RecursionError:
        raise InvalidArgument(
            "the expression is nested too deeply to differentiate", field="expression"
        ) from None


_MULTIPLIED_OUT_TERMS = 20_000


def _combined(derivative: sympy.Expr) -> sympy.Expr:
    """One fraction whose numerator's like terms are combined: each order substitutes y' into the one
    before, and terms that cancel exactly stayed apart, to cancel in floating point when evaluated:
    for log(1 + e^y) = x, (e^y + 1)e^-y - 1 is e^-y, 0.0 at y = 40, so y'' was 0.0 there (truth
    -4.2e-18) and the third derivative at y = 400 had the wrong sign (an independent hunt, 2026-12-06).

    Multiplied out only where that is no larger and the numerator has no roots: (x - r)^3 with
    r = sqrt(x^2 + y^2) multiplied out cancels where r is near x (sqrt(x^2 + y^2) = 1 + x, y'' at
    (105.6, -0.004) was 1.7e-5 for 9.2e-8), where as a power it is one small difference cubed. And
    only where the product has at most _MULTIPLIED_OUT_TERMS terms: a power of a long sum multiplies
    out into millions (sympy takes seconds for tens of thousands)."""
    combined = sympy.together(derivative)
    numerator, denominator = sympy.fraction(combined)
    size = symbolic.expression_size(numerator)
    if _has_root(numerator) or _terms_multiplied_out(numerator) > _MULTIPLIED_OUT_TERMS:
        return sympy.factor_terms(combined)
    expanded = sympy.expand(numerator)
    if symbolic.expression_size(expanded) > size:
        return sympy.factor_terms(combined)
    return sympy.factor_terms(expanded / denominator)


def _has_root(expr: sympy.Expr) -> bool:
    return any(not power.exp.is_integer for power in expr.atoms(sympy.Pow))


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
