"""Step-by-step derivations: which rule applies to which subexpression, the chain rule spelled out per layer.

`explain(expr, wrt)` walks the expression as the differentiator does and records one `Step` per
distinct subexpression that depends on the variable (shared subexpressions are explained once and
referred to by index). Constants inside sums get a step of their own (their derivative is 0);
constant factors of a product are folded into a constant-multiple step.

A chain step is recorded wherever a function is applied to something other than the bare variable:
it names the outer function f(u), the inner function u = g(x), f'(u), the outer derivative evaluated
at the inner function f'(g(x)), the inner derivative g'(x) and their product, plus `factors`: one
factor per layer of a nest (sin(cos(exp(x²))) has four).

Higher orders and mixed partials are explained pass by pass, in the order of `wrt`: pass n
differentiates pass n-1's (tidied) result, so every order is derived, not asserted. Past
`max_steps` steps, or for a pass whose input is larger than `max_pass_nodes`, a pass is stated as
one SUMMARY step giving its result. When the last pass's result is not literally the returned
derivative (the engine simplifies once at the end), a final SIMPLIFY step rewrites it.

Implicit differentiation (`explain_implicit`) treats the dependent variable y as a function of x: each
occurrence of y gets an IMPLICIT step d/dx y = y', so d/dx y² is a chain step 2y·y'. Then both sides
of the equation are differentiated, the result is solved for y', and each higher order differentiates
the previous one the same way and substitutes y'.

The last step's result equals the returned derivative: this is checked (structurally, else
numerically at random points with `verify.same_function`, else by `sympy.simplify`) and a
disagreement raises `StepsMismatchError`, an `InternalError`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import sympy
from sympy.core.function import AppliedUndef
from sympy.core.parameters import evaluate
from sympy.polys.polyerrors import BasePolynomialError

from chainrule.engine import functions, implicit, parsing, symbolic, verify
from chainrule.engine.errors import InternalError, InvalidArgument

__all__ = [
    "Chain",
    "Formula",
    "Rule",
    "Step",
    "StepsMismatchError",
    "explain",
    "explain_implicit",
    "format_steps",
]

MAX_STEPS = 300
MAX_PASS_NODES = 2_000
_SIMPLIFY_CHECK_NODES = 400
# How closely the steps' result and the derivative agree when either holds a float: a million
# roundings of a double's 2^-53, far above what regrouping costs and far below any real mistake.
_FLOAT_AGREEMENT = 1e-10


class Rule(enum.Enum):
    """The rule a step applies."""

    CONSTANT = "constant"
    VARIABLE = "variable"
    SUM = "sum"
    CONSTANT_MULTIPLE = "constant multiple"
    PRODUCT = "product"
    QUOTIENT = "quotient"
    POWER = "power"
    CHAIN = "chain"
    EXP = "exponential"
    LOG = "logarithm"
    TRIG = "trigonometric"
    INVERSE_TRIG = "inverse trigonometric"
    HYPERBOLIC = "hyperbolic"
    GENERAL_POWER = "general power"
    PIECEWISE = "piecewise"
    SPECIAL = "special function"
    OTHER = "other"
    SIMPLIFY = "simplify"
    SUMMARY = "summary"
    IMPLICIT = "implicit"


@dataclass(frozen=True)
class Formula:
    """One expression, as text in chainrule's grammar and as LaTeX."""

    text: str
    latex: str


@dataclass(frozen=True)
class Chain:
    """The chain rule at one layer: d/dx f(g(x)) = f'(g(x)) · g'(x)."""

    outer_rule: Rule
    outer: Formula
    inner: Formula
    outer_derivative_of_u: Formula
    outer_derivative: Formula
    inner_derivative: Formula
    product: Formula
    factors: tuple[Formula, ...]


@dataclass(frozen=True)
class Step:
    """One step: `rule` turns d/d`variable` of `expression` into `result`, using steps `depends_on`."""

    rule: Rule
    variable: str
    order: int
    expression: Formula
    result: Formula
    depends_on: tuple[int, ...]
    description: str
    chain: Chain | None = None


class StepsMismatchError(InternalError):
    """The explanation's last result differs from the derivative returned: a bug, never the caller's."""


@dataclass
class _Raw:
    """A step while it is being built: sympy values, rendered to `Step` at the end."""

    rule: Rule
    variable: str
    order: int
    expression: sympy.Expr
    value: sympy.Expr
    depends_on: tuple[int, ...]
    description: str
    chain: _RawChain | None = None


