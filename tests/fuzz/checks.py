"""The differential checks: one tree, a few points, every numeric RPC, each result judged against mpmath.

Two questions are asked of every number the service returns for a formula F (the parsed expression,
a derivative Evaluate compiles, a gradient component, the text Differentiate printed, read back):

1. Is F the right function? F evaluated exactly (mpmath, 200 bits) must equal the tree's own value
   (or, for a derivative, mpmath's numerical derivative of the tree): this catches a sympy rewrite
   that narrows the domain (NaN where the tree has a value), a wrong derivative, a text that reads
   back as something else. Where the tree has no real value but F has one, the tree continued in the
   complex plane must agree (sympy's identities: sin(asin(x)) is x).
2. Is the float64 result what evaluating F in float64 can give? F is evaluated again with every node
   rounded to a double and nudged an ulp at random: the spread of those runs is F's own rounding
   error at that point (cancellation, an intermediate that overflows). The service must be within a
   few times that spread; where those runs overflow, anything non-finite is accepted.

Points within `trees.NEAR` of a kink, pole or branch point of any node are skipped, and so are values
beyond the normal range of doubles. Batch results must equal single-point results bit for bit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy

from chainrule import engine
from chainrule.engine import parsing, reference
from chainrule.engine.errors import ChainruleError, Code
from chainrule.server.api import ChainruleApi
from chainrule.v1 import chainrule_pb2 as pb
from tests.fuzz import trees

_SIMULATIONS = 3
_SIMULATION_PREC = 80  # each node is rounded to a double anyway: 80 bits are plenty, and cheap
_EXACT_RTOL = 1e-20  # two 200-bit evaluations of equal functions (numerical differentiation included)
_DIFF_ATOL = 1e-40  # times the largest value in the tree: what numerical differentiation resolves
# The precision an expression is continued at in the complex plane where the first is not enough.
_CONTINUED_PREC = 4 * trees.PREC
_FLOAT_RTOL = 1e-8  # a tree with float literals: sympy rounds their products and sums to doubles
_RTOL = 1e-9  # floor of the float64 tolerance: a few ulp of error in kernels is fine, 1e-9 is not
_SPREAD = 16.0  # how many times a formula's own rounding spread the service may be off
_NORMAL = (1e-300, 1e300)

# Texts Differentiate returns today that the grammar does not read yet: issue 14's other half
# (branch issue-14b) makes them read back or refuses them. Remove once it is merged. A text over a
# parser limit (a 5,000-digit integer from 2000^(x - 2000)) is a refusal, not a misreading.
_AWAITING_READBACK = ("Derivative(", "Subs(", "Piecewise(", "Eq(", "arg(", "nan", "zoo")


@dataclass(frozen=True)
class Finding:
    """One number (or error) the service got wrong: what was asked, what came back, what was due."""

    check: str
    expression: str
    point: Mapping[str, float]
    detail: str
    ours: Any = None
    expected: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"[{self.check}] {self.expression} at {dict(self.point)}: {self.detail} "
            f"(ours {self.ours!r}, expected {self.expected!r}) {dict(self.extra) or ''}"
        )


class _Skip(Exception):
    """The input is refused for a documented reason (a limit): nothing to compare."""


class Differential:
    """Runs every check of one tree against an API (in process, with inline executors or a pool)."""

    def __init__(self, api: ChainruleApi, loop: asyncio.AbstractEventLoop, *, full: bool = False) -> None:
        self.api = api
        self.loop = loop
        self.full = full

    def run(self, tree: trees.Node, points: Sequence[Mapping[str, float]], seed: int) -> list[Finding]:
        case = _Case(self, tree, seed)
        with contextlib.suppress(_Skip):
            case.run(points)
        return case.found

    def run_value(self, tree: trees.Node, point: Mapping[str, float], seed: int) -> list[Finding]:
        """Only the value at one point: no batch, derivatives, gradient or read-back."""
        case = _Case(self, tree, seed)
        with contextlib.suppress(_Skip):
            case.value_only(point)
        return case.found

    def call(self, case: _Case, text: str, point: Mapping[str, float], check: str, call: Any) -> Any:
        """The RPC's answer; None, with a finding unless it is a documented refusal, if it failed."""
        try:
            return self.loop.run_until_complete(call)
        except ChainruleError as error:
            if error.code == Code.INTERNAL:
                case.report(check, point, f"INTERNAL: {error.message}", text=text)
            elif not (error.reason in ("LIMIT_EXCEEDED", "NO_CLOSED_FORM") or error.code in _REFUSALS):
                case.report(check, point, f"{error.code.name} {error.reason}: {error.message}", text=text)
        except Exception as error:  # anything else is a 500
            case.report(check, point, f"INTERNAL: {type(error).__name__}: {error}", text=text)
        return None

    async def evaluate(
        self, text: str, point: Mapping[str, float], wrt: Sequence[tuple[str, int]] = ()
    ) -> float:
        request = pb.EvaluateRequest(expression=text, point=dict(point))
        for name, order in wrt:
            request.wrt.add(variable=name, order=order)
        response = await self.api.evaluate(request)
        return float(response.value)

    async def evaluate_batch(
        self, text: str, names: list[str], points: Sequence[Mapping[str, float]]
    ) -> list[float]:
        columns = {name: pb.Array(values=[point[name] for point in points]) for name in names}
        if not columns:
            columns = {"x": pb.Array(values=[point.get("x", 0.0) for point in points])}
        response = await self.api.evaluate(pb.EvaluateRequest(expression=text, points=columns))
        return list(response.values.values)

    async def gradient(
        self, text: str, names: list[str], point: Mapping[str, float]
    ) -> tuple[float, list[float], list[float]]:
        request = pb.GradientAtPointRequest(expression=text, variables=names, point=dict(point), hessian=True)
        response = await self.api.gradient(request)
        return response.value, list(response.gradient), list(response.hessian)

    async def differentiate(
        self, text: str, wrt: Sequence[tuple[str, int]], mode: pb.Simplification.ValueType
    ) -> str:
        request = pb.DifferentiateRequest(expression=text, simplification=mode)
        for name, order in wrt:
            request.wrt.add(variable=name, order=order)
        response = await self.api.differentiate(request)
        return response.derivative


