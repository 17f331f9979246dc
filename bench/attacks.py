"""Issue 15's attacks at full size against a real `chainrule serve`, with a second caller watching.

Each attack class of issue 15 gets a fresh server (default settings, the ones the docs list) and a
second caller in a process of its own (`--monitor`): it checks `/healthz` and gRPC health every
100 ms, makes cheap requests from another loopback address (127.0.0.200: cached and cold
Differentiate and Evaluate over REST, a new connection each, so a hung server process shows), and
samples the resident memory of the server and every process below it (/proc/PID/status VmRSS).
After the attack (and a while after it, for harm that outlasts the attacker's calls) the server gets
SIGTERM and the time it takes to exit is measured against its grace period.

Per attack it reports what the attacker got, health latency (p50/p99/max, both ports; the target
is every check answered within 1 s), the second caller's success rate (target: all), peak RSS against
the documented bound (`sizing.memory_bound` where the tree has it, else the pod's memory limit in
deploy/k8s/base/deployment.yaml, set for two server processes) and the exit time. A safety cap
(--rss-cap, 6 GiB by default) kills a server whose memory runs away, so that the machine survives
the attacks that are not bounded yet.

    .venv/bin/python bench/attacks.py                       # every attack, full size (about 10 min)
    .venv/bin/python bench/attacks.py --quick               # scaled down: `make bench-quick`
    .venv/bin/python bench/attacks.py --only huge-output,connections --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import math
import os
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from common import ROOT, descendants, rss_bytes, server_env
from exprgen import expression
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from chainrule.server.config import Settings
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.h2raw import NonReadingClient, calls_without_messages, endless_header_block
from tests.relay import grpc_channel_from

SECOND_CALLER = "127.0.0.200"
# Where the connection flood comes from: an address of its own, as the caller it is.
FLOODER = "127.0.0.66"
SECOND_FLOODER = "127.0.0.67"  # for attacks that take two callers
# The hard limit on open files a container gets from containerd and Docker (their LimitNOFILE): the
# server runs under it where this process may raise it (root), else under ours.
CONTAINER_NOFILE = 1_048_576
HEALTH_TARGET_SECONDS = 1.0
PROBE_TIMEOUT = 5.0  # a probe that takes this long failed
PERIOD = 0.1
MONITOR_START_SECONDS = 60.0  # for the second caller to answer its first probes (then the baseline starts)
MIB = 2**20
VARIABLES = tuple(f"v{index}" for index in range(32))
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


# ------------------------------------------------------------------------------------- the server


@dataclass
class Target:
    """A running server under attack and what the attack may use of it."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    quick: bool
    log: Path
    settings: Settings
    notes: list[str] = field(default_factory=list)
    # Probes that start later do not count: the attack stopped the server on purpose (SIGTERM).
    watched_until: float = math.inf

    def grpc_channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}", options=CHANNEL_OPTIONS)

    def server_processes(self) -> list[int]:
        """The processes that serve (the supervisor's children with `--workers` > 1, else itself)."""
        pid = self.process.pid
        children = [p for p in descendants(pid) if _parent(p) == pid and "chainrule" in _command(p)]
        return children or [pid]


