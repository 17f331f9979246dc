"""The Parse RPC in the API layer: how the server reads a text, its mistakes as answers, its own executor."""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import pytest
from prometheus_client import CollectorRegistry

from chainrule.engine.errors import DeadlineExceeded
from chainrule.engine.parsing import TooSlow
from chainrule.server import cache
from chainrule.server.api import PARSE_HOLD_SECONDS, ChainruleApi
from chainrule.server.app import Application
from chainrule.server.cache import Caches
from chainrule.server.compute import deadlines
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.compute.pool import ProcessExecutor
from chainrule.server.metrics import Metrics
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb
from tests.conftest import make_settings
from tests.server.test_cache import CountingExecutor

P = ParamSpec("P")
T = TypeVar("T")


class StuckExecutor(InlineExecutor):
    """An executor whose every task waits until released: a symbolic pool busy with cold derivations."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.started.append(getattr(fn, "__name__", repr(fn)))
        await self.release.wait()
        return fn(*args, **kwargs)


def make_api(symbolic: InlineExecutor, parsing: InlineExecutor, **settings: object) -> ChainruleApi:
    config = make_settings(**settings)
    caches = Caches(config)
    metrics = Metrics(CollectorRegistry(), VERSION, caches)
    return ChainruleApi(config, symbolic, InlineExecutor(), caches=caches, metrics=metrics, parsing=parsing)


@pytest.mark.parametrize(
    ("text", "canonical", "latex", "variables"),
    [
        ("sin x²", "sin(x^2)", r"\sin{\left(x^{2} \right)}", ["x"]),
        ("2(3x+1)", "6*x + 2", "6 x + 2", ["x"]),
        ("x y + theta_1", "theta_1 + x*y", r"\theta_{1} + x y", ["theta_1", "x", "y"]),
        ("2 pi", "2*pi", r"2 \pi", []),
    ],
)
async def test_parse_reads_text_as_the_server_does(
    text: str, canonical: str, latex: str, variables: list[str]
) -> None:
    api = make_api(CountingExecutor(), CountingExecutor())
    reply = await api.parse(pb.ParseRequest(expression=text))
    assert not reply.HasField("error")
    assert (reply.canonical, reply.latex, list(reply.variables)) == (canonical, latex, variables)


@pytest.mark.parametrize(
    ("text", "reason", "position", "says"),
    [
        ("sin(x", "PARSE_ERROR", 3, "'(' at 3 is never closed"),
        ("x +* y", "PARSE_ERROR", 3, "after '+'"),
        ("", "PARSE_ERROR", 0, "required"),
        ("2 foo(x)", "UNKNOWN_FUNCTION", 2, "foo"),
        ("π + ) ", "PARSE_ERROR", 4, "after '+'"),  # code points, not bytes: π is 2 bytes in UTF-8
    ],
)
async def test_a_text_that_does_not_parse_is_an_answer_with_its_position(
    text: str, reason: str, position: int, says: str
) -> None:
    api = make_api(CountingExecutor(), CountingExecutor())
    reply = await api.parse(pb.ParseRequest(expression=text))
    assert reply.HasField("error")
    assert (reply.error.reason, reply.error.position) == (reason, position)
    assert says in reply.error.message
    assert (reply.canonical, reply.latex, list(reply.variables)) == ("", "", [])


async def test_a_text_over_the_length_limit_is_answered_without_a_worker_or_a_cache_entry() -> None:
    """Its answer is the parser's (what Differentiate refuses it with), found before any key is
    hashed or the text crosses to a worker: 60 MB texts, each hashed on the event loop and sent to
    Parse's worker, held other callers' health checks 0.27 s a call (an attack, 2026-12-07)."""
    symbolic, parsing = CountingExecutor(), CountingExecutor()
    api = make_api(symbolic, parsing)
    text = "x+" * 1_000_000
    reply = await api.parse(pb.ParseRequest(expression=text))
    assert (symbolic.calls, parsing.calls) == ([], [])
    assert (len(api.caches.parse_reply), len(api.caches.parse)) == (0, 0)
    with pytest.raises(Exception) as caught:
        await api.differentiate(pb.DifferentiateRequest(expression=text))
    error = caught.value
    assert (reply.error.reason, reply.error.message) == ("LIMIT_EXCEEDED", error.message)  # type: ignore[attr-defined]
    assert str(reply.error.position) == error.metadata["position"]  # type: ignore[attr-defined]


async def test_the_answer_carries_what_differentiate_would_send_as_an_error() -> None:
    api = make_api(CountingExecutor(), CountingExecutor())
    reply = await api.parse(pb.ParseRequest(expression="sin(x"))
    with pytest.raises(Exception) as caught:
        await api.differentiate(pb.DifferentiateRequest(expression="sin(x"))
    error = caught.value
    assert reply.error.message == error.message  # type: ignore[attr-defined]
    assert str(reply.error.position) == error.metadata["position"]  # type: ignore[attr-defined]


async def test_a_limit_names_itself_and_where_the_text_passed_it() -> None:
    api = make_api(CountingExecutor(), CountingExecutor(), max_expression_length=10)
    reply = await api.parse(pb.ParseRequest(expression="x + " * 5 + "x"))
    assert reply.error.reason == "LIMIT_EXCEEDED"
    assert reply.error.position == 10
    assert (reply.error.metadata["limit"], reply.error.metadata["maximum"]) == ("expression_length", "10")


async def test_a_text_refused_as_too_long_is_not_kept_with_its_refusal() -> None:
    # The cached refusal kept its traceback, whose frames held the text: 57 MB a call of a 60 MB
    # text, uncounted by the cache (an independent attacker, 2026-12-07).
    api = make_api(CountingExecutor(), CountingExecutor())
    tail = "x+" * 2_500_000 + "1"  # 5 MB
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(3):
            reply = await api.parse(pb.ParseRequest(expression=f"{k}*{tail}"))
            assert reply.error.metadata["limit"] == "expression_length"
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, held


async def test_an_exact_power_sympy_would_make_of_an_exponential_is_a_limit() -> None:
    # Sympy writing e^(10^30 log(10^-100)) as an exact power of 10^32 digits held Parse's thread (as
    # it then was) without end, taking memory as it went.
    api = make_api(CountingExecutor(), CountingExecutor())
    reply = await api.parse(pb.ParseRequest(expression="exp(x + log(1e-100)*10^30)"))
    assert (reply.error.reason, reply.error.metadata["limit"]) == ("LIMIT_EXCEEDED", "power_bits")


async def test_parse_never_waits_behind_cold_symbolic_work() -> None:
    symbolic, parsing = StuckExecutor(), CountingExecutor()
    api = make_api(symbolic, parsing)
    derivation = asyncio.ensure_future(api.differentiate(pb.DifferentiateRequest(expression="cos(y)")))
    while not symbolic.started:
        await asyncio.sleep(0)
    assert symbolic.started == ["parse_canonical"]  # the symbolic executor is busy, and stays so
    for text in ("sin(x^2)", "cos(y)"):  # the same text as the queued parse too: not joined
        reply = await asyncio.wait_for(api.parse(pb.ParseRequest(expression=text)), timeout=30)
        assert reply.canonical == text
    assert parsing.calls == ["parse_canonical", "readable"] * 2
    assert symbolic.started == ["parse_canonical"]
    symbolic.release.set()
    assert (await derivation).derivative == "-sin(y)"


async def test_a_repeated_parse_is_a_lookup_and_fills_the_parse_cache_for_differentiate() -> None:
    symbolic, parsing = CountingExecutor(), CountingExecutor()
    api = make_api(symbolic, parsing)
    first = await api.parse(pb.ParseRequest(expression="x^3"))
    assert await api.parse(pb.ParseRequest(expression="x^3")) == first
    await api.parse(pb.ParseRequest(expression="x^3 +"))
    await api.parse(pb.ParseRequest(expression="x^3 +"))
    assert parsing.calls == ["parse_canonical", "readable", "parse_canonical"]
    assert api.caches.parse_reply.stats.hits == 2
    await api.differentiate(pb.DifferentiateRequest(expression="x^3"))
    assert symbolic.calls == ["derive_parsed"]  # the parse came from the cache Parse filled


async def test_the_server_gives_parse_a_bounded_executor_of_its_own() -> None:
    app = Application(make_settings(symbolic_workers=0, parse_queue=3))
    try:
        parsing = app.api._parsing
        assert parsing is not app.symbolic and parsing is not app.numeric
        admission = parsing.admission  # type: ignore[attr-defined]
        assert (admission.name, admission.concurrency, admission.queue) == ("parse", 1, 3)
    finally:
        await app.stop()


async def test_with_symbolic_workers_parse_runs_in_a_killable_worker_of_its_own() -> None:
    # Nothing stops a thread, and one sympy step can run long and take memory as it goes: Parse's
    # work runs in a process of its own, under the workers' memory limit, stopped past its hold.
    app = Application(make_settings(symbolic_workers=1, symbolic_spares=0, parse_queue=3))
    assert isinstance(app.parsing, ProcessExecutor) and app.parsing is not app.pool
    try:
        await app.parsing.start()
        assert (app.parsing.admission.name, app.parsing.admission.queue) == ("parse", 3)
        assert (app.parsing.hold_seconds, app.parsing.size) == (PARSE_HOLD_SECONDS, 2)  # and a spare
        assert app.parsing.memory_bytes == app.settings.worker_memory_bytes
        assert await app.parsing.run(os.getpid) not in (os.getpid(), *app.pool.worker_pids())  # type: ignore[union-attr]
        assert await app.parsing.run(os.getpid) in app.parsing.worker_pids()
    finally:
        await app.parsing.close()
        await app.stop()


class HeldExecutor(CountingExecutor):
    """Parse's worker stopped for holding too long on the tasks named."""

    def __init__(self, *held: str) -> None:
        super().__init__()
        self.held = held

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if getattr(fn, "__name__", "") in self.held:
            self.calls.append(getattr(fn, "__name__", ""))
            raise TooSlow("held Parse's worker past its hold")
        return await super().run(fn, *args, **kwargs)


