"""Callers marked for a while: whose work overran a fast lane, was costly, or was cheap lately."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable


class RecentlyMarked:
    """Who was marked in the last `seconds` (and not forgotten since), in bounded memory.

    Its first use: who overran a lane's allowance, so that their next work skips the lane. Parse has
    one worker and a call holds it up to its allowance before moving on: a caller who keeps a few
    slow texts in flight kept it busy, and every other caller's cold check waited behind one of them
    (17 -> 228 ms p50; tester round 5). Fair queueing cannot help a lane of one worker, since a call
    is not interrupted; sending the slow caller's next work straight to the symbolic workers (fair
    between callers, under the full budget) does. The symbolic pool marks who sends costly work and
    whose last task was cheap the same way (pool.py), and receiving.py whose messages stalled.
    Remembers `max_callers` at most, the least recently marked forgotten first, so that many
    addresses cost bounded memory.
    """

    def __init__(
        self, seconds: float, max_callers: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.max_callers = max_callers
        self._clock = clock
        self._until: collections.OrderedDict[str, float] = collections.OrderedDict()

    def mark(self, caller: str) -> None:
        if not caller:  # nobody in particular (outside a request): never send everyone elsewhere
            return
        self._until[caller] = self._clock() + self.seconds
        self._until.move_to_end(caller)
        while len(self._until) > self.max_callers:
            self._until.popitem(last=False)

    def forget(self, caller: str) -> None:
        self._until.pop(caller, None)

    def __contains__(self, caller: str) -> bool:
        until = self._until.get(caller)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[caller]
            return False
        return True
