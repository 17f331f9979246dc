"""Streaming gRPC calls (health's Watch, reflection) held open: how many, by whom, and how long a
reply may wait to be taken.

A unary call ends within its budget; a stream lives as long as its caller keeps it (a Watch until
its connection ages out, 30 minutes), outside the call limit. Each open stream costs grpc some
24 KiB, and a stream's request message stays with its handler: 10,000 empty Watch calls for 1.5 MB
sent took 230 MiB, and 237 Watch calls naming a 4 MiB service took 2.9 GB (an independent tester).
So at most `limit` streams are open at once, a quarter of them for one caller (refused:
RESOURCE_EXHAUSTED with a retry delay); a stream's request message is at most
`STREAM_MESSAGE_BYTES` (health and reflection ask by name); and a reply the caller has not taken
within `send_seconds` ends its stream (CANCELLED), so an unread stream does not hold its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from chainrule.engine.errors import LimitExceeded
from chainrule.server.compute.executors import CALLER_SHARE, OVERLOADED, overloaded
from chainrule.server.sizing import STREAM_MESSAGE_BYTES


class OpenStreams:
    """At most `limit` streaming calls open at once, `limit // 4` (at least one) for one caller."""

    def __init__(
        self, limit: int, send_seconds: float, retry_after_seconds: float, caller_of: Callable[[Any], str]
    ) -> None:
        """`caller_of(context)`: who a call's caller is (`auth.Callers.of_grpc`)."""
        self.limit = limit
        self.per_caller = max(1, limit // 4)
        self.send_seconds = send_seconds
        self.retry_after_seconds = retry_after_seconds
        self.open = 0
        self._caller_of = caller_of
        self._by_caller: dict[str, int] = {}

    @contextlib.contextmanager
    def held(self, context: Any) -> Iterator[None]:
        """Count the stream of `context` as open for the block; refuse it over the bounds."""
        who = self._caller_of(context)
        mine = self._by_caller.get(who, 0)
        if self.open >= self.limit or mine >= self.per_caller:
            cause = OVERLOADED if self.open >= self.limit else CALLER_SHARE
            raise overloaded(
                f"{self.open} of {self.limit} streams open (CHAINRULE_MAX_STREAMS)",
                f"{mine} of the {self.per_caller} one caller may hold",
                queue="streams",
                limit=self.limit,
                cause=cause,
                retry_after_seconds=self.retry_after_seconds,
            )
        self.open += 1
        self._by_caller[who] = mine + 1
        try:
            yield
        finally:
            self.open -= 1
            left = self._by_caller[who] - 1
            if left:
                self._by_caller[who] = left
            else:
                del self._by_caller[who]

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """A reply being taken: past `send_seconds` the stream's task is cancelled (CANCELLED)."""
        task = asyncio.current_task()
        assert task is not None
        timer = asyncio.get_running_loop().call_later(self.send_seconds, task.cancel)
        try:
            yield
        finally:
            timer.cancel()


def check_message_size(message: Any) -> Any:
    """`message`, or LIMIT_EXCEEDED where it is larger than a stream's request may be."""
    size = message.ByteSize()
    if size > STREAM_MESSAGE_BYTES:
        raise LimitExceeded(
            "stream_message_bytes",
            size,
            STREAM_MESSAGE_BYTES,
            field="request",
            what="a streaming call's request message",
            unit="bytes",
            hint="health and reflection requests name one service, file or symbol",
        )
    return message