def _parent(pid: int) -> int:
    with contextlib.suppress(OSError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


@contextlib.contextmanager
def serving(workers: int, environ: dict[str, str], quick: bool, folder: Path) -> Iterator[Target]:
    """`chainrule serve` with `environ`, its output in a log file; killed if still there afterwards."""
    ready, log = folder / "ready.json", folder / "server.log"
    command = [str(ROOT / ".venv/bin/chainrule"), "serve", "--workers", str(workers)]
    command += ["--grpc-port", "0", "--http-port", "0", "--ready-file", str(ready)]
    with log.open("wb") as output:
        _container_nofile()  # inherited by the server
        process = subprocess.Popen(command, env={**server_env(), **environ}, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        ports = json.loads(ready.read_text())
        settings = Settings.from_environ(environ)
        yield Target(process, int(ports["grpc_port"]), int(ports["http_port"]), quick, log, settings)
    finally:
        if process.poll() is None:
            for pid in [process.pid, *descendants(process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait()


def _container_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < CONTAINER_NOFILE:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, CONTAINER_NOFILE))


def stop(target: Target, grace: float) -> float:
    """SIGTERM; seconds until the server (and every process below it) is gone, at most grace + 30."""
    tree = [target.process.pid, *descendants(target.process.pid)]
    for pid in tree:  # a stopped process cannot act on SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    started = time.monotonic()
    target.process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        target.process.wait(timeout=grace + 30)
    while any(_alive(pid) for pid in tree) and time.monotonic() - started < grace + 30:
        time.sleep(0.05)
    return time.monotonic() - started


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def tree_rss(pid: int) -> int:
    """VmRSS summed over `pid` and every process below it (pages shared between them count in each)."""
    total = 0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError):
            total += rss_bytes(member)
    return total


def tree_pss(pid: int) -> int:
    """Pss summed over the tree: each shared page split among its sharers, as a memory cgroup (a pod's
    limit) counts it once. The symbolic workers share most of their pages with the forkserver, so the
    VmRSS sum counts those several times: about 1 GiB against 0.5 GiB of Pss for two idle servers."""
    total = 0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            lines = Path(f"/proc/{member}/smaps_rollup").read_text().splitlines()
            total += int(next(line for line in lines if line.startswith("Pss:")).split()[1]) * 1024
    return total


# ------------------------------------------------------------------------------- the second caller


@dataclass
class Probe:
    """One kind of probe: when each started (wall clock), how long it took, and why it failed; and
    the one in flight, if any (it counts as a failure if it is still waiting at the end)."""

    samples: list[tuple[float, float, str | None]] = field(default_factory=list)
    pending: tuple[float, float] | None = None

    def add(self, started: float, seconds: float, failure: str | None) -> None:
        self.samples.append((started, seconds, failure))

    def final(self) -> list[tuple[float, float, str | None]]:
        pending = self.pending
        waited = 0.0 if pending is None else time.perf_counter() - pending[1]
        if pending is None or waited <= HEALTH_TARGET_SECONDS:  # not late yet: left out
            return list(self.samples)
        return [*self.samples, (pending[0], waited, f"no answer after {waited:.1f} s")]


def summary(samples: list[list[Any]], until: float = math.inf) -> dict[str, Any]:
    """Count, failures, p50, p99 and max of the probes that started before `until`; a failure counts
    with the time it took."""
    kept = [(seconds, failure) for started, seconds, failure in samples if started < until]
    times = [seconds for seconds, _ in kept]
    failures = [failure for _, failure in kept if failure is not None]
    if not times:
        return {"count": 0, "failures": 0, "p50": math.nan, "p99": math.nan, "max": math.nan, "texts": []}
    cut = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
    return {
        "count": len(times),
        "failures": len(failures),
        "p50": cut[49],
        "p99": cut[98],
        "max": max(times),
        "texts": failures,
    }


def _timed_probe(probe: Probe, call: Callable[[], str | None]) -> None:
    wall, started = time.time(), time.perf_counter()
    probe.pending = (wall, started)
    try:
        failure = call()
    except grpc.RpcError as error:
        failure = f"gRPC {error.code().name}: {error.details()}"
    except Exception as error:
        failure = f"{type(error).__name__}: {str(error)[:120]}"
    probe.add(wall, time.perf_counter() - started, failure)
    probe.pending = None


def monitor(grpc_port: int, http_port: int, pid: int, rss_cap: int, out: Path) -> None:
    """Probe until SIGTERM, then write the figures to `out` (the `--monitor` mode of this script)."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    faulthandler.register(signal.SIGUSR1)
    probes = {name: Probe() for name in ("healthz", "grpc_health", "cheap")}
    peak = {"rss": 0, "pss": 0, "killed": 0, "first": 0}
    base = f"http://127.0.0.1:{http_port}"
    cheap = _cheap_calls(base)

    def healthz() -> str | None:
        transport = httpx.HTTPTransport(local_address=SECOND_CALLER)
        with httpx.Client(transport=transport, timeout=PROBE_TIMEOUT) as client:
            status = client.get(f"{base}/healthz").status_code
        return None if status == 200 else f"HTTP {status}"

    def grpc_health() -> str | None:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT
            )
        return None if answer.status == health_pb2.HealthCheckResponse.SERVING else str(answer.status)

    def loop(probe: Probe, call: Callable[[], str | None]) -> None:
        while not stopping.is_set():
            _timed_probe(probe, call)
            stopping.wait(PERIOD)

    def memory() -> None:
        rounds = 0
        while not stopping.is_set():
            rss = tree_rss(pid)
            peak["first"] = peak["first"] or rss
            peak["rss"] = max(peak["rss"], rss)
            if rounds % 10 == 0:  # Pss walks the page tables: 15 ms for a tree of two servers
                peak["pss"] = max(peak["pss"], tree_pss(pid))
            rounds += 1
            if rss > rss_cap and not peak["killed"]:
                peak["killed"] = rss
                for member in [pid, *descendants(pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
            stopping.wait(PERIOD / 2)

    threads = [
        threading.Thread(target=loop, args=(probes["healthz"], healthz), daemon=True),
        threading.Thread(target=loop, args=(probes["grpc_health"], grpc_health), daemon=True),
        threading.Thread(target=loop, args=(probes["cheap"], cheap), daemon=True),
        threading.Thread(target=memory, daemon=True),
    ]
    for thread in threads:
        thread.start()
    # Ready once every probe has answered: the attack starts only then. On a slow machine this
    # process's imports and first connections took longer than the second of baseline allowed: a
    # short attack (overload, quick) was over before one HTTP probe had answered, and a SIGTERM
    # before the handler above killed it before it wrote anything.
    while not stopping.is_set() and not all(probe.samples for probe in probes.values()):
        stopping.wait(0.05)
    out.with_suffix(".ready").touch()

    def snapshot() -> None:
        # Not joined: a probe still waiting for an answer is recorded as such, not waited for.
        figures = {name: probe.final() for name, probe in probes.items()}
        partial = out.with_suffix(".partial")
        partial.write_text(json.dumps({"probes": figures, "first_rss": peak["first"], "peak_rss": peak["rss"],
                                       "peak_pss": peak["pss"], "killed_at": peak["killed"]}))  # fmt: skip
        partial.replace(out)

    # What it saw so far, every second: if this process cannot finish, the last one still counts.
    while not stopping.wait(1.0):
        snapshot()
    snapshot()
    os._exit(0)  # the daemon threads may be inside a call that has not answered


def _cheap_calls(base: str) -> Callable[[], str | None]:
    """Cached and cold Differentiate and Evaluate, and a cold Parse, in turn, over REST from SECOND_CALLER."""
    counter = iter(range(10**9))

    def call() -> str | None:
        k = next(counter)
        kind = k % 5
        body: dict[str, object]
        if kind == 4:  # as a person types: Parse has a worker of its own
            path, body = "/v1/parse", {"expression": f"cos(x)^2 + {k}*y"}
        elif kind == 0:
            path, body = "/v1/differentiate", {"expression": "sin(x)*x^2"}
        elif kind == 1:
            path, body = "/v1/differentiate", {"expression": f"x^2 + {k}*sin(x)"}
        elif kind == 2:
            path, body = "/v1/evaluate", {"expression": "sin(x)*x^2", "point": {"x": 0.5}}
        else:
            path, body = "/v1/evaluate", {"expression": f"x^3 + {k}*x", "point": {"x": 0.5}}
        transport = httpx.HTTPTransport(local_address=SECOND_CALLER)
        with httpx.Client(transport=transport, timeout=PROBE_TIMEOUT) as client:
            answer = client.post(f"{base}{path}", json=body)
        return None if answer.status_code == 200 else f"HTTP {answer.status_code} {answer.text[:100]}"

    return call


@contextlib.contextmanager
def watching(target: Target, rss_cap: int, folder: Path) -> Iterator[Callable[[], dict[str, Any]]]:
    """The second caller in its own process; yields a function that stops it and returns its figures."""
    out = folder / "monitor.json"
    command = [
        sys.executable,
        __file__,
        "--monitor",
        str(out),
        "--pid",
        str(target.process.pid),
        "--grpc-port",
        str(target.grpc_port),
        "--http-port",
        str(target.http_port),
        "--rss-cap",
        str(rss_cap),
    ]
    process = subprocess.Popen(command)
    result: dict[str, Any] = {}

    def finish() -> dict[str, Any]:
        if not result:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=PROBE_TIMEOUT * 3)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGUSR1)  # its threads' stacks to stderr: why it is stuck
                time.sleep(1.0)
                process.kill()
                process.wait()
                print("  the second caller did not stop: its last snapshot counts", file=sys.stderr)
            result.update(json.loads(out.read_text()))
        return result

    try:
        ready, waited_until = out.with_suffix(".ready"), time.monotonic() + MONITOR_START_SECONDS
        while not ready.exists() and process.poll() is None and time.monotonic() < waited_until:
            time.sleep(0.05)
        time.sleep(1.0)  # a second of probes before the attack: the baseline
        yield finish
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------ what attackers got


@dataclass
class Outcomes:
    """What each of the attacker's calls got: a code (and reason), and how long it took."""

    calls: list[tuple[str, float]] = field(default_factory=list)

    def add(self, what: str, seconds: float) -> None:
        self.calls.append((what, seconds))

    def summary(self) -> str:
        if not self.calls:
            return "no calls"
        by_kind: dict[str, list[float]] = {}
        for what, seconds in self.calls:
            by_kind.setdefault(what, []).append(seconds)
        parts = [f"{what} x{len(times)} ({_span(times)})" for what, times in sorted(by_kind.items())]
        return "; ".join(parts)


def _span(times: list[float]) -> str:
    low, high = min(times), max(times)
    return f"{low:.2f} s" if high - low < 0.01 else f"{low:.2f}-{high:.2f} s"


def grpc_outcome(error: grpc.aio.AioRpcError | None) -> str:
    """OK, or the code with the ErrorInfo reason and whether a RetryInfo came with it."""
    if error is None:
        return "OK"
    reason, retry = "", False
    with contextlib.suppress(Exception):
        status = rpc_status.from_call(error)
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            retry = retry or detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    text = error.code().name + (f" {reason}" if reason and reason != error.code().name else "")
    return text + (" +RetryInfo" if retry else "")


async def grpc_call(
    call: Callable[..., Awaitable[Any]], request: Any, outcomes: Outcomes, timeout: float = 120
) -> None:
    started = time.perf_counter()
    try:
        await call(request, timeout=timeout)
        what = "OK"
    except grpc.aio.AioRpcError as error:
        what = grpc_outcome(error)
    outcomes.add(what, time.perf_counter() - started)


def http_outcome(answer: httpx.Response) -> str:
    if answer.status_code == 200:
        return "HTTP 200"
    reason = re.search(r'"reason":\s*"([A-Z_]+)"', answer.text)
    return f"HTTP {answer.status_code}" + (f" {reason.group(1)}" if reason else "")


# --------------------------------------------------------------------------------------- attacks


async def huge_output(target: Target) -> str:
    """Item 1: a Hessian over 32 variables (1,057 columns out) at 100k points (one column, the
    others broadcast: an 800 KB request); and over REST a ~51 KB JSON body of 5k points."""
    points = 10_000 if target.quick else 100_000
    text = "exp(" + "*".join(VARIABLES) + ")"
    column = np.linspace(-0.1, 0.1, points)
    request = pb.GradientAtPointRequest(
        expression=text,
        hessian=True,
        points={
            name: pb.Array(f64le=(column if name == "v0" else np.array([0.5])).tobytes())
            for name in VARIABLES
        },
    )
    outcomes = Outcomes()
    async with target.grpc_channel() as channel:
        await grpc_call(pb_grpc.DifferentiationServiceStub(channel).GradientAtPoint, request, outcomes)
    rest_points = 1_000 if target.quick else 5_000
    body = {
        "expression": text,
        "hessian": True,
        "points": {
            name: {"values": [round(v, 4) for v in np.linspace(-0.1, 0.1, rest_points)]}
            if name == "v0"
            else {"values": [0.5]}
            for name in VARIABLES
        },
    }
    async with httpx.AsyncClient(timeout=120) as client:
        started = time.perf_counter()
        answer = await client.post(f"http://127.0.0.1:{target.http_port}/v1/gradient", json=body)
        outcomes.add(
            f"REST {http_outcome(answer)}, {len(answer.content) / MIB:.0f} MiB", time.perf_counter() - started
        )
    target.notes.append(f"gRPC {points:,} points; REST body {len(json.dumps(body)) // 1000} KB")
    return outcomes.summary()


async def compile_bomb(target: Target) -> str:
    """Item 2: four Hessians of a product of 14 sin(v0+...+v31+k) with 2 s deadlines, at once."""
    factors, count, names = (6, 2, VARIABLES[:16]) if target.quick else (14, 4, VARIABLES)
    text = "*".join(f"sin({'+'.join(names)}+{k})" for k in range(1, factors + 1))
    point = dict.fromkeys(names, 0.1)
    outcomes = Outcomes()
    async with target.grpc_channel() as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        await asyncio.gather(
            *(
                grpc_call(
                    stub.GradientAtPoint,
                    pb.GradientAtPointRequest(expression=f"{text}+{k}*v0", point=point, hessian=True),
                    outcomes,
                    timeout=2.0,
                )
                for k in range(count)
            )
        )
    target.notes.append(f"{count} x {len(text) / 1000:.1f} KB, {factors} factors of {len(names)} variables")
    return outcomes.summary()


async def cache_keys(target: Target) -> str:
    """Item 3: `formats` repeated a million times (a valid 1 MB request), 100 distinct expressions."""
    repeats, count = (100_000, 20) if target.quick else (1_000_000, 100)
    outcomes = Outcomes()
    async with target.grpc_channel() as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        for k in range(count):
            request = pb.DifferentiateRequest(
                expression=f"x + {k}", formats=[pb.OUTPUT_FORMAT_TEXT] * repeats
            )
            await grpc_call(stub.Differentiate, request, outcomes)
    target.notes.append(f"{count} x formats[{repeats:,}]")
    return outcomes.summary()


async def plans(target: Target) -> str:
    """Item 4: 10,000 distinct Evaluate plans and 9,400 distinct GradientAtPoint plans, 8 in flight."""
    evaluations, gradients = (300, 300) if target.quick else (10_000, 9_400)
    point = {"x": 0.5, "y": 0.25, "z": 1.5, "w": 2.0}
    outcomes = Outcomes()
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for index in range(evaluations):
        queue.put_nowait(("Evaluate", index))
    for index in range(gradients):
        queue.put_nowait(("GradientAtPoint", index))
    async with target.grpc_channel() as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)

        async def worker() -> None:
            while not queue.empty():
                kind, index = queue.get_nowait()
                text = expression(index, seed=1 if kind == "Evaluate" else 2)[0]
                if kind == "Evaluate":
                    await grpc_call(stub.Evaluate, pb.EvaluateRequest(expression=text, point=point), outcomes)
                else:
                    request = pb.GradientAtPointRequest(expression=text, point=point)
                    await grpc_call(stub.GradientAtPoint, request, outcomes)

        await asyncio.gather(*(worker() for _ in range(8)))
    # Each plan is a first sight, so the figure that matters is the memory they leave behind.
    return _counts(outcomes)


