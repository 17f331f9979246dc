"""The gRPC server interceptor: request ids, RPC metrics and one log line per call.

A request id is taken from the caller's `x-request-id` metadata (when it is short printable ASCII)
or made, returned in the response's trailing metadata (on success and on errors), and set in
`logs.REQUEST_ID` so every log line about the call carries it. Trailers, not initial metadata:
grpc.aio sends initial metadata set by a handler in a batch of its own, which cost about 10% of
the cached path's requests/s (bench/README.md); trailers travel with the status for free.
Unary-unary handlers get the RPC metrics; streaming ones (reflection, health Watch) get the
request id in their log lines only. Each method's instrumented handler and metric children are
built once and kept, so the per-call cost is a few counter increments and one histogram observation
(bench/README.md has the measurements).

The same work runs in one of two places. `Registration` builds it into each handler as servicers
are added, when no other interceptor needs grpc's pipeline: grpc.aio then finds the instrumented
handler directly, instead of running `intercept_service` and awaiting `continuation` on every call.
Otherwise (auth on) `ServerInterceptor` serves as an ordinary interceptor, outermost.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import grpc

from chainrule.server.logs import REQUEST_ID
from chainrule.server.metrics import Metrics

log = logging.getLogger("chainrule.server.requests")

REQUEST_ID_KEY = "x-request-id"
_MAX_ID_LENGTH = 128
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)

Context = grpc.aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]


def make_request_id() -> str:
    """A process-unique id: a random per-process prefix and a counter (cheaper than uuid4)."""
    return f"{_PREFIX}-{next(_counter):x}"


def request_id_from(metadata: Any) -> str:
    """The caller's `x-request-id` if it is safe to log and echo; else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            if 0 < len(value) <= _MAX_ID_LENGTH and value.isascii() and value.isprintable():
                return value
            break
    return make_request_id()


class _MethodMetrics:
    """The metric children of one method, resolved once (the `OK` code's too)."""

    def __init__(self, metrics: Metrics, full_method: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        labels = ("unary", service, method)
        self.method = full_method
        self.started = metrics.started.labels(*labels)
        self.seconds = metrics.handling_seconds.labels(*labels)
        self._handled = metrics.handled
        self._labels = labels
        self.ok = metrics.handled.labels(*labels, grpc.StatusCode.OK.name)
        self._by_code: dict[grpc.StatusCode, Any] = {grpc.StatusCode.OK: self.ok}
        self.in_flight = metrics.in_flight
        # Bound once: the per-call cost is these calls, not attribute lookups.
        self.inc_started, self.inc_ok, self.observe = self.started.inc, self.ok.inc, self.seconds.observe
        self.inc_in_flight, self.dec_in_flight = metrics.in_flight.inc, metrics.in_flight.dec

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._by_code.get(code)
        if child is None:
            child = self._handled.labels(*self._labels, code.name)
            self._by_code[code] = child
        return child


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Request ids, RPC metrics and request logging for every call."""

    def __init__(self, metrics: Metrics, response_metadata: Sequence[tuple[str, str]] = ()) -> None:
        """`response_metadata`: pairs added to every unary response's trailers (e.g. a worker id)."""
        self._metrics = metrics
        # method -> (the handler seen, its instrumented copy): built once, not per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}
        self._response_metadata = tuple(response_metadata)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        # The handler runs in this coroutine's context, so it reads the id from REQUEST_ID.
        REQUEST_ID.set(request_id_from(handler_call_details.invocation_metadata))
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        # An identity check against the handler kept alive here: an inner interceptor may answer
        # with a different handler (auth's refusal), which must not be served from the cache.
        if wrapped is None or wrapped[0] is not handler:
            wrapped = self._wrapped[method] = (handler, self._instrument(handler, method))
        return wrapped[1]

    def _instrument(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, *, own_request_id: bool = False
    ) -> grpc.RpcMethodHandler[Any, Any]:
        behavior = cast(UnaryBehavior, handler.unary_unary)
        instrumented = _instrumented(
            behavior,
            functools.partial(_MethodMetrics, self._metrics, method),
            self._response_metadata,
            own_request_id,
        )
        return handler._replace(unary_unary=instrumented)  # type: ignore[attr-defined, no-any-return]

    def instrument(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """`handler` doing this interceptor's work itself, request id included: for `Registration`."""
        if handler.unary_unary is not None:
            return self._instrument(handler, method, own_request_id=True)
        return _with_request_id(handler)


class Registration:
    """Stands in for the server while servicers are added, instrumenting each handler once."""

    def __init__(self, server: grpc.aio.Server, interceptor: ServerInterceptor) -> None:
        self._server = server
        self._interceptor = interceptor

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        instrument = self._interceptor.instrument
        self._server.add_registered_method_handlers(
            service, {name: instrument(f"/{service}/{name}", h) for name, h in handlers.items()}
        )

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_InstrumentedGeneric(handler, self._interceptor) for handler in handlers)
        )


