"""A slice of the INTERNAL-error adversary (`extremes.py`), through symbolic workers as in production.

A fixed list of expressions (seeded), each given everything a request can ask for, in killable
workers under a budget and a memory limit: every one must end as a value or a chainrule error
(NOT_COMPUTABLE, a limit, the budget), never as a worker bug (INTERNAL). `python -m
tests.fuzz.extremes --seconds 600` runs it longer, in-process.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from chainrule.engine.errors import ChainruleError
from chainrule.server.compute.pool import ProcessExecutor, SymbolicWorkerError
from tests.fuzz import extremes

# About 25 s on the 2-core VM (on 2026-12-07: 500 took 65 s there, 350 about 45 s, 280 36 to 47 s,
# 220 33 s, with make test at its 12 minutes: 677 to 926 s in clean-clone runs that day). `make fuzz`
# runs the long ones.
EXPRESSIONS = 180
_WORKERS = 2


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[ProcessExecutor]:
    executor = ProcessExecutor(_WORKERS, budget_seconds=2.0, memory_bytes=1024**3, queue=_WORKERS)
    await executor.start()
    yield executor
    await executor.close()


async def test_no_constant_at_a_function_s_edge_is_an_internal_error(pool: ProcessExecutor) -> None:
    rng = random.Random(20261202)
    texts = [extremes.expression(rng) for _ in range(EXPRESSIONS)]
    bugs: list[str] = []

    async def one(text: str, around: str) -> None:
        try:
            await pool.run(extremes.exercise, text, around)
        except ChainruleError:
            pass
        except SymbolicWorkerError as error:
            bugs.append(f"{text!r}: {str(error).strip().splitlines()[-1]}")

    for start in range(0, len(texts), _WORKERS):
        await asyncio.gather(*(one(*asked) for asked in texts[start : start + _WORKERS]))
    assert not bugs, "\n".join(bugs)