class _Case:
    """One tree under test: its text, variables and parsed formula, and what was found wrong."""

    def __init__(self, owner: Differential, tree: trees.Node, seed: int) -> None:
        self.owner = owner
        self.tree = tree
        self.seed = seed
        self.text = trees.to_text(tree)
        self.names = sorted(tree.variables())
        self.found: list[Finding] = []
        self.scale = 1.0  # the largest magnitude of a node's value at the point being checked

    def report(
        self, check: str, point: Mapping[str, float], detail: str, *, text: str = "", **more: Any
    ) -> None:
        self.found.append(Finding(check, text or self.text, point, detail, **more))

    def ask(self, point: Mapping[str, float], check: str, call: Any, text: str = "") -> Any:
        return self.owner.call(self, text or self.text, point, check, call)

    # ------------------------------------------------------------------------------------ the checks

    def run(self, points: Sequence[Mapping[str, float]]) -> None:
        formula = self._parsed()
        owner = self.owner
        singles = [self.ask(point, "evaluate", owner.evaluate(self.text, point)) for point in points]
        batch = self.ask(points[0], "batch", owner.evaluate_batch(self.text, self.names, points))
        if batch is not None and None not in singles:
            for point, single, many in zip(points, singles, batch, strict=True):
                if not _same_bits(single, many):
                    self.report("batch", point, "batch differs from single point", ours=single, expected=many)
        for index, (point, ours) in enumerate(zip(points, singles, strict=True)):
            if self.value(point, formula, ours, self.seed + index) and index == 0:
                self.derivatives(point, formula, undefined=ours is not None and math.isnan(ours))

    def value_only(self, point: Mapping[str, float]) -> None:
        """The value check alone, at one point (`rules.py` sweeps thousands of trees)."""
        formula = self._parsed()
        ours = self.ask(point, "evaluate", self.owner.evaluate(self.text, point))
        self.value(point, formula, ours, self.seed)

    def value(self, point: Mapping[str, float], formula: sympy.Expr, ours: float | None, seed: int) -> bool:
        """Judge the value `ours` at `point`; False where the point is too near a singularity to."""
        evaluation = trees.Evaluation(reference.context(trees.PREC), point)
        truth = evaluation(self.tree)
        if trees.near_singularity(evaluation):
            return False
        values = [_real(v) for *_, v in evaluation.values]
        self.scale = max([1.0, *(abs(v) for v in values if not math.isnan(v))])
        self.judge("value", point, formula, truth, ours, seed)
        return True

    def derivatives(self, point: Mapping[str, float], formula: sympy.Expr, *, undefined: bool) -> None:
        """`undefined`: the service's own value here is NaN (the value check judged that), so a NaN
        derivative is its answer too: no real function, no derivative (`numeric._Bound.guards`)."""
        for orders in _orders(self.names):
            truth = trees.derivative(self.tree, point, orders)
            if truth is None:
                continue
            wrt = tuple(orders.items())
            # The formula to judge by needs no simplification: FAST's factor_terms on exact power towers
            # took 23 GB in this process (the service's own runs in a killable worker).
            derived = engine.differentiate(formula, wrt, engine.Simplification.NONE)
            ours = self.ask(point, f"evaluate wrt {wrt}", self.owner.evaluate(self.text, point, wrt))
            if not (undefined and ours is not None and math.isnan(ours)):
                self.judge(f"d{wrt}", point, derived, truth, ours, self.seed, orders=orders)
            if len(wrt) == 1 and wrt[0][1] == 1:
                self.readback(point, wrt, truth)
        self.gradient(point, formula)

    def gradient(self, point: Mapping[str, float], formula: sympy.Expr) -> None:
        response = self.ask(point, "gradient", self.owner.gradient(self.text, self.names, point))
        if response is None:
            return
        value, gradient, hessian = response
        names, n = self.names, len(self.names)
        components = engine.gradient_components(formula, names, hessian=True)
        pairs = [(i, j) for i in range(n) for j in range(i, n)]
        ours_of = [value, *gradient, *(hessian[i * n + j] for i, j in pairs)]
        orders_of: list[dict[str, int]] = [{}]
        orders_of += [{name: 1} for name in names]
        orders_of += [_pair(names[i], names[j]) for i, j in pairs]
        for component, ours, orders in zip(components, ours_of, orders_of, strict=True):
            if orders and math.isnan(value) and math.isnan(ours):
                continue  # no real value, no partials (`derivatives`); the value itself is judged
            truth = trees.derivative(self.tree, point, orders) if orders else trees.value(self.tree, point)
            if truth is not None:
                label = f"gradient {orders or 'value'}"
                self.judge(label, point, component, truth, ours, self.seed, orders=orders)
        for i in range(n):
            for j in range(n):
                if not _same_bits(hessian[i * n + j], hessian[j * n + i]):
                    self.report("hessian", point, f"not symmetric at ({i}, {j})")

    def readback(self, point: Mapping[str, float], wrt: tuple[tuple[str, int], ...], truth: Any) -> None:
        modes = [pb.SIMPLIFICATION_NONE, pb.SIMPLIFICATION_FAST]
        modes += [pb.SIMPLIFICATION_FULL] if self.owner.full else []
        for mode in modes:
            label = f"readback {pb.Simplification.Name(mode)}"
            derivative = self.ask(point, label, self.owner.differentiate(self.text, wrt, mode))
            if derivative is None:
                continue
            try:
                formula = parsing.parse(derivative)
            except ChainruleError as error:
                awaiting = any(mark in derivative for mark in _AWAITING_READBACK)
                if not awaiting and error.reason != "LIMIT_EXCEEDED":
                    self.report(label, point, f"'{derivative}' does not read back: {error}")
                continue
            ours = self.ask(point, label, self.owner.evaluate(derivative, point), text=derivative)
            self.judge(f"{label} ({derivative})", point, formula, truth, ours, self.seed, orders=dict(wrt))

    # ------------------------------------------------------------------------------------ the judge

    def judge(
        self,
        check: str,
        point: Mapping[str, float],
        formula: sympy.Expr,
        truth: Any,
        ours: float | None,
        seed: int,
        *,
        orders: Mapping[str, int] | None = None,
    ) -> None:
        """Is the formula the tree's function (or its derivative by `orders`), and is `ours` what
        float64 can make of the formula?"""
        if ours is None:  # the call failed: already a finding, or a documented refusal
            return
        values = dict(point)
        try:
            exact = reference.evaluate(formula, values, prec=trees.PREC)
        except reference.Unsupported as error:
            self.report(check, point, f"the reference cannot evaluate {error}")
            return
        expected, wanted = _real(exact), _real(truth)
        if (not _normal(truth) and not math.isnan(wanted)) or (
            not _normal(exact) and not math.isnan(expected)
        ):
            return  # beyond the doubles (1e-400 is 0.0 to float64, 1e400 is inf)
        derivative = bool(orders)
        problem = self.same_function(point, wanted, expected, derivative)
        if problem and (settled := _settled(formula, values, exact)) is not None:
            # d/dx sec(pi - x + tan(x)) at -2.7e-121: sec(x - pi/2) at 200 bits is 1.8e61 for 3.7e120
            # (x - pi/2 known to 1e-60 absolutely): the formula's own value needed more bits
            exact, expected = settled, _real(settled)
            problem = self.same_function(point, wanted, expected, derivative)
        if problem and not trees.exact(self.tree):
            if _literal_rounding(formula, values, wanted, expected):
                # cot(0.1/x)'' at -1000: sympy's coefficients (0.1^2) are doubles, and the formula
                # cancels 8 digits; the difference is what rounding its numbers to doubles does
                problem = None
            elif (folded := self.folded_truth(point, orders or {})) is not None:
                # tan(1.5e-8 - tan(1.5e-8)): sympy folded the constant in doubles as it parsed (0.0)
                problem = self.same_function(point, folded, expected, derivative)
        if (
            problem
            and math.isnan(expected)
            and (_removable(formula, values) or _zero_times_pole(formula, values))
        ):
            # s zeta(s + 1, a) at s = 0: the formula is 0 * inf at this one point (docs/accuracy.md);
            # around it finite, or (a < 0) not real at a fractional s, so only the product tells.
            return
        if problem and math.isnan(expected) and _overflows(formula, values):
            # cosh(u)/sinh(u)^3 at u = 7e20: the derivative's formula divides values past every double
            # (the reference too keeps exp only to 2^64 bits), so it is NaN, clearly not a number,
            # where its limit is 0 (docs/accuracy.md says so).
            return
        if problem and math.isnan(expected) and _huge_exponent(self.tree):
            # x^(1e309): the reference, too, takes a power past 2^(2^62) as inf (it could not hold its
            # bits), so a formula with x^(1e309 - 1) next to it is inf/inf there, not the true 0.
            return
        if problem:
            self.report(check, point, problem, ours=expected, expected=wanted)
            return
        sims = [
            float(
                reference.evaluate(formula, values, prec=_SIMULATION_PREC, each=trees.rounding(seed * 7 + k))
            )
            for k in range(_SIMULATIONS)
        ]
        problem = _within_rounding(ours, expected, sims)
        if problem and math.isnan(expected) and _rounded_onto_domain(formula, values, ours):
            return
        if problem and math.isfinite(ours) and _right_deeper(formula, values, ours):
            return
        if problem and math.isfinite(ours) and _cancelled(formula, values, ours, expected):
            return
        if problem:
            self.report(check, point, problem, ours=ours, expected=expected, extra={"float64 runs": sims})

    def folded_truth(self, point: Mapping[str, float], orders: Mapping[str, int]) -> float | None:
        """The value (or derivative) of the tree as sympy folds it (`trees.folded`), or None where
        folding changes nothing or the folded tree has no derivative to compare."""
        folded = trees.folded(self.tree)
        if folded == self.tree:
            return None
        truth = trees.derivative(folded, point, orders) if orders else trees.value(folded, point)
        return None if truth is None else _real(truth)

    def same_function(
        self, point: Mapping[str, float], truth: float, exact: float, derivative: bool
    ) -> str | None:
        """Whether the formula (exactly evaluated) is the tree's function at the point."""
        if not math.isfinite(truth) and not math.isfinite(exact):
            return None  # no finite real value either way
        if math.isnan(exact):
            return "the formula has no value where the expression has one (a rewrite narrowed its domain)"
        if math.isnan(truth):
            if derivative:
                return None  # the tree has no derivative here; a formula extended by an identity may
            if _tree_overflows(self.tree, point):
                return None  # sinh(1e20) (1e20 - 1e20): sympy's exact 0 is right; the reference's exp stops
            # At a higher precision too: sech(acosh(u)) is 1/u, and continuing at 1e-50 its
            # cos(pi/2 - 1e-50) needs more than the first precision's bits (make fuzz, 2026-12-08).
            for prec in (trees.PREC, _CONTINUED_PREC):
                continued = trees.value(self.tree, point, strict=False, prec=prec)
                real = float(continued.real if hasattr(continued, "_mpc_") else continued)
                imaginary = abs(float(continued.imag)) if hasattr(continued, "_mpc_") else 0.0
                tiny = _DIFF_ATOL * max(self.scale, abs(real))  # tan(pi) is 1e-60, not 0, continuing
                if imaginary <= tiny and (_close(real, exact, 1e-12) or abs(real - exact) <= tiny):
                    return None  # an identity sympy applied (sin(asin(x)) is x; 0*f is 0)
            return "the formula has a value where the expression has none"
        if math.isinf(truth) or math.isinf(exact):
            return None if truth == exact or not _normal(truth) else "infinite where the value is finite"
        # Numerical differentiation loses the digits of a derivative that is tiny next to the values;
        # sympy does arithmetic on float literals (0.1*9) in doubles, as it parses.
        rtol = _EXACT_RTOL if trees.exact(self.tree) else _FLOAT_RTOL
        if abs(truth - exact) <= math.ulp(truth):
            return None  # a tie between two doubles (2.5e22 is 5^23 2^21): 200 bits break it either way
        if not _close(truth, exact, rtol) and abs(truth - exact) > _DIFF_ATOL * self.scale:
            return "the formula is not the expression's function (or its derivative)"
        return None

    def _parsed(self) -> sympy.Expr:
        try:
            return parsing.parse(self.text)
        except ChainruleError as error:
            if error.reason != "LIMIT_EXCEEDED":
                self.report("grammar", {}, f"generated text refused: {error.message}")
            raise _Skip from None


