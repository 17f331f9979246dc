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


_COLUMNS = ["values", "gradients", "gradients", "hessians"]


def _laid_out(count: int, computed: int) -> tuple[Reply[pb.GradientAtPointResponse], list[np.ndarray]]:
    """`_gradient_reply`'s columns laid out before they are known; the first `computed` computed in
    place (as the engine does), the others given after; the count of non-finite values set last."""
    reply = Reply(pb.GradientAtPointResponse(variables=["x", "y"]))
    places = reply.lay_out(_COLUMNS, 3)
    given = [[1.0, np.nan, -0.0], [2.0, 3.0, 4.0], [5.0, 6.0, 7.5], list(np.arange(3.0) * 1e300)]
    for place, values in zip(places[:computed], given, strict=False):
        place[...] = values
    for index, (field, values) in enumerate(zip(_COLUMNS, given, strict=True)):
        reply.add(field, places[index] if index < computed else np.array(values), raw=True)
    reply.head.nonfinite_count = count
    return reply, places


@pytest.mark.parametrize("computed", [0, 2, 4])
@pytest.mark.parametrize("count", [0, 1, 300])
def test_a_laid_out_reply_parses_as_the_filled_message(count: int, computed: int) -> None:
    reply, places = _laid_out(count, computed)
    assert all(place.flags.aligned for place in places)  # padded to 8 bytes (engine computes in place)
    encoded = reply.SerializeToString()
    expected = _filled(raw=True)
    expected.nonfinite_count = count
    assert pb.GradientAtPointResponse.FromString(encoded) == expected
    assert reply.SerializeToString() is encoded
    assert _laid_out(count, computed)[0].message() == expected


@pytest.mark.parametrize("points", [1, 2, 3, 16, 70_000])
@pytest.mark.parametrize("names", [0, 1, 2, 3, 5, 7, 8, 20])
def test_every_laid_out_column_is_aligned_whatever_precedes_it(points: int, names: int) -> None:
    """Heads of every length mod 8 (variable names) and lengths of one to three varint bytes: each
    column starts at a multiple of 8 bytes, and the padding reads as nothing but the column."""
    head = pb.GradientAtPointResponse(variables=["v" * k for k in range(names)])
    reply = Reply(head)
    places = reply.lay_out(["values", "gradients", "gradients"], points)
    columns = [np.arange(points, dtype=np.float64) * np.float64(k + 0.5) for k in range(3)]
    for place, values, field in zip(places, columns, ["values", "gradients", "gradients"], strict=True):
        assert place.flags.aligned and place.ctypes.data % 8 == 0
        place[...] = values
        reply.add(field, place, raw=True)
    parsed = pb.GradientAtPointResponse.FromString(reply.SerializeToString())
    assert list(parsed.variables) == list(head.variables)
    got = [np.frombuffer(array.f64le, dtype="<f8") for array in (parsed.values, *parsed.gradients)]
    assert all(np.array_equal(g, c) for g, c in zip(got, columns, strict=True))
    canonical = pb.GradientAtPointResponse(variables=head.variables)
    for field, values in zip(["values", "gradients", "gradients"], columns, strict=True):
        fill(getattr(canonical, field).add() if field == "gradients" else canonical.values, values, raw=True)
    assert parsed.SerializeToString() == canonical.SerializeToString()  # nothing else kept, unknown or not


def test_a_laid_out_reply_is_the_bytes_it_was_computed_into() -> None:
    """No join when every value was finite: the columns were written into the very bytes sent."""
    reply, places = _laid_out(0, 4)
    encoded = reply.SerializeToString()
    assert np.shares_memory(places[0], np.frombuffer(encoded, dtype=np.uint8))


def test_a_column_added_out_of_its_laid_out_order_is_a_bug() -> None:
    reply = Reply(pb.GradientAtPointResponse())
    reply.lay_out(["values", "gradients"], 2)
    with pytest.raises(ValueError, match="laid out for values"):
        reply.add("gradients", np.zeros(2), raw=True)


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


def test_an_encoded_column_is_read_in_place() -> None:
    values = np.array([1.5, -2.0, 3.25])
    # At offsets 8 and 33 of the bytes' buffer, which CPython aligns to 16 (the engine aligns the
    # second chunk by chunk: tests/engine/test_numeric.py).
    data = b"\0" * 8 + values.tobytes() + b"\0" + values.tobytes()
    points: dict[str, ArrayFields] = {
        "x": EncodedArray(memoryview(data)[8:32]),
        "y": EncodedArray(memoryview(data)[33:]),
        "z": pb.Array(values=[1.0, 2.0, 3.0]),
    }
    batch = decode_batch({}, points, max_points=10, max_entries=64)
    assert batch.raw_output and batch.size == 3
    for name in "xy":
        assert np.shares_memory(batch.columns[name], np.frombuffer(data, "u1"))
        assert batch.columns[name].tolist() == values.tolist()
    assert not batch.columns["y"].flags.aligned


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
