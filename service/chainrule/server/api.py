"""The one translation layer: proto request -> engine work on the executors -> proto response.

Both transports (gRPC and HTTP/JSON) call this, so the two APIs cannot drift apart. Errors are
raised as `errors.ChainruleError` with field paths that name the request field at fault.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sympy
from prometheus_client import CollectorRegistry

from chainrule import engine
from chainrule.engine import codegen, explain, functions, numeric, verify
from chainrule.engine.errors import (
    ChainruleError,
    FailedPrecondition,
    InvalidArgument,
    NoClosedForm,
    ParseError,
)
from chainrule.engine.limits import exceeded
from chainrule.engine.series import DEFAULT_ORDER as DEFAULT_SERIES_ORDER
from chainrule.server.batches import Batch, decode_batch, fill
from chainrule.server.cache import Caches, text_size
from chainrule.server.compute import jobs
from chainrule.server.compute.executors import Executor
from chainrule.server.config import Settings, limit_settings
from chainrule.server.metrics import Metrics
from chainrule.server.tracing import Tracing
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb

_Result = TypeVar("_Result")

# Evaluate on the event loop below this many expression nodes times points (microseconds of work).
_INLINE_COST = 20_000

_SIMPLIFICATIONS: Mapping[int, engine.Simplification] = {
    pb.SIMPLIFICATION_UNSPECIFIED: engine.Simplification.FAST,
    pb.SIMPLIFICATION_NONE: engine.Simplification.NONE,
    pb.SIMPLIFICATION_FAST: engine.Simplification.FAST,
    pb.SIMPLIFICATION_FULL: engine.Simplification.FULL,
}
_LANGUAGES: Mapping[pb.OutputFormat.ValueType, codegen.Language] = {
    pb.OUTPUT_FORMAT_PYTHON: codegen.Language.PYTHON,
    pb.OUTPUT_FORMAT_C: codegen.Language.C,
    pb.OUTPUT_FORMAT_JAVASCRIPT: codegen.Language.JAVASCRIPT,
}
_FORMATS = frozenset(
    {pb.OUTPUT_FORMAT_UNSPECIFIED, pb.OUTPUT_FORMAT_TEXT, pb.OUTPUT_FORMAT_LATEX, pb.OUTPUT_FORMAT_MATHML,
     *_LANGUAGES}
)  # fmt: skip


@dataclass(frozen=True)
class _Plan:
    """What a repeated Evaluate or GradientAtPoint reuses: the prepared target and its compiled form."""

    prepared: jobs.Prepared
    compiled: Any
    needed: tuple[str, ...]


class ChainruleApi:
    """Serves the RPCs of `chainrule.v1.DifferentiationService` on top of the engine."""

    def __init__(
        self,
        settings: Settings,
        symbolic: Executor,
        numeric: Executor,
        *,
        caches: Caches | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        parsing: Executor | None = None,
    ) -> None:
        """`parsing` runs Parse's work (default: `symbolic`); give it an executor of its own so that
        checks as a person types never wait behind cold derivations."""
        self.settings = settings
        self._tracing = tracing
        self.limits = jobs.Limits.from_settings(settings)
        self._symbolic = symbolic
        self._numeric = numeric
        self._parsing = parsing or symbolic
        self.caches = caches or Caches(settings)
        self.metrics = metrics or Metrics(CollectorRegistry(), VERSION, self.caches)

    async def differentiate(self, request: pb.DifferentiateRequest) -> pb.DifferentiateResponse:
        # The hit path: one key from the raw fields, one dict lookup; no executor, no sympy.
        key = (
            request.expression,
            _wrt(request.wrt),
            request.simplification,
            tuple(request.formats) if request.formats else (),
            request.explain,
            request.verify,
            request.dependent,
        )
        # The cache holds finished responses, shared by every caller: the transports only serialise
        # them, and nothing may mutate one.
        found: pb.DifferentiateResponse | None = self.caches.differentiate.lookup(key)
        if found is None:
            found = await self.caches.differentiate.get_or_compute(key, lambda: self._derivation(request))
        return found

    async def evaluate(self, request: pb.EvaluateRequest) -> pb.EvaluateResponse:
        batch = decode_batch(request.point, request.points, self.limits.engine.max_points)
        key = (request.expression, _wrt(request.wrt), request.dependent)
        plan: _Plan | None = self.caches.evaluate.lookup(key)
        if plan is None:
            plan = await self.caches.evaluate.get_or_compute(key, lambda: self._evaluation_plan(*key))
        self._check_numeric(batch, plan.prepared)
        result = await self._compute(engine.evaluate, plan, batch)
        response = pb.EvaluateResponse(nonfinite_count=result.nonfinite_count)
        if batch.single:
            response.value = float(result.values[0])
        else:
            fill(response.values, result.values, batch.raw_output)
        return response

    async def gradient(self, request: pb.GradientAtPointRequest) -> pb.GradientAtPointResponse:
        batch = decode_batch(request.point, request.points, self.limits.engine.max_points)
        key = (request.expression, tuple(request.variables), request.hessian)
        plan: _Plan | None = self.caches.gradient.lookup(key)
        if plan is None:
            plan = await self.caches.gradient.get_or_compute(key, lambda: self._gradient_plan(*key))
        self._check_numeric(batch, plan.prepared, needed=plan.needed)
        result = await self._compute(engine.gradient, plan, batch)
        response = pb.GradientAtPointResponse(
            variables=list(plan.prepared.variables), nonfinite_count=result.nonfinite_count
        )
        if batch.single:
            response.value = float(result.value[0])
            response.gradient.extend(float(column[0]) for column in result.gradients)
            response.hessian.extend(float(column[0]) for column in result.hessians)
        else:
            fill(response.values, result.value, batch.raw_output)
            for column in result.gradients:
                fill(response.gradients.add(), column, batch.raw_output)
            for column in result.hessians:
                fill(response.hessians.add(), column, batch.raw_output)
        return response

    async def parse(self, request: pb.ParseRequest) -> pb.ParseResponse:
        """How the server reads an expression; the text's own mistakes are the answer, not an error."""
        found: pb.ParseResponse | None = self.caches.parse_reply.lookup(request.expression)
        if found is None:
            found = await self.caches.parse_reply.get_or_compute(
                request.expression, lambda: self._reading(request.expression)
            )
        return found

    async def _reading(self, text: str) -> tuple[pb.ParseResponse, int]:
        """Parse's miss path: the parse cache (filled on the parsing executor), then text and LaTeX."""
        try:
            parsed = await self._parsed(text, self._parsing)
        except InvalidArgument as error:
            return pb.ParseResponse(error=_expression_error(error)), text_size(text, error.message) + 256
        canonical, latex = await self._parsing.run(jobs.readable, parsed.portable)
        response = pb.ParseResponse(canonical=canonical, latex=latex, variables=parsed.variables)
        return response, text_size(text, canonical, latex)

    async def jacobian(self, request: pb.JacobianRequest) -> pb.JacobianResponse:
        batch = decode_batch(request.point, request.points, self.limits.engine.max_points)
        key = (tuple(request.expressions), tuple(request.variables))
        plan: _Plan | None = self.caches.jacobian.lookup(key)
        if plan is None:
            plan = await self.caches.jacobian.get_or_compute(key, lambda: self._jacobian_plan(*key))
        self._check_numeric(batch, plan.prepared, needed=plan.needed)
        rows, columns = len(request.expressions), len(plan.prepared.variables)
        entries = rows * columns * batch.size
        if entries > self.limits.engine.max_jacobian_values:
            what = "the Jacobian has too many entries at these points"
            raise exceeded(self.limits.engine, "max_jacobian_values", entries, field=batch.field, what=what)
        result = await self._compute(engine.jacobian, plan, batch)
        response = pb.JacobianResponse(
            variables=list(plan.prepared.variables), nonfinite_count=result.nonfinite_count
        )
        if batch.single:
            response.values.extend(float(column[0]) for column in result.values)
            response.jacobian.extend(float(column[0]) for column in result.jacobian)
        else:
            for column in result.values:
                fill(response.value_arrays.add(), column, batch.raw_output)
            for column in result.jacobian:
                fill(response.jacobian_arrays.add(), column, batch.raw_output)
        return response

    async def series(self, request: pb.SeriesRequest) -> pb.SeriesResponse:
        order = request.order if request.HasField("order") else DEFAULT_SERIES_ORDER
        key = (request.expression, request.variable, request.around, order, tuple(request.formats))
        found: pb.SeriesResponse | None = self.caches.series.lookup(key)
        if found is None:
            found = await self.caches.series.get_or_compute(key, lambda: self._series(request, order))
        return found

    # Cache misses: each level is looked up (and filled) through its own cache, with single flight.

    async def _derivation(self, request: pb.DifferentiateRequest) -> tuple[pb.DifferentiateResponse, int]:
        if request.dependent:
            return await self._implicit_derivation(request)
        wrt = _wrt(request.wrt)
        simplification = _simplification(request.simplification)
        wants_latex = _wants_latex(request.formats)
        wanted = _extras_request(request)
        parsed = await self._parsed(request.expression)
        derived = await self._derived(parsed, wrt, simplification)
        if derived.refusal is not None:
            raise _computed_numerically(derived.refusal)
        latex = await self._latex((parsed.key, wrt, simplification), derived) if wants_latex else ""
        extras = (
            await self._extras(parsed, (wrt, simplification), wanted, request.formats)
            if wanted
            else jobs.Extras()
        )
        response = pb.DifferentiateResponse(derivative=derived.text, latex=latex, variables=parsed.variables)
        _add_extras(response, extras)
        return response, text_size(request.expression, derived.text, latex) + _extras_size(extras)

    async def _implicit_derivation(
        self, request: pb.DifferentiateRequest
    ) -> tuple[pb.DifferentiateResponse, int]:
        asked = jobs.ImplicitRequest(request.expression, _wrt(request.wrt), request.dependent)
        simplification = _simplification(request.simplification)
        wants_latex = _wants_latex(request.formats)
        wanted = _extras_request(request)
        derived = await self._implicit_derived(asked, simplification)
        latex = await self._latex(("implicit", asked, simplification), derived) if wants_latex else ""
        extras = jobs.Extras()
        if wanted:
            extras = await self._checked_extras(
                request.formats, jobs.derive_implicit_extras, asked, simplification, wanted, self.limits
            )
        response = pb.DifferentiateResponse(
            derivative=derived.text, latex=latex, variables=derived.equation_variables
        )
        _add_extras(response, extras)
        return response, text_size(request.expression, derived.text, latex) + _extras_size(extras)

    async def _implicit_derived(
        self, asked: jobs.ImplicitRequest, simplification: engine.Simplification
    ) -> jobs.ImplicitDerived:
        async def compute() -> tuple[jobs.ImplicitDerived, int]:
            derived = await self._symbolic.run(jobs.derive_implicit, asked, simplification, self.limits)
            self._observe(derived.timings)
            return derived, 4 * text_size(derived.text)

        result: jobs.ImplicitDerived = await self.caches.derivative.get_or_compute(
            ("implicit", asked, simplification), compute
        )
        return result

    async def _series(self, request: pb.SeriesRequest, order: int) -> tuple[pb.SeriesResponse, int]:
        for index, value in enumerate(request.formats):
            if value not in (pb.OUTPUT_FORMAT_UNSPECIFIED, pb.OUTPUT_FORMAT_TEXT, pb.OUTPUT_FORMAT_LATEX):
                raise InvalidArgument(
                    "a series comes as text and, when asked, LaTeX: no other format",
                    field=f"formats[{index}]",
                )
        parsed = await self._parsed(request.expression)
        found = await self._symbolic.run(
            jobs.expand_series,
            parsed.portable,
            request.variable,
            request.around,
            order,
            latex=pb.OUTPUT_FORMAT_LATEX in request.formats,
            limits=self.limits,
        )
        response = pb.SeriesResponse(
            series=found.text,
            latex=found.latex,
            coefficients=found.coefficients,
            remainder=found.remainder,
            variable=found.variable,
        )
        return response, text_size(request.expression, found.text, found.latex, *found.coefficients)

    async def _extras(
        self,
        parsed: jobs.Parsed,
        target: tuple[jobs.Wrt, engine.Simplification],
        wanted: jobs.ExtrasRequest,
        formats: Sequence[int],
    ) -> jobs.Extras:
        """Steps, check, MathML and code: counted in metrics when a self-check fails."""
        return await self._checked_extras(
            formats, jobs.derive_extras, parsed.portable, *target, wanted, self.limits
        )

    async def _checked_extras(
        self, formats: Sequence[int], job: Callable[..., jobs.Extras], *args: Any
    ) -> jobs.Extras:
        """Run an extras job: a code format's error names its `formats[i]`; failed self-checks count."""
        try:
            extras = await self._symbolic.run(job, *args)
        except explain.StepsMismatchError:
            self.metrics.explain_mismatches.inc()
            raise
        except FailedPrecondition as error:
            raise FailedPrecondition(
                error.message,
                field=_format_field(formats, error.metadata.get("format", "")),
                reason=error.reason,
                metadata=error.metadata,
            ) from None
        if extras.check is not None and extras.check.verdict is verify.Verdict.MISMATCH:
            self.metrics.verify_mismatches.inc()
        return extras

    async def _parsed(self, text: str, executor: Executor | None = None) -> jobs.Parsed:
        """From the parse cache, else parsed on `executor` (default: symbolic, with single flight).

        With an executor of its own (Parse's), a miss is parsed there even when the same text waits
        in the symbolic queue for a Differentiate: joining that would wait behind cold derivations.
        """
        if not text:  # proto3 cannot tell a missing string from an empty one: both are missing
            raise ParseError("expression is required: send one, such as sin(x^2)", 0, placed=True)
        if executor is None:
            found = await self.caches.parse.get_or_compute(text, lambda: self._parse(text, None))
        else:
            found = self.caches.parse.lookup(text)
            if found is None:
                found, size = await self._parse(text, executor)
                self.caches.parse.put(text, found, size)
        if isinstance(found, ChainruleError):
            raise copy.copy(found)  # a fresh instance: raising the cached one would grow its traceback
        parsed: jobs.Parsed = found
        return parsed

    async def _parse(self, text: str, executor: Executor | None) -> tuple[jobs.Parsed | ChainruleError, int]:
        try:
            parsed = await (executor or self._symbolic).run(jobs.parse_canonical, text, self.limits)
        except InvalidArgument as error:
            # Bad text stays bad under the same limits: cache the error, cheaply.
            return error, text_size(text, error.message) + 256
        self._observe(parsed.timings)
        # sympy objects take a few times the bytes of their srepr.
        return parsed, text_size(text) + 4 * text_size(parsed.key)

    async def _derived(
        self, parsed: jobs.Parsed, wrt: jobs.Wrt, simplification: engine.Simplification
    ) -> jobs.Derived:
        async def compute() -> tuple[jobs.Derived, int]:
            derived = await self._symbolic.run(
                jobs.derive_parsed, parsed.portable, wrt, simplification, self.limits
            )
            self._observe(derived.timings)
            return derived, 4 * text_size(derived.text)

        result: jobs.Derived = await self.caches.derivative.get_or_compute(
            (parsed.key, wrt, simplification), compute
        )
        return result

    async def _latex(self, key: Hashable, derived: jobs.Derived) -> str:
        async def compute() -> tuple[str, int]:
            text = await self._symbolic.run(jobs.latex, derived.portable)
            return text, text_size(text)

        return await self.caches.latex.get_or_compute(key, compute)

    async def _evaluation_plan(self, text: str, wrt: jobs.Wrt, dependent: str) -> tuple[_Plan, int]:
        if dependent:
            asked = jobs.ImplicitRequest(text, wrt, dependent)
            implicit = await self._implicit_derived(asked, engine.Simplification.FAST)
            return await self._function_plan(implicit, ("implicit", asked), implicit.text)
        parsed = await self._parsed(text)
        target: jobs.Parsed | jobs.Derived = parsed
        key: Hashable = parsed.key
        if wrt:
            target = await self._derived(parsed, wrt, engine.Simplification.FAST)
            key = (parsed.key, wrt, engine.Simplification.FAST)
        return await self._function_plan(target, key, parsed.key)

    async def _function_plan(
        self, target: jobs.Parsed | jobs.Derived, key: Hashable, text: str
    ) -> tuple[_Plan, int]:
        """Evaluate's plan: `target` compiled as one function of its variables (cached under `key`)."""
        prepared = jobs.Prepared(target.expression, target.variables, target.node_count)
        size = _compiled_size(text, 1)
        compiled = await self._compiled(
            ("function", key), size, engine.compile_function, target.expression, target.variables
        )
        return _Plan(prepared, compiled, target.variables), size

    async def _gradient_plan(self, text: str, variables: tuple[str, ...], hessian: bool) -> tuple[_Plan, int]:
        parsed = await self._parsed(text)
        names = jobs.gradient_variables(parsed.variables, variables, self.limits)
        size = _compiled_size(parsed.key, 1 + len(names) + (len(names) ** 2 if hessian else 0))
        compiled = await self._compiled(
            ("gradient", parsed.key, names, hessian),
            size,
            engine.compile_gradient,
            parsed.expression,
            names,
            hessian,
            self.limits.engine,
        )
        prepared = jobs.Prepared(parsed.expression, names, parsed.node_count)
        return _Plan(prepared, compiled, parsed.variables), size

    async def _jacobian_plan(self, texts: tuple[str, ...], variables: tuple[str, ...]) -> tuple[_Plan, int]:
        engine.check_jacobian_rows(len(texts), self.limits.engine)  # before parsing any of them
        rows: list[jobs.Parsed] = []
        for index, text in enumerate(texts):
            try:
                rows.append(await self._parsed(text))
            except ChainruleError as error:
                raise error.relocated({"expression": f"expressions[{index}]"}) from None
        free = tuple(sorted({name for row in rows for name in row.variables}))
        names = jobs.gradient_variables(free, variables, self.limits)
        size = sum(_compiled_size(row.key, 1 + len(names)) for row in rows)
        expressions = [row.expression for row in rows]
        compiled = await self._compiled(
            ("jacobian", tuple(row.key for row in rows), names),
            size,
            engine.compile_jacobian,
            expressions,
            names,
            self.limits.engine,
        )
        prepared = jobs.Prepared(sympy.Tuple(*expressions), names, sum(row.node_count for row in rows))
        return _Plan(prepared, compiled, free), size

    async def _compiled(self, key: Hashable, size: int, compile_fn: Callable[..., Any], *args: Any) -> Any:
        async def compute() -> tuple[Any, int]:
            compiled, stage = await self._numeric.run(_timed, "compile", compile_fn, *args)
            self._observe((stage,))
            return compiled, size

        return await self.caches.compiled.get_or_compute(key, compute)

    async def _compute(self, run: Callable[[Any, Any, int], _Result], plan: _Plan, batch: Batch) -> _Result:
        """Evaluate on the loop when the work is tiny (an executor hop costs more), else off it."""
        try:
            if plan.prepared.node_count * batch.size <= _INLINE_COST:
                result, stage = _timed("evaluate", run, plan.compiled, batch.columns, batch.size)
            else:
                result, stage = await self._numeric.run(
                    _timed, "evaluate", run, plan.compiled, batch.columns, batch.size
                )
        except ChainruleError as error:
            raise error.relocated({"columns": batch.field}) from None
        self._observe((stage,))
        self.metrics.add_points(batch.size)
        return result

    def _observe(self, stages: Sequence[jobs.Stage]) -> None:
        """Stages of work done for a request: into the stage metrics, and spans when tracing."""
        for stage in stages:
            self.metrics.observe_stage(stage.name, stage.seconds)
            if self._tracing is not None:
                self._tracing.stage(stage)

    async def server_info(self, request: pb.GetServerInfoRequest) -> pb.GetServerInfoResponse:
        return pb.GetServerInfoResponse(
            version=VERSION,
            limits=[pb.Limit(name=n, maximum=float(v), description=d) for n, v, d in self._limit_table()],
            functions=sorted(functions.FUNCTIONS),
            constants=sorted(functions.CONSTANTS),
            output_formats=[
                pb.OUTPUT_FORMAT_TEXT,
                pb.OUTPUT_FORMAT_LATEX,
                pb.OUTPUT_FORMAT_MATHML,
                *_LANGUAGES.keys(),
            ],
            format_support=_format_support(),
            simplifications=[pb.SIMPLIFICATION_NONE, pb.SIMPLIFICATION_FAST, pb.SIMPLIFICATION_FULL],
        )

    def _limit_table(self) -> list[tuple[str, int | float, str]]:
        return [
            (declaration.name, getattr(self.settings, name), declaration.description)
            for name, declaration in limit_settings()
        ]

    def _check_numeric(self, batch: Batch, prepared: jobs.Prepared, needed: Sequence[str] = ()) -> None:
        missing = batch.missing(needed or prepared.variables)
        if missing:
            raise numeric.missing_columns(missing).relocated({"columns": batch.field})
        cost = prepared.node_count * batch.size
        if cost > self.limits.engine.max_numeric_cost:
            what = f"the evaluation is too costly ({prepared.node_count:,} nodes times {batch.size:,} points)"
            raise exceeded(self.limits.engine, "max_numeric_cost", cost, field=batch.field, what=what)