_REFUSALS = {Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED}


def _literal_rounding(formula: sympy.Expr, point: Mapping[str, float], truth: float, exact: float) -> bool:
    """Whether truth and formula differ by no more than rounding the formula's numbers to doubles
    does (16 times what one such rounding moves it, as `_within_rounding` allows)."""
    if not (math.isfinite(truth) and math.isfinite(exact)):
        return False
    # Three roundings, each nudging its own nodes by an ulp: with one, a sum that cancels (the float
    # cos(1.5e-8) - 1) may see none of its terms moved.
    moved = [
        _real(reference.evaluate(formula, point, prec=_SIMULATION_PREC, each=trees.rounding(seed)))
        for seed in range(3)
    ]
    # And the literals alone, each an ulp up, then down, exactly evaluated: sympy wrote atan2(x, 2.75)
    # as atan(0.36363636363636365 x), 1/2.75 rounded once, and the derivative at x = -6e-5 cancels
    # 9 digits of it (where rounding every node is NaN: csch(27.5)^2 / sinh(27.5)^2 ... ).
    for direction in (math.inf, -math.inf):
        nudged = {f: sympy.Float(math.nextafter(float(f), direction)) for f in formula.atoms(sympy.Float)}
        if nudged:
            moved.append(_real(reference.evaluate(formula.xreplace(nudged), point, prec=trees.PREC)))
    spread = max((abs(value - exact) for value in moved if math.isfinite(value)), default=0.0)
    return abs(truth - exact) <= _SPREAD * spread


