"""Work under a time budget for the one-shot commands: this process is the worker to kill."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from chainrule.server.cli import output
from chainrule.server.compute import lifetime

T = TypeVar("T")
_TIMED_OUT = 1
# How long past the budget the watchdog process waits for the thread check below before it kills.
_WATCHDOG_GRACE_SECONDS = 1.0


def within_budget(work: Callable[[], T], budget: float, label: str) -> T:
    """`work()` on a daemon thread; past `budget` seconds (0: none), print why and exit the process."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # handed to the main thread, which raises it
            outcome.append((False, error))

    message = (
        f"chainrule: {label} did not finish within the budget of {budget:g} s "
        "(CHAINRULE_SYMBOLIC_BUDGET_SECONDS, or --budget SECONDS; 0: no limit)"
    )
    thread = threading.Thread(target=target, name="chainrule-cli-work", daemon=True)
    watchdog = _watchdog(budget + _WATCHDOG_GRACE_SECONDS, message) if budget else None
    elapsed = output.Elapsed(label)
    thread.start()
    waited = 0.0
    try:
        while thread.is_alive():
            thread.join(0.1)
            waited += 0.1
            elapsed.tick()
            if budget and waited >= budget and thread.is_alive():
                elapsed.done()
                print(message, file=sys.stderr)
                sys.stderr.flush()
                sys.stdout.flush()
                _stop(watchdog)
                os._exit(_TIMED_OUT)  # sympy cannot be interrupted: this process is the one to kill
    finally:
        _stop(watchdog)
    elapsed.done()
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    result: T = value
    return result


def _watchdog(seconds: float, message: str) -> int:
    """A child process that prints `message` and kills this one after `seconds`; its pid.

    The loop above needs the GIL to notice the budget, and one long call into C holds it throughout
    (mpmath multiplying integers of billions of bits for `--verify` of exp(exp(exp(exp(x))))): it
    went on for minutes. The child needs no lock of ours. It only sleeps, writes and signals.
    """
    parent = os.getpid()
    child = os.fork()
    if child:
        return child
    try:
        lifetime.die_with_parent(parent)  # a command killed (SIGTERM) takes its watchdog with it
        time.sleep(seconds)
        if os.getppid() == parent:  # else the parent is gone already and its pid may be another's
            os.write(2, f"\n{message}\n".encode())
            os.kill(parent, signal.SIGKILL)
    finally:
        os._exit(0)


def _stop(watchdog: int | None) -> None:
    if watchdog is not None:
        try:
            os.kill(watchdog, signal.SIGKILL)
            os.waitpid(watchdog, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
