"""How many gRPC request messages may be arriving at once: what grpc holds before any handler runs.

grpc keeps the part of a message that has arrived until the whole of it has, and once a handler
asks for the message it grants the sender a window of the message's declared length (up to
MAX_REQUEST_BYTES). grpc.aio asks for a unary call's message before running its handler, so
nothing counted it: calls that each declared 8 MB, sent 1 MB and stopped held 400 MB, 200 calls
on each of two connections, on streams a connection may keep open by the thousand.

So every handler reads its message itself (`instrumentation` registers unary methods as
client-streaming ones), through `ReceiveSlots`: at most `slots` messages are read at once, and a
call waiting for a slot has its stream held by flow control at the initial window (64 KiB:
`grpc.http2.bdp_probe` is off, or grpc would widen every stream's window to what the connection
moves). A message still arriving `timeout_seconds` after its call started is refused
(INVALID_ARGUMENT); so is a call that could not start reading in that time (RESOURCE_EXHAUSTED,
retry later). What all this may hold is the `receiving` term of `sizing.memory_bound`.

Shares: a caller reads at most half the slots (at least one) at once and, once half the waiting
places are taken, waits with at most a quarter of them; freed slots go to the waiting callers in
turn, so one caller's stalled messages slow only itself.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chainrule.engine.errors import InvalidArgument, ResourceExhausted
from chainrule.server.compute.executors import CALLER_SHARE, OVERLOADED, overloaded

T = TypeVar("T")


class ReceiveSlots:
    """At most `slots` request messages being read at once, and `waiting` calls waiting to read."""

    name = "receiving"
    causes = (OVERLOADED, CALLER_SHARE)

    def __init__(
        self,
        slots: int,
        waiting: int,
        timeout_seconds: float,
        retry_after_seconds: float,
        caller_of: Callable[[Any], str],
    ) -> None:
        """`caller_of(context)`: who a call's caller is (`auth.Callers.of_grpc`)."""
        self.slots = slots
        self.max_waiting = waiting
        self.timeout_seconds = timeout_seconds
        self.retry_after_seconds = retry_after_seconds
        self.reading = 0
        self.waiting = 0
        self.on_rejected: Callable[[str], None] = _ignore
        self._caller_of = caller_of
        self._share = max(1, slots // 2)
        self._reading: dict[str, int] = {}
        # Each waiting caller's calls, first come first served; callers in the order they take turns.
        self._queues: dict[str, collections.deque[asyncio.Future[None]]] = {}
        # The calls reading, and when each started (waiting included); those a sweep (every
        # quarter of the timeout, at most 1 s) found overdue and cancelled.
        self._reads: dict[asyncio.Task[Any], float] = {}
        self._overdue: set[asyncio.Task[Any]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_seconds = min(1.0, timeout_seconds / 4)

    async def receive(self, read: Callable[[], Awaitable[T]], context: Any) -> T:
        """`read()`'s message, read in a slot of the call's caller's share: waiting for one if need be."""
        who = self._caller_of(context)
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.reading < self.slots and self._reading.get(who, 0) < self._share:
            self._hold(who)
        else:
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    await self._wait_turn(who)
            except TimeoutError:
                raise self._refusal(
                    OVERLOADED, f"no message could start arriving for {self.timeout_seconds:g} s"
                ) from None
        # Reads are timed by one sweep for all, not a timer each: most end at once.
        task = asyncio.current_task()
        assert task is not None
        self._reads[task] = started
        if self._sweep is None:
            self._sweep = loop.call_later(self._sweep_seconds, self._end_overdue_reads)
        try:
            return await read()
        except asyncio.CancelledError:
            if task not in self._overdue:
                raise
            task.uncancel()
            raise _stalled(self.timeout_seconds) from None
        finally:
            del self._reads[task]
            self._overdue.discard(task)
            self._give_back(who)

    def _end_overdue_reads(self) -> None:
        now = asyncio.get_running_loop().time()
        for task, started in self._reads.items():
            if now - started >= self.timeout_seconds and task not in self._overdue:
                self._overdue.add(task)
                task.cancel()
        self._sweep = None
        if self._reads:
            self._sweep = asyncio.get_running_loop().call_later(self._sweep_seconds, self._end_overdue_reads)

    async def _wait_turn(self, who: str) -> None:
        if self.waiting >= self.max_waiting:
            raise self._refusal(OVERLOADED, "too many calls are waiting to read their messages")
        queue = self._queues.get(who)
        if 2 * self.waiting >= self.max_waiting and queue and len(queue) >= max(1, self.max_waiting // 4):
            raise self._refusal(CALLER_SHARE, "your calls wait for their share of the slots")
        if queue is None:
            queue = self._queues[who] = collections.deque()
        turn = asyncio.get_running_loop().create_future()
        queue.append(turn)
        self.waiting += 1
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._give_back(who)  # given a slot just as the wait ended
            else:
                self._forget(who, turn)
            raise

    def _hold(self, who: str) -> None:
        self.reading += 1
        self._reading[who] = self._reading.get(who, 0) + 1

    def _give_back(self, who: str) -> None:
        self.reading -= 1
        left = self._reading[who] - 1
        if left:
            self._reading[who] = left
        else:
            del self._reading[who]
        if self._queues:
            self._hand_on()

    def _hand_on(self) -> None:
        """Free slots to waiting callers within their share, each caller in turn."""
        while self.reading < self.slots:
            who = next((w for w in self._queues if self._reading.get(w, 0) < self._share), None)
            if who is None:
                return
            queue = self._queues.pop(who)
            turn = queue.popleft()
            if queue:
                self._queues[who] = queue  # to the back: the other callers' turn first
            self.waiting -= 1
            if not turn.done():  # (a wait cancelled, its task not yet resumed to forget it)
                self._hold(who)
                turn.set_result(None)

    def _forget(self, who: str, turn: asyncio.Future[None]) -> None:
        queue = self._queues.get(who)
        if queue is None or turn not in queue:
            return  # passed over by `_hand_on` already
        queue.remove(turn)
        self.waiting -= 1
        if not queue:
            del self._queues[who]

    def _refusal(self, cause: str, why: str) -> ResourceExhausted:
        self.on_rejected(cause)
        return overloaded(
            f"{self.reading} request messages arriving and {self.waiting} calls waiting to read theirs "
            f"(limits {self.slots} and {self.max_waiting}): {why}",
            "their share of the slots",
            queue=self.name,
            limit=self.slots,
            cause=cause,
            retry_after_seconds=self.retry_after_seconds,
        )


def _stalled(timeout_seconds: float) -> InvalidArgument:
    return InvalidArgument(
        f"the request message did not arrive in full within {timeout_seconds:g} s "
        "(CHAINRULE_HEADER_TIMEOUT_SECONDS); send each message at once",
        reason="MESSAGE_TIMEOUT",
    )


def _ignore(cause: str) -> None:
    return None
