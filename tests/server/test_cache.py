"""The caches: LRU bounds, single flight, and the API's two-level keys (raw request, canonical)."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from chainrule import engine
from chainrule.engine import parsing
from chainrule.engine.errors import (
    ChainruleError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    ParseError,
)
from chainrule.server.api import ChainruleApi
from chainrule.server.cache import ENTRY_OVERHEAD, Caches, LruCache, bounded, key_bytes, text_key
from chainrule.server.compute import jobs
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.metrics import Metrics
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb
from tests.conftest import make_settings

P = ParamSpec("P")
T = TypeVar("T")


class CountingExecutor(InlineExecutor):
    """Runs inline and records the name of every function it was given."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.calls.append(getattr(fn, "__name__", repr(fn)))
        await asyncio.sleep(0)  # yield, as a real executor does, so concurrent callers overlap
        return fn(*args, **kwargs)


def make_api(**settings: object) -> tuple[ChainruleApi, CountingExecutor, CountingExecutor]:
    symbolic, numeric = CountingExecutor(), CountingExecutor()
    config = make_settings(**settings)
    caches = Caches(config)
    api = ChainruleApi(
        config, symbolic, numeric, caches=caches, metrics=Metrics(CollectorRegistry(), VERSION, caches)
    )
    return api, symbolic, numeric


# --- LruCache ---------------------------------------------------------------------------------------


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=2, max_bytes=10**6)
    cache.put("a", 1, 0)
    cache.put("b", 2, 0)
    assert cache.lookup("a") == 1  # touching "a" makes "b" the oldest
    cache.put("c", 3, 0)
    assert "b" not in cache
    assert cache.lookup("a") == 1
    assert cache.lookup("c") == 3
    assert cache.stats.evictions == 1
    assert cache.stats.hits == 3


def test_byte_bound_evicts_and_oversized_values_are_not_kept() -> None:
    entry = ENTRY_OVERHEAD + key_bytes("a") + 100
    cache: LruCache[str, str] = LruCache("t", max_entries=100, max_bytes=3 * entry)
    for key in "abcd":
        cache.put(key, key, 100)
    assert len(cache) == 3
    assert cache.bytes == 3 * entry
    assert "a" not in cache
    cache.put("huge", "x", 10**6)
    assert "huge" not in cache
    assert len(cache) == 3


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=10, max_bytes=10**6)
    cache.put("a", 1, 50)
    cache.put("a", 2, 70)
    assert len(cache) == 1
    assert cache.bytes == ENTRY_OVERHEAD + key_bytes("a") + 70
    assert cache.lookup("a") == 2


def test_memory_stays_flat_over_100000_distinct_keys() -> None:
    cache: LruCache[str, str] = LruCache("t", max_entries=64, max_bytes=64 * 1024)
    for index in range(100_000):
        text = f"x^{index} + sin({index} y)"
        cache.put(text, text, len(text))
        assert len(cache) <= 64
        assert cache.bytes <= 64 * 1024
    assert cache.stats.evictions == 100_000 - 64


def test_zero_entries_turns_storing_off() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=0, max_bytes=10**6)
    cache.put("a", 1, 0)
    assert len(cache) == 0
    assert cache.lookup("a") is None


async def test_concurrent_identical_misses_compute_once() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=10, max_bytes=10**6)
    calls = 0

    async def compute() -> tuple[int, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 42, 8

    results = await asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(10)))
    assert results == [42] * 10
    assert calls == 1
    assert (cache.stats.misses, cache.stats.hits) == (1, 9)
    assert await cache.get_or_compute("k", compute) == 42
    assert calls == 1


async def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=10, max_bytes=10**6)
    calls = 0

    async def failing() -> tuple[int, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise InvalidArgument("nope", field="expression")

    outcomes = await asyncio.gather(
        *(cache.get_or_compute("k", failing) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, InvalidArgument) for outcome in outcomes)
    assert calls == 1
    assert len(cache) == 0
    with pytest.raises(InvalidArgument):
        await cache.get_or_compute("k", failing)
    assert calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=10, max_bytes=10**6)

    async def compute() -> tuple[int, int]:
        await asyncio.sleep(0.05)
        return 7, 8

    first = asyncio.ensure_future(cache.get_or_compute("k", compute))
    second = asyncio.ensure_future(cache.get_or_compute("k", compute))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == 7
    assert first.cancelled()
    assert cache.lookup("k") == 7


