"""Every gRPC handler instrumented once, as it is registered: request ids, RPC metrics, logging, auth.

A request id is taken from the caller's `x-request-id` metadata (when it is short printable ASCII)
or made, returned in the response's trailing metadata (on success and on errors), and opens the
call's `logs.RequestRecord`, so every log line about the call carries it. Trailers, not initial
metadata: grpc.aio sends initial metadata set by a handler in a batch of its own, which cost about
10% of the cached path's requests/s (bench/README.md); trailers travel with the status for free.
Every call ends with one access line (access.py). Unary-unary handlers get the RPC metrics;
streaming ones (reflection, health Watch) get the request id and the access line only. With bearer
tokens configured, each call's token is checked first (health exempt, see auth.py); a refusal is
counted and logged like any failed call.

`Registration` stands in for the server while servicers are added and wraps each handler once,
with its metric children resolved on its first call, so grpc.aio finds the instrumented handler
directly: no grpc interceptor pipeline runs `intercept_service` and awaits `continuation` on
every call (bench/README.md has the measurements).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, cast

import grpc
from grpc._cython import cygrpc  # type: ignore[attr-defined]  # no stubs: ExecuteBatchError

from chainrule.engine.errors import ChainruleError, Code, InvalidArgument, let_go_of_frames
from chainrule.server.logs import REQUEST_ID_KEY, RequestRecord, accept_request_id, begin_request, note_error
from chainrule.server.metrics import CallCounts, Metrics
from chainrule.server.tracing import Tracing
from chainrule.server.transport import access
from chainrule.server.transport.auth import TokenChecker, grpc_refusal
from chainrule.server.transport.receiving import ReceiveSlots
from chainrule.server.transport.status import grpc_status
from chainrule.server.transport.streams import (
    OpenStreams,
    bounded_reader,
    check_message_count,
    check_message_size,
)

__all__ = ["REQUEST_ID_KEY", "Instrumentation", "Registration", "request_id_from"]

Context = grpc.aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]


def request_id_from(metadata: Any) -> str:
    """The caller's `x-request-id` if it is safe to log and echo; else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            return accept_request_id(value if isinstance(value, str) else None)
    return accept_request_id(None)


