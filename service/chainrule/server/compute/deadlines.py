"""Per-request time budgets and callers, carried from the transport to the executors.

The transport (gRPC servicer, REST handler) opens a `request_scope` with the caller's remaining
time, if any, and who the caller is; the executors read `current()` and bound the work by the
earlier of the caller's deadline and the server's own budget, counted from the request's start, and
share their slots fairly between callers (`current_caller()`). A contextvar rather than an
argument: the API layer's signatures stay as they are, and single-flight cache fills (asyncio
tasks) inherit the scope of the request that started them.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

from chainrule.engine.errors import (
    ChainruleError,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    plain_seconds,
)


class RequestTime(NamedTuple):
    """When a request started and when its caller stops waiting (both `time.monotonic()`), and who
    the caller is: a function, so the cached path, which never queues, never works it out.
    `read_at`: when its message was read and decoded, if the transport said (`message_read`): the
    server's budget counts from then. `waited`: the seconds its work has waited for symbolic
    workers so far, one list shared by every stage and copy of the scope (`waited_for_worker`)."""

    started: float
    client_deadline: float | None
    caller: Callable[[], str] = lambda: ""
    read_at: float | None = None
    waited: list[float] | None = None


@dataclass(frozen=True)
class Budget:
    """The time left for one piece of work and which limit set it."""

    seconds: float
    client_bound: bool
    client_seconds: float | None
    server_seconds: float

    def exceeded(
        self, what: str, *, waiting_retry_after: float | None = None, waited: float | None = None
    ) -> ChainruleError:
        """The error for work that ran out of this budget, naming the budget that bound.

        Work that overran while computing gets no retry delay: retrying would cost as much again,
        and the message says so. Work that ran out while waiting for a slot (`waiting_retry_after`
        given), for all of the budget or for the `waited` seconds of it, met a busy server: it gets
        the retry delay, like any overload.
        """
        if self.client_bound and self.client_seconds is not None:
            deadline = plain_seconds(self.client_seconds)
            return DeadlineExceeded(
                f"{what} did not finish within the request's deadline ({deadline} s)",
                reason="DEADLINE_EXCEEDED",
                metadata={"budget": "client_deadline", "seconds": f"{self.client_seconds:.3g}"},
            )
        metadata = {"budget": "symbolic_budget_seconds", "seconds": f"{self.server_seconds:.3g}"}
        budget = f"the server's compute budget of {plain_seconds(self.server_seconds)} s"
        if waiting_retry_after is not None:
            busy = "the whole" if waited is None else f"{plain_seconds(waited)} s"
            return ResourceExhausted(
                f"{what}: the server was busy for {busy} of {budget} "
                f"(CHAINRULE_SYMBOLIC_BUDGET_SECONDS); retry after {waiting_retry_after:g} s",
                reason="OVERLOADED",
                metadata=metadata,
                retry_after_seconds=waiting_retry_after,
            )
        return ResourceExhausted(
            f"{what} did not finish within {budget} "
            "(CHAINRULE_SYMBOLIC_BUDGET_SECONDS); retrying would cost as much again: ask for less "
            "(a smaller expression, a lower order, less simplification, fewer of explain, verify and code)",
            reason="COMPUTE_BUDGET_EXCEEDED",
            metadata=metadata,
        )


_CURRENT: contextvars.ContextVar[RequestTime | None] = contextvars.ContextVar(
    "chainrule_request_time", default=None
)


class request_scope:  # noqa: N801 - used like the context-manager function it replaced
    """Mark the start of a request whose caller waits `client_remaining` seconds (None: no deadline).

    A class rather than `contextlib.contextmanager`: it is entered on every call, the cached path
    included, and a generator-based manager costs several times as much.
    """

    __slots__ = ("_scope", "_token")

    def __init__(self, client_remaining: float | None, caller: Callable[[], str] | None = None) -> None:
        now = time.monotonic()
        deadline = None if client_remaining is None else now + max(0.0, client_remaining)
        self._scope = (
            RequestTime(now, deadline, waited=[0.0])
            if caller is None
            else RequestTime(now, deadline, caller, waited=[0.0])
        )

    def __enter__(self) -> RequestTime:
        self._token = _CURRENT.set(self._scope)
        return self._scope

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT.reset(self._token)


def current() -> RequestTime | None:
    """The scope of the request being served, if a transport opened one."""
    return _CURRENT.get()


def current_caller() -> str:
    """Who the request being served comes from ("" outside a request, or when the transport did not say)."""
    scope = _CURRENT.get()
    return "" if scope is None else scope.caller()


def message_read() -> None:
    """Mark the request's message read and decoded: the server's budget counts from here. Reading a
    body is bounded by its own timeouts, decoding by the size limits; neither is the computing the
    budget is for (a 10 MB JSON body of a million values took the whole 5 s to decode, and a
    five-character expression was then refused for its compute budget: an independent tester)."""
    scope = _CURRENT.get()
    if scope is not None:
        _CURRENT.set(scope._replace(read_at=time.monotonic()))


def budget(server_seconds: float, now: float | None = None) -> Budget:
    """The time left now: the server budget from the request's start (or from when its message was
    read), cut by the caller's deadline."""
    now = time.monotonic() if now is None else now
    scope = _CURRENT.get()
    started = now if scope is None else scope.read_at or scope.started
    server_left = started + server_seconds - now
    if scope is None or scope.client_deadline is None:
        return Budget(max(0.0, server_left), False, None, server_seconds)
    client_left = scope.client_deadline - now
    client_total = scope.client_deadline - scope.started
    client_bound = client_left < server_left
    return Budget(max(0.0, min(client_left, server_left)), client_bound, client_total, server_seconds)


