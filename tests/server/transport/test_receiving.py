"""ReceiveSlots: how many gRPC request messages are read at once, shared fairly between callers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from chainrule.engine.errors import InvalidArgument, ResourceExhausted
from chainrule.server.transport import receiving as receiving_module
from chainrule.server.transport.receiving import ReceiveSlots


def slots(count: int = 2, waiting: int = 8, timeout: float = 5.0) -> ReceiveSlots:
    # The "context" of these calls is the caller's name itself.
    return ReceiveSlots(count, waiting, timeout, retry_after_seconds=1.0, caller_of=str)


class Message:
    """A message that has arrived once `arrive` is called."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.arrived = asyncio.Event()
        self.reading = False

    async def read(self) -> str:
        self.reading = True
        await self.arrived.wait()
        return self.text

    def arrive(self) -> None:
        self.arrived.set()


def started(receiving: ReceiveSlots, message: Message, caller: str) -> asyncio.Task[str]:
    return asyncio.ensure_future(receiving.receive(message.read, caller))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_messages_past_the_slots_wait_until_one_is_read() -> None:
    receiving = slots(2)
    messages = [Message(f"m{index}") for index in range(3)]
    tasks = [started(receiving, message, f"caller{index}") for index, message in enumerate(messages)]
    await settle()
    assert [message.reading for message in messages] == [True, True, False]
    assert (receiving.admission.running, receiving.admission.waiting) == (2, 1)
    messages[1].arrive()
    assert await tasks[1] == "m1"
    await settle()
    assert messages[2].reading
    for message in messages:
        message.arrive()
    assert await asyncio.gather(*tasks) == ["m0", "m1", "m2"]
    assert (receiving.admission.running, receiving.admission.waiting) == (0, 0)


async def test_one_caller_reads_in_half_the_slots_and_others_are_served() -> None:
    receiving = slots(4)
    flood = [Message(f"a{index}") for index in range(6)]
    flooding = [started(receiving, message, "attacker") for message in flood]
    await settle()
    assert sum(message.reading for message in flood) == 2, "half the slots, however many it sends"
    others = [Message("b"), Message("c")]
    served = [started(receiving, message, name) for message, name in zip(others, "bc", strict=True)]
    await settle()
    assert all(message.reading for message in others), "the free slots go to the other callers"
    for message in [*flood, *others]:
        message.arrive()
    await asyncio.gather(*flooding, *served)
    assert (receiving.admission.running, receiving.admission.waiting) == (0, 0)


async def test_waiting_is_bounded_and_a_full_queue_drops_the_largest_callers_newest() -> None:
    receiving = slots(1, waiting=4)
    tasks = [started(receiving, Message("held"), "someone")]
    tasks += [started(receiving, Message(f"q{index}"), "attacker") for index in range(4)]
    await settle()
    assert receiving.admission.waiting == 4
    newcomer = started(receiving, Message("x"), "other")
    await settle()
    with pytest.raises(ResourceExhausted) as dropped:
        await tasks[-1]
    assert dropped.value.metadata == {"queue": "receiving", "limit": "4", "cause": "caller_share"}
    assert dropped.value.retry_after_seconds == 1.0
    assert not newcomer.done(), "the other caller waits in the attacker's place"
    with pytest.raises(ResourceExhausted) as refused:
        await receiving.receive(Message("more").read, "attacker")
    assert refused.value.metadata["cause"] == "caller_share"
    for task in [*tasks, newcomer]:
        task.cancel()
    await asyncio.gather(*tasks, newcomer, return_exceptions=True)
    assert (receiving.admission.running, receiving.admission.waiting) == (0, 0)


async def test_a_message_that_stops_arriving_is_refused_and_frees_its_slot() -> None:
    receiving = slots(1, timeout=0.2)
    stalled = Message("never")
    with pytest.raises(InvalidArgument) as refused:
        await receiving.receive(stalled.read, "slow")
    assert refused.value.reason == "MESSAGE_TIMEOUT"
    assert "0.2 s" in str(refused.value)
    assert receiving.admission.running == 0
    quick = Message("quick")
    quick.arrive()
    assert await receiving.receive(quick.read, "next") == "quick"


async def test_a_call_that_cannot_start_reading_in_time_is_told_to_retry() -> None:
    receiving = slots(1, timeout=0.2)
    holder = started(receiving, Message("held"), "holder")
    await settle()
    with pytest.raises(ResourceExhausted) as refused:
        await receiving.receive(Message("waits").read, "waiter")
    assert refused.value.metadata["cause"] == "overloaded"
    assert receiving.admission.waiting == 0
    with pytest.raises(InvalidArgument):
        await holder


