"""Strict proto3 JSON for the HTTP transport: decode with every mistake named by its field path; encode.

`google.protobuf.json_format` stays the authority on the mapping. Before it parses, a walk over the
message descriptor collects every unknown key and every value of the wrong JSON type with its path
(`wrt[0].order`, `points.x.f64le`), because json_format stops at the first unknown field, names
paths loosely, and silently drops characters that are not base64.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from chainrule.engine.errors import MOST_VIOLATIONS, FieldViolation, InvalidArgument
from chainrule.server.batches import too_many_entries, too_many_points
from chainrule.server.sizing import carries_points
from chainrule.v1 import chainrule_pb2 as pb

RequestT = TypeVar("RequestT", bound=Message)
# Standard and URL-safe, as json_format reads base64: one alphabet for the short and the long check.
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_BASE64 = re.compile(f"[{re.escape(_BASE64_ALPHABET.decode())}]*={{0,2}}")
_NOT_BASE64 = "expected a base64 string"
_URL_SAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# Characters of a long base64 column decoded per C call: each holds the GIL, and a 60 MB column
# went through a regex, two copies and two decodes, single calls of up to 120 ms (an attack hunt,
# 2026-12-07: 0.8 s of CPU a request; other callers' gRPC health waited up to 0.77 s).
_BASE64_PIECE = 1 << 20


def dump(data: object) -> bytes:
    # json_format already writes non-finite doubles as strings, so allow_nan=False never trips.
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _dumps(data: object) -> str:
    """JSON text, a long list a piece at a time.

    json's C encoder holds the GIL for a whole call: one call over a reply of a million values would
    stall the event loop for seconds even on another thread; pieces of `_PIECE` values each take a
    millisecond or so, and the loop gets its turn between them.
    """
    if isinstance(data, dict) and len(data) <= _PIECE:
        return "{" + ",".join(f"{_dumps(str(key))}:{_dumps(value)}" for key, value in data.items()) + "}"
    if isinstance(data, list) and len(data) > _PIECE:
        parts = []
        for start in range(0, len(data), _PIECE):
            parts.append(_dumps(data[start : start + _PIECE])[1:-1])
            # The lock to whoever waits for it, at once: not after the 5 ms switch interval, a wait
            # another thread's numpy met at each of its calls (an Evaluate beside a 29 MB reply being
            # encoded took 15.8 s, alone 0.5 s; an independent attacker).
            time.sleep(0)
        return "[" + ",".join(part for part in parts if part) + "]"
    if isinstance(data, list) and any(isinstance(item, dict | list) for item in data):
        return "[" + ",".join(_dumps(item) for item in data) + "]"
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def message_to_json(message: Message) -> bytes:
    """`message` in the proto3 JSON mapping: lowerCamelCase keys, every field without presence."""
    if carries_points(message):
        return _dumps(_with_listed_columns(message)).encode()
    return dump(_to_dict(message))


def _to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=False, always_print_fields_with_no_presence=True
    )


def _with_listed_columns(message: Message) -> dict[str, Any]:
    """`_to_dict(message)` for a reply with point columns, their values listed by numpy: json_format
    converts one double at a time in Python, holding the interpreter's lock (0.43 s for 1.3 million).
    The columns are emptied in a copy, which keeps every field where json_format puts it, and their
    values put back in the dictionary."""
    rest = type(message)()
    rest.CopyFrom(message)
    emptied: list[tuple[str, int | None, pb.Array]] = []
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not pb.Array.DESCRIPTOR:
            continue
        if field.is_repeated:
            for place, array in enumerate(getattr(message, field.name)):
                getattr(rest, field.name)[place].ClearField("values")
                emptied.append((field.json_name, place, array))
        elif message.HasField(field.name):
            getattr(rest, field.name).ClearField("values")
            emptied.append((field.json_name, None, getattr(message, field.name)))
    data = _to_dict(rest)
    for name, at, array in emptied:
        column = data[name] if at is None else data[name][at]
        column["values"] = _listed(array)
    return data


def _listed(array: pb.Array) -> list[Any]:
    """An `Array`'s values as `_to_dict` lists them: non-finite doubles as the JSON mapping's strings."""
    values = np.array(array.values, dtype=np.float64)
    listed: list[Any] = values.tolist()
    for index in np.flatnonzero(~np.isfinite(values)).tolist():
        value = listed[index]
        listed[index] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return listed


# Values per call of json's C encoder or decoder (see `_dumps`, `_loads`).
_PIECE = 4096
_LIST_OF_VALUES = re.compile(rb'"values"\s*:\s*\[')


def _loads(body: bytes, max_values: int | None) -> Any:
    """`json.loads(body)`, each long `values` list parsed a piece at a time (see `_dumps`).

    A request's members are few (wire.py counts them first), so a big body is big in its lists of
    numbers and its strings. Those lists are cut out of the text, counted (a list of more than
    `max_values` values is refused before it is parsed: 2.6 million took 20 s of converting to be
    refused), the rest is parsed as it is, and each list is parsed in pieces and put back in
    document order; anything unusual (a list that is not plain values) falls back to one
    `json.loads`, which also names the error.
    """
    if len(body) <= _PIECE * 16:
        return _strict_loads(body)
    try:
        return _loads_in_pieces(body, max_values)
    except ValueError:
        # Said of a piece or of the skeleton, a position was wrong, and a "]" inside a string cut a
        # list early: valid JSON was called malformed (an independent tester). The whole body names it.
        return _strict_loads(body)


def _loads_in_pieces(body: bytes, max_values: int | None) -> Any:
    skeleton, lists = bytearray(), []
    position = 0
    for match in _LIST_OF_VALUES.finditer(body):
        end = body.find(b"]", match.end())
        if end < 0 or b"[" in body[match.end() : end]:
            return _strict_loads(body)
        if max_values is not None and (count := body.count(b",", match.end(), end) + 1) > max_values:
            raise too_many_points("points", count, max_values)
        skeleton += body[position : match.end()]
        lists.append(body[match.end() : end])
        position = end
    skeleton += body[position:]
    data = _strict_loads(bytes(skeleton))
    pending = iter(lists)
    if not _refill(data, pending, _parse_values) or next(pending, None) is not None:
        return _strict_loads(body)
    return data


def _parse_values(text: bytes) -> list[Any]:
    values: list[Any] = []
    start = 0
    while start < len(text):
        cut = text.find(b",", start + _PIECE * 8)  # about _PIECE numbers
        cut = len(text) if cut < 0 else cut
        values += _strict_loads(b"[" + text[start:cut] + b"]")
        start = cut + 1
    return values


def _refill(data: Any, pending: Any, parse: Any) -> bool:
    """Put each parsed list back where its `"values": []` stands, in document order."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "values" and value == []:
                text = next(pending, None)
                if text is None:
                    return False
                data[key] = parse(text)
            elif not _refill(value, pending, parse):
                return False
    elif isinstance(data, list):
        return all(_refill(item, pending, parse) for item in data)
    return True


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _reject_constant(name: str) -> object:
    raise ValueError(f'{name} is not JSON; write it as the string "{name}"')


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of a repeated key silently; json_format's own Parse refuses it, and
    # a caller who wrote `"x"` twice in a point meant one of them, which we cannot know.
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f'the key "{shown_key(key)}" appears twice in one object; give each key once')
        data[key] = value
    return data