class _MethodMetrics:
    """The metric children of one method, resolved once (the `OK` code's too)."""

    def __init__(self, metrics: Metrics, full_method: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        labels = ("unary", service, method)
        self.method = full_method
        self._handled = metrics.handled
        self._labels = labels
        ok = metrics.handled.labels(*labels, grpc.StatusCode.OK.name)
        self._by_code: dict[grpc.StatusCode, Any] = {grpc.StatusCode.OK: ok}
        # Started, ended OK and in flight: counted in ints, published when collected.
        self.calls = CallCounts(metrics, metrics.started.labels(*labels), ok)
        self.observe = metrics.handling_seconds.labels(*labels).observe
        self.quiet = full_method.startswith(access.QUIET_GRPC_PREFIX)

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._by_code.get(code)
        if child is None:
            child = self._handled.labels(*self._labels, code.name)
            self._by_code[code] = child
        return child


Refusal = Callable[[Any], ChainruleError | None]


class Instrumentation:
    """Builds instrumented handlers: request ids, RPC metrics, request logging and the token check."""

    def __init__(
        self,
        metrics: Metrics,
        response_metadata: Sequence[tuple[str, str]] = (),
        tokens: TokenChecker | None = None,
        access_log: bool = True,
        tracing: Tracing | None = None,
        *,
        receiving: ReceiveSlots | None = None,
        streams: OpenStreams | None = None,
    ) -> None:
        """`response_metadata`: pairs added to every unary response's trailers (the server process id);
        `access_log`: an access line for calls that succeed too, not only for failures; `tracing`:
        a SERVER span around each unary call (none of its cost when off); `receiving`: the slots
        every request message is read in (receiving.py), after the token check; `streams`: the
        bounds of streaming calls (streams.py)."""
        self._metrics = metrics
        self._receiving = receiving
        self._streams = streams
        self._response_metadata = tuple(response_metadata)
        self._tokens = tokens or TokenChecker(())
        self._log_successes = access_log
        self._tracing = tracing

    def instrument(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """`handler` with this instrumentation built in."""
        refusal = grpc_refusal(self._tokens, method)
        # Requests grpc decodes (health, reflection: chainrule's methods take bytes) are small, and
        # one that is not is refused by its length, undecoded.
        deserialize = handler.request_deserializer if self._receiving is not None else None
        if deserialize is not None:
            handler = handler._replace(request_deserializer=bounded_reader(deserialize))  # type: ignore[attr-defined]
        if handler.unary_unary is None:
            return _streaming(handler, method, refusal, self._receiving, self._streams)
        instrumented = _instrumented(
            cast(UnaryBehavior, handler.unary_unary),
            functools.partial(_MethodMetrics, self._metrics, method),
            self._response_metadata,
            refusal,
            self._log_successes,
            receiving=self._receiving,
            checked=_as_is if deserialize is None else check_message_size,
        )
        if self._tracing is not None:
            instrumented = _traced(instrumented, self._tracing, method)
        if self._receiving is None:
            return handler._replace(unary_unary=instrumented)  # type: ignore[attr-defined, no-any-return]
        # Registered as client-streaming, the handler runs before its message is read, and reads it.
        return handler._replace(  # type: ignore[attr-defined, no-any-return]
            request_streaming=True, unary_unary=None, stream_unary=instrumented
        )


class Registration:
    """Stands in for the server while servicers are added, instrumenting each handler once."""

    def __init__(self, server: grpc.aio.Server, instrumentation: Instrumentation) -> None:
        self._server = server
        self._instrumentation = instrumentation

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        instrument = self._instrumentation.instrument
        self._server.add_registered_method_handlers(
            service, {name: instrument(f"/{service}/{name}", h) for name, h in handlers.items()}
        )

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_InstrumentedGeneric(handler, self._instrumentation) for handler in handlers)
        )


class _InstrumentedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose answers are instrumented, once per method (registered ones come first)."""

    def __init__(self, inner: grpc.GenericRpcHandler, instrumentation: Instrumentation) -> None:
        self._inner = inner
        self._instrumentation = instrumentation
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = self._wrapped[method] = (handler, self._instrumentation.instrument(method, handler))
        return wrapped[1]


def _streaming(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    refusal: Refusal | None,
    receiving: ReceiveSlots | None,
    streams: OpenStreams | None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming handler that checks the token, sets the request id and writes an access line;
    with `receiving`, its request messages are read in slots (a server-streaming one's registered as
    bidirectional, so that it runs before its message is read); with `streams`, it is counted
    among the open streams and its request messages are small."""
    kinds = ("unary_stream", "stream_unary", "stream_stream")
    kind = next((name for name in kinds if getattr(handler, name) is not None), None)
    if kind is None:
        return handler
    behavior = getattr(handler, kind)
    if receiving is not None:
        small = streams is not None
        behavior = _reading_in_slots(behavior, receiving, one=kind == "unary_stream", small=small)
        if kind == "unary_stream":
            handler = handler._replace(request_streaming=True, unary_stream=None)  # type: ignore[attr-defined]
            kind = "stream_stream"

    calls = _StreamCalls(method, refusal, streams)
    if inspect.isasyncgenfunction(behavior):
        wrapped: Any = calls.stream(behavior)
    elif inspect.iscoroutinefunction(behavior):
        wrapped = calls.call(behavior)
    else:
        return handler  # a synchronous behaviour runs on a thread: no contextvar reaches it
    return handler._replace(**{kind: wrapped})  # type: ignore[attr-defined, no-any-return]


