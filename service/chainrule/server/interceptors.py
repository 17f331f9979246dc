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
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
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
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        metrics = _MethodMetrics(self._metrics, method)
        behavior = cast(UnaryBehavior, handler.unary_unary)
        instrumented = _instrumented(behavior, metrics, self._response_metadata)
        return handler._replace(unary_unary=instrumented)  # type: ignore[attr-defined, no-any-return]


def _instrumented(
    behavior: UnaryBehavior, metrics: _MethodMetrics, response_metadata: tuple[tuple[str, str], ...]
) -> UnaryBehavior:
    # Bound once: the per-call cost is these calls, not attribute lookups.
    started, ok, observe = metrics.started.inc, metrics.ok.inc, metrics.seconds.observe
    in_flight_inc, in_flight_dec = metrics.in_flight.inc, metrics.in_flight.dec
    method, perf_counter, get_request_id = metrics.method, time.perf_counter, REQUEST_ID.get

    async def serve(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        start = perf_counter()
        extra = ((REQUEST_ID_KEY, get_request_id()), *response_metadata)
        started()
        in_flight_inc()
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
            in_flight_dec()
            ok()
            observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s OK in %.2f ms", method, elapsed * 1000)
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
