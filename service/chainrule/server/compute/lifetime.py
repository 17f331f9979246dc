"""A child process that dies with its parent (Linux `PR_SET_PDEATHSIG`).

A symbolic worker's budget is kept by the server process that sent it the work: killed with that
process (SIGKILL, an OOM kill, the supervisor replacing a stalled one), a worker in the middle of a
task went on computing with nobody to stop it, outside the process tree the memory bound counts (an
attack hunt: 46 s of CPU and 552 MB for a 5 s budget, then tracebacks into the log). The forkserver
its workers fork from exits when the server process does (its pipe from it closes); each worker
asks the kernel to kill it when the forkserver goes. The CLI's watchdog likewise goes with the
command it watches.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent (`parent`, its pid when it forked us) exits; exit now
    if that has happened already. No-op where the kernel has no such request (not Linux)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it exited before the request was made: nobody would signal us
        os._exit(1)
