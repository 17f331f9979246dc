"""Points in and out: proto `Array` columns <-> float64 numpy arrays, with field-named errors.

The fast path never builds Python floats: `f64le` columns are read as views of the request's bytes
and written back with one copy per column (`Reply` appends them to the message's bytes). Reading a
`bytes` field from a protobuf message copies it, and a batch may be 64 MB: so the gRPC transport
reads a batch request's columns from its bytes itself (`EncodedArray`, transport/wire.py), the API
layer decodes other big requests off the event loop, and the checks that must come first (how many
map entries) need no column's content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server import sizing
from chainrule.v1 import chainrule_pb2 as pb

FloatArray = npt.NDArray[np.float64]
Response = TypeVar("Response", bound=Message)
_LENGTH_DELIMITED = 2  # protobuf's wire type of bytes and message fields


class ArrayFields(Protocol):
    """What decoding reads of an `Array`: a parsed message, or an `EncodedArray`."""

    @property
    def values(self) -> Sequence[float]: ...

    @property
    def f64le(self) -> bytes | memoryview: ...


class EncodedArray(NamedTuple):
    """An `Array` holding only f64le, read from a request's bytes unparsed: the payload is a view."""

    f64le: memoryview
    values: tuple[float, ...] = ()


def check_entries(point: Mapping[str, float], points: Mapping[str, ArrayFields], max_entries: int) -> None:
    """Refuse a map with more than `max_entries` entries, in constant time (before any decoding)."""
    for field, entries in (("point", len(point)), ("points", len(points))):
        if entries > max_entries:
            raise too_many_entries(field, entries, max_entries)


def too_many_entries(field: str, entries: int, max_entries: int, hint: str = "") -> LimitExceeded:
    """The error for a map or list field over `field_entries` (the server's limit, config.py)."""
    what = f"too many entries in {field}"
    return LimitExceeded(
        "field_entries", entries, max_entries, field=field, what=what, unit="entries", hint=hint
    )


@dataclass(frozen=True)
class Batch:
    """Decoded input points: one float64 column per variable, all of length 1 or `size`."""

    columns: Mapping[str, FloatArray]
    size: int
    single: bool
    raw_output: bool
    field: str

    def missing(self, variables: Sequence[str]) -> list[str]:
        return [name for name in variables if name not in self.columns]

    def aligned_columns(self) -> Mapping[str, FloatArray]:
        """The columns, each 8-byte aligned: a view of the request's bytes sits wherever its field
        does, and numpy reads a misaligned column through a buffered copy at every operation (a
        gradient of six columns at 10^5 points: 2.7 against 2.3 ms); one copy costs less."""
        if all(column.flags.aligned for column in self.columns.values()):
            return self.columns
        return {
            name: column if column.flags.aligned else column.copy() for name, column in self.columns.items()
        }


def decode_batch(
    point: Mapping[str, float], points: Mapping[str, ArrayFields], max_points: int, max_entries: int
) -> Batch:
    """The request's `point` or `points`, checked: one of the two, equal lengths, within the limits.

    Time and memory linear in the request's size (f64le columns are views of `EncodedArray`s, or
    copied once out of a parsed message).
    """
    check_entries(point, points, max_entries)
    if point and points:
        raise InvalidArgument("set either 'point' or 'points', not both", field="points")
    if not points:
        columns = {name: np.array([value], dtype=np.float64) for name, value in point.items()}
        return Batch(columns, 1, single=True, raw_output=False, field="point")
    decoded: dict[str, FloatArray] = {}
    raw = False
    for name, array in points.items():
        decoded[name], is_raw = _decode_array(array, f"points.{name}")
        raw = raw or is_raw
    size = _common_length(decoded)
    if size > max_points:
        raise LimitExceeded("points", size, max_points, field="points", what="too many points", unit="points")
    return Batch(decoded, size, single=False, raw_output=raw, field="points")


