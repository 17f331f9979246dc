"""The symbolic workers' pool: budgets, deadlines, kills, cancellation, overload; alone and over gRPC.

Behaviour only: how fast a replacement starts is measured in bench/restart.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import re
import signal
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import mpmath
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from mpmath.libmp import gammazeta

from chainrule.engine import errors
from chainrule.engine.parsing import TooSlow
from chainrule.server.app import Application
from chainrule.server.compute import deadlines, jobs
from chainrule.server.compute.pool import ABANDONED_GRACE_SECONDS, ProcessExecutor, SymbolicWorkerError
from chainrule.server.config import Settings
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import held_after_failing, make_settings
from tests.relay import grpc_channel_from

# Full simplification of this takes minutes of sympy (measured: 147 s): it always burns a budget.
SLOW = pb.DifferentiateRequest(
    expression="(x+y+z+w)^60", wrt=[pb.Wrt(variable="x")], simplification=pb.SIMPLIFICATION_FULL
)
BUDGET = 1.0
# The pool alone: a budget far above the scheduling delays of a loaded 2-core machine, so that
# only the tests that mean to overrun it do.
POOL_BUDGET = 5.0
# Work that outlasts every budget here and the call's own timeout: only a kill ends it early.
FOREVER = 600


async def wait_until(condition: object, seconds: float = 60.0) -> None:
    """Poll `condition`; the bound only stops a test that would otherwise hang, it times nothing."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def pool_whole(pool: ProcessExecutor) -> bool:
    return pool.idle_count() == pool.size and len(pool.worker_pids()) == pool.size


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- the pool alone -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[ProcessExecutor]:
    executor = ProcessExecutor(1, budget_seconds=POOL_BUDGET, memory_bytes=512 * 1024 * 1024, queue=1)
    await executor.start()
    yield executor
    await executor.close()


async def test_pool_runs_work_in_other_processes(pool: ProcessExecutor) -> None:
    assert await pool.run(operator.add, 2, 3) == 5
    assert await pool.run(os.getpid) in pool.worker_pids()
    assert os.getpid() not in pool.worker_pids()


async def test_pools_opened_and_closed_in_turn_each_start() -> None:
    """The forkserver outlives the pool whose thread happened to start it: it died with that thread
    (PR_SET_PDEATHSIG), and the next pool's workers met it dying (EOFError, 13 of 30 pools)."""
    for _ in range(6):
        executor = ProcessExecutor(1, budget_seconds=POOL_BUDGET, memory_bytes=512 * 1024 * 1024, queue=1)
        try:
            await executor.start()
            assert await executor.run(operator.add, 2, 3) == 5
        finally:
            await executor.close()


async def test_worker_bug_is_reported_not_swallowed(pool: ProcessExecutor) -> None:
    with pytest.raises(SymbolicWorkerError, match="ValueError"):
        await pool.run(int, "not a number")
    assert await pool.run(operator.add, 1, 1) == 2


async def test_a_failure_inside_sympy_or_mpmath_is_not_computable_not_a_bug(pool: ProcessExecutor) -> None:
    # Valid input the library itself cannot handle (a pole met evaluating a constant): the caller
    # gets FAILED_PRECONDITION saying so, not INTERNAL; an error raised by our own code stays a bug.
    with pytest.raises(errors.NotComputable, match="gamma function pole") as caught:
        await pool.run(gammazeta.mpf_gamma, mpmath.mpf(-1)._mpf_, 53)
    assert caught.value.reason == "NOT_COMPUTABLE" and "mpmath/" in caught.value.message
    with pytest.raises(SymbolicWorkerError):
        await pool.run(int, "not a number")
    # A MemoryError stays one wherever it arose: the worker that had it is replaced.
    assert errors.NotComputable.from_library(MemoryError()) is None


async def test_chainrule_errors_cross_the_process_boundary(pool: ProcessExecutor) -> None:
    with pytest.raises(errors.ParseError) as caught:
        await pool.run(jobs.parse_canonical, "sin(x", jobs.Limits.from_settings(Settings()))
    assert caught.value.metadata["position"] == "3"  # the "(" never closed


