"""lanes.RecentlyMarked: who was marked recently, for a while, in bounded memory."""

from __future__ import annotations

from chainrule.server.compute.lanes import RecentlyMarked


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_is_slow_for_a_while_after_overrunning() -> None:
    clock = Clock()
    slow = RecentlyMarked(10.0, clock=clock)
    slow.mark("127.0.0.2")
    assert "127.0.0.2" in slow and "127.0.0.3" not in slow
    clock.now += 9.9
    assert "127.0.0.2" in slow
    slow.mark("127.0.0.2")  # overrunning again starts the while again
    clock.now += 9.9
    assert "127.0.0.2" in slow
    clock.now += 0.2
    assert "127.0.0.2" not in slow


def test_nobody_in_particular_is_never_marked() -> None:
    slow = RecentlyMarked(10.0)
    slow.mark("")
    assert "" not in slow


def test_many_callers_cost_bounded_memory_the_least_recently_slow_forgotten() -> None:
    slow = RecentlyMarked(10.0, max_callers=3)
    for address in ("a", "b", "c"):
        slow.mark(address)
    slow.mark("a")
    slow.mark("d")
    assert [address in slow for address in "abcd"] == [True, False, True, True]
