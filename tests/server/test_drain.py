"""Drain on the HTTP side: the port stays open through the grace period, then stragglers get a Status.

In process, with a short grace period. The straggler is an API call made slow on purpose (its
handler sleeps past the grace), so the test does not depend on how fast this machine computes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainrule.engine.errors import Code
from chainrule.server.app import Application
from chainrule.server.sizing import PROTOBUF_WIRE, Wire
from chainrule.v1 import chainrule_pb2 as pb
from tests import h2raw
from tests.conftest import make_settings


async def never_done(
    request: pb.DifferentiateRequest, wire: Wire = PROTOBUF_WIRE
) -> pb.DifferentiateResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def wait_for(predicate: Any) -> None:
    for _ in range(3000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.fixture
async def draining_app() -> Application:
    app = Application(make_settings(grace_seconds=1.0, compute_threads=1, symbolic_workers=0))
    await app.start()
    return app


async def test_readiness_and_refusals_while_draining_and_a_status_for_stragglers(
    draining_app: Application,
) -> None:
    app = draining_app
    app.api.differentiate = never_done  # type: ignore[method-assign]
    base = f"http://127.0.0.1:{app.http_port}"
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as straggler,
        httpx.AsyncClient(base_url=base, timeout=30) as other,
    ):
        slow = asyncio.create_task(straggler.get("/v1/differentiate", params={"expression": "x"}))
        await wait_for(lambda: app.drain.in_flight == 1)
        stopping = asyncio.create_task(app.stop())
        await wait_for(lambda: app.drain.draining)

        # Probes are answered, not refused at the socket: not ready, but alive.
        assert (await other.get("/readyz")).status_code == 503
        assert (await other.get("/healthz")).status_code == 200
        refused = await other.post("/v1/differentiate", json={"expression": "x^2"})
        assert refused.status_code == 503
        assert refused.json()["code"] == Code.UNAVAILABLE
        assert refused.headers["retry-after"]

        await stopping
        answer = await slow
    # The call still running at the end of the grace period gets a Status body, not a bare 500.
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["code"] == Code.UNAVAILABLE
    assert "DRAINING" in str(body["details"])

    # Both 503s are in the HTTP metrics: the drain answers inside them (a refusal comes before
    # routing, so its route is "unmatched").
    def answered(method: str, route: str) -> float | None:
        labels = {"method": method, "route": route, "status": "503"}
        return app.registry.get_sample_value("chainrule_http_requests_total", labels)

    assert answered("POST", "unmatched") == answered("GET", "/v1/differentiate") == 1.0


STUCK_SERVER = """
import sys, threading, time
from pathlib import Path
from chainrule.server.app import serve
from chainrule.server.config import Settings
# Stands for a numeric thread still computing at the end of the grace period (threads cannot be
# interrupted): without the exit path in `serve`, the interpreter would wait for it an hour.
threading.Thread(target=time.sleep, args=(3600,), name="numeric_0", daemon=False).start()
serve(Settings.from_environ(), Path(sys.argv[1]))
"""


SERVER = """
import sys
from pathlib import Path
from chainrule.server.app import serve
from chainrule.server.config import Settings
serve(Settings.from_environ(), Path(sys.argv[1]))
"""


async def _terminated(
    tmp_path: Path,
    script: str,
    grace: float,
    scrape: bool = False,
    before: Callable[[], Awaitable[object]] | None = None,
) -> tuple[int, str]:
    """Run `script` (a server process), SIGTERM it once ready (and its /metrics read, with `scrape`;
    after `before()`, if given): its exit status and its log."""
    ready = tmp_path / "ready.json"
    environ = {
        **os.environ,
        "CHAINRULE_GRPC_PORT": "0",
        "CHAINRULE_HTTP_PORT": "0",
        "CHAINRULE_WORKERS": "1",
        "CHAINRULE_SYMBOLIC_WORKERS": "0",
        "CHAINRULE_GRACE_SECONDS": str(grace),
    }
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", script, str(ready)], env=environ, stderr=stderr)
        try:
            await wait_for(ready.exists)
            if scrape:
                port = json.loads(ready.read_text())["http_port"]
                async with httpx.AsyncClient() as client:
                    assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200
            if before is not None:
                await before()
            process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(process.wait, 60)
        finally:
            process.kill()
            process.wait()
    return status, log.read_text()


async def test_the_process_exits_though_a_compute_thread_is_still_running(tmp_path: Path) -> None:
    status, log = await _terminated(tmp_path, STUCK_SERVER, 0.5)
    assert status == 0
    assert "work still running on numeric_0" in log


async def test_a_scraped_server_exits_without_waiting_for_idle_threads(tmp_path: Path) -> None:
    """/metrics is made on a thread of its own: idle at exit, it was taken for work still running
    (the exit waited 0.5 s for it, and logged a warning)."""
    status, log = await _terminated(tmp_path, SERVER, 10, scrape=True)
    assert status == 0
    assert "still running" not in log, log


@pytest.mark.parametrize("port", ["grpc_port", "http_port"])
async def test_an_idle_connection_does_not_hold_the_exit_to_the_grace(port: str) -> None:
    """No call in flight, one client keeping a connection open: the server stops at once, not at the
    end of its grace (grpc waited out a 3 s grace for an idle HTTP/2 connection and the process
    exited 1.2 s past it: an independent tester)."""
    grace = 6.0
    app = Application(make_settings(grace_seconds=grace, compute_threads=1, symbolic_workers=0))
    await app.start()
    _, writer = await asyncio.open_connection("127.0.0.1", getattr(app, port))
    if port == "grpc_port":  # the HTTP/2 preface and an empty SETTINGS frame: a client, no stream
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        await writer.drain()
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await app.stop()
        assert loop.time() - started < grace / 2
    finally:
        writer.close()


async def test_an_endless_header_block_does_not_hold_the_exit_to_the_grace(tmp_path: Path) -> None:
    """Clients sending a gRPC header block that never ends (CONTINUATION frames): grpc's stop waited
    for their transports as long as they sent, and the process ended at the grace through the
    backstop (status 1; an attack hunt, 2026-12-07). With no call left, it exits without them."""
    ready = tmp_path / "ready.json"
    sending = True
    with ThreadPoolExecutor(_FLOODS) as floods:
        for _ in range(_FLOODS):
            floods.submit(_flood_when_ready, ready, lambda: not sending)
        try:
            status, log = await _terminated(tmp_path, SERVER, 20.0, before=lambda: asyncio.sleep(2))
        finally:
            sending = False
    assert status == 0, log
    assert "grpc had not stopped" in log


_FLOODS = 2


def _flood_when_ready(ready: Path, stop: Callable[[], bool]) -> None:
    while not (ready.exists() and ready.stat().st_size) and not stop():
        time.sleep(0.05)
    if not stop():
        port = json.loads(ready.read_text())["grpc_port"]
        h2raw.endless_header_block(port, "/chainrule.v1.DifferentiationService/Differentiate", stop)


# A drain that never ends (an attack hunt: numeric threads held the GIL while uvicorn logged each
# cancelled task with a traceback, and the process left 9 to 20 s past its grace).
HUNG_DRAIN = """
import asyncio, sys
from pathlib import Path
from chainrule.server.app import Application, serve
from chainrule.server.config import Settings

async def never(self):
    await asyncio.sleep(3600)

Application.stop = never
serve(Settings.from_environ(), Path(sys.argv[1]))
"""


async def test_the_grace_bounds_the_exit_whatever_the_drain_does(tmp_path: Path) -> None:
    status, log = await _terminated(tmp_path, HUNG_DRAIN, 1.0)
    assert status == 1  # ended at the grace, every thread's stack printed (faulthandler)
    assert "Timeout" in log