def _wrt(entries: Sequence[pb.Wrt]) -> jobs.Wrt:
    if not entries:  # the common case, on the cached path: no generator to build
        return ()
    return tuple([(entry.variable, entry.order) for entry in entries])


def _expression_error(error: InvalidArgument) -> pb.ExpressionError:
    """What other RPCs send as INVALID_ARGUMENT about the expression, as Parse's answer."""
    metadata = dict(error.metadata)
    position = metadata.pop("position", None)
    message = pb.ExpressionError(reason=error.reason, message=error.message, metadata=metadata)
    if position is not None:
        message.position = int(position)
    return message


def _computed_numerically(refusal: NoClosedForm) -> NoClosedForm:
    """The refusal of a derivative's text, saying which RPCs give its values all the same."""
    return NoClosedForm(
        f"{refusal.message}: Evaluate with wrt, or GradientAtPoint, computes its values numerically",
        function=refusal.metadata["function"],
        argument=int(refusal.metadata.get("argument", "0")),
    )


def _simplification(value: int) -> engine.Simplification:
    try:
        return _SIMPLIFICATIONS[value]
    except KeyError:
        raise InvalidArgument(f"unknown simplification {value}", field="simplification") from None


def _extras_request(request: pb.DifferentiateRequest) -> jobs.ExtrasRequest:
    languages: list[codegen.Language] = []
    for value in request.formats:
        language = _LANGUAGES.get(value)
        if language is not None and language not in languages:
            languages.append(language)
    return jobs.ExtrasRequest(
        explain=request.explain,
        verify=request.verify,
        mathml=pb.OUTPUT_FORMAT_MATHML in request.formats,
        languages=tuple(languages),
    )


