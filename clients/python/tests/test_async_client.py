"""The asyncio client against a live server: the same calls, concurrency, errors and retries."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from chainrule.client import AsyncClient, Evaluation, ParseError, RetryPolicy, UnavailableError

from manual_time import ClockedAsyncClient


def test_async_calls(target: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(target) as client:
            derivative = await client.differentiate("sin(x^2)", "x", latex=True)
            assert derivative.latex and derivative.variables == ("x",)
            value = await client.evaluate(derivative.derivative, {"x": 0.0})
            assert value.value == 0.0
            many = await client.evaluate("x^2", points={"x": [1.0, 2.0, 3.0]})
            assert many.values == [1.0, 4.0, 9.0]
            grad = await client.gradient("x*y", {"x": 2.0, "y": 5.0})
            assert grad.gradient == (5.0, 2.0)
            info = await client.server_info()
            assert "sin" in info.functions
            reading = await client.parse("2 foo(x)")
            assert reading.error is not None
            assert (reading.error.reason, reading.error.position) == ("UNKNOWN_FUNCTION", 2)
            assert (await client.parse("x^2")).canonical == "x^2"

    asyncio.run(scenario())


def test_async_concurrent_calls(target: str) -> None:
    async def scenario() -> list[Evaluation]:
        async with AsyncClient(target) as client:
            calls = [client.evaluate("x + 1", {"x": float(i)}) for i in range(20)]
            return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    assert [r.value for r in results] == [float(i + 1) for i in range(20)]


def test_async_parse_error_position(target: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(target) as client:
            await client.differentiate("(x + 1))")

    with pytest.raises(ParseError) as caught:
        asyncio.run(scenario())
    assert caught.value.position == 7
    assert caught.value.field_violations[0].field == "expression"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_async_server_down_is_unavailable_after_bounded_retries() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
    opened: list[ClockedAsyncClient] = []

    async def scenario() -> None:
        async with ClockedAsyncClient(f"127.0.0.1:{_free_port()}", retry=policy, timeout=60) as client:
            opened.append(client)
            await client.evaluate("x", {"x": 1.0})

    with pytest.raises(UnavailableError) as caught:
        asyncio.run(scenario())
    # UNAVAILABLE on every attempt, not the DEADLINE_EXCEEDED of a call that waited; then no more
    # attempts than the policy allows.
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(opened[0].clock.waits) == policy.max_attempts - 1