def _settled(formula: sympy.Expr, point: Mapping[str, float], first: Any) -> Any | None:
    """The formula's value at 2, 4, 8 or 16 times the reference precision, once two
    successive ones agree to 1e-30, if that differs from `first` (at the reference precision);
    None where it does not (or never settles)."""
    previous = first
    for prec in (2 * trees.PREC, 4 * trees.PREC, 8 * trees.PREC, 16 * trees.PREC):
        current = reference.evaluate(formula, point, prec=prec)
        a, b = _real(previous), _real(current)
        if (math.isnan(a) and math.isnan(b)) or a == b or _close(a, b, 1e-30):
            return None if previous is first else previous
        previous = current
    return None


def _right_deeper(formula: sympy.Expr, point: Mapping[str, float], ours: float) -> bool:
    """Whether `ours` is the formula's value at 16 times the reference precision, where the
    reference precision and twice it both round a term away: log((4 - x)^(x^2)) at 5.4e-91 is
    log(1 + 4e-181), 0 at 200 and 400 bits, which the rules compute (log1p of expm1) and a float64
    run of the formula as written does not."""
    deep = _real(reference.evaluate(formula, point, prec=16 * trees.PREC))
    return _close(ours, deep, 1e-12)


def _removable(formula: sympy.Expr, point: Mapping[str, float]) -> bool:
    """Whether the formula, undefined at the point, has a value on both sides of it (a removable
    singularity of the formula, such as x/x at 0 written apart), so the point itself is not telling."""
    for sign in (-1.0, 1.0):
        nearby = {name: value + sign * 1e-9 * max(1.0, abs(value)) for name, value in point.items()}
        if math.isnan(_real(reference.evaluate(formula, nearby, prec=trees.PREC))):
            return False
    return bool(point)


