"""Knowing that an evaluation overflowed: numpy's overflow flag, and the kernels' own reports.

numpy tests the hardware's overflow flag after each operation and, under
`np.errstate(over="call", call=watch)`, calls `watch` when it is set: nothing is added to the
operations that do not overflow. scipy's special functions return inf without setting the flag
(gamma(200)), so the kernels that can overflow tell the same handler (`reported`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


class Watch:
    """numpy's error handler for `np.errstate(over="call", call=watch)`: notes that an operation
    overflowed since the last `clear`."""

    def __init__(self) -> None:
        self.overflowed = False

    def __call__(self, kind: str, flag: int) -> None:
        self.overflowed = True

    def clear(self) -> None:
        self.overflowed = False


def reported(result: Any) -> Any:
    """`result`, once the overflow handler (if one is watching) is told that it holds an infinity."""
    if np.geterr()["over"] == "call" and np.isinf(result).any():
        handler = np.geterrcall()
        if callable(handler):
            handler("overflow", 2)
    return result


def reporting(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, its infinite results `reported`."""

    @functools.wraps(function)
    def call(*args: Any, **keywords: Any) -> Any:
        return reported(function(*args, **keywords))

    return call