def detach() -> None:
    """For work that may go on after its caller stopped waiting (pool.ProcessExecutor), in a copy of
    the context it runs in: keep the request's start (the server's budget) and its waits, forget the
    caller's deadline and who the caller is (whose function may hold the request itself)."""
    scope = _CURRENT.get()
    if scope is not None:
        _CURRENT.set(RequestTime(scope.started, None, read_at=scope.read_at, waited=scope.waited))


def waited_for_worker(seconds: float) -> None:
    """Count `seconds` the request's work waited for a symbolic worker (admission and a warm one)."""
    scope = _CURRENT.get()
    if scope is not None and scope.waited is not None:
        scope.waited[0] += seconds


def mostly_waited(server_seconds: float) -> float | None:
    """The seconds the request's work waited for symbolic workers, if that is over half of the
    server's budget: work that ran out of the budget then met a busy server (a 0.45 s implicit
    derivative started with 46 ms left after waiting behind full-budget Series, and was refused
    with "ask for less": an independent attacker)."""
    scope = _CURRENT.get()
    if scope is None or scope.waited is None or scope.waited[0] <= server_seconds / 2:
        return None
    return scope.waited[0]


class TimeLimit:
    """`asyncio.timeout(seconds)` that ends its block quietly when it expires and sets `expired`: the
    caller raises its own error after the block, not in `except TimeoutError`.

    An error raised there keeps the TimeoutError as its context, whose frames hold the Timeout, which
    holds the task; when that task is a single-flight fill or a worker call that ends with the very
    error, that is a reference cycle, and it kept each REST body out of time (2.7 MB) until the
    cyclic collector ran. For the same reason the Timeout (`timeout`, to reschedule it) is dropped
    when the block ends.
    """

    __slots__ = ("expired", "timeout")

    def __init__(self, seconds: float | None) -> None:
        self.expired = False
        self.timeout: asyncio.Timeout | None = asyncio.timeout(seconds)

    async def __aenter__(self) -> TimeLimit:
        assert self.timeout is not None, "a TimeLimit is entered once"
        await self.timeout.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        timeout, self.timeout = self.timeout, None
        assert timeout is not None
        try:
            await timeout.__aexit__(kind, error, traceback)
        except TimeoutError:
            self.expired = True
            return True
        return False


# gRPC's timeout header (`grpc-timeout`, as grpc-gateway reads it): up to 8 digits and a unit.
_GRPC_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(value: str | None) -> float | None:
    """Seconds from a `grpc-timeout` value such as `5S` or `250m`; None when absent. A malformed one
    is INVALID_ARGUMENT, as grpc-gateway answers it: read as none, `abc`, `1.5S` and a 21-digit
    value ran with no deadline at all (an independent attacker)."""
    if value is None or not value.strip():
        return None
    match = _GRPC_TIMEOUT.fullmatch(value.strip())
    if match is None:
        raise InvalidArgument(
            f"grpc-timeout {value[:40]!r} is not a timeout: at most 8 digits and a unit, one of "
            "H, M, S, m, u, n (5S, 250m)",
            field="grpc-timeout",
        )
    return int(match.group(1)) * _UNITS[match.group(2)]
