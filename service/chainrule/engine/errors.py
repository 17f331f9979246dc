"""The error hierarchy of chainrule: every failure a caller can see is one of these.

    ChainruleError                       (code, HTTP status, reason, field violations)
    ├── InvalidArgument                  INVALID_ARGUMENT    400  the request is wrong
    │   ├── ParseError                   INVALID_ARGUMENT    400  PARSE_ERROR, with a position
    │   │   └── UnknownFunction          INVALID_ARGUMENT    400  UNKNOWN_FUNCTION
    │   ├── MissingVariable              INVALID_ARGUMENT    400  MISSING_VARIABLE
    │   └── LimitExceeded                INVALID_ARGUMENT    400  LIMIT_EXCEEDED
    ├── FailedPrecondition               FAILED_PRECONDITION 400  valid, but not possible here
    │   ├── NoClosedForm                 FAILED_PRECONDITION 400  NO_CLOSED_FORM: zeta'(s) as text
    │   │   └── NoNumericForm            FAILED_PRECONDITION 400  NO_NUMERIC_FORM: zeta'(s) as values
    │   └── NotComputable                FAILED_PRECONDITION 400  NOT_COMPUTABLE: sympy failed on it
    ├── NotFound                         NOT_FOUND           404
    ├── ResourceExhausted                RESOURCE_EXHAUSTED  429  overload or server budget
    ├── DeadlineExceeded                 DEADLINE_EXCEEDED   504  the caller's budget ran out
    ├── Unavailable                      UNAVAILABLE         503  draining or not ready
    ├── Unauthenticated                  UNAUTHENTICATED     401
    └── InternalError                    INTERNAL            500  a bug: logged, never detailed

Nothing here imports grpc or an HTTP stack: the transports read `code` (the numeric
`google.rpc.Code`) and build their own wire errors from the rest (`server/transport/status.py`
holds the table from code to HTTP status).

Field paths name what is wrong in the engine's own terms, the arguments of its functions:
`expression` (with a code-point `position` for parse errors), `wrt[i].variable`, `wrt[i].order`,
`variables[i]`, `columns.<name>`. The API layer knows which request field each came from and maps
them with `relocated` (`columns.y` becomes `point.y` or `points.y`; `expression` becomes
`expressions[2]` in a request with several).
"""

from __future__ import annotations

import copy
import enum
import math
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar


class Code(enum.IntEnum):
    """The canonical status codes, numbered as `google.rpc.Code` and `grpc.StatusCode`."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


ERROR_DOMAIN = "chainrule.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field, named by its path in the request (`expression`, `wrt[1].order`, `points.x`)."""

    field: str
    description: str


def bounded_text(text: str, longest: int | None = None) -> str:
    """`text`, cut to its start where it is longer than any message needs to be (`longest`
    characters, 4,096 unless told): a message quoting what it is about (a key, a name) must not grow
    with the request (a 60-million-character key made a 180 MB error reply, and a log line as long;
    an attack hunt, 2026-12-05)."""
    longest = _LONGEST_TEXT if longest is None else longest
    if len(text) <= longest:
        return text
    return f"{text[:longest]}… (cut: {len(text):,} characters)"


_LONGEST_TEXT = 4096
# Field violations an error lists, at most: a request with thousands of bad entries (unknown query
# parameters, missing variables) must not become an error of thousands of lines (its message, or
# the status's `violations_left_out`, says how many there were).
MOST_VIOLATIONS = 16


def let_go_of_frames(error: BaseException) -> None:
    """Cut `error` and the exceptions it was raised handling from their tracebacks, once the call it
    ended is answered. Each traceback holds every frame the exception passed through, and their
    locals (the request's bytes, a killed worker's pipes); an error a single-flight computation
    raised is shared with its other waiters, and a future or task in one of those frames holding
    the error closes a cycle. Such cycles lived until the cyclic collector ran (over gRPC ten
    refused 2 MB calls held 20 MB; over REST ten 2.7 MB Evaluate bodies refused during numeric work
    held 47 MB: an independent tester). Frames are let go of, not cleared: clearing a frame still
    suspended would end it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        handled = current.__context__
        current.__traceback__ = current.__context__ = current.__cause__ = None
        current = handled


class ChainruleError(Exception):
    """Base of every error a caller may see; carries everything a transport needs."""

    code: Code = Code.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: Sequence[FieldViolation] = (),
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        message = bounded_text(message)
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        found = [FieldViolation(bounded_text(v.field), bounded_text(v.description)) for v in violations]
        if field is not None and not found:
            found.append(FieldViolation(bounded_text(field), message))
        self.violations: tuple[FieldViolation, ...] = tuple(found)
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after_seconds = retry_after_seconds

    def relocated(self, paths: Mapping[str, str]) -> ChainruleError:
        """A copy whose field paths name request fields: `paths` maps an engine argument
        (the first part of a path: `columns`, `expression`) to the request field it came from."""
        if not any(_head(v.field) in paths for v in self.violations):
            return self
        moved = copy.copy(self)
        moved.violations = tuple(
            FieldViolation(_moved(v.field, paths), v.description) for v in self.violations
        )
        return moved

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (the killable worker pool): keep every attribute.
        return (_rebuild_error, (type(self), self.message, self.__dict__))


def _head(path: str) -> str:
    """The first component of a field path: `columns` of `columns.x`, `wrt` of `wrt[0].order`."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _moved(path: str, paths: Mapping[str, str]) -> str:
    head = _head(path)
    return paths.get(head, head) + path[len(head) :]


