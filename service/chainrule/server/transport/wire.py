"""Requests read before they are parsed: list and map entries counted, in protobuf bytes or JSON text,
and a batch request's columns taken from its bytes without parsing them.

Parsing builds an object per entry: 2.5 million `point` keys in a 51 MB message take over a
gigabyte as parsed maps or JSON objects, long before the API layer can count them. A valid request
has a few lists and maps of at most `field_entries` entries each, so both transports count first
and refuse a request that has more, at a cost that stops at the limit:

- protobuf: the top-level fields are walked by their tags and lengths (a column of f64le values is
  one length-delimited field, skipped whole), counting each list field's entries; a packed list
  counts its varints;
- JSON: a valid request has at most a few members (`"key": value`) per entry; the text's colons,
  counted in C, bound its members from above (a valid request has no colons elsewhere: none in
  expressions, variable names, numbers or base64).

Parsing a batch request copies each f64le column into protobuf's arena, and reading it out of the
message copies it again: 10 MB of copies for a 4.8 MB request (`split_points`, bench/PROFILE.md).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server.batches import EncodedArray, too_many_entries
from chainrule.v1 import chainrule_pb2 as pb

_VARINT, _LEN = 0, 2
_FIXED = {1: 8, 5: 4}  # wire types I64 and I32: their sizes
_NOT_PACKABLE = frozenset(
    {FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES}
)
_HIGH_BYTES = bytes(range(128, 256))
# Members a JSON request may have besides its entries, and per entry at most: a points column has
# its name and one of `values` or `f64le`; a wrt entry `variable` and `order`.
_JSON_FIXED_MEMBERS = 16
_JSON_MEMBERS_PER_ENTRY = 3
# Fields that are lists of strings in one request message: JacobianRequest's expressions and
# variables, and a DifferentiateRequest's formats.
_JSON_STRING_LISTS = 3


def check_message_entries(data: bytes, descriptor: Descriptor, max_entries: int) -> None:
    """Refuse a serialised `descriptor` message with a list or map field of more than `max_entries`,
    or more than `max_entries` fields besides one of each other field: unknown fields (which proto3
    keeps) and fields given again (the last one wins) are legal, and 30 million of them, 60 MB of
    `78 00`, took 29 s of this walk to be accepted (an attack hunt, 2026-12-05)."""
    lists = {field.number: field for field in descriptor.fields if field.is_repeated}
    packable = {number for number, field in lists.items() if field.type not in _NOT_PACKABLE}
    counts = dict.fromkeys(lists, 0)
    others, max_others = 0, len(descriptor.fields) + max_entries
    position, end = 0, len(data)
    while position < end:
        tag, position = _varint(data, position)
        number, kind = tag >> 3, tag & 7
        entries = 1
        if kind == _LEN and number in packable:  # a packed list: one varint ends at each byte below 0x80
            length, start = _varint(data, position)
            position = start + length
            entries = len(data[start:position].translate(None, _HIGH_BYTES))
        else:
            position = _skip(data, position, kind, descriptor)
        if number in counts:
            counts[number] += entries
            if counts[number] > max_entries:
                raise _too_many(lists[number].name, max_entries)
        else:
            others += 1
            if others > max_others:
                raise _too_many_fields(descriptor, max_others)
    if position > end:
        raise _malformed(descriptor)


class Split(NamedTuple):
    """A batch request with its `points` map taken out: the other fields, still encoded (to parse),
    and each column as an `EncodedArray` whose f64le is a view of the request's bytes."""

    rest: bytes
    points: dict[str, EncodedArray]


def split_points(
    data: bytes, descriptor: Descriptor, max_entries: int, *, max_fields: int, max_rest: int
) -> Split | None:
    """`data` (a serialised `descriptor` message) as a `Split`, walking at most `max_fields` fields.

    None when the message has no `points` map of `Array`s, more fields than that, more than
    `max_rest` bytes besides the map, or a layout other than the one protobuf writes (an entry's key
    then its value; a value with only `f64le`): then it is parsed whole, which also says what is
    wrong with a malformed one. Time linear in the number of fields and `max_rest`, not in the
    bytes: no column is read or copied.
    """
    number = _points_field(descriptor)
    if number is None:
        return None
    view = memoryview(data)
    rest: list[memoryview] = []
    points: dict[str, EncodedArray] = {}
    entries = fields = position = rest_bytes = 0
    try:
        while position < len(data):
            fields += 1
            if fields > max_fields:
                return None
            start = position
            tag, position = _varint(data, position)
            if tag != number << 3 | _LEN:
                position = _skip(data, position, tag & 7, descriptor)
                rest_bytes += position - start
                if rest_bytes > max_rest:
                    return None
                rest.append(view[start:position])
                continue
            entries += 1
            if entries > max_entries:
                raise _too_many("points", max_entries)
            length, payload = _varint(data, position)
            position = payload + length
            entry = _points_entry(view[payload:position]) if position <= len(data) else None
            if entry is None:
                return None
            points[entry[0]] = entry[1]
    except LimitExceeded:
        raise
    except InvalidArgument:
        return None  # malformed: parsing it whole says how
    if position != len(data):
        return None
    return Split(b"".join(rest), points)


@functools.cache
def _points_field(descriptor: Descriptor) -> int | None:
    field = descriptor.fields_by_name.get("points")
    if field is None or field.message_type is None:
        return None
    value = field.message_type.fields_by_name.get("value")
    is_array = value is not None and value.message_type is pb.Array.DESCRIPTOR
    return field.number if is_array else None


# An entry of a map<string, Array> as protobuf writes it: the key (field 1), then the value (field 2),
# whose only field is f64le (field 2 of Array).
_KEY, _VALUE = 1 << 3 | _LEN, 2 << 3 | _LEN
_F64LE = pb.Array.DESCRIPTOR.fields_by_name["f64le"].number << 3 | _LEN


