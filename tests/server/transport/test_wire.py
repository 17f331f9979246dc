"""Entries counted before parsing: protobuf tags walked, JSON members bounded by its colons."""

from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server.transport.wire import check_json_members, check_message_entries
from chainrule.v1 import chainrule_pb2 as pb

EVALUATE: Descriptor = pb.EvaluateRequest.DESCRIPTOR
DIFFERENTIATE: Descriptor = pb.DifferentiateRequest.DESCRIPTOR


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


@pytest.mark.parametrize("data", [b"\x0a\xff", b"\x0a\x05ab", b"\x0f", b"\x80"])
def test_a_malformed_message_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        check_message_entries(data, EVALUATE, max_entries=8)


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