async def test_a_caller_that_joined_computes_for_itself_when_the_starters_deadline_ends_it() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=10, max_bytes=10**6)

    async def hurried() -> tuple[int, int]:
        await asyncio.sleep(0.05)
        raise DeadlineExceeded("did not finish within the request's deadline (0.05 s)")

    async def patient() -> tuple[int, int]:
        return 7, 8

    first = asyncio.ensure_future(cache.get_or_compute("k", hurried))
    second = asyncio.ensure_future(cache.get_or_compute("k", patient))
    with pytest.raises(DeadlineExceeded):
        await first  # the starter's own deadline: its error
    assert await second == 7 and cache.lookup("k") == 7


# --- keys -----------------------------------------------------------------------------------------


def test_long_texts_enter_keys_as_digests() -> None:
    short, long = "sin(x)", "x + " * 2_000 + "1"
    assert text_key(short) == short
    assert text_key(long) == text_key("x + " * 2_000 + "1") != text_key(long + " ")
    assert key_bytes(text_key(long)) < 100 < key_bytes(long) // 10


def test_bounded_keeps_small_tuples_and_digests_large_ones() -> None:
    small = (("x", 1), ("y", 2))
    assert bounded(small) == small
    large = tuple((f"v{index}" * 10, 1) for index in range(20))
    assert isinstance(bounded(large), bytes)
    assert bounded(large) == bounded(tuple(large)) != bounded(large[:-1])


def test_keys_count_in_the_byte_bound() -> None:
    cache: LruCache[str, int] = LruCache("t", max_entries=10, max_bytes=10**6)
    cache.put("k" * 1000, 1, 0)
    assert cache.bytes >= 1000 + ENTRY_OVERHEAD


async def test_repeated_formats_share_one_key_and_too_many_are_refused() -> None:
    api, symbolic, _ = make_api(max_field_entries=8)
    once = pb.DifferentiateRequest(expression="x^2", formats=[pb.OUTPUT_FORMAT_LATEX])
    repeated = pb.DifferentiateRequest(expression="x^2", formats=[pb.OUTPUT_FORMAT_LATEX] * 8)
    assert await api.differentiate(once) == await api.differentiate(repeated)
    assert len(api.caches.differentiate) == 1
    assert symbolic.calls.count("derive_parsed") == 1
    with pytest.raises(LimitExceeded) as caught:
        await api.differentiate(
            pb.DifferentiateRequest(expression="x^2", formats=[pb.OUTPUT_FORMAT_LATEX] * 9)
        )
    assert caught.value.metadata["limit"] == "field_entries"
    assert caught.value.violations[0].field == "formats"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.DifferentiateRequest(expression="x", wrt=[pb.Wrt(variable="x")] * 9), "wrt"),
        (pb.EvaluateRequest(expression="x", wrt=[pb.Wrt(variable="x")] * 9), "wrt"),
        (pb.EvaluateRequest(expression="x", point={f"v{i}": 1.0 for i in range(9)}), "point"),
        (pb.GradientAtPointRequest(expression="x", variables=["x"] * 9), "variables"),
        (pb.DifferentiateRequest(expression="x" * 101), "expression"),
        (pb.JacobianRequest(expressions=["x"], variables=["x"] * 9), "variables"),
        (pb.JacobianRequest(expressions=["x", "y" * 101]), "expressions[1]"),
        (pb.JacobianRequest(expressions=["x"], point={f"v{i}": 1.0 for i in range(9)}), "point"),
        (pb.SeriesRequest(expression="x", around="1" * 101), "around"),
        (pb.SeriesRequest(expression="x", formats=[pb.OUTPUT_FORMAT_LATEX] * 9), "formats"),
    ],
)
async def test_fields_that_make_keys_are_bounded_before_the_key_is_built(request_: Any, field: str) -> None:
    api, symbolic, _ = make_api(max_field_entries=8, max_expression_length=100)
    calls: dict[type, Callable[[Any], Awaitable[object]]] = {
        pb.DifferentiateRequest: api.differentiate,
        pb.EvaluateRequest: api.evaluate,
        pb.GradientAtPointRequest: api.gradient,
        pb.JacobianRequest: api.jacobian,
        pb.SeriesRequest: api.series,
    }
    with pytest.raises(LimitExceeded) as caught:
        await calls[type(request_)](request_)
    assert caught.value.violations[0].field == field
    assert symbolic.calls == []  # refused before any work


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.DifferentiateRequest(expression="x", wrt=[pb.Wrt(variable="x" * 100_000)]), "wrt[0].variable"),
        (pb.GradientAtPointRequest(expression="x", variables=["x", "y" * 100_000]), "variables[1]"),
    ],
)
async def test_a_long_variable_name_is_refused_before_any_work(request_: Any, field: str) -> None:
    api, symbolic, _ = make_api()
    call = api.differentiate if isinstance(request_, pb.DifferentiateRequest) else api.gradient
    with pytest.raises(InvalidArgument) as caught:
        await call(request_)
    assert caught.value.violations[0].field == field
    assert len(caught.value.message) < 200 and not any(c * 41 in caught.value.message for c in "xy")
    assert symbolic.calls == []


