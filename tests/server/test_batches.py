"""Point batches: proto Array columns to numpy and back, with the request field named on errors."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server.batches import ArrayFields, EncodedArray, Reply, decode_batch, fill
from chainrule.v1 import chainrule_pb2 as pb


def raw(values: list[float]) -> pb.Array:
    return pb.Array(f64le=np.array(values, dtype="<f8").tobytes())


def test_one_point_is_a_batch_of_one() -> None:
    batch = decode_batch({"x": 2.0}, {}, max_points=10, max_entries=64)
    assert batch.single and batch.size == 1 and batch.field == "point"
    assert batch.columns["x"].tolist() == [2.0]


def test_mixed_encodings_broadcast_and_answer_raw() -> None:
    points = {"x": raw([1.0, 2.0, 3.0]), "y": pb.Array(values=[5.0])}
    batch = decode_batch({}, points, max_points=10, max_entries=64)
    assert not batch.single and batch.size == 3 and batch.raw_output
    assert batch.columns["x"].tolist() == [1.0, 2.0, 3.0] and batch.columns["y"].tolist() == [5.0]
    assert batch.missing(["x", "z"]) == ["z"]


def test_lists_only_answer_lists() -> None:
    assert not decode_batch({}, {"x": pb.Array(values=[1.0, 2.0])}, max_points=10, max_entries=64).raw_output


@pytest.mark.parametrize(
    ("point", "points", "field"),
    [
        ({"x": 1.0}, {"x": pb.Array(values=[1.0])}, "points"),
        ({}, {"x": pb.Array(values=[1.0], f64le=b"\0" * 8)}, "points.x"),
        ({}, {"x": pb.Array(f64le=b"\0" * 12)}, "points.x.f64le"),
        ({}, {"x": pb.Array(values=[1.0, 2.0]), "y": pb.Array(values=[1.0, 2.0, 3.0])}, "points.x"),
    ],
)
def test_bad_batches_name_the_field(point: dict[str, float], points: dict[str, pb.Array], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_batch(point, points, max_points=10, max_entries=64)
    assert caught.value.violations[0].field == field


def test_too_many_points_is_a_limit() -> None:
    with pytest.raises(LimitExceeded) as caught:
        decode_batch({}, {"x": raw([0.0] * 11)}, max_points=10, max_entries=64)
    assert caught.value.metadata == {"limit": "points", "value": "11", "maximum": "10"}


@pytest.mark.parametrize("as_raw", [True, False])
def test_fill_round_trips(as_raw: bool) -> None:
    values = np.array([1.5, -np.inf, np.nan])
    target = pb.Array()
    fill(target, values, as_raw)
    decoded = decode_batch({}, {"v": target}, max_points=10, max_entries=64).columns["v"]
    assert np.array_equal(decoded, values, equal_nan=True)
    assert bool(target.f64le) is as_raw


def _gradient_reply(raw: bool) -> Reply[pb.GradientAtPointResponse]:
    reply = Reply(pb.GradientAtPointResponse(variables=["x", "y"], nonfinite_count=1))
    reply.add("values", np.array([1.0, np.nan, -0.0]), raw)
    for column in ([2.0, 3.0, 4.0], [5.0, 6.0, 7.5]):
        reply.add("gradients", np.array(column), raw)
    reply.add("hessians", np.arange(3.0) * 1e300, raw)
    return reply


def _filled(raw: bool) -> pb.GradientAtPointResponse:
    """The same response the way it was built before `Reply`: every column filled into the message."""
    message = pb.GradientAtPointResponse(variables=["x", "y"], nonfinite_count=1)
    fill(message.values, np.array([1.0, np.nan, -0.0]), raw)
    for column in ([2.0, 3.0, 4.0], [5.0, 6.0, 7.5]):
        fill(message.gradients.add(), np.array(column), raw)
    fill(message.hessians.add(), np.arange(3.0) * 1e300, raw)
    return message


@pytest.mark.parametrize("raw", [True, False])
def test_a_reply_parses_as_the_filled_message(raw: bool) -> None:
    parsed = pb.GradientAtPointResponse.FromString(_gradient_reply(raw).SerializeToString())
    assert parsed == _filled(raw)
    assert _gradient_reply(raw).message() == _filled(raw)


def test_a_reply_of_no_columns_is_its_message() -> None:
    message = pb.EvaluateResponse(value=2.5)
    reply = Reply(message)
    assert reply.SerializeToString() == message.SerializeToString() and reply.message() is message


def test_a_long_column_has_a_multibyte_length() -> None:
    values = np.linspace(-1.0, 1.0, 70_000)  # 560,000 bytes: a three-byte varint length
    reply = Reply(pb.EvaluateResponse())
    reply.add("values", values, raw=True)
    parsed = pb.EvaluateResponse.FromString(reply.SerializeToString())
    assert np.array_equal(np.frombuffer(parsed.values.f64le, dtype="<f8"), values)


@pytest.mark.parametrize(("point", "points", "field"), [({"x": 1.0, "y": 2.0, "z": 3.0}, {}, "point"),
    ({}, {name: pb.Array(values=[1.0]) for name in "xyz"}, "points")])  # fmt: skip
def test_map_entries_are_bounded_before_any_column_is_read(
    point: dict[str, float], points: dict[str, pb.Array], field: str
) -> None:
    with pytest.raises(LimitExceeded) as caught:
        decode_batch(point, points, max_points=10, max_entries=2)
    assert caught.value.metadata == {"limit": "field_entries", "value": "3", "maximum": "2"}
    assert caught.value.violations[0].field == field


def test_unused_entries_within_the_bound_are_accepted() -> None:
    batch = decode_batch({"x": 1.0, "unused": 2.0}, {}, max_points=10, max_entries=2)
    assert set(batch.columns) == {"x", "unused"}


def test_an_encoded_column_is_read_in_place_and_aligned_only_when_it_must_be() -> None:
    values = np.array([1.5, -2.0, 3.25])
    # At offsets 8 and 33 of the bytes' buffer, which CPython aligns to 16.
    data = b"\0" * 8 + values.tobytes() + b"\0" + values.tobytes()
    points: dict[str, ArrayFields] = {
        "x": EncodedArray(memoryview(data)[8:32]),
        "y": EncodedArray(memoryview(data)[33:]),
        "z": pb.Array(values=[1.0, 2.0, 3.0]),
    }
    batch = decode_batch({}, points, max_points=10, max_entries=64)
    assert batch.raw_output and batch.size == 3
    assert not batch.columns["y"].flags.aligned and np.shares_memory(
        batch.columns["y"], np.frombuffer(data, "u1")
    )
    aligned = batch.aligned_columns()
    assert all(column.flags.aligned for column in aligned.values())
    assert aligned["x"] is batch.columns["x"] and aligned["z"] is batch.columns["z"]
    assert aligned["y"] is not batch.columns["y"] and aligned["y"].tolist() == values.tolist()


def test_aligned_columns_are_not_copied() -> None:
    batch = decode_batch({}, {"x": raw([1.0, 2.0])}, max_points=10, max_entries=64)
    assert batch.aligned_columns() is batch.columns


def test_an_encoded_column_of_a_bad_length_names_its_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_batch({}, {"x": EncodedArray(memoryview(b"\0" * 12))}, max_points=10, max_entries=64)
    assert caught.value.violations[0].field == "points.x.f64le"


def test_a_reply_is_serialised_once() -> None:
    reply = _gradient_reply(raw=True)
    assert not reply.encoded()
    first = reply.SerializeToString()
    assert reply.encoded() and reply.SerializeToString() is first
    assert reply.message() == _filled(raw=True)
