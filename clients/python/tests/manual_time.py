"""Time that moves only when a client waits between attempts: retry tests with no wall clock.

`ClockedClient` and `ClockedAsyncClient` are the real clients with the clock and the pause between
attempts replaced, so a test can say how long the client waited and what deadline each attempt
carried, exactly, however loaded the machine is.
"""

from __future__ import annotations

import functools

from chainrule.client import AsyncClient, Client


class ManualClock:
    """Starts at 0 and advances by each wait; records the waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class _ManualTime:
    """What both clocked clients share: their own `ManualClock`, read as the client's clock."""

    @functools.cached_property
    def clock(self) -> ManualClock:
        return ManualClock()

    def _now(self) -> float:
        return self.clock.now


class ClockedClient(_ManualTime, Client):
    """A `Client` on a `ManualClock` (`client.clock`)."""

    def _wait(self, seconds: float) -> None:
        self.clock.wait(seconds)


class ClockedAsyncClient(_ManualTime, AsyncClient):
    """An `AsyncClient` on a `ManualClock` (`client.clock`)."""

    async def _wait(self, seconds: float) -> None:
        self.clock.wait(seconds)