@pytest.mark.parametrize("held", ["parse_canonical", "readable"])
async def test_work_stopped_in_parse_s_worker_runs_again_in_the_symbolic_workers(held: str) -> None:
    symbolic, parsing = CountingExecutor(), HeldExecutor(held)
    api = make_api(symbolic, parsing)
    reply = await api.parse(pb.ParseRequest(expression="sin(x)^2 + y"))
    assert (reply.canonical, list(reply.variables)) == ("y + sin(x)^2", ["x", "y"])
    assert symbolic.calls == [held]


async def test_a_parse_past_its_allowance_runs_again_in_the_symbolic_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A parse that outlasts its allowance in Parse's worker (sympy evaluating functions of numbers as
    # it builds them) gives up there, so that the worker answers the next check, and is parsed again
    # where the budget and the caller's deadline hold; so does printing it (900 factors took 1.2 s to
    # print, held the worker to its hold, and another caller's check waited behind it: an independent
    # tester). An allowance already spent stands for slow work.
    monkeypatch.setattr("chainrule.server.api._PARSE_ALLOWANCE_SECONDS", -1.0)
    symbolic, parsing = CountingExecutor(), CountingExecutor()
    api = make_api(symbolic, parsing)
    reply = await api.parse(pb.ParseRequest(expression="floor(zeta(3)*10^20) + x"))
    assert (reply.canonical, list(reply.variables)) == ("x + 120205690315959428539", ["x"])
    assert (parsing.calls, symbolic.calls) == (
        ["parse_canonical", "readable"],
        ["parse_canonical", "readable"],
    )
    assert api.caches.parse.lookup(cache.text_key("floor(zeta(3)*10^20) + x")) is not None