async def test_server_budget_overrun_kills_and_replaces_the_worker(pool: ProcessExecutor) -> None:
    before = set(pool.worker_pids())
    overruns = pool.stats.replaced["overrun"]
    # The work would sleep for minutes: an answer at all means the budget stopped it.
    with pytest.raises(errors.ResourceExhausted, match=r"server's compute budget of 5 s") as caught:
        await pool.run(time.sleep, FOREVER)
    assert caught.value.reason == "COMPUTE_BUDGET_EXCEEDED"
    assert pool.stats.replaced["overrun"] == overruns + 1
    await wait_until(lambda: pool_whole(pool))
    killed = before - set(pool.worker_pids())
    assert len(killed) == 1 and all(gone(pid) for pid in killed)
    assert await pool.run(operator.mul, 6, 7) == 42


async def test_a_task_that_holds_a_worker_past_its_allowance_is_stopped_for_its_caller_to_move() -> None:
    # Parse's worker: a task computing longer than `hold_seconds` is killed like an overrun (nothing
    # else stops a sympy step), and its caller hears TooSlow, to run it again where the full budget
    # holds; one whose caller's deadline comes first still ends at the deadline.
    executor = ProcessExecutor(
        1, spares=0, budget_seconds=POOL_BUDGET, memory_bytes=0, queue=1, name="parse", hold_seconds=0.3
    )
    await executor.start()
    try:
        assert executor.admission.name == "parse"
        first = executor.worker_pids()
        with pytest.raises(TooSlow, match=r"more than 0\.3 s in a parse worker"):
            await executor.run(time.sleep, FOREVER)
        assert executor.stats.replaced["overrun"] == 1
        await wait_until(lambda: pool_whole(executor) and executor.worker_pids() != first)
        assert all(gone(pid) for pid in first)
        assert await executor.run(operator.add, 2, 2) == 4  # the replacement serves
        with deadlines.request_scope(0.1), pytest.raises(errors.DeadlineExceeded):
            await executor.run(time.sleep, FOREVER)
        # Its hold (0.3 s) ends before the grace after the caller left would (0.6 s): an overrun.
        await wait_until(lambda: executor.stats.replaced["overrun"] == 2 and pool_whole(executor))
        # The parser giving up by itself (an allowance already spent) is the same signal, and keeps
        # its worker.
        with pytest.raises(TooSlow):
            await executor.run(jobs.parse_canonical, "x + 1", jobs.Limits.from_settings(Settings()), -1.0)
        assert executor.stats.replaced == {"overrun": 2}
    finally:
        await executor.close()


async def _run_as(executor: ProcessExecutor, caller: str, seconds: float) -> str:
    with deadlines.request_scope(None, lambda: caller):
        await executor.run(time.sleep, seconds)
    return caller


async def _served_after_a_holder(executor: ProcessExecutor, queued: list[tuple[str, float]]) -> list[str]:
    """The callers in the order their tasks ended: one holding the only worker for 0.2 s, then
    `queued` (caller, seconds), queued in that order behind it."""
    served: list[str] = []

    async def run_as(caller: str, seconds: float) -> None:
        served.append(await _run_as(executor, caller, seconds))

    tasks = [asyncio.ensure_future(run_as("127.0.0.4", 0.2))]
    await wait_until(lambda: bool(executor.busy_pids()))
    for count, (caller, seconds) in enumerate(queued, start=1):
        tasks.append(asyncio.ensure_future(run_as(caller, seconds)))
        await wait_until(lambda count=count: executor.admission.waiting == count)
    await asyncio.gather(*tasks)
    return served


async def test_a_caller_whose_task_cost_a_worker_waits_behind_other_callers() -> None:
    # 60 addresses sending a full-budget Series each, over and over, took turns with another
    # caller's cold requests, which waited out their budgets (an independent hunt): once a caller's
    # task has been killed for its budget (or its memory), a freed worker goes to others first.
    executor = ProcessExecutor(1, spares=1, budget_seconds=0.5, memory_bytes=512 * 1024 * 1024, queue=4)
    await executor.start()
    try:
        with pytest.raises(errors.ResourceExhausted, match="compute budget"):
            await _run_as(executor, "127.0.0.2", FOREVER)
        assert "127.0.0.2" in executor.costly and "127.0.0.3" not in executor.costly
        served = await _served_after_a_holder(executor, [("127.0.0.2", 0.01), ("127.0.0.3", 0.01)])
        assert served == ["127.0.0.4", "127.0.0.3", "127.0.0.2"]
        await wait_until(lambda: pool_whole(executor))
    finally:
        await executor.close()


