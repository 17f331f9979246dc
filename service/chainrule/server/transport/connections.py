"""Bounded HTTP connections: a request head within a deadline, idle ones closed, a cap on how many are
open, shared fairly between callers.

uvicorn bounds none of these by itself: its keep-alive timer starts only after a first response, so a
connection that never sends a byte, or sends half a request head, stays open for ever, and nothing
caps how many are open until the process runs out of file descriptors (then every transport of the
process fails, health checks included). `bounded_protocol` makes uvicorn's h11 protocol class:

- a connection must send a complete request head within `head_timeout` seconds of connecting or of
  its previous response; otherwise it is closed. Its reply, once written, may wait for the client to
  read it no longer than that either: a connection whose writes stay paused (its peer reads nothing)
  for `head_timeout` seconds is closed;
- idle kept-alive connections close after uvicorn's `timeout_keep_alive` (set by the server);
- one caller (its IP address, an IPv6 /64: `auth.address_caller`, the rule that shares compute; not
  IP:port, or opening more connections would buy more) holds at most `max_per_caller` connections:
  past it, its new connection takes the place of its own that has waited longest for a request head,
  if that one has waited at least `EVICTION_AGE`, or else is answered `503` and closed;
- at `max_connections` open connections, a new one takes the place of a connection waiting for a
  request head of the caller that holds the most, when that caller holds more than the newcomer's:
  a flood from one address only ever pushes out its own connections, never a caller that has just
  connected. Otherwise it takes the place of the connection that has waited longest for a request
  head, if that one has waited at least `EVICTION_AGE` (idle or slow: it costs nothing to drop), or is
  answered `503` and closed. Either way descriptors are freed as fast as they are taken.
- where a caller's own connections must make room (at its cap, or as the one holding the most when
  no connection of anyone has waited `EVICTION_AGE` for a head), one that is stalled goes when none
  of its own waits for a head: its request body still arriving, its reply unread (writes paused),
  or its request waiting for its turn (below). Two addresses trickling bodies a byte at a time, or
  never reading replies, held every connection of the process past their heads, and health checks
  got 503 (an independent tester); a connection whose request is being answered is never closed to
  make room.
- one caller has at most `max_requests_per_caller` requests in progress (from its head read to its
  reply written): a next request is kept back as parsed, its connection unread, until one of them is
  answered, in the order they came. A cached call holds the event loop about half a millisecond,
  and each connection pipelining them has its next one ready the moment its reply is written: 200
  of one address kept 200 ready at every turn of the loop, and every other caller's calls and
  health checks waited a second (an attack hunt, 2026-12-07). A waiting connection has no head or
  keep-alive timer (its request has come; its caller's own requests, each bounded, make the wait);
  where its caller's connections must make room, it may go as a stalled one does.

Descriptors: the process raises its soft limit to the hard one at start-up (`raise_descriptor_limit`;
the soft limit is often 1,024, far below the caps), and the caps are sized below it (grpc_server.py).

The loop's "socket.accept() out of system resource" error, logged on every accept attempt while the
process is out of descriptors, is rate-limited by `AcceptErrorFilter`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import time
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import h11
from google.protobuf import json_format
from uvicorn.protocols.http.h11_impl import H11Protocol

from chainrule.engine.errors import ChainruleError, InvalidArgument, Unavailable
from chainrule.server.compute.executors import CALLER_SHARE, overloaded
from chainrule.server.transport.auth import address_caller
from chainrule.server.transport.protojson import dump
from chainrule.server.transport.status import JSON_MEDIA_TYPE, http_status, status_proto

# What a refused connection reads: no body, no keep-alive, a hint to come back.
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n"
)


# Why a bound closed a connection: refused at a limit, evicted (to make room), no complete request
# head in time. The metric's label values, all exported from start-up.
LIMIT, EVICTED, HEAD_TIMEOUT, SEND_TIMEOUT = "limit", "evicted", "head_timeout", "send_timeout"
CLOSE_REASONS = (LIMIT, EVICTED, HEAD_TIMEOUT, SEND_TIMEOUT)


# A chunked request body may hold this many chunks under _SMALL_CHUNK_BYTES: h11 parses each chunk on
# the event loop (some 6 us a chunk), and a body sent one byte a chunk, a 64 KiB read some 11,000 of
# them, held the loop from every other caller (health checks took 1.7 s, and shutdown overran its
# grace period; an independent attacker). Counted alone, not as an average over all chunks: one big
# chunk first then let 65,000 tiny ones through (the same attacker). Chunks of 256 bytes, the bound
# once, cost the loop much the same (h11's per-chunk work and uvicorn's per-piece wake-ups): six
# 20 MB bodies sent so held health checks up to 2.5 s, the same bodies in 16 KiB chunks 0.8 s (an
# attack hunt, 2026-12-07). Clients send chunks of kilobytes or more (what their read buffers hold),
# and a few short ones at most (the last of a body).
_SMALL_CHUNKS = 64
_SMALL_CHUNK_BYTES = 4096


def _head_size(request: h11.Request) -> int:
    """About the bytes of a request head: its request line and header lines."""
    return (
        len(request.method) + len(request.target) + 12 + sum(len(n) + len(v) + 4 for n, v in request.headers)
    )


# A connection younger than this is evicted only to make room for a caller holding fewer connections
# than its own (see `_make_room`); a caller sends its request head within milliseconds of connecting.
EVICTION_AGE = 0.1


def _ignore(reason: str) -> None:
    return None


def _nothing() -> None:
    return None


class _BoundedH11Protocol(H11Protocol):
    head_timeout: float = 30.0
    max_connections: int = 1000
    max_per_caller: int = 500
    # Called with one of CLOSE_REASONS for every connection a bound closed (metrics).
    closed_by_bound: Callable[[str], None] = staticmethod(_ignore)
    max_requests_per_caller: int = 8
    # How long a request may wait for its turn; then 429 with `retry_after_seconds`.
    turn_seconds: float = 1.0
    retry_after_seconds: float = 1.0
    # Called for every request made to wait for its caller's turn, and for every one refused after
    # waiting `turn_seconds` (metrics).
    on_queued: Callable[[], None] = staticmethod(_nothing)
    on_turn_refused: Callable[[], None] = staticmethod(_nothing)
    # One of each per server (see `bounded_protocol`): the connections waiting for a request head,
    # oldest first, all of them and by caller (so the one to evict is found without scanning every
    # connection), and how many connections each caller holds.
    waiting: dict[_BoundedH11Protocol, None]
    waiting_by_caller: dict[str, dict[_BoundedH11Protocol, None]]
    held: Counter[str]
    # Every open connection by caller, oldest first: where a stalled one is looked for.
    open_by_caller: dict[str, dict[_BoundedH11Protocol, None]]
    # Requests in progress by caller, and the connections whose next request waits for one of them
    # to be answered, first come first.
    in_progress: Counter[str]
    queued_by_caller: dict[str, dict[_BoundedH11Protocol, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0
        self._caller: str | None = None
        self._small_chunks = self._chunk_bytes = 0
        self._answering = False  # a request of this connection is in progress (counted)
        self._waiting_request: h11.Request | None = None  # parsed, waiting for its caller's turn
        self._turn_timer: asyncio.TimerHandle | None = None
        # Every event h11 parses passes through `_next_event`, which counts a body's chunks.
        self._parsed_event = self.conn.next_event
        self.conn.next_event = self._next_event  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        caller = _caller_of(transport)
        if not self._make_room(caller):
            # Refused before uvicorn tracks it: the descriptor goes back at once.
            transport.write(_REFUSAL)
            transport.close()
            self.closed_by_bound(LIMIT)
            return
        self._caller = caller
        self.held[caller] += 1
        self.open_by_caller.setdefault(caller, {})[self] = None
        super().connection_made(transport)
        self._arm_head_timer()

    def _make_room(self, caller: str) -> bool:
        """Whether a new connection of `caller` may open, after evicting one to make room if needed."""
        if self.held[caller] >= self.max_per_caller:
            return self._evict_own(caller, EVICTION_AGE)
        if len(self.connections) < self.max_connections:
            return True
        hog = max(self.held, key=self.held.__getitem__, default="")
        # One holding more than the newcomer would: its youngest waiting for a head are fair game
        # too, then anyone's idle one, and only then its stalled ones, whose work a client would
        # lose (a request waiting its turn went before another caller's idle connection: an
        # independent attacker).
        hogging = self.held[hog] > self.held[caller] + 1
        if hogging and self._evict(self.waiting_by_caller.get(hog, {}), 0.0):
            return True
        return self._evict(self.waiting, EVICTION_AGE) or (hogging and self._evict_stalled(hog))

    def _evict_own(self, caller: str, min_age: float) -> bool:
        """Close a connection of `caller`: the one waiting longest for a request head (at least
        `min_age` seconds), else a stalled one; False if neither."""
        return self._evict(self.waiting_by_caller.get(caller, {}), min_age) or self._evict_stalled(caller)

    def _evict_stalled(self, caller: str) -> bool:
        """Close the oldest connection of `caller` whose request body is still arriving or whose reply
        waits for the client to read it; False if none."""
        stalled = next((c for c in self.open_by_caller.get(caller, {}) if c._stalled()), None)
        if stalled is None:
            return False
        stalled.transport.close()
        self.closed_by_bound(EVICTED)
        return True

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers a request h11 cannot read (a malformed head, or one past h11's
        size limit: a GET of a million `wrt`), as the `google.rpc.Status` JSON every other error
        is, not uvicorn's plain text."""
        self._refuse(
            InvalidArgument(
                "invalid HTTP request: its head or its framing is malformed, or the head is too long "
                "(a long query belongs in a POST body)",
                field="request",
                reason="MALFORMED_HTTP",
            )
        )

    def _next_event(self) -> Any:
        """h11's next event, counting a request body's chunks under `_SMALL_CHUNK_BYTES` (a chunk
        may come in several events, the first marked `chunk_start`, the last `chunk_end`): past
        `_SMALL_CHUNKS`, the request is refused and no more of it is parsed. A request past its
        caller's share in progress is kept back (uvicorn reads PAUSED) until its turn.

        Every request passes here, however it came: gated where bytes arrive instead, a request
        answered before its body (a GET, a 404) let the next one in with the body's last byte
        (h11 starts the next cycle inside uvicorn's loop), and the cap held nothing (an
        independent attacker)."""
        if self._waiting_request is not None:
            if self._in_queue():
                return h11.PAUSED
            event: Any = self._waiting_request
            self._waiting_request = None
            self._begin_request()
            return event
        event = self._parsed_event()
        if isinstance(event, h11.Request):
            self._small_chunks = 0
            if _head_size(event) > self.conn._max_incomplete_event_size:
                # h11 checks its limit only while a head is incomplete: one that came in a single
                # read (100 KB, 20,000 headers) was served (an independent attacker).
                self.send_400_response("request head too long")
                return h11.PAUSED
            if self._must_wait_turn():
                self._waiting_request = event
                self._queue_for_turn()
                return h11.PAUSED
            self._begin_request()
        elif isinstance(event, h11.Data) and (event.chunk_start or event.chunk_end):
            self._chunk_bytes = (0 if event.chunk_start else self._chunk_bytes) + len(event.data)
            if event.chunk_end and self._chunk_bytes < _SMALL_CHUNK_BYTES:
                self._small_chunks += 1
                if self._small_chunks > _SMALL_CHUNKS:
                    self._refuse_small_chunks()
                    return h11.PAUSED  # uvicorn stops reading: the connection is closing
        elif isinstance(event, h11.Data):
            self._chunk_bytes += len(event.data)
        return event

    def _refuse_small_chunks(self) -> None:
        cycle = getattr(self, "cycle", None)
        if cycle is not None:  # the application, waiting for the body, reads a disconnect
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(
            InvalidArgument(
                f"the request body arrives in chunks too small to parse economically: more than "
                f"{_SMALL_CHUNKS} chunks of under {_SMALL_CHUNK_BYTES} bytes; send it with "
                f"Content-Length, or in chunks of {_SMALL_CHUNK_BYTES} bytes or more",
                field="request",
                reason="CHUNKS_TOO_SMALL",
            )
        )

    def _refuse(self, error: ChainruleError) -> None:
        """`error` as its HTTP status and Status body, and the connection closed."""
        body = dump(json_format.MessageToDict(status_proto(error)))
        headers = [
            (b"content-type", JSON_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if error.retry_after_seconds is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after_seconds))).encode()))
        status = http_status(error)
        for event in (
            h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode()),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _should_upgrade(self) -> bool:
        """uvicorn asks this of every request head before any application sees it: where a head is
        refused here. Content-Length beside Transfer-Encoding is two framings that disagree on where
        the body ends: behind a proxy that reads the other one, the rest is a request of its own
        (RFC 9112 6.3: refuse, and close). Refused in `read_body`, routes that read no body (GET
        /healthz, a 404, a 405) had served the smuggled request after it, and a malformed chunked
        body had the application answer on a connection h11 had closed (a traceback each: an
        independent attacker). No request is upgraded: one asking to (to WebSocket, to h2c) is
        served as the HTTP request it also is, as RFC 9110 lets a server do (uvicorn's own answer
        was an empty 403, and it logged two warnings for each)."""
        names = {name for name, _ in self.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            self._refuse(
                InvalidArgument(
                    "the request carries both Content-Length and Transfer-Encoding; send one of them",
                    field="request",
                    reason="AMBIGUOUS_FRAMING",
                )
            )
            return True  # uvicorn then calls `handle_websocket_upgrade`, and stops reading
        return False

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """Nothing: only a head `_should_upgrade` refused comes here, answered and closed already."""

    def _stalled(self) -> bool:
        """Its request body still arriving, its reply unread, or its request waiting for its
        caller's turn: the caller's surplus, when its own connections must make room."""
        return not self.transport.is_closing() and (
            self.conn.their_state is h11.SEND_BODY or self.flow.write_paused or self._in_queue()
        )

    def _evict(self, waiting: dict[_BoundedH11Protocol, None], min_age: float) -> bool:
        """Close the connection of `waiting` that has waited longest for a request head, if it has
        waited at least `min_age` seconds; False otherwise."""
        idlest = next(iter(waiting), None)
        if idlest is None or self.loop.time() - idlest._head_since < min_age:
            return False
        idlest._disarm_head_timer()
        idlest.transport.close()
        self.closed_by_bound(EVICTED)
        return True

    def _must_wait_turn(self) -> bool:
        caller = self._caller
        if caller is None:
            return False
        # Turns are given by `_end_request`, in the order the caller's requests came.
        return caller in self.queued_by_caller or self.in_progress[caller] >= self.max_requests_per_caller

    def _in_queue(self) -> bool:
        return self in self.queued_by_caller.get(self._caller or "", {})

    def _queue_for_turn(self) -> None:
        assert self._caller is not None
        self.queued_by_caller.setdefault(self._caller, {})[self] = None
        self.on_queued()
        self._turn_timer = self.loop.call_later(self.turn_seconds, self._turn_timed_out)
        # Paused through the transport itself: uvicorn resumes it directly when a body ends,
        # leaving its flow control's flag set, which would make its own pause a no-op.
        self.flow.read_paused = True
        self.transport.pause_reading()
        self._disarm_head_timer()
        self._unset_keepalive_if_required()

    def _begin_request(self) -> None:
        if self._caller is not None and not self._answering:
            self._answering = True
            self.in_progress[self._caller] += 1

    def _end_request(self) -> None:
        """This connection's request is answered (or its connection lost): the caller's first
        waiting connections take the room."""
        caller = self._caller
        if caller is None or not self._answering:
            return
        self._answering = False
        _uncount(self.in_progress, caller)
        queued = self.queued_by_caller.get(caller, {})
        while queued and self.in_progress[caller] < self.max_requests_per_caller:
            next(iter(queued))._take_turn()

    def _leave_queue(self) -> None:
        if self._turn_timer is not None:
            self._turn_timer.cancel()
            self._turn_timer = None
        if self._caller is not None:
            _discard(self.queued_by_caller, self._caller, self)

    def _take_turn(self) -> None:
        self._leave_queue()
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        self.handle_events()  # its request first (`_next_event`), then whatever followed it

    def _turn_timed_out(self) -> None:
        """A burst of slow calls from one address (a pool of 32 at full budget) had its later ones
        wait unread for 20 s, past its clients' timeouts, with no status to act on (an independent
        attacker): after `turn_seconds` a waiting request is refused as an overloaded queue's is."""
        self._turn_timer = None
        if self._waiting_request is None or self.transport.is_closing():
            return
        self._leave_queue()
        self._waiting_request = None
        self.on_turn_refused()
        self._refuse(
            overloaded(
                f"this request waited {self.turn_seconds:g} s for its turn",
                f"the {self.max_requests_per_caller} HTTP requests one address may have in progress",
                queue="http",
                limit=self.max_requests_per_caller,
                cause=CALLER_SHARE,
                retry_after_seconds=self.retry_after_seconds,
            )
        )

    def shutdown(self) -> None:
        """uvicorn's, but a request still waiting for its turn is answered 503 (h11 has read it:
        uvicorn's close, a ConnectionClosed event, is not allowed then, and its error stopped the
        server's exit half-way: an independent attacker)."""
        if self._waiting_request is None:
            super().shutdown()
            return
        self._leave_queue()
        self._waiting_request = None
        self._refuse(
            Unavailable(
                "the server is shutting down before this request's turn came; retry another replica",
                reason="DRAINING",
                retry_after_seconds=1.0,
            )
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_send_timer()
        if self._caller is None:  # a refused connection: uvicorn never saw it
            return
        self._end_request()
        self._leave_queue()
        _uncount(self.held, self._caller)
        _discard(self.open_by_caller, self._caller, self)
        self._caller = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.head_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_send_timer()

    def _disarm_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_timed_out(self) -> None:
        self._send_timer = None
        if self.flow.write_paused and not self.transport.is_closing():
            self.closed_by_bound(SEND_TIMEOUT)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_head():
            self._arm_head_timer()
        else:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        self._end_request()
        super().on_response_complete()
        # From here the keep-alive timer bounds the idle wait; a first byte re-arms the head timer.
        self._disarm_head_timer()

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_since = self.loop.time()
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
            self.waiting[self] = None
            if self._caller is not None:
                self.waiting_by_caller.setdefault(self._caller, {})[self] = None

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
            self._stop_waiting()

    def _stop_waiting(self) -> None:
        self.waiting.pop(self, None)
        if self._caller is not None:
            _discard(self.waiting_by_caller, self._caller, self)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._stop_waiting()
        if self._awaiting_head():
            self.closed_by_bound(HEAD_TIMEOUT)
            self.transport.close()


def _discard(
    table: dict[str, dict[_BoundedH11Protocol, None]], caller: str, connection: _BoundedH11Protocol
) -> None:
    """`connection` out of `caller`'s entry of `table`, and the entry out when it empties: a table
    holds only callers with connections in it (else every address ever seen stayed, and a caller
    in `queued_by_caller` is one whose requests wait)."""
    own = table.get(caller)
    if own is not None:
        own.pop(connection, None)
        if not own:
            del table[caller]


def _uncount(counter: Counter[str], caller: str) -> None:
    """One fewer for `caller`, whose entry goes at zero (as `_discard`'s)."""
    counter[caller] -= 1
    if not counter[caller]:
        del counter[caller]


def bounded_protocol(
    head_timeout: float,
    max_connections: int,
    max_per_caller: int,
    max_requests_per_caller: int,
    *,
    turn_seconds: float,
    retry_after_seconds: float,
    closed_by_bound: Callable[[str], None] = _ignore,
    on_queued: Callable[[], None] = _nothing,
    on_turn_refused: Callable[[], None] = _nothing,
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head deadline, caps on open connections, in all and per
    caller, and on each caller's requests in progress."""
    return type(
        "BoundedH11Protocol",
        (_BoundedH11Protocol,),
        {
            "head_timeout": head_timeout,
            "max_connections": max_connections,
            "max_per_caller": max_per_caller,
            "closed_by_bound": staticmethod(closed_by_bound),
            "max_requests_per_caller": max_requests_per_caller,
            "on_queued": staticmethod(on_queued),
            "turn_seconds": turn_seconds,
            "retry_after_seconds": retry_after_seconds,
            "on_turn_refused": staticmethod(on_turn_refused),
            "waiting": {},
            "waiting_by_caller": {},
            "held": Counter(),
            "open_by_caller": {},
            "in_progress": Counter(),
            "queued_by_caller": {},
        },
    )


def _caller_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return address_caller(str(peer[0]) if isinstance(peer, tuple) and peer else "")


class AcceptErrorFilter(logging.Filter):
    """Lets one "out of system resource" accept error through per `interval` seconds, with a count."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._last = -float("inf")
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.MESSAGE not in record.getMessage():
            return True
        now = self._clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        if self._suppressed:
            record.msg = f"{record.msg} ({self._suppressed} more in the last {now - self._last:.0f} s)"
            record.args = None
        self._last, self._suppressed = now, 0
        return True


def install_accept_error_filter() -> None:
    """Rate-limit asyncio's accept errors (once per process; the loop logs through `asyncio`)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(AcceptErrorFilter())


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit.

    Shells and container runtimes often leave the soft limit at 1,024 for old `select` users while
    allowing far more: the connection caps, not the kernel, should decide who gets a descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # pragma: no cover - a platform that refuses: keep the soft one
            return soft
    return hard


def descriptor_limit() -> int:
    """This process's soft limit on open files (RLIM_INFINITY as a large number)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 2**31 - 1
