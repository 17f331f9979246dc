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
`PREEMPT_SECONDS` (0.4 s) after its read began gives its slot up (RESOURCE_EXHAUSTED, retry
later) to a waiting caller holding fewer slots and under its share (`ReceiveSlots._preempt`).
A caller whose messages stalled lately (`STALLED_SECONDS`) queues as if served just now, behind
every other caller for as long as it waits (`Admission.deferred`), and a full queue makes room for
another caller by refusing the stalled caller queued last: 80 to 150 addresses each keeping one
stalled message queued had every other caller's calls, gRPC health too, refused or waiting 15 s.
Until each such address has stalled once, a call may still wait behind them (some 0.1 s an
address per slot), once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from chainrule.engine.errors import ChainruleError, InvalidArgument
from chainrule.server.compute.executors import OVERLOADED, Admission
from chainrule.server.compute.lanes import RecentlyMarked

T = TypeVar("T")

# Short enough that a health check waiting behind stalled messages is answered within a second
# (a sweep every quarter of it: two turns, 1 s at most, behind eight addresses stalling one message
# each); a message sent at once is read in milliseconds.
PREEMPT_SECONDS = 0.4
STALLED_SECONDS = 10.0
_WAITING = "no request message could start arriving"


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
        # The calls reading: when each started (waiting included) and began to read; those a sweep
        # (every quarter of the timeout, at most a quarter of PREEMPT_SECONDS) found overdue, or
        # took the slot from for a waiting call, and cancelled.
        self._reads: dict[asyncio.Task[Any], _Read] = {}
        self._overdue: set[asyncio.Task[Any]] = set()
        # The calls waiting for a slot, from when; those a sweep found waiting past the timeout.
        self._waits: dict[asyncio.Task[Any], float] = {}
        self._overwaited: set[asyncio.Task[Any]] = set()
        self._preempted: set[asyncio.Task[Any]] = set()
        # Callers whose messages stalled lately (overdue or preempted): their reads give way first,
        # and their calls wait behind other callers' (each stalled call, preempted and queued again,
        # had come back as a caller new to the queue: a call from elsewhere waited N/4 x 0.4 s behind
        # N addresses stalling one message each, 2.5 s at 24: an independent tester).
        self._stalled = RecentlyMarked(STALLED_SECONDS)
        self.admission.deferred = self._stalled.__contains__
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_seconds = min(PREEMPT_SECONDS, timeout_seconds) / 4

    async def receive(self, read: Callable[[], Awaitable[T]], context: Any) -> T:
        """`read()`'s message, read in a slot of the call's caller's share: waiting for one if need be."""
        loop = asyncio.get_running_loop()
        started = reading = loop.time()
        who = self._caller_of(context)
        admission = self.admission
        task = asyncio.current_task(loop)
        assert task is not None
        if not admission.try_take(who):
            await self._wait(task, who, started)
            reading = loop.time()
        # Waits and reads are timed by one sweep for all, not a timer each: most end at once.
        self._reads[task] = _Read(started, reading, who)
        self._sweeping(loop)
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
            if self._overdue or self._preempted:
                self._overdue.discard(task)
                self._preempted.discard(task)
            admission.release(who)

    async def _wait(self, task: asyncio.Task[Any], who: str, started: float) -> None:
        """Wait for a slot in the caller's queue, until the sweep finds the call waiting too long."""
        self._waits[task] = started
        self._sweeping(asyncio.get_running_loop())
        try:
            await self.admission.acquire(who, None, _WAITING)
        except asyncio.CancelledError:
            if task in self._overwaited:
                task.uncancel()
                raise self._waited_too_long() from None
            raise
        finally:
            del self._waits[task]
            self._overwaited.discard(task)

    def _sweeping(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweep is None:
            self._sweep = loop.call_later(self._sweep_seconds, self._end_overdue)

    def _end_overdue(self) -> None:
        now = asyncio.get_running_loop().time()
        for task, started in self._waits.items():
            if now - started >= self.timeout_seconds and task not in self._overwaited:
                self._overwaited.add(task)
                task.cancel()
        ending = self._overdue | self._preempted
        for task, read in self._reads.items():
            if now - read.started >= self.timeout_seconds and task not in ending:
                self._overdue.add(task)
                self._stalled.mark(read.caller)
                task.cancel()
        self._preempt(now)
        self._sweep = None
        if self._reads or self._waits:
            self._sweep = asyncio.get_running_loop().call_later(self._sweep_seconds, self._end_overdue)

    def _preempt(self, now: float) -> None:
        """Slots given up for the waiting callers that may take one (under their share), each from a
        caller holding more slots than that waiter: a caller whose messages stalled lately first,
        then the caller holding the most, its read begun longest ago, once that is PREEMPT_SECONDS
        old. A waiter already holding its share takes nothing (one caller's queue of stalled
        messages made every other caller's slow upload fail, at every retry)."""
        admission = self.admission
        ending = self._overdue | self._preempted
        reads = {task: read for task, read in self._reads.items() if task not in ending}
        for held in admission.waiting_holdings()[len(self._preempted) :]:
            candidates = [task for task, read in reads.items() if admission.held_by(read.caller) > held]
            if not candidates:
                continue
            task = min(
                candidates,
                key=lambda task: (
                    reads[task].caller not in self._stalled,
                    -admission.held_by(reads[task].caller),
                    reads[task].reading,
                ),
            )
            if now - reads[task].reading < PREEMPT_SECONDS:
                continue
            self._stalled.mark(reads.pop(task).caller)
            self._preempted.add(task)
            task.cancel()

    def _waited_too_long(self) -> ChainruleError:
        admission = self.admission
        return self._busy(
            f"{_WAITING} (waiting for a free {admission.name} slot) for {self.timeout_seconds:g} s "
            f"(CHAINRULE_HEADER_TIMEOUT_SECONDS): {admission.running} messages arriving, "
            f"{admission.waiting} calls waiting"
        )

    def _preemption(self) -> ChainruleError:
        admission = self.admission
        return self._busy(
            f"the request message was still arriving {PREEMPT_SECONDS:g} s after its read began, "
            f"with {admission.running} of {admission.concurrency} slots (CHAINRULE_GRPC_RECEIVING_CALLS) "
            f"taken and {admission.waiting} calls waiting: send each message at once"
        )

    def _busy(self, state: str) -> ChainruleError:
        """A refusal for `state`, counted: the slots were busy (RESOURCE_EXHAUSTED, retry later)."""
        admission = self.admission
        return admission.refused(OVERLOADED, state, "their share of the slots", admission.concurrency)


class _Read(NamedTuple):
    """A call reading its message: when it started (waiting for a slot included), when its read
    began, and whose call it is."""

    started: float
    reading: float
    caller: str


def _stalled(timeout_seconds: float) -> InvalidArgument:
    return InvalidArgument(
        f"the request message did not arrive in full within {timeout_seconds:g} s "
        "(CHAINRULE_HEADER_TIMEOUT_SECONDS); send each message at once",
        reason="MESSAGE_TIMEOUT",
    )