def _strict_loads(text: bytes) -> Any:
    """`json.loads` refusing NaN/Infinity literals, repeated keys and integers Python will not read,
    of UTF-8 only (a BOM aside): given bytes, json.loads also reads UTF-16 and UTF-32 (an independent
    hunt, 2026-12-06), which docs/rest.md says is a 400."""
    return json.loads(
        text.decode("utf-8-sig"),
        parse_constant=_reject_constant,
        object_pairs_hook=_reject_duplicate_keys,
        parse_int=_integer,
    )


# Python refuses to read longer integers (its guard against quadratic conversion, CVE-2020-10735).
# A longer integer is past the largest double (1.8e308, 309 digits), and no field holds one: refused
# before it is converted, which costs time quadratic in its digits. Python's own limit (4,300
# digits) let a 250 KB body of 58 such integers take 7.6 ms of the event loop to refuse (an
# independent hunt, 2026-12-06; its error had named sys.set_int_max_str_digits, as malformed JSON).
_INTEGER_DIGITS = 309


def _integer(text: str) -> int | float:
    """An integer literal; one longer than any double's is the infinity it is past, refused where
    its field is checked, by name."""
    if len(text.lstrip("-")) > _INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    # -0 is a double's negative zero (1/x at -0 is -inf over gRPC; read as the integer 0 it was +inf).
    return -0.0 if text == "-0" else int(text)


