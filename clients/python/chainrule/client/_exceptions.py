"""The client's error hierarchy, decoded from the server's rich `google.rpc.Status` trailers.

    ChainruleError                  any failed call (code, message, reason, field_violations, ...)
    ├── InvalidArgumentError        INVALID_ARGUMENT: the request is wrong
    │   ├── ParseError              PARSE_ERROR: the expression does not parse; has `position`
    │   │   └── UnknownFunctionError  UNKNOWN_FUNCTION: `foo(x)`; has `position`
    │   ├── MissingVariableError    MISSING_VARIABLE: a variable the expression needs is absent
    │   └── LimitExceededError      LIMIT_EXCEEDED: a configured limit was hit
    ├── DeadlineExceededError       DEADLINE_EXCEEDED: the call's deadline ran out
    ├── ResourceExhaustedError      RESOURCE_EXHAUSTED: overloaded (`retry_after`: retried) or over budget
    ├── UnavailableError            UNAVAILABLE: unreachable or draining (retried before raising)
    ├── UnauthenticatedError        UNAUTHENTICATED: missing or wrong bearer token
    └── UnimplementedError          UNIMPLEMENTED: a server older than the call (Jacobian, Series)

Any other status code raises a plain `ChainruleError`. The details travel in the
`grpc-status-details-bin` trailer; it is decoded here with googleapis-common-protos alone, so the
client does not need grpcio-status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, named by its path (`expression`, `wrt[1].order`, `points.x`)."""

    field: str
    description: str


class ChainruleError(Exception):
    """A call failed; carries the status code and whatever details the server sent."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str | None = None,
        domain: str | None = None,
        field_violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name}, reason={self.reason!r})"


class InvalidArgumentError(ChainruleError):
    """The server rejected the request (INVALID_ARGUMENT)."""


class ParseError(InvalidArgumentError):
    """The expression does not parse; `position` is the 0-based offset in Unicode code points."""

    @property
    def position(self) -> int | None:
        raw = self.metadata.get("position")
        return int(raw) if raw is not None and raw.lstrip("-").isdigit() else None


class UnknownFunctionError(ParseError):
    """The expression calls a function the grammar does not know."""


class MissingVariableError(InvalidArgumentError):
    """The expression needs a variable the request did not give a value for."""


class LimitExceededError(InvalidArgumentError):
    """A configured limit was hit; `metadata` names `limit`, `value` and `maximum`."""


class DeadlineExceededError(ChainruleError):
    """The call's deadline ran out before the server answered."""


class ResourceExhaustedError(ChainruleError):
    """The server is overloaded or out of budget; `retry_after` says when to try again, if known."""


class UnavailableError(ChainruleError):
    """The server could not be reached (raised once the retries are spent)."""


class UnauthenticatedError(ChainruleError):
    """The call lacked valid credentials."""


class UnimplementedError(ChainruleError):
    """The server does not have this RPC: it is older than the client (the message says which)."""


# The server version that added each RPC the first release lacked.
_ADDED_IN: Mapping[str, str] = {"Jacobian": "0.2.0", "Series": "0.2.0"}


def unimplemented(error: ChainruleError, rpc: str, target: str) -> UnimplementedError:
    """UNIMPLEMENTED from a server, as an error that says which call and what the server needs."""
    needs = f"chainrule {_ADDED_IN[rpc]} or later" if rpc in _ADDED_IN else "a newer chainrule"
    return UnimplementedError(
        f"the server at {target} does not implement {rpc} ({error.message}): it needs {needs}",
        code=error.code,
        reason=error.reason,
        domain=error.domain,
        field_violations=error.field_violations,
        metadata=error.metadata,
    )


_BY_REASON: Mapping[str, type[InvalidArgumentError]] = {
    "PARSE_ERROR": ParseError,
    "UNKNOWN_FUNCTION": UnknownFunctionError,
    "MISSING_VARIABLE": MissingVariableError,
    "LIMIT_EXCEEDED": LimitExceededError,
}

_BY_CODE: Mapping[grpc.StatusCode, type[ChainruleError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
}


def _error_class(code: grpc.StatusCode, reason: str | None) -> type[ChainruleError]:
    if code is grpc.StatusCode.INVALID_ARGUMENT and reason is not None and reason in _BY_REASON:
        return _BY_REASON[reason]
    return _BY_CODE.get(code, ChainruleError)


def _status_details(trailers: Iterable[object] | None) -> status_pb2.Status | None:
    for item in trailers or ():
        # sync calls give (key, value) namedtuples, aio calls plain tuples: both are tuples
        if not isinstance(item, tuple) or len(item) != 2:
            continue
        key, value = item
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return None  # a garbled trailer must not hide the status code itself
            return status
    return None


@dataclass
class _Details:
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after: float | None = None


def _decode_details(status: status_pb2.Status | None) -> _Details:
    found = _Details()
    for detail in status.details if status is not None else ():
        bad_request = error_details_pb2.BadRequest()
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(bad_request):
            found.violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Unpack(info):
            found.reason, found.domain, found.metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Unpack(retry):
            found.retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    return found


def error_from_status(
    code: grpc.StatusCode, message: str, trailers: Iterable[object] | None
) -> ChainruleError:
    """Build the matching `ChainruleError` from a status code, its message and the trailers."""
    details = _decode_details(_status_details(trailers))
    return _error_class(code, details.reason)(
        message,
        code=code,
        reason=details.reason,
        domain=details.domain,
        field_violations=details.violations,
        metadata=details.metadata,
        retry_after=details.retry_after,
    )


def error_from_rpc(error: grpc.RpcError) -> ChainruleError:
    """Translate a grpc error (sync or aio) into the client's hierarchy."""
    code = error.code()
    message = error.details() or code.name
    trailers: Iterable[object] | None = error.trailing_metadata()
    return error_from_status(code, message, trailers)
