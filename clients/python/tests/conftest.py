"""Fixtures: a real `chainrule serve` subprocess on free loopback ports, and clients for it.

The server executable comes from `CHAINRULE_SERVER` (default: the repository's `.venv/bin/chainrule`),
so these tests can run from a virtual environment that has only the client installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainrule.client import Client

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_SECONDS = 60.0


def _server_command() -> list[str]:
    executable = os.environ.get("CHAINRULE_SERVER") or str(REPO / ".venv" / "bin" / "chainrule")
    if not Path(executable).exists():
        pytest.fail(f"no chainrule server at {executable}: set CHAINRULE_SERVER")
    return [executable]


def _wait_ready(process: subprocess.Popen[bytes], ready_file: Path) -> dict[str, int]:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"chainrule serve exited with {process.returncode} before it was ready")
        if ready_file.exists():
            try:
                return dict(json.loads(ready_file.read_text()))
            except json.JSONDecodeError:
                pass  # written but not yet complete
        time.sleep(0.05)
    pytest.fail(f"chainrule serve was not ready within {START_TIMEOUT_SECONDS} s")


@pytest.fixture(scope="session")
def server_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Start `chainrule serve` on port 0 and yield the ports from its ready file."""
    ready_file = tmp_path_factory.mktemp("server") / "ready.json"
    # one server process: these tests exercise the client, not the multi-process server
    command = [*_server_command(), "serve", "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0"]
    command += ["--workers", "1"]
    process = subprocess.Popen([*command, "--ready-file", str(ready_file)])  # noqa: S603 - our own binary
    try:
        yield _wait_ready(process, ready_file)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def target(server_ports: dict[str, int]) -> str:
    return f"127.0.0.1:{server_ports['grpc_port']}"


@pytest.fixture(scope="session")
def client(target: str) -> Iterator[Client]:
    with Client(target) as opened:
        yield opened
