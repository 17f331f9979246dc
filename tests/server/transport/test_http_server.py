"""The HTTP server's own behaviour: who a caller is, how /metrics is made, what stop logs (an
attack hunt, 2026-12-05)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chainrule.server.transport.http_server import Exposition, HttpServer, _not_cancelled, bind_socket
from tests.conftest import make_settings


class _Counting(Collector):
    """A collector that counts how often it is collected, and takes a while each time."""

    def __init__(self) -> None:
        self.collections = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            self.collections += 1
            count = self.collections
        threading.Event().wait(0.02)
        yield GaugeMetricFamily("collections", "how often this was collected", value=count)


async def test_concurrent_scrapes_share_one_exposition_and_each_is_fresh() -> None:
    """A flood of scrapes costs an exposition per spacing, not one each (each took 4-10 ms of the
    event loop with several processes: other callers' calls waited up to 2.2 s)."""
    registry = CollectorRegistry()
    counting = _Counting()
    registry.register(counting)
    exposition = Exposition(registry)
    bodies = await asyncio.gather(*(exposition.latest() for _ in range(50)))
    assert counting.collections <= 2
    assert all(b"collections" in body for body in bodies)
    before = counting.collections
    fresh = await exposition.latest()  # after the others: begun after it arrived
    assert counting.collections == before + 1
    assert f"collections {float(before + 1)}".encode() in fresh


async def test_a_forwarded_for_header_does_not_change_who_the_caller_is() -> None:
    """uvicorn trusted X-Forwarded-For from 127.0.0.1 by default: a client on the same host charged
    its work to any address it named (the fair shares' caller is the TCP peer)."""

    async def client(request: Request) -> JSONResponse:
        return JSONResponse({"client": request.scope["client"][0]})

    app = Starlette(routes=[Route("/client", client)])
    sock = bind_socket("127.0.0.1", 0)
    server = HttpServer(app, sock, make_settings())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            headers = {"x-forwarded-for": "127.0.0.2", "forwarded": "for=127.0.0.3"}
            answer = await http.get("/client", headers=headers)
        assert answer.json() == {"client": "127.0.0.1"}
    finally:
        await server.stop()


def test_a_task_cancelled_by_stop_is_not_logged_as_an_error() -> None:
    """At the end of the drain `stop` cancels what still runs (replies never read): uvicorn logged
    each with a traceback at ERROR, 1,960 of them formatted on the loop past the grace."""
    try:
        raise asyncio.CancelledError
    except asyncio.CancelledError as error:
        cancelled = (type(error), error, error.__traceback__)
    try:
        raise ValueError("a bug")
    except ValueError as error:
        failed = (type(error), error, error.__traceback__)

    def record(exc_info: object) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "x", None, exc_info)  # type: ignore[arg-type]

    assert not _not_cancelled(record(cancelled))
    assert _not_cancelled(record(failed))
    assert _not_cancelled(record(None))
