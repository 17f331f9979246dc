"""List and map entries of a request counted before it is parsed, in protobuf bytes or JSON text.

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
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server.batches import too_many_entries

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


def check_message_entries(data: bytes, descriptor: Descriptor, max_entries: int) -> None:
    """Refuse a serialised `descriptor` message with a list or map field of more than `max_entries`."""
    lists = {field.number: field for field in descriptor.fields if field.is_repeated}
    packable = {number for number, field in lists.items() if field.type not in _NOT_PACKABLE}
    counts = dict.fromkeys(lists, 0)
    position, end = 0, len(data)
    while position < end:
        tag, position = _varint(data, position)
        number, kind = tag >> 3, tag & 7
        entries = 1
        if kind == _VARINT:
            _, position = _varint(data, position)
        elif kind == _LEN:
            length, start = _varint(data, position)
            position = start + length
            if number in packable:  # a packed list: one varint ends at each byte below 0x80
                entries = len(data[start:position].translate(None, _HIGH_BYTES))
        elif kind in _FIXED:
            position += _FIXED[kind]
        else:
            raise _malformed(descriptor)
        if number in counts:
            counts[number] += entries
            if counts[number] > max_entries:
                raise _too_many(lists[number].name, max_entries)
    if position > end:
        raise _malformed(descriptor)


def check_json_members(body: bytes, max_entries: int) -> None:
    """Refuse a JSON body with more members than a request of `max_entries`-entry lists can have."""
    most = _JSON_FIXED_MEMBERS + _JSON_MEMBERS_PER_ENTRY * 2 * max_entries
    members = body.count(b":")
    if members > most:
        raise LimitExceeded(
            "field_entries",
            members,
            most,
            field="body",
            what="too many members in the JSON body",
            unit="members",
            hint=f"a request whose lists and maps have at most {max_entries} entries has fewer",
        )


def _malformed(descriptor: Descriptor) -> InvalidArgument:
    return InvalidArgument(
        f"the request is not a valid {descriptor.full_name} message", field="body", reason="MALFORMED_MESSAGE"
    )


def _too_many(name: str, max_entries: int) -> LimitExceeded:
    hint = "the request has at least that many entries in it; counting stopped there"
    return too_many_entries(name, max_entries + 1, max_entries, hint=hint)


def _varint(data: bytes, position: int) -> tuple[int, int]:
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
