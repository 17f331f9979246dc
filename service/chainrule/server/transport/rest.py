"""REST/JSON over the API layer: proto3 JSON bodies in and out, `google.rpc.Status` errors, HTTP metrics.

Routes (the `google.api.http` annotations of the proto, plus one chainrule extra):

    POST /v1/differentiate   DifferentiateRequest    -> DifferentiateResponse
    POST /v1/evaluate        EvaluateRequest         -> EvaluateResponse
    POST /v1/gradient        GradientAtPointRequest  -> GradientAtPointResponse
    POST /v1/jacobian        JacobianRequest         -> JacobianResponse
    POST /v1/series          SeriesRequest           -> SeriesResponse
    GET  /v1/info                                    -> GetServerInfoResponse
    POST /v1/parse           ParseRequest            -> ParseResponse
    GET  /v1/differentiate?expression=sin(x^2)&wrt=x&wrt=y:2&latex=true&simplification=full
                             &explain=true&verify=true
                             the extra: a transcoder cannot fill repeated messages from a query string

Bodies use the standard proto3 JSON mapping (protojson.py, over `json_format`): requests accept
lowerCamelCase and original field names, replies use lowerCamelCase and print every field without
presence (so `variables: []` and `nonfiniteCount: "0"` are always there); 64-bit integers are
strings, `bytes` (`f64le`) are base64, non-finite doubles are "NaN", "Infinity", "-Infinity".

Errors are `google.rpc.Status` JSON, as grpc-gateway sends them. A `ChainruleError` from the API
layer gets the HTTP status of its code (the one table, `status.HTTP_STATUS`). Mistakes at the HTTP
layer itself have no canonical code of their own, so they carry the nearest code with the HTTP
status that names the mistake: 413 (LIMIT_EXCEEDED), 415 (INVALID_ARGUMENT), 404 (NOT_FOUND),
405 (UNIMPLEMENTED, as grpc-gateway does). Unexpected exceptions are logged with their traceback
and become a bare 500.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from chainrule.engine.errors import (
    MOST_VIOLATIONS,
    ChainruleError,
    Code,
    DeadlineExceeded,
    FieldViolation,
    InternalError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    let_go_of_frames,
)
from chainrule.server import sizing
from chainrule.server.api import ChainruleApi
from chainrule.server.compute import deadlines
from chainrule.server.compute.executors import AdmittedCall
from chainrule.server.config import Settings
from chainrule.server.logs import REQUEST_ID_KEY, note_error
from chainrule.server.metrics import HttpMetrics
from chainrule.server.sizing import JSON, Wire
from chainrule.server.transport.access import AccessLogMiddleware
from chainrule.server.transport.auth import Callers
from chainrule.server.transport.protojson import Bounds, RequestT, decode_message, message_to_json
from chainrule.server.transport.status import JSON_MEDIA_TYPE, error_response
from chainrule.server.transport.wire import check_json_members, json_decoding_bytes
from chainrule.v1 import chainrule_pb2 as pb

log = logging.getLogger(__name__)

# Bodies and replies bigger than this are decoded/encoded on a thread, off the event loop.
OFFLOAD_BYTES = 256 * 1024
# And those with more values than this: protobuf's JSON reader and writer take a microsecond or two
# a value, in Python, so 256 KiB of `1,` (130,000 values) held the event loop 200 ms a body, and 48
# connections of one address sending them stalled it past the supervisor's heartbeat (an
# independent attacker, 2026-12-06). Counted by commas (one pass in C); a reply by its bytes, eight
# a double.
INLINE_JSON_VALUES = 2_048
_MAX_UINT32 = 2**32 - 1


class MethodNotAllowedError(ChainruleError):
    """The path exists but not for this method (sent as HTTP 405; errors.py has no Unimplemented yet)."""

    code = Code.UNIMPLEMENTED
    reason = "METHOD_NOT_ALLOWED"


class ClientGoneError(ChainruleError):
    """The client disconnected before its request was read: its doing, not a server error (no one
    reads the answer; the access line and metrics say 499, as grpc-gateway does)."""

    code = Code.CANCELLED
    reason = "CLIENT_DISCONNECTED"


class HttpError(Exception):
    """A client mistake at the HTTP layer: a chainrule error sent with an HTTP status of its own."""

    def __init__(self, error: ChainruleError, http_status: int, headers: Mapping[str, str] | None = None):
        super().__init__(error.message)
        self.error = error
        self.http_status = http_status
        self.headers = dict(headers or {})


# --- errors -------------------------------------------------------------------------------------


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (unknown path, wrong method) as `google.rpc.Status` JSON."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    error: ChainruleError
    if exc.status_code == 404:
        path, routes = request.url.path, request.app.router.routes
        bare = path.rstrip("/")
        hint = (
            f"; did you mean {bare}?"
            if bare != path and any(getattr(r, "path", None) == bare for r in routes)
            else ""
        )
        if request.method == "PRI":  # HTTP/2's preface: a gRPC client pointed at this port
            hint = (
                "; this port serves REST/JSON over HTTP/1.1: send gRPC to the gRPC port (CHAINRULE_GRPC_PORT)"
            )
        error = NotFound(f"no route for {request.method} {path}{hint}", reason="ROUTE_NOT_FOUND")
    elif exc.status_code == 405:
        allowed = headers.get("Allow", "")
        error = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}; use {allowed}")
    elif 400 <= exc.status_code < 500:
        error = InvalidArgument(str(exc.detail))
    else:
        error = InternalError("internal error")
    note_error(error)
    return error_response(error, exc.status_code, headers)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """The last resort for a bug outside the REST handlers: a bare 500 (Starlette logs the traceback)."""
    return _noted(InternalError("internal error"))


def _noted(error: ChainruleError) -> Response:
    note_error(error)
    return error_response(error)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """The handlers `create_http_app` installs so every error, routing ones too, is a Status body."""
    return {HTTPException: http_exception_handler, Exception: internal_error_handler}


async def _respond(
    request: Request, work: Callable[[], Awaitable[Message]], callers: Callers, api: ChainruleApi
) -> Response:
    # An optional `grpc-timeout` header (as grpc-gateway reads it) bounds the compute, like a deadline;
    # who the caller is decides its share of the compute (executors.Admission).
    caller = functools.partial(callers.of_http, request.scope)
    calls = api.calls
    admitted = None
    try:
        raw_path = request.scope.get("raw_path", b"")
        if b"%2" in raw_path and b"%2f" in raw_path.lower():  # (no copy of the path on every call)
            # Decoded, /v1%2Fdifferentiate was /v1/differentiate: a proxy or an ACL in front, which
            # sees the path as sent, would judge another route than the one served (a tester).
            raise HttpError(
                NotFound(
                    f"no route for {request.method} {request.url.path} with %2F in it: write '/' as it is",
                    reason="ROUTE_NOT_FOUND",
                ),
                404,
            )
        # Two were read as the first (`1m, 10S` timed out, `10S, 1m` did not), where two
        # `authorization` headers are refused (an independent attacker): refused alike.
        given = request.headers.getlist("grpc-timeout")
        if len(given) > 1:
            raise InvalidArgument(
                f"grpc-timeout given {len(given)} times: send it once", field="grpc-timeout"
            )
        timeout = deadlines.parse_grpc_timeout(given[0] if given else None)
        if timeout == 0:  # passed before it began, as grpc answers a deadline of 0 (a cached call ran)
            raise DeadlineExceeded(
                "the request's deadline (grpc-timeout of 0) had passed before its work began",
                reason="DEADLINE_EXCEEDED",
                metadata={"budget": "client_deadline", "seconds": "0"},
            )
        admitted = calls.admit(0, caller, coming=min(_declared_size(request), calls.max_bytes))
        with deadlines.request_scope(timeout, caller):
            request.state.charge = admitted.charge  # read_body counts the body as it arrives
            message = await work()
            body = await _json_body(message, api)  # in the scope: in the caller's share
        admitted.charge(len(body))
        response, admitted = _HeldUntilSent(body, admitted), None
        return response
    except HttpError as error:
        note_error(error.error)
        let_go_of_frames(error.error)
        return error_response(error.error, error.http_status, error.headers)
    except ChainruleError as error:
        note_error(error)
        let_go_of_frames(error)
        return error_response(error)
    except Exception as error:
        # A bug: log the traceback here, tell the caller nothing about our insides.
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        let_go_of_frames(error)
        return _noted(InternalError("internal error"))
    finally:
        if admitted is not None:
            admitted.release()


class _HeldUntilSent(Response):
    """A reply that counts in the bytes in flight (`executors.CallLimit`) until it is sent: a
    client that never reads keeps it in the server's memory. uvicorn writes a body to the
    connection's buffer at once and waits for that buffer to drain only before its next write, so
    the body goes out as one piece with more to come, and the empty last piece waits for it.
    Released at the latest when the response is dropped unsent."""

    def __init__(self, body: bytes, admitted: AdmittedCall) -> None:
        super().__init__(body, media_type=JSON_MEDIA_TYPE)
        self._admitted = admitted
        weakref.finalize(self, admitted.release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            await send({"type": "http.response.body", "body": self.body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._admitted.release()


# --- bodies -------------------------------------------------------------------------------------


def _declared_size(request: Request) -> int:
    """What a request's body will hold, before it is read: its Content-Length (0 when chunked: a
    chunked body is counted only as it arrives). Over the limit or malformed, `read_body` refuses."""
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and _is_count(declared) else 0


async def _json_body(message: Message, api: ChainruleApi) -> bytes:
    # Point columns first: asking protobuf for the size of a message copies its bytes fields.
    if sizing.carries_points(message) or message.ByteSize() > 8 * INLINE_JSON_VALUES:
        body = await api.transcoded(message_to_json, message)
    else:
        body = message_to_json(message)
    api.check_reply_bytes(len(body))
    return body


def _check_content_type(request: Request) -> None:
    if request.headers.get("content-length") == "0":
        return  # an empty body is the empty message, whatever it claims to be
    # One type with at most one charset: of two Content-Type headers the first was read and of two
    # charsets the first (text/plain then application/json was 415, the reverse 200; an
    # independent tester).
    given = request.headers.getlist("content-type")
    raw = ", ".join(given)
    media, _, params = (given[0] if len(given) == 1 else "").partition(";")
    media = media.strip().lower()
    charsets = {found.lower() for found in re.findall(r"charset=\"?([\w-]+)", params, re.IGNORECASE)}
    json_like = media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json"))
    if json_like and charsets <= {"utf-8"} | {"utf8"} and len(charsets) <= 1:
        return
    shown = f"content type {raw!r} is not supported" if raw else "no content type given"
    raise HttpError(
        InvalidArgument(
            f"{shown}; send {JSON_MEDIA_TYPE} (UTF-8)",
            reason="UNSUPPORTED_MEDIA_TYPE",
        ),
        415,
    )


def _too_large(size: int, limit: int) -> HttpError:
    what = "the request body is too large"
    return HttpError(LimitExceeded("request_bytes", size, limit, field="body", what=what, unit="bytes"), 413)


async def read_body(request: Request, limit: int, idle_seconds: float) -> bytes:
    """The request body, refused with 413 past `limit` bytes: by Content-Length, then while streaming;
    with 408 when no byte of it arrives for `idle_seconds` (the head timeout: a body that stops
    coming must not hold its connection and call for ever), or when it has taken longer than
    `idle_seconds` plus a second per `MIN_BODY_RATE` bytes received (a byte every few seconds kept
    one going for ever). Each piece is counted in the bytes in flight as it arrives (`_respond`)."""
    declared = request.headers.get("content-length")
    # (Content-Length beside Transfer-Encoding never gets here: connections.py refuses the head.)
    # Every Content-Encoding header, not the first only (identity, then gzip: an independent attacker).
    codings = {
        part.strip().lower()
        for value in request.headers.getlist("content-encoding")
        for part in value.split(",")
    }
    encoding = ", ".join(sorted(codings - {"identity", ""}))
    if encoding:
        error = InvalidArgument(
            f"content encoding {encoding!r} is not supported; send the body as it is (no "
            "Content-Encoding header: requests are small next to what a gzip bomb would cost)",
            field="body",
            reason="UNSUPPORTED_MEDIA_TYPE",
        )
        raise HttpError(error, 415)
    if declared is not None:
        if not _is_count(declared):
            raise HttpError(InvalidArgument(f"Content-Length {declared!r} is not a byte count"), 400)
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    charge: Callable[[int], None] = getattr(request.state, "charge", _ignore_bytes)
    chunks: list[bytes] = []
    received = 0
    pieces = request.stream()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        allowed = started + idle_seconds + received / MIN_BODY_RATE - loop.time()
        try:
            async with deadlines.TimeLimit(max(0.0, min(idle_seconds, allowed))) as wait:
                chunk = await anext(pieces)
        except StopAsyncIteration:
            break
        except ClientDisconnect:
            raise ClientGoneError("the client went away before sending the whole request body") from None
        if wait.expired:
            raise _body_stalled(received, idle_seconds, loop.time() - started)
        received += len(chunk)
        if received > limit:
            raise _too_large(received, limit)
        charge(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def _ignore_bytes(size: int) -> None:
    return None


# Bytes a second a request body must average beyond its first `header_timeout_seconds`.
MIN_BODY_RATE = 64 * 1024


def _body_stalled(received: int, idle_seconds: float, taken: float) -> HttpError:
    error = InvalidArgument(
        f"the request body arrived too slowly: {received} bytes in {taken:.3g} s, with at most "
        f"{idle_seconds:g} s (CHAINRULE_HEADER_TIMEOUT_SECONDS) plus a second per {MIN_BODY_RATE // 1024} "
        "KiB received; send the body with its head",
        field="body",
        reason="BODY_TIMEOUT",
    )
    return HttpError(error, 408, {"connection": "close"})


# --- the GET extra ------------------------------------------------------------------------------

_QUERY_KEYS = ("expression", "wrt", "dependent", "latex", "simplification", "explain", "verify")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_SIMPLIFICATION_NAMES = {
    name.removeprefix("SIMPLIFICATION_").lower(): number
    for name, number in pb.Simplification.items()
    if number != pb.SIMPLIFICATION_UNSPECIFIED
}


def _reject_query(params: QueryParams, allowed: Sequence[str] = ()) -> None:
    unknown = sorted({key for key in params if key not in allowed})
    if "" in unknown:  # `?expression=x&=`: its violation named no field (an independent tester)
        raise InvalidArgument(
            "a query parameter with no name (a stray '=' in the query string)", field="query"
        )
    if unknown:
        # The first few named: 2,500 names made a 148 KB error and 21 ms of the event loop each
        # (an independent attacker, 2026-12-07).
        named = unknown[:MOST_VIOLATIONS]
        more = f" and {len(unknown) - len(named):,} more" if len(unknown) > len(named) else ""
        raise InvalidArgument(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, named))}{more}",
            violations=[FieldViolation(name, "unknown query parameter") for name in named],
        )


def _check_query_encoding(query: bytes) -> None:
    """A query string whose percent-decoded bytes are not UTF-8 is refused as that: Starlette reads
    them as U+FFFD, and the parser then named an "unexpected character '\ufffd'" (an independent
    attacker)."""
    for part in query.split(b"&"):
        try:
            urllib.parse.unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError as error:
            name = part.partition(b"=")[0].decode("ascii", "replace")
            raise InvalidArgument(
                f"query parameter {name!r} is not UTF-8 once percent-decoded ({error.reason} at byte "
                f"{error.start}); percent-encode the UTF-8 bytes of the text",
                field=name,
            ) from None


def _single(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise InvalidArgument(f"'{name}' given {len(values)} times; give it once", field=name)
    return values[0] if values else None


def _boolean(params: QueryParams, name: str) -> bool:
    value = (_single(params, name) or "").lower()
    if value not in _TRUE | _FALSE:
        raise InvalidArgument(
            f"{name} must be true or false (or 1/0, yes/no, on/off), not {value!r}", field=name
        )
    return value in _TRUE


def _is_count(text: str) -> bool:
    """ASCII digits only: `str.isdigit` accepts superscripts and other digits `int` refuses."""
    return text.isascii() and text.isdigit()


def _query_wrt(item: str, index: int) -> pb.Wrt:
    variable, colon, order = item.partition(":")
    if not colon:
        return pb.Wrt(variable=variable)
    if not _is_count(order) or int(order) > _MAX_UINT32:  # `x:` too: it was read as order 1
        raise InvalidArgument(
            f"wrt '{item}': the order must be a whole number 0..{_MAX_UINT32}", field=f"wrt[{index}].order"
        )
    return pb.Wrt(variable=variable, order=int(order))


def differentiate_request_from_query(params: QueryParams) -> pb.DifferentiateRequest:
    """`?expression=sin(x^2)&wrt=x&wrt=y:2&latex=true&simplification=full&explain=true&verify=true`,
    and `dependent=y` for implicit differentiation (`?expression=x^2 + y^2 = 25&wrt=x&dependent=y`)."""
    _reject_query(params, _QUERY_KEYS)
    request = pb.DifferentiateRequest(
        expression=_single(params, "expression") or "", dependent=_single(params, "dependent") or ""
    )
    request.wrt.extend(_query_wrt(item, index) for index, item in enumerate(params.getlist("wrt")))
    if _boolean(params, "latex"):
        request.formats.append(pb.OUTPUT_FORMAT_LATEX)
    request.explain = _boolean(params, "explain")
    request.verify = _boolean(params, "verify")
    simplification = _single(params, "simplification")
    if simplification is not None:
        key = simplification.lower().removeprefix("simplification_")
        if key not in _SIMPLIFICATION_NAMES:
            choices = ", ".join(sorted(_SIMPLIFICATION_NAMES))
            raise InvalidArgument(f"simplification must be one of {choices}", field="simplification")
        request.simplification = _SIMPLIFICATION_NAMES[key]
    return request


# --- routes -------------------------------------------------------------------------------------


def _post_endpoint(
    call: Callable[[RequestT, Wire], Awaitable[Message]],
    message_type: type[RequestT],
    settings: Settings,
    callers: Callers,
    api: ChainruleApi,
) -> Callable[[Request], Awaitable[Response]]:
    bounds = Bounds.for_settings(
        settings.max_field_entries, settings.max_points, settings.max_expression_length
    )

    async def work(request: Request) -> Message:
        _reject_query(request.query_params)
        _check_content_type(request)
        body = await read_body(request, settings.max_request_bytes, settings.header_timeout_seconds)
        # Decoding builds an object per member and per value: bound them first (wire.py), in C, and
        # count the values' objects in the bytes in flight until the call ends.
        check_json_members(body, settings.max_field_entries)
        request.state.charge(json_decoding_bytes(body, api.calls.share))
        if len(body) > OFFLOAD_BYTES or body.count(b",") > INLINE_JSON_VALUES:
            message = await api.transcoded(decode_message, body, message_type, bounds)
        else:
            message = decode_message(body, message_type, bounds)
        deadlines.message_read()
        # Replies are sized in JSON; the body's size says whether to read the message off the loop.
        return await call(message, Wire(JSON, len(body)))

    async def endpoint(request: Request) -> Response:
        return await _respond(request, lambda: work(request), callers, api)

    return endpoint


def rest_routes(api: ChainruleApi, settings: Settings, callers: Callers | None = None) -> list[Route]:
    """The `/v1/...` routes over `api`; request bodies are bounded by `settings.max_request_bytes`.

    `callers` says who each request comes from (by token or address), for fair shares of compute.
    """
    callers = callers or Callers()

    def post(
        call: Callable[[RequestT, Wire], Awaitable[Message]], message_type: type[RequestT]
    ) -> Callable[[Request], Awaitable[Response]]:
        return _post_endpoint(call, message_type, settings, callers, api)

    post_differentiate = post(api.differentiate, pb.DifferentiateRequest)

    async def differentiate(request: Request) -> Response:
        if request.method == "POST":
            return await post_differentiate(request)

        async def from_query() -> Message:
            _check_query_encoding(request.scope.get("query_string", b""))
            return await api.differentiate(differentiate_request_from_query(request.query_params), Wire(JSON))

        return await _respond(request, from_query, callers, api)

    async def info_work(request: Request) -> Message:
        _reject_query(request.query_params)
        return await api.server_info(pb.GetServerInfoRequest(), Wire(JSON))

    async def info(request: Request) -> Response:
        return await _respond(request, lambda: info_work(request), callers, api)

    return [
        Route("/v1/differentiate", differentiate, methods=["GET", "POST"]),
        Route("/v1/evaluate", post(api.evaluate, pb.EvaluateRequest), methods=["POST"]),
        Route("/v1/gradient", post(api.gradient, pb.GradientAtPointRequest), methods=["POST"]),
        Route("/v1/jacobian", post(api.jacobian, pb.JacobianRequest), methods=["POST"]),
        Route("/v1/series", post(api.series, pb.SeriesRequest), methods=["POST"]),
        Route("/v1/info", info, methods=["GET"]),
        Route("/v1/parse", post(api.parse, pb.ParseRequest), methods=["POST"]),
    ]


# --- metrics and middleware ---------------------------------------------------------------------


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) that records every HTTP request in `HttpMetrics`."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the caller sees if the app fails before answering

        async def send_recording(message: AsgiMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


def http_middleware(settings: Settings, metrics: HttpMetrics) -> list[Middleware]:
    """The request id and access log outermost, then metrics (so CORS preflights count too); CORS
    only when origins are configured."""
    stack = [
        Middleware(AccessLogMiddleware, successes=settings.access_log),
        Middleware(MetricsMiddleware, metrics=metrics),
    ]
    origins = settings.cors_origin_list
    if origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["GET", "POST"],
                allow_headers=["content-type", REQUEST_ID_KEY],
                expose_headers=[REQUEST_ID_KEY],
                max_age=600,
            )
        )
    return stack
