"""Streaming gRPC calls (health's Watch, reflection) held open: how many, by whom, how large their
requests.

A unary call ends within its budget; a stream lives as long as its caller keeps it (a Watch until
its connection ages out, 30 minutes), outside the call limit. Each open stream costs grpc some
24 KiB, and a stream's request message stays with its handler: 10,000 empty Watch calls for 1.5 MB
sent took 230 MiB, and 237 Watch calls naming a 4 MiB service took 2.9 GB (an independent tester).
So at most `limit` streams are open at once, a sixteenth of them for one caller and the last
eighth for callers holding none (refused: RESOURCE_EXHAUSTED with a retry delay), counted until
grpc is done with them; and a stream's request message is at most `sizing.STREAM_MESSAGE_BYTES`
(health and reflection ask by name).
Nothing in grpc.aio ends a stream whose reply waits for a window the caller never gives (cancelled
or aborted, grpc keeps it until its connection closes): such a stream counts until then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from chainrule.engine.errors import LimitExceeded
from chainrule.server.compute.executors import CALLER_SHARE, OVERLOADED, overloaded
from chainrule.server.sizing import STREAM_MESSAGE_BYTES, STREAM_MESSAGES


class OpenStreams:
    """At most `limit` streaming calls open at once, a sixteenth (at least one) for one caller, and
    the last eighth for callers holding none: four addresses held every stream with a quarter each,
    and every other caller's Watch (gRPC client-side health checking: its channels' every call),
    and reflection, were refused (an independent tester)."""

    def __init__(self, limit: int, retry_after_seconds: float, caller_of: Callable[[Any], str]) -> None:
        """`caller_of(context)`: who a call's caller is (`auth.Callers.of_grpc`)."""
        self.limit = limit
        self.per_caller = max(1, limit // 16)
        self.kept = limit // 8
        self.retry_after_seconds = retry_after_seconds
        self.open = 0
        self._caller_of = caller_of
        self._by_caller: dict[str, int] = {}

    def count(self, context: Any) -> None:
        """Count the stream of `context` as open until grpc is done with it, or refuse it over the
        bounds (RESOURCE_EXHAUSTED). Until done, not until its handler ends: grpc keeps a stream
        whose reply the caller does not take until the connection closes, cancelled or aborted."""
        who = self._caller_of(context)
        mine = self._by_caller.get(who, 0)
        room = self.limit - self.kept if mine else self.limit
        if self.open >= room or mine >= self.per_caller:
            cause = OVERLOADED if self.open >= room else CALLER_SHARE
            raise overloaded(
                f"{self.open} of {self.limit} streams open (CHAINRULE_MAX_STREAMS; the last "
                f"{self.kept} for callers holding none)",
                f"{mine} of the {self.per_caller} one caller may hold",
                queue="streams",
                limit=self.limit,
                cause=cause,
                retry_after_seconds=self.retry_after_seconds,
            )
        self.open += 1
        self._by_caller[who] = mine + 1
        context.add_done_callback(lambda _: self._closed(who))

    def _closed(self, who: str) -> None:
        self.open -= 1
        left = self._by_caller[who] - 1
        if left:
            self._by_caller[who] = left
        else:
            del self._by_caller[who]


def check_message_count(count: int) -> None:
    """LIMIT_EXCEEDED where a stream's `count`-th request message is past what one stream may send."""
    if count > STREAM_MESSAGES:
        raise LimitExceeded(
            "stream_messages",
            count,
            STREAM_MESSAGES,
            field="request",
            what="request messages on one streaming call",
            unit="messages",
            hint="a reflection client asks for a few dozen files and symbols: open another stream",
        )


class Oversized(NamedTuple):
    """A request message past `STREAM_MESSAGE_BYTES`, in place of its decoding."""

    size: int


def bounded_reader(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize` for requests of at most `STREAM_MESSAGE_BYTES`, an `Oversized` for longer ones:
    grpc decodes a request on the event loop, and health Check and Watch calls naming a 60 MB service
    from four addresses stalled every other caller's calls 1.4 to 1.8 s (an attack hunt, 2026-12-05)."""

    def read(raw: bytes) -> Any:
        return Oversized(len(raw)) if len(raw) > STREAM_MESSAGE_BYTES else deserialize(raw)

    return read


def check_message_size(message: Any) -> Any:
    """`message`, or LIMIT_EXCEEDED where it is larger than a health or reflection request may be."""
    size = message.size if isinstance(message, Oversized) else message.ByteSize()
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