@dataclass
class _RawChain:
    outer_rule: Rule
    outer: sympy.Expr
    inner: sympy.Expr
    outer_derivative_of_u: sympy.Expr
    outer_derivative: sympy.Expr
    inner_derivative: sympy.Expr
    factors: tuple[sympy.Expr, ...]


_TRIG = (sympy.sin, sympy.cos, sympy.tan, sympy.sec, sympy.csc, sympy.cot)
_INVERSE_TRIG = (sympy.asin, sympy.acos, sympy.atan, sympy.asec, sympy.acsc, sympy.acot, sympy.atan2)
_HYPERBOLIC = (
    sympy.sinh, sympy.cosh, sympy.tanh, sympy.sech, sympy.csch, sympy.coth,
    sympy.asinh, sympy.acosh, sympy.atanh, sympy.asech, sympy.acsch, sympy.acoth,
)  # fmt: skip
_PIECEWISE = (
    sympy.Abs, sympy.sign, sympy.floor, sympy.ceiling, sympy.Heaviside,
    sympy.Min, sympy.Max, sympy.re, sympy.im,
)  # fmt: skip
_RULE_NAMES = {
    Rule.POWER: "power rule",
    Rule.EXP: "exponential rule",
    Rule.LOG: "logarithm rule",
    Rule.TRIG: "trigonometric rule",
    Rule.INVERSE_TRIG: "inverse trigonometric rule",
    Rule.HYPERBOLIC: "hyperbolic rule",
    Rule.PIECEWISE: "piecewise rule",
    Rule.SPECIAL: "special function rule",
}


def explain(
    expr: sympy.Expr,
    wrt: Sequence[tuple[str, int]],
    derivative: sympy.Expr | None = None,
    simplification: symbolic.Simplification = symbolic.Simplification.FAST,
    limits: symbolic.EngineLimits = symbolic.DEFAULT_LIMITS,
    *,
    max_steps: int = MAX_STEPS,
    max_pass_nodes: int = MAX_PASS_NODES,
) -> list[Step]:
    """The derivation of d`expr`/d`wrt`, ending in `derivative` (computed by the engine when None)."""
    resolved = symbolic.resolve_wrt(expr, wrt, limits)
    if derivative is None:
        derivative = symbolic.differentiate(expr, resolved, simplification, limits)
    refusal = parsing.unwritable(derivative)
    if refusal is not None:  # no closed form: no steps to write either (errors.NoClosedForm)
        raise refusal
    if derivative is sympy.nan and expr.has(*symbolic.UNDEFINED):
        # Defined nowhere (1/0, log(x, 1)): one step, not the rules' 0 for a constant term, which
        # ended elsewhere than the derivative and failed the call (an independent hunt, 2026-12-06).
        variable, order = resolved[0] if resolved else ("", 1)
        why = "it has no value anywhere (it holds 1/0 or 0/0), so it has no derivative either"
        return [_render(_Raw(Rule.CONSTANT, variable, order, expr, derivative, (), why))]
    try:
        raw = _derive(expr, resolved, max_steps, max_pass_nodes)
    except RecursionError:
        raise InvalidArgument("the expression is nested too deeply to explain", field="expression") from None
    return _ending_in(raw, derivative)


def _ending_in(raw: list[_Raw], derivative: sympy.Expr) -> list[Step]:
    """The steps, with a SIMPLIFY step to `derivative` when the last result is not literally it."""
    final = raw[-1].value
    if final != derivative:
        _check_same(final, derivative)
        raw.append(
            _Raw(
                Rule.SIMPLIFY, raw[-1].variable, raw[-1].order, final, derivative, (len(raw) - 1,), "simplify"
            )
        )
    return [_render(step) for step in raw]


def _derive(
    expr: sympy.Expr, resolved: Sequence[tuple[str, int]], max_steps: int, max_nodes: int
) -> list[_Raw]:
    raw: list[_Raw] = []
    passes = [name for name, order in resolved for _ in range(order)]
    if not passes:
        raw.append(_Raw(Rule.CONSTANT, "", 1, expr, sympy.S.Zero, (), "a constant: its derivative is 0"))
        return raw
    symbols = {symbol.name: symbol for symbol in expr.free_symbols}
    dummy = _dummy(expr)
    current = expr
    for order, name in enumerate(passes, start=1):
        variable = symbols.get(name) or sympy.Symbol(name, real=True)
        if len(raw) < max_steps and symbolic.expression_size(current) <= max_nodes:
            _Explainer(variable, order, raw, dummy).visit(current)
        else:
            value = sympy.factor_terms(symbolic.derivative(current, variable))
            depends = (len(raw) - 1,) if raw else ()
            note = f"differentiate by {name} again (order {order}); the steps are not listed"
            raw.append(_Raw(Rule.SUMMARY, name, order, current, value, depends, note))
        current = raw[-1].value
    return raw


