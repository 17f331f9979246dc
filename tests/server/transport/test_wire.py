"""Requests read before parsing: entries counted (protobuf tags walked, JSON members bounded by its
colons), and a batch request's columns taken from its bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server.transport.wire import (
    check_json_members,
    check_message_entries,
    json_decoding_bytes,
    split_points,
)
from chainrule.v1 import chainrule_pb2 as pb

EVALUATE: Descriptor = pb.EvaluateRequest.DESCRIPTOR
DIFFERENTIATE: Descriptor = pb.DifferentiateRequest.DESCRIPTOR
GRADIENT: Descriptor = pb.GradientAtPointRequest.DESCRIPTOR


def big_columns(names: int) -> dict[str, pb.Array]:
    column = np.linspace(0, 1, 100_000).astype("<f8").tobytes()
    return {f"v{index}": pb.Array(f64le=column) for index in range(names)}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (pb.EvaluateRequest(expression="x", point={f"k{i}": 1.0 for i in range(9)}), "point"),
        (pb.EvaluateRequest(expression="x", points=big_columns(9)), "points"),
        (pb.EvaluateRequest(expression="x", wrt=[pb.Wrt(variable="x")] * 9), "wrt"),
        (pb.DifferentiateRequest(expression="x", formats=[pb.OUTPUT_FORMAT_LATEX] * 9), "formats"),  # packed
    ],
)
def test_more_entries_than_the_limit_are_refused_before_parsing(message: object, field: str) -> None:
    data = message.SerializeToString()  # type: ignore[attr-defined]
    with pytest.raises(LimitExceeded) as caught:
        check_message_entries(data, message.DESCRIPTOR, max_entries=8)  # type: ignore[attr-defined]
    assert caught.value.violations[0].field == field
    assert caught.value.metadata["maximum"] == "8"


def test_a_valid_request_passes_whatever_its_size() -> None:
    message = pb.EvaluateRequest(expression="x*y", points=big_columns(8), wrt=[pb.Wrt(variable="x")])
    check_message_entries(message.SerializeToString(), EVALUATE, max_entries=8)  # 6.4 MB, 8 columns


def test_fields_besides_the_lists_are_bounded_too() -> None:
    """Unknown fields (proto3 keeps them) and fields given again (the last wins) are valid, a few of
    them; 30 million of them (60 MB of `78 00`) took 29 s of this walk to be accepted (an attack hunt,
    2026-12-05). Counting stops past one of each field and `max_entries` more."""
    message = pb.DifferentiateRequest(expression="x").SerializeToString()
    unknown = b"\x78\x00"  # field 15, a varint: no DifferentiateRequest field
    check_message_entries(message + unknown * 8, DIFFERENTIATE, max_entries=8)
    check_message_entries(message * 8, DIFFERENTIATE, max_entries=8)  # the same message merged 8 times
    for data in (message + unknown * 3_000_000, message * 1_000_000):
        with pytest.raises(LimitExceeded) as caught:
            check_message_entries(data, DIFFERENTIATE, max_entries=8)
        assert caught.value.violations[0].field == "body"
        limit = len(DIFFERENTIATE.fields) + 8
        assert caught.value.metadata == {
            "limit": "field_entries",
            "value": str(limit + 1),
            "maximum": str(limit),
        }


@pytest.mark.parametrize("data", [b"\x0a\xff", b"\x0a\x05ab", b"\x0f", b"\x80"])
def test_a_malformed_message_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        check_message_entries(data, EVALUATE, max_entries=8)


@pytest.mark.parametrize("empty", [b"[" * 400 + b"]" * 400, b"{}", b"[]"])
def test_json_arrays_and_objects_are_bounded_before_decoding(empty: bytes) -> None:
    """Empty lists or objects have no member, string or comma: 50 MB of nested empty lists in `wrt`
    took 12 s and 2.3 GB of json.loads to be refused (an attack hunt, 2026-12-05)."""
    body = b'{"expression":"x","wrt":[' + b",".join([empty] * 2_000) + b"]}"
    with pytest.raises(LimitExceeded) as caught:
        check_json_members(body, max_entries=8)
    assert caught.value.violations[0].field == "body" and "arrays and objects" in caught.value.message


def test_json_members_are_bounded_by_the_entries_a_request_can_have() -> None:
    valid = {
        "expression": "x",
        "points": {f"v{i}": {"values": [1.0, 2.0]} for i in range(8)},
        "wrt": [{"variable": "x", "order": 1}] * 8,
    }
    check_json_members(json.dumps(valid).encode(), max_entries=8)
    flood = {"expression": "x", "point": {f"k{i}": 1.0 for i in range(1_000)}}
    with pytest.raises(LimitExceeded) as caught:
        check_json_members(json.dumps(flood).encode(), max_entries=8)
    assert caught.value.violations[0].field == "body"


def test_json_strings_are_bounded_by_the_entries_a_request_can_have() -> None:
    """A list of 7 million short strings has no members to count: json.loads took seconds of the
    GIL before its length was checked (an independent tester)."""
    widest = {
        "expressions": [f"x{i}" for i in range(8)], "variables": [f"x{i}" for i in range(8)],
        "formats": ["OUTPUT_FORMAT_LATEX"] * 8, "points": {f"x{i}": {"values": [1.0]} for i in range(8)},
    }  # fmt: skip
    check_json_members(json.dumps(widest).encode(), max_entries=8)
    with pytest.raises(LimitExceeded) as caught:
        check_json_members(json.dumps({"expressions": ["x"] * 200}).encode(), max_entries=8)
    assert caught.value.metadata["limit"] == "field_entries" and "strings" in caught.value.message


def test_listed_values_count_what_decoding_them_takes() -> None:
    # "1," is 2 bytes of JSON and 32 bytes decoded: the bytes in flight count that, not the body.
    body = b'{"expression":"x","points":{"x":{"values":[' + b"1," * 999 + b"1]}}}"
    extra = json_decoding_bytes(body, max_bytes=1_000_000)
    assert extra >= 32 * 1_000 > 15 * len(body)
    columns = json.dumps({"expression": "x", "points": {"x": {"f64le": "A" * 10_000}}}).encode()
    assert json_decoding_bytes(columns, max_bytes=1_000_000) < len(columns)  # base64: no values
    with pytest.raises(LimitExceeded) as caught:
        json_decoding_bytes(body, max_bytes=len(body) + extra - 1)
    assert caught.value.metadata["limit"] == "request_bytes_in_flight" and "f64le" in caught.value.message


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (payloads under 128 bytes: a one-byte length)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _entry(*fields: bytes) -> bytes:
    """A `points` entry of a GradientAtPointRequest (field 4) made of `fields`."""
    return _field(4, b"".join(fields))


F64 = np.array([1.5, -2.0]).tobytes()


def test_a_batch_request_splits_into_its_other_fields_and_views_of_its_columns() -> None:
    columns = {"x": np.linspace(-1, 1, 1_000), "y": np.linspace(2, 3, 1_000)}
    message = pb.GradientAtPointRequest(
        expression="x*y",
        variables=["y", "x"],
        hessian=True,
        points={k: pb.Array(f64le=v.tobytes()) for k, v in columns.items()},
    )
    data = message.SerializeToString()
    split = split_points(data, GRADIENT, max_entries=8, max_fields=16, max_rest=1024)
    assert split is not None
    message.ClearField("points")
    assert pb.GradientAtPointRequest.FromString(split.rest) == message
    assert set(split.points) == {"x", "y"}
    for name, column in columns.items():
        view = split.points[name].f64le
        assert np.array_equal(np.frombuffer(view, "<f8"), column) and view.obj is data  # not a copy


def test_a_repeated_key_keeps_the_last_column_as_protobuf_does() -> None:
    data = _entry(_field(1, b"x"), _field(2, _field(2, F64))) + _entry(
        _field(1, b"x"), _field(2, _field(2, F64[:8]))
    )
    split = split_points(data, GRADIENT, max_entries=8, max_fields=16, max_rest=1024)
    assert split is not None and bytes(split.points["x"].f64le) == F64[:8]
    assert dict(pb.GradientAtPointRequest.FromString(data).points)["x"].f64le == F64[:8]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (
            pb.GradientAtPointRequest(points={"x": pb.Array(values=[1.0])}).SerializeToString(),
            "a list column",
        ),
        (
            pb.GradientAtPointRequest(points={"x": pb.Array(values=[1.0], f64le=F64)}).SerializeToString(),
            "both",
        ),
        (_entry(_field(2, _field(2, F64)), _field(1, b"x")), "value before key"),
        (_entry(_field(2, _field(2, F64))), "no key"),
        (_entry(_field(1, b"x")), "no value"),
        (_entry(_field(1, b"\xff"), _field(2, _field(2, F64))), "a key that is not UTF-8"),
        (_entry(_field(1, b"x"), _field(2, _field(2, F64) + _field(2, F64))), "f64le twice"),
        (_entry(_field(1, b"x"), _field(2, _field(2, F64)), _field(3, b"")), "an unknown field in the entry"),
        (_entry(_field(1, b"x"), _field(2, _field(2, F64)))[:-1], "truncated"),
        (b"\x0f" + _entry(_field(1, b"x"), _field(2, _field(2, F64))), "a wire type protobuf has not"),
        (b"\x1a\x00" * 17, "more fields than it walks"),
        (_field(1, b"x" * 100) * 11, "more bytes besides the columns than it copies"),
    ],
)
def test_other_layouts_are_left_to_protobuf(data: bytes, why: str) -> None:
    assert split_points(data, GRADIENT, max_entries=64, max_fields=16, max_rest=1024) is None, why


def test_a_message_without_columns_is_not_split() -> None:
    assert (
        split_points(
            pb.DifferentiateRequest(expression="x").SerializeToString(),
            DIFFERENTIATE,
            8,
            max_fields=16,
            max_rest=1024,
        )
        is None
    )


def test_splitting_stops_at_the_entry_limit() -> None:
    data = pb.EvaluateRequest(expression="x", points=big_columns(9)).SerializeToString()
    with pytest.raises(LimitExceeded) as caught:
        split_points(data, EVALUATE, max_entries=8, max_fields=64, max_rest=1024)
    assert caught.value.violations[0].field == "points"
