"""Streaming gRPC calls (health's Watch, reflection): our health servicer, and the bounds of
transport/streams.py (open streams per caller and in all, request size, replies taken in time)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chainrule.engine.errors import ChainruleError
from chainrule.server.app import Application
from chainrule.server.sizing import STREAM_MESSAGES
from chainrule.server.transport.grpc_server import SERVICE_NAME
from chainrule.server.transport.streams import OpenStreams
from tests.conftest import log_lines, make_settings
from tests.h2raw import NonReadingClient

HealthResponse = health_pb2.HealthCheckResponse
WATCH = "/grpc.health.v1.Health/Watch"
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"  # a gRPC frame of an empty HealthCheckRequest


@pytest.fixture
async def small_app() -> AsyncIterator[Application]:
    """A server that keeps at most 32 streams open, 2 for one caller."""
    app = Application(make_settings(symbolic_workers=0, max_streams=32, grace_seconds=2.0))
    await app.start()
    yield app
    await app.stop()


async def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


class _Context:
    """A call's context as `OpenStreams` sees it: its caller, and its done callbacks."""

    def __init__(self, caller: str) -> None:
        self.caller = caller
        self.callbacks: list[Callable[[object], None]] = []

    def add_done_callback(self, callback: Callable[[object], None]) -> None:
        self.callbacks.append(callback)

    def done(self) -> None:
        for callback in self.callbacks:
            callback(self)


def test_open_streams_are_bounded_per_caller_and_in_all() -> None:
    # 32 streams: 2 for one caller, the last 4 for callers holding none.
    streams = OpenStreams(32, retry_after_seconds=0.5, caller_of=lambda context: context.caller)
    contexts = [_Context(f"caller {index // 2}") for index in range(28)]
    for context in contexts[:2]:
        streams.count(context)
    with pytest.raises(ChainruleError) as refused:
        streams.count(_Context("caller 0"))
    assert refused.value.reason == "OVERLOADED"
    assert refused.value.metadata["cause"] == "caller_share"
    assert refused.value.retry_after_seconds == 0.5
    for context in contexts[2:]:
        streams.count(context)
    newcomers = [_Context(f"newcomer {index}") for index in range(4)]
    streams.count(newcomers[0])  # the kept part: for callers holding none
    with pytest.raises(ChainruleError) as holding:
        streams.count(_Context("newcomer 0"))
    assert holding.value.metadata["cause"] == "overloaded"
    for context in newcomers[1:]:
        streams.count(context)
    assert streams.open == 32
    with pytest.raises(ChainruleError) as full:
        streams.count(_Context("one more"))
    assert full.value.metadata["cause"] == "overloaded"
    for context in contexts + newcomers:
        context.done()
    assert streams.open == 0
    streams.count(_Context("one more"))


