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
_EXACT_RTOL = 1e-20  # two 200-bit evaluations of equal functions (numerical differentiation included)
_DIFF_ATOL = 1e-40  # times the largest value in the tree: what numerical differentiation resolves
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
        self.scale = 1.0  # the largest magnitude of a node's value at the point being checked

    def run(self, tree: trees.Node, points: Sequence[Mapping[str, float]], seed: int) -> list[Finding]:
        text = trees.to_text(tree)
        names = sorted(tree.variables())
        found: list[Finding] = []
        with contextlib.suppress(_Skip):
            self._run(tree, text, names, points, seed, found)
        return found

    # ------------------------------------------------------------------------------------ the checks

    def _run(
        self,
        tree: trees.Node,
        text: str,
        names: list[str],
        points: Sequence[Mapping[str, float]],
        seed: int,
        found: list[Finding],
    ) -> None:
        formula = self._parsed(text, found)
        if formula is None:
            return
        singles = [
            self._call(found, text, point, "evaluate", self._evaluate(text, point)) for point in points
        ]
        batch = self._call(found, text, points[0], "batch", self._evaluate_batch(text, names, points))
        if batch is not None and None not in singles:
            for point, single, many in zip(points, singles, batch, strict=True):
                if not _same_bits(single, many):
                    found.append(
                        Finding("batch", text, point, "batch differs from single point", single, many)
                    )
        for index, (point, ours) in enumerate(zip(points, singles, strict=True)):
            evaluation = trees.Evaluation(reference.context(trees.PREC), point)
            truth = evaluation(tree)
            if trees.near_singularity(evaluation):
                continue
            self.scale = max(
                [1.0, *(abs(_real(v)) for *_, v in evaluation.values if not math.isnan(_real(v)))]
            )
            self._judge(found, "value", tree, text, point, formula, truth, ours, seed + index)
            if index == 0:
                self._derivatives(found, tree, text, names, point, formula, seed)

    def _derivatives(
        self,
        found: list[Finding],
        tree: trees.Node,
        text: str,
        names: list[str],
        point: Mapping[str, float],
        formula: sympy.Expr,
        seed: int,
    ) -> None:
        for orders in _orders(names):
            truth = trees.derivative(tree, point, orders)
            if truth is None:
                continue
            wrt = tuple(orders.items())
            derived = engine.differentiate(formula, wrt, engine.Simplification.FAST)
            ours = self._call(found, text, point, f"evaluate wrt {wrt}", self._evaluate(text, point, wrt))
            self._judge(found, f"d{wrt}", tree, text, point, derived, truth, ours, seed, derivative=True)
            if len(wrt) == 1 and wrt[0][1] == 1:
                self._readback(found, tree, text, point, wrt, truth, seed)
        self._gradient(found, tree, text, names, point, formula, seed)

    def _gradient(
        self,
        found: list[Finding],
        tree: trees.Node,
        text: str,
        names: list[str],
        point: Mapping[str, float],
        formula: sympy.Expr,
        seed: int,
    ) -> None:
        response = self._call(found, text, point, "gradient", self._gradient_call(text, names, point))
        if response is None:
            return
        value, gradient, hessian = response
        components = engine.gradient_components(formula, names, hessian=True)
        n = len(names)
        pairs = [(i, j) for i in range(n) for j in range(i, n)]
        ours_of = [value, *gradient, *(hessian[i * n + j] for i, j in pairs)]
        orders_of: list[dict[str, int]] = [{}]
        orders_of += [{name: 1} for name in names]
        orders_of += [_pair(names[i], names[j]) for i, j in pairs]
        for component, ours, orders in zip(components, ours_of, orders_of, strict=True):
            truth = trees.derivative(tree, point, orders) if orders else trees.value(tree, point)
            if truth is None:
                continue
            label = f"gradient {orders or 'value'}"
            self._judge(
                found, label, tree, text, point, component, truth, ours, seed, derivative=bool(orders)
            )
        for i in range(n):
            for j in range(n):
                if not _same_bits(hessian[i * n + j], hessian[j * n + i]):
                    found.append(Finding("hessian", text, point, f"not symmetric at ({i}, {j})"))

    def _readback(
        self,
        found: list[Finding],
        tree: trees.Node,
        text: str,
        point: Mapping[str, float],
        wrt: tuple[tuple[str, int], ...],
        truth: float,
        seed: int,
    ) -> None:
        modes = [pb.SIMPLIFICATION_NONE, pb.SIMPLIFICATION_FAST] + (
            [pb.SIMPLIFICATION_FULL] if self.full else []
        )
        for mode in modes:
            label = f"readback {pb.Simplification.Name(mode)}"
            derivative = self._call(found, text, point, label, self._differentiate(text, wrt, mode))
            if derivative is None:
                continue
            try:
                formula = parsing.parse(derivative)
            except ChainruleError as error:
                awaiting = any(mark in derivative for mark in _AWAITING_READBACK)
                if not awaiting and error.reason != "LIMIT_EXCEEDED":
                    found.append(Finding(label, text, point, f"'{derivative}' does not read back: {error}"))
                continue
            ours = self._call(found, derivative, point, label, self._evaluate(derivative, point))
            self._judge(
                found,
                f"{label} of {text}",
                tree,
                derivative,
                point,
                formula,
                truth,
                ours,
                seed,
                derivative=True,
            )

    # ------------------------------------------------------------------------------------ the judge

    def _judge(
        self,
        found: list[Finding],
        check: str,
        tree: trees.Node,
        text: str,
        point: Mapping[str, float],
        formula: sympy.Expr,
        truth: Any,
        ours: float | None,
        seed: int,
        *,
        derivative: bool = False,
    ) -> None:
        if ours is None:  # the call failed: already a finding, or a documented refusal
            return
        values = {name: point[name] for name in point}
        try:
            exact = reference.evaluate(formula, values, prec=trees.PREC)
        except reference.Unsupported as error:
            found.append(Finding(check, text, point, f"the reference cannot evaluate {error}"))
            return
        expected = _real(exact)
        wanted = _real(truth)
        if (not _normal(truth) and not math.isnan(wanted)) or (
            not _normal(exact) and not math.isnan(expected)
        ):
            return  # beyond the doubles (1e-400 is 0.0 to float64, 1e400 is inf)
        problem = self._same_function(tree, point, wanted, expected, derivative)
        if problem:
            found.append(Finding(check, text, point, problem, _show(expected), _show(wanted)))
            return
        sims = [
            float(reference.evaluate(formula, values, prec=trees.PREC, each=trees.rounding(seed * 7 + k)))
            for k in range(_SIMULATIONS)
        ]
        problem = _within_rounding(ours, expected, sims)
        if problem:
            found.append(Finding(check, text, point, problem, ours, _show(expected), {"float64 runs": sims}))

    def _same_function(
        self, tree: trees.Node, point: Mapping[str, float], truth: float, exact: float, derivative: bool
    ) -> str | None:
        """Whether the formula (exactly evaluated) is the tree's function at the point."""
        if not math.isfinite(truth) and not math.isfinite(exact):
            return None  # no finite real value either way
        if math.isnan(exact):
            return "the formula has no value where the expression has one (a rewrite narrowed its domain)"
        if math.isnan(truth):
            if derivative:
                return None  # the tree has no derivative here; a formula extended by an identity may
            continued = trees.value(tree, point, strict=False)
            real = float(continued.real if hasattr(continued, "_mpc_") else continued)
            imaginary = abs(float(continued.imag)) if hasattr(continued, "_mpc_") else 0.0
            if imaginary <= 1e-30 * max(1.0, abs(real)) and _close(real, exact, 1e-12):
                return None  # an identity sympy applied (sin(asin(x)) is x)
            return "the formula has a value where the expression has none"
        if math.isinf(truth) or math.isinf(exact):
            return None if truth == exact or not _normal(truth) else "infinite where the value is finite"
        # Numerical differentiation loses the digits of a derivative that is tiny next to the values;
        # sympy does arithmetic on float literals (0.1*9) in doubles, as it parses.
        rtol = _EXACT_RTOL if _exact(tree) else _FLOAT_RTOL
        if not _close(truth, exact, rtol) and abs(truth - exact) > _DIFF_ATOL * self.scale:
            return "the formula is not the expression's function (or its derivative)"
        return None

    # ------------------------------------------------------------------------------------ the calls

    def _parsed(self, text: str, found: list[Finding]) -> sympy.Expr | None:
        try:
            return parsing.parse(text)
        except ChainruleError as error:
            if error.reason == "LIMIT_EXCEEDED":
                raise _Skip from None
            found.append(Finding("grammar", text, {}, f"generated text refused: {error.message}"))
            return None

    def _call(
        self, found: list[Finding], text: str, point: Mapping[str, float], check: str, call: Any
    ) -> Any:
        try:
            return self.loop.run_until_complete(call)
        except ChainruleError as error:
            if error.code == Code.INTERNAL:
                found.append(Finding(check, text, point, f"INTERNAL: {error.message}"))
            elif error.reason in ("LIMIT_EXCEEDED", "NO_CLOSED_FORM") or error.code in _REFUSALS:
                return None
            else:
                found.append(
                    Finding(check, text, point, f"{error.code.name} {error.reason}: {error.message}")
                )
        except Exception as error:
            found.append(Finding(check, text, point, f"INTERNAL: {type(error).__name__}: {error}"))
        return None

    async def _evaluate(
        self, text: str, point: Mapping[str, float], wrt: Sequence[tuple[str, int]] = ()
    ) -> float:
        request = pb.EvaluateRequest(expression=text, point=dict(point))
        for name, order in wrt:
            request.wrt.add(variable=name, order=order)
        response = await self.api.evaluate(request)
        return float(response.value)

    async def _evaluate_batch(
        self, text: str, names: list[str], points: Sequence[Mapping[str, float]]
    ) -> list[float]:
        columns = {name: pb.Array(values=[point[name] for point in points]) for name in names}
        if not columns:
            columns = {"x": pb.Array(values=[point.get("x", 0.0) for point in points])}
        response = await self.api.evaluate(pb.EvaluateRequest(expression=text, points=columns))
        return list(response.values.values)

    async def _gradient_call(
        self, text: str, names: list[str], point: Mapping[str, float]
    ) -> tuple[float, list[float], list[float]]:
        request = pb.GradientAtPointRequest(expression=text, variables=names, point=dict(point), hessian=True)
        response = await self.api.gradient(request)
        return response.value, list(response.gradient), list(response.hessian)

    async def _differentiate(self, text: str, wrt: Sequence[tuple[str, int]], mode: int) -> str:
        request = pb.DifferentiateRequest(expression=text, simplification=mode)
        for name, order in wrt:
            request.wrt.add(variable=name, order=order)
        response = await self.api.differentiate(request)
        return response.derivative


_REFUSALS = {Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED}


def _exact(tree: trees.Node) -> bool:
    """Whether every number in the tree is exact (no float literal such as 0.1)."""
    if tree.kind == "num":
        return bool(tree.value is not None and tree.value.is_Rational)
    return all(_exact(arg) for arg in tree.args)


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


def _show(value: float) -> float:
    return value


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
