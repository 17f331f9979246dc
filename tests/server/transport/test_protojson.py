"""JSON in pieces: long lists are parsed and written a piece at a time, to the same result."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.server.transport import protojson
from chainrule.v1 import chainrule_pb2 as pb

VALUES = np.random.default_rng(7).standard_normal(50_000).tolist()
BOUNDS = protojson.Bounds.for_settings(64, 2_000_000, 10_000)


@pytest.mark.parametrize(
    "data",
    [
        {"expression": "x", "points": {"x": {"values": VALUES}, "y": {"values": [1.0, "NaN", "-Infinity"]}}},
        {"expression": "x", "points": {"x": {"values": []}, "y": {"values": VALUES}}},
        {"expression": "x", "points": {"x": {"f64le": "AAAAAAAA" * 20_000}}},
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
def test_pieces_parse_to_what_json_loads_gives(data: dict[str, object], indent: int | None) -> None:
    body = json.dumps(data, indent=indent).encode()
    assert protojson._loads(body, None) == json.loads(body)


COLUMN = np.random.default_rng(8).standard_normal(300_000).tobytes()


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(COLUMN[:-3]).decode(),
        base64.b64encode(COLUMN[:-3]).decode().rstrip("="),
        base64.urlsafe_b64encode(COLUMN).decode(),
        base64.b64encode(COLUMN[:-1]).decode(),
    ],
    ids=["padded", "unpadded", "url-safe", "one-pad"],
)
def test_a_long_column_is_decoded_in_pieces_to_what_json_format_gives(encoded: str) -> None:
    """A column past `Bounds.text` is decoded a megabyte at a time (one regex, two copies and two
    decodes of a 60 MB column held the GIL up to 120 ms a call), to the same bytes."""
    body = json.dumps({"expression": "x", "points": {"x": {"f64le": encoded}}}).encode()
    pieces = protojson.decode_message(body, pb.EvaluateRequest, BOUNDS)
    whole = pb.EvaluateRequest()
    json_format.Parse(body, whole)
    assert pieces == whole and len(pieces.points["x"].f64le) in {
        len(COLUMN),
        len(COLUMN) - 1,
        len(COLUMN) - 3,
    }


@pytest.mark.parametrize(
    "broken", ["A" * 40_001, "A" * 40_000 + "===", "A" * 20_000 + "*" + "A" * 19_999, "A" * 39_999 + "é"]
)
def test_a_long_column_that_is_not_base64_is_refused_naming_it(broken: str) -> None:
    body = json.dumps({"expression": "x", "points": {"x": {"f64le": broken}}}).encode()
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body, pb.EvaluateRequest, BOUNDS)
    assert caught.value.message == "invalid request body: 'points.x.f64le': expected a base64 string"
    assert [v.field for v in caught.value.violations] == ["points.x.f64le"]


def test_a_body_the_pieces_cannot_explain_falls_back_to_the_plain_parser() -> None:
    nested = b'{"points": {"x": {"values": [[1], 2]}}, "pad": "' + b"a" * 100_000 + b'"}'
    assert protojson._loads(nested, None) == json.loads(nested)
    with pytest.raises(ValueError):
        protojson._loads(b'{"points": {"x": {"values": [1, 2,]}}, "pad": "' + b"a" * 100_000 + b'"}', None)


@pytest.mark.parametrize(
    "body",
    [
        b'{"expression": "x", "expression": "y"}',
        b'{"expression": "x", "point": {"x": 1, "y": 2, "x": 3}}',
        b'{"points": {"x": {"values": [1, 2], "values": [3]}}, "pad": "' + b"a" * 100_000 + b'"}',
    ],
)
def test_a_key_given_twice_in_one_object_is_refused_by_its_name(body: bytes) -> None:
    # json.loads would keep the last silently; json_format's own Parse refuses the same body.
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body, pb.EvaluateRequest)
    assert caught.value.reason == "MALFORMED_JSON"
    assert "appears twice" in caught.value.message
    assert any(f'"{key}"' in caught.value.message for key in ("expression", "x", "values"))


@pytest.mark.parametrize(
    ("body", "byte"),
    [
        ('{"expression": "x^2"}'.encode("utf-16"), "0xff at 0"),  # json.loads read it (a hunt)
        ('{"expression": "x^2"}'.encode("utf-32"), "0xff at 0"),
        (b'{"expression": "x\xe9"}', "0xe9 at 17"),  # Latin-1
    ],
)
def test_a_body_not_in_utf_8_is_refused_as_such(body: bytes, byte: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body, pb.DifferentiateRequest)
    assert caught.value.reason == "MALFORMED_JSON"
    assert f"not UTF-8 (byte {byte})" in caught.value.message


def test_an_integer_of_309_digits_is_read() -> None:
    body = b'{"expression": "x", "point": {"x": 1' + b"0" * 300 + b"}}"
    assert protojson.decode_message(body, pb.EvaluateRequest).point["x"] == 1e300


def test_utf_8_with_a_byte_order_mark_is_read() -> None:
    body = '{"expression": "x²"}'.encode("utf-8-sig")
    assert protojson.decode_message(body, pb.DifferentiateRequest).expression == "x²"


def test_a_numeral_past_the_largest_double_is_named_as_such() -> None:
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(b'{"expression": "x", "point": {"x": 1e999999}}', pb.EvaluateRequest)
    assert "point.x" in caught.value.message and "largest double" in caught.value.message


@pytest.mark.parametrize("sign", ["", "-"])
@pytest.mark.parametrize("digits", [310, 5000])
def test_an_integer_longer_than_any_double_is_refused_by_its_field_before_it_is_converted(
    sign: str, digits: int
) -> None:
    """Past Python's limit its error named sys.set_int_max_str_digits, as malformed JSON (an
    independent attacker); below it, 58 integers of 4,300 digits in a 250 KB body took 7.6 ms of the
    event loop to convert and refuse (an independent hunt, 2026-12-06): past 309 digits no double
    holds one, and it is not converted."""
    body = b'{"expression": "x", "point": {"x": ' + sign.encode() + b"9" * digits + b"}}"
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body, pb.EvaluateRequest)
    assert [v.field for v in caught.value.violations] == ["point.x"]
    assert "largest double" in caught.value.message
    assert "sys." not in caught.value.message and "malformed" not in caught.value.message


def test_a_malformed_big_body_is_still_a_named_error() -> None:
    body = b'{"expression": "x", "points": {"x": {"values": [' + b"1.0," * 50_000 + b"NaN]}}}"
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body, pb.EvaluateRequest)
    assert caught.value.reason == "MALFORMED_JSON"


def test_a_body_nested_past_the_parser_says_so_not_the_interpreter_s_limit() -> None:
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(b"[" * 100_000, pb.EvaluateRequest)
    assert caught.value.reason == "MALFORMED_JSON"
    assert "nested too deeply" in caught.value.message and "recursion" not in caught.value.message


def test_a_reply_with_points_is_written_in_pieces_to_the_same_text() -> None:
    response = pb.GradientAtPointResponse(variables=["x"], values=pb.Array(values=VALUES))
    response.gradients.add().values.extend(VALUES)
    written = protojson.message_to_json(response)
    whole = json_format.MessageToDict(
        response, preserving_proto_field_name=False, always_print_fields_with_no_presence=True
    )
    assert written == protojson.dump(whole)  # the very text one call of the C encoder writes
    assert json.loads(written)["values"]["values"] == VALUES


def test_a_long_list_of_scalars_is_refused_by_its_length_before_its_entries_are_checked() -> None:
    body = b'{"expression":"x","formats":[' + b",".join([b'"nonsense"'] * 1_000) + b"]}"
    with pytest.raises(LimitExceeded) as caught:
        protojson.decode_message(body, pb.DifferentiateRequest, BOUNDS)
    assert caught.value.metadata["limit"] == "field_entries" and caught.value.violations[0].field == "formats"
    columns = b'{"expression":"x","points":{"x":{"values":[' + b",".join([b"1"] * 1_000) + b"]}}}"
    assert len(protojson.decode_message(columns, pb.EvaluateRequest, BOUNDS).points["x"].values) == 1_000


@pytest.mark.parametrize("count", [2_000, 60_000])  # parsed whole, and cut out of a big body
def test_a_column_over_the_points_limit_is_refused_before_its_values_are_converted(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2.6 million listed values took 20 s of converting to be refused (an independent tester)."""

    def converting(*_: object, **__: object) -> None:
        raise AssertionError("the values were converted")

    monkeypatch.setattr(json_format, "ParseDict", converting)
    body = b'{"expression":"x","points":{"x":{"values":[' + b",".join([b"1.5"] * count) + b"]}}}"
    with pytest.raises(LimitExceeded) as caught:
        protojson.decode_message(body, pb.JacobianRequest, protojson.Bounds(64, count - 1, 10_000))
    assert caught.value.metadata["limit"] == "points"
    assert f"{count:,}" in caught.value.message and caught.value.violations[0].field.startswith("points")


