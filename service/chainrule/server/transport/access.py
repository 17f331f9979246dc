"""One access-log line per request, on both transports (logger `chainrule.access`).

Each line has the transport, the method and route (HTTP) or RPC (gRPC), how it ended (HTTP status,
canonical code), the duration, bytes in and out, the request id (the formatter adds it), and, when
known, the caller (a fingerprint of their bearer token) and the error's reason, field and message.
In JSON mode these are fields of the line; in text they read as one sentence.

Levels say whose problem it is: the caller's mistakes (INVALID_ARGUMENT, UNAUTHENTICATED, ...) are
INFO like successes; overload and time-outs (RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, UNAVAILABLE) are
WARNING; bugs (INTERNAL, UNKNOWN) are ERROR. Probes and scrapes (health, /metrics) that succeed log
at DEBUG, and so does every success with `CHAINRULE_ACCESS_LOG=false`.

Lines of failed requests below ERROR have a budget per process (`FailureLines`): a flood of calls
refused in microseconds (gRPC health Checks that never send their message) wrote 1.7 MB of lines in
5 s, six times the bytes it sent. Those past the budget are counted by code and reported in one line.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainrule.engine.errors import Code
from chainrule.server.logs import (
    REQUEST_ID_KEY,
    RequestRecord,
    accept_request_id,
    begin_request,
    outside_requests,
)
from chainrule.server.transport.status import HTTP_STATUS

log = logging.getLogger("chainrule.access")

_OVERLOAD = frozenset({Code.RESOURCE_EXHAUSTED, Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE, Code.ABORTED})
_BUGS = frozenset({Code.INTERNAL, Code.UNKNOWN, Code.DATA_LOSS})
QUIET_HTTP_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
QUIET_GRPC_PREFIX = "/grpc.health.v1.Health/"
_HEADER = REQUEST_ID_KEY.encode()


def level_for(code: Code) -> int:
    if code in _BUGS:
        return logging.ERROR
    if code in _OVERLOAD:
        return logging.WARNING
    return logging.INFO


def _code_for_http(status: int) -> Code:
    """The canonical code of an HTTP status when no chainrule error said it (a route's own 404...)."""
    if status < 400:
        return Code.OK
    return next((code for code, http in HTTP_STATUS.items() if http == status and code), Code.UNKNOWN)


class FailureLines:
    """A token bucket for the access lines of failed requests: `per_second` on average, up to one
    second's worth at once; 0: no limit. Lines past it are counted by code, and a line written at
    least `REPORT_SECONDS` after the last such report is preceded by one that says how many were
    left out (not every line: under a steady flood the budget's lines alternate with refusals)."""

    REPORT_SECONDS = 10.0

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._tokens = self._capacity = max(per_second, 1.0)
        self._updated = self._since = clock()
        self._reported = -float("inf")
        self._left_out: Counter[str] = Counter()

    def admit(self, code: Code) -> bool:
        """Whether a failed request's line may be written (else it is counted as left out)."""
        if self.per_second <= 0:
            return True
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
        if self._tokens < 1:
            if not self._left_out:
                self._since = now
            self._left_out[code.name] += 1
            return False
        self._tokens -= 1
        return True

    def report_left_out(self) -> None:
        """The line about the lines left out since the last report, if any and if it is time."""
        if not self._left_out:
            return  # before the clock: this runs for every access line
        now = self._clock()
        if now - self._reported < self.REPORT_SECONDS:
            return
        counts, self._left_out, self._reported = self._left_out, Counter(), now
        by_code = ", ".join(f"{name} {count:,}" for name, count in counts.most_common())
        with outside_requests():
            log.warning(
                "%s lines of failed requests left out in the last %.1f s (over %g a second): %s",
                f"{counts.total():,}",
                now - self._since,
                self.per_second,
                by_code,
                extra={"left_out": dict(counts)},
            )


# The process's budget; the server sets it from its settings at start-up (`limit_failure_lines`).
_failure_lines = FailureLines(0)


def limit_failure_lines(per_second: float) -> None:
    global _failure_lines  # noqa: PLW0603 - one budget per process, set at start-up
    _failure_lines = FailureLines(per_second)


def emit(
    *,
    transport: str,
    method: str,
    route: str,
    status: str | int,
    code: Code,
    seconds: float,
    bytes_in: int | None,
    bytes_out: int | None,
    record: RequestRecord,
    quiet: bool = False,
) -> None:
    """Write the access line of one finished request; `quiet`: at DEBUG if it succeeded."""
    level = logging.DEBUG if quiet and code is Code.OK else level_for(code)
    if not log.isEnabledFor(level):
        return
    if code is not Code.OK and level < logging.ERROR and not _failure_lines.admit(code):
        return
    _failure_lines.report_left_out()
    fields: dict[str, Any] = {
        "transport": transport,
        "method": method,
        "route": route,
        "status": status,
        "code": code.name,
        "duration_ms": round(seconds * 1000, 3),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
    }
    text = f"{method} {route} {status}" if transport == "http" else f"gRPC {route} {status}"
    text += f" in {seconds * 1000:.2f} ms"
    if bytes_in is not None and bytes_out is not None:
        text += f" ({bytes_in} B in, {bytes_out} B out)"
    if record.caller:
        fields["caller"] = record.caller
        text += f" caller={record.caller}"
    error = record.error
    if error is not None:
        fields.update(reason=error.reason, field=error.field, error=error.message)
        if transport == "http":
            text += f" {error.code.name}"
        text += f" reason={error.reason}" + (f" field={error.field}" if error.field else "")
        text += f": {error.message}"
    log.log(level, "%s", text, extra=fields)


class AccessLogMiddleware:
    """Pure ASGI middleware, outermost: takes or makes the request id, returns it, logs the request."""

    def __init__(self, app: ASGIApp, successes: bool = True) -> None:
        """`successes`: log requests that succeed too (CHAINRULE_ACCESS_LOG), not only failures."""
        self.app = app
        self.successes = successes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = next((value for key, value in scope["headers"] if key == _HEADER), None)
        record = begin_request(accept_request_id(offered.decode("latin-1") if offered else None))
        header = (_HEADER, record.request_id.encode())
        status = 500  # what the caller sees if the app fails before answering
        bytes_in = bytes_out = 0

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            path = str(scope["path"])
            error = record.error
            code = error.code if error is not None else _code_for_http(status)
            emit(
                transport="http",
                method=str(scope["method"]),
                route=getattr(scope.get("route"), "path", None) or path,
                status=status,
                code=code,
                seconds=time.perf_counter() - started,
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                record=record,
                quiet=path in QUIET_HTTP_PATHS or not self.successes,
            )
