"""JAX `jit(vmap(grad(f)))` in a child process whose malloc is tuned as chainrule's server tunes its own.

chainrule's server keeps freed memory for the next batch (`allocator.py`,
CHAINRULE_MALLOC_KEEP_BYTES); JAX in the benchmark's own process runs with glibc's defaults, as its
users run it. To show what that setting is worth on its own, the same JAX function also runs here,
with glibc's environment tunables set to the same thresholds and one arena. One line on stdin: one timed call;
one line out: its seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import batch

from chainrule.server.compute.allocator import MMAP_THRESHOLD_MAX
from chainrule.server.config import Settings


def tuned_environment() -> dict[str, str]:
    keep = Settings().malloc_keep_bytes
    return {
        **os.environ,
        "MALLOC_TRIM_THRESHOLD_": str(keep),
        "MALLOC_TOP_PAD_": str(keep),
        "MALLOC_MMAP_THRESHOLD_": str(min(keep, MMAP_THRESHOLD_MAX)),
        "MALLOC_ARENA_MAX": "1",
    }


class TunedJax:
    """The child process: `seconds()` times one call there."""

    def __init__(self, points: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(points)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=tuned_environment(),
        )  # fmt: skip
        if self._line() != "ready":
            raise RuntimeError("JAX peer did not start")

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def seconds(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self._line())

    def __enter__(self) -> TunedJax:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> int:
    run = batch.jax_gradient(batch.NEURON)
    if run is None:
        return 1
    columns = batch.make_columns(int(sys.argv[1]))
    run(columns)  # compiles
    print("ready", flush=True)
    for _ in sys.stdin:
        started = time.perf_counter()
        run(columns)
        print(time.perf_counter() - started, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
