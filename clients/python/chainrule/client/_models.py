"""The typed, immutable results the client returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# One column of values: a numpy array when the request sent numpy arrays, a list of floats otherwise.
Column: TypeAlias = "list[float] | npt.NDArray[np.float64]"


@dataclass(frozen=True)
class Derivative:
    """A symbolic derivative: text in chainrule's grammar, LaTeX when asked, the input's variables."""

    derivative: str
    latex: str | None
    variables: tuple[str, ...]

    def __str__(self) -> str:
        return self.derivative


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The value at one point (`value`) or the values at many points (`values`)."""

    value: float | None
    values: Column | None
    nonfinite_count: int


@dataclass(frozen=True, eq=False)
class Gradient:
    """Value, gradient and (when asked) Hessian, at one point or at many.

    At one point `value`, `gradient` (aligned with `variables`) and `hessian` (rows of the n-by-n matrix)
    are set. At many points `values`, `gradients` (one column per variable) and `hessians` (an n-by-n
    grid of columns) are set instead.
    """

    variables: tuple[str, ...]
    nonfinite_count: int
    value: float | None = None
    gradient: tuple[float, ...] | None = None
    hessian: tuple[tuple[float, ...], ...] | None = None
    values: Column | None = None
    gradients: tuple[Column, ...] | None = None
    hessians: tuple[tuple[Column, ...], ...] | None = None


@dataclass(frozen=True)
class Limit:
    """One limit the server enforces."""

    name: str
    maximum: float
    description: str


@dataclass(frozen=True)
class ServerInfo:
    """What a server accepts: its version, limits, functions, constants and modes."""

    version: str
    limits: tuple[Limit, ...]
    functions: tuple[str, ...]
    constants: tuple[str, ...]
    output_formats: tuple[str, ...]
    simplifications: tuple[str, ...]

    def limit(self, name: str) -> float | None:
        """The maximum of the limit called `name`, or None when the server has no such limit."""
        return next((limit.maximum for limit in self.limits if limit.name == name), None)