def _dummy(expr: sympy.Expr) -> sympy.Symbol:
    """The name of the inner function's variable: `u`, unless the expression already uses it."""
    taken = {symbol.name for symbol in expr.free_symbols}
    candidates = ["u", "v", "w", *(f"u{index}" for index in range(len(taken) + 1))]
    return sympy.Symbol(next(name for name in candidates if name not in taken), real=True)


class _Explainer(symbolic.DependsOn):
    """One pass: d/d`variable` of an expression, one step per distinct dependent subexpression."""

    def __init__(self, variable: sympy.Symbol, order: int, steps: list[_Raw], dummy: sympy.Symbol) -> None:
        super().__init__(variable)
        self.order = order
        self.steps = steps
        self.dummy = dummy
        self.memo: dict[sympy.Basic, int] = {}

    def visit(self, node: sympy.Expr) -> int:
        found = self.memo.get(node)
        if found is None:
            found = self._explain(node)
            self.memo[node] = found
        return found

    def value(self, index: int) -> sympy.Expr:
        return self.steps[index].value

    def add(
        self,
        rule: Rule,
        node: sympy.Expr,
        value: sympy.Expr,
        depends: Sequence[int],
        description: str,
        *,
        chain: _RawChain | None = None,
    ) -> int:
        tidy = sympy.factor_terms(value)
        name = self.variable.name
        self.steps.append(_Raw(rule, name, self.order, node, tidy, tuple(depends), description, chain))
        return len(self.steps) - 1

    def _explain(self, node: sympy.Expr) -> int:
        x = self.variable.name
        if not self.has(node):
            return self.add(Rule.CONSTANT, node, sympy.S.Zero, (), f"a constant: d/d{x} of it is 0")
        if node == self.variable:
            return self.add(Rule.VARIABLE, node, sympy.S.One, (), f"d/d{x} {x} = 1")
        if isinstance(node, sympy.Add):
            terms = [self.visit(arg) for arg in node.args]
            value = sympy.Add(*[self.value(term) for term in terms])
            return self.add(Rule.SUM, node, value, terms, "sum rule: differentiate term by term")
        if isinstance(node, sympy.Mul):
            return self._product(node)
        if isinstance(node, sympy.Pow):
            return self._power(node)
        if _explainable_function(node):
            dependent = [index for index, arg in enumerate(node.args) if self.has(arg)]
            if len(dependent) == 1:
                return self._applied(node, dependent[0], _function_rule(node))
        # Several arguments depend on the variable, or a node without a rule of its own here.
        value = self.derivative(node)
        return self.add(Rule.OTHER, node, value, (), f"d/d{x} by the rules for {type(node).__name__}")

    def derivative(self, node: sympy.Expr) -> sympy.Expr:
        """The derivative of a node the rules here do not take apart."""
        return symbolic.derivative(node, self.variable)

    def _product(self, node: sympy.Mul) -> int:
        constants = [factor for factor in node.args if not self.has(factor)]
        factors = [factor for factor in node.args if self.has(factor)]
        if constants:
            constant = sympy.Mul(*constants)
            inner = self.visit(sympy.Mul(*factors))
            text = parsing.to_text(constant)
            note = f"constant multiple rule: {text} times the derivative of the rest"
            return self.add(Rule.CONSTANT_MULTIPLE, node, constant * self.value(inner), (inner,), note)
        below = [_reciprocal(factor) for factor in factors if _is_reciprocal(factor)]
        above = [factor for factor in factors if not _is_reciprocal(factor)]
        if below and above:
            top, bottom = sympy.Mul(*above), sympy.Mul(*below)
            i_top, i_bottom = self.visit(top), self.visit(bottom)
            value = (self.value(i_top) * bottom - top * self.value(i_bottom)) / bottom**2
            note = "quotient rule: (u/v)' = (u'v - uv')/v^2"
            return self.add(Rule.QUOTIENT, node, value, (i_top, i_bottom), note)
        parts = [self.visit(factor) for factor in factors]
        value = sympy.Add(
            *[sympy.Mul(*factors[:i], self.value(part), *factors[i + 1 :]) for i, part in enumerate(parts)]
        )
        return self.add(Rule.PRODUCT, node, value, parts, "product rule: (uv)' = u'v + uv'")

    def _power(self, node: sympy.Pow) -> int:
        base, exponent = node.args
        if not self.has(exponent):
            return self._applied(node, 0, Rule.POWER)
        if not self.has(base):
            return self._applied(node, 1, Rule.EXP)
        i_base, i_exponent = self.visit(base), self.visit(exponent)
        value = node * (self.value(i_exponent) * sympy.log(base) + exponent * self.value(i_base) / base)
        note = "general power rule: (u^v)' = u^v (v' ln(u) + v u'/u)"
        return self.add(Rule.GENERAL_POWER, node, value, (i_base, i_exponent), note)

    def _applied(self, node: sympy.Expr, index: int, rule: Rule) -> int:
        """f(g(x)) with g the argument at `index`: the rule for f directly, or the chain rule."""
        inner = node.args[index]
        u = self.dummy
        outer = node.func(*[u if i == index else arg for i, arg in enumerate(node.args)])
        outer_derivative_of_u = symbolic.derivative(outer, u)
        x = self.variable.name
        if inner == self.variable:
            value = outer_derivative_of_u.xreplace({u: inner})
            note = f"{_RULE_NAMES[rule]}: d/d{x} {parsing.to_text(node)} = {parsing.to_text(value)}"
            return self.add(rule, node, value, (), note)
        i_inner = self.visit(inner)
        inner_derivative = self.value(i_inner)
        # Shown as written: f'(u) with u replaced by g(x), not re-simplified (2(3x + 1), not 6x + 2).
        with evaluate(False):
            shown = outer_derivative_of_u.xreplace({u: inner})
        below = self.steps[i_inner].chain
        factors = (shown, *below.factors) if below is not None else (shown, inner_derivative)
        chain = _RawChain(rule, outer, inner, outer_derivative_of_u, shown, inner_derivative, factors)
        value = outer_derivative_of_u.xreplace({u: inner}) * inner_derivative
        note = (
            f"chain rule: f(u) = {parsing.to_text(outer)} with u = {parsing.to_text(inner)}; "
            f"d/d{x} f(g({x})) = f'(g({x})) g'({x})"
        )
        return self.add(Rule.CHAIN, node, value, (i_inner,), note, chain=chain)


