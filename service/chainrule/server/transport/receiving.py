"""How many gRPC request messages may be arriving at once: what grpc holds before any handler runs.

grpc keeps the part of a message that has arrived until the whole of it has, and once a handler
asks for the message it grants the sender a window of the message's declared length (up to
MAX_REQUEST_BYTES). grpc.aio asks for a unary call's message before running its handler, so
nothing counted it: calls that each declared 8 MB, sent 1 MB and stopped held 400 MB, 200 calls
on each of two connections, on streams a connection may keep open by the thousand.

So every handler reads its message itself (`instrumentation` registers unary methods as
client-streaming ones), through `ReceiveSlots`: at most `slots` messages are read at once, and a
call waiting for a slot has its stream held by flow control at the initial window
(`GRPC_STREAM_WINDOW_BYTES`, 64 KiB by default: `grpc.http2.bdp_probe` is off, or grpc would widen
every stream's window to what the connection moves). A message still arriving `timeout_seconds`
after its call started is refused (INVALID_ARGUMENT); so is a call that could not start reading in
that time (RESOURCE_EXHAUSTED, retry later). What all this may hold is the `receiving` term of
`sizing.memory_bound`.

Shares are an `executors.Admission`'s: a caller reads in at most half the slots (at least one) at
once; a freed slot goes to the waiting caller holding the fewest; a full queue drops the newest
waiter of the caller queued for the most; so one caller's stalled messages slow only itself. Two
callers' stalled messages could still hold every slot until the timeout (30 s: gRPC health, and
every other caller's calls, waited the while), so while calls wait, a message still arriving
`PREEMPT_SECONDS` (0.5 s) after its read began gives its slot up (RESOURCE_EXHAUSTED, retry
later), the oldest first, one for each call waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chainrule.engine.errors import ChainruleError, InvalidArgument
from chainrule.server.compute.executors import OVERLOADED, Admission

T = TypeVar("T")

# Short enough that a health check waiting behind stalled messages is answered within a second
# (a sweep every quarter of it: 0.625 s at most); a message sent at once is read in milliseconds.
PREEMPT_SECONDS = 0.5


class ReceiveSlots:
    """At most `slots` request messages being read at once, and `waiting` calls waiting to read:
    an `executors.Admission` (its shares and turns) whose reads are timed."""

    def __init__(
        self,
        slots: int,
        waiting: int,
        timeout_seconds: float,
        retry_after_seconds: float,
        caller_of: Callable[[Any], str],
    ) -> None:
        """`caller_of(context)`: who a call's caller is (`auth.Callers.of_grpc`)."""
        self.admission = Admission(
            "receiving", slots, waiting, retry_after_seconds, per_caller=max(1, slots // 2)
        )
        self.timeout_seconds = timeout_seconds
        self._caller_of = caller_of
        self._waiting = _Waiting(self.admission, timeout_seconds)
        # The calls reading: when each started (waiting included) and began to read; those a sweep
        # (every quarter of the timeout, at most a quarter of PREEMPT_SECONDS) found overdue, or
        # took the slot from for a waiting call, and cancelled.
        self._reads: dict[asyncio.Task[Any], tuple[float, float]] = {}
        self._overdue: set[asyncio.Task[Any]] = set()
        self._preempted: set[asyncio.Task[Any]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_seconds = min(PREEMPT_SECONDS, timeout_seconds) / 4

    async def receive(self, read: Callable[[], Awaitable[T]], context: Any) -> T:
        """`read()`'s message, read in a slot of the call's caller's share: waiting for one if need be."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self.admission.slot(
            self._waiting, "no request message could start arriving", self._caller_of(context)
        ):
            # Reads are timed by one sweep for all, not a timer each: most end at once.
            task = asyncio.current_task()
            assert task is not None
            self._reads[task] = (started, loop.time())
            if self._sweep is None:
                self._sweep = loop.call_later(self._sweep_seconds, self._end_overdue_reads)
            try:
                return await read()
            except asyncio.CancelledError:
                if task in self._overdue:
                    task.uncancel()
                    raise _stalled(self.timeout_seconds) from None
                if task in self._preempted:
                    task.uncancel()
                    raise self._preemption() from None
                raise
            finally:
                del self._reads[task]
                self._overdue.discard(task)
                self._preempted.discard(task)

    def _end_overdue_reads(self) -> None:
        now = asyncio.get_running_loop().time()
        ending = self._overdue | self._preempted
        for task, (started, _) in self._reads.items():
            if now - started >= self.timeout_seconds and task not in ending:
                self._overdue.add(task)
                task.cancel()
        # Slots given up for the calls waiting: the reads begun longest ago, past PREEMPT_SECONDS.
        ending = self._overdue | self._preempted
        slow = sorted(
            (task for task, (_, reading) in self._reads.items() if now - reading >= PREEMPT_SECONDS),
            key=lambda task: self._reads[task][1],
        )
        slow = [task for task in slow if task not in ending]
        for task in slow[: max(0, self.admission.waiting - len(self._preempted))]:
            self._preempted.add(task)
            task.cancel()
        self._sweep = None
        if self._reads:
            self._sweep = asyncio.get_running_loop().call_later(self._sweep_seconds, self._end_overdue_reads)

    def _preemption(self) -> ChainruleError:
        admission = self.admission
        state = (
            f"the request message was still arriving {PREEMPT_SECONDS:g} s after its read began, "
            f"with all {admission.concurrency} slots (CHAINRULE_GRPC_RECEIVING_CALLS) taken and "
            f"{admission.waiting} calls waiting: send each message at once"
        )
        return admission.refused(OVERLOADED, state, "their share of the slots", admission.concurrency)


@dataclass(frozen=True)
class _Waiting:
    """How long a call waits for a slot (`executors.WaitLimit`): a refusal past it is counted."""

    admission: Admission
    seconds: float

    def exceeded(self, what: str, *, waiting_retry_after: float | None = None) -> ChainruleError:
        admission = self.admission
        state = (
            f"{what} for {self.seconds:g} s (CHAINRULE_HEADER_TIMEOUT_SECONDS): "
            f"{admission.running} messages arriving, {admission.waiting} calls waiting"
        )
        return admission.refused(OVERLOADED, state, "their share of the slots", admission.concurrency)


def _stalled(timeout_seconds: float) -> InvalidArgument:
    return InvalidArgument(
        f"the request message did not arrive in full within {timeout_seconds:g} s "
        "(CHAINRULE_HEADER_TIMEOUT_SECONDS); send each message at once",
        reason="MESSAGE_TIMEOUT",
    )