def _rebuild_error(cls: type[ChainruleError], message: str, state: dict[str, object]) -> ChainruleError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidArgument(ChainruleError):
    code = Code.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class ParseError(InvalidArgument):
    """The expression text does not follow the grammar; `position` is a 0-based code-point offset.

    The message is `what` at `position`, then how to `fix` it when there is more to say than what:
    "unexpected ')' at 7", "unknown function 'sinn' at 0: did you mean 'sin'?". With `placed`,
    `what` already says where ("'(' at 3 is never closed").
    """

    reason = "PARSE_ERROR"

    def __init__(
        self, what: str, position: int, *, field: str = "expression", fix: str = "", placed: bool = False
    ) -> None:
        message = what if placed else f"{what} at {position}"
        super().__init__(
            f"{message}: {fix}" if fix else message,
            field=field,
            metadata={"position": str(position)},
        )
        self.position = position


class UnknownFunction(ParseError):
    """A name called like a function that the grammar lacks; `suggestion` is the nearest known name."""

    reason = "UNKNOWN_FUNCTION"

    def __init__(
        self, name: str, position: int, *, suggestion: str = "", fix: str = "", field: str = "expression"
    ) -> None:
        if suggestion:
            fix = f"did you mean '{suggestion}'?"
        super().__init__(f"unknown function '{name}'", position, field=field, fix=fix)
        if suggestion:
            self.metadata["suggestion"] = suggestion
        self.name = name


class MissingVariable(InvalidArgument):
    reason = "MISSING_VARIABLE"


class LimitExceeded(InvalidArgument):
    """A configured limit was hit: what was too large in plain words, the value seen and the maximum.

    `limit` is the declared limit's name (engine/limits.py, server/config.py), as GetServerInfo
    reports it, so that a client can look it up; the message reads "9^9^9 is too large to compute
    exactly (about 1.2 billion bits; limit 20,000)": `what`, then the value in `unit`s (`about`
    when it is an estimate) and the maximum. The parser adds the `position` of what was too large;
    `hint` says how the value was reached and what to do (appended to the message), `details` are
    further numbers for the metadata (the `points` and `columns` of a reply).
    """

    reason = "LIMIT_EXCEEDED"

    def __init__(
        self,
        limit: str,
        value: float | int,
        maximum: float | int,
        *,
        field: str,
        what: str,
        unit: str = "",
        about: bool = False,
        position: int | None = None,
        hint: str = "",
        details: Mapping[str, str] | None = None,
    ) -> None:
        estimate = "about " if about and math.isfinite(value) else ""
        seen, most = plain_number(value), plain_number(maximum)
        if seen == most and value != maximum:  # "2 million points; limit 2 million" said nothing
            seen, most = (f"{int(n):,}" if float(n).is_integer() else f"{n:,}" for n in (value, maximum))
        amount = f"{estimate}{seen}{f' {unit}' if unit else ''}"
        metadata = {**(details or {}), "limit": limit, "value": str(value), "maximum": str(maximum)}
        if position is not None:  # where in the expression, as for parse errors
            metadata["position"] = str(position)
        message = f"{what} ({amount}; limit {most})" + (f": {hint}" if hint else "")
        super().__init__(message, field=field, metadata=metadata)


_SCALES = ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"))


def plain_seconds(seconds: float) -> str:
    """A duration for a message: 0.25, 1.5, 30, 3,600 (`.3g` wrote an hour's deadline as 3.6e+03)."""
    return f"{seconds:.3g}" if abs(seconds) < 1000 else f"{seconds:,.0f}"