class _ImplicitExplainer(_Explainer):
    """A pass of implicit differentiation: the dependent variable y is a function of x, d/dx y = y'."""

    def __init__(self, target: implicit.Implicit, order: int, steps: list[_Raw], dummy: sympy.Symbol) -> None:
        super().__init__(target.variable, order, steps, dummy)
        self.target = target
        self.slope = implicit.prime(target.dependent)

    def has(self, node: sympy.Basic) -> bool:
        found = self.depends.get(node)
        if found is None:
            found = (
                node in (self.variable, self.target.dependent)
                if not node.args
                else any(self.has(arg) for arg in node.args)
            )
            self.depends[node] = found
        return found

    def _explain(self, node: sympy.Expr) -> int:
        if node == self.target.dependent:
            x, y, slope = self.variable.name, node.name, self.slope.name
            note = f"{y} is a function of {x}: d/d{x} {y} = {slope}"
            return self.add(Rule.IMPLICIT, node, self.slope, (), note)
        return super()._explain(node)

    def derivative(self, node: sympy.Expr) -> sympy.Expr:
        return implicit.total_derivative(node, self.target, self.slope)


def explain_implicit(
    lhs: sympy.Expr,
    rhs: sympy.Expr,
    target: implicit.Implicit,
    derivative: sympy.Expr,
    *,
    max_steps: int = MAX_STEPS,
    max_pass_nodes: int = MAX_PASS_NODES,
) -> list[Step]:
    """The implicit derivation of d^k y/dx^k from lhs = rhs, ending in `derivative`."""
    function = implicit.equation_function(lhs, rhs)
    slope = implicit.prime(target.dependent)
    x, y = target.variable.name, slope.name
    raw: list[_Raw] = []
    dummy = _dummy(function)
    limits = (max_steps, max_pass_nodes)
    try:
        sides = _implicit_pass([lhs, rhs] if rhs != 0 else [lhs], target, 1, raw, dummy, limits=limits)
        values = [raw[index].value for index in sides] + [sympy.S.Zero] * (2 - len(sides))
        differentiated = values[0] - values[1]
        texts = [parsing.to_text(value) for value in values]
        if len(sides) == 2:  # F = 0 alone needs no step of its own: d/dx F is the last one
            note = f"differentiate both sides of {parsing.to_text(lhs)} = {parsing.to_text(rhs)} by {x}"
            raw.append(_Raw(Rule.IMPLICIT, x, 1, function, differentiated, tuple(sides), note))
        # Linear in y': A + B y' = 0.
        free = differentiated.xreplace({slope: sympy.S.Zero})
        first = sympy.factor_terms(-free / symbolic.derivative(differentiated, slope))
        note = f"solve {texts[0]} = {texts[1]} for {y}: {y} = {parsing.to_text(first)}"
        raw.append(_Raw(Rule.IMPLICIT, "", 1, differentiated, first, (len(raw) - 1,), note))
        for order in range(2, target.order + 1):
            (index,) = _implicit_pass([raw[-1].value], target, order, raw, dummy, limits=limits)
            total = raw[index].value
            substituted = sympy.factor_terms(total.xreplace({slope: first}))
            note = f"substitute {y} = {parsing.to_text(first)} in {parsing.to_text(total)}"
            raw.append(_Raw(Rule.IMPLICIT, "", order, total, substituted, (index,), note))
    except RecursionError:
        raise InvalidArgument("the expression is nested too deeply to explain", field="expression") from None
    return _ending_in(raw, derivative)