async def test_a_caller_whose_last_task_was_cheap_goes_before_callers_new_to_the_pool() -> None:
    # 60 new addresses' full-budget calls went before another caller's cheap cold calls (each new to
    # the queue too, one at a time), and 3 of 88 timed out (make bench, many-addresses, 2026-12-06).
    executor = ProcessExecutor(1, spares=1, budget_seconds=2.0, memory_bytes=512 * 1024 * 1024, queue=4)
    await executor.start()
    try:
        await _run_as(executor, "127.0.0.3", 0.01)
        assert "127.0.0.3" in executor.cheap  # under CHEAP_PART of the budget
        served = await _served_after_a_holder(executor, [("127.0.0.5", 0.01), ("127.0.0.3", 0.3)])
        assert served == ["127.0.0.4", "127.0.0.3", "127.0.0.5"]
        assert "127.0.0.3" not in executor.cheap  # its last task took 0.3 s: no longer cheap
        assert "127.0.0.4" not in executor.cheap and "127.0.0.5" in executor.cheap
    finally:
        await executor.close()


async def test_a_caller_that_leaves_a_task_to_be_killed_twice_is_costly() -> None:
    # Each task killed past the grace its caller left it costs a worker's replacement: costly work
    # sent with 20 ms deadlines had 53 workers replaced in 28 s, its caller never marked, as each
    # computed only the 0.5 s grace (an independent attacker). Once may be a deadline misjudged.
    executor = ProcessExecutor(1, spares=1, budget_seconds=5.0, memory_bytes=512 * 1024 * 1024, queue=4)
    await executor.start()

    async def left_by(caller: str) -> None:
        with deadlines.request_scope(0.05, lambda: caller), pytest.raises(errors.DeadlineExceeded):
            await executor.run(time.sleep, FOREVER)

    try:
        for kills, costly in ((1, False), (2, True)):
            await left_by("127.0.0.2")
            await wait_until(
                lambda k=kills: executor.stats.replaced["abandoned"] == k and pool_whole(executor)
            )
            assert ("127.0.0.2" in executor.costly) is costly
    finally:
        await executor.close()


@pytest.mark.parametrize("waited", ["for nearly all of it", "for half of it"])
async def test_work_killed_after_waiting_is_busy_unless_it_computed_a_quarter_of_its_budget(
    waited: str,
) -> None:
    # An implicit derivative of 0.45 s that waited behind full-budget Series got a worker with 46 ms
    # left, was killed, and heard "retrying would cost as much again: ask for less" (an independent
    # attacker): that says nothing of its cost, so it is a busy server's refusal, with the retry
    # delay, and its caller is not taken for a costly one. A task that computed a quarter of the
    # budget before it was killed is costly however long it waited: an OVERLOADED after 2 s of work
    # was retried by the client and killed again (a regression hunt).
    executor = ProcessExecutor(1, spares=1, budget_seconds=1.0, memory_bytes=512 * 1024 * 1024, queue=4)
    await executor.start()

    async def run_as(caller: str, seconds: float) -> None:
        with deadlines.request_scope(None, lambda: caller):
            await executor.run(time.sleep, seconds)

    try:
        first = asyncio.ensure_future(
            run_as("127.0.0.2", FOREVER if waited == "for nearly all of it" else 0.55)
        )
        await wait_until(lambda: bool(executor.busy_pids()))
        with pytest.raises(errors.ResourceExhausted) as caught:
            await run_as("127.0.0.3", FOREVER)
        if waited == "for nearly all of it":
            assert caught.value.reason == "OVERLOADED" and caught.value.retry_after_seconds == 1.0
            # How long it waited: most of the budget, killed in the spare worker it then got, or all of
            # it, refused at its end, where the first task's kill took longer than the milliseconds
            # between their starts (1.01 s in CI): the same refusal either way.
            assert re.search(
                r"busy for [01](\.\d+)? s of the server's compute budget of 1 s", str(caught.value)
            )
            assert "127.0.0.3" not in executor.costly
            with pytest.raises(errors.ResourceExhausted, match="compute budget"):
                await first
        else:
            assert (
                caught.value.reason == "COMPUTE_BUDGET_EXCEEDED" and caught.value.retry_after_seconds is None
            )
            assert "127.0.0.3" in executor.costly
            await first
        assert executor.stats.replaced["overrun"] in ((1, 2) if waited == "for nearly all of it" else (1,))
        await wait_until(lambda: pool_whole(executor))
    finally:
        await executor.close()