def fill(target: pb.Array, values: FloatArray, raw: bool) -> None:
    """Write a column straight into the response's Array.

    Building an Array and then copying it into the response (CopyFrom, extend) costs one more copy
    of every column: 40 MB for a gradient at 10^6 points, a third of the response's server time.
    """
    if raw:
        target.f64le = np.ascontiguousarray(values, dtype="<f8").tobytes()
    else:
        target.values.extend(values.tolist())


class Reply(Generic[Response]):
    """A batch response laid out for protobuf's wire: the message's own bytes, then its f64le columns.

    Filling an f64le column into the message copies it three times (numpy's `tobytes`, into the
    message, and out again when it is serialised): 24 MB for a 10^6-point Evaluate. A protobuf parser
    reads a message field that comes after the others, and each occurrence of a repeated one, as if
    it had been set in place; so each column is appended instead, as its field's tag and length and
    the column's own bytes, and everything is joined in one copy. `message()` is the same response
    with the columns filled in (for JSON, and whoever wants the message).
    """

    def __init__(self, message: Response) -> None:
        self._message = message
        self._columns: list[tuple[str, FloatArray]] = []
        self._encoded: bytes | None = None

    def add(self, field: str, values: FloatArray, raw: bool) -> None:
        """Set `field` (an `Array`; a repeated one gets one more) to `values`, as f64le if `raw`."""
        if raw:
            self._columns.append((field, values))
        else:
            fill(_target(self._message, field), values, raw=False)

    def carries_points(self) -> bool:
        """Whether it holds point columns (`sizing.carries_points`): then it may be tens of megabytes."""
        return bool(self._columns) or sizing.carries_points(self._message)

    def encoded(self) -> bool:
        """Whether it was serialised already (where it was computed): then serialising is free."""
        return self._encoded is not None

    def SerializeToString(self) -> bytes:  # noqa: N802 (the name grpc's serialisers call)
        """The wire bytes; the first call joins them, later ones return the same bytes."""
        if self._encoded is None:
            self._encoded = self._joined()
        return self._encoded

    def _joined(self) -> bytes:
        parts: list[bytes | memoryview] = [self._message.SerializeToString()]
        for field, values in self._columns:
            data = np.ascontiguousarray(values, dtype="<f8").data
            array = _F64LE_TAG + _varint(data.nbytes)
            tag = _varint(self._message.DESCRIPTOR.fields_by_name[field].number << 3 | _LENGTH_DELIMITED)
            parts += [tag + _varint(len(array) + data.nbytes), array, data]
        return b"".join(parts)

    def message(self) -> Response:
        """The response as a message, columns filled in (the first call moves them into it)."""
        for field, values in self._columns:
            fill(_target(self._message, field), values, raw=True)
        self._columns.clear()
        return self._message


def _target(message: Message, field: str) -> pb.Array:
    target = getattr(message, field)
    return target.add() if message.DESCRIPTOR.fields_by_name[field].is_repeated else target  # type: ignore[no-any-return]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_F64LE_TAG = _varint(pb.Array.DESCRIPTOR.fields_by_name["f64le"].number << 3 | _LENGTH_DELIMITED)


def _decode_array(array: ArrayFields, field: str) -> tuple[FloatArray, bool]:
    """The column and whether it came as f64le; `array.f64le` is read once (each read is a copy)."""
    raw = array.f64le
    if raw and len(array.values):
        raise InvalidArgument("set either 'values' or 'f64le', not both", field=field)
    if raw:
        if len(raw) % 8:
            raise InvalidArgument(f"f64le has {len(raw)} bytes, not a multiple of 8", field=f"{field}.f64le")
        return np.frombuffer(raw, dtype="<f8"), True
    return np.asarray(array.values, dtype=np.float64), False


def _common_length(columns: Mapping[str, FloatArray]) -> int:
    lengths = {len(column) for column in columns.values()} - {1}
    if len(lengths) > 1:
        expected = max(lengths)
        name = next(n for n, c in sorted(columns.items()) if len(c) not in (1, expected))
        raise InvalidArgument(
            f"column '{name}' has {len(columns[name])} values, others have {expected}",
            field=f"points.{name}",
        )
    return lengths.pop() if lengths else 1