class _InstrumentedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose answers are instrumented, once per method (registered ones come first)."""

    def __init__(self, inner: grpc.GenericRpcHandler, interceptor: ServerInterceptor) -> None:
        self._inner = inner
        self._interceptor = interceptor
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
            wrapped = self._wrapped[method] = (handler, self._interceptor.instrument(method, handler))
        return wrapped[1]


def _with_request_id(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming handler that sets the request id for its log lines (no metrics: see above)."""
    kinds = ("unary_stream", "stream_unary", "stream_stream")
    kind = next((name for name in kinds if getattr(handler, name) is not None), None)
    if kind is None:
        return handler
    behavior = getattr(handler, kind)
    wrapped: Any
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            REQUEST_ID.set(request_id_from(context.invocation_metadata()))
            async for item in behavior(request, context):
                yield item

        wrapped = stream
    elif inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: Context) -> Any:
            REQUEST_ID.set(request_id_from(context.invocation_metadata()))
            return await behavior(request, context)

        wrapped = call
    else:
        return handler  # a synchronous behaviour runs on a thread: no contextvar reaches it
    return handler._replace(**{kind: wrapped})  # type: ignore[attr-defined, no-any-return]


def _instrumented(
    behavior: UnaryBehavior,
    make_metrics: Callable[[], _MethodMetrics],
    response_metadata: tuple[tuple[str, str], ...],
    own_request_id: bool,
) -> UnaryBehavior:
    perf_counter, get_request_id, set_request_id = time.perf_counter, REQUEST_ID.get, REQUEST_ID.set
    # Resolved on the first call, not when the handler is built: a method never called exports
    # no samples (its labelled children would otherwise appear at 0 from start-up).
    resolved: _MethodMetrics | None = None

    async def serve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        nonlocal resolved
        start = perf_counter()
        metrics = resolved
        if metrics is None:
            metrics = resolved = make_metrics()
        if own_request_id:
            # This coroutine runs in the call's own task: the handler and its log lines see the id.
            request_id = request_id_from(context.invocation_metadata())
            set_request_id(request_id)
        else:
            request_id = get_request_id()
        extra = ((REQUEST_ID_KEY, request_id), *response_metadata)
        metrics.inc_started()
        metrics.inc_in_flight()
        try:
            context.set_trailing_metadata(extra)
            response = await behavior(request, cast(Context, _WithRequestId(context, extra)))
        except asyncio.CancelledError:
            _finish(metrics, grpc.StatusCode.CANCELLED, start)
            raise
        except Exception:
            _finish(metrics, _code_of(context) or grpc.StatusCode.UNKNOWN, start)
            raise
        # The handler returned normally; only a code it set itself (none of ours do) is not OK.
        code = _code_of(context)
        if code is None or code is grpc.StatusCode.OK:
            elapsed = perf_counter() - start
            metrics.dec_in_flight()
            metrics.inc_ok()
            metrics.observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s OK in %.2f ms", metrics.method, elapsed * 1000)
        else:
            _finish(metrics, code, start)
        return response

    return serve


def _finish(metrics: _MethodMetrics, code: grpc.StatusCode, start: float) -> None:
    """Record a call that did not end OK."""
    elapsed = time.perf_counter() - start
    metrics.in_flight.dec()
    metrics.handled(code).inc()
    metrics.seconds.observe(elapsed)
    _log(metrics.method, code, elapsed)


class _WithRequestId:
    """The servicer context, with the request id kept in trailers the handler sets or aborts with."""

    __slots__ = ("_context", "_extra")

    def __init__(
        self, context: grpc.aio.ServicerContext[Any, Any], extra: tuple[tuple[str, str], ...]
    ) -> None:
        self._context = context
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata((*metadata, *self._extra))

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        await self._context.abort(code, details, (*trailing_metadata, *self._extra))

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode | None:
    code = context.code()
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    # grpc.aio reports the code set by abort() as the numeric cygrpc value.
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


def _log(method: str, code: grpc.StatusCode, seconds: float) -> None:
    if code is grpc.StatusCode.OK:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s OK in %.2f ms", method, seconds * 1000)
        return
    log.warning("%s failed with %s in %.2f ms", method, code.name, seconds * 1000)
