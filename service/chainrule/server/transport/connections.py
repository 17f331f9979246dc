"""Bounded HTTP connections: a request head within a deadline, idle ones closed, a cap on how many are open.

uvicorn bounds none of these by itself: its keep-alive timer starts only after a first response, so a
connection that never sends a byte, or sends half a request head, stays open for ever, and nothing
caps how many are open until the process runs out of file descriptors (then every transport of the
process fails, health checks included). `bounded_protocol` makes uvicorn's h11 protocol class:

- a connection must send a complete request head within `head_timeout` seconds of connecting or of
  its previous response; otherwise it is closed;
- idle kept-alive connections close after uvicorn's `timeout_keep_alive` (set by the server);
- at `max_connections` open connections, a new one takes the place of the connection that has
  waited longest for a request head, if that one has waited at least `EVICTION_AGE` (idle or slow:
  it costs nothing to drop), so idle sockets cannot lock callers out and a caller that has just
  connected is not pushed out by a flood; otherwise the new one is answered `503` and closed at once.
  Either way descriptors are freed as fast as they are taken.

The loop's "socket.accept() out of system resource" error, logged on every accept attempt while the
process is out of descriptors, is rate-limited by `AcceptErrorFilter`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# What a refused connection reads: no body, no keep-alive, a hint to come back.
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\nretry-after: 1\r\n\r\n"
)


# Why a bound closed a connection: refused at the limit, evicted (the idlest, to make room), no
# complete request head in time. The metric's label values, all exported from start-up.
LIMIT, EVICTED, HEAD_TIMEOUT = "limit", "evicted", "head_timeout"
CLOSE_REASONS = (LIMIT, EVICTED, HEAD_TIMEOUT)


# A connection younger than this is never evicted to make room (see `_evict_idlest`): a flood must
# open `max_connections` connections within it to refuse a newcomer; a caller sends its request head
# within milliseconds of connecting.
EVICTION_AGE = 0.1


def _ignore(reason: str) -> None:
    return None


class _BoundedH11Protocol(H11Protocol):
    head_timeout: float = 30.0
    max_connections: int = 1000
    # Called with one of CLOSE_REASONS for every connection a bound closed (metrics).
    closed_by_bound: Callable[[str], None] = staticmethod(_ignore)
    # The connections waiting for a request head, oldest first (one dict per server: see
    # `bounded_protocol`), so the one to evict is found without scanning every connection.
    waiting: dict[_BoundedH11Protocol, None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections and not self._evict_idlest():
            # Refused before uvicorn tracks it: the descriptor goes back at once.
            transport.write(_REFUSAL)
            transport.close()
            self.closed_by_bound(LIMIT)
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def _evict_idlest(self) -> bool:
        """Close the connection that has waited longest for a request head, if it has waited at least
        EVICTION_AGE seconds; False otherwise. The age protects a caller that has just connected and
        is sending its request: flooding must then outpace it, not merely outnumber it."""
        idlest = next(iter(self.waiting), None)
        if idlest is None or self.loop.time() - idlest._head_since < EVICTION_AGE:
            return False
        idlest._disarm_head_timer()
        idlest.transport.close()
        self.closed_by_bound(EVICTED)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self.transport is None:  # a refused connection: uvicorn never saw it
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_head():
            self._arm_head_timer()
        else:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
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

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
            self.waiting.pop(self, None)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.waiting.pop(self, None)
        if self._awaiting_head():
            self.closed_by_bound(HEAD_TIMEOUT)
            self.transport.close()


def bounded_protocol(
    head_timeout: float, max_connections: int, closed_by_bound: Callable[[str], None] = _ignore
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head deadline and a cap on open connections."""
    return type(
        "BoundedH11Protocol",
        (_BoundedH11Protocol,),
        {
            "head_timeout": head_timeout,
            "max_connections": max_connections,
            "closed_by_bound": staticmethod(closed_by_bound),
            "waiting": {},
        },
    )


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