class _StreamCalls:
    """The calls of one streaming method: token-checked, counted among the open streams, logged."""

    def __init__(self, method: str, refusal: Refusal | None, streams: OpenStreams | None) -> None:
        self._method = method
        self._refusal = refusal
        self._streams = streams

    def stream(self, behavior: Any) -> Callable[[Any, Context], Awaitable[None]]:
        """An async generator's handler that writes each item itself (`context.write`): a write that
        fails as the caller goes away (its connection closed with replies unread) ends the call
        quietly here, where a yielded item's failed write was grpc's own, logged at ERROR with a
        traceback (an independent tester)."""

        async def stream(request: Any, context: Context) -> None:
            start, code = time.perf_counter(), grpc.StatusCode.OK
            record = await self._admit(context)
            try:
                async for item in behavior(request, context):
                    await context.write(item)
            except cygrpc.ExecuteBatchError:
                # The call is over: grpc would fail to send a status too (a write still pending).
                code = grpc.StatusCode.CANCELLED
                raise asyncio.CancelledError from None
            except BaseException as error:
                code = _stream_ended(context, error)
                raise
            finally:
                self._finished(record, start, code)

        return stream

    def call(self, behavior: Any) -> Callable[[Any, Context], Awaitable[Any]]:
        async def call(request: Any, context: Context) -> Any:
            start, code = time.perf_counter(), grpc.StatusCode.OK
            record = await self._admit(context)
            try:
                return await behavior(request, context)
            except BaseException as error:
                code = _stream_ended(context, error)
                raise
            finally:
                self._finished(record, start, code)

        return call

    async def _admit(self, context: Context) -> RequestRecord:
        """The call's record, once its token is checked and it is counted open."""
        metadata = context.invocation_metadata()
        record = begin_request(request_id_from(metadata))
        error = self._refusal(metadata) if self._refusal is not None else None
        if error is None and self._streams is not None:
            try:
                self._streams.count(context)
            except ChainruleError as refused:
                error = refused
        if error is not None:
            note_error(error)
            await context.abort_with_status(grpc_status(error))
        return record

    def _finished(self, record: RequestRecord, start: float, code: grpc.StatusCode) -> None:
        _emit(self._method, code, time.perf_counter() - start, (None, None), record, quiet=True)


