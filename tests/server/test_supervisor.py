"""`chainrule serve --workers 2`: both server processes serve, a killed one is replaced, SIGTERM drains."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from chainrule.server.config import Settings
from chainrule.server.metrics import PUBLISH_SECONDS
from chainrule.server.supervisor import reserve_port, server_environ, server_process_count
from chainrule.server.transport.http_server import SERVER_PROCESS_HEADER
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

CHAINRULE = Path(sys.executable).parent / "chainrule"
START_TIMEOUT = 60.0
# Each channel is one TCP connection, which the kernel gives to one server process at random: with
# this many, the chance that every one lands on the same one of two is 2**-23.
CHANNELS = 24


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    server_pids: list[int]
    log: Path  # the supervisor's and its server processes' output

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + START_TIMEOUT
    while not path.exists():
        assert process.poll() is None, f"server exited with {process.returncode}"
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("supervisor")
    ready, log = folder / "ready.json", folder / "supervisor.log"
    command = [str(CHAINRULE), "serve", "--workers", "2", "--grpc-port", "0", "--http-port", "0"]
    environ = {**os.environ, "CHAINRULE_GRACE_SECONDS": "5", "CHAINRULE_COMPUTE_THREADS": "1"}
    with log.open("wb") as output:  # kept to be shown where a test fails (the child holds its own copy)
        process = subprocess.Popen(
            [*command, "--ready-file", str(ready)], env=environ, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        info = _wait_for(ready, process)
        pids = info["server_pids"]
        assert isinstance(pids, list)
        yield Served(process, int(str(info["grpc_port"])), int(str(info["http_port"])), pids, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _open_channels(port: int, count: int) -> list[grpc.aio.Channel]:
    # A private subchannel pool per channel: otherwise grpc shares one connection among them all.
    options = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(count)]


async def _check(channel: grpc.aio.Channel) -> int:
    """One health check; the pid of the server process that answered."""
    call = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    response = await call
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    trailers = dict(await call.trailing_metadata())
    return int(str(trailers[SERVER_PROCESS_HEADER]))


@pytest.fixture
async def channels(served: Served) -> AsyncIterator[list[grpc.aio.Channel]]:
    opened = await _open_channels(served.grpc_port, CHANNELS)
    yield opened
    await asyncio.gather(*(channel.close() for channel in opened))


def _http_pid(port: int) -> int:
    # A fresh connection per request, so each one is placed by the kernel anew.
    with httpx.Client(timeout=10) as client:
        response = client.get(f"http://127.0.0.1:{port}/healthz")
    assert response.status_code == 200
    return int(response.headers[SERVER_PROCESS_HEADER])


async def test_both_server_processes_serve_grpc_and_http(
    served: Served, channels: list[grpc.aio.Channel]
) -> None:
    grpc_pids = await asyncio.gather(*(_check(channel) for channel in channels for _ in range(3)))
    assert set(grpc_pids) == set(served.server_pids)
    http_pids = {_http_pid(served.http_port) for _ in range(CHANNELS)}
    assert http_pids == set(served.server_pids)


def _scrape(port: int) -> tuple[int, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """One `/metrics` scrape on a fresh connection: the server process that answered, and its samples."""
    with httpx.Client(timeout=10) as client:
        response = client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return int(response.headers[SERVER_PROCESS_HEADER]), samples


def _scrapes_from_every_server_process(
    port: int, pids: set[int]
) -> list[dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Scrapes until each of `pids` has answered one (each connection lands on a random server process)."""
    answered: dict[int, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for _ in range(CHANNELS * 2):
        pid, samples = _scrape(port)
        answered.setdefault(pid, samples)
        if set(answered) >= pids:
            break
    assert set(answered) >= pids, f"scrapes reached only {set(answered)}"
    return [answered[pid] for pid in pids]


async def _differentiate(channel: grpc.aio.Channel, expression: str) -> int:
    """One Differentiate; the pid of the server process that answered (from the trailers)."""
    call = pb_grpc.DifferentiationServiceStub(channel).Differentiate(
        pb.DifferentiateRequest(expression=expression), timeout=30
    )
    assert (await call).derivative
    return int(str(dict(await call.trailing_metadata())[SERVER_PROCESS_HEADER]))


async def test_cache_metrics_sum_over_server_processes(
    served: Served, channels: list[grpc.aio.Channel]
) -> None:
    # An expression no other test sends: each server process that serves it misses once, then hits.
    expression = "sin(x^2) * exp(7 x) + 11"
    hits, misses, entries = (
        (name, (("cache", "differentiate"),))
        for name in ("chainrule_cache_hits_total", "chainrule_cache_misses_total", "chainrule_cache_entries")
    )
    pids = set(served.server_pids)
    # Each process publishes its counts into its files every PUBLISH_SECONDS (metrics.py): what
    # earlier tests counted is in them after two.
    await asyncio.sleep(2 * PUBLISH_SECONDS)
    (before, *_) = _scrapes_from_every_server_process(served.http_port, pids)
    rounds = 5
    answered: list[int] = []
    for _ in range(rounds):
        answered += await asyncio.gather(*(_differentiate(channel, expression) for channel in channels))
    assert set(answered) == pids

    def counted(after: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[float, ...]:
        return (
            after.get(misses, 0) - before.get(misses, 0),
            after.get(hits, 0) - before.get(hits, 0),
            after.get(entries, 0) - before.get(entries, 0),
            after[("chainrule_requests_in_flight", ())],
            after[("chainrule_build_info", (("version", VERSION),))],
        )

    # Whichever server process answers the scrape reports the sum over both, once the other has
    # published (within PUBLISH_SECONDS).
    # Entries: each process's response, and its gRPC reply by the request's bytes (grpc_server.py).
    expected = (len(pids), rounds * CHANNELS - len(pids), 2 * len(pids), 0, 1)
    for _ in range(int(10 / PUBLISH_SECONDS)):
        found = [counted(after) for after in _scrapes_from_every_server_process(served.http_port, pids)]
        if all(each == expected for each in found):
            break
        await asyncio.sleep(PUBLISH_SECONDS)
    assert found == [expected] * len(pids)


async def test_killed_server_process_is_replaced_and_the_other_keeps_serving(
    served: Served, channels: list[grpc.aio.Channel]
) -> None:
    owners = await asyncio.gather(*(_check(channel) for channel in channels))
    victim, survivor = served.server_pids
    survivor_channels = [channel for channel, pid in zip(channels, owners, strict=True) if pid == survivor]
    assert survivor_channels

    async def traffic() -> list[int]:
        answered = []
        for _ in range(40):
            answered += await asyncio.gather(*(_check(channel) for channel in survivor_channels))
            await asyncio.sleep(0.01)
        return answered

    running = asyncio.create_task(traffic())
    await asyncio.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    answered = await running  # raises if any call on the surviving server process failed
    assert set(answered) == {survivor}

    deadline = time.monotonic() + START_TIMEOUT
    replacement: set[int] = set()
    while not replacement:
        assert time.monotonic() < deadline, "the killed server process was not replaced"
        replacement = {_http_pid(served.http_port) for _ in range(8)} - {survivor, victim}
        await asyncio.sleep(0.1)
    with httpx.Client(timeout=10) as client:
        metrics = client.get(f"http://127.0.0.1:{served.http_port}/metrics").text
    assert "chainrule_worker_restarts_total 1.0" in metrics
    served.server_pids = [survivor, *replacement]


def test_sigterm_drains_every_server_process_and_exits_zero(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        status = served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:  # once in a clean-clone run: what it logged is the evidence
        pytest.fail(f"the supervisor had not exited 30 s after SIGTERM; its log ends:\n{served.log_tail()}")
    assert status == 0, served.log_tail()
    for pid in served.server_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("other_reuses_port", [False, True])
def test_a_port_held_by_another_server_is_refused(other_reuses_port: bool) -> None:
    with socket.socket() as other:
        if other_reuses_port:
            # Another reuse-port server (a second supervisor): joining it silently would be worse.
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            reserve_port("127.0.0.1", port)


def test_a_reserved_port_is_concrete_and_server_processes_can_join_it() -> None:
    with reserve_port("127.0.0.1", 0) as held:
        port = held.getsockname()[1]
        assert port != 0
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            server.bind(("127.0.0.1", port))
            server.listen()


def test_server_process_environment_spells_out_every_setting() -> None:
    settings = Settings.from_environ({}, grpc_port=1234, reuse_port=True, metrics_dir="/tmp/m", workers=3)
    environ = server_environ(settings, {"PATH": "/bin"})
    assert environ["PATH"] == "/bin"
    assert environ["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/m"
    assert Settings.from_environ(environ) == settings
    assert server_process_count(settings) == 3
    assert server_process_count(settings.replace(workers=0)) >= 1
