"""Multi-process serving: a parent that runs N server processes sharing both ports and restarts them.

`chainrule serve --workers N` (N > 1) runs a `Supervisor`. The parent serves nothing: it reserves the
two ports (turning port 0 into concrete free ports, kept bound with SO_REUSEPORT so the server
processes can join them), starts N server processes (`python -m chainrule.server.supervisor`), each
an `Application` with SO_REUSEPORT on both ports and its own cache, and the kernel spreads connections
across them. A server process that dies is replaced; SIGTERM/SIGINT is forwarded to every one, which
drains, and the parent exits when they have.

These are server processes, not symbolic workers: each server process has its own pool of symbolic
workers (compute/pool.py). The flag and the variable keep the name users know (`--workers`,
`CHAINRULE_WORKERS`), and so do the header and the restart metric below.

Metrics stay correct across processes through prometheus-client's multiprocess mode: it reads
`PROMETHEUS_MULTIPROC_DIR` when first imported, so the parent sets it in the server processes'
environment (from `CHAINRULE_METRICS_DIR`, or a fresh temporary directory) and cleans the directory
before they start; each one's `/metrics` then reports the sum over all of them.

Every response says which server process served it (`x-chainrule-worker: <pid>`: an HTTP header set
by `http_server.ServerProcessMiddleware`, and gRPC trailing metadata set by
`instrumentation.Instrumentation`), so operators and tests can see the load spread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from chainrule.server import heartbeat
from chainrule.server.config import Settings, env_name
from chainrule.server.logs import banner

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
START_TIMEOUT_SECONDS = 60.0
# A server process that dies sooner than this after its start counts as failing fast: back off before
# the next restart so a crash loop does not burn a core.
FAST_FAILURE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 5.0


def default_server_processes() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def server_process_count(settings: Settings) -> int:
    """How many server processes `settings` asks for (`workers` 0 means one per CPU)."""
    return settings.workers or default_server_processes()


def run_supervisor(settings: Settings, ready_file: Path | None = None) -> int:
    """`chainrule serve` with several server processes: supervise them until a signal; the exit status."""
    from chainrule.server.logs import configure_logging  # noqa: PLC0415

    configure_logging(settings, several_processes=True)
    try:
        return Supervisor(settings.replace(workers=server_process_count(settings)), ready_file).run()
    except OSError as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 1


# --- metrics across processes ----------------------------------------------------------------------


def _enter_multiprocess_mode(metrics_dir: Path) -> None:
    """Point prometheus-client at `metrics_dir` in this process (the parent) and its children."""
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    from prometheus_client import values  # noqa: PLC0415

    # prometheus-client chose its value class when first imported; if that happened before the
    # variable was set, switch it so the parent's own counter lands in the shared directory too.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _clean_metrics_dir(metrics_dir: Path) -> None:
    """Remove the files of an earlier run: their counters would otherwise be added to ours."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()


def _stall_counter(registry: CollectorRegistry) -> Counter:
    from prometheus_client import Counter  # noqa: PLC0415

    return Counter(
        "chainrule_worker_stalls",
        "Server processes killed by the supervisor because their event loop stopped beating.",
        registry=registry,
    )


def _restart_counter(registry: CollectorRegistry) -> Counter:
    from prometheus_client import Counter  # noqa: PLC0415

    return Counter(
        "chainrule_worker_restarts",
        "Server processes (--workers) the supervisor restarted after they died; not symbolic workers.",
        registry=registry,
    )


# --- ports -----------------------------------------------------------------------------------------


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind `port` (0: a free one) with SO_REUSEPORT and keep it bound, so server processes can join it.

    A first bind without SO_REUSEPORT proves nobody else holds the port: with the option on, a port
    held by another reuse-port server would be shared silently instead of failing.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from error
        chosen = int(probe.getsockname()[1])
    held = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind((host, chosen))
    except OSError as error:
        held.close()
        raise OSError(f"cannot listen on {host}:{chosen}: {error.strerror}") from error
    # Bound but never listening: the kernel hands connections only to the server processes' sockets.
    return held


# --- the supervisor --------------------------------------------------------------------------------


