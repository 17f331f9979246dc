"""Where engine work runs: the one interface the API layer awaits, so the pool behind it can change.

Symbolic work (parse, differentiate, simplify, print) and numeric work (compile, evaluate) are sent to
separate executors. Both start as bounded thread pools; the symbolic one is meant to become a pool of
killable worker processes without the callers changing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

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
        # Carry the caller's context (request id for logs) into the worker thread.
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
