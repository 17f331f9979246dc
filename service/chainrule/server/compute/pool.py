"""Killable compute: the symbolic workers, a pool of processes for cold symbolic work.

"Symbolic worker" means one of these processes, never a server process of `--workers N` (each
server process has a pool of its own; see supervisor.py).

Python threads and signals cannot interrupt sympy, so cold symbolic work (parse, differentiate,
simplify, print) runs in symbolic workers that are killed (SIGKILL) and replaced when they overrun
their budget. A small pool of our own rather than `ProcessPoolExecutor` (one dead process breaks
the whole pool) or pebble (its processes share one pipe and lock, so one killed while holding the
lock stalls the rest, and an idle one's death marks the pool broken):

- each worker has its own pipe; the parent hands a task to one idle worker and waits for the
  answer on a thread of its own, so a kill (EOF on the pipe) ends the wait at once;
- workers are forked from a forkserver that has imported sympy and our modules, then warm up on a
  small derivative before they report ready: a replacement costs a fraction of a fresh
  interpreter's start (bench/restart.py measures both; the first start, which boots the
  forkserver, happens at server start);
- the pool keeps `spares` workers beyond its concurrency, so a kill never leaves it short while
  the replacement starts;
- each worker runs under `RLIMIT_AS`; a `MemoryError` answers RESOURCE_EXHAUSTED, and the worker
  serves on if, once the task's objects are collected, it holds little more than when it was ready
  (one huge allocation refused whole, the usual case: `_recovered`), else exits to be replaced.

Budgets come from `deadlines`: the server's own (`symbolic_budget_seconds`, counted from the
request's start) cut by the caller's deadline. Overrun: DEADLINE_EXCEEDED when the caller's deadline
was the binding budget, RESOURCE_EXHAUSTED when the server's was. A worker that dies mid-task (e.g.
SIGKILL from outside) answers UNAVAILABLE: the pool has already replaced it, and a retry goes to a
healthy worker. A caller that stops waiting (its deadline passed, or it was cancelled) is answered
at once, and its task goes on for `ABANDONED_GRACE_SECONDS` at most, in case it is about to finish,
still holding the caller's slot; past that the worker is killed (nothing else interrupts it). A
replacement costs about 0.25 s of CPU: killing at once let a caller whose deadlines were just
shorter than its work make the server spend that on every call (two calls in flight with 4 ms
deadlines: 280 replacements in 30 s, bench/attacks.py `short-deadlines`).

`Admission` (executors.py) bounds concurrency and the queue in front of it, shared fairly between
callers (no caller can hold every symbolic worker); beyond both, RESOURCE_EXHAUSTED with a retry delay
(google.rpc.RetryInfo; HTTP 429 with Retry-After). It also guards the numeric thread pool
(`BoundedExecutor`).
A caller whose task cost a worker (killed past the budget or the grace after computing a quarter of
the budget, or out of memory) waits behind every other caller's tasks for `COSTLY_SECONDS`
(`Admission.deferred`), such callers hold one caller's share of the workers together (by default all
but one), and a full queue sheds their tasks first: cheap requests of others keep getting a worker
while many addresses send full-budget work over and over. A caller whose last task ended within
`CHEAP_PART` of the budget goes before callers with no such record (`Admission.preferred`): a new
address is no longer first in line ahead of a caller known to send cheap work.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ParamSpec, TypeVar

from chainrule import engine
from chainrule.engine.errors import (
    ChainruleError,
    ResourceExhausted,
    Unavailable,
    plain_seconds,
    refusing_library_failures,
)
from chainrule.engine.parsing import TooSlow
from chainrule.server.compute import deadlines, jobs, lifetime
from chainrule.server.compute.executors import Admission, describe
from chainrule.server.compute.lanes import RecentlyMarked
from chainrule.server.config import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Preloaded first by the forkserver, by name: imported here it would tie this process to its parent.
_FORKSERVER_LIFETIME = "chainrule.server.compute.forkserver_lifetime"
# How long a new symbolic worker may take to report ready (the first one also boots the forkserver).
_START_TIMEOUT = 60.0
_OK, _ERROR, _MEMORY, _BUG = "ok", "error", "memory", "bug"
# How long a task goes on once its caller stopped waiting (see the module's docstring): twice what
# its worker's replacement would cost, so a caller that makes the server kill one has spent at least
# that much of its own share first.
ABANDONED_GRACE_SECONDS = 0.5
# How long a caller whose task cost a worker (killed past its budget or its caller's grace, or out
# of memory) waits behind every other caller for a worker (`Admission.deferred`): long enough that
# many addresses, each marked by a full-budget call of its own, are all marked before the first
# marks run out (an address waiting its turn is not marked: some 120 addresses at 5 s a call).
COSTLY_SECONDS = 600.0
# The part of the server's budget a killed task must have computed for its caller to be marked costly,
# and below which a task that waited for workers most of its budget is refused as a busy server's
# (with the retry delay): one killed for the little it was left says nothing of its cost (a 0.45 s
# implicit derivative started with 46 ms left was told to ask for less), and one that computed more
# would cost as much again if its client retried (an OVERLOADED after 2 s of work was retried, and
# killed again at 3.8 s: a regression hunt).
COSTLY_PART = 0.25
# The part of the server's budget under which a task that ended is cheap: its caller's next tasks go
# before those of callers with no such record (`Admission.preferred`), for `COSTLY_SECONDS`.
CHEAP_PART = 0.05


class SymbolicWorkerError(RuntimeError):
    """A bug inside a symbolic worker (an exception that is not a chainrule error), with its traceback."""


# --- a symbolic worker ----------------------------------------------------------------------------


def _symbolic_worker_main(conn: Connection, memory_bytes: int) -> None:
    """Serve tasks from `conn` until it closes: (fn, args, kwargs) in, (kind, value) out."""
    lifetime.die_with_parent(os.getppid())  # the forkserver, which dies with the server process
    # Ctrl-C in a terminal reaches the whole process group: the server process decides, not its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    _warm_up()
    ready = _memory()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except EOFError:  # the server closed our pipe or died
            return
        kind, value = _execute(fn, args, kwargs)
        if kind == _MEMORY:
            value = _recovered(ready, memory_bytes)
        try:
            conn.send((kind, value))
        except Exception as error:  # an unpicklable result or error is a bug of ours
            conn.send((_BUG, f"cannot send the result back: {error!r}"))
        if kind == _MEMORY and not value:
            return  # what the task built is still held: let the pool replace us


def _execute(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        return _OK, refusing_library_failures(fn, *args, **kwargs)
    except MemoryError:
        return _MEMORY, None
    except SystemError as error:
        # A C extension that failed an allocation under RLIMIT_AS without setting MemoryError
        # (sympy's polys under FULL simplification: "error return without exception set" was
        # INTERNAL; an independent hunt, 2026-12-06) ran out of memory as far as anyone can tell.
        if "without exception set" in str(error):
            return _MEMORY, None
        return _BUG, traceback.format_exc()
    except (ChainruleError, TooSlow) as error:  # TooSlow: the caller moves the work (api._on_parse_worker)
        return _ERROR, error
    except Exception:
        return _BUG, traceback.format_exc()


def _recovered(ready: tuple[int, int] | None, memory_bytes: int) -> bool:
    """Whether a worker whose task ran out of memory let go of what the task built: once collected,
    it holds (resident) at most a quarter of the room its limit left when it was ready more than it
    held then, and maps at most half that room more (glibc keeps a 64 MiB arena it reserved on the
    way). A MemoryError is most often one allocation refused whole (mpmath asked for an integer of
    2^200 bits: `exp` of a tower of exponentials in `verify`), and replacing the worker after each
    cost 0.25 s of CPU for a 30 ms request (an independent attacker: 335 replacements in 45 s from
    one address, other callers' cold requests 0.4 s slower)."""
    gc.collect()
    now = _memory()
    if ready is None or now is None:
        return False  # not known: replaced
    (mapped, resident), (ready_mapped, ready_resident) = now, ready
    room = max(0, memory_bytes - ready_mapped)
    return resident <= ready_resident + room // 4 and mapped <= ready_mapped + room // 2


def _memory() -> tuple[int, int] | None:
    """The address space this process maps (what RLIMIT_AS bounds) and the part of it resident, if
    Linux says."""
    page = resource.getpagesize()
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            mapped, resident = statm.read().split()[:2]
        return int(mapped) * page, int(resident) * page
    except (OSError, ValueError):
        return None


def _warm_up() -> None:
    """One small derivative, so the first real request does not pay for sympy's first-call caches."""
    limits = jobs.Limits.from_settings(Settings())
    parsed = jobs.parse_canonical("sin(x^2)*exp(2x)/(1+x)", limits)
    jobs.derive_parsed(parsed.expression, (("x", 2),), engine.Simplification.FAST, limits)
    jobs.compile_gradient(parsed.expression, ("x",), True, limits)  # lambdify's printers and imports


# --- the pool -------------------------------------------------------------------------------------


@dataclass(eq=False)
class _SymbolicWorker:
    process: BaseProcess
    conn: Connection
    pid: int
    started: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Task:
    """One task on its worker; `abandon` when its caller stops waiting."""

    worker: _SymbolicWorker
    work: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
    what: str
    caller: str  # who asked for it (`deadlines.current_caller`)
    abandoned: bool = False  # its caller stopped waiting
    graced: bool = False  # and the grace, not its budget or hold, ends the wait for its answer
    timer: deadlines.TimeLimit | None = None  # the wait for its answer, once it is sent

    def abandon(self) -> None:
        """Let the task go on `ABANDONED_GRACE_SECONDS` more at most (less if its budget ends sooner)."""
        self.abandoned = True
        timeout = None if self.timer is None else self.timer.timeout
        if timeout is None or timeout.expired():
            return  # not sent yet (`_call` shortens the wait it starts), or over
        end = asyncio.get_running_loop().time() + ABANDONED_GRACE_SECONDS
        when = timeout.when()
        if when is None or end < when:
            with contextlib.suppress(RuntimeError):  # the answer came meanwhile: nothing to shorten
                timeout.reschedule(end)
                self.graced = True


@dataclass
class PoolStats:
    """What the pool has done, for tests and logs."""

    started: int = 0
    replaced: collections.Counter[str] = field(default_factory=collections.Counter)  # by reason
    start_seconds: list[float] = field(default_factory=list)


# Why a worker was replaced (the metric's label values, exported from start-up): past its budget
# (or, in Parse's worker, its hold); past the grace after its caller stopped waiting; killed from
# outside or crashed; past its memory limit.
REPLACEMENT_REASONS = ("overrun", "abandoned", "died", "out_of_memory")


class ProcessExecutor:
    """Runs picklable functions in killable symbolic workers, under per-request budgets.

    `name` labels its admission (metrics) and its processes. `hold_seconds`, if given, is how long
    one task may compute: a task past it is stopped like an overrun, and raises `TooSlow` for its
    caller to run it again where the full budget applies (Parse's worker: app._parse_executor).
    """

    def __init__(
        self,
        workers: int,
        *,
        budget_seconds: float,
        memory_bytes: int,
        queue: int,
        spares: int = 1,
        retry_after_seconds: float = 1.0,
        per_caller: int = 0,
        name: str = "symbolic",
        hold_seconds: float | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a pool of symbolic workers needs at least one")
        self.name = name
        self.size = workers + spares
        self.budget_seconds = budget_seconds
        self.costly_seconds = COSTLY_PART * budget_seconds  # computed by a killed task: costly
        self.hold_seconds = hold_seconds
        self.memory_bytes = memory_bytes
        self.admission = Admission(
            name, workers, queue, retry_after_seconds, per_caller, deferred_as_one=True
        )
        # Callers whose tasks lately cost a worker wait behind everyone else's, and together hold one
        # caller's share: 60 addresses sending one full-budget Series each, over and over, had another
        # caller's cold Differentiates take turns with them, and 3 of 8 were refused after waiting the
        # whole 5 s (an independent hunt).
        self.costly = RecentlyMarked(COSTLY_SECONDS)
        self.admission.deferred = self.costly.__contains__
        # Callers that left a task to be killed past its grace once lately: the second such kill
        # marks them costly whatever the task computed. Each costs a worker's replacement, and a
        # caller sending costly work with 20 ms deadlines had 53 workers replaced in 28 s, never
        # marked, as each was killed after computing the 0.5 s grace (an independent attacker).
        self._abandoning = RecentlyMarked(COSTLY_SECONDS)
        # Callers whose last task was cheap go before callers new to the pool: 60 addresses, each
        # new, sending a full-budget Differentiate each had another caller's cheap cold calls (one at
        # a time, so new at every call too) wait behind their first ones, and 3 of 88 timed out
        # after 5 s (`make bench`, many-addresses, 2026-12-06). Addresses cost an attacker nothing;
        # the record costs it a cheap call before each costly one, whose end clears it (or, killed
        # at the budget, marks the caller costly).
        self.cheap_seconds = CHEAP_PART * budget_seconds
        self.cheap = RecentlyMarked(COSTLY_SECONDS)
        self.admission.preferred = self.cheap.__contains__
        self.stats = PoolStats()
        # Called with the reason of each replacement (metrics.py counts them).
        self.on_replaced: Callable[[str], None] = lambda reason: None
        self._context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported sympy and us already (global, set before use).
        self._context.set_forkserver_preload([_FORKSERVER_LIFETIME, __name__])
        # Blocking pipe I/O and process starts: one thread per worker, plus room for replacements.
        self._io = concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * self.size + 2, thread_name_prefix="chainrule-pool"
        )
        # Last in, first out: the worker that just parsed an expression also differentiates it, with
        # the expression still in its sympy cache (a FIFO rebuilds it in another worker: ~1 ms).
        self._idle: asyncio.Queue[_SymbolicWorker] = asyncio.LifoQueue()
        self._all: dict[int, _SymbolicWorker] = {}
        self._busy: set[int] = set()
        self._replacing: set[asyncio.Task[None]] = set()
        self._computing: set[asyncio.Task[Any]] = set()  # tasks on workers, whether or not awaited
        self._closed = False
        self._ids = itertools.count()

    async def start(self) -> None:
        """Start every worker and wait until each has warmed up."""
        # The forkserver dies with the thread that starts it (PR_SET_PDEATHSIG is the forking
        # thread's, lifetime.py): started by a pool's I/O thread, it was killed as that pool closed,
        # and the next pool's workers met it dying (EOFError in 13 of 30 pools opened and closed in
        # turn). Started here, it lives as long as the event loop's thread.
        multiprocessing.forkserver.ensure_running()
        workers = await asyncio.gather(*(self._start_worker() for _ in range(self.size)))
        for worker in workers:
            self._idle.put_nowait(worker)

    def worker_pids(self) -> list[int]:
        """The process ids of the live symbolic workers (idle or busy)."""
        return sorted(self._all)

    def busy_pids(self) -> list[int]:
        """The process ids of the symbolic workers computing a task right now."""
        return sorted(self._busy)

    def idle_count(self) -> int:
        return self._idle.qsize()

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        what, caller = describe(fn), deadlines.current_caller()
        budget = deadlines.budget(self.budget_seconds)
        if budget.seconds <= 0:
            raise budget.exceeded(what)
        asked = time.monotonic()
        give_back = await self.admission.take(budget, what, caller)
        try:
            worker = await self._checkout(deadlines.budget(self.budget_seconds), what)
        except BaseException:
            give_back()
            raise
        deadlines.waited_for_worker(time.monotonic() - asked)
        budget = deadlines.budget(self.budget_seconds)
        if budget.seconds <= 0:  # its time ran out as the worker came: it would compute for nobody
            self._idle.put_nowait(worker)
            give_back()
            raise self._exceeded(budget, what, 0.0)
        task = _Task(worker, (fn, args, kwargs), what, caller)
        context = contextvars.copy_context()
        context.run(deadlines.detach)
        computing = asyncio.get_running_loop().create_task(self._compute(task, give_back), context=context)
        self._computing.add(computing)
        computing.add_done_callback(functools.partial(self._computed, task))
        try:
            # Shielded: a caller that stops waiting leaves the task to finish or be stopped (`_call`).
            async with deadlines.TimeLimit(budget.seconds if budget.client_bound else None):
                result: T = await asyncio.shield(computing)
                return result
        finally:
            if not computing.done():  # its caller stopped waiting: out of time, or cancelled
                task.abandon()
            del computing
        raise budget.exceeded(what)

    async def _compute(self, task: _Task, give_back: Callable[[], None]) -> Any:
        """Run `task` within the server's budget, whether or not its caller still waits; then free
        its worker (unless killed) and its caller's slot."""
        try:
            if task.abandoned:  # its caller left before it was sent: it would compute for nobody
                self._idle.put_nowait(task.worker)
                return None
            self._busy.add(task.worker.pid)
            try:
                return await self._call(task, deadlines.budget(self.budget_seconds))
            finally:
                self._busy.discard(task.worker.pid)
        finally:
            give_back()

    def _computed(self, task: _Task, computing: asyncio.Task[Any]) -> None:
        """Forget a finished computation; a bug in one nobody waited for any more is still logged."""
        self._computing.discard(computing)
        if computing.cancelled():
            return
        error = computing.exception()  # retrieved either way: its caller may have left
        if task.abandoned and error is not None and not isinstance(error, (ChainruleError, TooSlow)):
            log.error("%s failed after its caller left", task.what, exc_info=error)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._replacing):
            task.cancel()
        workers = list(self._all.values())
        for worker in workers:
            self._kill(worker)
        # Those still computing end as their workers die (or as their caller left them, at the grace).
        await asyncio.gather(*self._computing, *self._replacing, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._io, _reap, worker) for worker in workers))
        await loop.run_in_executor(None, functools.partial(self._io.shutdown, wait=True, cancel_futures=True))

    # -- internals

    async def _checkout(self, budget: deadlines.Budget, what: str) -> _SymbolicWorker:
        while True:
            async with deadlines.TimeLimit(budget.seconds) as limit:
                worker = await self._idle.get()
            if limit.expired:
                raise budget.exceeded(
                    f"{what} (waiting for a warm symbolic worker)",
                    waiting_retry_after=self.admission.retry_after_seconds,
                )
            if worker.process.is_alive():
                return worker
            self._replace(worker, "died", "died while idle")

    async def _call(self, task: _Task, budget: deadlines.Budget) -> Any:
        worker, what = task.worker, task.what
        loop = asyncio.get_running_loop()
        exchange = loop.run_in_executor(self._io, _exchange, worker.conn, task.work)
        # After a kill the thread ends with EOFError that nobody awaits: retrieve it, quietly.
        exchange.add_done_callback(_retrieve)
        sent = time.monotonic()
        held = budget.seconds if self.hold_seconds is None else min(budget.seconds, self.hold_seconds)
        if task.abandoned and held > ABANDONED_GRACE_SECONDS:
            held, task.graced = ABANDONED_GRACE_SECONDS, True
        try:
            # Shielded: on timeout or cancellation the thread ends by itself once the worker dies.
            limit = task.timer = deadlines.TimeLimit(held)
            try:
                async with limit:
                    kind, value = await asyncio.shield(exchange)
            finally:
                task.timer = None
        except asyncio.CancelledError:  # the loop ending with a task still running (close() waits for them)
            self._replace(worker, None, f"was stopped with the loop during {what}")
            raise
        except (EOFError, OSError) as error:
            if self._closed:  # close() killed it
                self._replace(worker, None, f"was stopped with the pool during {what}")
                raise Unavailable(
                    f"the server stopped before {what} finished; retry",
                    reason="DRAINING",
                    retry_after_seconds=self.admission.retry_after_seconds,
                ) from None
            self._replace(worker, "died", f"died during {what} ({type(error).__name__})")
            raise Unavailable(
                f"the symbolic worker computing {what} stopped unexpectedly; the pool has replaced it, "
                "retry the request",
                reason="WORKER_DIED",
            ) from None
        if limit.expired:
            computed = time.monotonic() - sent
            if computed >= self.costly_seconds:
                self.costly.mark(task.caller)
            if task.graced:
                if task.caller in self._abandoning:
                    self.costly.mark(task.caller)
                self._abandoning.mark(task.caller)
                self._replace(worker, "abandoned", f"went on past its caller's wait on {what}")
                raise budget.exceeded(what)
            self._replace(worker, "overrun", f"overran its budget of {plain_seconds(held)} s on {what}")
            if held < budget.seconds:  # the hold, not the budget: its caller moves it (Parse's worker)
                raise TooSlow(f"{what} took more than {plain_seconds(held)} s in a {self.name} worker")
            raise self._exceeded(budget, what, computed)
        if time.monotonic() - sent < self.cheap_seconds:
            self.cheap.mark(task.caller)
        else:
            self.cheap.forget(task.caller)
        return self._settle(task, kind, value)

    def _exceeded(self, budget: deadlines.Budget, what: str, computed: float) -> ChainruleError:
        """The error for work out of `budget` after `computed` seconds on a worker: a busy server's,
        with the retry delay, if it computed less than `COSTLY_PART` of the budget and the request
        waited for workers most of it."""
        waited = deadlines.mostly_waited(self.budget_seconds)
        if waited is None or budget.client_bound or computed >= self.costly_seconds:
            return budget.exceeded(what)
        return budget.exceeded(what, waiting_retry_after=self.admission.retry_after_seconds, waited=waited)

    def _settle(self, task: _Task, kind: str, value: Any) -> Any:
        worker, what = task.worker, task.what
        if kind == _MEMORY:
            self.costly.mark(task.caller)
            if value:  # the worker let go of what the task built (`_recovered`): it serves on
                self._idle.put_nowait(worker)
            else:
                self._replace(worker, "out_of_memory", f"ran out of memory on {what}", kill=False)
            mib = self.memory_bytes // (1024 * 1024)
            raise ResourceExhausted(
                f"{what} needed more than the symbolic worker memory limit of {mib} MiB "
                "(CHAINRULE_WORKER_MEMORY_BYTES); retrying would fail the same way: ask for less",
                reason="MEMORY_LIMIT_EXCEEDED",
                metadata={"budget": "worker_memory_bytes", "maximum": str(self.memory_bytes)},
            )
        self._idle.put_nowait(worker)
        if kind == _OK:
            return value
        if kind == _ERROR:
            assert isinstance(value, (ChainruleError, TooSlow))
            raise value
        raise SymbolicWorkerError(f"{what} failed in a symbolic worker:\n{value}")

    def _replace(self, worker: _SymbolicWorker, reason: str | None, why: str, *, kill: bool = True) -> None:
        """Kill `worker` (if it is not gone already) and start a warm replacement in the background;
        count it under `reason` (one of REPLACEMENT_REASONS; None: the pool is closing)."""
        log.warning("%s worker %d %s: replacing it", self.name, worker.pid, why)
        if reason is not None:
            self.stats.replaced[reason] += 1
            self.on_replaced(reason)
        if kill:
            self._kill(worker)
        if self._closed:
            return
        task = asyncio.ensure_future(self._restart(worker))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    def _kill(self, worker: _SymbolicWorker) -> None:
        self._all.pop(worker.pid, None)
        with contextlib.suppress(OSError, ValueError):
            worker.process.kill()

    async def _restart(self, old: _SymbolicWorker) -> None:
        self._all.pop(old.pid, None)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, _reap, old)
        try:
            fresh = await self._start_worker()
        except Exception:
            log.exception("could not start a replacement symbolic worker")
            return
        if self._closed:
            self._kill(fresh)
            return
        self._idle.put_nowait(fresh)

    async def _start_worker(self) -> _SymbolicWorker:
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(self._io, self._spawn)
        self._all[worker.pid] = worker
        self.stats.started += 1
        self.stats.start_seconds.append(time.monotonic() - worker.started)
        del self.stats.start_seconds[:-100]  # keep the recent ones only
        return worker

    def _spawn(self) -> _SymbolicWorker:
        parent, child = self._context.Pipe(duplex=True)
        started = time.monotonic()
        process = self._context.Process(
            target=_symbolic_worker_main,
            args=(child, self.memory_bytes),
            name=f"chainrule-{self.name}-{next(self._ids)}",
            daemon=True,
        )
        process.start()
        child.close()
        if not parent.poll(_START_TIMEOUT):
            process.kill()
            raise RuntimeError(f"a symbolic worker did not start within {_START_TIMEOUT:.0f} s")
        _ready, pid = parent.recv()
        return _SymbolicWorker(process, parent, int(pid), started)


def _exchange(conn: Connection, task: tuple[Any, ...]) -> tuple[str, Any]:
    """Send one task and wait for its answer (on a pool I/O thread)."""
    conn.send(task)
    kind, value = conn.recv()
    return str(kind), value


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _reap(worker: _SymbolicWorker) -> None:
    worker.process.join(5.0)
    if worker.process.is_alive():  # one that exited on its own after a MemoryError, stuck
        worker.process.kill()
        worker.process.join(5.0)
    worker.conn.close()