async def test_every_key_held_is_small_whatever_the_request() -> None:
    api, _, _ = make_api()
    long_sum = " + ".join(f"x^{power}" for power in range(2, 400))
    await api.differentiate(
        pb.DifferentiateRequest(expression=long_sum, formats=[pb.OUTPUT_FORMAT_LATEX] * 60)
    )
    await api.evaluate(pb.EvaluateRequest(expression=long_sum, point={"x": 0.5}))
    await api.gradient(pb.GradientAtPointRequest(expression=long_sum, point={"x": 0.5}, hessian=True))
    # 60 rows of 250 characters: 15 KB of text (rows of long_sum took 84 s to compile).
    rows = [" + ".join(f"x^{power}" for power in range(2, 40)) + f" + {index} y" for index in range(60)]
    await api.jacobian(pb.JacobianRequest(expressions=rows, point={"x": 0.5, "y": 1.0}))
    await api.series(
        pb.SeriesRequest(expression=long_sum, around="1/2", formats=[pb.OUTPUT_FORMAT_LATEX] * 60)
    )
    await api.parse(pb.ParseRequest(expression=long_sum))
    await api.parse(pb.ParseRequest(expression="x" * 100_000))  # too long: the answer is the error
    equation = f"{long_sum} = y^2 + y"
    await api.differentiate(
        pb.DifferentiateRequest(expression=equation, dependent="y", wrt=[pb.Wrt(variable="x")])
    )
    await api.evaluate(
        pb.EvaluateRequest(
            expression=equation, dependent="y", wrt=[pb.Wrt(variable="x")], point={"x": 0.5, "y": 1}
        )
    )
    for cache in api.caches:
        for key in cache._data:
            assert key_bytes(key) <= 1024, (cache.name, key)


# --- the API's use of the caches --------------------------------------------------------------------


async def test_a_repeated_differentiate_touches_no_executor_parser_or_sympy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, symbolic, numeric = make_api()
    request = pb.DifferentiateRequest(expression="sin(x^2)", formats=[pb.OUTPUT_FORMAT_LATEX])
    first = await api.differentiate(request)
    assert symbolic.calls == ["parse_canonical", "derive_parsed", "latex"]

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the hit path reached the engine")

    monkeypatch.setattr(parsing, "parse", forbidden)
    monkeypatch.setattr(jobs, "derive_parsed", forbidden)
    second = await api.differentiate(request)
    assert second == first
    assert symbolic.calls == ["parse_canonical", "derive_parsed", "latex"]
    assert numeric.calls == []
    assert api.caches.differentiate.stats.hits == 1