@pytest.mark.parametrize("granted_first", [False, True])
async def test_a_call_cancelled_while_waiting_leaves_nothing_behind(granted_first: bool) -> None:
    receiving = slots(1)
    holder = Message("held")
    holding = started(receiving, holder, "holder")
    waiting = started(receiving, Message("w"), "waiter")
    await settle()
    if granted_first:  # its turn came, and the call ended before it could read
        holder.arrive()
        await holding
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    holder.arrive()
    await asyncio.gather(holding, return_exceptions=True)
    assert (receiving.admission.running, receiving.admission.waiting) == (0, 0)
    assert receiving._reads == {} and receiving._waits == {} and not receiving._overdue


async def test_refusals_are_counted_by_cause() -> None:
    counted: list[str] = []
    receiving = slots(1, waiting=1, timeout=0.2)
    receiving.admission.on_rejected = counted.append
    holding = started(receiving, Message("held"), "a")
    waiting = started(receiving, Message("w"), "b")
    await settle()
    read: Callable[[], Awaitable[str]] = Message("c").read
    with pytest.raises(ResourceExhausted):  # b queued for as long as c would: c is refused
        await receiving.receive(read, "c")
    with pytest.raises(ResourceExhausted):  # b waited the whole timeout
        await waiting
    assert counted == ["overloaded", "overloaded"]
    holding.cancel()
    await asyncio.gather(holding, return_exceptions=True)


async def test_while_calls_wait_a_message_still_arriving_gives_its_slot_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two callers' stalled messages held both slots until the timeout (30 s): gRPC health and every
    # other caller's calls waited the while. The read begun longest ago gives way, one per waiter.
    monkeypatch.setattr(receiving_module, "PREEMPT_SECONDS", 0.1)
    receiving = slots(2, timeout=30.0)
    stalled = [started(receiving, Message("never"), name) for name in ("first", "second")]
    await asyncio.sleep(0.02)
    arrived = Message("health")
    arrived.arrive()
    assert await asyncio.wait_for(receiving.receive(arrived.read, "probe"), 1.0) == "health"
    with pytest.raises(ResourceExhausted) as refused:
        await stalled[0]
    assert refused.value.retry_after_seconds == 1.0 and "send each message at once" in str(refused.value)
    assert not stalled[1].done()  # one slot for the one waiter
    stalled[1].cancel()
    await asyncio.gather(stalled[1], return_exceptions=True)
    assert (receiving.admission.running, receiving.admission.waiting) == (0, 0)


async def test_a_waiter_at_its_share_takes_no_slot_from_another_callers_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One address's queue of stalled messages made every other caller's slow upload fail: a waiter
    # that could not take a freed slot (at its share) had it preempted all the same.
    monkeypatch.setattr(receiving_module, "PREEMPT_SECONDS", 0.05)
    receiving = slots(2, timeout=30.0)  # one slot a caller
    upload = Message("upload")
    uploading = started(receiving, upload, "victim")
    stalled = [started(receiving, Message("never"), "attacker") for _ in range(3)]
    await asyncio.sleep(0.3)
    assert not uploading.done() and receiving.admission.waiting == 2
    upload.arrive()
    assert await uploading == "upload"
    for task in stalled:
        task.cancel()
    await asyncio.gather(*stalled, return_exceptions=True)


async def test_the_read_of_the_caller_holding_more_gives_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiving_module, "PREEMPT_SECONDS", 0.05)
    receiving = slots(3, timeout=30.0)
    receiving.admission.per_caller = 2
    upload = Message("upload")
    uploading = started(receiving, upload, "victim")
    await asyncio.sleep(0.01)
    flooding = [started(receiving, Message("never"), "flood") for _ in range(2)]
    await asyncio.sleep(0.01)
    arrived = Message("probe")
    arrived.arrive()
    assert await asyncio.wait_for(receiving.receive(arrived.read, "probe"), 1.0) == "probe"
    assert not uploading.done()  # the victim holds one slot, the flood two: a flood read gave way
    assert sum(task.done() for task in flooding) == 1
    upload.arrive()
    assert await uploading == "upload"
    for task in flooding:
        task.cancel()
    await asyncio.gather(*flooding, return_exceptions=True)
