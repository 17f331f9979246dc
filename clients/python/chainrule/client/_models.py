"""The typed, immutable results the client returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# One column of values: a numpy array when the request sent numpy arrays, a list of floats otherwise.
Column: TypeAlias = "list[float] | npt.NDArray[np.float64]"


@dataclass(frozen=True)
class Formula:
    """One expression as text in chainrule's grammar and as LaTeX."""

    text: str
    latex: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ChainRule:
    """One layer of the chain rule: d/dx f(g(x)) = f'(g(x)) * g'(x).

    `outer` is f(u), `inner` is u = g(x), `outer_derivative` is f' evaluated at the inner function,
    `factors` has one factor per layer of the nest, outermost first.
    """

    outer_rule: str
    outer: Formula
    inner: Formula
    outer_derivative_of_u: Formula
    outer_derivative: Formula
    inner_derivative: Formula
    product: Formula
    factors: tuple[Formula, ...]


@dataclass(frozen=True)
class Step:
    """One step of a derivation: `rule` ("chain", "product", ...) takes d/d`variable` of `expression`
    to `result`, using the results of the steps `depends_on` (indices into `Derivative.steps`)."""

    rule: str
    variable: str
    order: int
    expression: Formula
    result: Formula
    depends_on: tuple[int, ...]
    description: str
    chain: ChainRule | None


@dataclass(frozen=True)
class CheckPoint:
    """One point of a numeric check: the variables' values and both derivatives there."""

    point: Mapping[str, float]
    symbolic: float
    numeric: float
    relative_error: float


@dataclass(frozen=True)
class Check:
    """The server's numeric self-check: `verdict` is "ok", "mismatch" or "inconclusive"."""

    verdict: str
    method: str
    max_relative_error: float
    tolerance: float
    points: tuple[CheckPoint, ...]


@dataclass(frozen=True)
class GeneratedCode:
    """The derivative as a function in `format` ("python", "c" or "javascript")."""

    format: str
    source: str
    function_name: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class Derivative:
    """A symbolic derivative: text in chainrule's grammar, LaTeX when asked, the input's variables.

    With `explain=True`, `steps` is the derivation (its last result is `derivative`); with
    `verify=True`, `check` is the numeric self-check; `mathml` and `code` hold the formats asked for.
    """

    derivative: str
    latex: str | None
    variables: tuple[str, ...]
    steps: tuple[Step, ...] = ()
    check: Check | None = None
    mathml: str | None = None
    code: tuple[GeneratedCode, ...] = ()

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


@dataclass(frozen=True, eq=False)
class Jacobian:
    """The values and the Jacobian matrix of several expressions, at one point or at many.

    At one point `values` (one per expression) and `jacobian` (rows of the m-by-n matrix: row i is
    the gradient of expression i over `variables`) are set. At many points `value_arrays` (one column
    per expression) and `jacobian_arrays` (an m-by-n grid of columns) are set instead.
    """

    variables: tuple[str, ...]
    nonfinite_count: int
    values: tuple[float, ...] | None = None
    jacobian: tuple[tuple[float, ...], ...] | None = None
    value_arrays: tuple[Column, ...] | None = None
    jacobian_arrays: tuple[tuple[Column, ...], ...] | None = None


@dataclass(frozen=True)
class Series:
    """A Taylor polynomial: `series` in chainrule's grammar, exact `coefficients` (the k-th multiplies
    (variable - around)^k), `remainder` naming the omitted order, `latex` when asked."""

    series: str
    variable: str
    coefficients: tuple[str, ...]
    remainder: str
    latex: str | None = None

    def __str__(self) -> str:
        return self.series


@dataclass(frozen=True)
class ExpressionError:
    """Why, and where, a text is not an expression: `reason` is "PARSE_ERROR", "UNKNOWN_FUNCTION" or
    "LIMIT_EXCEEDED"; `position` is a 0-based offset in code points (None for a limit without a place)."""

    reason: str
    message: str
    position: int | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Parsed:
    """How the server reads a text: canonical text, LaTeX and variables, or `error` when it cannot.

    A text that does not parse is an answer here, not an exception: `parse` is made for checking text
    as a person types it.
    """

    canonical: str
    latex: str
    variables: tuple[str, ...]
    error: ExpressionError | None = None

    @property
    def ok(self) -> bool:
        """True when the text is an expression the server accepts."""
        return self.error is None

    def __str__(self) -> str:
        return self.canonical if self.error is None else self.error.message


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
    format_support: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def limit(self, name: str) -> float | None:
        """The maximum of the limit called `name`, or None when the server has no such limit."""
        return next((limit.maximum for limit in self.limits if limit.name == name), None)
