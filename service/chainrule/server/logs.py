"""Logging, configured once at start-up, and the request ids every line about a request carries.

Text for people, JSON lines for collectors (`CHAINRULE_LOG_FORMAT=json`). Each line names the
request it is about (`request_id`, "-" outside one), the trace when tracing is on (tracing.py sets
the source of trace ids), and the process when several server processes share one output.

A request id is taken from the caller's `x-request-id` (gRPC metadata or HTTP header) when it is
short printable ASCII, else made here; the transports return it and open a `RequestRecord` for the
request, where the layers below note what the access line reports (the caller, the error).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from chainrule.engine.errors import ChainruleError, Code
from chainrule.server.config import Settings
from chainrule.server.version import VERSION

REQUEST_ID_KEY = "x-request-id"
_MAX_ID_LENGTH = 128
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)

# Loggers that chatter at DEBUG about their own machinery (grpc's I/O engine, asyncio's selector).
_NOISY = ("grpc", "asyncio", "hpack", "multipart", "urllib3")
# Fields some libraries add to their records that mean nothing in a JSON line (uvicorn's ANSI copy).
_DROPPED = frozenset({"color_message"})


class NotedError(NamedTuple):
    """Why a request failed, as its access line says it. Not the exception itself: its traceback
    holds the frames that handled the request, and with them the request's bytes."""

    code: Code
    reason: str
    field: str
    message: str

    @classmethod
    def of(cls, error: ChainruleError) -> NotedError:
        field = error.violations[0].field if error.violations else ""
        return cls(error.code, error.reason, field, error.message)


class RequestRecord:
    """What the access line of one request reports beyond the transport's own figures."""

    __slots__ = ("caller", "error", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.caller = ""
        self.error: NotedError | None = None


_OUTSIDE = RequestRecord("-")
# The request being served; the executors copy the context into their threads, and single-flight
# cache fills (asyncio tasks) inherit it, so work done for a request logs its id too.
REQUEST: contextvars.ContextVar[RequestRecord] = contextvars.ContextVar("chainrule_request", default=_OUTSIDE)

# Where trace and span ids come from when tracing is on (set by tracing.py): None, or a function
# returning the current (trace id, span id) in hex, or None outside a span.
_trace_ids: Callable[[], tuple[str, str] | None] | None = None


def make_request_id() -> str:
    """A process-unique id: a random per-process prefix and a counter (cheaper than uuid4)."""
    return f"{_PREFIX}-{next(_counter):x}"


def accept_request_id(offered: str | None) -> str:
    """The caller's id if it is safe to log and echo (nothing that could forge a line); else a new one."""
    if offered and len(offered) <= _MAX_ID_LENGTH and offered.isascii() and offered.isprintable():
        return offered
    return make_request_id()


def begin_request(request_id: str) -> RequestRecord:
    """Open the record of the request this task serves, from here to its end."""
    record = RequestRecord(request_id)
    REQUEST.set(record)
    return record


def current_request() -> RequestRecord:
    return REQUEST.get()


@contextlib.contextmanager
def outside_requests() -> Iterator[None]:
    """Log lines about no one request (a count of many) with the id "-", even while serving one."""
    token = REQUEST.set(_OUTSIDE)
    try:
        yield
    finally:
        REQUEST.reset(token)


def note_error(error: ChainruleError) -> None:
    """Remember why the current request failed, for its access line (reason, field, message)."""
    record = REQUEST.get()
    if record is not _OUTSIDE:
        record.error = NotedError.of(error)


def note_caller(caller: str) -> None:
    """Remember who the current request authenticated as (a token fingerprint, never the token)."""
    record = REQUEST.get()
    if record is not _OUTSIDE:
        record.caller = caller


def set_trace_source(source: Callable[[], tuple[str, str] | None] | None) -> None:
    """Where the filter reads trace ids from (tracing.py); None turns them off."""
    global _trace_ids  # noqa: PLW0603 - one source per process, set at start-up
    _trace_ids = source


class ContextFilter(logging.Filter):
    """Adds `request_id` (and `trace_id`, `span_id` when tracing) to every record the handler sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST.get().request_id
        ids = _trace_ids() if _trace_ids is not None else None
        record.trace_id, record.span_id = ids or ("-", "-")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any `extra=` fields the call site passed."""

    # The record's own attributes, and the extras that mean nothing in JSON: the rest are fields.
    _standard = (
        frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"} | _DROPPED
    )

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._standard})
        if entry.get("trace_id") == "-":
            del entry["trace_id"], entry["span_id"]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Control characters, line separators and bidirectional overrides (U+202E turns what follows around
# on a terminal) a text line shows escaped (\r as \x0d): a variable name
# holding "\r\n2026-12-06 12:00:00,000 INFO chainrule.access ..." forged a line of its own, and NUL
# and ESC reached the terminal (an independent attacker).
_ESCAPED = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (
        *range(0x20),
        *range(0x7F, 0xA0),
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
    if chr(code) not in "\n\t"
}


class TextFormatter(logging.Formatter):
    """The text line, one record per line as far as a reader can tell: control characters escaped,
    and every line after the first (a traceback, a message with newlines) indented, so that no text
    from a request can start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(_ESCAPED).replace("\n", "\n    ")


def text_format(*, several_processes: bool, tracing: bool) -> str:
    """The text line: time, level, logger, [process,] [request id[, trace id]]: message."""
    process = " pid=%(process)d" if several_processes else ""
    context = "%(request_id)s trace=%(trace_id)s" if tracing else "%(request_id)s"
    return f"%(asctime)s %(levelname)s %(name)s{process} [{context}]: %(message)s"


def configure_logging(settings: Settings, *, several_processes: bool = False) -> None:
    """Send logs to stderr in the configured format and level.

    `several_processes`: this process shares its output with other server processes (`--workers`
    > 1, the supervisor included), so each text line names its pid (JSON lines always do).
    """
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        line = text_format(several_processes=several_processes, tracing=bool(settings.traces_exporters))
        handler.setFormatter(TextFormatter(line))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = logging.getLevelName(settings.log_level.upper())
    root.setLevel(level)
    # DEBUG is for chainrule's own detail: other libraries' internals stay at INFO and above.
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def banner(settings: Settings, grpc_port: int, http_port: int) -> str:
    """The start-up line: where to point a browser, grpcurl or a client."""
    host = settings.host
    # A wildcard address is not somewhere to browse to: show this machine's loopback instead.
    wildcards = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}  # noqa: S104 - only compared
    shown = wildcards.get(host, f"[{host}]" if ":" in host else host)
    scheme = "https" if settings.tls_cert_file else "http"
    web = f"{scheme}://{shown}:{http_port}"
    return (
        f"chainrule {VERSION} serving on {host}: playground {web}/ · API docs {web}/docs · "
        f"gRPC {shown}:{grpc_port} (grpcurl{'' if settings.tls_cert_file else ' -plaintext'} "
        f"{shown}:{grpc_port} list)"
    )