@pytest.mark.parametrize("limit", ["hold", "client deadline"])
async def test_a_task_out_of_time_leaves_its_caller_no_reference_cycle(limit: str) -> None:
    # Its error, raised in `except TimeoutError`, kept the Timeout and the task that ends with that
    # error: a cycle holding the caller's frames (a REST body) until the cyclic collector ran.
    executor = ProcessExecutor(
        1, spares=0, budget_seconds=POOL_BUDGET, memory_bytes=0, queue=1, name="parse", hold_seconds=0.2
    )
    await executor.start()

    async def overrun(request: object) -> None:
        with deadlines.request_scope(0.05 if limit == "client deadline" else None):
            await executor.run(time.sleep, FOREVER)

    try:
        assert not await held_after_failing(overrun)
    finally:
        await executor.close()


async def test_closing_the_pool_ends_tasks_left_by_their_callers_and_counts_no_death() -> None:
    executor = ProcessExecutor(1, spares=0, budget_seconds=POOL_BUDGET, memory_bytes=0, queue=1)
    await executor.start()
    with deadlines.request_scope(0.1), pytest.raises(errors.DeadlineExceeded):
        await executor.run(time.sleep, FOREVER)
    assert executor.busy_pids()  # within its grace
    await executor.close()
    assert (executor.stats.replaced, executor.admission.running) == ({}, 0)


async def test_client_deadline_binds_when_shorter(pool: ProcessExecutor) -> None:
    before = pool.stats.replaced["abandoned"]
    # The error names the budget that bound: the caller's deadline, not the server's 5 s. The task
    # goes on for the grace, holding the caller's slot, and is then stopped.
    with (
        deadlines.request_scope(0.2),
        pytest.raises(errors.DeadlineExceeded, match=r"request's deadline \(0\.2 s\)"),
    ):
        await pool.run(time.sleep, FOREVER)
    assert pool.admission.running == 1 and pool.stats.replaced["abandoned"] == before
    await wait_until(lambda: pool.stats.replaced["abandoned"] == before + 1)
    assert pool.admission.running == 0
    await wait_until(lambda: pool_whole(pool))