@dataclass(frozen=True)
class Bounds:
    """What a decoded JSON body may hold before anything walks or converts it: `entries` in a list
    (`field_entries`), `values` in a points column (`points`), and `text`: a string's code points
    past which it is set on the message directly (a column's base64 `f64le` aside): json_format
    searches every string for unpaired surrogates, 1.6 s for 60 million characters holding the GIL,
    where setting it takes 30 ms. `for_settings` sets `text` at the longest string any field may hold
    (the expression's limit; a name has 32 characters): a longer one is refused by the API, with the
    error gRPC gives. (Refused here instead, REST answered a long name with LIMIT_EXCEEDED where gRPC
    said it is no valid name, and a long Parse text with a 400: an independent tester. At 16 times
    that limit, 256 strings of 150,000 characters took 2.1 s of json_format's search: an attack
    hunt, 2026-12-05.)"""

    entries: int
    values: int
    text: int

    @classmethod
    def for_settings(cls, max_entries: int, max_points: int, max_expression_length: int) -> Bounds:
        return cls(max_entries, max_points, max_expression_length)


def decode_message(body: bytes, message_type: type[RequestT], bounds: Bounds | None = None) -> RequestT:
    """Parse a proto3 JSON body strictly: malformed JSON, non-objects and unknown fields are 400; a
    list or string past `bounds` is refused before anything walks its entries."""
    if not body.strip():
        return message_type()
    try:
        data = _loads(body, None if bounds is None else bounds.values)
    except UnicodeDecodeError as error:
        raise InvalidArgument(
            f"malformed JSON body: not UTF-8 (byte 0x{error.object[error.start]:02x} at {error.start}); "
            "send the body encoded as UTF-8",
            field="body",
            reason="MALFORMED_JSON",
        ) from None
    except ValueError as error:  # JSONDecodeError
        raise InvalidArgument(
            f"malformed JSON body: {error}", field="body", reason="MALFORMED_JSON"
        ) from None
    except RecursionError:  # its text names the interpreter's limit, not what is wrong with the body
        raise InvalidArgument(
            "malformed JSON body: arrays or objects nested too deeply (a request nests three levels)",
            field="body",
            reason="MALFORMED_JSON",
        ) from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"the body must be a JSON object, not {_JSON_KINDS[type(data)]}",
            field="body",
            reason="MALFORMED_JSON",
        )
    held: list[_Held] = []
    if bounds is not None:
        check_list_entries(data, bounds, held=held)
    violations = check_json_fields(data, cast(Descriptor, message_type.DESCRIPTOR))
    if violations:
        # Bounded: a body of a million bad entries must not become an error of a million lines.
        shown = violations[:MOST_VIOLATIONS]
        raise InvalidArgument(f"invalid request body: {_summary(violations)}", violations=shown)
    message = message_type()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as error:
        # The walk above catches what we know of; json_format stays the authority for the rest.
        field, description = _explain_parse_error(str(error))
        raise InvalidArgument(f"invalid value for '{field}': {description}", field=field) from None
    for text in held:
        text.put_back(message)
    return message


@dataclass(frozen=True)
class _Held:
    """A long string taken out of the decoded JSON (`Bounds.text`), and where it goes: field names
    and list indexes from the message down."""

    steps: tuple[str | int, ...]
    text: str | bytes  # a long base64 column's bytes, decoded
    key: str | None = None  # a long key, `text` its stand-in in the map at `steps`

    def put_back(self, message: Message) -> None:
        if self.key is not None:  # a map's entry under its own key, parsed under a short one
            entries: Any = _at(message, self.steps)
            if isinstance(entries[self.text], Message):
                entries[self.key].CopyFrom(entries[self.text])
            else:
                entries[self.key] = entries[self.text]
            del entries[self.text]
            return
        target = _at(message, self.steps[:-1])
        last = self.steps[-1]
        try:
            if isinstance(last, int):
                target[last] = self.text
            else:
                setattr(target, _field_name(target, last), self.text)
        except UnicodeEncodeError:  # as json_format says it
            where = _path(self.steps)
            raise InvalidArgument(f"invalid value for '{where}': Unpaired surrogate", field=where) from None


_SHOWN_KEY = 64


def _at(message: Message, steps: tuple[str | int, ...]) -> Any:
    """What `steps` lead to from `message`: fields by their JSON keys, list indexes, map keys."""
    target: Any = message
    for step in steps:
        if isinstance(step, int) or not isinstance(target, Message):
            target = target[step]
        else:
            target = getattr(target, _field_name(target, step))
    return target


def shown_key(key: str, start: int = _SHOWN_KEY) -> str:
    """A key as messages show it: its `start`, where it is long (a key of 60 million characters was
    repeated three times in a 180 MB error reply and logged whole; an attack hunt, 2026-12-05)."""
    return key if len(key) <= start else f"{key[:start]}… ({len(key):,} characters)"


