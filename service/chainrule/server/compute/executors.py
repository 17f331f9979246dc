"""Where engine work runs: the one interface the API layer awaits, whatever runs the work behind it.

Symbolic work (parse, differentiate, simplify, print) and numeric work (compile, evaluate) are sent to
separate executors: the symbolic workers (pool.py, killable processes) or, with
`CHAINRULE_SYMBOLIC_WORKERS=0`, a bounded thread pool; numeric work always runs on a bounded thread
pool (numpy releases the GIL). `Admission` bounds each one's concurrency and queue.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from chainrule.engine.errors import ChainruleError, ResourceExhausted, refusing_library_failures
from chainrule.server.compute import deadlines

P = ParamSpec("P")
T = TypeVar("T")


class Executor(Protocol):
    """Runs a synchronous function off the event loop and awaits its result."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def close(self) -> None: ...


class HoldingExecutor(Executor, Protocol):
    """An executor whose work may outlive the call that asked for it (a thread cannot be stopped)."""

    async def run_holding(
        self, held: Callable[[], None], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run`, calling `held` (what gives back a reservation the work uses, such as its working
        memory) once the work is done, or at once if it never starts."""
        ...


class ThreadExecutor:
    """A bounded thread pool; numpy and most of sympy's C paths release the GIL often enough."""

    def __init__(self, threads: int, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        # Carry the caller's context (request id for logs) into the pool's thread; sympy failing on
        # valid input is the caller's answer, as in the symbolic workers.
        call = functools.partial(
            contextvars.copy_context().run, refusing_library_failures, fn, *args, **kwargs
        )
        return await loop.run_in_executor(self._pool, call)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class InlineExecutor:
    """Runs work on the caller's thread: for the CLI and for tests of the API layer alone."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return refusing_library_failures(fn, *args, **kwargs)

    async def run_holding(
        self, held: Callable[[], None], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return await self.run(fn, *args, **kwargs)
        finally:
            held()

    async def close(self) -> None:
        return None


# --- admission ------------------------------------------------------------------------------------

# Why a call was refused as overload: its queue was full, or its caller already held its share of it
# (the metric's label values, exported from start-up).
OVERLOADED, CALLER_SHARE = "overloaded", "caller_share"
_NEVER_SERVED = 2**62  # ranks a caller new to a queue before every one served


class WaitLimit(Protocol):
    """How long a task may wait for a slot, and the error when it has waited that long
    (`deadlines.Budget`: the request's compute budget)."""

    @property
    def seconds(self) -> float: ...

    def exceeded(self, what: str, *, waiting_retry_after: float | None = None) -> ChainruleError: ...


class Admission:
    """At most `concurrency` tasks at once, shared fairly between callers, and `queue` more waiting.

    A caller is who `deadlines.current_caller()` says (the bearer token, else the peer's address).
    One caller holds at most `per_caller` slots at once (0: all but one, at least one), so no caller
    alone can take every worker; a freed slot goes to the waiting caller that holds the fewest, and
    among those to the one served longest ago (round robin). When the queue is full, a caller with
    at least two fewer tasks queued than another takes the newest place of the caller with the most
    (who is refused instead); otherwise the newcomer is refused: one fewer would have two callers
    take each other's place at every retry. So callers keeping one call queued each keep a newcomer
    out while they keep the queue full (its calls are refused with a retry delay).
    With `deferred_as_one`, the callers `deferred` says hold at most `per_caller` slots together, as
    if they were one caller: however many addresses send work that costs a worker, a slot stays for
    the rest (pool.py). Among callers holding as many slots and not deferred, those `preferred` says
    (pool.py: whose last task was cheap) go first.
    Refusals are RESOURCE_EXHAUSTED with a retry delay (the server is busy, not the request too
    big), counted by reason in `rejections`: `overloaded` (the queue was full) or `caller_share`
    (the caller already held its share of the queue).
    """

    causes = (OVERLOADED, CALLER_SHARE)

    def __init__(
        self,
        name: str,
        concurrency: int,
        queue: int,
        retry_after_seconds: float,
        per_caller: int = 0,
        *,
        deferred_as_one: bool = False,
    ) -> None:
        self.name = name
        self.concurrency = concurrency
        self.queue = queue
        self.per_caller = per_caller or max(1, concurrency - 1)
        self.retry_after_seconds = retry_after_seconds
        self.running = 0
        self.waiting = 0
        self.rejections: dict[str, int] = dict.fromkeys(self.causes, 0)
        # Called with the reason of each refusal (metrics.py counts them).
        self.on_rejected: Callable[[str], None] = _ignore
        # Callers whose waiters go after every other's among those holding as many slots (receiving.py:
        # callers whose messages stalled lately, each preempted and queued again as new).
        self.deferred: Callable[[str], bool] = _never
        # Callers whose waiters go before the others' among those holding as many slots (pool.py).
        self.preferred: Callable[[str], bool] = _never
        self.deferred_as_one = deferred_as_one
        # Callers holding or awaiting a slot only: the maps stay as small as the queue.
        self._held: dict[str, int] = {}
        self._queues: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._served: dict[str, int] = {}
        self._deferred_waiting: set[str] = set()  # callers queued while `deferred`
        self._deferred_held: dict[str, int] = {}  # slots taken while `deferred` (`deferred_as_one`)
        self._turns = itertools.count()

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    @contextlib.asynccontextmanager
    async def slot(
        self, budget: WaitLimit | None, what: str, caller: str | None = None
    ) -> AsyncIterator[None]:
        """Hold one of the slots; wait in the bounded queue at most until `budget` runs out."""
        who = deadlines.current_caller() if caller is None else caller
        await self.acquire(who, budget, what)
        try:
            yield
        finally:
            self.release(who)

    async def take(
        self, budget: WaitLimit | None, what: str, caller: str | None = None
    ) -> Callable[[], None]:
        """Take a slot as `slot` does, for work that may outlive the task that asked for it; return
        the function that gives it back (to be called once)."""
        who = deadlines.current_caller() if caller is None else caller
        await self.acquire(who, budget, what)
        return _once(lambda: self.release(who))

    async def acquire(self, who: str, budget: WaitLimit | None, what: str) -> None:
        """Take a slot for `who` as `slot` does; `release(who)` gives it back (a hot path's
        try/finally, without a context manager's calls)."""
        if self.try_take(who):
            return
        deferred = self.deferred(who)
        self._make_room(who, deferred=deferred)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(who, collections.deque()).append(waiter)
        if deferred:
            # As if served just now, and deferred for as long as it waits: behind every caller who
            # came before, even once its mark runs out in the queue (past 100 addresses stalling a
            # message each, a stalled call waited longer than the mark lasts, and as a caller new to
            # the queue went before every other caller's calls: 15 s each; an independent tester).
            self._served[who] = next(self._turns)
            self._deferred_waiting.add(who)
        else:
            # A caller never served (or forgotten) goes before those served, and such callers in the
            # order they came: ranked by name, five addresses' stalled messages, each preempted and
            # queued again, kept gRPC health from an address sorting after theirs waiting.
            self._served.setdefault(who, next(self._turns) - _NEVER_SERVED)
        self.waiting += 1
        expired = False
        try:
            if budget is None:  # (no timeout to enter: the receiving slots' waits, by the thousand)
                await waiter
            else:
                async with deadlines.TimeLimit(budget.seconds) as limit:
                    await waiter
                expired = limit.expired
            if expired:
                self._abandon(who, waiter)
        except asyncio.CancelledError:
            self._abandon(who, waiter)
            raise
        finally:
            # A refusal (`_make_room`) is the waiter's exception, raised through this frame: with the
            # waiter in a local, a cycle that kept each evicted REST body until the cyclic
            # collector ran (an independent tester).
            del waiter
        if expired:
            assert budget is not None
            raise budget.exceeded(
                f"{what} (waiting for a free {self.name} slot)", waiting_retry_after=self.retry_after_seconds
            )

    def try_take(self, who: str) -> bool:
        """Take a slot for `who` if one is free and within its share, without waiting."""
        if self.running < self.concurrency and self._may_take(who):
            self._take(who)
            return True
        return False

    def waiting_holdings(self) -> list[int]:
        """The slots held by each waiting caller that may take a freed one (under `per_caller`),
        fewest first."""
        held = (self._held.get(who, 0) for who in self._queues)
        return sorted(count for count in held if count < self.per_caller)

    def held_by(self, who: str) -> int:
        return self._held.get(who, 0)

    def _may_take(self, who: str) -> bool:
        """Whether `who` is under its share (and, deferred, the deferred callers under theirs)."""
        if self._held.get(who, 0) >= self.per_caller:
            return False
        if self.deferred_as_one and self._is_deferred(who):
            return sum(self._deferred_held.values()) < self.per_caller
        return True

    def _take(self, who: str) -> None:
        self.running += 1
        self._held[who] = self._held.get(who, 0) + 1
        self._served[who] = next(self._turns)
        if self.deferred_as_one and self._is_deferred(who):
            self._deferred_held[who] = self._deferred_held.get(who, 0) + 1

    def release(self, who: str) -> None:
        self.running -= 1
        deferred = self._deferred_held.get(who, 0)
        if deferred > 1:
            self._deferred_held[who] = deferred - 1
        elif deferred:
            del self._deferred_held[who]
        held = self._held[who] - 1
        if held:
            self._held[who] = held
        else:
            del self._held[who]
            self._forget(who)
        self._dispatch()

    def _forget(self, who: str) -> None:
        if who not in self._queues:
            self._deferred_waiting.discard(who)
            if who not in self._held:
                self._served.pop(who, None)

    def _is_deferred(self, who: str) -> bool:
        return who in self._deferred_waiting or self.deferred(who)

    def _dispatch(self) -> None:
        """Hand free slots to waiting callers: fewest held first, then those not `deferred`, then
        those `preferred`, then the one served longest ago."""
        while self.running < self.concurrency:
            eligible = [
                (
                    self._held.get(who, 0),
                    self._is_deferred(who),
                    not self.preferred(who),
                    self._served[who],
                    who,
                )
                for who in self._queues
                if self._may_take(who)
            ]
            if not eligible:
                return
            who = min(eligible)[4]  # the stamps are distinct: the name never decides
            waiter = self._dequeue(who, newest=False)
            if waiter.done():  # cancelled, its task not yet told: it leaves the queue here
                self._forget(who)
                continue
            self._take(who)
            waiter.set_result(None)

    def _dequeue(self, who: str, *, newest: bool) -> asyncio.Future[None]:
        queue = self._queues[who]
        waiter = queue.pop() if newest else queue.popleft()
        if not queue:
            del self._queues[who]
        self.waiting -= 1
        return waiter

    def _abandon(self, who: str, waiter: asyncio.Future[None]) -> None:
        """A waiter gave up (budget, cancellation): leave the queue, or pass on a slot just granted."""
        if waiter.done() and not waiter.cancelled():
            if waiter.exception() is None:
                self.release(who)
            return
        # Still queued (a timeout or cancellation cancels the future it was awaiting).
        waiter.cancel()
        queue = self._queues.get(who)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self.waiting -= 1
            if not queue:
                del self._queues[who]
                self._forget(who)

    def _make_room(self, who: str, *, deferred: bool) -> None:
        """Refuse `who`, or another caller queued for more, or else (`who` not `deferred`) the
        deferred caller queued last, when the queue is full (a queue full of stalled callers, one
        call each, refused every other caller's calls, gRPC health included: an independent tester)."""
        if self.waiting < self.queue:
            return
        mine = len(self._queues.get(who, ()))
        victim = max(self._queues, key=lambda caller: len(self._queues[caller]), default=None)
        if victim is None or len(self._queues[victim]) <= mine + 1:
            stalled = [caller for caller in self._queues if self._is_deferred(caller)]
            if deferred or not stalled:
                raise self._refusal(CALLER_SHARE if mine else OVERLOADED)
            victim = max(stalled, key=self._served.__getitem__)
        waiter = self._dequeue(victim, newest=True)
        if not waiter.done():
            waiter.set_exception(self._refusal(CALLER_SHARE))
        self._forget(victim)

    def _refusal(self, reason: str) -> ResourceExhausted:
        state = f"{self.running} {self.name} tasks running and {self.waiting} queued (the limit)"
        return self.refused(reason, state, "the largest share of the queue", self.queue)

    def refused(self, cause: str, state: str, share: str, limit: int) -> ResourceExhausted:
        """A refusal for `cause`, counted: what is full (`state`), whose `share`, and the `limit`."""
        self.rejections[cause] += 1
        self.on_rejected(cause)
        return overloaded(
            state,
            share,
            queue=self.name,
            limit=limit,
            cause=cause,
            retry_after_seconds=self.retry_after_seconds,
        )


def overloaded(
    state: str, share: str, *, queue: str, limit: int, cause: str, retry_after_seconds: float
) -> ResourceExhausted:
    """OVERLOADED with a retry delay: what is full (`state`), and, refused for its caller's share, whose."""
    mine = f" (your calls hold {share})" if cause == CALLER_SHARE else ""
    return ResourceExhausted(
        f"the server is busy: {state}{mine}; retry after {retry_after_seconds:g} s",
        reason="OVERLOADED",
        metadata={"queue": queue, "limit": str(limit), "cause": cause},
        retry_after_seconds=retry_after_seconds,
    )


def _ignore(reason: str) -> None:
    return None


def _never(who: str) -> bool:
    return False


class CallLimit:
    """At most `limit` calls, and `max_bytes` bytes of their requests and replies, served at once by
    one process.

    Beyond either, RESOURCE_EXHAUSTED at once, with a retry delay: no queue, since a call waiting
    here would hold its request's memory. Without this bound, grpc's own backlog limit cancels calls
    (CANCELLED, uncounted, with no retry delay) when a burst arrives faster than the event loop picks
    calls up. The transports `admit` each call before they read its request; its body as it
    arrives, and its reply, count (`AdmittedCall.charge`) until the reply is sent: a client that
    never reads its replies keeps them in the server's memory.

    Shares, so that one caller's burst, its slowly sent bodies or its unread replies always leave
    the others room (`caller_share` refusals), counted per caller from the first call:
    - the last eighth of the calls and of the bytes is kept for callers holding nothing: a caller
      already holding a call starts no call, and grows none, into it (else two callers' calls made
      before anything was contended, plus their shares, held everything), and a lone call grows into
      at most a quarter of it;
    - once half the calls or half the bytes are in flight, a caller holds at most a quarter of
      each (`share`), and starts calls only while it holds an eighth of the bytes or less (a call it
      started then would compute a reply only to have it refused: the churn of such replies grew
      the heap by 60 MB per 200 calls).
    """

    name = "calls"
    causes = (OVERLOADED, CALLER_SHARE)

    def __init__(self, limit: int, max_bytes: int, retry_after_seconds: float) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        # What one caller may hold once the calls or bytes are contended; a call larger than this is
        # refused for good (LIMIT_EXCEEDED), as it could be refused for ever as over its share.
        self.share = max_bytes // 4
        self.call_share = max(1, limit // 4)
        self.retry_after_seconds = retry_after_seconds
        self.active = 0
        self.bytes = 0
        self.rejected = 0
        self.on_rejected: Callable[[str], None] = _ignore
        self._kept_calls = max(1, limit // 8)
        self._kept_bytes = max_bytes // 8
        # Per caller holding any: its calls, and the bytes they hold.
        self._calls: dict[str, int] = {}
        self._bytes: dict[str, int] = {}

    def admit(self, size: int, caller: Callable[[], str] | None = None, *, coming: int = 0) -> AdmittedCall:
        """Count a call of `size` request bytes in until it is released (the returned context exits,
        or `AdmittedCall.release`); or refuse it. `caller()` says whose call it is.

        `coming`: bytes the call declares it will send later (a REST body not yet read). They must
        fit now, but are counted only as they arrive (`AdmittedCall.charge`): a body that never comes
        holds nothing (two heads declaring 64 MiB each, then silence, held every byte in flight).
        """
        if self.active >= self.limit or self.bytes + size + coming > self.max_bytes:
            raise self._refusal(OVERLOADED)
        who = None if caller is None else caller()
        if who is not None and not self._may_start(who, size + coming):
            raise self._refusal(CALLER_SHARE)
        admitted = AdmittedCall(self, who)
        self.active += 1
        if who is not None:
            self._calls[who] = self._calls.get(who, 0) + 1
        admitted.hold(size)
        return admitted

    def _may_start(self, who: str, size: int) -> bool:
        calls = self._calls.get(who, 0)
        if not calls:
            return True
        if (
            self.active >= self.limit - self._kept_calls
            or self.bytes + size > self.max_bytes - self._kept_bytes
        ):
            return False
        if 2 * self.active >= self.limit or 2 * self.bytes >= self.max_bytes:
            return calls < self.call_share and self._bytes.get(who, 0) <= self.share // 2
        return True

    def _may_grow(self, who: str, size: int) -> bool:
        """Whether `who`'s call may hold `size` more bytes (see the class's shares). Into the room kept
        for callers holding nothing, only the call of a caller holding no other, and a quarter of
        that room at most: else four callers' single bodies, each within its share, held it all."""
        held = self._bytes.get(who, 0) + size
        if self.bytes + size > self.max_bytes - self._kept_bytes and (
            self._calls[who] > 1 or held > self._kept_bytes // 4
        ):
            return False
        return 2 * (self.bytes + size) < self.max_bytes or held <= self.share

    def _add_bytes(self, size: int, who: str | None) -> None:
        self.bytes += size
        if who is not None:
            left = self._bytes.pop(who, 0) + size
            if left:
                self._bytes[who] = left

    def _release(self, size: int, who: str | None) -> None:
        self.active -= 1
        self._add_bytes(-size, who)
        if who is not None:
            left = self._calls[who] - 1
            if left:
                self._calls[who] = left
            else:
                del self._calls[who]

    def _refusal(self, cause: str, who: str | None = None, growing: int = 0) -> ResourceExhausted:
        """`growing`: the bytes a call of `who` was refused (its reply's, its body's): the message
        says what its caller's calls hold with them (it said only how many calls were in flight,
        where a reply of 66 MB was what did not fit: an independent attacker)."""
        self.rejected += 1
        self.on_rejected(cause)
        share = "their share of what is left"
        if who is not None and growing:
            held = self._bytes.get(who, 0)
            share = f"{held:,} bytes, and {growing:,} more for this call are past {share}"
        return overloaded(
            f"{self.active} calls in flight with {self.bytes:,} bytes of requests and replies "
            f"(limits {self.limit:,} calls and {self.max_bytes:,} bytes)",
            share,
            queue=self.name,
            limit=self.limit,
            cause=cause,
            retry_after_seconds=self.retry_after_seconds,
        )


class AdmittedCall:
    """One call's place in a `CallLimit`: the bytes it holds, and whose call it is."""

    __slots__ = ("_limit", "_released", "_size", "_who")

    def __init__(self, limit: CallLimit, who: str | None) -> None:
        self._limit = limit
        self._who = who
        self._size = 0
        self._released = False

    def __enter__(self) -> AdmittedCall:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """The call is over: its calls and bytes leave the limit (once, however often called)."""
        if not self._released:
            self._released = True
            self._limit._release(self._size, self._who)

    def charge(self, size: int) -> None:
        """Count `size` more bytes this call holds until it is released: its request's as they
        arrive (and what decoding them takes), its reply's until it is sent. Refuse the call when
        they do not fit, or not in its caller's share: a caller's few large JSON bodies took every
        byte in flight (others got 429), and a client that never reads its replies holds them in the
        server's memory."""
        limit = self._limit
        if limit.bytes + size > limit.max_bytes:
            raise limit._refusal(OVERLOADED)
        if self._who is not None and not limit._may_grow(self._who, size):
            raise limit._refusal(CALLER_SHARE, self._who, size)
        self.hold(size)

    def hold(self, size: int) -> None:
        """Count `size` more bytes this call holds."""
        if not self._released:
            self._size += size
            self._limit._add_bytes(size, self._who)


class MemoryBudget:
    """Bytes of working memory shared by the numeric calls computing at once (`numeric_memory_bytes`),
    shared fairly between callers.

    A call reserves its estimate (sizing.py): at once when it fits and nobody waits, else it waits
    in its caller's queue, first come first served there. Freed memory goes to the waiting caller
    holding the fewest bytes, then to the one served longest ago, whose first call waits until it
    fits (no call is passed over for ever). One queue for all had a caller's small call wait behind
    another's queue of large ones (a 50k-point Evaluate took 2.7 s instead of 14 ms behind ten
    258 MB Hessians). The estimate is at most `max_working_bytes`, which is at most the budget, so
    every call fits alone. Waiting is bounded by the calls in flight, each of bounded work.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.reserved = 0
        # Callers holding or awaiting memory only: the maps stay as small as the calls in flight.
        self._held: dict[str, int] = {}
        self._queues: dict[str, collections.deque[tuple[int, asyncio.Future[None]]]] = {}
        self._served: dict[str, int] = {}
        self._turns = itertools.count()

    async def take(self, size: int, caller: str | None = None) -> Callable[[], None]:
        """Wait until `size` bytes fit and it is the caller's turn, and take them; return the function
        that gives them back (to be called once, when the work that uses them is done, which may
        outlive the task that asked). The caller is `deadlines.current_caller()` unless given."""
        who = deadlines.current_caller() if caller is None else caller
        size = min(size, self.total)
        if size <= 0:
            # Nothing to hold (a call at one point): a caller's held bytes must be the sum of calls
            # holding some, or the first of its zero-byte calls to end forgot the caller while the
            # others still held (a KeyError at each of theirs: an independent attacker).
            return _nothing_held
        if self._queues or self.reserved + size > self.total:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (size, waiter)
            self._queues.setdefault(who, collections.deque()).append(entry)
            self._grant()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._free(who, size)  # granted as it was cancelled: pass it on
                else:
                    self._leave(who, entry)
                    self._grant()
                raise
        else:
            self._reserve(who, size)
        return _once(lambda: self._free(who, size))

    def _reserve(self, who: str, size: int) -> None:
        self.reserved += size
        self._held[who] = self._held.get(who, 0) + size
        self._served[who] = next(self._turns)

    def _free(self, who: str, size: int) -> None:
        self.reserved -= size
        held = self._held[who] - size
        if held:
            self._held[who] = held
        else:
            del self._held[who]
            self._forget(who)
        self._grant()

    def _grant(self) -> None:
        while self._queues:
            who = min(
                self._queues, key=lambda caller: (self._held.get(caller, 0), self._served.get(caller, -1))
            )
            size, waiter = entry = self._queues[who][0]
            if waiter.done():  # cancelled, its task not yet told: it leaves the queue here
                self._leave(who, entry)
                continue
            if self.reserved + size > self.total:
                return
            self._leave(who, entry)
            self._reserve(who, size)
            waiter.set_result(None)

    def _leave(self, who: str, entry: tuple[int, asyncio.Future[None]]) -> None:
        queue = self._queues.get(who)
        if queue is not None and entry in queue:
            queue.remove(entry)
            if not queue:
                del self._queues[who]
                self._forget(who)

    def _forget(self, who: str) -> None:
        if who not in self._held and who not in self._queues:
            self._served.pop(who, None)


class BoundedExecutor:
    """Any executor behind an `Admission`: for the numeric thread pool, and symbolic threads."""

    def __init__(self, inner: Executor, admission: Admission) -> None:
        self._inner = inner
        self.admission = admission

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` in one of the admission's slots, held until `fn` returns: a call cancelled
        meanwhile (its deadline, its client gone) stops waiting, but its thread computes on, and
        the slot stays taken until it is done (given back at cancellation, one caller with 0.5 s
        deadlines kept every numeric thread busy while holding none)."""
        return await self.run_holding(_nothing_held, fn, *args, **kwargs)

    async def run_holding(
        self, held: Callable[[], None], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run`, `held` called as the slot is given back (HoldingExecutor)."""
        try:
            give_back_slot = await self.admission.take(None, describe(fn))
        except BaseException:
            held()
            raise

        def give_back() -> None:
            give_back_slot()
            held()

        try:
            work = asyncio.ensure_future(self._inner.run(fn, *args, **kwargs))
        except BaseException:
            give_back()
            raise
        work.add_done_callback(lambda done: _finished(done, give_back))
        try:
            return await asyncio.shield(work)
        finally:
            # Its error, raised through this frame, holds the frame in its traceback: with the task
            # in a local, a cycle that kept each REST body refused during numeric work (2.7 MB)
            # until the cyclic collector ran (an independent tester).
            del work

    async def close(self) -> None:
        await self._inner.close()


def _once(give_back: Callable[[], None]) -> Callable[[], None]:
    """`give_back` as a function that acts on its first call only, whoever calls it."""
    held = [True]

    def once() -> None:
        if held:
            held.clear()
            give_back()

    return once


def _nothing_held() -> None:
    pass


def _finished(work: asyncio.Future[Any], give_back: Callable[[], None]) -> None:
    give_back()
    if not work.cancelled():
        work.exception()  # retrieved: the failure of work nobody awaits any more is nobody's to report


_DESCRIPTIONS = {
    "parse_canonical": "parsing",
    "derive_parsed": "differentiation",
    "derive_extras": "the steps, check and code asked for",
    "latex": "printing LaTeX",
    "compile_function": "compiling the expression",
    "compile_gradient": "differentiating and compiling the gradient",
    "compile_jacobian": "differentiating and compiling the Jacobian",
    "derive_implicit": "implicit differentiation",
    "derive_implicit_extras": "the steps, check and code asked for",
    "expand_series": "expanding the series",
    "readable": "printing the expression",
    "evaluate_pointwise": "evaluating special functions point by point (mpmath)",
}


def describe(fn: Callable[..., Any]) -> str:
    """What the caller is told `fn` was doing (never our function's name)."""
    return _DESCRIPTIONS.get(getattr(fn, "__name__", ""), "the computation")