def _format_field(formats: Sequence[int], language: str) -> str:
    """The field path of the code format a language's error is about (`formats[2]`)."""
    value = (
        pb.OutputFormat.Value(f"OUTPUT_FORMAT_{language}") if language in codegen.Language.__members__ else -1
    )
    return f"formats[{list(formats).index(value)}]" if value in formats else "formats"


def _add_extras(response: pb.DifferentiateResponse, extras: jobs.Extras) -> None:
    if not (extras.steps or extras.check or extras.mathml or extras.code):
        return
    response.steps.extend(_step_message(step) for step in extras.steps)
    if extras.check is not None:
        response.check.CopyFrom(_check_message(extras.check))
    response.mathml = extras.mathml
    response.code.extend(
        pb.GeneratedCode(
            format=_FORMAT_OF[code.language],
            source=code.source,
            function_name=code.function_name,
            parameters=code.parameters,
        )
        for code in extras.code
    )


_FORMAT_OF = {language: value for value, language in _LANGUAGES.items()}


def _formula(formula: explain.Formula) -> pb.Formula:
    return pb.Formula(text=formula.text, latex=formula.latex)


def _rule(rule: explain.Rule) -> pb.Step.Rule.ValueType:
    return pb.Step.Rule.Value(f"RULE_{rule.name}")


