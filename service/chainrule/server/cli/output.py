"""What the local commands print: answers, errors with a caret under the position, elapsed time."""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class PointAnswer:
    """`eval` and `grad` at one point, whether computed here or by a server."""

    value: float
    variables: tuple[str, ...] = ()
    gradient: tuple[float, ...] | None = None
    hessian: tuple[tuple[float, ...], ...] | None = None


def number(value: float) -> str:
    """A float as Python writes it: the shortest text that reads back as the same value."""
    return repr(float(value))


def point_lines(answer: PointAnswer) -> list[str]:
    """`eval`: the value alone; `grad`: labelled value, gradient and Hessian."""
    if answer.gradient is None:
        return [number(answer.value)]
    names = ", ".join(answer.variables)
    lines = [f"value: {number(answer.value)}", f"gradient ({names}): [{_row(answer.gradient)}]"]
    if answer.hessian is not None:
        lines.append(f"hessian: [{', '.join(f'[{_row(row)}]' for row in answer.hessian)}]")
    return lines


def _row(values: Sequence[float]) -> str:
    return ", ".join(number(v) for v in values)


def error_lines(message: str, expression: str, metadata: Mapping[str, str]) -> list[str]:
    """`chainrule: <message>`, and for a parse error the expression with a caret under the position."""
    lines = [f"chainrule: {message}"]
    position = metadata.get("position", "")
    if position.isdigit() and int(position) <= len(expression) and "\n" not in expression:
        at = int(position)
        # A long text shows a window around the position: 10,000 columns and a caret as far in was no help.
        start, end = max(0, at - _CONTEXT), min(len(expression), at + _CONTEXT)
        before, after = ("..." if start else ""), ("..." if end < len(expression) else "")
        offset = _width(before + expression[start:at])
        lines += [f"  {before}{expression[start:end]}{after}", f"  {' ' * offset}^"]
    return lines


_CONTEXT = 40  # characters shown each side of an error's position
# Exit statuses: 0 answered, 1 the request was refused (the message says why), 2 the command line is
# wrong (usage), 3 the server at --target gave no answer (unreachable, unavailable, out of time).
NO_ANSWER = 3


def print_error(message: str, expression: str, metadata: Mapping[str, str]) -> None:
    print("\n".join(error_lines(message, expression, metadata)), file=sys.stderr)


def _width(text: str) -> int:
    """Terminal columns of `text`: wide East Asian characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


class Elapsed:
    """Shows how long the work has run, on a terminal's stderr, once it has taken over a second."""

    def __init__(self, label: str, stream: TextIO | None = None, after: float = 1.0) -> None:
        self._label = label
        self._stream = stream or sys.stderr
        self._after = after
        self._start = time.monotonic()
        self._shown = False
        self._live = self._stream.isatty()

    def tick(self) -> None:
        """Refresh the line (call it every tenth of a second or so while waiting)."""
        seconds = time.monotonic() - self._start
        if self._live and seconds >= self._after:
            self._stream.write(f"\r{self._label}: {seconds:.1f} s")
            self._stream.flush()
            self._shown = True

    def done(self) -> None:
        """Replace the live line with the final time (only if it was ever shown)."""
        if self._shown:
            seconds = time.monotonic() - self._start
            self._stream.write(f"\r{self._label} took {seconds:.1f} s\n")
            self._stream.flush()