def _counts(outcomes: Outcomes) -> str:
    counts = Counter(what for what, _ in outcomes.calls)
    return ", ".join(f"{what} x{number:,}" for what, number in counts.most_common())


async def connections(target: Target) -> str:
    """Item 5: 20,000 idle TCP connections, a quarter with half-sent headers (15,000 to HTTP, 5,000
    to gRPC), held past the header timeout; from child processes (the file descriptor limit)."""
    total = 500 if target.quick else 20_000
    hold = 6.0 if target.quick else 40.0
    per_process = 5_000
    http_share = total * 3 // 4
    commands = []
    for start in range(0, total, per_process):
        count = min(per_process, total - start)
        port = target.http_port if start < http_share else target.grpc_port
        half = "half" if start < http_share else "idle"
        commands.append([sys.executable, __file__, "--hold", str(port), str(count), half, str(hold)])
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for command in commands]
    results = [json.loads(process.communicate(timeout=hold + 120)[0]) for process in processes]
    opened = sum(r["opened"] for r in results)
    refused = sum(r["refused"] for r in results)
    closed = sum(r["closed"] for r in results)
    target.notes.append(f"{total:,} connections held {hold:.0f} s")
    return f"{opened:,} opened, {refused:,} refused, {closed:,} closed by the server while held"


