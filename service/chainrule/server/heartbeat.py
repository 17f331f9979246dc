"""Heartbeats: how the supervisor notices a server process that no longer runs its event loop.

A process that exits is replaced by the supervisor at once; one that is stopped (SIGSTOP), deadlocked,
or stuck in a long computation on its event loop keeps its listening sockets, and the kernel keeps
handing it new connections that nobody accepts. Each supervised server process therefore beats: a
task on its event loop writes the time (CLOCK_MONOTONIC, shared by every process of the host) into a
small file every `interval` seconds. The supervisor reads it; a beat older than the limit gets the
process killed, and the supervisor's usual restart follows.

A process stopped by a signal needs no wait: the kernel says so (`stopped`), and the supervisor kills
it on its next check (every 0.1 s) rather than after the heartbeat's limit. The heartbeat remains for
what the kernel cannot see: a loop that runs but does not come back to its events.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path

_FORMAT = struct.Struct("<d")


def beat_interval(limit_seconds: float) -> float:
    """Four beats per limit, so one late beat is not a miss."""
    return max(0.05, limit_seconds / 4)


async def beat(path: Path, interval: float) -> None:
    """Write the time into `path` every `interval` seconds, from the event loop, until cancelled."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.pwrite(fd, _FORMAT.pack(time.monotonic()), 0)
            await asyncio.sleep(interval)
    finally:
        os.close(fd)


def stopped(pid: int) -> bool:
    """Whether process `pid` is stopped by a signal (SIGSTOP, SIGTSTP...): state `T` in /proc/PID/stat.

    Not `t` (stopped by a debugger that traces it: someone is looking at it on purpose). False when
    the process is gone or /proc is not there (not Linux): the heartbeat still covers those.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may itself contain any byte.
    fields = stat[stat.rfind(b")") + 1 :].split()
    return bool(fields) and fields[0] == b"T"


def silence(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat written to `path`; None before the first one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < _FORMAT.size:
        return None
    (last,) = _FORMAT.unpack_from(data)
    return (time.monotonic() if now is None else now) - float(last)
