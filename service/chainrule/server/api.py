"""The one translation layer: proto request -> engine work on the executors -> proto response.

Both transports (gRPC and HTTP/JSON) call this, so the two APIs cannot drift apart. Errors are
raised as `errors.ChainruleError` with field paths that name the request field at fault.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from chainrule import engine
from chainrule.engine import codegen, explain, functions, numeric, parsing, verify
from chainrule.engine.errors import (
    ChainruleError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NoClosedForm,
    ParseError,
    let_go_of_frames,
    plain_seconds,
)
from chainrule.engine.limits import exceeded
from chainrule.engine.series import DEFAULT_ORDER as DEFAULT_SERIES_ORDER
from chainrule.server import cache, sizing
from chainrule.server.batches import Batch, Reply, check_entries, decode_batch, too_many_entries
from chainrule.server.cache import Caches, text_size
from chainrule.server.compute import deadlines, jobs
from chainrule.server.compute.executors import CallLimit, Executor, HoldingExecutor, MemoryBudget
from chainrule.server.compute.lanes import RecentlyMarked
from chainrule.server.config import Settings, limit_settings
from chainrule.server.metrics import Metrics
from chainrule.server.sizing import PROTOBUF_WIRE, Wire
from chainrule.server.tracing import Tracing
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb

_Result = TypeVar("_Result")
_C = TypeVar("_C", engine.CompiledFunction, engine.CompiledGradient, engine.CompiledJacobian)
_E = TypeVar("_E", bound=BaseException)

# Evaluate on the event loop below this cost (`_Plan.cost`: operations times points, and about a
# microsecond a call besides, about 1 ns a unit: 20 us). An mpmath kernel weighs more than this
# alone (kernels.WEIGHTS): it never runs on the loop.
_INLINE_COST = 20_000
# A call alone in flight computes up to this much there too: about 0.5 ms of numpy by the weights
# (their unit is about 1 ns; batch rows measure 0.3 to 0.55 ns), where the hop to a numeric thread
# and back costs 0.3 to 0.45 ms (bench/PROFILE.md, "Fifth profile"), and nobody else is waiting
# (who arrives meanwhile waits that long at most). A weight is a typical cost: at adversarial
# arguments a kernel costs up to some 200 times it (`power` of subnormals 224 ns a point against 1,
# `atan2` of subnormals 395 ns against 15, `exp` at -745 108 ns against 2: an independent attacker),
# so this bounds what one call holds the loop to some 0.1 s; at 4,000,000 a repeated call held it
# 0.22 to 0.26 s each. With any other call in flight, the numeric threads and their fair shares take
# it: a flood never runs on the loop.
_ALONE_INLINE_COST = 500_000
# Fixed costs of a call's kernels (`kernels.CALL_OVERHEADS`, in operations of about 1 ns) past which,
# where they outweigh its work per point, it is computed in a symbolic worker (`_Plan.in_worker`):
# 2 ms of numpy calls made from Python, which holds the GIL from the event loop between them.
_GIL_HOLDING_OVERHEAD = 2_000_000
# Read requests above this many encoded bytes off the event loop (a copy of a field costs ~0.1 ms).
_READ_INLINE_BYTES = 256 * 1024
# What Parse may spend building an expression in its own worker (a typical one takes a few ms), and
# again printing it: past it the parser (the printer) gives up and the work moves to the symbolic
# workers, so the worker answers the next keystroke in time. A single sympy step cannot be given up
# midway: past the hold, Parse's worker is killed (and replaced) and the work moves all the same
# (app._parse_executor).
_PARSE_ALLOWANCE_SECONDS = 0.25
PARSE_HOLD_SECONDS = 1.0
# How long a caller whose parse overran the allowance has its parses go straight to the symbolic
# workers (lanes.RecentlyMarked): long against a keystroke's rhythm, short against a person fixing a text.
_PARSE_SLOW_LANE_SECONDS = 10.0

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
    """What a repeated Evaluate, GradientAtPoint or Jacobian reuses: the compiled function and what it
    needs.

    `needed` are the variables a request must give values for; `columns` the reply's columns per point.
    """

    compiled: engine.CompiledFunction | engine.CompiledGradient | engine.CompiledJacobian
    needed: tuple[str, ...]
    columns: int

    @property
    def work(self) -> int:
        """The work per point: the compiled code's operations, and writing each output."""
        program = self.compiled.program
        return program.operations + program.outputs

    def cost(self, points: int) -> int:
        """The work of evaluating at `points` points: per point, and its kernels' fixed costs."""
        return self.work * points + self.compiled.program.overhead

    def in_worker(self, points: int) -> bool:
        """Whether to compute in a symbolic worker, off the server's GIL: code that calls mpmath's
        kernels (`Program.pointwise`), or whose kernels' fixed costs, numpy calls in Python holding
        the GIL, outweigh its work per point at this many (500 loggamma terms at one point on a
        numeric thread took every other call from 3 to 86 ms p50: tester round 6)."""
        program = self.compiled.program
        overhead = program.overhead
        return program.pointwise or (overhead >= _GIL_HOLDING_OVERHEAD and overhead >= self.work * points)

    @property
    def size(self) -> int:
        return self.compiled.program.memory_bytes + sum(map(len, self.needed)) + 512