async def _hold(port: int, count: int, mode: str, seconds: float) -> dict[str, int]:
    """Open `count` connections; in mode `half` every fourth sends half a request head; hold them."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused = 0
    for index in range(count):
        try:
            opening = asyncio.open_connection("127.0.0.1", port, local_addr=(FLOODER, 0))
            reader, writer = await asyncio.wait_for(opening, 5)
        except (OSError, TimeoutError):
            refused += 1
            continue
        if mode == "half" and index % 4 == 0:
            writer.write(b"POST /v1/differentiate HTTP/1.1\r\nHost: attacker\r\nContent-Length: 40\r\n")
        opened.append((reader, writer))
    await asyncio.sleep(seconds)
    closed = sum(1 for reader, _ in opened if reader.at_eof() or _closed(reader))
    for _, writer in opened:
        writer.close()
    return {"opened": len(opened), "refused": refused, "closed": closed}


def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (EOF or reset), read without waiting."""
    transport = getattr(reader, "_transport", None)
    return transport is None or transport.is_closing()


async def partial_messages(target: Target) -> str:
    """Item 1, a variant: gRPC calls that each declare a message of MAX_REQUEST_BYTES, send 1 MB of
    it (as far as the server's windows let them) and stop, 500 on each of 8 connections from two
    addresses, the client answering pings so that nothing closes them; held past the head timeout.
    Before the receiving slots (transport/receiving.py) grpc took every megabyte before any handler
    ran: 4 GB; with them, two callers' stalled messages held every slot, and gRPC health waited."""
    connections, calls = (2, 200) if target.quick else (8, 500)
    declared = target.settings.max_request_bytes
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                NonReadingClient(target.grpc_port, (FLOODER, SECOND_FLOODER)[index % 2])
            )
            for index in range(connections)
        ]
        for _ in range(calls):
            for client in clients:
                await client.start_call("Evaluate", declared=declared, sent=1_000_000)
        await asyncio.sleep(target.settings.header_timeout_seconds + 2)
        sent = sum(client.sent for client in clients)
        ended = sum(client.finished for client in clients)
    total = connections * calls
    target.notes.append(f"{connections} connections x {calls} calls, each declaring {declared / MIB:.0f} MiB")
    return f"{sent / MIB:,.0f} MiB of {total:,} MB taken; {ended:,} of {total:,} calls ended by the server"


async def huge_maps(target: Target) -> str:
    """Item 6: 2.5M `point` keys (51 MB) and 1M `points` columns, pre-serialised."""
    keys, columns = (250_000, 100_000) if target.quick else (2_500_000, 1_000_000)
    point = {f"k{index}": 1.0 for index in range(keys)} | {"x": 0.5}
    first = pb.EvaluateRequest(expression="x + 1", point=point).SerializeToString()
    one = pb.Array(f64le=np.array([1.0]).tobytes())
    second = pb.EvaluateRequest(
        expression="x + 1", points={f"k{index}": one for index in range(columns)} | {"x": one}
    ).SerializeToString()
    outcomes = Outcomes()
    async with target.grpc_channel() as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/chainrule.v1.DifferentiationService/Evaluate"
        )
        for body in (first, second):
            await grpc_call(call, body, outcomes)
    target.notes.append(
        f"{keys:,} keys ({len(first) / 1e6:.0f} MB), {columns:,} columns ({len(second) / 1e6:.0f} MB)"
    )
    return outcomes.summary()


SLOW_SENDER = "127.0.0.77"


async def slow_bodies(target: Target) -> str:
    """Items 1 and 7, a variant (attacker round 9): REST bodies from one address, each started while
    there was room, then sent slowly (all but a few bytes, then a byte every 2 s, well inside the
    body timeout), together all but 16 bytes of REQUEST_BYTES_IN_FLIGHT. Bodies counted against the
    caller's share only as calls started: every other caller's call was refused 429 while they came."""
    seconds = 8.0 if target.quick else 30.0
    total = target.settings.request_bytes_in_flight
    largest = target.settings.max_request_bytes * 3 // 4
    trickled = int(seconds / 2) + 2
    sizes = [largest + trickled] * ((total - 16) // largest)
    sizes.append(total - 16 - largest * len(sizes) + trickled)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for size in sizes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", target.http_port, local_addr=(SLOW_SENDER, 0)
        )
        head = "POST /v1/evaluate HTTP/1.1\r\nhost: attacker\r\ncontent-type: application/json\r\n"
        writer.write(f"{head}content-length: {size}\r\n\r\n".encode() + b" " * (size - trickled))
        with contextlib.suppress(OSError, TimeoutError):  # refused: answered, and closed
            await asyncio.wait_for(writer.drain(), 10)
        streams.append((reader, writer))
    ending = time.monotonic() + seconds
    while time.monotonic() < ending:
        await asyncio.sleep(2.0)
        for _, writer in streams:
            if not writer.is_closing():
                writer.write(b" ")
    answers: Counter[str] = Counter()
    for reader, writer in streams:
        try:
            status = await asyncio.wait_for(reader.readline(), 0.5)
            answers[status.decode(errors="replace").strip() or "closed"] += 1
        except (OSError, TimeoutError):
            answers["still sending"] += 1
        writer.close()
    target.notes.append(f"{len(sizes)} bodies of up to {largest / MIB:.0f} MiB, {total / MIB:.0f} MiB in all")
    return ", ".join(f"{what} x{number}" for what, number in answers.most_common())


BATCH_SENDER, BATCH_VICTIM = "127.0.0.78", "127.0.0.79"