def _implicit_pass(
    exprs: Sequence[sympy.Expr],
    target: implicit.Implicit,
    order: int,
    raw: list[_Raw],
    dummy: sympy.Symbol,
    *,
    limits: tuple[int, int],
) -> list[int]:
    """The steps of d/dx of each of `exprs` (y a function of x): the index of each one's result."""
    max_steps, max_nodes = limits
    if len(raw) < max_steps and sum(symbolic.expression_size(expr) for expr in exprs) <= max_nodes:
        explainer = _ImplicitExplainer(target, order, raw, dummy)
        return [explainer.visit(expr) for expr in exprs]
    slope = implicit.prime(target.dependent)
    found = []
    for expr in exprs:
        value = sympy.factor_terms(implicit.total_derivative(expr, target, slope))
        depends = (len(raw) - 1,) if raw else ()
        note = f"differentiate by {target.variable.name} (order {order}); the steps are not listed"
        raw.append(_Raw(Rule.SUMMARY, target.variable.name, order, expr, value, depends, note))
        found.append(len(raw) - 1)
    return found


def _is_reciprocal(factor: sympy.Expr) -> bool:
    return isinstance(factor, sympy.Pow) and factor.exp.is_number and bool(factor.exp.is_negative)


def _reciprocal(factor: sympy.Pow) -> sympy.Expr:
    return factor.base ** (-factor.exp)


def _explainable_function(node: sympy.Basic) -> bool:
    """A function of expressions whose outer derivative the engine knows (not Piecewise, not undefined)."""
    return (
        isinstance(node, sympy.Function)
        and not isinstance(node, (AppliedUndef, sympy.Piecewise))
        and all(isinstance(arg, sympy.Expr) for arg in node.args)
    )


def _function_rule(node: sympy.Basic) -> Rule:
    table: Sequence[tuple[tuple[type, ...], Rule]] = (
        ((sympy.exp,), Rule.EXP),
        ((sympy.log,), Rule.LOG),
        (_TRIG, Rule.TRIG),
        (_INVERSE_TRIG, Rule.INVERSE_TRIG),
        (_HYPERBOLIC, Rule.HYPERBOLIC),
        ((functions.RealRoot,), Rule.POWER),
        (_PIECEWISE, Rule.PIECEWISE),
    )
    return next((rule for classes, rule in table if isinstance(node, classes)), Rule.SPECIAL)


