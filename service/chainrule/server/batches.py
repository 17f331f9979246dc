"""Points in and out: proto `Array` columns <-> float64 numpy arrays, with field-named errors.

The fast path never builds Python floats: `f64le` columns are read as views of the request's bytes
and computed straight into the reply's bytes (`Reply.lay_out`), or appended to the message's bytes
with one copy per column. Reading a
`bytes` field from a protobuf message copies it, and a batch may be 64 MB: so the gRPC transport
reads a batch request's columns from its bytes itself (`EncodedArray`, transport/wire.py), the API
layer decodes other big requests off the event loop, and the checks that must come first (how many
map entries) need no column's content.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from chainrule.engine import numeric
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


def too_many_points(field: str, points: int, max_points: int) -> LimitExceeded:
    """The error for a batch over `points` (the engine's limit; clients split larger ones)."""
    return LimitExceeded("points", points, max_points, field=field, what="too many points", unit="points")


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
    size = numeric.common_length({name: len(column) for name, column in decoded.items()}, "points")
    if size > max_points:
        raise too_many_points("points", size, max_points)
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
    """A batch response laid out for protobuf's wire: the message's own bytes and its f64le columns.

    Filling an f64le column into the message copies it three times (numpy's `tobytes`, into the
    message, and out again when it is serialised): 24 MB for a 10^6-point Evaluate. A protobuf parser
    reads fields in any order, a message field as if it had been set in place and each occurrence
    of a repeated one as one more; so each column goes on the wire as its field's tag and length and
    the column's own bytes. Either the columns are computed straight into the bytes grpc will send
    (`lay_out`, before computing), or they are appended and everything is joined in one copy.
    `message()` is the same response with the columns filled in (for JSON, and whoever wants the
    message).
    """

    def __init__(self, message: Response) -> None:
        self._message = message
        self._columns: list[tuple[str, FloatArray]] = []
        self._encoded: bytes | None = None
        self._laid_out: _LaidOut | None = None

    @property
    def head(self) -> Response:
        """The message's own fields (not the columns `add` was given)."""
        return self._message

    def lay_out(self, fields: Sequence[str], points: int) -> list[FloatArray]:
        """Allocate the wire bytes for columns of `points` f64le values for `fields` (in the order
        `add` will be called) after the message's fields set so far, and return each column's place
        in them, for the engine to compute into (each 8-byte aligned: `_aligned_column_head`)."""
        self._laid_out = _LaidOut(self._message.SerializeToString(), self._message.DESCRIPTOR, fields, points)
        return list(self._laid_out.columns)

    def add(self, field: str, values: FloatArray, raw: bool) -> None:
        """Set `field` (an `Array`; a repeated one gets one more) to `values`, as f64le if `raw`."""
        if not raw:
            fill(_target(self._message, field), values, raw=False)
            return
        if self._laid_out is not None:
            values = self._laid_out.place(len(self._columns), field, values)
        self._columns.append((field, values))

    def carries_points(self) -> bool:
        """Whether it holds point columns (`sizing.carries_points`): then it may be tens of megabytes."""
        return bool(self._columns) or sizing.carries_points(self._message)

    def encoded(self) -> bool:
        """Whether it was serialised already (where it was computed): then serialising is free."""
        return self._encoded is not None

    def SerializeToString(self) -> bytes:  # noqa: N802 (the name grpc's serialisers call)
        """The wire bytes; the first call makes them, later ones return the same bytes."""
        if self._encoded is None:
            laid_out = self._laid_out
            finished = None if laid_out is None else laid_out.finished(self._message.SerializeToString())
            self._encoded = self._joined() if finished is None else finished
        return self._encoded

    def _joined(self) -> bytes:
        parts: list[bytes | memoryview] = [self._message.SerializeToString()]
        for field, values in self._columns:
            data = np.ascontiguousarray(values, dtype="<f8").data
            parts += [_column_head(self._message.DESCRIPTOR, field, data.nbytes), data]
        return b"".join(parts)

    def message(self) -> Response:
        """The response as a message, columns filled in (the first call moves them into it)."""
        for field, values in self._columns:
            fill(_target(self._message, field), values, raw=True)
        self._columns.clear()
        self._laid_out = None
        return self._message


class _LaidOut:
    """A reply's wire bytes allocated before its columns are computed: the message's fields known
    then, and a place for each column. The message's fields set afterwards (the count of non-finite
    values, which serialises after the others) are appended when finished: a second copy only when
    there is such a field to append, i.e. some value was not finite."""

    def __init__(self, head: bytes, descriptor: Any, fields: Sequence[str], points: int) -> None:
        heads, starts, offset = [(0, head)], [], len(head)  # heads: (where, bytes); starts: columns'
        for field in fields:
            column_head = _aligned_column_head(descriptor, field, 8 * points, offset % 8)
            heads.append((offset, column_head))
            starts.append(offset + len(column_head))
            offset = starts[-1] + 8 * points
        self._head, self._fields = head, tuple(fields)
        self._bytes, memory = _uninitialised_bytes(offset)
        for where, written in heads:
            memory[where : where + len(written)] = np.frombuffer(written, dtype=np.uint8)
        self.columns: tuple[FloatArray, ...] = tuple(
            memory[start : start + 8 * points].view("<f8") for start in starts
        )

    def place(self, index: int, field: str, values: FloatArray) -> FloatArray:
        """Column `index` holding `values` (copied there unless computed there)."""
        if self._fields[index] != field:
            raise ValueError(f"column {index} was laid out for {self._fields[index]}, not {field}")
        column = self.columns[index]
        if values.ctypes.data != column.ctypes.data:
            column[...] = values
        return column

    def finished(self, message: bytes) -> bytes | None:
        """The wire bytes, given the message's fields as they are now (None: they no longer start
        with those laid out, so the columns must be joined after them)."""
        if not message.startswith(self._head):
            return None
        tail = message[len(self._head) :]
        return self._bytes + tail if tail else self._bytes


def _uninitialised_bytes(size: int) -> tuple[bytes, npt.NDArray[np.uint8]]:
    """A new bytes object of `size` bytes, and a writable view of them to fill before it is shared.

    grpc sends a reply only as `bytes`, and copies it as it sends; this is C's
    `PyBytes_FromStringAndSize(NULL, size)`, documented for exactly this (the bytes are the
    caller's to write until the object is used), so a batch's columns are computed into the bytes
    grpc sends instead of being joined into them: one pass less over every column. The view keeps
    the bytes alive; nothing hashes or shares them before the reply is finished.
    """
    data = _NEW_BYTES(None, size)
    memory = (ctypes.c_char * size).from_address(_BYTES_ADDRESS(data))
    memory.owner = data  # type: ignore[attr-defined]  # (the bytes live as long as any view)
    return data, np.frombuffer(memoryview(memory).cast("B"), dtype=np.uint8)


_NEW_BYTES = ctypes.pythonapi.PyBytes_FromStringAndSize
_NEW_BYTES.restype, _NEW_BYTES.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
_BYTES_ADDRESS = ctypes.pythonapi.PyBytes_AsString
_BYTES_ADDRESS.restype, _BYTES_ADDRESS.argtypes = ctypes.c_void_p, (ctypes.py_object,)


def _column_head(descriptor: Any, field: str, nbytes: int, padding: bytes = b"") -> bytes:
    """An f64le column's field tag and length, then its Array's `padding` and f64le tag and length."""
    array = padding + _F64LE_TAG + _varint(nbytes)
    tag = _varint(descriptor.fields_by_name[field].number << 3 | _LENGTH_DELIMITED)
    return tag + _varint(len(array) + nbytes) + array


@functools.lru_cache(maxsize=1024)
def _aligned_column_head(descriptor: Any, field: str, nbytes: int, remainder: int) -> bytes:
    """`_column_head` for a column whose head starts `remainder` bytes past a multiple of 8 in the
    message, padded so that its values start at a multiple of 8 (a bytes object's contents are
    8-byte aligned).

    The engine computes into a column in place only where it is aligned: a misaligned one goes
    through a scratch chunk and a copy per output and chunk (the cubic's gradient at 10^5 points:
    0.91 ms misaligned, 0.77 ms aligned). The padding is the Array's own f64le field set before the
    real one, empty (2 bytes) or one zero byte (3 bytes), which every protobuf parser overwrites
    with the value that follows (the last occurrence of a singular field wins): 2 to 9 bytes cover
    every remainder modulo 8, with no non-minimal varint and no field a parser would keep as unknown.
    """
    plain = _column_head(descriptor, field, nbytes)
    # The padding counts in the column's length, whose varint may then take a byte more: try next.
    short = -(remainder + len(plain)) % 8
    for size in sorted(_PADDING_SIZES, key=lambda size: (size - short) % 8):
        column_head = _column_head(descriptor, field, nbytes, _padding(size))
        if (remainder + len(column_head)) % 8 == 0:
            return column_head
    return plain  # pragma: no cover (the sizes cover every remainder)


_PADDING_SIZES = (0, 2, 3, 4, 5, 6, 7, 8, 9)


def _padding(size: int) -> bytes:
    """`size` bytes (0 or 2 to 9) of f64le fields that a later f64le field overrides."""
    odd = size % 2
    return _ONE_ZERO_BYTE * odd + _EMPTY * ((size - 3 * odd) // 2)


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
_EMPTY, _ONE_ZERO_BYTE = _F64LE_TAG + b"\x00", _F64LE_TAG + b"\x01\x00"  # f64le fields as padding


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
