"""A server process that stops running its event loop is noticed by the supervisor and replaced, and a
replacement takes connections only once it serves them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chainrule.server import heartbeat
from chainrule.server.app import Application
from chainrule.server.supervisor import reserve_port
from chainrule.server.transport.http_server import SERVER_PROCESS_HEADER
from tests.conftest import make_settings

CHAINRULE = Path(sys.executable).parent / "chainrule"


async def test_beats_are_written_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    assert heartbeat.silence(path) is None
    beating = asyncio.create_task(heartbeat.beat(path, 0.01))
    for _ in range(500):
        if heartbeat.silence(path) is not None:
            break
        await asyncio.sleep(0.01)
    beating.cancel()
    silent = heartbeat.silence(path)
    assert silent is not None and silent >= 0
    later = heartbeat.silence(path, now=time.monotonic() + 100)
    assert later is not None and later > 99


def test_a_process_stopped_by_a_signal_is_seen_as_stopped() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert not heartbeat.stopped(sleeper.pid)
        os.kill(sleeper.pid, signal.SIGSTOP)
        for _ in range(200):
            if heartbeat.stopped(sleeper.pid):
                break
            time.sleep(0.01)
        assert heartbeat.stopped(sleeper.pid)
        os.kill(sleeper.pid, signal.SIGCONT)
        for _ in range(200):
            if not heartbeat.stopped(sleeper.pid):
                break
            time.sleep(0.01)
        assert not heartbeat.stopped(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not heartbeat.stopped(sleeper.pid)  # gone


def pids_answering(port: int, tries: int = 16) -> set[int]:
    # A fresh connection each time: the kernel spreads connections over the live processes.
    found = set()
    for _ in range(tries):
        with httpx.Client(timeout=5) as client:
            found.add(int(client.get(f"http://127.0.0.1:{port}/healthz").headers[SERVER_PROCESS_HEADER]))
    return found


def test_a_stopped_server_process_is_killed_and_replaced(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    command = [str(CHAINRULE), "serve", "--workers", "2", "--grpc-port", "0", "--http-port", "0"]
    # A heartbeat far longer than the test waits: the stopped state, not a missed beat, gets it killed.
    environ = {**os.environ, "CHAINRULE_HEARTBEAT_SECONDS": "600", "CHAINRULE_COMPUTE_THREADS": "1"}
    process = subprocess.Popen([*command, "--ready-file", str(ready)], env=environ)
    stopped = None
    try:
        for _ in range(1200):
            if ready.exists():
                break
            assert process.poll() is None
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        port, (stopped, survivor) = int(info["http_port"]), info["server_pids"]
        os.kill(stopped, signal.SIGSTOP)
        # Until the supervisor notices, connections the kernel gives the stopped process hang; once
        # it is killed they are reset with it (or, with net.ipv4.tcp_migrate_req, handed to the
        # other process), and new ones go to live processes only.
        for _ in range(600):
            try:
                os.kill(stopped, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the stopped process was never killed")
        serving: set[int] = set()
        for _ in range(600):
            serving = pids_answering(port)
            if len(serving) == 2:
                break
            time.sleep(0.1)
        assert survivor in serving and stopped not in serving and len(serving) == 2
        with httpx.Client(timeout=5) as client:
            metrics = client.get(f"http://127.0.0.1:{port}/metrics").text
        assert "chainrule_worker_stalls_total 1.0" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_server_process_joining_shared_ports_listens_only_once_it_serves() -> None:
    # A replacement joins ports its siblings serve: while it starts (its workers warming up, seconds),
    # the kernel must not hand it connections, which would wait for it instead of being served.
    held = [reserve_port("127.0.0.1", 0) for _ in range(2)]
    ports = [int(sock.getsockname()[1]) for sock in held]
    settings = make_settings(
        grpc_port=ports[0], http_port=ports[1], reuse_port=True, symbolic_workers=0, compute_threads=1
    )
    app = Application(settings)
    try:
        for port in ports:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        await app.start()
        for port in ports:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        await app.stop()
        for sock in held:
            sock.close()
