"""What the scenarios of bench/run.py share: result rows, servers, raw gRPC calls, metric deltas.

Servers start through `harness.running` (the `--ready-file` handshake); metrics come from
`harness.scrape`. Calls are made with pre-serialised request bytes and return raw response bytes,
so the client's protobuf work is done once, outside the timings, and is the same for both sides.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

ROOT = harness.ROOT
# The repository too: bench/attacks.py attacks with the tests' raw HTTP/2 client (tests/h2raw.py).
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
SERVICE = "/chainrule.v1.DifferentiationService/"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Row:
    """One line of RESULTS.md: chainrule's figure, the baseline's, and the target on their ratio."""

    scenario: str
    measure: str
    chainrule: float
    baseline: float
    unit: str
    target: float | None = None  # None: reported, no target
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.chainrule / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "reported"
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:g}"


def server_env(**settings: str) -> dict[str, str]:
    """The environment of a benchmarked server: `harness.SERVER_LOGGING`, metrics always on."""
    extra = {f"CHAINRULE_{key.upper()}": value for key, value in settings.items()}
    return {**os.environ, **harness.SERVER_LOGGING, **extra}


def chainrule_command(cpus: str | None = None, workers: int = 1) -> list[str]:
    command = [str(ROOT / ".venv/bin/chainrule"), "serve", "--workers", str(workers)]
    command += ["--grpc-port", "0", "--http-port", "0"]
    return harness.pinned(cpus, command) if cpus else command


def echo_command(cpus: str | None = None) -> list[str]:
    command = [sys.executable, str(ROOT / "bench/echo_numeric.py"), "--port", "0"]
    return harness.pinned(cpus, command) if cpus else command


@contextmanager
def channel(port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as opened:
        yield opened


def raw_method(opened: grpc.Channel, method: str) -> Callable[[bytes], bytes]:
    """A unary call taking and returning serialised bytes (no protobuf work in the timed path)."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = opened.unary_unary(SERVICE + method)
    return call


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stage(samples: Samples, name: str) -> tuple[float, float]:
    """(sum, count) of `chainrule_stage_seconds{stage=name}`."""
    labels = (("stage", name),)
    return (
        samples.get(("chainrule_stage_seconds_sum", labels), 0.0),
        samples.get(("chainrule_stage_seconds_count", labels), 0.0),
    )


def handling(samples: Samples, method: str) -> tuple[float, float]:
    """(sum, count) of `grpc_server_handling_seconds` for one method."""
    labels = (
        ("grpc_method", method),
        ("grpc_service", "chainrule.v1.DifferentiationService"),
        ("grpc_type", "unary"),
    )
    return (
        samples.get(("grpc_server_handling_seconds_sum", labels), 0.0),
        samples.get(("grpc_server_handling_seconds_count", labels), 0.0),
    )


def delta(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, int]:
    """Seconds and count observed between two scrapes."""
    return after[0] - before[0], round(after[1] - before[1])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    """Child processes of every thread of `pid` (the forkserver is started from a pool thread)."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(word) for word in path.read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the forkserver and the symbolic workers it forked)."""
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found