async def memory_queue(target: Target) -> str:
    """Item 7, working memory (attacker round 9): one caller keeps ten Hessians over 17 variables in
    flight, each a 208 KB request read on the event loop and 220 MiB of working memory (26k points x
    307 columns: sizing.py; a 61 MiB reply), so that two compute at once in NUMERIC_MEMORY_BYTES,
    while another caller, alone on its address, evaluates at 50k points. One queue for all made such
    a small batch wait behind the ten (2.7 s instead of 14 ms)."""
    seconds, points, names = (6.0 if target.quick else 30.0), 26_000, VARIABLES[:17]
    column = np.linspace(0.5, 0.6, points)
    hessian = pb.GradientAtPointRequest(
        expression="exp(" + "*".join(names) + ")",
        hessian=True,
        points={
            name: pb.Array(f64le=(column if name == names[0] else np.array([0.9])).tobytes())
            for name in names
        },
    )
    victim_points = pb.EvaluateRequest(
        expression="sin(x)*exp(-x^2)", points={"x": pb.Array(f64le=np.linspace(-1, 1, 50_000).tobytes())}
    )
    outcomes = Outcomes()
    victim: dict[str, list[float]] = {"alone": [], "beside": []}
    ending = time.monotonic() + seconds

    async def evaluate(stub: Any, when: str) -> None:
        started = time.perf_counter()
        await stub.Evaluate(victim_points, timeout=30)
        victim[when].append(time.perf_counter() - started)

    async def attacker(stub: Any) -> None:
        while time.monotonic() < ending:
            await grpc_call(stub.GradientAtPoint, hessian, outcomes, timeout=60)

    async with (
        grpc_channel_from(target.grpc_port, BATCH_SENDER) as attacking,
        grpc_channel_from(target.grpc_port, BATCH_VICTIM) as watching,
    ):
        stub = pb_grpc.DifferentiationServiceStub(watching)
        for _ in range(5):
            await evaluate(stub, "alone")
        attackers = [attacker(pb_grpc.DifferentiationServiceStub(attacking)) for _ in range(10)]
        running = asyncio.gather(*attackers)
        await asyncio.sleep(1.0)
        while time.monotonic() < ending:
            await evaluate(stub, "beside")
            await asyncio.sleep(0.2)
        await running
    alone, beside = (statistics.median(victim[when]) * 1e3 for when in ("alone", "beside"))
    target.notes.append(
        f"another caller's 50k-point Evaluate: p50 {alone:.0f} ms alone, {beside:.0f} ms beside the attack"
    )
    return _counts(outcomes)


EXPENSIVE = "(sin(x)^2 + cos(y)^2 + {k})^6 * exp(x*y) / (1 + x^2 + y^2)^3"


async def parse_steps(target: Target) -> str:
    """Item 2, Parse: one sympy step of 42 s each (sympy's assumptions evaluating a complex constant
    as it builds the expression), distinct texts, four in flight with 5 s deadlines. Parse ran on a
    thread of the server, where nothing stops a step: it held every other caller's Parse."""
    seconds = 6.0 if target.quick else 30.0
    outcomes = Outcomes()
    ending = time.monotonic() + seconds
    counter = iter(range(10**9))
    async with target.grpc_channel() as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)

        async def caller() -> None:
            while time.monotonic() < ending:
                text = f"acsc((log2((acos(-200) + 1))^(-1))) + x_{next(counter)}"
                await grpc_call(stub.Parse, pb.ParseRequest(expression=text), outcomes, timeout=5.0)

        await asyncio.gather(*(caller() for _ in range(4)))
    return _counts(outcomes)


async def short_deadlines(target: Target) -> str:
    """Item 2, the pool: cold cheap Differentiate calls with 4 ms deadlines, two in flight. A worker
    killed at its caller's deadline cost a replacement (about 0.25 s of CPU): 280 in 30 s before."""
    seconds = 6.0 if target.quick else 30.0
    outcomes = Outcomes()
    ending = time.monotonic() + seconds
    counter = iter(range(10**9))
    log_before = target.log.stat().st_size
    async with target.grpc_channel() as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)

        async def caller() -> None:
            while time.monotonic() < ending:
                k = next(counter)
                text = f"sin(x^{k % 97 + 2})*exp({k}*x)/(1 + x^2) + {k}"
                await grpc_call(stub.Differentiate, pb.DifferentiateRequest(expression=text), outcomes, 0.004)

        await asyncio.gather(caller(), caller())
    await asyncio.sleep(1.0)  # past the grace of the last ones
    with target.log.open("rb") as log:  # its warnings: older trees had no metric of replacements
        log.seek(log_before)
        replaced = sum(b"worker" in line and b"replacing it" in line for line in log)
    target.notes.append(f"symbolic workers replaced: {replaced}")
    return _counts(outcomes)


async def _expensive_calls(
    target: Target, addresses: list[str], seconds: float, expression: Callable[[int], str]
) -> str:
    """Each address (one call in flight per entry) sending `expression(k)` for ever new k over REST,
    FULL simplification, for `seconds`; backing off a little when refused at once, as a real client
    would."""
    outcomes = Outcomes()
    ending = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def caller(address: str) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        base = f"http://127.0.0.1:{target.http_port}"
        async with httpx.AsyncClient(transport=transport, base_url=base, timeout=60) as client:
            while time.monotonic() < ending:
                body = {
                    "expression": expression(next(counter)),
                    "wrt": [{"variable": "x"}],
                    "simplification": "SIMPLIFICATION_FULL",
                }
                started = time.perf_counter()
                try:
                    what = http_outcome(await client.post("/v1/differentiate", json=body))
                except httpx.HTTPError as error:
                    what = type(error).__name__
                outcomes.add(what, time.perf_counter() - started)
                if what.startswith("HTTP 429") or what.startswith("HTTP 503"):
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(caller(address) for address in addresses))
    return _counts(outcomes)


async def fairness(target: Target) -> str:
    """Item 7: eight callers (127.0.0.2-9) sending distinct expensive expressions (FULL simplification,
    seconds each), eight in flight each, while the second caller makes cheap cold requests."""
    in_flight = 4 if target.quick else 8  # 64 in all: as many as the symbolic queue holds
    addresses = [f"127.0.0.{2 + index % 8}" for index in range(8 * in_flight)]
    return await _expensive_calls(
        target, addresses, 8.0 if target.quick else 30.0, lambda k: EXPENSIVE.format(k=k + 3)
    )


PIPELINER = "127.0.0.80"