@pytest.mark.parametrize(
    ("spellings", "reason"),
    [
        (["x^2", "x**2", "x ^ 2"], "power operators"),
        (["2x + 1", "2*x+1", "1 + 2 x"], "implicit product and term order"),
        (["sin(x)^2", "(sin x)^2", "(sin x)²"], "one expression, three notations"),
    ],
)
async def test_spellings_of_one_expression_share_downstream_entries(
    spellings: list[str], reason: str
) -> None:
    api, symbolic, _ = make_api()
    answers = {(await api.differentiate(pb.DifferentiateRequest(expression=s))).derivative for s in spellings}
    assert len(answers) == 1, reason
    assert symbolic.calls.count("parse_canonical") == len(spellings)
    assert symbolic.calls.count("derive_parsed") == 1, reason
    assert api.caches.derivative.stats.misses == 1
    assert api.caches.derivative.stats.hits == len(spellings) - 1


async def test_options_that_change_the_answer_are_part_of_the_key() -> None:
    api, symbolic, _ = make_api()
    requests = [
        pb.DifferentiateRequest(expression="x^3"),
        pb.DifferentiateRequest(expression="x^3", wrt=[pb.Wrt(variable="x", order=2)]),
        pb.DifferentiateRequest(expression="(x+1)^2", simplification=pb.SIMPLIFICATION_NONE),
        pb.DifferentiateRequest(expression="(x+1)^2", simplification=pb.SIMPLIFICATION_FULL),
    ]
    answers = [(await api.differentiate(request)).derivative for request in requests]
    assert answers[0] != answers[1]
    assert symbolic.calls.count("derive_parsed") == 4
    assert api.caches.differentiate.stats.hits == 0


async def test_parse_errors_are_cached_cheaply_and_raised_fresh() -> None:
    api, symbolic, _ = make_api()
    errors: list[ChainruleError] = []
    for _ in range(2):
        with pytest.raises(ParseError) as caught:
            await api.differentiate(pb.DifferentiateRequest(expression="sin(x"))
        errors.append(caught.value)
    assert symbolic.calls == ["parse_canonical"]
    assert errors[0] is not errors[1]
    assert errors[0].message == errors[1].message
    assert errors[1].metadata == errors[0].metadata
    assert len(api.caches.differentiate) == 0  # errors are never stored as results


async def test_other_errors_are_not_cached() -> None:
    api, symbolic, _ = make_api()
    for _ in range(2):
        with pytest.raises(InvalidArgument):
            await api.differentiate(pb.DifferentiateRequest(expression="x y"))  # which variable?
    assert symbolic.calls.count("derive_parsed") == 2
    assert symbolic.calls.count("parse_canonical") == 1


async def test_a_refusal_by_a_limit_is_remembered_and_raised_fresh() -> None:
    """A derivative past derivative_nodes took 3 to 4 s of a worker every time it was asked (an
    independent tester): under the same limits it is refused again at once."""
    api, symbolic, _ = make_api(max_derivative_nodes=30)
    request = pb.DifferentiateRequest(expression="tan(x)^5*exp(x^2)")
    request.wrt.add(variable="x", order=4)
    refusals: list[LimitExceeded] = []
    for _ in range(2):
        with pytest.raises(LimitExceeded) as caught:
            await api.differentiate(request)
        refusals.append(caught.value)
    assert symbolic.calls.count("derive_parsed") == 1
    assert refusals[0] is not refusals[1] and refusals[0].message == refusals[1].message
    assert refusals[1].__traceback__ is not None and refusals[1].metadata["limit"] == "derivative_nodes"


async def test_a_series_refused_by_a_limit_is_remembered() -> None:
    """A Series past derivative_nodes took a worker's second every time (an independent hunt)."""
    api, symbolic, _ = make_api(max_derivative_nodes=30)
    request = pb.SeriesRequest(expression="tan(tan(x))", order=6)
    for _ in range(2):
        with pytest.raises(LimitExceeded):
            await api.series(request)
    assert symbolic.calls.count("expand_series") == 1