class ChainruleApi:
    """Serves the RPCs of `chainrule.v1.DifferentiationService` on top of the engine.

    Each RPC takes the request and, from the transport, a `Wire`: the reply's encoding (replies are
    sized in it before computing) and the request's encoded size (big requests are read off the
    event loop: every read of a protobuf string or bytes field copies it).
    """

    def __init__(
        self,
        settings: Settings,
        symbolic: Executor,
        numeric: HoldingExecutor,
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
        # Entered by the transports around each call, before they read the request.
        self.calls = CallLimit(
            settings.calls_in_flight, settings.request_bytes_in_flight, settings.retry_after_seconds
        )
        self._memory = MemoryBudget(settings.numeric_memory_bytes)
        self._slow_parsers = RecentlyMarked(_PARSE_SLOW_LANE_SECONDS)

    async def differentiate(
        self, request: pb.DifferentiateRequest, wire: Wire = PROTOBUF_WIRE
    ) -> pb.DifferentiateResponse:
        with self._limits_counted():
            # The hit path: one key from the raw fields, one dict lookup; no executor, no sympy.
            key = await self._read(wire, self._differentiate_key, request)
            # The cache holds finished responses, shared by every caller: the transports only
            # serialise them, and nothing may mutate one.
            found: pb.DifferentiateResponse | None = self.caches.differentiate.lookup(key)
            if found is None:
                found = await self.caches.differentiate.get_or_compute(key, lambda: self._derivation(request))
        return found

    # Evaluate, GradientAtPoint and Jacobian: the message (`evaluate`, for JSON and whoever wants
    # it), or a `batches.Reply` whose point columns gRPC sends without copying them into the message
    # (`evaluate_reply`). Either is finished where it is computed, off the event loop: `filled` moves
    # the columns into the message, else the reply is serialised there.

    async def evaluate(self, request: pb.EvaluateRequest, wire: Wire = PROTOBUF_WIRE) -> pb.EvaluateResponse:
        return (await self.evaluate_reply(request, wire, filled=True)).message()

    async def evaluate_reply(
        self, request: pb.EvaluateRequest, wire: Wire = PROTOBUF_WIRE, filled: bool = False
    ) -> Reply[pb.EvaluateResponse]:
        with self._limits_counted():
            expression, wrt, dependent, key = await self._read(wire, self._evaluate_key, request)
            plan: _Plan | None = self.caches.evaluate.lookup(key)
            if plan is None:
                plan = await self.caches.evaluate.get_or_compute(
                    key, lambda: self._evaluation_plan(expression, wrt, dependent)
                )
            return await self._answer(plan, request, wire, _EVALUATION, filled)

    async def gradient(
        self, request: pb.GradientAtPointRequest, wire: Wire = PROTOBUF_WIRE
    ) -> pb.GradientAtPointResponse:
        return (await self.gradient_reply(request, wire, filled=True)).message()

    async def gradient_reply(
        self, request: pb.GradientAtPointRequest, wire: Wire = PROTOBUF_WIRE, filled: bool = False
    ) -> Reply[pb.GradientAtPointResponse]:
        with self._limits_counted():
            expression, variables, key = await self._read(wire, self._gradient_key, request)
            plan: _Plan | None = self.caches.gradient.lookup(key)
            if plan is None:
                await self._check_gradient_size(expression, variables, request, wire)
                plan = await self.caches.gradient.get_or_compute(
                    key, lambda: self._gradient_plan(expression, variables, request.hessian)
                )
            return await self._answer(plan, request, wire, _GRADIENT, filled)

    async def jacobian(self, request: pb.JacobianRequest, wire: Wire = PROTOBUF_WIRE) -> pb.JacobianResponse:
        return (await self.jacobian_reply(request, wire, filled=True)).message()

    async def jacobian_reply(
        self, request: pb.JacobianRequest, wire: Wire = PROTOBUF_WIRE, filled: bool = False
    ) -> Reply[pb.JacobianResponse]:
        with self._limits_counted():
            texts, variables, key = await self._read(wire, self._jacobian_key, request)
            plan: _Plan | None = self.caches.jacobian.lookup(key)
            if plan is None:
                await self._check_jacobian_size(texts, variables, request, wire)
                plan = await self.caches.jacobian.get_or_compute(
                    key, lambda: self._jacobian_plan(texts, variables)
                )
            return await self._answer(plan, request, wire, _JACOBIAN, filled)

    async def series(self, request: pb.SeriesRequest, wire: Wire = PROTOBUF_WIRE) -> pb.SeriesResponse:
        with self._limits_counted():
            order, key = await self._read(wire, self._series_key, request)
            # A series past a limit (a derivative past `derivative_nodes`) took a worker's second or
            # more every time it was asked (an independent hunt, 2026-12-06).
            found: pb.SeriesResponse = await _remembering_refusals(
                self.caches.series, key, lambda: self._series(request, order)
            )
        return found

    async def parse(self, request: pb.ParseRequest, wire: Wire = PROTOBUF_WIRE) -> pb.ParseResponse:
        """How the server reads an expression; the text's own mistakes are the answer, not an error."""
        try:
            text, key = await self._read(wire, self._parse_key, request)
        except LimitExceeded as error:  # too long: the parser's answer, at once, without a key or worker
            return pb.ParseResponse(error=_expression_error(error))
        found: pb.ParseResponse | None = self.caches.parse_reply.lookup(key)
        if found is None:
            found = await self.caches.parse_reply.get_or_compute(key, lambda: self._reading(text))
        return found

    async def transcoded(self, work: Callable[..., _Result], /, *args: Any) -> _Result:
        """`work(*args)`, a transport decoding a big request or encoding a big reply, on a numeric
        thread in the caller's share of them: either holds the GIL for as long as it takes (JSON of
        a cached 16 MB Differentiate reply, some 80 ms a call; sixteen connections of one address
        asking for it kept every other caller's health check waiting over a second on plain
        threads; an independent attacker), and on asyncio's own threads, shared by all, eight
        10 MB requests of one address kept another caller's 0.4 MB Evaluate waiting 8.5 s (an
        attack hunt, 2026-12-05)."""
        return await self._numeric.run(work, *args)

    def check_reply_bytes(self, size: int) -> None:
        """Refuse an encoded reply of `size` bytes over `max_response_bytes`, counted: a transport
        asks before sending one whose size was not known before it was made (`sizing.check_encoded`)."""
        with self._limits_counted():
            sizing.check_encoded(size, self.settings.max_response_bytes)

    @contextlib.contextmanager
    def _limits_counted(self) -> Iterator[None]:
        """Count each call refused for a limit, by the limit (chainrule_limit_rejections_total)."""
        try:
            yield
        except LimitExceeded as error:
            self.metrics.limit_exceeded(error)
            raise

    # Reading a request: the checks that bound a cache key come before it is built (list fields by
    # `field_entries`, the expression by its length), and each read of a protobuf string copies it,
    # so a big request is read on the numeric executor rather than on the event loop.

    async def _read(self, wire: Wire, read: Callable[[Any], _Result], request: Any) -> _Result:
        if wire.request_bytes > _READ_INLINE_BYTES:
            return await self._numeric.run(read, request)
        return read(request)

    def _differentiate_key(self, request: pb.DifferentiateRequest) -> Hashable:
        formats: tuple[int, ...] = ()
        if request.formats:
            self._check_entries("formats", len(request.formats))
            formats = _checked_formats(request.formats)
        return (
            self._text(request.expression),
            self._wrt(request.wrt),
            request.simplification,
            formats,
            request.explain,
            request.verify,
            _optional_name(request.dependent, "dependent"),
        )

    def _evaluate_key(self, request: pb.EvaluateRequest) -> tuple[str, jobs.Wrt, str, Hashable]:
        # The maps hold no part of the key, but bounding them first spares a plan for a request
        # that will be refused.
        check_entries(request.point, request.points, self.settings.max_field_entries)
        expression, wrt, dependent = request.expression, self._wrt(request.wrt), request.dependent
        key = (self._text(expression), cache.bounded(wrt), _optional_name(dependent, "dependent"))
        return expression, wrt, dependent, key

    def _gradient_key(self, request: pb.GradientAtPointRequest) -> tuple[str, tuple[str, ...], Hashable]:
        check_entries(request.point, request.points, self.settings.max_field_entries)
        expression, variables = request.expression, self._variables(request.variables)
        return expression, variables, (self._text(expression), cache.bounded(variables), request.hessian)

    def _jacobian_key(self, request: pb.JacobianRequest) -> tuple[tuple[str, ...], tuple[str, ...], Hashable]:
        check_entries(request.point, request.points, self.settings.max_field_entries)
        # Both bounds, in the order every path checks them: a big request's lists are counted on the
        # wire first (grpc_server._parsed, REST's body walk), where 65 rows were `field_entries` and a
        # small one's `jacobian_rows` (an independent tester).
        self._check_entries("expressions", len(request.expressions))
        engine.check_jacobian_rows(len(request.expressions), self.limits.engine)  # before reading any
        texts = tuple(request.expressions)
        rows = tuple(self._text(text, f"expressions[{index}]") for index, text in enumerate(texts))
        variables = self._variables(request.variables)
        return texts, variables, (cache.bounded(rows), cache.bounded(variables))

    def _series_key(self, request: pb.SeriesRequest) -> tuple[int, Hashable]:
        self._check_entries("formats", len(request.formats))
        order = request.order if request.HasField("order") else DEFAULT_SERIES_ORDER
        key = (
            self._text(request.expression),
            _optional_name(request.variable, "variable"),
            self._text(request.around, "around"),
            order,
            tuple(dict.fromkeys(request.formats)),
        )
        return order, key

    def _parse_key(self, request: pb.ParseRequest) -> tuple[str, Hashable]:
        # A text over the length limit is refused here, as the parser would: hashing 60 MB of it on
        # the event loop and shipping it to Parse's worker, only for the parser to refuse it on its
        # first line, held every other caller's health checks 0.27 s a call (an attack, 2026-12-07).
        return request.expression, self._text(request.expression)

    def _text(self, expression: str, field: str = "expression") -> str | bytes:
        """The expression's part of a key; too long an expression is refused here, as the parser would."""
        maximum = self.limits.parse.max_length
        if len(expression) > maximum:
            what = "the expression is too long"  # as the parser says it, at the first code point over
            raise exceeded(
                self.limits.parse, "max_length", len(expression), field=field, what=what, position=maximum
            )
        return cache.text_key(expression)

    def _wrt(self, entries: Sequence[pb.Wrt]) -> jobs.Wrt:
        if not entries:  # the common case, on the cached path: no generator to build
            return ()
        self._check_entries("wrt", len(entries))
        wrt = tuple([(entry.variable, entry.order) for entry in entries])
        _check_names([name for name, _ in wrt], "wrt[{}].variable")
        return wrt

    def _variables(self, names: Sequence[str]) -> tuple[str, ...]:
        self._check_entries("variables", len(names))
        variables = tuple(names)
        _check_names(variables, "variables[{}]")
        return variables

    def _check_entries(self, field: str, entries: int) -> None:
        if entries > self.settings.max_field_entries:
            raise too_many_entries(field, entries, self.settings.max_field_entries)

    # Cache misses: each level is looked up (and filled) through its own cache, with single flight.

    async def _derivation(self, request: pb.DifferentiateRequest) -> tuple[pb.DifferentiateResponse, int]:
        if request.dependent:
            return await self._implicit_derivation(request)
        wrt = self._wrt(request.wrt)
        simplification = _simplification(request.simplification)
        wants_latex = pb.OUTPUT_FORMAT_LATEX in request.formats
        wanted = _extras_request(request)
        parsed = await self._parsed(request.expression)
        derived = await self._derived(parsed, wrt, simplification)
        if derived.refusal is not None:
            raise _refused(derived.refusal, derived.numeric)
        latex = await self._latex((parsed.key, wrt, simplification), derived) if wants_latex else ""
        extras = (
            await self._extras(parsed, (wrt, simplification), wanted, request.formats)
            if wanted
            else jobs.Extras()
        )
        response = pb.DifferentiateResponse(derivative=derived.text, latex=latex, variables=parsed.variables)
        _add_extras(response, extras)
        return response, _reply_size(response, text_size(request.expression, derived.text, latex), extras)

    async def _implicit_derivation(
        self, request: pb.DifferentiateRequest
    ) -> tuple[pb.DifferentiateResponse, int]:
        asked = jobs.ImplicitRequest(request.expression, self._wrt(request.wrt), request.dependent)
        simplification = _simplification(request.simplification)
        wants_latex = pb.OUTPUT_FORMAT_LATEX in request.formats
        wanted = _extras_request(request)
        derived = await self._implicit_derived(asked, simplification)
        if derived.refusal is not None:
            raise _refused(derived.refusal, derived.numeric, rpcs="Evaluate with dependent and wrt")
        key = (_implicit_key(asked), simplification)
        latex = await self._latex(key, derived) if wants_latex else ""
        extras = jobs.Extras()
        if wanted:
            extras = await self._checked_extras(
                request.formats, jobs.derive_implicit_extras, asked, simplification, wanted, self.limits
            )
        response = pb.DifferentiateResponse(
            derivative=derived.text, latex=latex, variables=derived.equation_variables
        )
        _add_extras(response, extras)
        return response, _reply_size(response, text_size(request.expression, derived.text, latex), extras)

    async def _implicit_derived(
        self, asked: jobs.ImplicitRequest, simplification: engine.Simplification
    ) -> jobs.ImplicitDerived:
        async def compute() -> tuple[jobs.ImplicitDerived, int]:
            derived = await self._symbolic.run(jobs.derive_implicit, asked, simplification, self.limits)
            self._observe(derived.timings)
            return derived, _derived_size(derived)

        result: jobs.ImplicitDerived = await _remembering_refusals(
            self.caches.derivative, (_implicit_key(asked), simplification), compute
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

    async def _reading(self, text: str) -> tuple[pb.ParseResponse, int]:
        """Parse's miss path: the parse cache (filled on the parsing executor), then text and LaTeX."""
        try:
            parsed = await self._parsed(text, self._parsing)
        except InvalidArgument as error:
            return pb.ParseResponse(error=_expression_error(error)), text_size(error.message) + 256
        canonical, latex = await self._on_parse_worker(
            self._parsing, jobs.readable, parsed.portable, first=(_PARSE_ALLOWANCE_SECONDS,)
        )
        response = pb.ParseResponse(canonical=canonical, latex=latex, variables=parsed.variables)
        return response, text_size(canonical, latex) + sum(map(len, parsed.variables)) + 256

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
        key = cache.text_key(text)
        if executor is None:
            found = await self.caches.parse.get_or_compute(key, lambda: self._parse(text, None))
        else:
            found = self.caches.parse.lookup(key)
            if found is None:
                found, size = await self._parse(text, executor)
                self.caches.parse.put(key, found, size)
        if isinstance(found, ChainruleError):
            raise copy.copy(found)  # a fresh instance: raising the cached one would grow its traceback
        parsed: jobs.Parsed = found
        return parsed

    async def _parse(self, text: str, executor: Executor | None) -> tuple[jobs.Parsed | ChainruleError, int]:
        try:
            if executor is None:
                parsed = await self._symbolic.run(jobs.parse_canonical, text, self.limits)
            else:
                parsed = await self._on_parse_worker(
                    executor, jobs.parse_canonical, text, self.limits, first=(_PARSE_ALLOWANCE_SECONDS,)
                )
        except InvalidArgument as error:
            # Bad text stays bad under the same limits: cache the error, cheaply.
            return _without_frames(error), text_size(error.message) + 256
        self._observe(parsed.timings)
        # The expression crosses as its pickle, a little smaller than its srepr; a live sympy tree
        # (symbolic work on threads) takes a few times that.
        return parsed, 4 * parsed.size + sum(map(len, parsed.variables)) + 256

    async def _on_parse_worker(
        self, executor: Executor, job: Callable[..., _Result], *args: Any, first: tuple[Any, ...] = ()
    ) -> _Result:
        """`job(*args)` on `executor` (Parse's worker; `first`: arguments for that attempt only); work
        that takes longer there (the parser gives up at its allowance, or the worker is stopped at
        its hold) runs again in the symbolic workers, under the budget and the caller's deadline; and
        so does that caller's next work for a while, so that it does not hold the worker again."""
        caller = deadlines.current_caller()
        if caller not in self._slow_parsers:
            started = time.monotonic()
            try:
                return await executor.run(job, *args, *first)
            except parsing.TooSlow:
                self._slow_parsers.mark(caller)
            except BaseException as error:
                # A call its deadline ended before the allowance never sees TooSlow, while the worker
                # goes on to the allowance all the same (tester round 6: 0.2 s deadlines kept the
                # lane, and others' checks waited 0.5 s). A call that ran out of time waiting for the
                # worker, or waited past the allowance, moves on too: the worker is busy.
                waited = time.monotonic() - started
                if isinstance(error, DeadlineExceeded) or waited >= _PARSE_ALLOWANCE_SECONDS:
                    self._slow_parsers.mark(caller)
                raise
        return await self._symbolic.run(job, *args)

    async def _derived(
        self, parsed: jobs.Parsed, wrt: jobs.Wrt, simplification: engine.Simplification
    ) -> jobs.Derived:
        async def compute() -> tuple[jobs.Derived, int]:
            derived = await self._symbolic.run(
                jobs.derive_parsed, parsed.portable, wrt, simplification, self.limits
            )
            self._observe(derived.timings)
            return derived, _derived_size(derived)

        result: jobs.Derived = await _remembering_refusals(
            self.caches.derivative, (parsed.key, wrt, simplification), compute
        )
        return result

    async def _latex(self, key: Hashable, derived: jobs.Derived) -> str:
        async def compute() -> tuple[str, int]:
            text = await self._symbolic.run(jobs.latex, derived.portable)
            return text, text_size(text)

        return await self.caches.latex.get_or_compute(key, compute)

    async def _evaluation_plan(self, text: str, wrt: jobs.Wrt, dependent: str) -> tuple[_Plan, int]:
        target: jobs.Parsed | jobs.Derived
        function: engine.Portable | None = None  # what a derivative is NaN where it is (no real value)
        along = wrt[0][0] if wrt else None  # ... and whose sign at its edges (`numeric._one_sided`)
        if dependent:
            asked = jobs.ImplicitRequest(text, wrt, dependent)
            target = await self._implicit_derived(asked, engine.Simplification.FAST)
            key: Hashable = ("function", _implicit_key(asked))
        else:
            parsed = await self._parsed(text)
            target, key = parsed, ("function", parsed.key, wrt)
            if wrt:
                target = await self._derived(parsed, wrt, engine.Simplification.FAST)
                # Only over the derivative's variables: a point need not give those it no longer reads.
                if set(parsed.variables) <= set(target.variables):
                    function = parsed.portable
        compiled = await self._compiled(
            key, jobs.compile_function, target.portable, target.variables, self.limits, function, along
        )
        plan = _Plan(compiled, target.variables, columns=1)
        return plan, plan.size

    async def _gradient_plan(self, text: str, variables: tuple[str, ...], hessian: bool) -> tuple[_Plan, int]:
        parsed = await self._parsed(text)
        names = jobs.gradient_variables(parsed.variables, variables, self.limits)
        compiled = await self._compiled(
            ("gradient", parsed.key, names, hessian),
            jobs.compile_gradient,
            parsed.portable,
            names,
            hessian,
            self.limits,
        )
        plan = _Plan(compiled, parsed.variables, columns=_gradient_shape(len(names), hessian)[0])
        return plan, plan.size

    async def _jacobian_plan(self, texts: tuple[str, ...], variables: tuple[str, ...]) -> tuple[_Plan, int]:
        rows, free, names = await self._jacobian_rows(texts, variables)
        compiled = await self._compiled(
            ("jacobian", cache.bounded(tuple(row.key for row in rows)), names),
            jobs.compile_jacobian,
            tuple(row.portable for row in rows),
            names,
            self.limits,
        )
        plan = _Plan(compiled, free, columns=len(rows) * (1 + len(names)))
        return plan, plan.size

    async def _jacobian_rows(
        self, texts: tuple[str, ...], variables: tuple[str, ...]
    ) -> tuple[list[jobs.Parsed], tuple[str, ...], tuple[str, ...]]:
        """The rows parsed (errors name `expressions[i]`), every variable they read, and the columns.
        The variables the rows read together are bounded as one expression's are, with `variables`
        or without: 64 rows of 32 variables each were compiled, 5 s of a worker, for a point that
        can never hold the 2,048 values they need (an independent attacker, 2026-12-07)."""
        rows: list[jobs.Parsed] = []
        read: set[str] = set()
        for index, text in enumerate(texts):
            try:
                rows.append(await self._parsed(text))
            except ChainruleError as error:
                raise error.relocated({"expression": f"expressions[{index}]"}) from None
            read.update(rows[-1].variables)
            if len(read) > self.limits.parse.max_variables:
                what = f"the expressions up to expressions[{index}] read too many distinct variables together"
                hint = "send the rows as several systems, each reading fewer variables"
                raise exceeded(
                    self.limits.parse, "max_variables", len(read), field="expressions", what=what, hint=hint
                )
        free = tuple(sorted(read))
        return rows, free, jobs.gradient_variables(free, variables, self.limits)

    async def _compiled(self, key: Hashable, job: Callable[..., jobs.Compiled[_C]], *args: Any) -> _C:
        """A compiled function, made by a symbolic job (in a killable worker, under the request's
        budget: partials, common subexpressions and code generation are sympy work too)."""

        async def compute() -> tuple[_C, int]:
            compiled = await self._symbolic.run(job, *args)
            self._observe(compiled.timings)
            return compiled.value, compiled.size

        result: _C = await _remembering_refusals(self.caches.compiled, key, compute)
        return result

    # Answering: decode the points and check what the reply will cost (off the event loop for a big
    # request), then compute and build the reply: on the event loop when the work is tiny (an
    # executor hop costs more) or the call is alone in flight and its work small, else on the
    # numeric executor once its working memory fits.

    async def _answer(
        self, plan: _Plan, request: Any, wire: Wire, answer: _Answer, filled: bool
    ) -> Reply[Any]:
        read_off_loop = wire.request_bytes > _READ_INLINE_BYTES
        if read_off_loop:
            batch, working = await self._numeric.run(self._batch, plan, request, wire)
        else:
            batch, working = self._batch(plan, request, wire)
        if plan.in_worker(batch.size):
            return await self._reply_from_worker(plan, batch, answer, filled)
        if not read_off_loop:
            cost = plan.cost(batch.size)
            if cost <= _INLINE_COST or (cost <= _ALONE_INLINE_COST and self.calls.active <= 1):
                try:
                    with engine.quick_only():
                        return self._reply(plan, batch, answer, filled)
                except engine.NeedsWidening:
                    pass  # a point past the doubles: long double, up to 50 times the cost, off the loop
        # The memory stays reserved while the thread computes, past a cancelled call (its deadline, its
        # client gone): given back at cancellation, it was counted free while still in use.
        give_back = await self._memory.take(working)
        return await _by_client_deadline(
            self._numeric.run_holding(give_back, self._reply, plan, batch, answer, filled)
        )

    def _batch(self, plan: _Plan, request: Any, wire: Wire) -> tuple[Batch, int]:
        """The request's points, after every check of what answering them will cost; and the working
        memory that will take."""
        batch = self._decoded(request, wire)
        missing = batch.missing(plan.needed)
        if missing:
            raise numeric.missing_columns(missing).relocated({"columns": batch.field})
        # Computing, and writing the reply's values (as JSON text, the costlier part of most calls).
        writing = round(wire.encoding.writing(batch.raw_output) * plan.columns)
        cost = plan.cost(batch.size) + writing * batch.size
        if cost > self.limits.engine.max_numeric_cost:
            each = f"{plan.work:,} operations and {plan.columns:,} {wire.encoding.name} values to write"
            what = f"the evaluation is too costly ({each}, times {batch.size:,} points)"
            raise exceeded(self.limits.engine, "max_numeric_cost", cost, field=batch.field, what=what)
        # One point has at most a few thousand values (2,112 for 64 Jacobian rows over 32 variables):
        # no reply of one point comes near a limit.
        if batch.single:
            return batch, 0
        return batch, self._sized(batch, plan.columns, plan.compiled.program.outputs, wire)

    def _decoded(self, request: Any, wire: Wire) -> Batch:
        points = request.points if wire.points is None else wire.points
        return decode_batch(
            request.point, points, self.limits.engine.max_points, self.settings.max_field_entries
        )

    def _sized(self, batch: Batch, columns: int, arrays: int, wire: Wire) -> int:
        """The working memory of answering `batch` with `columns` columns computed through `arrays`
        engine outputs; refused when that or the reply would exceed its limit."""
        shape = sizing.Shape(batch.size, columns, arrays, len(batch.columns), batch.raw_output)
        return sizing.check(
            shape,
            wire.encoding,
            self.settings.max_response_bytes,
            self.settings.max_working_bytes,
            field=batch.field,
        )

    # Before a gradient or a Jacobian is compiled, a reply too big by its shape alone is refused: the
    # partials of a 32-variable Hessian take seconds of a worker, and their count is known from the
    # names.

    async def _check_gradient_size(
        self, expression: str, variables: tuple[str, ...], request: pb.GradientAtPointRequest, wire: Wire
    ) -> None:
        parsed = await self._parsed(expression)
        n = len(jobs.gradient_variables(parsed.variables, variables, self.limits))
        await self._check_shape(request, wire, *_gradient_shape(n, request.hessian))

    async def _check_jacobian_size(
        self, texts: tuple[str, ...], variables: tuple[str, ...], request: pb.JacobianRequest, wire: Wire
    ) -> None:
        rows, _, names = await self._jacobian_rows(texts, variables)
        outputs = len(rows) * (1 + len(names))  # values and Jacobian: one column per output
        await self._check_shape(request, wire, outputs, outputs)

    async def _check_shape(self, request: Any, wire: Wire, columns: int, arrays: int) -> None:
        batch = await self._read(wire, functools.partial(self._decoded, wire=wire), request)
        if not batch.single:
            self._sized(batch, columns, arrays, wire)

    def _reply(self, plan: _Plan, batch: Batch, answer: _Answer, filled: bool) -> Reply[Any]:
        """Compute and finish the reply where the work runs: the message filled in, else serialised
        (f64le columns computed straight into the bytes to send)."""
        reply = Reply(answer.head(plan))
        into = None
        if batch.raw_output and not batch.single and not filled:
            into = answer.places(plan, reply.lay_out(answer.columns(plan), batch.size))
        try:
            computed = _timed("evaluate", answer.run, plan.compiled, batch.columns, batch.size, into)
        except ChainruleError as error:
            raise error.relocated({"columns": batch.field}) from None
        return self._finished(plan, batch, answer, reply, computed, filled=filled)

    async def _reply_from_worker(
        self, plan: _Plan, batch: Batch, answer: _Answer, filled: bool
    ) -> Reply[Any]:
        """The reply of code that holds the GIL as it computes (`_Plan.in_worker`), computed in a
        symbolic worker: under its budget and the callers' fair shares, and off the server's GIL. On a
        numeric thread, three Jacobians calling mpmath made every other call wait 56 ms instead of 3.5
        (tester round 3). Their cost keeps them to a few thousand points: the values come back pickled."""
        try:
            computed = await self._symbolic.run(
                jobs.evaluate_pointwise, answer.run, plan.compiled, batch.columns, batch.size
            )
        except ChainruleError as error:
            raise error.relocated({"columns": batch.field}) from None
        return self._finished(plan, batch, answer, Reply(answer.head(plan)), computed, filled=filled)

    def _finished(
        self,
        plan: _Plan,
        batch: Batch,
        answer: _Answer,
        reply: Reply[Any],
        computed: tuple[Any, jobs.Stage],
        *,
        filled: bool,
    ) -> Reply[Any]:
        """The reply with the engine's `computed` result: the message filled in, else serialised."""
        result, stage = computed
        self._observe((stage,))
        self.metrics.add_points(batch.size)
        answer.fill(plan, reply, batch, result)
        if filled:
            reply.message()
        else:
            reply.SerializeToString()
        return reply

    def _observe(self, stages: Sequence[jobs.Stage]) -> None:
        """Stages of work done for a request: into the stage metrics, and spans when tracing."""
        for stage in stages:
            self.metrics.observe_stage(stage.name, stage.seconds)
            if self._tracing is not None:
                self._tracing.stage(stage)

    async def server_info(
        self, request: pb.GetServerInfoRequest, wire: Wire = PROTOBUF_WIRE
    ) -> pb.GetServerInfoResponse:
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
        # The value in force: a setting whose 0 means "derived" has a property named as its limit
        # (`connections_per_caller` reported 0, for half of `connections`: an independent tester).
        settings = self.settings
        return [
            (
                declaration.name,
                getattr(settings, declaration.name, getattr(settings, name)),
                declaration.description,
            )
            for name, declaration in limit_settings()
        ]


def _gradient_shape(variables: int, hessian: bool) -> tuple[int, int]:
    """A gradient's reply columns per point (the Hessian's n*n), and the engine outputs computing them
    (its upper triangle)."""
    n = variables
    return 1 + n + (n * n if hessian else 0), 1 + n + (n * (n + 1) // 2 if hessian else 0)


def _implicit_key(asked: jobs.ImplicitRequest) -> Hashable:
    """An implicit derivative's part of a key, bounded as the first-level keys are."""
    return ("implicit", cache.text_key(asked.text), cache.bounded(asked.wrt), cache.text_key(asked.dependent))


def _check_names(names: Sequence[str], field: str) -> None:
    """Variable names are short (at most 32 characters): a long one is refused before it enters a
    key or a job, and its message shows only its start."""
    for index, name in enumerate(names):
        parsing.check_variable_name(name, field.format(index))


def _optional_name(name: str, field: str) -> str:
    """An optional variable name's part of a key (empty: not given), checked first, as `_check_names`
    (a 60 MB `dependent` or Series `variable` was hashed into its key and shipped to a worker,
    0.35 to 0.67 s of the server's CPU a call, before the worker refused it: an independent
    attacker, 2026-12-07)."""
    if name:
        parsing.check_variable_name(name, field)
    return name


def _expression_error(error: InvalidArgument) -> pb.ExpressionError:
    """What other RPCs send as INVALID_ARGUMENT about the expression, as Parse's answer."""
    metadata = dict(error.metadata)
    position = metadata.pop("position", None)
    message = pb.ExpressionError(reason=error.reason, message=error.message, metadata=metadata)
    if position is not None:
        message.position = int(position)
    return message


def _refused(
    refusal: NoClosedForm, numeric: bool, rpcs: str = "Evaluate with wrt, or GradientAtPoint,"
) -> NoClosedForm:
    """The refusal of a derivative's text, saying whether the RPCs of numbers (`rpcs`) give its values."""
    if numeric:
        also = f"{rpcs} computes its values numerically"
    else:  # NO_NUMERIC_FORM from those: sympy leaves the derivative unevaluated
        also = f"nor can {rpcs.rstrip(',')} compute its values (sympy leaves it unevaluated)"
    return NoClosedForm(
        f"{refusal.message}: {also}",
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


def _reply_size(response: pb.DifferentiateResponse, texts: int, extras: jobs.Extras) -> int:
    """What a cached Differentiate reply holds: at least its serialised size (steps carry each layer
    of their chain rule, O(depth^3) for a nest, which the estimate of its texts missed by 8x)."""
    return max(texts + _extras_size(extras), response.ByteSize())


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


def _checked_formats(formats: Sequence[int]) -> tuple[int, ...]:
    """The formats, each known, without repeats (in the order first listed: it orders the code)."""
    for index, value in enumerate(formats):
        if value not in _FORMATS:
            raise InvalidArgument(f"unknown output format {value}", field=f"formats[{index}]")
    return tuple(dict.fromkeys(formats))


async def _remembering_refusals(
    lru: cache.LruCache[Hashable, Any], key: Hashable, compute: Callable[[], Awaitable[tuple[Any, int]]]
) -> Any:
    """`lru.get_or_compute(key, compute)`, where a refusal by a limit (LimitExceeded) is an answer
    too: the same work under the same limits is refused again at once, without the seconds of a
    worker it took to find out (a derivative past `derivative_nodes` cost 3 to 4 s every time it was
    asked: an independent tester). Budgets and deadlines depend on the moment: not remembered."""

    async def computing() -> tuple[Any, int]:
        try:
            return await compute()
        except LimitExceeded as error:
            return _without_frames(error), text_size(error.message) + 256

    found = await lru.get_or_compute(key, computing)
    if isinstance(found, LimitExceeded):
        raise copy.copy(found)  # a fresh instance: raising the cached one would grow its traceback
    return found


def _without_frames(error: _E) -> _E:
    """`error` to be cached, let go of the frames that hold the request (`errors.let_go_of_frames`: a
    Parse of a 60 MB text that was too long kept it, 57 MB a call, uncounted: an independent
    attacker, 2026-12-07)."""
    let_go_of_frames(error)
    return error


def _derived_size(derived: jobs.Derived) -> int:
    """What the derivative cache counts for `derived`: its text four times over (the strings and tree
    made from it) and the pickle it came as. A derivative the grammar cannot write has no text: a
    60 KB pickle was counted as 760 bytes (an independent tester: 10,000 of them would have held
    0.6 GB against a 34 MB bound)."""
    return 4 * text_size(derived.text) + derived.portable.pickled_bytes


def _timed(name: str, fn: Callable[..., _Result], *args: Any) -> tuple[_Result, jobs.Stage]:
    return jobs.timed(name, fn, *args)


# How an RPC computes its result and builds its reply: the reply's fields known before computing
# (`head`), the f64le columns of many points in the reply's order (their fields by the plan, their
# arrays by the result), the fields of one point, and the column each engine output is computed
# into (None: the engine's outputs are the columns, in order).


@dataclass(frozen=True)
class _Answer:
    run: Callable[..., Any]
    head: Callable[[_Plan], Message]
    columns: Callable[[_Plan], list[str]]
    arrays: Callable[[Any], list[numeric.FloatArray]]
    one_point: Callable[[Any, Any], None]
    computed_into: Callable[[_Plan], list[int]] | None = None

    def places(self, plan: _Plan, columns: list[numeric.FloatArray]) -> list[numeric.FloatArray]:
        """The reply's laid-out `columns` the engine's outputs are computed into, in its order."""
        return columns if self.computed_into is None else [columns[i] for i in self.computed_into(plan)]

    def fill(self, plan: _Plan, reply: Reply[Any], batch: Batch, result: Any) -> None:
        reply.head.nonfinite_count = result.nonfinite_count
        if batch.single:
            self.one_point(reply.head, result)
            return
        for field, values in zip(self.columns(plan), self.arrays(result), strict=True):
            reply.add(field, values, batch.raw_output)


async def _by_client_deadline(work: Awaitable[_Result]) -> _Result:
    """`work`, given up at the caller's deadline. gRPC cancels a call there whatever computes it; over
    REST (a grpc-timeout header) numeric work on a thread went on to its end (a 1 s deadline answered
    429 after 3.2 s; tester round 5). The thread finishes what it started either way."""
    scope = deadlines.current()
    if scope is None or scope.client_deadline is None:
        return await work
    async with deadlines.TimeLimit(max(0.0, scope.client_deadline - time.monotonic())):
        return await work
    seconds = scope.client_deadline - scope.started
    raise DeadlineExceeded(
        f"the evaluation did not finish within the request's deadline ({plain_seconds(seconds)} s)",
        metadata={"budget": "client_deadline", "seconds": f"{seconds:.3g}"},
    )


def _variables(response: Callable[..., Message]) -> Callable[[_Plan], Message]:
    return lambda plan: response(variables=list(plan.compiled.variables))


def _evaluation_columns(plan: _Plan) -> list[str]:
    return ["values"]


def _one_value(response: pb.EvaluateResponse, result: numeric.EvaluationResult) -> None:
    response.value = float(result.values[0])


_EVALUATION = _Answer(
    engine.evaluate,
    lambda _: pb.EvaluateResponse(),
    _evaluation_columns,
    lambda result: [result.values],
    _one_value,
)


def _gradient_columns(plan: _Plan) -> list[str]:
    compiled = cast(engine.CompiledGradient, plan.compiled)
    n = len(compiled.variables)
    return ["values"] + ["gradients"] * n + ["hessians"] * (n * n if compiled.hessian else 0)


def _gradient_computed_into(plan: _Plan) -> list[int]:
    """Value and partials in their columns, the Hessian's upper triangle in its (i, j) columns (the
    mirrored ones are copied from them)."""
    compiled = cast(engine.CompiledGradient, plan.compiled)
    n = len(compiled.variables)
    upper = numeric.upper_triangle(n) if compiled.hessian else []
    return list(range(1 + n)) + [1 + n + i * n + j for i, j in upper]


def _one_gradient(response: pb.GradientAtPointResponse, result: numeric.GradientResult) -> None:
    response.value = float(result.value[0])
    response.gradient.extend(float(column[0]) for column in result.gradients)
    response.hessian.extend(float(column[0]) for column in result.hessians)


_GRADIENT = _Answer(
    engine.gradient,
    _variables(pb.GradientAtPointResponse),
    _gradient_columns,
    lambda result: [result.value, *result.gradients, *result.hessians],
    _one_gradient,
    _gradient_computed_into,
)


def _jacobian_columns(plan: _Plan) -> list[str]:
    compiled = cast(engine.CompiledJacobian, plan.compiled)
    return ["value_arrays"] * compiled.rows + ["jacobian_arrays"] * (compiled.rows * len(compiled.variables))


def _one_jacobian(response: pb.JacobianResponse, result: numeric.JacobianResult) -> None:
    response.values.extend(float(column[0]) for column in result.values)
    response.jacobian.extend(float(column[0]) for column in result.jacobian)


_JACOBIAN = _Answer(
    engine.jacobian,
    _variables(pb.JacobianResponse),
    _jacobian_columns,
    lambda result: [*result.values, *result.jacobian],
    _one_jacobian,
)