class _Overflow:
    """An `each` hook that notes whether any node's value is past every double."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, value: Any) -> Any:
        if not hasattr(value, "_mpc_") and math.isinf(float(value)):
            self.seen = True
        return value


def _zero_times_pole(formula: sympy.Expr, point: Mapping[str, float]) -> bool:
    """Whether some product in the formula is exactly 0 times a factor at a pole: a factor without a
    value even in the complex plane (zeta(1, a)), not one that is merely not real (log(-1), which
    makes 0 * log(b) a defect of the power rule, not a removable point)."""
    for node in sympy.preorder_traversal(formula):
        if not node.is_Mul:
            continue
        values = [_real(reference.evaluate(factor, point, prec=trees.PREC)) for factor in node.args]
        if 0.0 not in values:
            continue
        for factor, value in zip(node.args, values, strict=True):
            if math.isnan(value):
                continued = reference.evaluate(factor, point, prec=trees.PREC, strict=False)
                if not _finite_complex(continued):
                    return True
    return False


def _finite_complex(value: Any) -> bool:
    if hasattr(value, "_mpc_"):
        return math.isfinite(float(value.real)) and math.isfinite(float(value.imag))
    return math.isfinite(float(value))


def _overflows(formula: sympy.Expr, point: Mapping[str, float]) -> bool:
    """Whether some node of the formula is infinite at the point though the point is finite."""
    watch = _Overflow()
    reference.evaluate(formula, point, prec=trees.PREC, each=watch)
    return watch.seen and all(math.isfinite(value) for value in point.values())


def _tree_overflows(tree: trees.Node, point: Mapping[str, float]) -> bool:
    """Whether some node of the tree is past every double at the point (sinh(1e20) is, to the
    reference: its exp keeps 2^64 bits)."""
    watch = _Overflow()
    trees.Evaluation(reference.context(trees.PREC), point, each=watch)(tree)
    return watch.seen


def _huge_exponent(tree: trees.Node) -> bool:
    """Whether the tree holds a number literal no double can hold (1e309): a power of it has more
    bits than the reference keeps."""
    if tree.kind == "num":
        return tree.value is not None and not _normal(float(tree.value))
    return any(_huge_exponent(arg) for arg in tree.args)


def _orders(names: list[str]) -> Iterator[dict[str, int]]:
    """The derivatives checked: each first partial, the second in the first variable, one mixed."""
    for name in names:
        yield {name: 1}
    if names:
        yield {names[0]: 2}
    if len(names) > 1:
        yield {names[0]: 1, names[1]: 1}


def _pair(a: str, b: str) -> dict[str, int]:
    return {a: 2} if a == b else {a: 1, b: 1}


def _real(value: Any) -> float:
    if hasattr(value, "_mpc_"):
        return math.nan
    return float(value)


def _normal(value: Any) -> bool:
    """Zero or a magnitude doubles hold at full precision (an mpf is tested before rounding)."""
    if hasattr(value, "_mpc_"):
        return True
    return bool(value == 0 or _NORMAL[0] <= abs(value) <= _NORMAL[1])


def _close(a: float, b: float, rtol: float) -> bool:
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def _same_bits(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return True
    if math.isnan(a) and math.isnan(b):
        return True
    return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b


def _cancelled(formula: sympy.Expr, point: Mapping[str, float], ours: float, exact: float) -> bool:
    """Whether `ours` is within 16 ulp of the formula's magnitude with every value made positive (the
    usual bound on float64's error in a sum whose terms cancel): (cos(x) tan(x) - sin(x)) log(sec 6)
    ... at -9.7e7 is 0 exactly and 5.9e-19 in float64, and the simulations' roundings all cancelled."""
    magnitude = _real(reference.evaluate(formula, point, prec=_SIMULATION_PREC, each=abs))
    return math.isfinite(magnitude) and abs(ours - exact) <= _SPREAD * 2.0**-52 * magnitude