def _check_same(final: sympy.Expr, derivative: sympy.Expr) -> None:
    # Floats are rounded where the steps and the engine group them differently (0.5*(1/3) against
    # 1/(3*2.0)): two such forms of one function differ by float rounding, not 10^-20 (an
    # independent hunt: atan2(1/3, 0.5 y) was INTERNAL).
    inexact = final.has(sympy.Float) or derivative.has(sympy.Float)
    same = verify.same_function(final, derivative, relative=_FLOAT_AGREEMENT if inexact else 1e-20)
    if same is None:
        # No real point to compare at (acosh(erf(x)) is real nowhere): proven different or taken as
        # the same, never a failed call for not being proven equal (its third derivative was
        # INTERNAL: an independent hunt, 2026-12-06).
        small = (
            symbolic.expression_size(final) + symbolic.expression_size(derivative) <= _SIMPLIFY_CHECK_NODES
        )
        try:
            difference = sympy.simplify(final - derivative) if small else None
        except BasePolynomialError:  # sympy's gcd gave up ("no luck"): not proven either way
            difference = None
        same = difference is None or not difference.is_number or difference == 0
    if not same and inexact:
        # A float inside a function that amplifies its rounding (sin(1.0e150^x y), where the steps
        # keep log(1.0e150) and the engine 345.38776394910684) differs by more than any tolerance
        # on both sides of one function: not a bug's signature, as a mismatch of exact forms is.
        return
    if not same:
        raise StepsMismatchError(
            "the explanation does not end in the derivative",
            metadata={
                "steps_result": parsing.to_text(final)[:200],
                "derivative": parsing.to_text(derivative)[:200],
            },
        )


def _formula(expr: sympy.Expr) -> Formula:
    return Formula(parsing.to_text(expr), symbolic.to_latex(expr))


def _product_formula(factors: Sequence[sympy.Expr]) -> Formula:
    """Factors joined as written, `a*b*c` and `a \\cdot b \\cdot c`: no reordering, no evaluation."""
    texts, latexes = [], []
    for position, factor in enumerate(factors):
        text, latex = parsing.to_text(factor), symbolic.to_latex(factor)
        if isinstance(factor, sympy.Add) or (position > 0 and text.startswith("-")):
            text, latex = f"({text})", rf"\left({latex}\right)"
        texts.append(text)
        latexes.append(latex)
    return Formula("*".join(texts), r" \cdot ".join(latexes))


def _render(step: _Raw) -> Step:
    chain = None
    if step.chain is not None:
        raw = step.chain
        chain = Chain(
            outer_rule=raw.outer_rule,
            outer=_formula(raw.outer),
            inner=_formula(raw.inner),
            outer_derivative_of_u=_formula(raw.outer_derivative_of_u),
            outer_derivative=_formula(raw.outer_derivative),
            inner_derivative=_formula(raw.inner_derivative),
            product=_product_formula((raw.outer_derivative, raw.inner_derivative)),
            factors=tuple(_formula(factor) for factor in raw.factors),
        )
    return Step(
        rule=step.rule,
        variable=step.variable,
        order=step.order,
        expression=_formula(step.expression),
        result=_formula(step.value),
        depends_on=step.depends_on,
        description=step.description,
        chain=chain,
    )


def format_steps(steps: Sequence[Step]) -> str:
    """The steps for a terminal: numbered from 1, one rule per line, chain layers spelled out."""
    lines: list[str] = []
    order = 0
    for number, step in enumerate(steps, start=1):
        if step.order != order and step.variable:
            order = step.order
            if steps[-1].order > 1:
                lines.append(
                    f"order {order}: d/d{step.variable}" + (" of the previous result" if order > 1 else "")
                )
        uses = f"   (uses {', '.join(str(i + 1) for i in step.depends_on)})" if step.depends_on else ""
        d = f"d/d{step.variable} " if step.variable else ""
        rule = f"{step.rule.value} rule"
        # Solving for y' and substituting it differentiate nothing: their words say what they do.
        said = step.rule is Rule.IMPLICIT and not step.variable
        shown = step.description if said else f"{d}{step.expression.text} = {step.result.text}"
        lines.append(f"{number:>3}. {rule:<28} {shown}{uses}")
        if step.chain is not None:
            lines.extend(_chain_lines(step.chain, step.variable))
    return "\n".join(lines)


def _chain_lines(chain: Chain, x: str) -> list[str]:
    pad = " " * 9
    factors = " * ".join(f"[{factor.text}]" for factor in chain.factors)
    return [
        f"{pad}outer f(u) = {chain.outer.text}, f'(u) = {chain.outer_derivative_of_u.text}",
        f"{pad}inner u = g({x}) = {chain.inner.text}, g'({x}) = {chain.inner_derivative.text}",
        f"{pad}f'(g({x})) = {chain.outer_derivative.text}   (f' evaluated at the inner function)",
        f"{pad}f'(g({x})) * g'({x}) = {chain.product.text}",
        *([f"{pad}one factor per layer: {factors}"] if len(chain.factors) > 2 else []),
    ]