async def test_a_caller_whose_parse_overran_parses_in_the_symbolic_workers_for_a_while() -> None:
    # One worker cannot be shared fairly by queueing: a caller keeping slow texts in flight held it
    # to its allowance, call after call, and every other caller's cold check waited behind one
    # (17 -> 228 ms p50; tester round 5). After one overrun, that caller's parses skip the worker.
    symbolic, parsing = CountingExecutor(), HeldExecutor("parse_canonical")
    api = make_api(symbolic, parsing)

    async def parse(caller: str, text: str) -> pb.ParseResponse:
        with deadlines.request_scope(None, lambda: caller):
            return await api.parse(pb.ParseRequest(expression=text))

    assert (await parse("127.0.0.2", "sin(x)")).canonical == "sin(x)"
    assert parsing.calls == ["parse_canonical"]  # overran; readable went straight to the symbolic
    assert symbolic.calls == ["parse_canonical", "readable"]
    assert (await parse("127.0.0.2", "cos(x)")).canonical == "cos(x)"
    assert parsing.calls == ["parse_canonical"]  # the slow caller no longer holds Parse's worker
    parsing.held = ()
    assert (await parse("127.0.0.3", "tan(x)")).canonical == "tan(x)"
    assert parsing.calls == ["parse_canonical", "parse_canonical", "readable"]  # others still do


class OutOfTimeExecutor(CountingExecutor):
    """Parse's worker busy with each text past the caller's deadline, shorter than the allowance."""

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.calls.append(getattr(fn, "__name__", ""))
        raise DeadlineExceeded("parsing did not finish within the request's deadline (0.2 s)")


async def test_a_caller_whose_deadline_ends_a_slow_parse_first_is_moved_all_the_same() -> None:
    # A deadline shorter than the allowance never lets the caller see TooSlow, while the worker goes
    # on to the allowance: 0.2 s deadlines kept the lane, and others' cold checks waited 0.5 s behind
    # two of them (tester round 6).
    symbolic, parsing = CountingExecutor(), OutOfTimeExecutor()
    api = make_api(symbolic, parsing)
    with deadlines.request_scope(None, lambda: "127.0.0.2"):
        with pytest.raises(DeadlineExceeded):
            await api.parse(pb.ParseRequest(expression="sin(x)"))
        assert (await api.parse(pb.ParseRequest(expression="cos(x)"))).canonical == "cos(x)"
    assert parsing.calls == ["parse_canonical"]
    assert symbolic.calls == ["parse_canonical", "readable"]