def _path(steps: tuple[str | int, ...]) -> str:
    """A field's path as errors name it: `points.x.values`, `wrt[0].variable`."""
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in steps).lstrip(".")


def _field_name(message: Message, key: str) -> str:
    """The field's name for a JSON key (its name or its lowerCamelCase JSON name)."""
    return _field_map(cast(Descriptor, message.DESCRIPTOR))[key].name


def check_list_entries(
    data: dict[str, Any], bounds: Bounds, *, held: list[_Held], steps: tuple[str | int, ...] = ()
) -> None:
    """Refuse decoded JSON with a list of more than `bounds.entries` entries or a points column's
    `values` of more than `bounds.values`; take out every string past `bounds.text` code points into
    `held`, an empty one in its place. wire.py counts a body's members and strings before it is
    decoded, but a list of scalars (`formats`, `variables`, `expressions`) has no members: `formats`
    repeated 4 million times (8 MB) took 13 s of checking and converting each entry to be refused.
    A key past `bounds.text` is replaced by a short stand-in and, in a map, put back once parsed
    (json_format searched a 60-million-character key of `point` for surrogates for 3 s holding the
    GIL; an attack hunt, 2026-12-05); anywhere else it is an unknown field, named by its stand-in.
    The walk visits containers and their strings only, and only lists already within the bound."""
    for index, key in enumerate([key for key in data if len(key) > bounds.text]):
        stand_in = f"{shown_key(key, 24)} #{index}"  # short enough that `shown_key` keeps it whole
        data[stand_in] = data.pop(key)
        held.append(_Held(steps, stand_in, key))
    for key, value in data.items():
        if isinstance(value, dict):
            check_list_entries(value, bounds, held=held, steps=(*steps, key))
        elif isinstance(value, str) and len(value) > bounds.text:
            decoded = _base64_in_pieces(value, _path((*steps, key))) if key == "f64le" else value
            held.append(_Held((*steps, key), decoded))
            data[key] = ""
        elif isinstance(value, list) and key == "values":
            if len(value) > bounds.values:
                raise too_many_points(_path((*steps, key)), len(value), bounds.values)
        elif isinstance(value, list):
            if len(value) > bounds.entries:
                raise too_many_entries(_path((*steps, key)), len(value), bounds.entries)
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    check_list_entries(item, bounds, held=held, steps=(*steps, key, index))
                elif isinstance(item, str) and len(item) > bounds.text:
                    held.append(_Held((*steps, key, index), item))
                    value[index] = ""


def _base64_in_pieces(text: str, where: str) -> bytes:
    """A long base64 string's bytes (standard or URL-safe alphabet, padding optional, as json_format
    reads it), decoded `_BASE64_PIECE` characters at a time; INVALID_ARGUMENT naming `where` if it
    is not base64."""
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if padding > 2 or len(body) % 4 == 1 or (padding and (len(body) + padding) % 4):
        raise _not_base64(where)
    pieces = []
    for start in range(0, len(body), _BASE64_PIECE):
        piece = body[start : start + _BASE64_PIECE].encode("ascii", "replace")
        if piece.translate(None, _BASE64_ALPHABET):
            raise _not_base64(where)
        piece = piece.translate(_URL_SAFE_TO_STANDARD)
        pieces.append(binascii.a2b_base64(piece + b"=" * (-len(piece) % 4)))
    return b"".join(pieces)


def _not_base64(where: str) -> InvalidArgument:
    """As `decode_message` refuses a short column that is not base64."""
    violations = [FieldViolation(where, _NOT_BASE64)]
    return InvalidArgument(f"invalid request body: {_summary(violations)}", violations=violations)


def _summary(violations: Sequence[FieldViolation]) -> str:
    unknown = [f"'{v.field}'" for v in violations if v.description.startswith("unknown field")]
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        return f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])}{more}"
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return f"'{first.field}': {first.description}{more}"


