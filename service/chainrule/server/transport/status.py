"""Errors as `google.rpc.Status` messages: the wire form both transports send."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2, json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from starlette.responses import Response

from chainrule.engine.errors import (
    ERROR_DOMAIN,
    MOST_VIOLATIONS,
    ChainruleError,
    Code,
    FieldViolation,
    bounded_text,
)
from chainrule.server.transport.protojson import dump

JSON_MEDIA_TYPE = "application/json"

# One mapping table from canonical code to HTTP status, as grpc-gateway uses.
HTTP_STATUS: Mapping[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def http_status(error: ChainruleError) -> int:
    """The HTTP status a REST reply carries for `error`."""
    return HTTP_STATUS[error.code]


# What a caller is told of a bug: nothing of our insides (the access line keeps the detail).
_INTERNAL_MESSAGE = "internal error"


# What a status may take in gRPC's trailers, all told: grpc-message (the message, percent-encoded)
# and grpc-status-details-bin (the whole Status, base64). grpc's clients refuse trailers past 16 KiB,
# and from 8 KiB some of them at random (GRPC_ARG_MAX_METADATA_SIZE): the field violations of 2,047
# missing variables made 102 KB that no default client could read, and one long message with its
# violation repeating it passed 16 KiB (an independent attacker, 2026-12-07). REST sends the same.
_TRAILER_BYTES = 7 * 1024
# Past that, the first violations are kept (ErrorInfo's `violations_left_out` counts the others),
# then their texts are cut to a line, then the message by halves.
_VIOLATION_CHARACTERS = 256


def status_proto(error: ChainruleError) -> status_pb2.Status:
    """The rich status for `error`: code, message, BadRequest, ErrorInfo and RetryInfo details,
    within `_TRAILER_BYTES` on the gRPC wire. An INTERNAL error is never detailed: the message and
    metadata of one raised with them (the steps' self-check, `explain.StepsMismatchError`) stay in
    the server's log."""
    if error.code is Code.INTERNAL:
        info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
        return status_pb2.Status(code=int(error.code), message=_INTERNAL_MESSAGE, details=[_pack(info)])
    message, violations, metadata = error.message, error.violations, dict(error.metadata)
    if len(violations) > MOST_VIOLATIONS:
        metadata["violations_left_out"] = str(len(violations) - MOST_VIOLATIONS)
        violations = violations[:MOST_VIOLATIONS]
    status = _status(error, message, violations, metadata)
    if _trailer_bytes(status) > _TRAILER_BYTES:
        violations = tuple(
            FieldViolation(
                bounded_text(v.field, _VIOLATION_CHARACTERS),
                bounded_text(v.description, _VIOLATION_CHARACTERS),
            )
            for v in violations
        )
        status = _status(error, message, violations, metadata)
    while _trailer_bytes(status) > _TRAILER_BYTES and len(message) > _VIOLATION_CHARACTERS:
        message = bounded_text(message, len(message) // 2)
        status = _status(error, message, violations, metadata)
    return status


def _status(
    error: ChainruleError, message: str, violations: Sequence[FieldViolation], metadata: Mapping[str, str]
) -> status_pb2.Status:
    details: list[any_pb2.Any] = []
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_utf8(v.field), description=_utf8(v.description)
                )
                for v in violations
            ]
        )
        details.append(_pack(bad_request))
    details.append(
        _pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata))
    )
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=int(error.code), message=_utf8(message), details=details)


def _trailer_bytes(status: status_pb2.Status) -> int:
    """The status's size in gRPC trailers: its message percent-encoded (every byte outside printable
    ASCII, and '%', as three) and the whole status in base64."""
    message = status.message.encode("utf-8")
    escaped = sum(1 for byte in message if byte < 0x20 or byte > 0x7E or byte == 0x25)
    return len(message) + 2 * escaped + 4 * math.ceil(status.ByteSize() / 3)


def _utf8(text: str) -> str:
    """`text` as a protobuf string takes it: a lone surrogate (a JSON key "\ud800" named in an error)
    escaped, where protobuf raised UnicodeEncodeError and the reply was a plain 500 (an independent
    hunt, 2026-12-06)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def grpc_status(error: ChainruleError) -> grpc.Status:
    """`status_proto(error)` as the `grpc.Status` a servicer aborts with."""
    status: grpc.Status = rpc_status.to_status(status_proto(error))
    return status


def error_response(
    error: ChainruleError, status_code: int | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """`error` as `google.rpc.Status` JSON, with its HTTP status (`HTTP_STATUS` unless overridden)."""
    body = json_format.MessageToDict(status_proto(error))
    all_headers = dict(headers or {})
    if error.retry_after_seconds is not None:
        all_headers.setdefault("Retry-After", str(max(1, math.ceil(error.retry_after_seconds))))
    return Response(
        dump(body),
        status_code=status_code or http_status(error),
        headers=all_headers,
        media_type=JSON_MEDIA_TYPE,
    )


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