async def pipelining(target: Target) -> str:
    """Item 7, one caller's many cheap calls (an attack hunt, 2026-12-07): connections of one address
    each pipelining cached REST Differentiate calls, so that each has its next request ready the
    moment its reply is written. 200 of them kept 200 requests ready at every turn of the event
    loop, and another caller's gRPC health checks waited 1.1 s; now one address has at most
    MAX_HTTP_REQUESTS_PER_CALLER requests in progress, the rest wait their turn unread."""
    connections, pipelined = (32, 100) if target.quick else (200, 300)
    ending = time.monotonic() + (5.0 if target.quick else 15.0)
    body = b'{"expression": "sin(x^2)"}'
    request = (
        b"POST /v1/differentiate HTTP/1.1\r\nhost: attacker\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    answers: Counter[str] = Counter()

    async def pipelining_connection() -> None:
        while time.monotonic() < ending:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", target.http_port, local_addr=(PIPELINER, 0)
            )
            try:
                writer.write(request * pipelined)
                for _ in range(pipelined):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
                    await reader.readexactly(int(length[1]) if length else 0)
                    answers[head.split(b" ", 2)[1].decode()] += 1
            except (OSError, asyncio.IncompleteReadError) as error:
                answers[type(error).__name__] += 1
            finally:
                writer.close()

    await asyncio.gather(*(pipelining_connection() for _ in range(connections)))
    target.notes.append(f"{connections} connections of one address, {pipelined} requests pipelined on each")
    return ", ".join(f"{what} x{number:,}" for what, number in answers.most_common())


async def many_addresses(target: Target) -> str:
    """Item 7 across addresses: 60 callers (127.0.2.2-61), one in flight each, each call a
    full-budget Differentiate (FULL simplification of a 60th power: minutes of sympy), over and over,
    while the second caller makes cheap cold requests. Round robin among callers made the second
    caller take turns with all 60: 3 of 8 of its cold calls waited out their budget (a hunt). Each
    address's first full-budget call takes turns with everyone's; its next ones wait behind (for
    `pool.COSTLY_SECONDS`), so the attack lasts long enough for most addresses to have had one."""
    seconds, count = (20.0, 8) if target.quick else (120.0, 60)
    addresses = [f"127.0.2.{2 + index}" for index in range(count)]
    return await _expensive_calls(target, addresses, seconds, lambda k: f"(x + y + z + w)^60 + {k}")


async def overload(target: Target) -> str:
    """Item 10: 2,000 concurrent cached Differentiate calls over 20 channels, which grpc puts on one
    connection (its global subchannel pool): as one client process with a burst of calls would."""
    total = 300 if target.quick else 2_000
    request = pb.DifferentiateRequest(expression="sin(x^2) * exp(3x)")
    outcomes = Outcomes()
    channels = [target.grpc_channel() for _ in range(20)]
    try:
        await pb_grpc.DifferentiationServiceStub(channels[0]).Differentiate(request, timeout=30)  # cached
        stubs = [pb_grpc.DifferentiationServiceStub(channel) for channel in channels]
        await asyncio.gather(
            *(grpc_call(stubs[k % 20].Differentiate, request, outcomes, timeout=30) for k in range(total))
        )
    finally:
        for channel in channels:
            await channel.close()
    return _counts(outcomes)


async def continuation_flood(target: Target) -> str:
    """Item 5, headers that never end (an attack hunt, 2026-12-07): gRPC calls whose header block
    never ends, CONTINUATION frames of junk headers as fast as the sockets take them, from 4
    connections of one address. grpc parses them past its metadata limit and has no bound for them:
    a known limit (docs/security.md, "Connections"), measured here, not met."""
    connections, seconds = (2, 5.0) if target.quick else (4, 15.0)
    method = "/chainrule.v1.DifferentiationService/Differentiate"
    sent = await _flooding(connections, seconds, endless_header_block, target.grpc_port, method)
    return f"{connections} header blocks that never end, {sent / MIB:,.0f} MiB sent in {seconds:.0f} s"


async def health_flood(target: Target) -> str:
    """Item 10, calls that end before their message (an attack hunt, 2026-12-07): HEADERS with
    END_STREAM for grpc.health.v1's Check, 100 a write, as fast as 4 connections of one address take
    them. They wait in grpc's queue of that method ahead of every other caller's Check: gRPC health
    stalls (the documented limit of calls dead on arrival), HTTP health, which the manifests probe,
    must not."""
    connections, seconds = (2, 5.0) if target.quick else (4, 15.0)
    method = "/grpc.health.v1.Health/Check"
    sent = await _flooding(connections, seconds, calls_without_messages, target.grpc_port, method)
    return (
        f"{connections} connections of calls without a message, {sent / MIB:,.0f} MiB sent in {seconds:.0f} s"
    )


async def _flooding(
    connections: int, seconds: float, flood: Callable[..., int], port: int, method: str
) -> int:
    """`flood(port, method, stop, source=FLOODER)` on `connections` threads for `seconds`: bytes sent."""
    stopping = threading.Event()
    loop = asyncio.get_running_loop()
    floods = [
        loop.run_in_executor(None, lambda: flood(port, method, stopping.is_set, source=FLOODER))
        for _ in range(connections)
    ]
    await asyncio.sleep(seconds)
    stopping.set()
    return sum(await asyncio.gather(*floods))


async def stopped_process(target: Target) -> str:
    """Item 9: one of two server processes SIGSTOPped; the supervisor should replace it."""
    processes = target.server_processes()
    if len(processes) < 2:
        return f"expected two server processes, found {len(processes)}"
    victim = processes[0]
    os.kill(victim, signal.SIGSTOP)
    heartbeat = target.settings.heartbeat_seconds
    watched = heartbeat + (3.0 if target.quick else 8.0)
    started = time.monotonic()
    replaced_after = None
    while time.monotonic() - started < watched:
        await asyncio.sleep(0.2)
        if replaced_after is None and not _alive(victim) and len(target.server_processes()) >= 2:
            replaced_after = time.monotonic() - started
    if _alive(victim):
        os.kill(victim, signal.SIGCONT)
        return f"not replaced within {watched:.0f} s (heartbeat {heartbeat:g} s)"
    if replaced_after is None:
        return f"killed, not replaced within {watched:.0f} s"
    return f"killed and replaced after {replaced_after:.1f} s (heartbeat {heartbeat:g} s)"


