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
import sys
import types
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# The file name of all generated numeric code (`programs`): the lines an operation that set a flag
# was called from are found by it.
GENERATED_FILE_NAME = "<chainrule generated>"
UNKNOWN_LINE = 0


class Watch:
    """numpy's error handler for `np.errstate(over="call", under="call", call=watch)`: notes which
    flags an operation set since the last `clear` (and a kernel's `report`, as an overflow), and
    the lines of generated code each was set on (`UNKNOWN_LINE` if it was not called from one).
    Also which points an argument too large to trust went into a periodic function at (`imprecise`):
    a mask, broadcast to the points of the run."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.lines: dict[str, set[int]] = {}
        self.imprecise: npt.NDArray[np.bool_] | None = None

    def __call__(self, kind: str, flag: int) -> None:
        self.kinds.add(kind)
        self.lines.setdefault(kind, set()).add(_generated_line())

    @property
    def seen(self) -> bool:
        """An overflow since the last `clear`."""
        return "overflow" in self.kinds

    @property
    def underflowed(self) -> bool:
        """An underflow since the last `clear`."""
        return "underflow" in self.kinds

    def clear(self) -> None:
        self.kinds.clear()
        self.lines.clear()
        self.imprecise = None


def _generated_line() -> int:
    """The line of generated code being run (numpy calls the handler from the operation, a kernel's
    `report` from its own frame): numpy calls it once per operation that sets a flag, not per value."""
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename == GENERATED_FILE_NAME:
            return frame.f_lineno
        frame = frame.f_back
    return UNKNOWN_LINE


def reported(result: Any) -> Any:
    """`result`, once the overflow handler (if one is watching) is told that it holds an infinity."""
    if np.isinf(result).any():
        report()
    return result


def report(kind: Literal["overflow", "underflow"] = "overflow") -> None:
    """Tell the handler of `kind`, if one is watching, that a value went past the doubles."""
    modes = np.geterr()
    mode, flag = (modes["over"], 2) if kind == "overflow" else (modes["under"], 4)  # numpy's flag bits
    if mode == "call" and callable(handler := np.geterrcall()):
        handler(kind, flag)


def imprecise(mask: npt.NDArray[np.bool_]) -> None:
    """Tell the handler, if a `Watch` is watching, the points (`mask`, broadcast to the run's) where
    a periodic function's computed argument is too large for its value to be known in this
    precision (`kernels.periodic_argument`)."""
    watch = np.geterrcall()
    if isinstance(watch, Watch):
        watch.imprecise = mask if watch.imprecise is None else watch.imprecise | mask


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
        if watch.seen or watch.underflowed:
            report()
        return reported(result)

    return call