async def test_a_derivative_without_text_counts_what_it_holds() -> None:
    """A derivative the grammar cannot write (zeta's) has no text, but its tree comes and stays as a
    pickle: 60 KB were counted as 760 bytes (an independent tester); this one, 4.5 KB."""
    api, _, _ = make_api()
    text = "zeta(s)*" + "*".join(f"(s + {k})" for k in range(1, 40))
    with pytest.raises(FailedPrecondition):
        await api.differentiate(pb.DifferentiateRequest(expression=text))
    derivative = engine.differentiate(parsing.parse(text), [("s", 1)], engine.Simplification.FAST)
    assert api.caches.derivative.bytes >= len(pickle.dumps(derivative)) > 4_000


async def test_concurrent_identical_differentiates_derive_once() -> None:
    api, symbolic, _ = make_api()
    request = pb.DifferentiateRequest(expression="tan(x)^5")
    answers = await asyncio.gather(*(api.differentiate(request) for _ in range(8)))
    assert len({answer.derivative for answer in answers}) == 1
    assert symbolic.calls == ["parse_canonical", "derive_parsed"]


async def test_repeated_evaluate_compiles_once_and_skips_executors_for_one_point() -> None:
    api, symbolic, numeric = make_api()
    for spelling, x in [("x^2 + 1", 2.0), ("x**2+1", 3.0), ("x^2 + 1", 4.0)]:
        response = await api.evaluate(pb.EvaluateRequest(expression=spelling, point={"x": x}))
        assert response.value == x * x + 1
    assert numeric.calls == []  # one-point evaluations run inline
    # Compiling is symbolic work (in a killable worker under the budget); once per canonical form.
    assert symbolic.calls == ["parse_canonical", "compile_function", "parse_canonical"]
    assert api.caches.compiled.stats.misses == 1
    assert api.caches.compiled.stats.hits == 1
    assert api.caches.evaluate.stats.hits == 1


async def test_a_batch_alone_in_flight_computes_where_it_arrived_and_others_take_a_numeric_thread() -> None:
    """Eight thousand points of a cubic are above the tiny work always computed inline: on the event
    loop only while no other call is in flight (saving the hop); with one more, on the numeric
    executor, whose shares are fair between callers. Past `_ALONE_INLINE_COST` a call alone goes
    there too: at adversarial arguments a kernel costs up to some 200 times its weight (twenty sines
    at 8,000 points were computed on the loop: an independent attacker held it 0.25 s a call)."""
    api, _, numeric = make_api()

    def request(expression: str) -> pb.EvaluateRequest:
        points = {"x": pb.Array(f64le=np.linspace(-1, 1, 8_000).tobytes())}
        return pb.EvaluateRequest(expression=expression, points=points)

    alone = api.calls.admit(64)
    first = await api.evaluate_reply(request("x^3 - 2*x + 1"))
    assert numeric.calls == []
    await api.evaluate_reply(request(" + ".join(f"sin({k}*x)" for k in range(1, 21))))
    assert numeric.calls == ["_reply"]
    other = api.calls.admit(64)
    second = await api.evaluate_reply(request("x^3 - 2*x + 1"))
    assert numeric.calls == ["_reply", "_reply"]
    assert first.SerializeToString() == second.SerializeToString()
    alone.release()
    other.release()


async def test_repeated_gradient_reuses_the_compiled_gradient() -> None:
    api, symbolic, numeric = make_api()
    request = pb.GradientAtPointRequest(expression="x^2 y", point={"x": 3.0, "y": 2.0}, hessian=True)
    for _ in range(3):
        response = await api.gradient(request)
        assert list(response.gradient) == [12.0, 9.0]
        assert list(response.hessian) == [4.0, 6.0, 6.0, 0.0]
    assert symbolic.calls == ["parse_canonical", "compile_gradient"]
    assert numeric.calls == []
    assert api.caches.gradient.stats.hits == 2


async def test_a_repeated_jacobian_reuses_one_compiled_plan_for_the_whole_system() -> None:
    api, symbolic, numeric = make_api()
    request = pb.JacobianRequest(expressions=["x^2 y", "x + y"], point={"x": 3.0, "y": 2.0})
    for _ in range(3):
        response = await api.jacobian(request)
        assert list(response.jacobian) == [12.0, 9.0, 1.0, 1.0]
    # One compile of both rows, in the symbolic pool as a gradient's; nothing on the numeric threads.
    assert symbolic.calls == ["parse_canonical", "parse_canonical", "compile_jacobian"]
    assert numeric.calls == []
    assert api.caches.jacobian.stats.hits == 2