def plain_number(value: float | int) -> str:
    """A count in words: 20,000; 1.2 billion; 10^25; more than 10^308 (for infinity)."""
    if not math.isfinite(value):
        return "more than 10^308"
    size = abs(value)
    if size >= 1e15:
        return f"10^{math.floor(math.log10(size))}"
    for scale, word in _SCALES:
        if size >= scale * 0.9995:  # 999,999,999 is 1 billion, not 1000 million
            scaled = value / scale  # 1.2 million, 12 million: never 1e+02 million
            shown = f"{scaled:.1f}".removesuffix(".0") if abs(scaled) < 10 else f"{round(scaled)}"
            return f"{shown} {word}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.3g}"


class FailedPrecondition(ChainruleError):
    code = Code.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class NoClosedForm(FailedPrecondition):
    """A derivative our grammar cannot write (d/ds zeta(s)): its text is refused.

    `function` is the function's name in the grammar and `argument` the 1-based argument it is
    differentiated by (0 when the node is not a function of ours, such as a Piecewise). Its values
    may still be computed (see `NoNumericForm` for when they cannot).
    """

    reason = "NO_CLOSED_FORM"

    def __init__(self, message: str, *, function: str, argument: int = 0) -> None:
        metadata = {"function": function}
        if argument:
            metadata["argument"] = str(argument)
        super().__init__(message, field="expression", metadata=metadata)


class NoNumericForm(NoClosedForm):
    """A derivative whose values cannot be computed either: sympy leaves it unevaluated, so there is
    no code to compile (Evaluate with wrt, GradientAtPoint, Jacobian). Metadata as `NoClosedForm`'s.
    """

    reason = "NO_NUMERIC_FORM"


class NotComputable(FailedPrecondition):
    """sympy (or mpmath under it) failed on valid input, in a way the engine has no rule for: a
    numeric question about a constant it cannot settle within its precision (the sign of
    log(floor(10^100/asin(10^-100)) + 1)), a pole met evaluating a constant. The caller learns what
    failed, where in sympy, and what to try; the failure's class stays visible to us by its reason.
    """

    reason = "NOT_COMPUTABLE"

    @classmethod
    def from_library(cls, error: BaseException) -> NotComputable | None:
        """The refusal for `error` when sympy or mpmath raised it (its innermost frame is theirs:
        PrecisionExhausted, mpmath's NoConvergence, a pole's ValueError...); None for anything else,
        which is a bug of ours, and for MemoryError, after which a worker's heap is not trusted."""
        if not isinstance(error, Exception) or isinstance(error, MemoryError):
            return None
        frames = traceback.extract_tb(error.__traceback__)
        if not frames or not any(f"/{library}/" in frames[-1].filename for library in ("sympy", "mpmath")):
            return None
        where = frames[-1].filename.rsplit("/site-packages/", 1)[-1]
        lines = str(error).strip().splitlines()
        what = f"{type(error).__name__} in {where}" + (f": {lines[0][:160]}" if lines else "")
        return cls(
            f"sympy could not compute this ({what}): a constant in it is beyond what it can decide or"
            " evaluate; write such constants as numbers, or ask for fewer extras (steps, check, code)",
            field="expression",
            metadata={"exception": type(error).__name__},
        )


_T = TypeVar("_T")


def refusing_library_failures(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """`fn(*args, **kwargs)`, with a failure inside sympy or mpmath raised as `NotComputable`: how
    every executor of engine work (symbolic workers, threads) runs it."""
    try:
        return fn(*args, **kwargs)
    except ChainruleError:
        raise
    except RecursionError:
        # Not a constant sympy cannot settle, as from_library would say: nesting sympy recursed too
        # deeply on (within the depth limit, past what the interpreter's stack allows it).
        raise InvalidArgument(
            "the expression is nested too deeply for sympy to compute: nest it less (write inner parts"
            " as variables), or ask for fewer extras (steps, check)",
            field="expression",
        ) from None
    except Exception as error:
        refusal = NotComputable.from_library(error)
        if refusal is None:
            raise
        raise refusal from None


class NotFound(ChainruleError):
    code = Code.NOT_FOUND
    reason = "NOT_FOUND"


class ResourceExhausted(ChainruleError):
    code = Code.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(ChainruleError):
    code = Code.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Unavailable(ChainruleError):
    code = Code.UNAVAILABLE
    reason = "UNAVAILABLE"


class Unauthenticated(ChainruleError):
    code = Code.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class InternalError(ChainruleError):
    code = Code.INTERNAL
    reason = "INTERNAL"