def _stream_ended(context: Context, error: BaseException) -> grpc.StatusCode:
    """How a stream that raised ended: the caller went away, or it failed with a code."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return _code_of(context) or grpc.StatusCode.UNKNOWN


def _reading_in_slots(behavior: Any, receiving: ReceiveSlots, *, one: bool, small: bool) -> Any:
    """`behavior` given its request message (`one`) or messages, each read in a slot; `small`: each
    at most `sizing.STREAM_MESSAGE_BYTES`, and at most `sizing.STREAM_MESSAGES` of them (LIMIT_EXCEEDED)."""

    checked = check_message_size if small else _as_is

    async def each(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        count = 0

        async def read() -> Any:
            nonlocal count
            count += 1
            if small:
                check_message_count(count)
            return checked(await anext(requests))

        while True:
            try:
                yield await _read_in_slot(receiving, read, context, context)
            except StopAsyncIteration:
                return

    async def given(requests: Any, context: Context) -> Any:
        return await _one_message(receiving, context, context, checked) if one else each(requests, context)

    if inspect.isasyncgenfunction(behavior):

        async def stream(requests: Any, context: Context) -> AsyncIterator[Any]:
            async for item in behavior(await given(requests, context), context):
                yield item

        return stream

    async def call(requests: Any, context: Context) -> Any:
        return await behavior(await given(requests, context), context)

    return call


def _as_is(message: Any) -> Any:
    return message


async def _one_message(
    receiving: ReceiveSlots, context: Context, aborting: Any, checked: Callable[[Any], Any] = _as_is
) -> Any:
    """The call's one request message, read in a slot (`context.read`) and `checked` there (a
    ChainruleError it raises aborts the call, as a refused read does)."""

    async def read() -> Any:
        request = await context.read()
        if request is grpc.aio.EOF:
            # grpc reads a message over its limit as none, having answered the caller itself.
            raise InvalidArgument(
                "no request message arrived: the call carried none, or one over MAX_REQUEST_BYTES, "
                "which grpc refused with RESOURCE_EXHAUSTED; send exactly one message within the limit "
                "(larger batches in chunks, as the clients do)",
                reason="NO_MESSAGE",
            )
        return checked(request)

    return await _read_in_slot(receiving, read, context, aborting)


async def _read_in_slot(
    receiving: ReceiveSlots, read: Callable[[], Awaitable[Any]], context: Context, aborting: Any
) -> Any:
    """`read()` in a slot; a call refused (or its message refused) is aborted with `aborting`."""
    try:
        return await receiving.receive(read, context)
    except ChainruleError as error:
        note_error(error)
        await abort_unless_ended(aborting, grpc_status(error))


async def abort_unless_ended(aborting: Any, status: grpc.Status) -> NoReturn:
    """Abort the call with `status`, unless grpc had ended it itself (a message past its limits,
    e.g. a gzip bomb over MAX_REQUEST_BYTES, or its deadline passed while the handler ran): it
    answered the caller then, and nothing is left to send, nothing to log as a server error (each
    such call logged a traceback at ERROR: an independent tester, and an attack hunt's calls with
    20 ms deadlines, 26 tracebacks in 20 s)."""
    try:
        await aborting.abort_with_status(status)
    except cygrpc.ExecuteBatchError:
        raise asyncio.CancelledError from None
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def _instrumented(
    behavior: UnaryBehavior,
    make_metrics: Callable[[], _MethodMetrics],
    response_metadata: tuple[tuple[str, str], ...],
    refusal: Refusal | None,
    log_successes: bool,
    *,
    receiving: ReceiveSlots | None,
    checked: Callable[[Any], Any],
) -> UnaryBehavior:
    """`behavior` counted, logged and token-checked; with `receiving`, a client-streaming behaviour
    that reads its one request message in a slot first, and `checked` there."""
    perf_counter = time.perf_counter
    # Resolved on the first call, not when the handler is built: a method never called exports
    # no samples (its labelled children would otherwise appear at 0 from start-up).
    resolved: _MethodMetrics | None = None

    async def serve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        nonlocal resolved
        start = perf_counter()
        metrics = resolved
        if metrics is None:
            metrics = resolved = make_metrics()
        metadata = context.invocation_metadata()
        # This coroutine runs in the call's own task: the handler and its log lines see the id.
        record = begin_request(request_id_from(metadata))
        extra = ((REQUEST_ID_KEY, record.request_id), *response_metadata)
        calls = metrics.calls
        calls.started += 1
        scoped = _CallContext(
            context, extra=extra, metrics=metrics, start=start, request=request, record=record
        )
        try:
            context.set_trailing_metadata(extra)
            error = refusal(metadata) if refusal is not None else None
            if error is not None:
                note_error(error)
                await scoped.abort_with_status(grpc_status(error))
            if receiving is not None:
                request = await _one_message(receiving, context, scoped, checked)
                scoped.received(request)
            response = await behavior(request, cast(Context, scoped))
        except asyncio.CancelledError as error:
            scoped.finish(grpc.StatusCode.CANCELLED)
            _let_go_when_done(context, error)
            raise
        except Exception as error:
            scoped.finish(_code_of(context) or grpc.StatusCode.UNKNOWN)
            _let_go_when_done(context, error)
            raise
        # The handler returned normally; only a code it set itself (none of ours do) is not OK.
        code = _code_of(context)
        if code is None or code is grpc.StatusCode.OK:
            elapsed = perf_counter() - start
            calls.ok += 1
            calls.ended += 1
            metrics.observe(elapsed)
            if log_successes or access.log.isEnabledFor(logging.DEBUG):
                _emit(
                    metrics.method,
                    grpc.StatusCode.OK,
                    elapsed,
                    (_size(request), _size(response)),
                    record,
                    quiet=not log_successes or metrics.quiet,
                )
        else:
            scoped.finish(code)
        return response

    return serve


def _traced(serve: UnaryBehavior, tracing: Tracing, method: str) -> UnaryBehavior:
    """`serve` inside the call's SERVER span, so its log lines and stage spans belong to the trace."""

    async def call(request: Any, context: Context) -> Any:
        with tracing.rpc_span(method, context.invocation_metadata()) as span:
            try:
                response = await serve(request, context)
            except asyncio.CancelledError:
                tracing.end_rpc(span, Code.CANCELLED)
                raise
            except Exception:
                tracing.end_rpc(span, Code((_code_of(context) or grpc.StatusCode.UNKNOWN).value[0]))
                raise
            tracing.end_rpc(span, Code.OK)
            return response

    return call


