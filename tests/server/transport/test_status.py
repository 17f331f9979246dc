"""Errors as google.rpc.Status: within what every gRPC client reads of trailers (status.py)."""

from __future__ import annotations

from google.rpc import error_details_pb2

from chainrule.engine.errors import FieldViolation, InvalidArgument
from chainrule.server.transport import status


def _details(proto: object) -> dict[str, object]:
    found: dict[str, object] = {}
    for packed in proto.details:  # type: ignore[attr-defined]
        for kind in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo):
            if packed.Is(kind.DESCRIPTOR):
                found[kind.__name__] = kind()
                packed.Unpack(found[kind.__name__])
    return found


def test_many_violations_keep_the_first_and_count_the_rest() -> None:
    # 2,047 missing variables made 102 KB of trailers, which no default client reads (16 KiB).
    names = [f"r{i // 32}v{i % 32}" for i in range(2_047)]
    error = InvalidArgument(
        "no value given for variables " + ", ".join(names),
        violations=[FieldViolation(f"point.{name}", f"variable '{name}' needs a value") for name in names],
    )
    proto = status.status_proto(error)
    details = _details(proto)
    bad, info = details["BadRequest"], details["ErrorInfo"]
    assert isinstance(bad, error_details_pb2.BadRequest) and isinstance(info, error_details_pb2.ErrorInfo)
    assert [v.field for v in bad.field_violations] == [f"point.{name}" for name in names[:16]]
    assert info.metadata["violations_left_out"] == "2031"
    assert status._trailer_bytes(proto) <= status._TRAILER_BYTES


def test_a_long_message_and_its_violation_are_cut_to_fit() -> None:
    # 4,096 characters that percent-encode to 6 bytes each, repeated by the field's violation.
    error = InvalidArgument("é" * 4_096, field="around")
    proto = status.status_proto(error)
    (violation,) = _details(proto)["BadRequest"].field_violations  # type: ignore[attr-defined]
    assert status._trailer_bytes(proto) <= status._TRAILER_BYTES
    assert proto.message.startswith("éé") and "(cut: " in proto.message
    assert violation.field == "around" and len(violation.description) < 300


def test_a_short_error_is_sent_as_it_is() -> None:
    error = InvalidArgument("unexpected ')' at 7", field="expression")
    proto = status.status_proto(error)
    assert proto.message == "unexpected ')' at 7"
    assert "violations_left_out" not in _details(proto)["ErrorInfo"].metadata  # type: ignore[attr-defined]