async def sigterm(target: Target) -> str:
    """Item 8: SIGTERM while cold derivatives and 10^5-point gradients are running; what the calls
    in flight got, and how long the server took to exit (the drain's own figure)."""
    outcomes = Outcomes()
    ending = asyncio.Event()
    grace = target.settings.grace_seconds
    columns = {name: pb.Array(f64le=np.linspace(0, 1, 100_000).tobytes()) for name in "xyzw"}
    counter = iter(range(10**9))

    async def load(stub: pb_grpc.DifferentiationServiceAsyncStub, batch: bool) -> None:
        while not ending.is_set():
            k = next(counter)
            if batch:
                call: Any = grpc_call(
                    stub.GradientAtPoint,
                    pb.GradientAtPointRequest(expression=f"sin(x)*y + {k}*z*w", points=columns),
                    outcomes,
                    timeout=60,
                )
            else:
                call = grpc_call(
                    stub.Differentiate,
                    pb.DifferentiateRequest(
                        expression=EXPENSIVE.format(k=k + 3),
                        wrt=[pb.Wrt(variable="x")],
                        simplification=pb.SIMPLIFICATION_FULL,
                    ),
                    outcomes,
                    timeout=60,
                )
            await call
            if outcomes.calls and outcomes.calls[-1][0].startswith("UNAVAILABLE"):
                return

    async with target.grpc_channel() as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        tasks = [asyncio.create_task(load(stub, batch=k % 2 == 0)) for k in range(6)]
        await asyncio.sleep(2.0 if target.quick else 5.0)
        started = time.monotonic()
        # Probes are judged up to the signal, less one probe's interval: from the signal on, health
        # answers NOT_SERVING by design (the drain), and a probe sent just before it may get that
        # answer (CI, 2026-12-05: one gRPC health probe, status 2, counted as a failure).
        target.watched_until = time.time() - PERIOD
        target.process.send_signal(signal.SIGTERM)
        exited = await asyncio.to_thread(_wait_exit, target.process, grace + 30)
        ending.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    seconds = time.monotonic() - started
    state = (
        f"exited in {seconds:.1f} s (grace {grace:g} s)" if exited else f"still running after {seconds:.0f} s"
    )
    return f"{state}; calls: {_counts(outcomes)}"


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


@dataclass(frozen=True)
class Attack:
    name: str
    item: int
    run: Callable[[Target], Coroutine[Any, Any, str]]
    workers: int = 1
    linger: float = 2.0  # seconds the second caller keeps watching after the attack's calls end
    environ: dict[str, str] = field(default_factory=dict)
    quick_environ: dict[str, str] = field(default_factory=dict)
    # Set in a network namespace of the attack's own (`unshare -n`), as a deployment would set them
    # in the pod's: the attack then runs there, server and second caller included.
    sysctls: dict[str, str] = field(default_factory=dict)


ATTACKS = (
    Attack("huge-output", 1, huge_output),
    Attack("compile-bomb", 2, compile_bomb, linger=20.0),
    Attack("cache-keys", 3, cache_keys),
    Attack("plans", 4, plans),
    Attack("connections", 5, connections, quick_environ={"CHAINRULE_HEADER_TIMEOUT_SECONDS": "2"}),
    Attack("huge-maps", 6, huge_maps),
    Attack("partial-messages", 1, partial_messages, quick_environ={"CHAINRULE_HEADER_TIMEOUT_SECONDS": "2"}),
    Attack("parse-steps", 2, parse_steps),
    Attack("short-deadlines", 2, short_deadlines),
    Attack("fairness", 7, fairness),
    Attack("many-addresses", 7, many_addresses),
    Attack("pipelining", 7, pipelining),
    Attack("overload", 10, overload),
    Attack("slow-bodies", 7, slow_bodies),
    Attack("memory-queue", 7, memory_queue),
    Attack("continuation-flood", 5, continuation_flood),
    Attack("health-flood", 10, health_flood),
    Attack(
        "stopped-process", 9, stopped_process, workers=2, quick_environ={"CHAINRULE_HEARTBEAT_SECONDS": "2"}
    ),
    # The same with the kernel moving the connections queued on the stopped process's listeners to the
    # other process's when it dies (deploy/k8s/overlays/migrate-requests).
    Attack(
        "stopped-process-migrating",
        9,
        stopped_process,
        workers=2,
        quick_environ={"CHAINRULE_HEARTBEAT_SECONDS": "2"},
        sysctls={"net.ipv4.tcp_migrate_req": "1"},
    ),
    Attack("sigterm", 8, sigterm, linger=0.0),
)


# ------------------------------------------------------------------------------------ the verdicts


def documented_bound(environ: dict[str, str], processes: int) -> tuple[int, str]:
    """The resident memory the docs promise for this server tree, and where that figure comes from."""
    settings = Settings.from_environ(environ)
    try:  # the bound each server process enforces, where the tree has one (issue 15, items 1-4)
        from chainrule.server import sizing  # noqa: PLC0415
    except ImportError:
        limit = _pod_memory_limit()
        return limit * processes // 2, "the pod's memory limit (deploy/k8s), per 2 server processes"
    supervisor = getattr(sizing, "SUPERVISOR_BYTES", 0) if processes > 1 else 0
    bound = processes * sum(sizing.memory_bound(settings).values()) + supervisor
    return bound, "sizing.memory_bound per server process (with its workers), and the supervisor"


def _pod_memory_limit() -> int:
    text = (ROOT / "deploy/k8s/base/deployment.yaml").read_text()
    found = re.search(r"limits:\s*\n(?:\s+\w+:.*\n)*?\s+memory:\s*(\d+)(Mi|Gi)", text)
    if found is None:
        raise RuntimeError("no memory limit in deploy/k8s/base/deployment.yaml")
    return int(found.group(1)) * (MIB if found.group(2) == "Mi" else 1024 * MIB)


@dataclass
class Result:
    name: str
    item: int
    status: str
    healthz: dict[str, float]
    grpc_health: dict[str, float]
    cheap: dict[str, float]
    first_rss: int
    peak_rss: int
    peak_pss: int
    bound: int
    bound_source: str
    exit_seconds: float
    grace: float
    log_bytes: int
    notes: list[str]
    killed_at_cap: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def health_max(self) -> float:
        return max(self.healthz["max"], self.grpc_health["max"])

    @property
    def health_ok(self) -> bool:
        healthy = self.healthz["failures"] == 0 and self.grpc_health["failures"] == 0
        return healthy and self.health_max <= HEALTH_TARGET_SECONDS

    @property
    def cheap_success(self) -> float:
        count = self.cheap["count"]
        return (count - self.cheap["failures"]) / count if count else math.nan


