"""Admission: bounded concurrency and queue, shared fairly between callers; the call limit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading

import pytest

from chainrule.engine.errors import DeadlineExceeded, ResourceExhausted
from chainrule.server.compute import deadlines
from chainrule.server.compute.executors import (
    CALLER_SHARE,
    Admission,
    BoundedExecutor,
    CallLimit,
    MemoryBudget,
    ThreadExecutor,
)
from tests.conftest import held_after_failing


class Holder:
    """A task holding a slot of `admission` for `caller` until released."""

    def __init__(self, admission: Admission, caller: str) -> None:
        self.caller = caller
        self.admitted = asyncio.Event()
        self.release = asyncio.Event()
        self.task = asyncio.ensure_future(self._hold(admission))

    async def _hold(self, admission: Admission) -> None:
        async with admission.slot(None, "work", caller=self.caller):
            self.admitted.set()
            await self.release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_caller_cannot_hold_every_slot() -> None:
    admission = Admission("symbolic", concurrency=2, queue=8, retry_after_seconds=1.0)
    first, second = Holder(admission, "attacker"), Holder(admission, "attacker")
    await settle()
    assert first.admitted.is_set() and not second.admitted.is_set()  # all but one: 1 of 2
    other = Holder(admission, "someone else")
    await settle()
    assert other.admitted.is_set()
    for holder in (first, second, other):
        holder.release.set()
    await asyncio.gather(first.task, second.task, other.task)
    assert admission.running == admission.waiting == 0


async def test_a_freed_slot_goes_to_the_caller_holding_fewest() -> None:
    admission = Admission("numeric", concurrency=3, queue=8, retry_after_seconds=1.0, per_caller=3)
    a1, a2, b1 = Holder(admission, "a"), Holder(admission, "a"), Holder(admission, "b")
    await settle()
    a3, b2 = Holder(admission, "a"), Holder(admission, "b")  # a queued first
    await settle()
    assert admission.waiting == 2
    b1.release.set()
    await settle()
    assert b2.admitted.is_set() and not a3.admitted.is_set()  # b held none, a holds 2
    for holder in (a1, a2, a3, b2):
        holder.release.set()
    await asyncio.gather(a1.task, a2.task, b1.task, a3.task, b2.task)


async def test_callers_new_to_the_queue_take_turns_in_the_order_they_came_never_by_name() -> None:
    # Ranked by name, five addresses' stalled gRPC messages (each preempted, forgotten, and queued
    # again as new) kept health checks from an address sorting after theirs waiting for good.
    admission = Admission("receiving", concurrency=1, queue=8, retry_after_seconds=1.0)
    running = Holder(admission, "m")
    await settle()
    first, second = Holder(admission, "address:127.0.0.9"), Holder(admission, "address:127.0.0.10")
    await settle()
    running.release.set()
    await settle()
    assert first.admitted.is_set() and not second.admitted.is_set()  # "...10" sorts before "...9"
    for holder in (first, second):
        holder.release.set()
    await asyncio.gather(running.task, first.task, second.task)


async def test_deferred_callers_wait_behind_everyone_holding_as_many() -> None:
    # receiving.py defers callers whose messages stalled lately: each such call, preempted and
    # queued again, came back as new and went before a call from elsewhere that came after it, so
    # that call waited N/4 x 0.4 s behind N stalling addresses (2.5 s at 24: an independent tester).
    admission = Admission("receiving", concurrency=1, queue=8, retry_after_seconds=1.0)
    admission.deferred = {"stalling"}.__contains__
    running = Holder(admission, "m")
    await settle()
    stalling, later = Holder(admission, "stalling"), Holder(admission, "someone else")
    await settle()
    running.release.set()
    await settle()
    assert later.admitted.is_set() and not stalling.admitted.is_set()
    later.release.set()
    await settle()
    assert stalling.admitted.is_set()  # deferred, never refused
    stalling.release.set()
    await asyncio.gather(running.task, stalling.task, later.task)


async def test_preferred_callers_go_before_callers_new_to_the_queue() -> None:
    # pool.py prefers callers whose last task was cheap: 60 new addresses' full-budget calls, each
    # new to the queue and so before everyone served, had a cheap caller's cold calls wait behind
    # them past their 5 s (make bench, many-addresses, 2026-12-06).
    admission = Admission("symbolic", concurrency=1, queue=8, retry_after_seconds=1.0)
    admission.preferred = {"cheap"}.__contains__
    running = Holder(admission, "m")
    await settle()
    new = [Holder(admission, f"address:127.0.2.{k}") for k in range(3)]
    await settle()
    cheap = Holder(admission, "cheap")  # came last
    await settle()
    running.release.set()
    await settle()
    assert cheap.admitted.is_set() and not any(holder.admitted.is_set() for holder in new)
    cheap.release.set()
    await settle()
    assert new[0].admitted.is_set()  # then the others, in the order they came
    for holder in new:
        holder.release.set()
        await settle()
    await asyncio.gather(running.task, cheap.task, *(holder.task for holder in new))


async def test_deferred_callers_together_hold_one_callers_share_when_counted_as_one() -> None:
    # The symbolic workers defer callers whose tasks lately cost a worker: however many addresses
    # they come from, they hold all but one worker together, and the last serves everyone else.
    costly = {f"costly {index}" for index in range(3)}
    admission = Admission("symbolic", concurrency=3, queue=8, retry_after_seconds=1.0, deferred_as_one=True)
    admission.deferred = costly.__contains__
    first, second, third = (Holder(admission, who) for who in sorted(costly))
    await settle()
    assert first.admitted.is_set() and second.admitted.is_set() and not third.admitted.is_set()
    assert admission.running == 2 and admission.waiting == 1
    cheap = Holder(admission, "someone else")
    await settle()
    assert cheap.admitted.is_set()  # the slot the deferred callers left
    cheap.release.set()
    await settle()
    assert not third.admitted.is_set()  # a free slot, but the deferred callers hold their share
    first.release.set()
    await settle()
    assert third.admitted.is_set()
    costly.clear()  # their marks ran out: each is a caller of its own again
    later = [Holder(admission, "costly 0"), Holder(admission, "costly 1")]
    await settle()
    assert later[0].admitted.is_set() and not later[1].admitted.is_set()  # 3 running: the limit
    for holder in (second, third, *later):
        holder.release.set()
        await settle()
    assert later[1].admitted.is_set()
    await asyncio.gather(*(holder.task for holder in (first, second, third, cheap, *later)))
    assert admission.running == 0


async def test_a_deferred_caller_stays_behind_once_its_mark_runs_out_in_the_queue() -> None:
    # Past 100 addresses stalling a message each, a stalled call waited longer than its mark lasts
    # (10 s) and then, as a caller new to the queue, went before every other caller (15 s each).
    stalled = {"stalling"}
    admission = Admission("receiving", concurrency=1, queue=8, retry_after_seconds=1.0)
    admission.deferred = stalled.__contains__
    running = Holder(admission, "m")
    await settle()
    stalling = Holder(admission, "stalling")
    await settle()
    stalled.clear()  # its mark ran out while it waited
    later = Holder(admission, "someone else")
    await settle()
    running.release.set()
    await settle()
    assert later.admitted.is_set() and not stalling.admitted.is_set()
    for holder in (later, stalling):
        holder.release.set()
        await settle()
    await asyncio.gather(running.task, stalling.task, later.task)


async def test_a_queue_full_of_deferred_callers_makes_room_for_another() -> None:
    # 80 addresses each keeping one stalled message queued filled it, and every other caller's calls
    # (gRPC health too) were refused at once.
    stalled = {f"stalling {index}" for index in range(3)}
    admission = Admission("receiving", concurrency=1, queue=3, retry_after_seconds=1.0)
    admission.deferred = stalled.__contains__
    running = Holder(admission, "m")
    await settle()
    stalling = [Holder(admission, caller) for caller in sorted(stalled)]
    await settle()
    assert admission.waiting == 3
    later = Holder(admission, "someone else")
    await settle()
    assert admission.waiting == 3
    refused = stalling[-1].task  # the deferred caller queued last makes room
    with pytest.raises(ResourceExhausted):
        await refused
    another_stalling = Holder(admission, "stalling 0")  # a deferred newcomer is refused
    await settle()
    with pytest.raises(ResourceExhausted):
        await another_stalling.task
    running.release.set()
    await settle()
    assert later.admitted.is_set()
    for holder in (later, *stalling[:-1]):
        holder.release.set()
        await settle()
    await asyncio.gather(running.task, later.task, *(holder.task for holder in stalling[:-1]))


async def test_a_full_queue_sheds_the_caller_with_most_queued() -> None:
    admission = Admission("symbolic", concurrency=1, queue=3, retry_after_seconds=2.0)
    running = Holder(admission, "a")
    queued = [Holder(admission, "a") for _ in range(3)]
    await settle()
    assert admission.waiting == 3
    newcomer = Holder(admission, "b")
    await settle()
    with pytest.raises(ResourceExhausted) as caught:
        await queued[-1].task  # the newest of the largest holder's queue made room
    assert caught.value.retry_after_seconds == 2.0 and caught.value.metadata["cause"] == "caller_share"
    assert admission.waiting == 3
    with pytest.raises(ResourceExhausted) as refused:
        await Holder(admission, "a").task  # a, already the largest holder, is refused at once
    assert refused.value.metadata["cause"] == "caller_share"
    assert admission.rejections == {"overloaded": 0, "caller_share": 2}
    running.release.set()
    await settle()
    assert newcomer.admitted.is_set()  # b was never served: its turn before a's queue
    for holder in (*queued[:-1], newcomer):
        holder.release.set()
    await asyncio.gather(running.task, *(h.task for h in queued[:-1]), newcomer.task)


async def test_an_even_queue_refuses_the_newcomer_as_overload() -> None:
    admission = Admission("numeric", concurrency=1, queue=1, retry_after_seconds=1.0)
    running, queued = Holder(admission, "a"), Holder(admission, "b")
    reasons: list[str] = []
    admission.on_rejected = reasons.append
    await settle()
    with pytest.raises(ResourceExhausted, match="busy"):
        await Holder(admission, "c").task
    assert reasons == ["overloaded"]
    running.release.set()
    queued.release.set()
    await asyncio.gather(running.task, queued.task)


async def test_a_waiter_whose_budget_runs_out_leaves_the_queue() -> None:
    admission = Admission("symbolic", concurrency=1, queue=4, retry_after_seconds=1.0)
    running = Holder(admission, "a")
    await settle()
    with (
        deadlines.request_scope(0.05, lambda: "b"),
        pytest.raises(DeadlineExceeded, match="waiting for a free symbolic slot"),
    ):
        async with admission.slot(deadlines.budget(10.0), "parsing"):
            pass
    assert admission.waiting == 0
    running.release.set()
    await running.task
    assert admission.running == 0


async def test_a_wait_out_of_time_leaves_its_waiter_no_reference_cycle() -> None:
    # Single-flight fills run in tasks that end with this very error: raised in `except
    # TimeoutError` it kept the Timeout (and so the task) in its context, and each REST body out of
    # time (2.7 MB) lived until the cyclic collector ran (a flaky garbage test found it).
    admission = Admission("symbolic", concurrency=1, queue=4, retry_after_seconds=1.0)
    running = Holder(admission, "a")
    await settle()

    async def wait(request: object) -> None:
        with deadlines.request_scope(0.02, lambda: "b"):
            async with admission.slot(deadlines.budget(10.0), "parsing"):
                pass

    assert not await held_after_failing(wait)
    running.release.set()
    await running.task


async def test_a_waiter_evicted_from_a_full_queue_leaves_it_no_reference_cycle() -> None:
    # The refusal is the waiter future's exception, raised through the frame that held the future:
    # each evicted REST body (2.7 MB) lived until the cyclic collector ran (an independent tester).
    admission = Admission("symbolic", concurrency=1, queue=2, retry_after_seconds=1.0)
    running, queued = Holder(admission, "a"), Holder(admission, "b")
    newcomers: list[Holder] = []

    async def evicted(request: object) -> None:
        asyncio.get_running_loop().call_soon(lambda: newcomers.append(Holder(admission, "c")))
        async with admission.slot(None, "parsing", caller="b"):
            pass

    await settle()
    assert not await held_after_failing(evicted)
    assert admission.rejections[CALLER_SHARE] == 1
    for holder in (running, queued, *newcomers):
        holder.release.set()
    await asyncio.gather(running.task, queued.task, *(holder.task for holder in newcomers))


@pytest.mark.parametrize("cancel_first", [True, False])
async def test_a_slot_freed_as_a_waiter_is_cancelled_goes_to_the_next(cancel_first: bool) -> None:
    # The waiter's future is cancelled at once, its task learns it a turn later: a slot freed in
    # between must skip it, not fail on it.
    admission = Admission("symbolic", concurrency=1, queue=4, retry_after_seconds=1.0)
    running, cancelled, last = Holder(admission, "a"), Holder(admission, "b"), Holder(admission, "c")
    await settle()
    if cancel_first:
        cancelled.task.cancel()
        running.release.set()
    else:
        running.release.set()
        cancelled.task.cancel()
    await settle()
    assert last.admitted.is_set() or cancelled.admitted.is_set()
    for holder in (cancelled, last):
        holder.release.set()
    await asyncio.gather(running.task, cancelled.task, last.task, return_exceptions=True)
    assert admission.running == admission.waiting == 0
    assert admission._queues == {} and admission._held == {} and admission._served == {}


async def test_the_caller_comes_from_the_request_scope() -> None:
    admission = Admission("symbolic", concurrency=2, queue=4, retry_after_seconds=1.0)
    seen: list[str] = []

    def caller() -> str:
        seen.append("asked")
        return "token:0"

    with deadlines.request_scope(None, caller):
        async with admission.slot(None, "work"):
            # Another caller can take the second slot; this one could not.
            other = Holder(admission, "someone else")
            await settle()
            assert other.admitted.is_set()
            other.release.set()
            await other.task
    assert seen == ["asked"]


def test_the_call_limit_refuses_beyond_it_with_a_retry_delay() -> None:
    calls = CallLimit(2, max_bytes=1_000, retry_after_seconds=0.5)
    reasons: list[str] = []
    calls.on_rejected = reasons.append
    with calls.admit(10), calls.admit(10):
        with pytest.raises(ResourceExhausted) as caught:
            calls.admit(10)
        assert caught.value.retry_after_seconds == 0.5 and caught.value.reason == "OVERLOADED"
    assert calls.active == calls.bytes == 0 and reasons == ["overloaded"]


def test_bytes_still_to_come_must_fit_but_count_only_as_they_arrive() -> None:
    calls = CallLimit(10, max_bytes=1_000, retry_after_seconds=1.0)
    with calls.admit(0, coming=800) as first:
        assert calls.bytes == 0  # a body that never comes holds nothing
        with calls.admit(0, coming=800) as second:
            first.charge(500)
            with pytest.raises(ResourceExhausted, match="bytes of requests"):
                second.charge(600)
            with pytest.raises(ResourceExhausted):
                calls.admit(0, coming=600)
        assert calls.bytes == 500
    assert calls.bytes == 0 and calls.active == 0


def test_the_call_limit_counts_request_bytes() -> None:
    calls = CallLimit(10, max_bytes=1_000, retry_after_seconds=1.0)
    with calls.admit(600):
        with pytest.raises(ResourceExhausted, match="bytes of requests"):
            calls.admit(500)
        with calls.admit(400):
            assert calls.bytes == 1_000
    assert calls.bytes == 0


def test_a_reply_counts_until_the_call_is_released_and_must_fit() -> None:
    # A reply is held until grpc has delivered it: a client that never reads keeps it in memory.
    calls = CallLimit(10, max_bytes=1_000, retry_after_seconds=1.0)
    first = calls.admit(100)
    first.charge(300)
    assert calls.bytes == 400 and calls.active == 1
    with calls.admit(100) as second, pytest.raises(ResourceExhausted, match="bytes of requests and replies"):
        second.charge(700)
    first.release()
    first.release()  # once only
    assert calls.bytes == calls.active == 0


def test_once_bytes_are_contended_a_callers_replies_stay_within_its_share() -> None:
    # One caller's unread replies leave others room: past half the bytes, each caller holds at most
    # a quarter, and starts calls only while it holds an eighth or less. Its bytes count from its
    # first call: those it took before anything was contended are its too.
    calls = CallLimit(100, max_bytes=1_000, retry_after_seconds=1.0)
    greedy = [calls.admit(0, lambda: "greedy") for _ in range(8)]
    for call in greedy[:3]:
        call.charge(120)  # 360 bytes, uncontended
    with calls.admit(10, lambda: "other") as other:
        other.charge(200)  # 570: contended, and within the other caller's share (250)
        with pytest.raises(ResourceExhausted) as caught:
            greedy[3].charge(120)  # the greedy caller's 360 is already past its share
        assert caught.value.metadata["cause"] == "caller_share"
        assert "your calls hold 360 bytes, and 120 more for this call are past their share" in str(
            caught.value
        )
        with pytest.raises(ResourceExhausted):  # holding more than an eighth, it starts no more calls
            calls.admit(0, lambda: "greedy")
    for call in greedy:
        call.release()
    assert calls.bytes == calls.active == 0


def test_once_bytes_are_contended_a_callers_request_bodies_stay_within_its_share() -> None:
    # Bodies admitted while there was room, arriving later, must not take every byte from others.
    calls = CallLimit(100, max_bytes=1_000, retry_after_seconds=1.0)
    first, second = (calls.admit(0, lambda: "greedy", coming=400) for _ in range(2))
    first.charge(240)
    second.charge(200)  # 440, uncontended
    with pytest.raises(ResourceExhausted) as caught:
        second.charge(100)  # 540: contended, and past the greedy caller's share
    assert caught.value.metadata["cause"] == "caller_share"
    with calls.admit(0, lambda: "other", coming=200) as other:
        other.charge(200)  # another caller still fits
    first.release()
    second.release()
    assert calls.bytes == calls.active == 0


def test_the_last_eighth_of_the_bytes_is_kept_for_callers_holding_nothing() -> None:
    # Four callers' single bodies, each within its share (250), held every byte; a caller holding
    # nothing still finds room for a small call.
    calls = CallLimit(100, max_bytes=1_000, retry_after_seconds=1.0)
    bodies = [calls.admit(0, functools.partial(str, name), coming=250) for name in "abcd"]
    for body in bodies[:3]:
        body.charge(250)
    bodies[3].charge(125)  # up to the kept eighth (875)
    with pytest.raises(ResourceExhausted) as caught:
        bodies[3].charge(100)  # into it: a quarter of it at most
    assert caught.value.metadata["cause"] == "caller_share"
    with calls.admit(10, lambda: "bystander") as small:
        small.charge(10)
    for body in bodies:
        body.release()
    assert calls.bytes == calls.active == 0 and not calls._calls and not calls._bytes


async def test_the_memory_budget_lets_calls_in_as_they_fit_first_come_first_served() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []
    release = {name: asyncio.Event() for name in ("big", "second", "third")}

    async def call(name: str, size: int) -> None:
        give_back = await budget.take(size)
        order.append(name)
        await release[name].wait()
        give_back()

    big = asyncio.ensure_future(call("big", 70))
    await settle()
    second, third = asyncio.ensure_future(call("second", 50)), asyncio.ensure_future(call("third", 10))
    await settle()
    assert order == ["big"]  # third would fit, but waits its turn behind second
    release["big"].set()
    await settle()
    assert order == ["big", "second", "third"] and budget.reserved == 60
    release["second"].set()
    release["third"].set()
    await asyncio.gather(big, second, third)
    assert budget.reserved == 0


async def test_calls_holding_no_memory_come_and_go_in_any_order() -> None:
    # Single-point Evaluates reserve 0 bytes: four at once from one caller, the first to end forgot
    # the caller while the others held, and each of theirs raised KeyError in a loop callback.
    budget = MemoryBudget(100)
    big = await budget.take(100, caller="other")
    give_backs = [await budget.take(0, caller="a") for _ in range(3)]  # nothing to wait for
    for give_back in (give_backs[1], give_backs[0], give_backs[2]):
        give_back()
    big()
    assert budget.reserved == 0 and await budget.take(100, caller="a") is not None


async def test_a_callers_queue_of_large_calls_does_not_hold_up_anothers_small_one() -> None:
    # One queue for all made another caller's small Evaluate wait behind a queue of large Hessians.
    budget = MemoryBudget(100)
    running = await budget.take(70, caller="greedy")
    queued = [asyncio.ensure_future(budget.take(50, caller="greedy")) for _ in range(3)]
    await settle()
    small = await asyncio.wait_for(budget.take(10, caller="other"), 1)  # fits: at once
    later = asyncio.ensure_future(budget.take(25, caller="other"))
    await settle()
    assert not later.done()  # it would fit only past the greedy caller's first: it waits
    running()
    await settle()
    # Freed memory goes to the caller holding the fewest bytes first: the greedy caller now holds
    # none, then "other" holds 10, then the greedy caller's next waits for room.
    assert later.done() and [call.done() for call in queued] == [True, False, False]
    small()
    (await later)()
    for call in queued:
        (await call)()
    assert budget.reserved == 0 and not budget._held and not budget._queues and not budget._served


async def test_memory_freed_as_a_waiter_is_cancelled_goes_to_the_next() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def call(name: str, size: int) -> None:
        give_back = await budget.take(size)
        order.append(name)
        await release.wait()
        give_back()

    holder = asyncio.ensure_future(call("holder", 100))
    await settle()
    cancelled, last = asyncio.ensure_future(call("cancelled", 60)), asyncio.ensure_future(call("last", 60))
    await settle()
    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, cancelled, last, return_exceptions=True)
    assert order == ["holder", "last"] and budget.reserved == 0


async def test_a_cancelled_wait_for_memory_gives_way() -> None:
    budget = MemoryBudget(100)
    held = await budget.take(90)
    waiting = asyncio.ensure_future(budget.take(50))
    await settle()
    waiting.cancel()
    await settle()
    other = await budget.take(10)
    assert budget.reserved == 100
    other()
    other()  # given back once only
    held()
    assert budget.reserved == 0


def test_past_half_the_calls_a_caller_holds_a_quarter_and_the_last_eighth_is_kept() -> None:
    # A caller's calls count from its first: those it made before anything was contended are its
    # too (two callers' early calls plus their shares held every call in flight).
    calls = CallLimit(8, max_bytes=10**6, retry_after_seconds=1.0)
    with contextlib.ExitStack() as held:
        for _ in range(4):  # uncontended
            held.enter_context(calls.admit(1, lambda: "flood"))
        with pytest.raises(ResourceExhausted) as refused:
            calls.admit(1, lambda: "flood")  # contended, and it holds more than a quarter of 8
        assert refused.value.metadata["cause"] == "caller_share"
        assert refused.value.retry_after_seconds == 1.0
        held.enter_context(calls.admit(1, lambda: "other"))  # the rest is the others'
        held.enter_context(calls.admit(1, lambda: "other"))
        held.enter_context(calls.admit(1, lambda: "third"))
        with pytest.raises(ResourceExhausted) as kept:
            calls.admit(1, lambda: "third")  # the last call is kept for a caller holding none
        assert kept.value.metadata["cause"] == "caller_share"
        held.enter_context(calls.admit(1, lambda: "fourth"))
        with pytest.raises(ResourceExhausted) as full:
            calls.admit(1, lambda: "fifth")
        assert full.value.metadata["cause"] == "overloaded"
    assert (calls.active, calls.bytes, calls._calls, calls._bytes) == (0, 0, {}, {})


async def test_a_cancelled_call_holds_its_thread_slot_until_its_work_ends() -> None:
    """A thread cannot be stopped: a call cancelled (its deadline, its client gone) keeps its slot
    while the work it started runs. Given back at cancellation, one caller with 0.5 s deadlines kept
    every numeric thread busy while holding none (tester round 5)."""
    admission = Admission("numeric", concurrency=2, queue=8, retry_after_seconds=1.0)
    executor = BoundedExecutor(ThreadExecutor(2, "test"), admission)
    release = threading.Event()
    call = asyncio.ensure_future(executor.run(release.wait, 10.0))
    await settle()
    assert admission.running == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert admission.running == 1  # the thread still works for it
    release.set()
    for _ in range(200):
        if admission.running == 0:
            break
        await asyncio.sleep(0.01)
    assert admission.running == 0
    await executor.close()


async def test_a_cancelled_call_holds_its_working_memory_until_its_work_ends() -> None:
    """The working memory a numeric call reserved is in use while its thread computes: given back
    at cancellation, calls with 0.3 s deadlines each reserving 268 MB raised peak Pss 70 MB past
    what the budget counted (tester round 5). Work that never started gives it back at once."""
    admission = Admission("numeric", concurrency=1, queue=8, retry_after_seconds=1.0)
    executor = BoundedExecutor(ThreadExecutor(1, "test"), admission)
    budget = MemoryBudget(100)
    release = threading.Event()
    running = asyncio.ensure_future(executor.run_holding(await budget.take(60), release.wait, 10.0))
    queued = asyncio.ensure_future(executor.run_holding(await budget.take(30), release.wait, 10.0))
    await settle()
    assert (admission.running, admission.waiting, budget.reserved) == (1, 1, 90)
    running.cancel()
    queued.cancel()
    await asyncio.gather(running, queued, return_exceptions=True)
    assert budget.reserved == 60  # the queued call's, never started, is back; the running one's is not
    release.set()
    for _ in range(200):
        if budget.reserved == 0:
            break
        await asyncio.sleep(0.01)
    assert (budget.reserved, admission.running) == (0, 0)
    await executor.close()