async def test_repeated_series_and_implicit_derivatives_are_answered_from_the_caches() -> None:
    api, symbolic, _ = make_api()
    for _ in range(2):
        await api.series(pb.SeriesRequest(expression="sin(x)", around="pi/2"))
        await api.differentiate(pb.DifferentiateRequest(expression="x^2 + y^2 = 25", dependent="y"))
    assert symbolic.calls == ["parse_canonical", "expand_series", "derive_implicit"]
    assert api.caches.series.stats.hits == 1 and api.caches.differentiate.stats.hits == 1
    # The implicit derivative is cached below the request too: Evaluate reuses it.
    await api.evaluate(pb.EvaluateRequest(expression="x^2 + y^2 = 25", dependent="y", point={"x": 3, "y": 4}))
    assert symbolic.calls[2:] == ["derive_implicit", "compile_function"]  # no second derivation


@pytest.mark.parametrize(
    "request_",
    [
        pb.SeriesRequest(expression="sin(x)", variable="y" * 1_000_000),
        pb.DifferentiateRequest(expression="x^2 + y^2 = 25", dependent="y" * 1_000_000),
        pb.EvaluateRequest(expression="x^2 + y^2 = 25", dependent="y" * 1_000_000, point={"x": 3}),
    ],
    ids=["series variable", "differentiate dependent", "evaluate dependent"],
)
async def test_a_long_name_is_refused_before_it_enters_a_key_or_a_job(request_: Any) -> None:
    # A 60 MB name was hashed into its key and shipped to a worker (an independent attacker).
    api, symbolic, _ = make_api()
    name = {pb.SeriesRequest: "series", pb.DifferentiateRequest: "differentiate"}.get(
        type(request_), "evaluate"
    )
    with pytest.raises(InvalidArgument) as caught:
        await getattr(api, name)(request_)
    assert "is not a valid variable name" in caught.value.message and len(caught.value.message) < 300
    assert symbolic.calls == []


async def test_every_cache_stays_within_a_small_bound() -> None:
    api, _, _ = make_api(cache_entries=8, cache_compiled_entries=4)
    for index in range(60):
        text = f"{index + 2} x^{index % 7 + 2} + sin({index + 1} x)"
        await api.differentiate(pb.DifferentiateRequest(expression=text))
        await api.evaluate(pb.EvaluateRequest(expression=text, point={"x": 0.5}))
        for cache in api.caches:
            assert len(cache) <= cache.max_entries, cache.name
            assert cache.bytes <= cache.max_bytes, cache.name
    assert api.caches.parse.stats.evictions == 60 - 8
    assert api.caches.compiled.stats.evictions == 60 - 4


@pytest.mark.parametrize(
    "request_",
    [
        # Steps of a chain 30 deep: each carries its chain rule's layers, O(depth^3) in all (540 KB).
        pb.DifferentiateRequest(expression="sin(" * 30 + "x" + ")" * 30, explain=True),
        pb.DifferentiateRequest(
            expression="exp(x*y)=x+y",
            dependent="y",
            explain=True,
            verify=True,
            formats=[pb.OUTPUT_FORMAT_LATEX, pb.OUTPUT_FORMAT_MATHML, pb.OUTPUT_FORMAT_C],
        ),
        pb.SeriesRequest(
            expression="tan(x)*exp(x)", order=12, around="1/3", formats=[pb.OUTPUT_FORMAT_LATEX]
        ),
    ],
)
async def test_a_cached_reply_counts_at_least_its_serialised_size(request_: Any) -> None:
    # An in-memory reply takes about its serialised size (30 such explanations: 16.7 MB serialised,
    # 19.7 MB of RSS); the differentiate cache counted 2.5 MB of them, so it held 8x its byte bound.
    api, _, _ = make_api()
    call = api.differentiate if isinstance(request_, pb.DifferentiateRequest) else api.series
    reply = await call(request_)
    cache = api.caches.differentiate if isinstance(request_, pb.DifferentiateRequest) else api.caches.series
    assert cache.bytes >= reply.ByteSize()