def server_environ(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """A server process's environment: `base` plus every setting spelled out, so CLI flags carry over."""
    environ = dict(base)
    for item in fields(settings):
        value = getattr(settings, item.name)
        environ[env_name(item)] = str(value).lower() if isinstance(value, bool) else str(value)
    environ[MULTIPROC_ENV] = settings.metrics_dir
    return environ


@dataclass
class _Slot:
    """One server process's position: the process in it now, and how it has fared."""

    index: int
    ready_file: Path
    heartbeat_file: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    fast_failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs `settings.workers` server processes on shared ports, replaces the ones that die."""

    def __init__(self, settings: Settings, ready_file: Path | None = None) -> None:
        self.settings = settings
        self.ready_file = ready_file
        self._stop = threading.Event()
        self._run_dir = Path(tempfile.mkdtemp(prefix="chainrule-supervisor-"))
        metrics_dir = Path(settings.metrics_dir or self._run_dir / "metrics")
        self.metrics_dir = metrics_dir
        self._slots = [
            _Slot(i, self._run_dir / f"server-{i}.json", self._run_dir / f"server-{i}.beat")
            for i in range(settings.workers)
        ]
        self._held: list[socket.socket] = []
        self._restarts: Counter | None = None
        self._stalls: Counter | None = None

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0 when every server process drained cleanly)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        try:
            self._prepare()
            if not self._start_all():
                self._terminate_all()
                return 1
            self._write_ready_file()
            log.info(
                "%s with %d server processes",
                banner(self.settings, self.settings.grpc_port, self.settings.http_port),
                len(self._slots),
            )
            self._watch()
            return self._terminate_all()
        finally:
            self._cleanup()

    def server_pids(self) -> list[int]:
        return [slot.process.pid for slot in self._slots if slot.process is not None]

    def _prepare(self) -> None:
        _clean_metrics_dir(self.metrics_dir)
        grpc_socket = reserve_port(self.settings.host, self.settings.grpc_port)
        self._held.append(grpc_socket)
        http_socket = reserve_port(self.settings.host, self.settings.http_port)
        self._held.append(http_socket)
        self.settings = dataclasses.replace(
            self.settings,
            grpc_port=int(grpc_socket.getsockname()[1]),
            http_port=int(http_socket.getsockname()[1]),
            reuse_port=True,
            metrics_dir=str(self.metrics_dir),
        )
        _enter_multiprocess_mode(self.metrics_dir)
        from prometheus_client import CollectorRegistry  # noqa: PLC0415

        registry = CollectorRegistry()
        self._restarts = _restart_counter(registry)
        self._stalls = _stall_counter(registry)

    def _spawn(self, slot: _Slot) -> None:
        slot.ready_file.unlink(missing_ok=True)
        slot.heartbeat_file.unlink(missing_ok=True)
        command = [
            *(sys.executable, "-m", "chainrule.server.supervisor"),
            *("--ready-file", str(slot.ready_file), "--heartbeat-file", str(slot.heartbeat_file)),
        ]
        # Our own interpreter and module, no shell: nothing here comes from a request.
        slot.process = subprocess.Popen(command, env=server_environ(self.settings, os.environ))  # noqa: S603
        slot.started_at = time.monotonic()
        slot.restart_at = None
        log.info("started server process %d (pid %d)", slot.index, slot.process.pid)

    def _start_all(self) -> bool:
        """Start every server process, wait until all are ready; False if one exits first or time runs out."""
        for slot in self._slots:
            self._spawn(slot)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not all(slot.ready_file.exists() for slot in self._slots):
            for slot in self._slots:
                if slot.process is not None and slot.process.poll() is not None:
                    code = slot.process.returncode
                    log.error("server process %d exited with %s during start-up", slot.index, code)
                    return False
            if self._stop.wait(0.05):
                return False
            if time.monotonic() > deadline:
                log.error("server processes not ready after %.0f s", START_TIMEOUT_SECONDS)
                return False
        return True

    def _write_ready_file(self) -> None:
        if self.ready_file is None:
            return
        ports = {
            "grpc_port": self.settings.grpc_port,
            "http_port": self.settings.http_port,
            "supervisor_pid": os.getpid(),
            "server_pids": self.server_pids(),
        }
        partial = self.ready_file.with_suffix(self.ready_file.suffix + ".partial")
        partial.write_text(json.dumps(ports))
        partial.replace(self.ready_file)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for slot in self._slots:
                self._check(slot, now)

    def _check(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if process is not None and process.poll() is None:
            self._check_heartbeat(slot, process)
        if process is not None and process.poll() is not None:
            self._bury(slot, process, now)
        if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
            self._spawn(slot)
            if self._restarts is not None:
                self._restarts.inc()

    def _check_heartbeat(self, slot: _Slot, process: subprocess.Popen[bytes]) -> None:
        """Kill a process that is stopped, or whose event loop has not beaten within the limit."""
        limit = self.settings.heartbeat_seconds
        if limit <= 0:
            return
        # Stopped: the kernel keeps queueing connections on its listening sockets, and nobody
        # accepts them; every 0.1 s of waiting is a tenth of a second of callers hanging.
        if heartbeat.stopped(process.pid):
            log.error(
                "worker %d (pid %d) is stopped by a signal; killing it to replace it", slot.index, process.pid
            )
        else:
            silent = heartbeat.silence(slot.heartbeat_file)
            if silent is None or silent <= limit:
                return
            log.error(
                "worker %d (pid %d) has not run its event loop for %.1f s (hung or stalled); "
                "killing it to replace it",
                slot.index, process.pid, silent,
            )  # fmt: skip
        if self._stalls is not None:
            self._stalls.inc()
        process.kill()
        process.wait()

    def _bury(self, slot: _Slot, process: subprocess.Popen[bytes], now: float) -> None:
        """A server process died: forget its live gauges, schedule a replacement (later if it keeps dying)."""
        from prometheus_client import multiprocess  # noqa: PLC0415

        log.warning(
            "server process %d (pid %d) exited with %s; restarting",
            slot.index, process.pid, process.returncode,
        )  # fmt: skip
        multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        lived = now - slot.started_at
        slot.fast_failures = slot.fast_failures + 1 if lived < FAST_FAILURE_SECONDS else 0
        delay = 0.0 if slot.fast_failures <= 1 else min(MAX_BACKOFF_SECONDS, 0.25 * 2**slot.fast_failures)
        slot.process = None
        slot.restart_at = now + delay

    def _terminate_all(self) -> int:
        """Forward SIGTERM, wait for the drain, kill stragglers within the grace; 0 if all were clean."""
        live = [slot.process for slot in self._slots if slot.process is not None]
        for process in live:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        # A server process ends itself at its grace, SUPERVISOR_EXIT_SECONDS before ours: one that
        # has not a second later is killed, so the supervisor still exits within the grace (it
        # waited 10 s past it, and one hunt's processes took 19 to 30 s).
        deadline = time.monotonic() + self.settings.grace_seconds - SUPERVISOR_EXIT_SECONDS / 3
        status = 0
        for process in live:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("server process pid %d did not drain in time; killing it", process.pid)
                process.kill()
                process.wait()
            if process.returncode != 0:
                status = 1
        log.info("all server processes stopped")
        return status

    def _cleanup(self) -> None:
        for held in self._held:
            held.close()
        # The run directory holds the ready files and, unless the operator named one, the metrics.
        shutil.rmtree(self._run_dir, ignore_errors=True)


# --- a server process ------------------------------------------------------------------------------


# What the supervisor takes to exit once its server processes have (reaping them, its run directory,
# the interpreter's exit), measured under load at up to 1.2 s.
SUPERVISOR_EXIT_SECONDS = 1.5


def server_process_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one server process: settings come from the environment the supervisor built."""
    parser = argparse.ArgumentParser(prog="chainrule-server-process")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--heartbeat-file", type=Path)
    options = parser.parse_args(argv)
    from chainrule.server.app import serve  # noqa: PLC0415 - after PROMETHEUS_MULTIPROC_DIR is set
    from chainrule.server.logs import configure_logging  # noqa: PLC0415

    settings = Settings.from_environ()
    # The supervisor reaps its server processes and exits after them, within the same grace: they
    # leave it that much (an attack hunt: under load, 10.44 s and 10.67 s after SIGTERM with a
    # grace of 10 s, its processes out at 9.5 s).
    grace = settings.grace_seconds
    settings = settings.replace(grace_seconds=max(grace / 2, grace - SUPERVISOR_EXIT_SECONDS))
    configure_logging(settings, several_processes=True)
    serve(settings, options.ready_file, options.heartbeat_file, announce=False)  # exits the process


if __name__ == "__main__":
    sys.exit(server_process_main())