async def test_a_task_its_caller_stopped_waiting_for_finishes_within_the_grace_and_keeps_its_worker(
    pool: ProcessExecutor,
) -> None:
    # Killing the worker would cost a replacement (0.25 s of CPU): a caller whose deadlines are just
    # shorter than its work made the server pay that on every call.
    await wait_until(lambda: pool_whole(pool))
    workers, kills_before = pool.worker_pids(), kills(pool)
    with deadlines.request_scope(0.1), pytest.raises(errors.DeadlineExceeded):
        await pool.run(time.sleep, ABANDONED_GRACE_SECONDS / 2)
    await wait_until(lambda: pool.admission.running == 0 and pool_whole(pool))
    assert (pool.worker_pids(), kills(pool)) == (workers, kills_before)
    # Cancelled callers alike.
    task = asyncio.ensure_future(pool.run(time.sleep, ABANDONED_GRACE_SECONDS / 2))
    await wait_until(lambda: bool(pool.busy_pids()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: pool.admission.running == 0 and pool_whole(pool))
    assert (pool.worker_pids(), kills(pool)) == (workers, kills_before)


async def test_memory_cap_answers_resource_exhausted_and_the_worker_serves_on(pool: ProcessExecutor) -> None:
    """One allocation refused whole leaves the worker as it was: replacing it cost 0.25 s of CPU
    for each 30 ms request that asked for too much (an independent attacker)."""
    await wait_until(lambda: pool_whole(pool))
    workers, before = pool.worker_pids(), pool.stats.replaced["out_of_memory"]
    with pytest.raises(errors.ResourceExhausted, match="memory limit of 512 MiB"):
        await pool.run(bytearray, 2**30)
    assert pool.stats.replaced["out_of_memory"] == before
    assert await pool.run(operator.add, 1, 2) == 3
    assert pool.worker_pids() == workers


async def test_a_worker_still_holding_memory_after_its_memory_error_is_replaced(
    pool: ProcessExecutor,
) -> None:
    before = pool.stats.replaced["out_of_memory"]
    with pytest.raises(errors.ResourceExhausted, match="memory limit of 512 MiB"):
        await pool.run(hold_then_run_out, 100 * 2**20)
    assert pool.stats.replaced["out_of_memory"] == before + 1
    await wait_until(lambda: pool_whole(pool))
    assert await pool.run(operator.add, 1, 2) == 3


_HELD: list[bytearray] = []


def hold_then_run_out(held_bytes: int) -> None:
    """Keeps `held_bytes` past its own MemoryError (in a symbolic worker: a module global)."""
    _HELD.append(bytearray(held_bytes))
    bytearray(2**30)


async def test_sigkill_mid_request_is_a_clean_error_and_the_pool_recovers(pool: ProcessExecutor) -> None:
    task = asyncio.ensure_future(pool.run(time.sleep, FOREVER))
    await wait_until(lambda: bool(pool.busy_pids()))
    os.kill(pool.busy_pids()[0], signal.SIGKILL)
    with pytest.raises(errors.Unavailable, match="stopped unexpectedly"):
        await task
    await wait_until(lambda: pool_whole(pool))
    assert await pool.run(operator.add, 2, 2) == 4


async def test_cancelling_a_request_kills_its_worker_after_the_grace(pool: ProcessExecutor) -> None:
    before = pool.stats.replaced["abandoned"]
    task = asyncio.ensure_future(pool.run(time.sleep, FOREVER))
    await wait_until(lambda: bool(pool.busy_pids()))
    pid = pool.busy_pids()[0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: pool.stats.replaced["abandoned"] == before + 1)
    await wait_until(lambda: gone(pid) and pool_whole(pool))


async def test_overload_is_refused_with_a_retry_delay(pool: ProcessExecutor) -> None:
    running = asyncio.ensure_future(pool.run(time.sleep, 1.0))  # still running while the queue fills
    await wait_until(lambda: bool(pool.busy_pids()))
    queued = asyncio.ensure_future(pool.run(time.sleep, 0.01))
    await wait_until(lambda: pool.admission.waiting == 1)
    with pytest.raises(errors.ResourceExhausted, match="busy") as caught:
        await pool.run(operator.add, 1, 1)
    assert caught.value.retry_after_seconds == 1.0
    assert caught.value.reason == "OVERLOADED"
    await running
    await queued
    assert await pool.run(operator.add, 1, 1) == 2


# --- through the real servers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Application]:
    application = Application(
        make_settings(symbolic_workers=2, symbolic_spares=1, symbolic_budget_seconds=BUDGET)
    )
    await application.start()
    yield application
    await application.stop()


def stub_for(app: Application) -> tuple[grpc.aio.Channel, pb_grpc.DifferentiationServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
    return channel, pb_grpc.DifferentiationServiceStub(channel)


def server_pool(app: Application) -> ProcessExecutor:
    assert app.pool is not None
    return app.pool


async def assert_serving(app: Application) -> None:
    channel, stub = stub_for(app)
    async with channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reply = await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x^2)"), timeout=5)
        assert reply.derivative == "2*x*cos(x^2)"


async def test_overrun_over_grpc_names_the_server_budget(server: Application) -> None:
    overruns = server_pool(server).stats.replaced["overrun"]
    channel, stub = stub_for(server)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Differentiate(SLOW, timeout=30)
    # RESOURCE_EXHAUSTED, not the DEADLINE_EXCEEDED of the call's 30 s: the server's budget stopped
    # minutes of sympy, and killed the worker doing it.
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "compute budget of 1 s" in (caught.value.details() or "")
    assert server_pool(server).stats.replaced["overrun"] == overruns + 1
    await wait_until(lambda: pool_whole(server_pool(server)))
    await assert_serving(server)


async def test_cheap_requests_keep_succeeding_while_one_burns_its_budget(server: Application) -> None:
    slow_channel, slow_stub = stub_for(server)
    async with slow_channel:
        slow = asyncio.ensure_future(slow_stub.Differentiate(SLOW, timeout=30))
        await wait_until(lambda: bool(server_pool(server).busy_pids()))
        # Count the cheap answers that came back while the slow call was still computing: each one
        # was served beside it, not behind it. No latency bound: on a loaded machine the slow
        # call's budget may run out after a few cheap ones, so the loop stops there.
        served_alongside = 0
        for index in range(15):
            # Another caller (another address; one caller may not hold every worker), and another
            # connection each time.
            async with grpc_channel_from(server.grpc_port, "127.0.0.2") as channel:
                stub = pb_grpc.DifferentiationServiceStub(channel)
                # Cold: a new expression each time, so each goes to a worker process.
                request = pb.DifferentiateRequest(expression=f"sin({index + 2}*x)*exp(x)")
                reply = await stub.Differentiate(request, timeout=30)
                assert reply.derivative
            if slow.done():
                break
            served_alongside += 1
        assert served_alongside >= 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await slow
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await wait_until(lambda: pool_whole(server_pool(server)))


async def test_sigkill_of_the_worker_mid_request_over_grpc(server: Application) -> None:
    pool = server_pool(server)
    channel, stub = stub_for(server)
    async with channel:
        call = asyncio.ensure_future(stub.Differentiate(SLOW, timeout=30))
        await wait_until(lambda: bool(pool.busy_pids()))
        os.kill(pool.busy_pids()[0], signal.SIGKILL)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(caught.value)
    assert status is not None and "replaced" in status.message
    await wait_until(lambda: pool_whole(pool))
    await assert_serving(server)


def kills(pool: ProcessExecutor) -> int:
    return pool.stats.replaced["overrun"] + pool.stats.replaced["abandoned"]


async def test_client_deadline_answers_at_once_and_the_work_stops_after_the_grace(
    server: Application, caplog: pytest.LogCaptureFixture
) -> None:
    pool = server_pool(server)
    deadline = 0.5  # well above dispatch delays, well below the server's budget of 1 s
    channel, stub = stub_for(server)
    async with channel:
        # Parse (and cache) the expression first, with a cheap simplification: the deadline then
        # always falls inside the one long step, the full simplification in a worker.
        warm = pb.DifferentiateRequest(expression=SLOW.expression, wrt=SLOW.wrt)
        assert (await stub.Differentiate(warm, timeout=30)).derivative
        await wait_until(lambda: pool_whole(pool))
        before = kills(pool)
        with caplog.at_level(logging.WARNING, logger="chainrule.server.compute.pool"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Differentiate(SLOW, timeout=deadline)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # The caller is answered at its deadline (the pool's own timer, or grpc ending the call:
            # either may come first on a loaded machine); the work goes on for the grace, or until
            # the server's budget ends if sooner (here both end about 1 s from the start), and is
            # then stopped: one kill, either way.
            await wait_until(lambda: kills(pool) == before + 1)
    replaced = [r.getMessage() for r in caplog.records if r.getMessage().endswith("replacing it")]
    assert len(replaced) == 1, replaced
    # The budget is what the server's 1 s had left when the work was handed over: 0.999 s on a loaded
    # machine (not the caller's 0.5 s deadline, which only answers the caller).
    overran = re.search(r"overran its budget of (1|0\.9\d*) s", replaced[0])
    assert "past its caller's wait" in replaced[0] or overran, replaced
    await wait_until(lambda: pool_whole(pool))


async def test_cancelled_rpc_kills_its_worker(server: Application) -> None:
    pool = server_pool(server)
    before = pool.stats.replaced["abandoned"]
    channel, stub = stub_for(server)
    async with channel:
        call = stub.Differentiate(SLOW, timeout=30)
        await wait_until(lambda: bool(pool.busy_pids()))
        call.cancel()
        await wait_until(lambda: pool.stats.replaced["abandoned"] == before + 1)
    await wait_until(lambda: pool_whole(pool))
    await assert_serving(server)


async def test_rest_grpc_timeout_header_is_the_deadline(server: Application) -> None:
    body = {
        "expression": SLOW.expression,
        "wrt": [{"variable": "x"}],
        "simplification": "SIMPLIFICATION_FULL",
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        reply = await client.post(
            "/v1/differentiate", json=body, headers={"grpc-timeout": "300m"}, timeout=30
        )
    # The message names the budget that bound (the header's, not the server's 1 s): no timing needed.
    assert reply.status_code == 504
    assert "request's deadline (0.3 s)" in reply.json()["message"]
    await wait_until(lambda: pool_whole(server_pool(server)))