class _CallContext:
    """The servicer context of one call, with the request id in every trailer set or aborted with.

    A failed call is recorded before its status leaves: grpc.aio's abort sends it at once, and a
    caller could otherwise see the error before the metrics and the log do.
    """

    __slots__ = ("_context", "_extra", "_finished", "_metrics", "_record", "_request_bytes", "_start")

    def __init__(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        extra: tuple[tuple[str, str], ...],
        metrics: _MethodMetrics,
        start: float,
        request: Any,
        record: RequestRecord,
    ) -> None:
        self._context = context
        self._extra = extra
        self._metrics = metrics
        self._start = start
        self._request_bytes = _size(request)
        self._record = record
        self._finished = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def received(self, request: Any) -> None:
        """The request message, read once the call had started."""
        self._request_bytes = _size(request)

    def finish(self, code: grpc.StatusCode) -> None:
        """Record a call that did not end OK, once."""
        if self._finished:
            return
        self._finished = True
        elapsed = time.perf_counter() - self._start
        metrics = self._metrics
        metrics.calls.ended += 1
        metrics.handled(code).inc()
        metrics.observe(elapsed)
        if code is grpc.StatusCode.CANCELLED and self._request_bytes is None:
            # Reset by its client before its message came (an HTTP/2 rapid reset sends a million such
            # calls a minute): counted, not logged; the access log grew 22-29 MB a minute with them.
            return
        _emit(metrics.method, code, elapsed, (self._request_bytes, 0), self._record)

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata((*metadata, *self._extra))

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.finish(code)
        await self._context.abort(code, details, (*trailing_metadata, *self._extra))

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


def _let_go_when_done(context: grpc.aio.ServicerContext[Any, Any], error: BaseException) -> None:
    """`let_go_of_frames(error)` once the call is done: grpc keeps the exception that aborts a call
    in the call's state, which the context references (ten refused 2 MB calls held 20 MB; ten that
    ran out of time during a cold parse, 12 MB and the replaced workers)."""
    context.add_done_callback(lambda _: let_go_of_frames(error))  # type: ignore[arg-type]


def _size(message: Any) -> int | None:
    """A request's or response's bytes: chainrule's handlers take and return them serialised (a
    message's `ByteSize` would encode it again); the health and reflection services' are messages."""
    if isinstance(message, bytes):
        return len(message)
    return message.ByteSize() if hasattr(message, "ByteSize") else None


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode | None:
    code = context.code()
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    # grpc.aio reports the code set by abort() as the numeric cygrpc value.
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


def _emit(
    method: str,
    code: grpc.StatusCode,
    seconds: float,
    sizes: tuple[int | None, int | None],
    record: RequestRecord,
    *,
    quiet: bool = False,
) -> None:
    """The access line of one gRPC call; `sizes`: the request's and the response's bytes, if known."""
    access.emit(
        transport="grpc",
        method=method,
        route=method,
        status=code.name,
        code=Code(code.value[0]),
        seconds=seconds,
        bytes_in=sizes[0],
        bytes_out=sizes[1],
        record=record,
        quiet=quiet or method.startswith(access.QUIET_GRPC_PREFIX),
    )