async def test_watch_tells_each_status_and_unknown_services(small_app: Application) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{small_app.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        whole = health.Watch(health_pb2.HealthCheckRequest())
        assert (await whole.read()).status == HealthResponse.SERVING
        unknown = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert (await unknown.read()).status == HealthResponse.SERVICE_UNKNOWN
        listed = await health.List(health_pb2.HealthListRequest())
        assert {name: s.status for name, s in listed.statuses.items()} == {
            "": HealthResponse.SERVING,
            SERVICE_NAME: HealthResponse.SERVING,
        }
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        small_app.health.enter_graceful_shutdown()
        assert (await whole.read()).status == HealthResponse.NOT_SERVING
        small_app.health.set("", HealthResponse.SERVING)  # ignored once draining
        listed = await health.List(health_pb2.HealthListRequest())
        assert listed.statuses[""].status == HealthResponse.NOT_SERVING
        whole.cancel()
        unknown.cancel()


async def test_an_unread_watch_does_not_hold_up_the_drain() -> None:
    # grpc_health's Watch wrote each status holding the lock every status change takes: one Watch
    # from a client that reads nothing (a window of 0) kept the drain's NOT_SERVING waiting before
    # its grace began, and the server never exited (an independent tester).
    app = Application(make_settings(symbolic_workers=0, grace_seconds=1.0))
    await app.start()
    stopped = False
    try:
        async with NonReadingClient(app.grpc_port, "127.0.0.2", goaway_ok=True) as client:
            await client.send(WATCH, EMPTY_MESSAGE, end=True)
            await _wait_for(lambda: app.streams.open == 1)
            async with asyncio.timeout(4.0):
                await app.stop()
            stopped = True
    finally:
        if not stopped:
            await app.stop()


async def test_one_caller_holds_a_sixteenth_of_the_streams(small_app: Application) -> None:
    async with (
        NonReadingClient(small_app.grpc_port, "127.0.0.2") as first,
        NonReadingClient(small_app.grpc_port, "127.0.0.3") as second,
    ):
        for _ in range(3):
            await first.send(WATCH, EMPTY_MESSAGE, end=True)
        await _wait_for(lambda: first.finished == 1)  # the third, refused with a status alone
        await second.send(WATCH, EMPTY_MESSAGE, end=True)
        await _wait_for(lambda: small_app.streams.open == 3)
        assert first.finished == 1
        assert second.finished == 0
    await _wait_for(lambda: small_app.streams.open == 0)


async def test_a_streams_request_message_is_small(small_app: Application) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{small_app.grpc_port}") as channel:
        # A unary Check too, refused by its length before grpc decodes it on the event loop (60 MB
        # names from four addresses stalled other callers 1.4 to 1.8 s; an attack hunt, 2026-12-05).
        with pytest.raises(grpc.aio.AioRpcError) as checked:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="x" * 5000))
        assert checked.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "limit 4,096" in (checked.value.details() or "")
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="x" * 5000))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await watch.read()
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "limit 4,096" in (refused.value.details() or "")
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_by_filename="y" * 5000)
        with pytest.raises(grpc.aio.AioRpcError) as too_long:
            async for _ in reflection.ServerReflectionInfo(iter([request])):
                pass
        assert too_long.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    await _wait_for(lambda: small_app.streams.open == 0)  # released as the server ends the call


async def test_a_stream_sends_a_bounded_number_of_requests(small_app: Application) -> None:
    # One reflection stream asking for descriptor.proto again and again got 14,000 replies in 20 s,
    # and four such streams took 19 s of the server's CPU (an attack hunt, 2026-12-05).
    async with grpc.aio.insecure_channel(f"127.0.0.1:{small_app.grpc_port}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = 0
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in reflection.ServerReflectionInfo(iter([request] * (STREAM_MESSAGES + 1))):
                replies += 1
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert replies == STREAM_MESSAGES and "limit 1,024" in (refused.value.details() or "")
    await _wait_for(lambda: small_app.streams.open == 0)


async def test_a_stream_whose_reply_is_never_taken_counts_until_its_connection_closes(
    small_app: Application,
) -> None:
    # grpc keeps a stream whose reply waits for a window the caller never gives, cancelled or
    # aborted, until the connection closes: it counts until then, not until its handler ends.
    async with NonReadingClient(small_app.grpc_port, "127.0.0.2") as client:
        await client.send(WATCH, EMPTY_MESSAGE, end=True)
        await _wait_for(lambda: small_app.streams.open == 1)
        await asyncio.sleep(0.3)
        assert small_app.streams.open == 1
    await _wait_for(lambda: small_app.streams.open == 0)


async def test_a_caller_gone_with_replies_unread_is_no_server_error(small_app: Application) -> None:
    # grpc's own write of a yielded reply failed as the connection closed, and grpc logged an
    # ExecuteBatchError traceback at ERROR each time (an independent tester).
    with log_lines("", logging.ERROR) as errors:
        for _ in range(3):
            async with NonReadingClient(small_app.grpc_port, "127.0.0.2") as client:
                for _ in range(2):
                    await client.send(WATCH, EMPTY_MESSAGE, end=True)
                await _wait_for(lambda: small_app.streams.open == 2)
            await _wait_for(lambda: small_app.streams.open == 0)
        await asyncio.sleep(0.1)
    assert not errors.records, [record.getMessage() for record in errors.records]
