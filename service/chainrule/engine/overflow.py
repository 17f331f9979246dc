"""Knowing that an evaluation overflowed: numpy's overflow flag, and the kernels' own reports.

numpy tests the hardware's overflow flag after each operation and, under
`np.errstate(over="call", call=watch)`, calls `watch` when it is set: nothing is added to the
operations that do not overflow. scipy's special functions return inf without setting the flag
(gamma(200)), and some kernels overflow inside where their value does not (sech(800) computes
cosh(800) too), so such kernels run with the flag ignored and tell the handler of an infinite value
themselves (`contained`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


class Watch:
    """numpy's error handler for `np.errstate(over="call", call=watch)` (or under=...): notes that
    an operation set the flag since the last `clear`."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, kind: str, flag: int) -> None:
        self.seen = True

    def clear(self) -> None:
        self.seen = False


def reported(result: Any) -> Any:
    """`result`, once the overflow handler (if one is watching) is told that it holds an infinity."""
    if np.isinf(result).any():
        report()
    return result


def report() -> None:
    """Tell the overflow handler, if one is watching, that a value overflowed."""
    if np.geterr()["over"] == "call" and callable(handler := np.geterrcall()):
        handler("overflow", 2)


def contained(function: Callable[..., Any], *, underflow: bool = False) -> Callable[..., Any]:
    """`function` called with the overflow flag ignored, and an infinity it answers `reported`: its
    own operations may overflow where its value does not (np.where computes both branches). With
    `underflow`, an underflow inside is reported as an overflow too (a value computed in doubles for
    a wider run: sech(800) is 0.0 in doubles, 7e-348 in long double, so its value is not known)."""

    @functools.wraps(function)
    def call(*args: Any, **keywords: Any) -> Any:
        if not underflow:
            with np.errstate(over="ignore"):  # the caller's handling of underflow stays
                result = function(*args, **keywords)
            return reported(result)  # outside: the caller's handler is watching again
        watch = Watch()
        with np.errstate(over="ignore", under="call", call=watch):
            result = function(*args, **keywords)
        if watch.seen:
            report()
        return reported(result)

    return call