def _field_map(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    fields: dict[str, FieldDescriptor] = {}
    for item in descriptor.fields:
        fields[item.name] = item
        fields[item.json_name] = item
    return fields


def check_json_fields(
    data: Mapping[str, Any], descriptor: Descriptor, path: str = ""
) -> list[FieldViolation]:
    """Every unknown key and every value of the wrong JSON type in `data`, each named by its path.

    json_format stays the authority (it parses afterwards); this walk exists for the caller's sake:
    json_format stops at the first unknown field, names paths loosely, and silently drops bad
    base64 characters.
    """
    known = _field_map(descriptor)
    found: list[FieldViolation] = []
    for key, value in data.items():
        field = known.get(key)
        where = f"{path}.{shown_key(key)}" if path else shown_key(key)
        if field is None:
            found.append(FieldViolation(where, f"unknown field '{shown_key(key)}' in {descriptor.name}"))
        elif value is not None:  # null is the default value in proto3 JSON
            found.extend(_check_field(field, value, where))
    return found


def _check_field(field: FieldDescriptor, value: Any, path: str) -> list[FieldViolation]:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        if not isinstance(value, dict):
            return [FieldViolation(path, "expected an object (a map)")]
        value_field = entry.fields_by_name["value"]
        return [
            v
            for key, item in value.items()
            for v in _check_value(value_field, item, f"{path}.{shown_key(key)}")
        ]
    if field.is_repeated:
        if not isinstance(value, list):
            return [FieldViolation(path, "expected an array")]
        return [v for index, item in enumerate(value) for v in _check_value(field, item, f"{path}[{index}]")]
    return _check_value(field, value, path)


_INTEGER_RANGES: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


def _check_value(field: FieldDescriptor, value: Any, path: str) -> list[FieldViolation]:
    """One singular value (a repeated field's element, a map's value) against the field's type."""
    problem: str | None = None
    cpp = field.cpp_type
    if field.message_type is not None:
        if not isinstance(value, dict):
            return [FieldViolation(path, f"expected an object ({field.message_type.name})")]
        return check_json_fields(value, field.message_type, path)
    if field.type == FieldDescriptor.TYPE_BYTES:
        problem = None if isinstance(value, str) and _is_base64(value) else _NOT_BASE64
    elif cpp == FieldDescriptor.CPPTYPE_STRING:
        problem = None if isinstance(value, str) else "expected a string"
    elif cpp == FieldDescriptor.CPPTYPE_BOOL:
        problem = None if isinstance(value, bool) else "expected true or false"
    elif cpp in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[cpp]
        number = _as_integer(value)
        problem = (
            None if number is not None and low <= number <= high else f"expected an integer {low}..{high}"
        )
    elif cpp in {FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT}:
        problem = _double_problem(value)
    elif cpp == FieldDescriptor.CPPTYPE_ENUM:
        names = [item.name for item in field.enum_type.values] if field.enum_type else []
        low, high = _INTEGER_RANGES[FieldDescriptor.CPPTYPE_INT32]
        number = None if isinstance(value, str) else _as_integer(value)
        valid = value in names if isinstance(value, str) else number is not None and low <= number <= high
        problem = None if valid else f"expected one of {', '.join(names)}"
    return [FieldViolation(path, problem)] if problem else []


def _as_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value):
        return int(value)
    return None


# A number in a string is a JSON number's text (proto3 JSON): not all that Python's float() reads,
# which took "1_5" as 15, an Arabic-Indic digit one as 1 and " 1.5" as 1.5 (an independent tester).
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LARGEST_DOUBLE = int(sys.float_info.max)


def _double_problem(value: Any) -> str | None:
    """What is wrong with `value` as a double field's JSON value, or None."""
    if isinstance(value, str):
        if value in _NON_FINITE:
            return None
        if not _NUMBER_TEXT.fullmatch(value):
            return 'expected a number written as in JSON, "NaN", "Infinity" or "-Infinity"'
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 'expected a finite number, "NaN", "Infinity" or "-Infinity"'
    # An integer numeral is compared as one: float() of one past the range raised OverflowError (a
    # 500); a numeral such as 1e999 reads as inf.
    if abs(value) > _LARGEST_DOUBLE if isinstance(value, int) else math.isinf(value):
        return 'the number is past the largest double (about 1.8e308); for infinity send "Infinity"'
    return None


def _is_base64(value: str) -> bool:
    if not _BASE64.fullmatch(value):
        return False
    try:
        base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    return True


_PARSE_AT = re.compile(r" at (\w+)\.?([\w.\[\]]*)\.*$")
_PARSE_FIELD = re.compile(r"Failed to parse (\w+) field: ")


def _explain_parse_error(text: str) -> tuple[str, str]:
    """json_format's nested message -> (field path, innermost reason), e.g. ('wrt[0].order', ...)."""
    innermost = _PARSE_FIELD.split(text)[-1].rstrip(".")
    located = _PARSE_AT.search(innermost)
    if located and located.group(2):
        field = re.sub(r"\[([A-Za-z_]\w*)\]", r".\1", located.group(2))
    else:
        field = ".".join(_PARSE_FIELD.findall(text)) or "body"
    return field, _PARSE_AT.sub("", innermost)
