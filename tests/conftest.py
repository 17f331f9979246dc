"""Shared fixtures: a real chainrule server on a loopback port, and clients for it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import socket
import struct
import threading
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from grpc_status import rpc_status

from chainrule.server.app import Application
from chainrule.server.config import Settings
from chainrule.server.logs import ContextFilter
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

_Detail = TypeVar("_Detail", bound=Message)


def status_detail(error: grpc.aio.AioRpcError, detail_type: type[_Detail]) -> _Detail | None:
    """The `google.rpc.Status` detail of `detail_type` a failed call carries (ErrorInfo, RetryInfo)."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(detail_type.DESCRIPTOR):
            found = detail_type()
            detail.Unpack(found)
            return found
    return None


def make_settings(**overrides: object) -> Settings:
    """Settings for an in-process server on free loopback ports."""
    base = {"host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "grace_seconds": 5.0}
    base.update(overrides)
    return Settings.from_environ({}, **base)


@pytest.fixture(scope="session")
async def app() -> AsyncIterator[Application]:
    application = Application(make_settings())
    await application.start()
    yield application
    await application.stop()


@pytest.fixture(scope="session")
async def channel(app: Application) -> AsyncIterator[grpc.aio.Channel]:
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}", options=options) as opened:
        yield opened


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> pb_grpc.DifferentiationServiceAsyncStub:
    return pb_grpc.DifferentiationServiceStub(channel)


class LogLines(logging.Handler):
    """The records a logger writes, with the fields the server's log filter adds (request and trace ids)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, request_id: str) -> list[logging.LogRecord]:
        """The records written while serving the request with this id."""
        return [r for r in self.records if r.request_id == request_id]  # type: ignore[attr-defined]


@contextlib.contextmanager
def log_lines(name: str = "", level: int = logging.DEBUG) -> Iterator[LogLines]:
    """Capture what logger `name` (default: the root) writes at `level` and above."""
    handler = LogLines()
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.setLevel(previous)
        logger.removeHandler(handler)


async def bytes_left_behind(call: Callable[[], Awaitable[None]], times: int = 10) -> int:
    """Bytes still allocated after `times` calls, with Python's cyclic collector off: what finished
    calls leave in reference cycles, which live until a full collection, outside every bound (the
    server's and this process's, as in-process servers share it; `call` runs once first, to warm up)."""
    await call()
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(times):
            await call()
        # The calls' done callbacks, and work a caller left to finish (the pool's grace, 0.5 s).
        await asyncio.sleep(1.0)
        return int(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
        gc.enable()


async def held_after_failing(work: Callable[[object], Awaitable[object]]) -> bool:
    """Whether a task running `work(request)` that ends with an error still holds `request` (a
    stand-in for what its frames hold) once the task is dropped, with Python's cyclic collector off.
    The error's traceback holds the frames it passed, and the task holds its error: anything in the
    error's chain that leads back to the task (an asyncio Timeout does) makes a cycle that keeps
    them all until a full collection."""

    class Request:
        pass

    request = Request()
    alive = weakref.ref(request)
    gc.collect()
    gc.disable()
    try:
        task = asyncio.ensure_future(work(request))
        del request
        await asyncio.wait([task])
        assert task.exception() is not None, "the work was meant to fail"
        del task
        return alive() is not None
    finally:
        gc.enable()


async def post_never_reading(port: int, points: int) -> socket.socket:
    """A REST Evaluate at `points` f64le values (its reply some 10.7 bytes a point, in base64) sent on
    a socket that reads nothing back (a 4 KiB receive buffer): the reply stays in the server. The
    caller closes the socket."""
    column = base64.b64encode(struct.pack(f"<{points}d", *(i / 7 for i in range(points)))).decode()
    body = json.dumps({"expression": "x/3", "points": {"x": {"f64le": column}}}).encode()
    head = (
        "POST /v1/evaluate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, head.encode() + body)
    except BaseException:
        sock.close()
        raise
    return sock


def threads_calling(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[str]:
    """The names of the threads that call `module.name` from now on (the function still runs)."""
    original = getattr(module, name)
    threads: list[str] = []

    def recorded(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(module, name, recorded)
    return threads