def _points_entry(entry: memoryview) -> tuple[str, EncodedArray] | None:
    """The name and column of one entry laid out the usual way, else None."""
    name, position = _field(entry, 0, _KEY)
    array, position = _field(entry, position, _VALUE)
    if name is None or array is None or position != len(entry):
        return None
    payload, end = _field(array, 0, _F64LE)
    if payload is None or end != len(array):
        return None
    try:
        return str(name, "utf-8"), EncodedArray(payload)
    except UnicodeDecodeError:
        return None


def _field(data: memoryview, position: int, tag: int) -> tuple[memoryview | None, int]:
    """The payload of the length-delimited field `tag` at `position` and where it ends; (None,
    position) when another field (or nothing) is there."""
    if position >= len(data) or data[position] != tag:  # every tag used here is one byte
        return None, position
    length, start = _varint(data, position + 1)
    end = start + length
    if end > len(data):
        raise InvalidArgument("truncated", field="body")
    return data[start:end], end


def check_json_members(body: bytes, max_entries: int) -> None:
    """Refuse a JSON body with more members, strings, or arrays and objects than a request of
    `max_entries`-entry lists can have. Strings are counted by their quotes: a list of 7 million
    short strings (in `expressions` or `variables`) has no members, and json.loads took seconds,
    holding the GIL from every other call, before its length was checked (an independent tester);
    arrays and objects by their opening brackets: 50 MB of empty nested lists in `wrt` took 12 s and
    2.3 GB to be refused as nested too deeply, the server frozen meanwhile (an attack hunt)."""
    most = _JSON_FIXED_MEMBERS + _JSON_MEMBERS_PER_ENTRY * 2 * max_entries
    members = body.count(b":")
    hint = f"a request whose lists and maps have at most {max_entries} entries has fewer"
    if members > most:
        raise LimitExceeded(
            "field_entries", members, most, field="body", what="too many members in the JSON body",
            unit="members", hint=hint,
        )  # fmt: skip
    # Each member's value may be an array or object, and so may each entry of a list (`wrt`'s).
    containers, most_containers = body.count(b"[") + body.count(b"{"), most + _JSON_STRING_LISTS * max_entries
    if containers > most_containers:
        raise LimitExceeded(
            "field_entries", containers, most_containers, field="body",
            what="too many arrays and objects in the JSON body", unit="arrays and objects", hint=hint,
        )  # fmt: skip
    # Each member's name and value may be a string, and so may each entry of a list of strings.
    strings, most_strings = body.count(b'"') // 2, 2 * most + _JSON_STRING_LISTS * max_entries
    if strings > most_strings:
        raise LimitExceeded(
            "field_entries", strings, most_strings, field="body", what="too many strings in the JSON body",
            unit="strings", hint=hint,
        )  # fmt: skip


# What decoding a JSON body builds beyond the body: a Python object and its slot in a list or dict
# (a float is 24 + 8 bytes) for each value, and there is at most one value per comma. A listed value
# can be 2 bytes of JSON ("1,"): 16 times its size, where the bytes in flight counted it once.
_JSON_BYTES_PER_VALUE = 32


def json_decoding_bytes(body: bytes, max_bytes: int) -> int:
    """The memory decoding `body` takes besides the body (an upper estimate, counted in C), refused
    as LIMIT_EXCEEDED when it and the body could never fit in `max_bytes` of requests in flight."""
    extra = _JSON_BYTES_PER_VALUE * (body.count(b",") + 1)
    if len(body) + extra > max_bytes:
        # Named for the bound it is past, one caller's share of the bytes in flight; as
        # `request_bytes` with the estimate for its value, it read as a 4 MB body over 64 MiB (an
        # independent tester).
        raise LimitExceeded(
            "request_bytes_in_flight",
            len(body) + extra,
            max_bytes,
            field="body",
            what="the JSON body's listed values take too much memory to decode (the body, and about "
            "32 bytes a value)",
            unit="bytes",
            about=True,
            hint="one call may hold a quarter of CHAINRULE_REQUEST_BYTES_IN_FLIGHT; send columns as "
            "f64le (base64 of little-endian doubles, 8 bytes a value) rather than lists of values, "
            "or split the batch",
        )
    return extra


def _skip(data: bytes, position: int, kind: int, descriptor: Descriptor) -> int:
    """Where the payload of a field of wire type `kind` starting at `position` ends."""
    if kind == _VARINT:
        return _varint(data, position)[1]
    if kind == _LEN:
        length, start = _varint(data, position)
        return start + length
    if kind in _FIXED:
        return position + _FIXED[kind]
    raise _malformed(descriptor)


def _malformed(descriptor: Descriptor) -> InvalidArgument:
    return InvalidArgument(
        f"the request is not a valid {descriptor.full_name} message", field="body", reason="MALFORMED_MESSAGE"
    )


def _too_many_fields(descriptor: Descriptor, max_fields: int) -> LimitExceeded:
    return LimitExceeded(
        "field_entries",
        max_fields + 1,
        max_fields,
        field="body",
        what=f"too many fields in the {descriptor.name} besides its lists",
        unit="fields",
        hint=f"it has {len(descriptor.fields)} fields, each but a list given once; the rest, up to "
        "`field_entries` more, may be fields this server does not know or a field given again "
        "(counting stopped there)",
    )


def _too_many(name: str, max_entries: int) -> LimitExceeded:
    hint = "the request has at least that many entries in it; counting stopped there"
    return too_many_entries(name, max_entries + 1, max_entries, hint=hint)


def _varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise InvalidArgument(
                "the request is not a valid protobuf message", field="body", reason="MALFORMED_MESSAGE"
            )
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