def run_attack(attack: Attack, quick: bool, rss_cap: int) -> Result:
    environ = {**attack.environ, **(attack.quick_environ if quick else {})}
    with tempfile.TemporaryDirectory() as name, serving(attack.workers, environ, quick, Path(name)) as target:
        folder = Path(name)
        grace = target.settings.grace_seconds
        with watching(target, rss_cap, folder) as finish:
            log_before = target.log.stat().st_size
            try:
                status = asyncio.run(attack.run(target))
            except Exception as error:
                status = f"attack failed: {type(error).__name__}: {str(error)[:200]}"
            time.sleep(attack.linger * (0.25 if quick else 1.0))
            figures = finish()
        log_bytes = target.log.stat().st_size - log_before
        exit_seconds = 0.0 if target.process.poll() is not None else stop(target, grace)
        bound, source = documented_bound(environ, attack.workers)
    probes = {name: summary(samples, target.watched_until) for name, samples in figures["probes"].items()}
    failures = [text for probe in probes.values() for text in probe.pop("texts")]
    return Result(
        attack.name,
        attack.item,
        status,
        probes["healthz"],
        probes["grpc_health"],
        probes["cheap"],
        int(figures["first_rss"]),
        int(figures["peak_rss"]),
        int(figures["peak_pss"]),
        bound,
        source,
        exit_seconds,
        grace,
        log_bytes,
        target.notes,
        int(figures["killed_at"]),
        sorted(Counter(failures), key=failures.count)[-5:],
    )


def table(results: list[Result], command: str) -> list[str]:
    """The attacks' section of RESULTS.md."""
    lines = [
        "## Attacks (issue 15): a second caller's view of each",
        "",
        f"`{command}`; each attack against a fresh `chainrule serve` with default settings; a second caller "
        f"(another process, {SECOND_CALLER}) checks health every {PERIOD * 1e3:.0f} ms and makes cheap "
        "requests (cached and cold Differentiate and Evaluate, and cold Parse, over REST, a new connection "
        "each). Targets: "
        f"every health check answered within {HEALTH_TARGET_SECONDS:g} s, every cheap request served, "
        "peak memory of the server and its workers under the documented bound (as Pss: the VmRSS sum counts "
        "the pages the workers share with their forkserver once per worker), exit within the grace period.",
        "",
        "| attack (issue item) | what the attacker got | health p50 / p99 / max (HTTP; gRPC) | health met? "
        "| second caller served (latency) | VmRSS sum before → peak; peak Pss / bound | exit after SIGTERM |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        health = f"{_ms(r.healthz)}; {_ms(r.grpc_health)}" + (
            f"; {r.healthz['failures'] + r.grpc_health['failures']:.0f} failed" if not r.health_ok else ""
        )
        served = f"{r.cheap['count'] - r.cheap['failures']:.0f}/{r.cheap['count']:.0f}"
        served += f" (p99 {r.cheap['p99']:.2f} s)" if r.cheap["count"] else ""
        rss = f"{r.first_rss / MIB:,.0f} → {r.peak_rss / MIB:,.0f}; "
        rss += f"{r.peak_pss / MIB:,.0f} / {r.bound / MIB:,.0f} MiB"
        if r.peak_pss > r.bound:
            rss += " **over**"
        if r.killed_at_cap:
            rss += f" (killed at the {r.killed_at_cap / MIB:,.0f} MiB safety cap)"
        exit_text = f"{r.exit_seconds:.1f} s / {r.grace:g} s" if r.name != "sigterm" else "see status"
        lines.append(
            f"| {r.name} ({r.item}) | {r.status} | {health} | {'yes' if r.health_ok else '**no**'} "
            f"| {served} | {rss} | {exit_text} |"
        )
    lines += ["", "Notes per attack:", ""]
    for r in results:
        details = [
            *r.notes,
            f"server log {r.log_bytes / 1e3:,.0f} KB during the attack",
            f"bound: {r.bound_source}",
        ]
        if r.failures:
            details.append("second caller's failures include " + "; ".join(r.failures))
        lines.append(f"- **{r.name}**: " + "; ".join(details))
    return lines


def _ms(probe: dict[str, float]) -> str:
    return " / ".join(f"{probe[k] * 1e3:,.0f}" for k in ("p50", "p99", "max")) + " ms"


def in_namespace(attack: Attack, quick: bool, rss_cap: int) -> Result | None:
    """`attack` run by a copy of this script in a network namespace of its own with the attack's
    sysctls set (root, or user namespaces, needed); None, said why, where that cannot be made."""
    with tempfile.TemporaryDirectory() as name:
        output = Path(name) / "result.json"
        setup = [
            "ip link set lo up",
            *(f"sysctl -q -w {key}={value}" for key, value in attack.sysctls.items()),
        ]
        command = [
            sys.executable,
            __file__,
            "--only",
            attack.name,
            "--json",
            str(output),
            "--rss-cap",
            str(rss_cap),
        ]
        command += ["--quick"] if quick else []
        script = " && ".join([*setup, "exec " + " ".join(map(shlex.quote, command))])
        done = subprocess.run(
            ["unshare", "-n", "--", "sh", "-c", script], check=False, capture_output=True, text=True
        )
        if done.returncode != 0 or not output.exists():
            print(f"  not run: {(done.stderr.strip().splitlines() or ['no result'])[-1]}", file=sys.stderr)
            return None
        (found,) = json.loads(output.read_text())
        result = Result(**found)
        result.notes.append(
            "in a network namespace of its own with "
            + ", ".join(f"{key}={value}" for key, value in attack.sysctls.items())
        )
        return result


def run(quick: bool, only: set[str] | None = None, rss_cap: int = 6 * 1024 * MIB) -> list[Result]:
    results = []
    for attack in ATTACKS:
        if only and attack.name not in only:
            continue
        print(f"attack {attack.name} ...", file=sys.stderr, flush=True)
        namespaced = attack.sysctls and not _in_its_namespace(attack)
        result = in_namespace(attack, quick, rss_cap) if namespaced else run_attack(attack, quick, rss_cap)
        if result is not None:
            results.append(result)
            print(f"  {result.status}", file=sys.stderr, flush=True)
    return results


def _in_its_namespace(attack: Attack) -> bool:
    """Whether this process runs where the attack's sysctls already hold (the copy `in_namespace` started)."""
    return all(
        Path("/proc/sys", *key.split(".")).read_text().strip() == value
        for key, value in attack.sysctls.items()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down attacks (make bench-quick)")
    parser.add_argument("--only", help="comma-separated attack names: " + ", ".join(a.name for a in ATTACKS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rss-cap", type=int, default=6 * 1024 * MIB, help="kill a server past this RSS")
    parser.add_argument("--monitor", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hold", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.monitor:
        monitor(args.grpc_port, args.http_port, args.pid, args.rss_cap, args.monitor)
        return 0
    if args.hold:
        port, count, mode, seconds = args.hold
        print(json.dumps(asyncio.run(_hold(int(port), int(count), mode, float(seconds)))))
        return 0
    only = set(args.only.split(",")) if args.only else None
    results = run(args.quick, only, args.rss_cap)
    command = "python bench/attacks.py" + (" --quick" if args.quick else "")
    print("\n".join(table(results, command)))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