def _step_message(step: explain.Step) -> pb.Step:
    message = pb.Step(
        rule=_rule(step.rule),
        variable=step.variable,
        order=step.order,
        expression=_formula(step.expression),
        result=_formula(step.result),
        depends_on=step.depends_on,
        description=step.description,
    )
    if step.chain is not None:
        chain = step.chain
        message.chain.CopyFrom(
            pb.ChainRule(
                outer_rule=_rule(chain.outer_rule),
                outer=_formula(chain.outer),
                inner=_formula(chain.inner),
                outer_derivative_of_u=_formula(chain.outer_derivative_of_u),
                outer_derivative=_formula(chain.outer_derivative),
                inner_derivative=_formula(chain.inner_derivative),
                product=_formula(chain.product),
                factors=[_formula(factor) for factor in chain.factors],
            )
        )
    return message


def _check_message(check: verify.Check) -> pb.Check:
    return pb.Check(
        verdict=pb.Check.Verdict.Value(f"VERDICT_{check.verdict.name}"),
        method=pb.Check.Method.Value(f"METHOD_{check.method.name}"),
        max_relative_error=check.max_relative_error,
        tolerance=check.tolerance,
        points=[
            pb.CheckPoint(
                point=dict(point.point),
                symbolic=point.symbolic,
                numeric=point.numeric,
                relative_error=point.relative_error,
            )
            for point in check.points
        ],
    )