@pytest.fixture
def converted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What json_format.ParseDict is given from now on, as JSON text (it still parses)."""
    given: list[str] = []
    parse_dict = json_format.ParseDict

    def converting(data: Any, *args: Any, **kwargs: Any) -> Any:
        given.append(json.dumps(data))
        return parse_dict(data, *args, **kwargs)

    monkeypatch.setattr(json_format, "ParseDict", converting)
    return given


@pytest.mark.parametrize("field", ["expression", "dependent", "around", "variables"])
def test_a_string_far_past_the_expression_limit_is_set_without_json_formats_scan(
    field: str, converted: list[str]
) -> None:
    """json_format searched a 60-million-character expression for unpaired surrogates for 1.6 s,
    holding the GIL from every other call, before the parser refused it (an independent tester);
    refused here instead, REST said LIMIT_EXCEEDED where gRPC said 'not a valid variable name', and
    failed a Parse gRPC answers (another). The API refuses it, as it would over gRPC."""
    length = 10_000 + 1  # past the expression limit, the longest any string may be
    message = {"around": pb.SeriesRequest, "variables": pb.JacobianRequest}.get(
        field, pb.DifferentiateRequest
    )
    value: Any = ["y", "x" * length] if field == "variables" else "x" * length
    body = json.dumps({field: value})
    decoded: Message = protojson.decode_message(body.encode(), message, BOUNDS)
    assert getattr(decoded, field) == value and len(converted[0]) < 100


def test_a_long_key_of_a_map_is_set_without_json_formats_scan(converted: list[str]) -> None:
    """json_format searched a 60-million-character key of `point` for surrogates for 3 s, holding the
    GIL (an attack hunt, 2026-12-05): parsed under a short stand-in, the entry is put back under its
    own key, as gRPC keeps it (an entry the expression does not use is accepted)."""
    key = "k" * (10_000 + 1)
    body = {"expression": "x", "point": {key: 1.5, "x": 2.0}, "points": {key: {"values": [3.0]}}}
    decoded = protojson.decode_message(json.dumps(body).encode(), pb.EvaluateRequest, BOUNDS)
    assert dict(decoded.point) == {key: 1.5, "x": 2.0}
    assert list(decoded.points) == [key] and list(decoded.points[key].values) == [3.0]
    assert len(converted[0]) < 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{{"{key}": 1}}', "{shown}"),  # an unknown field
        ('{{"expression": "x", "point": {{"{key}": "one"}}}}', "point.{shown}"),  # a bad value
        ('{{"expression": "x", "point": {{"{key}": 1, "{key}": 2}}}}', "body"),  # a key given twice
    ],
)
def test_a_long_key_is_named_by_its_start(body: str, field: str) -> None:
    """A key of 60 million characters was repeated three times in a 180 MB error reply, and logged
    whole (an attack hunt, 2026-12-05): an error names a long key by its start and its length."""
    key = "k" * 1_000_000
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body.format(key=key).encode(), pb.EvaluateRequest, BOUNDS)
    shown = f"{'k' * 24}… (1,000,000 characters) #0"
    assert caught.value.violations[0].field == field.format(shown=shown)
    assert "1,000,000 characters" in caught.value.message and len(caught.value.message) < 300


def test_a_long_string_with_a_lone_surrogate_is_refused_by_its_field() -> None:
    body = json.dumps({"expressions": ["x", "x" * 160_001 + "\ud800"]})  # the escape \\ud800 in JSON
    with pytest.raises(InvalidArgument) as caught:
        protojson.decode_message(body.encode(), pb.JacobianRequest, BOUNDS)
    assert caught.value.violations[0].field == "expressions[1]" and "surrogate" in caught.value.message


def test_a_text_the_parser_refuses_with_its_position_is_left_to_the_parser() -> None:
    body = json.dumps({"expression": "x+" * 6_000 + "x"}).encode()
    assert len(protojson.decode_message(body, pb.DifferentiateRequest, BOUNDS).expression) == 12_001


@pytest.mark.parametrize(
    "reply",
    [
        pb.EvaluateResponse(
            values=pb.Array(values=[1.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1e300])
        ),
        pb.EvaluateResponse(values=pb.Array(f64le=b"12345678"), nonfinite_count=2),
        pb.EvaluateResponse(values=pb.Array()),
        pb.GradientAtPointResponse(
            variables=["x", "y"],
            values=pb.Array(values=[0.5] * 5000),
            gradients=[pb.Array(values=[math.nan] * 4097), pb.Array(f64le=b"")],
        ),
        pb.JacobianResponse(
            variables=["x"], value_arrays=[pb.Array(f64le=b"12345678"), pb.Array(values=[2.0])]
        ),
    ],
    ids=["values", "f64le", "empty", "gradient", "jacobian"],
)
def test_columns_listed_by_numpy_read_as_json_format_writes_them(reply: Message) -> None:
    # json_format converts a double at a time in Python, holding the interpreter's lock for 0.43 s
    # over 1.3 million; numpy lists them, and the text is the same, key for key.
    written = json_format.MessageToDict(
        reply, preserving_proto_field_name=False, always_print_fields_with_no_presence=True
    )
    assert protojson.message_to_json(reply) == protojson.dump(written)