def _rounded_onto_domain(formula: sympy.Expr, point: Mapping[str, float], ours: float) -> bool:
    """Whether the formula evaluated in doubles (each step rounded to nearest) is `ours` where its
    exact value is NaN: x^(10 z) at z = -1.9 has no real value, since 10 z is -18.999999999999999,
    but 10 z in doubles is -19, so the power of a negative x is real there (sympy writes the user's
    (x^z)^10 as x^(10 z); a rounding, not a rewrite the service made)."""
    nearest = _real(reference.evaluate(formula, point, prec=_SIMULATION_PREC, each=trees.nearest))
    return math.isfinite(nearest) and _close(ours, nearest, _RTOL)


def _within_rounding(ours: float, exact: float, sims: list[float]) -> str | None:
    """None if `ours` is what a float64 evaluation of the formula can give at this point."""
    if math.isnan(exact):
        return None if not math.isfinite(ours) else "a value where there is none"
    if not _normal(exact) or not all(math.isfinite(s) for s in sims):
        return None  # beyond what doubles hold, or the formula overflows in float64 here
    spread = max(abs(s - exact) for s in sims)
    tolerance = _RTOL * abs(exact) + _SPREAD * spread + 1e-300
    if not math.isfinite(ours):
        return "not finite where the value is"
    if abs(ours - exact) > tolerance:
        return (
            f"off by {abs(ours - exact) / max(abs(exact), 1e-300):.3g} relative (tolerance {tolerance:.3g})"
        )
    return None
