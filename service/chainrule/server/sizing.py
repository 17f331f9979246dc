"""What a numeric call will cost in bytes, known before it computes: points x output columns.

An Evaluate, GradientAtPoint or Jacobian reply carries one column per output (1 for Evaluate; 1 + n
+ n² for a gradient with Hessian over n variables: 1,057 columns for 32; m x (1 + n) for a Jacobian
of m rows) of one value per point. Its size on the wire is points x columns x the encoding's bytes
per value, and building it holds more than that (the engine's output arrays, the reply message, its
serialised form; for JSON, Python floats and text). Both are checked against the declared limits
(`response_bytes`, `working_bytes`) before any work starts, and the error says how many points per
call would fit, since both clients can split a batch into calls of that many points
(`chunk_points`).

The transports say which encoding they answer in (`Wire`); the figures per value are measured
(below), and tests/server/test_sizing.py checks them against real replies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from chainrule.engine.errors import LimitExceeded
from chainrule.server.cache import Caches
from chainrule.server.config import PARSE_SPARES, PARSE_WORKERS, Settings
from chainrule.v1 import chainrule_pb2 as pb

if TYPE_CHECKING:  # batches imports this module
    from chainrule.server.batches import ArrayFields

# Bytes of a reply besides its columns: names, counts, the message and HTTP framing.
_REPLY_BASE = 4096
_PER_COLUMN = 64
_FLOAT64 = 8


@dataclass(frozen=True)
class Encoding:
    """Bytes per float64 of a reply in one encoding: sent (`wire_*`) and held while building (`held_*`).

    `raw` is the `f64le` form, `listed` the `values` list.
    """

    name: str
    wire_raw: float
    wire_listed: float
    held_raw: float
    held_listed: float
    # Nanoseconds of the server's CPU writing a value in this encoding (`writing`).
    writing_raw: float = 0
    writing_listed: float = 0

    def wire(self, raw: bool) -> float:
        return self.wire_raw if raw else self.wire_listed

    def writing(self, raw: bool) -> float:
        """What writing one value costs, in the numeric cost's units (about a nanosecond): a value
        listed as JSON text costs more than computing most expressions at it (64 Jacobian rows at
        991 points: 2 ms of arithmetic, 740 ms of JSON; an independent attacker, 2026-12-07)."""
        return self.writing_raw if raw else self.writing_listed

    def held(self, raw: bool) -> float:
        return self.held_raw if raw else self.held_listed


# Held while building a reply, measured as the peak resident size over 10^6 points x 4 columns
# (/proc VmHWM, bench/held_bytes.py), besides the engine's output columns: gRPC 8 bytes a value for
# f64le (the serialised reply; the engine computes into it, `batches.Reply.lay_out`, so the output
# columns counted besides it are an upper bound) and 26 for values
# (Python floats, the message's copy, the serialised reply), plus grpc's own copy as it sends (a
# message filled with f64le columns, as `api.evaluate` returns it, holds 16 and 26 serialised);
# JSON 55 (f64le: base64 text, JSON text, body) and 102 (values: Python floats, text, body).
# Protobuf sends 8 bytes a value either way (`values` is packed); JSON base64 takes 4 characters
# per 3 bytes, and a listed value up to 24 characters and a comma (-2.2250738585072014e-308).
# Writing, per value (`bench/writing.py`: 10^6 values of 17 digits, best of five): 1,330 ns listed
# as JSON text, 72 as f64le's base64, 79 listed in protobuf, 0.6 f64le (computed into the reply's
# bytes), on 2 shared cores under a load of 3.8 (2026-12-07): charged three quarters of that.
PROTOBUF = Encoding(
    "protobuf", wire_raw=8, wire_listed=8, held_raw=24, held_listed=40, writing_raw=0, writing_listed=60
)
JSON = Encoding(
    "JSON",
    wire_raw=8 * 4 / 3,
    wire_listed=25,
    held_raw=64,
    held_listed=120,
    writing_raw=54,
    writing_listed=1000,
)


@dataclass(frozen=True)
class Wire:
    """What a transport tells the API layer about one call: the reply's encoding and the request's
    encoded size (0 when unknown), which says whether decoding it is worth moving off the event loop.

    `points`: the request's `points` map when the transport read it from the encoded bytes itself
    (each column's f64le a view of them, not a copy); then the message holds the other fields only
    and `request_bytes` is their size.
    """

    encoding: Encoding = PROTOBUF
    request_bytes: int = 0
    points: Mapping[str, ArrayFields] | None = None


PROTOBUF_WIRE = Wire()


@dataclass(frozen=True)
class Shape:
    """The reply of one numeric call: `points` x `columns`, computed through `arrays` engine outputs
    from `inputs` input columns."""

    points: int
    columns: int
    arrays: int
    inputs: int
    raw: bool

    def reply_bytes(self, encoding: Encoding) -> int:
        return math.ceil(self.points * self.columns * encoding.wire(self.raw)) + self._framing()

    def working_bytes(self, encoding: Encoding) -> int:
        per_point = _FLOAT64 * (self.arrays + self.inputs) + self.columns * encoding.held(self.raw)
        return math.ceil(self.points * per_point) + self._framing()

    def _framing(self) -> int:
        return _REPLY_BASE + _PER_COLUMN * self.columns


def check(shape: Shape, encoding: Encoding, max_reply: int, max_working: int, field: str) -> int:
    """The call's working memory; or refuse it when that or its reply would exceed its limit,
    saying how many points would fit."""
    reply, working = shape.reply_bytes(encoding), shape.working_bytes(encoding)
    if reply > max_reply or working > max_working:
        # Points that fit both limits: a client splitting its batch by the first refused gets a second.
        fits = min(
            _points_that_fit("response_bytes", max_reply, shape, encoding),
            _points_that_fit("working_bytes", max_working, shape, encoding),
        )
        over = (
            ("response_bytes", reply, max_reply)
            if reply > max_reply
            else ("working_bytes", working, max_working)
        )
        raise _refusal(shape, encoding, over, fits, field)
    return working


def check_encoded(size: int, max_reply: int) -> None:
    """Refuse an encoded reply over `max_reply` bytes. Batch replies are sized before computing
    (`check`); the others (a derivative with its steps and formats, a series) only once written, so
    their limit is checked on the bytes a transport is about to send: grpc's own send limit would
    answer RESOURCE_EXHAUSTED without a reason, and REST had none."""
    if size > max_reply:
        raise LimitExceeded(
            "response_bytes",
            size,
            max_reply,
            field="body",
            what="the reply is too large",
            unit="bytes",
            hint="ask for less (fewer formats, no explanation, a lower order or a smaller expression)",
        )


def _refusal(
    shape: Shape, encoding: Encoding, over: tuple[str, int, int], fits: int, field: str
) -> LimitExceeded:
    limit, value, maximum = over
    per_value = encoding.wire(shape.raw) if limit == "response_bytes" else encoding.held(shape.raw)
    what = "the reply would be too large" if limit == "response_bytes" else "answering needs too much memory"
    return LimitExceeded(
        limit,
        value,
        maximum,
        field=field,
        what=what,
        unit="bytes",
        hint=(
            f"{shape.points} points x {shape.columns} output columns at about {per_value:.3g} bytes a "
            f"value in {encoding.name}; at most {fits} points per call fit, so send the batch in "
            "chunks (the clients' chunk_points)"
        ),
        details={"points": str(shape.points), "columns": str(shape.columns), "points_that_fit": str(fits)},
    )


def _points_that_fit(limit: str, maximum: int, shape: Shape, encoding: Encoding) -> int:
    one = Shape(1, shape.columns, shape.arrays, shape.inputs, shape.raw)
    measure = one.reply_bytes if limit == "response_bytes" else one.working_bytes
    per_point = measure(encoding) - one._framing()
    return max(0, (maximum - one._framing()) // max(1, per_point))


def carries_points(message: Message) -> bool:
    """True for a reply with point columns (an `Array` set): it may be tens of megabytes, and asking
    protobuf for its size would itself copy every column, so encode it off the event loop."""
    singular, repeated = _columns(message.DESCRIPTOR)
    return any(message.HasField(name) for name in singular) or any(
        len(getattr(message, name)) for name in repeated
    )


@functools.cache
def _columns(descriptor: Descriptor) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields of a message that hold point columns: (singular `Array`s, repeated `Array`s)."""
    arrays = [field for field in descriptor.fields if field.message_type is pb.Array.DESCRIPTOR]
    return (
        tuple(field.name for field in arrays if not field.is_repeated),
        tuple(field.name for field in arrays if field.is_repeated),
    )


# --- the memory of a whole process ----------------------------------------------------------------

# Resident memory of one server process before its caches and batches, measured with bench/memory.py:
# the interpreter with sympy, numpy, scipy and grpc loaded and warm (117 MiB; the rest is margin).
PROCESS_BASE_BYTES = 160 * 1024 * 1024
# What the requests in flight hold, per byte received: the bytes, the message parsed from them, and
# for JSON the decoded objects (Python floats or base64 text) in between.
REQUEST_EXPANSION = 4
# A symbolic worker that is not computing (a spare), and the forkserver: 74-95 MiB measured.
WARM_WORKER_BYTES = 128 * 1024 * 1024
# The supervisor of `--workers N` (N > 1): 113 MiB measured, as it imports the server's modules.
SUPERVISOR_BYTES = 128 * 1024 * 1024
# An open connection, idle or sending its head slowly: HTTP 13 KiB measured with 8 KB of a request
# head (h11 keeps up to 16 KiB of an incomplete one); gRPC 11 KiB before the HTTP/2 preface, 15 KiB
# after it; plus the kernel's socket.
HTTP_CONNECTION_BYTES = 32 * 1024
GRPC_CONNECTION_BYTES = 20 * 1024
# A streaming call's request message at most (transport/streams.py: health and reflection requests
# name a service, a file or a symbol), and what an open stream holds: that and grpc's own state
# (measured: 23.5 KiB a Watch).
STREAM_MESSAGE_BYTES = 4096
# Request messages one stream may send: a reflection client asks for a few dozen files and symbols;
# one stream asking for descriptor.proto again and again got 14,000 replies in 20 s (an attack hunt).
STREAM_MESSAGES = 1024
STREAM_BYTES = 24 * 1024 + STREAM_MESSAGE_BYTES
# Calls grpc has received but the event loop has not yet picked up. Past grpc's default backlog of
# 1,000 it cancels calls at random (CANCELLED: uncounted, no retry delay); a burst that size is picked
# up in milliseconds and refused by `calls_in_flight` (RESOURCE_EXHAUSTED, retry delay) instead.
GRPC_BACKLOG = 16_384
# A call in that backlog holds its metadata and grpc's state for it: calls reset as they arrive, or
# refused for their metadata, still wait there to be picked up. grpc counts an entry at its name,
# value and 32 bytes, and keeps it at up to three times that (second attack hunt: 230 one-byte
# entries a call, under the 8 KiB limit, held 28 KiB a call; 1.2 GiB a process at grpc's own limits).
METADATA_EXPANSION = 3
PENDING_CALL_BYTES = 4 * 1024


def grpc_backlog(settings: Settings) -> int:
    """How many received calls grpc keeps for the event loop to pick up."""
    return max(GRPC_BACKLOG, 4 * settings.calls_in_flight)


def memory_bound(settings: Settings) -> dict[str, int]:
    """The most resident memory one server process and its symbolic workers may take, by term.

    Each term is a bound the server enforces, so the sum bounds the process (docs/operations.md,
    "Sizing", derives the pod limits from it): the caches' byte bounds, the requests in flight, the
    numeric calls' working memory, each busy worker process's address-space limit (at most
    `symbolic_workers` compute at once, and Parse's own worker; spares wait warm), the gRPC messages
    arriving (each being read up to its limit, each waiting call's up to its stream window), the
    open connections at their caps, and the calls grpc holds until they are picked up.
    """
    workers = 0
    if settings.symbolic_workers:  # the busy ones (and Parse's) up to their limit; the spares idle, warm
        workers = (settings.symbolic_workers + PARSE_WORKERS) * settings.worker_memory_bytes
        workers += (settings.symbolic_spares + PARSE_SPARES + 1) * WARM_WORKER_BYTES  # + the forkserver
    return {
        "process": PROCESS_BASE_BYTES,
        "caches": sum(cache.max_bytes for cache in Caches(settings)),
        "requests": REQUEST_EXPANSION * settings.request_bytes_in_flight,
        "numeric": settings.numeric_memory_bytes,
        "workers": workers,
        "receiving": settings.grpc_receiving_calls * settings.max_request_bytes
        + settings.calls_in_flight * settings.grpc_stream_window_bytes,
        "connections": settings.max_connections * HTTP_CONNECTION_BYTES
        + settings.max_grpc_connections * GRPC_CONNECTION_BYTES,
        "streams": settings.max_streams * STREAM_BYTES,
        "pending": grpc_backlog(settings)
        * (METADATA_EXPANSION * settings.grpc_metadata_bytes + PENDING_CALL_BYTES),
    }
