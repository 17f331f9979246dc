"""Work under a time budget for the one-shot commands: this process is the worker to kill."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from chainrule.server.cli import output

T = TypeVar("T")
_TIMED_OUT = 1


def within_budget(work: Callable[[], T], budget: float, label: str) -> T:
    """`work()` on a daemon thread; past `budget` seconds (0: none), print why and exit the process."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # handed to the main thread, which raises it
            outcome.append((False, error))

    thread = threading.Thread(target=target, name="chainrule-cli-work", daemon=True)
    elapsed = output.Elapsed(label)
    thread.start()
    waited = 0.0
    while thread.is_alive():
        thread.join(0.1)
        waited += 0.1
        elapsed.tick()
        if budget and waited >= budget and thread.is_alive():
            elapsed.done()
            print(
                f"chainrule: {label} did not finish within the budget of {budget:g} s "
                "(CHAINRULE_SYMBOLIC_BUDGET_SECONDS, or --budget SECONDS; 0: no limit)",
                file=sys.stderr,
            )
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(_TIMED_OUT)  # sympy cannot be interrupted: this process is the one to kill
    elapsed.done()
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    result: T = value
    return result
