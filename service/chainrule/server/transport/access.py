"""One access-log line per request, on both transports (logger `chainrule.access`).

Each line has the transport, the method and route (HTTP) or RPC (gRPC), how it ended (HTTP status,
canonical code), the duration, bytes in and out, the request id (the formatter adds it), and, when
known, the caller (a fingerprint of their bearer token) and the error's reason, field and message.
In JSON mode these are fields of the line; in text they read as one sentence.

Levels say whose problem it is: the caller's mistakes (INVALID_ARGUMENT, UNAUTHENTICATED, ...) are
INFO like successes; overload and time-outs (RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, UNAVAILABLE) are
WARNING; bugs (INTERNAL, UNKNOWN) are ERROR. Probes and scrapes (health, /metrics) that succeed log
at DEBUG, and so does every success with `CHAINRULE_ACCESS_LOG=false`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainrule.engine.errors import Code
from chainrule.server.logs import REQUEST_ID_KEY, RequestRecord, accept_request_id, begin_request
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
