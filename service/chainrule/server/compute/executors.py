"""Where engine work runs: the one interface the API layer awaits, whatever runs the work behind it.

Symbolic work (parse, differentiate, simplify, print) and numeric work (compile, evaluate) are sent to
separate executors: the symbolic workers (pool.py, killable processes) or, with
`CHAINRULE_SYMBOLIC_WORKERS=0`, a bounded thread pool; numeric work always runs on a bounded thread
pool (numpy releases the GIL). `Admission` bounds each one's concurrency and queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from chainrule.engine.errors import ResourceExhausted
from chainrule.server.compute import deadlines

P = ParamSpec("P")
T = TypeVar("T")


class Executor(Protocol):
    """Runs a synchronous function off the event loop and awaits its result."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def close(self) -> None: ...


class ThreadExecutor:
    """A bounded thread pool; numpy and most of sympy's C paths release the GIL often enough."""

    def __init__(self, threads: int, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        # Carry the caller's context (request id for logs) into the pool's thread.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class InlineExecutor:
    """Runs work on the caller's thread: for the CLI and for tests of the API layer alone."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return fn(*args, **kwargs)

    async def close(self) -> None:
        return None


# --- admission ------------------------------------------------------------------------------------


class Admission:
    """At most `concurrency` tasks at once and `queue` more waiting; beyond, RESOURCE_EXHAUSTED."""

    def __init__(self, name: str, concurrency: int, queue: int, retry_after_seconds: float) -> None:
        self.name = name
        self.concurrency = concurrency
        self.queue = queue
        self.retry_after_seconds = retry_after_seconds
        self._semaphore = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.rejected = 0

    @contextlib.asynccontextmanager
    async def slot(self, budget: deadlines.Budget | None, what: str) -> AsyncIterator[None]:
        """Hold one of the slots; wait in the bounded queue at most until `budget` runs out."""
        if self._semaphore.locked() and self.waiting >= self.queue:
            self.rejected += 1
            raise ResourceExhausted(
                f"the server is busy: {self.concurrency} {self.name} tasks running and "
                f"{self.waiting} queued (the limit); retry after {self.retry_after_seconds:g} s",
                reason="OVERLOADED",
                metadata={"queue": self.name, "limit": str(self.queue)},
                retry_after_seconds=self.retry_after_seconds,
            )
        self.waiting += 1
        try:
            async with asyncio.timeout(None if budget is None else budget.seconds):
                await self._semaphore.acquire()
        except TimeoutError:
            assert budget is not None
            raise budget.exceeded(f"{what} (waiting for a free {self.name} slot)") from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()


class BoundedExecutor:
    """Any executor behind an `Admission`: for the numeric thread pool, and symbolic threads."""

    def __init__(self, inner: Executor, admission: Admission) -> None:
        self._inner = inner
        self.admission = admission

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self.admission.slot(None, describe(fn)):
            return await self._inner.run(fn, *args, **kwargs)

    async def close(self) -> None:
        await self._inner.close()


def describe(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "work")
    return {
        "parse_canonical": "parsing",
        "derive_parsed": "differentiation",
        "latex": "printing LaTeX",
    }.get(name, name)