def _extras_size(extras: jobs.Extras) -> int:
    steps = sum(len(s.expression.text) + len(s.result.text) + len(s.expression.latex) for s in extras.steps)
    return (
        2 * steps
        + len(extras.mathml)
        + sum(len(code.source) for code in extras.code)
        + 512 * len(extras.check.points if extras.check else ())
    )


@functools.cache
def _format_support() -> tuple[pb.FormatSupport, ...]:
    every = sorted(functions.FUNCTIONS)
    support = [
        pb.FormatSupport(format=value, functions=every)
        for value in (pb.OUTPUT_FORMAT_TEXT, pb.OUTPUT_FORMAT_LATEX, pb.OUTPUT_FORMAT_MATHML)
    ]
    support += [
        pb.FormatSupport(format=value, functions=codegen.supported_functions(language))
        for value, language in _LANGUAGES.items()
    ]
    return tuple(support)


def _wants_latex(formats: Sequence[int]) -> bool:
    for index, value in enumerate(formats):
        if value not in _FORMATS:
            raise InvalidArgument(f"unknown output format {value}", field=f"formats[{index}]")
    return pb.OUTPUT_FORMAT_LATEX in formats


def _timed(name: str, fn: Callable[..., _Result], *args: Any) -> tuple[_Result, jobs.Stage]:
    return jobs.timed(name, fn, *args)


def _compiled_size(canonical_key: str, components: int) -> int:
    # lambdify's generated source and code objects: a fixed part plus a few times the expression.
    return 4096 + 16 * len(canonical_key) * components
