"""REST/JSON transport: curl-like examples, and every bad-HTTP case with its exact status and Status body.

Most tests talk to the real server of conftest over loopback, as curl would. The ones that need an API
which fails on purpose, a small body limit or CORS build the ASGI app around a fake API instead.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from chainrule.engine import errors, explain
from chainrule.server.app import Application
from chainrule.server.compute.executors import CallLimit
from chainrule.server.metrics import HttpMetrics
from chainrule.server.sizing import PROTOBUF_WIRE, Wire
from chainrule.server.transport import openapi, protojson, rest
from chainrule.server.transport.http_server import bind_socket, create_http_app
from chainrule.server.transport.status import HTTP_STATUS
from chainrule.v1 import chainrule_pb2 as pb
from tests.conftest import bytes_left_behind, make_settings, post_never_reading, threads_calling

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="session")
async def client(app: Application) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=30) as opened:
        yield opened


def details(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A google.rpc.Status JSON body's details by type name (`BadRequest`, `ErrorInfo`, ...)."""
    return {item["@type"].rsplit(".", 1)[-1]: item for item in body.get("details", [])}


def violation_fields(body: dict[str, Any]) -> list[str]:
    return [v["field"] for v in details(body).get("BadRequest", {}).get("fieldViolations", [])]


def assert_status(
    response: httpx.Response,
    http_status: int,
    code: errors.Code,
    reason: str,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """The response is a google.rpc.Status JSON body with this code, ErrorInfo reason and violations."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["message"]
    info = details(body)["ErrorInfo"]
    assert info["reason"] == reason and info["domain"] == errors.ERROR_DOMAIN
    if fields is not None:
        assert violation_fields(body) == fields
    return body


# --- curl-like examples --------------------------------------------------------------------------


async def test_post_differentiate_with_latex(client: httpx.AsyncClient) -> None:
    # curl -s localhost:8080/v1/differentiate -H 'content-type: application/json' \
    #      -d '{"expression": "sin(x^2)", "formats": ["OUTPUT_FORMAT_LATEX"]}'
    body = {"expression": "sin(x^2)", "formats": ["OUTPUT_FORMAT_LATEX"]}
    response = await client.post("/v1/differentiate", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    reply = response.json()
    # Fields without presence are always printed (empty when not asked for); `check` has presence.
    assert set(reply) == {"derivative", "latex", "variables", "steps", "mathml", "code"}
    assert "cos(x^2)" in reply["derivative"] and "\\cos" in reply["latex"]
    assert reply["variables"] == ["x"]


async def test_get_differentiate_from_the_query_string(client: httpx.AsyncClient) -> None:
    # curl -s 'localhost:8080/v1/differentiate?expression=x^3*y^2&wrt=x:2&wrt=y&latex=true'
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("expression", "x^3*y^2"),
        ("wrt", "x:2"),
        ("wrt", "y"),
        ("latex", "true"),
    ]
    response = await client.get("/v1/differentiate", params=params)
    assert response.status_code == 200, response.text
    post = await client.post(
        "/v1/differentiate",
        json={
            "expression": "x^3*y^2",
            "wrt": [{"variable": "x", "order": 2}, {"variable": "y"}],
            "formats": ["OUTPUT_FORMAT_LATEX"],
        },
    )
    assert response.json() == post.json()
    assert response.json()["latex"]


async def test_get_differentiate_explain_and_verify_as_post(client: httpx.AsyncClient) -> None:
    # curl -s 'localhost:8080/v1/differentiate?expression=sin(x^2)&explain=true&verify=1'
    response = await client.get(
        "/v1/differentiate", params={"expression": "sin(x^2)", "explain": "true", "verify": "1"}
    )
    assert response.status_code == 200, response.text
    body = {"expression": "sin(x^2)", "explain": True, "verify": True}
    post = await client.post("/v1/differentiate", json=body)
    assert response.json() == post.json()
    assert response.json()["steps"] and response.json()["check"]


async def test_get_differentiate_implicitly_as_post(client: httpx.AsyncClient) -> None:
    # curl -s 'localhost:8080/v1/differentiate?expression=x^2%2By^2=25&wrt=x:2&dependent=y'
    params = {"expression": "x^2 + y^2 = 25", "wrt": "x:2", "dependent": "y"}
    response = await client.get("/v1/differentiate", params=params)
    assert response.status_code == 200, response.text
    body = {"expression": "x^2 + y^2 = 25", "wrt": [{"variable": "x", "order": 2}], "dependent": "y"}
    post = await client.post("/v1/differentiate", json=body)
    assert response.json() == post.json()
    assert response.json()["derivative"] == "-(x^2 + y^2)/y^3"


async def test_get_differentiate_simplification_names(client: httpx.AsyncClient) -> None:
    for name in ("none", "FULL", "simplification_fast"):
        response = await client.get("/v1/differentiate", params={"expression": "x^2", "simplification": name})
        assert response.status_code == 200, (name, response.text)


GET_QUERY_ERRORS = [
    ({"expression": "x", "colour": "red"}, ["colour"], "unknown parameters are named"),
    ({"expression": "x", "wrt": ["x", "y:two"]}, ["wrt[1].order"], "order must be a whole number"),
    ({"expression": "x", "wrt": "x:99999999999"}, ["wrt[0].order"], "order must fit uint32"),
    ({"expression": "x", "latex": "maybe"}, ["latex"], "latex is a boolean"),
    ({"expression": "x", "explain": "please"}, ["explain"], "explain is a boolean"),
    ({"expression": "x", "verify": "2"}, ["verify"], "verify is a boolean"),
    ({"expression": "x", "simplification": "lots"}, ["simplification"], "simplification is a name"),
    ({"expression": ["x", "y"]}, ["expression"], "expression given twice"),
    ({"expression": "x", "wrt": "x:²"}, ["wrt[0].order"], "a superscript is a digit to isdigit, not to int"),
    ({"expression": "x", "wrt": "x:٣"}, ["wrt[0].order"], "an Arabic-Indic digit likewise"),
    ({"expression": "x", "wrt": "x:"}, ["wrt[0].order"], "a colon with no order was read as order 1"),
    ({"expression": "x", "": "1"}, ["query"], "a parameter with no name named no field"),
]


@pytest.mark.parametrize("query", ["expression=%ff%fe", "expression=x&wrt=%c3", "expression=x%e9"])
async def test_get_differentiate_query_that_is_not_utf8(client: httpx.AsyncClient, query: str) -> None:
    """Starlette read the bytes as U+FFFD and the parser named an "unexpected character '\ufffd'"."""
    response = await client.get(f"/v1/differentiate?{query}")
    body = assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "not UTF-8" in body["message"] and "\ufffd" not in body["message"]


@pytest.mark.parametrize(("params", "fields", "reason"), GET_QUERY_ERRORS)
async def test_get_differentiate_bad_query(
    client: httpx.AsyncClient, params: dict[str, Any], fields: list[str], reason: str
) -> None:
    response = await client.get("/v1/differentiate", params=params)
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", fields)


async def test_many_unknown_query_parameters_are_counted_not_listed(client: httpx.AsyncClient) -> None:
    # 2,500 names made a 148 KB error, 21 ms of the event loop each (an independent attacker).
    names = [f"a{k}" for k in range(2_500)]
    response = await client.get("/v1/info?" + "&".join(names))
    fields = sorted(names)[: errors.MOST_VIOLATIONS]
    body = assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", fields)
    assert "and 2,484 more" in body["message"] and len(response.content) < 4_096


async def test_evaluate_many_points_lists_and_nonfinite_strings(client: httpx.AsyncClient) -> None:
    # curl -s localhost:8080/v1/evaluate -H 'content-type: application/json' \
    #      -d '{"expression": "log(x)", "points": {"x": {"values": [-1, 1, "Infinity"]}}}'
    body = {"expression": "log(x)", "points": {"x": {"values": [-1, 1, "Infinity"]}}}
    response = await client.post("/v1/evaluate", json=body)
    assert response.status_code == 200
    reply = response.json()
    assert reply["values"]["values"] == ["NaN", 0.0, "Infinity"]
    assert reply["nonfiniteCount"] == "2"  # uint64 is a string in proto3 JSON
    assert "value" not in reply  # optional and unset: many points, not one


async def test_a_big_reply_is_encoded_in_the_callers_share_of_the_numeric_threads(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Encoding a big reply as JSON holds the GIL: on plain threads, sixteen connections of one
    # address asking for a cached 16 MB reply kept every other caller's health check waiting over a
    # second (an independent attacker). On the numeric threads, behind their fair admission, one
    # caller encodes at most its share at a time.
    threads = threads_calling(monkeypatch, rest, "message_to_json")
    body = {"expression": "x^2", "points": {"x": {"values": list(range(40_000))}}}
    response = await client.post("/v1/evaluate", json=body)
    assert response.status_code == 200
    assert len(threads) == 1 and threads[0].startswith("numeric"), threads


async def test_a_big_body_is_decoded_in_the_callers_share_of_the_numeric_threads(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decoding holds the GIL too: on asyncio's own threads, shared by every caller, eight 10 MB
    # bodies of one address kept another caller's 0.4 MB Evaluate waiting 8.5 s (an attack hunt).
    threads = threads_calling(monkeypatch, rest, "decode_message")
    body = {"expression": "x^2", "points": {"x": {"values": [k + 0.5 for k in range(60_000)]}}}  # 480 KB
    response = await client.post("/v1/evaluate", json=body)
    assert response.status_code == 200
    assert len(threads) == 1 and threads[0].startswith("numeric"), threads


@pytest.mark.parametrize(
    ("values", "off_loop"), [(3 * rest.INLINE_JSON_VALUES, True), (rest.INLINE_JSON_VALUES // 2, False)]
)
async def test_a_body_of_many_short_values_is_decoded_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, values: int, off_loop: bool
) -> None:
    # Decoding costs by the value, not by the byte: 256 KiB of `1,` (130,000 values, under the
    # bytes a body may have on the loop) held it 200 ms a body (an independent attacker, 2026-12-06).
    threads = threads_calling(monkeypatch, rest, "decode_message")
    body = {"expression": "y", "points": {"x": {"values": [1] * values}}}
    response = await client.post("/v1/evaluate", json=body)
    assert response.status_code == 400 and "MISSING_VARIABLE" in response.text
    assert len(json.dumps(body)) < rest.OFFLOAD_BYTES
    assert len(threads) == 1 and threads[0].startswith("numeric") is off_loop, threads


async def test_evaluate_f64le_base64_round_trip(client: httpx.AsyncClient) -> None:
    raw = struct.pack("<3d", 1.0, 2.0, 3.0)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        body = {"expression": "x^2", "points": {"x": {"f64le": encode(raw).decode()}}}
        response = await client.post("/v1/evaluate", json=body)
        assert response.status_code == 200, response.text
        values = struct.unpack("<3d", base64.b64decode(response.json()["values"]["f64le"]))
        assert values == (1.0, 4.0, 9.0)


@pytest.mark.parametrize(
    ("ending", "timeout", "status"),
    [("answered", None, 200), ("out of time", "50m", 504), ("refused in numeric work", None, 400)],
    ids=["answered", "out of time", "refused in numeric work"],
)
async def test_a_finished_call_leaves_nothing_for_the_garbage_collector(
    app: Application, ending: str, timeout: str | None, status: int
) -> None:
    """As over gRPC (test_grpc_server.py): with the cyclic collector off, ten finished 2 MB calls
    hold no request body or reply, answered, out of time in a cold parse (each a new expression:
    its error is shared by the single flight's waiters), or refused while their points are read
    (no column for y: ten held 47 MB, an independent tester). A bare HTTP/1.1 client: httpx's own
    requests and responses are reference cycles, which this would count."""
    raw = np.linspace(0, 1, 250_000).tobytes()
    points = {"x": {"f64le": base64.b64encode(raw).decode()}}
    costly = " + ".join(f"sin({k}*x)^2" for k in range(1, 80))
    calls = itertools.count()
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    expressions = {"answered": lambda: "x + 1", "refused in numeric work": lambda: "x + y"}

    async def call() -> None:
        expression = expressions.get(ending, lambda: f"{costly} + {next(calls)}*x")()
        body = json.dumps({"expression": expression, "points": points})
        head = "POST /v1/evaluate HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        head += "" if timeout is None else f"grpc-timeout: {timeout}\r\n"
        writer.write(f"{head}content-length: {len(body)}\r\n\r\n{body}".encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer
        length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)

    try:
        held = await bytes_left_behind(call)
    finally:
        writer.close()
    assert held < 3_000_000, f"{held:,} bytes held after the calls"


async def test_a_grpc_timeout_stops_numeric_work_as_a_grpc_deadline_does(client: httpx.AsyncClient) -> None:
    """Over gRPC a deadline ends the call whatever computes it; over REST numeric work on a thread
    went on to its end (a 1 s grpc-timeout answered 429 after 3.2 s; tester round 5). Every point
    here overflows float64, so the whole batch is computed again in long double: far past 100 ms."""
    expression = " + ".join(f"log(1 + (x + {k})^2)" for k in range(40))
    warm = await client.post("/v1/evaluate", json={"expression": expression, "point": {"x": 1.0}})
    assert warm.status_code == 200, warm.text  # compiled and cached: what follows is numeric work only
    raw = np.full(200_000, 1e200).tobytes()
    body = {"expression": expression, "points": {"x": {"f64le": base64.b64encode(raw).decode()}}}
    response = await client.post("/v1/evaluate", json=body, headers={"grpc-timeout": "100m"})
    assert response.status_code == 504, response.text
    assert details(response.json())["ErrorInfo"]["reason"] == "DEADLINE_EXCEEDED"


async def test_evaluate_one_point_zero_is_present(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/evaluate", json={"expression": "sin(x)", "point": {"x": 0}})
    assert response.json() == {"value": 0.0, "nonfiniteCount": "0"}


async def test_gradient_with_hessian(client: httpx.AsyncClient) -> None:
    body = {"expression": "x^2 y", "point": {"x": 3, "y": 2}, "hessian": True}
    response = await client.post("/v1/gradient", json=body)
    reply = response.json()
    assert reply["variables"] == ["x", "y"]
    assert reply["value"] == 18.0
    assert reply["gradient"] == [12.0, 9.0]
    assert reply["hessian"] == [4.0, 6.0, 6.0, 0.0]


async def test_info(client: httpx.AsyncClient) -> None:
    # curl -s localhost:8080/v1/info
    response = await client.get("/v1/info")
    reply = response.json()
    assert reply["version"]
    assert "sin" in reply["functions"]
    assert "OUTPUT_FORMAT_LATEX" in reply["outputFormats"]  # lowerCamelCase keys, enum names


async def test_empty_body_is_the_empty_message(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/differentiate")
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "PARSE_ERROR", ["expression"])


def test_both_field_spellings_are_accepted() -> None:
    camel = protojson.decode_message(b'{"outputFormats": ["OUTPUT_FORMAT_TEXT"]}', pb.GetServerInfoResponse)
    snake = protojson.decode_message(b'{"output_formats": ["OUTPUT_FORMAT_TEXT"]}', pb.GetServerInfoResponse)
    assert camel == snake == pb.GetServerInfoResponse(output_formats=[pb.OUTPUT_FORMAT_TEXT])


async def test_api_errors_carry_the_same_status_as_grpc(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/differentiate", json={"expression": "foo(x)"})
    body = assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "UNKNOWN_FUNCTION", ["expression"])
    assert details(body)["ErrorInfo"]["metadata"]["position"] == "0"


# --- bad HTTP ------------------------------------------------------------------------------------

BAD_BODIES = [
    (b"{bad", "MALFORMED_JSON", ["body"], "malformed JSON"),
    (b"[1, 2]", "MALFORMED_JSON", ["body"], "not an object"),
    (b'{"expression": NaN}', "MALFORMED_JSON", ["body"], "NaN is not JSON"),
    (b"[" * 100_000, "LIMIT_EXCEEDED", ["body"], "more arrays than a request has, counted before parsing"),
    (b'{"expression": "\xff"}', "MALFORMED_JSON", ["body"], "not UTF-8"),
    (b'{"expression": "x", "colour": 1, "wrt": [{"variable": "x", "sign": 1}]}', "INVALID_ARGUMENT",
     ["colour", "wrt[0].sign"], "every unknown field, by path"),
    (b'{"expression": 5}', "INVALID_ARGUMENT", ["expression"], "wrong type"),
    (b'{"expression": "x", "wrt": [{"variable": "x", "order": -1}]}', "INVALID_ARGUMENT", ["wrt[0].order"],
     "negative uint32"),
    (b'{"expression": "x", "wrt": {"variable": "x"}}', "INVALID_ARGUMENT", ["wrt"], "an array is needed"),
    (b'{"expression": "x", "simplification": "SIMPLIFICATION_BEST"}', "INVALID_ARGUMENT", ["simplification"],
     "unknown enum name"),
    (b'{"expression": "x", "formats": [1099511627776]}', "INVALID_ARGUMENT", ["formats[0]"],
     "an enum number past int32"),
    # protobuf refused the Status naming it (UnicodeEncodeError): a plain 500 (an independent hunt)
    (b'{"expression": "x", "\\ud800": 1, "wrt": [{"\\udfff": 1}]}', "INVALID_ARGUMENT",
     ["\\ud800", "wrt[0].\\udfff"], "a lone surrogate in an unknown key, escaped"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "reason", "fields", "why"), BAD_BODIES)
async def test_bad_bodies_are_400_naming_the_field(
    client: httpx.AsyncClient, body: bytes, reason: str, fields: list[str], why: str
) -> None:
    response = await client.post("/v1/differentiate", content=body, headers=JSON)
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, reason, fields)


BAD_EVALUATE_BODIES = [
    (
        {"expression": "x", "points": {"x": {"f64le": "!!!!"}}},
        ["points.x.f64le"],
        "bad base64 is not dropped",
    ),
    ({"expression": "x", "points": {"x": {"values": [1, "one"]}}}, ["points.x.values[1]"], "not a number"),
    ({"expression": "x", "point": {"x": 1e400}}, ["point.x"], "overflows to infinity"),
    ({"expression": "x", "points": {"x": 5}}, ["points.x"], "map value must be an object"),
    # An integer numeral past the largest double: float() of it raised OverflowError, a 500.
    ({"expression": "x", "point": {"x": 10**309}}, ["point.x"], "an integer past the doubles"),
    ({"expression": "x", "points": {"x": {"values": [1, -(10**320)]}}}, ["points.x.values[1]"], "negative"),
    # A number in a string is JSON's numeral: float() read "1_5" as 15 and an Arabic-Indic one as 1.
    ({"expression": "x", "point": {"x": "1_5"}}, ["point.x"], "digit separator"),
    ({"expression": "x", "point": {"x": "\u0661"}}, ["point.x"], "a digit that is not ASCII"),
    ({"expression": "x", "point": {"x": " 1.5"}}, ["point.x"], "space"),
    ({"expression": "x", "point": {"x": "1e999"}}, ["point.x"], "a string past the doubles"),
]


@pytest.mark.parametrize(("body", "fields", "why"), BAD_EVALUATE_BODIES)
async def test_bad_evaluate_bodies(
    client: httpx.AsyncClient, body: dict[str, Any], fields: list[str], why: str
) -> None:
    content = json.dumps(body).replace("Infinity", "1e400").encode()
    response = await client.post("/v1/evaluate", content=content, headers=JSON)
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", fields)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/differentiate", content=b'{"expression": "x"}', headers=headers)
    assert_status(response, 415, errors.Code.INVALID_ARGUMENT, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "headers",
    [
        [("content-type", "text/plain"), ("content-type", "application/json")],
        [("content-type", "application/json"), ("content-type", "text/plain")],
        [("content-type", "application/json; charset=utf-8; charset=latin1")],
    ],
)
async def test_two_content_types_are_415_whichever_comes_first(
    client: httpx.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    """The first was read: text/plain then application/json was 415, the reverse 200 (a tester)."""
    response = await client.post("/v1/differentiate", content=b'{"expression": "x"}', headers=headers)
    assert_status(response, 415, errors.Code.INVALID_ARGUMENT, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
async def test_json_content_types_are_accepted(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/v1/differentiate", content=b'{"expression": "x^2"}', headers={"content-type": content_type}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/evaluate", "POST"),
        ("PUT", "/v1/differentiate", "GET, HEAD, POST"),
        ("POST", "/v1/info", "GET, HEAD"),
    ],
)
async def test_wrong_method_is_405(client: httpx.AsyncClient, method: str, path: str, allow: str) -> None:
    response = await client.request(method, path)
    assert_status(response, 405, errors.Code.UNIMPLEMENTED, "METHOD_NOT_ALLOWED")
    assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/differentiate")
    assert_status(response, 404, errors.Code.NOT_FOUND, "ROUTE_NOT_FOUND")


async def test_a_grpc_client_at_the_rest_port_is_told_where_grpc_is(app: Application) -> None:
    # HTTP/2's preface reads as a request PRI *: its 404 said only "no route" (an independent attacker).
    status, _, body, _ = await _raw_exchange(app.http_port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert status == 404 and "send gRPC to the gRPC port" in json.loads(body)["message"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/differentiate/"), ("GET", "/v1/info/?a=b")])
async def test_a_trailing_slash_is_404_not_a_redirect(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    """Starlette redirected it (307, empty body) to a Location built from the Host header."""
    response = await client.request(
        method, path, headers={**JSON, "host": "elsewhere.example"}, content=b"{}"
    )
    body = assert_status(response, 404, errors.Code.NOT_FOUND, "ROUTE_NOT_FOUND")
    route = path.split("?", maxsplit=1)[0].rstrip("/")
    assert "location" not in response.headers and f"did you mean {route}?" in body["message"]


@pytest.mark.parametrize("path", ["/v1%2Fdifferentiate", "/v1%2fevaluate"])
async def test_an_encoded_slash_is_no_route(client: httpx.AsyncClient, path: str) -> None:
    """Decoded, it was served as /v1/differentiate, a route a proxy in front judged as another."""
    request = client.build_request("POST", "/v1/differentiate", content=b'{"expression": "x"}', headers=JSON)
    request.url = request.url.copy_with(raw_path=path.encode())
    response = await client.send(request)
    assert_status(response, 404, errors.Code.NOT_FOUND, "ROUTE_NOT_FOUND")


async def test_a_big_body_names_its_mistake_as_a_small_one_does(client: httpx.AsyncClient) -> None:
    """A body past 64 KiB is parsed in pieces; a "]" inside a string cut a list early, and valid JSON
    was called malformed (an independent tester)."""
    values = ",".join(["1"] * 40_000)
    content = ('{"expression": "x", "points": {"x": {"values": [' + values + ', "1]"]}}}').encode()
    response = await client.post("/v1/evaluate", content=content, headers=JSON)
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["points.x.values[40000]"])
    stray = ('{"expression": "x", "points": {"x": {"values": [' + values + ",]}}}").encode()
    response = await client.post("/v1/evaluate", content=stray, headers=JSON)
    body = assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "MALFORMED_JSON")
    assert f"(char {len(stray) - 4})" in body["message"]


async def test_query_parameters_on_post_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/differentiate?expression=x", json={"expression": "x"})
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["expression"])


# --- body limit: a server with a 1 KiB limit -----------------------------------------------------


@pytest.fixture(scope="module")
async def small(app: Application) -> AsyncIterator[httpx.AsyncClient]:
    limited = Application(make_settings(max_request_bytes=1024, compute_threads=1))
    await limited.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{limited.http_port}", timeout=30) as opened:
        yield opened
    await limited.stop()


def padded(size: int) -> bytes:
    """A valid DifferentiateRequest of exactly `size` bytes (JSON whitespace as padding)."""
    body = b'{"expression": "x^2"}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_body_at_the_limit_is_served(small: httpx.AsyncClient) -> None:
    response = await small.post("/v1/differentiate", content=padded(1024), headers=JSON)
    assert response.status_code == 200


async def test_content_length_over_the_limit_is_413(small: httpx.AsyncClient) -> None:
    response = await small.post("/v1/differentiate", content=padded(1025), headers=JSON)
    body = assert_status(response, 413, errors.Code.INVALID_ARGUMENT, "LIMIT_EXCEEDED", ["body"])
    assert details(body)["ErrorInfo"]["metadata"] == {
        "limit": "request_bytes",
        "value": "1025",
        "maximum": "1024",
    }


async def test_chunked_body_over_the_limit_is_413_while_streaming(small: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: only counting the stream can catch this body.
        for _ in range(4):
            yield b" " * 400

    response = await small.post("/v1/differentiate", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_status(response, 413, errors.Code.INVALID_ARGUMENT, "LIMIT_EXCEEDED", ["body"])


# --- a fake API, for errors the real one does not raise on demand --------------------------------


class FailingApi:
    """Raises whatever it is told to from every RPC."""

    def __init__(self, error: BaseException, cors_origins: str = "") -> None:
        self.settings = make_settings(cors_origins=cors_origins)
        self.error = error
        self.calls = CallLimit(
            self.settings.calls_in_flight,
            self.settings.request_bytes_in_flight,
            self.settings.retry_after_seconds,
        )

    async def differentiate(self, request: pb.DifferentiateRequest, wire: Wire = PROTOBUF_WIRE) -> Any:
        raise self.error

    evaluate = gradient = jacobian = series = server_info = parse = differentiate


def fake_client(api: FailingApi, registry: CollectorRegistry | None = None) -> httpx.AsyncClient:
    registry = registry or CollectorRegistry()
    application = create_http_app(registry, lambda: True, api=api, http_metrics=HttpMetrics(registry))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test")


MAPPED = [
    (errors.ResourceExhausted("busy", retry_after_seconds=2), 429, "RESOURCE_EXHAUSTED"),
    (errors.Unavailable("draining"), 503, "UNAVAILABLE"),
    (errors.DeadlineExceeded("too slow"), 504, "DEADLINE_EXCEEDED"),
    (errors.NotFound("nothing"), 404, "NOT_FOUND"),
    (errors.Unauthenticated("who?"), 401, "UNAUTHENTICATED"),
    (errors.FailedPrecondition("not here"), 400, "FAILED_PRECONDITION"),
]


@pytest.mark.parametrize(("error", "http_status", "reason"), MAPPED)
async def test_api_errors_use_the_one_mapping_table(
    error: errors.ChainruleError, http_status: int, reason: str
) -> None:
    assert HTTP_STATUS[error.code] == http_status
    async with fake_client(FailingApi(error)) as client:
        response = await client.post("/v1/evaluate", json={})
    body = assert_status(response, http_status, error.code, reason)
    assert body["message"] == error.message
    if error.retry_after_seconds is not None:
        assert response.headers["retry-after"] == "2"
        assert "RetryInfo" in details(body)


async def test_a_bug_is_a_bare_500_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with fake_client(FailingApi(RuntimeError("secret database password"))) as client:
        with caplog.at_level(logging.ERROR, logger="chainrule.server.transport.rest"):
            response = await client.post("/v1/gradient", json={"expression": "x"})
    body = assert_status(response, 500, errors.Code.INTERNAL, "INTERNAL")
    assert body["message"] == "internal error"
    assert "secret" not in response.text
    assert any(r.exc_info and "secret database password" in str(r.exc_info[1]) for r in caplog.records)


async def test_an_internal_error_raised_with_details_is_told_as_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The steps' self-check raised one with both formulas; REST and gRPC sent them on (an
    # independent hunt), where the caller is told nothing of a bug. The access line keeps them.
    mismatch = explain.StepsMismatchError("the explanation does not end in", metadata={"derivative": "2*x"})
    async with fake_client(FailingApi(mismatch)) as client:
        with caplog.at_level(logging.INFO):
            response = await client.post("/v1/differentiate", json={"expression": "x^2", "explain": True})
    body = assert_status(response, 500, errors.Code.INTERNAL, "INTERNAL")
    assert body["message"] == "internal error" and "2*x" not in response.text
    assert any("does not end in" in record.getMessage() for record in caplog.records)


# --- CORS ----------------------------------------------------------------------------------------

ORIGIN = "https://app.example"


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/info", headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        "/v1/evaluate", headers={"origin": ORIGIN, "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 405


async def test_cors_allows_configured_origins_only() -> None:
    async with fake_client(
        FailingApi(errors.NotFound("x"), cors_origins=f"{ORIGIN}, http://localhost:3000")
    ) as c:
        ok = await c.options(
            "/v1/evaluate",
            headers={"origin": ORIGIN, "access-control-request-method": "POST",
                     "access-control-request-headers": "content-type"},
        )  # fmt: skip
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ORIGIN
        simple = await c.get("/v1/info", headers={"origin": "http://localhost:3000"})
        assert simple.headers["access-control-allow-origin"] == "http://localhost:3000"
        refused = await c.get("/v1/info", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in refused.headers


# --- metrics -------------------------------------------------------------------------------------


async def test_http_metrics_count_by_route_template_and_status() -> None:
    registry = CollectorRegistry()
    async with fake_client(FailingApi(errors.Unavailable("draining")), registry) as client:
        await client.post("/v1/evaluate", json={})
        await client.post("/v1/evaluate", json={})
        await client.get("/v1/evaluate")
        await client.get("/no/such/page")
        await client.request("BREW", "/v1/evaluate")

    def count(method: str, route: str, status: str) -> float | None:
        labels = {"method": method, "route": route, "status": status}
        return registry.get_sample_value("chainrule_http_requests_total", labels)

    assert count("POST", "/v1/evaluate", "503") == 2.0
    assert count("GET", "/v1/evaluate", "405") == 1.0
    assert count("GET", "unmatched", "404") == 1.0
    assert count("OTHER", "/v1/evaluate", "405") == 1.0
    latency = {"method": "POST", "route": "/v1/evaluate"}
    assert registry.get_sample_value("chainrule_http_request_seconds_count", latency) == 2.0


# --- the OpenAPI document ------------------------------------------------------------------------


async def test_openapi_document_covers_every_route(client: httpx.AsyncClient, app: Application) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    routes = create_http_app(CollectorRegistry(), lambda: True, api=app.api).routes
    served = {
        (route.path, method.lower())
        for route in routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    documented = {(path, verb) for path, item in document["paths"].items() for verb in item}
    rpc_routes = {("/v1/differentiate", "post"), ("/v1/evaluate", "post"), ("/v1/gradient", "post"),
                  ("/v1/info", "get"), ("/v1/differentiate", "get"), ("/v1/parse", "post")}  # fmt: skip
    assert rpc_routes <= documented
    assert served <= documented


def test_schemas_follow_the_descriptors() -> None:
    document = openapi.build_openapi("test")
    schemas = document["components"]["schemas"]
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        properties = schemas[message.name]["properties"]
        assert set(properties) == {field.json_name for field in message.fields}, message.name
    assert schemas["EvaluateResponse"]["properties"]["nonfiniteCount"]["type"] == "string"
    assert schemas["Array"]["properties"]["f64le"]["format"] == "byte"
    assert schemas["EvaluateRequest"]["properties"]["point"]["type"] == "object"
    wrt = schemas["Wrt"]["properties"]["order"]
    assert wrt["maximum"] == 2**32 - 1
    assert "0 means 1" in wrt["description"]  # the proto comment


def test_proto_comments_are_read_per_scope() -> None:
    source = """
    // The service.
    service S {
      // Do it.
      rpc Do(A) returns (A) {
        option (google.api.http) = {get: "/a"};
      }
    }
    // A message.
    message A {
      // A field.
      map<string, double> point = 2;
      // After a map.
      optional double value = 3;
    }
    """
    assert openapi.proto_comments(source) == {
        "S": "The service.",
        "S.Do": "Do it.",
        "A": "A message.",
        "A.point": "A field.",
        "A.value": "After a map.",
    }


def test_error_for_a_huge_bad_body_stays_small() -> None:
    body = json.dumps({"points": {f"v{i}": {"bad": 1} for i in range(1000)}}).encode()
    with pytest.raises(errors.InvalidArgument) as caught:
        protojson.decode_message(body, pb.EvaluateRequest)
    assert len(caught.value.violations) == errors.MOST_VIOLATIONS
    assert caught.value.message.endswith("(and 995 more)")
    assert len(caught.value.message) < 200


async def test_accepted_connections_have_nagle_off() -> None:
    # Kept-alive connections (every HTTP client's pool) wait ~40 ms a reply when Nagle meets delayed
    # ACKs; asyncio turns Nagle off only on sockets made with proto IPPROTO_TCP.
    nodelay: list[int] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=bind_socket("127.0.0.1", 0))
    async with server:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if nodelay:
                break
            await asyncio.sleep(0.01)
        writer.close()
    assert nodelay and nodelay[0] != 0


async def _eventually(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_reply_counts_in_the_bytes_in_flight_until_it_is_sent(app: Application) -> None:
    # A client that never reads keeps its reply in the server's memory: the reply counts in the
    # bytes in flight (and its caller's share of them) until uvicorn has handed it to the kernel.
    # 10^6 points make a reply of 10.7 MB (f64le in base64), more than the kernel buffers hold.
    calls = app.api.calls
    sock = await post_never_reading(app.http_port, 1_000_000)
    try:
        assert await _eventually(lambda: calls.bytes > 4_000_000, 30), calls.bytes
        await asyncio.sleep(0.5)
        assert calls.bytes > 4_000_000 and calls.active >= 1  # still unread, still counted
    finally:
        sock.close()
    assert await _eventually(lambda: calls.bytes == 0 and calls.active == 0, 30), (calls.bytes, calls.active)


async def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """One request as bytes on a new connection: the status, headers, body, and whether the server
    closed the connection after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        closed = await asyncio.wait_for(reader.read(1), 5) == b""
        return int(head[0].split()[1]), headers, body, closed
    finally:
        writer.close()


_DIFFERENTIATE = json.dumps({"expression": "x^2", "wrt": [{"variable": "x"}]}).encode()


def _post(*headers: str, body: bytes = _DIFFERENTIATE) -> bytes:
    head = ["POST /v1/differentiate HTTP/1.1", "host: t", "content-type: application/json", *headers]
    return ("\r\n".join(head) + "\r\nconnection: close\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/info HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade, close\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        _post("upgrade: websocket", f"content-length: {len(_DIFFERENTIATE)}"),
        _post("upgrade: h2c", f"content-length: {len(_DIFFERENTIATE)}"),
    ],
    ids=["websocket GET", "websocket POST", "h2c POST"],
)
async def test_an_upgrade_request_is_served_as_plain_http(app: Application, request_bytes: bytes) -> None:
    """uvicorn answered a WebSocket upgrade itself: an empty 403 or 400, no Status body (an
    independent attacker). RFC 9110 lets a server ignore Upgrade: it is the request it also is."""
    status, headers, body, _ = await _raw_exchange(app.http_port, request_bytes)
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    json.loads(body)


@pytest.mark.parametrize(
    "head",
    [
        "POST /v1/differentiate HTTP/1.1\r\ncontent-type: application/json",
        "GET /healthz HTTP/1.1",  # routes that read no body served the smuggled request after it
        "GET /v1/differentiate?expression=x HTTP/1.1",
        "POST /nope HTTP/1.1",
        "PUT /v1/differentiate HTTP/1.1",
        "POST /v1/differentiate HTTP/1.1\r\ncontent-type: text/plain",
    ],
)
async def test_two_framings_are_refused_and_the_connection_closed(app: Application, head: str) -> None:
    """Content-Length beside Transfer-Encoding: a proxy framing by Content-Length sees one request,
    uvicorn (chunked) two; the second was served on every route but the one that read a body (an
    independent attacker, twice). Refused at the head, the connection closed, nothing after it read."""
    smuggled = b"0\r\n\r\nGET /v1/info HTTP/1.1\r\nhost: internal\r\n\r\n"
    request = f"{head}\r\nhost: t\r\ncontent-length: {len(smuggled)}\r\ntransfer-encoding: chunked\r\n\r\n"
    status, _, body, closed = await _raw_exchange(app.http_port, request.encode() + smuggled)
    assert status == 400
    assert details(json.loads(body))["ErrorInfo"]["reason"] == "AMBIGUOUS_FRAMING"
    assert closed


@pytest.mark.parametrize("timeout", ["abc", "-1S", "1.5S", "2S,3S", "123456789012345678901S", "5s"])
async def test_a_malformed_grpc_timeout_is_400_naming_it(client: httpx.AsyncClient, timeout: str) -> None:
    """Read as none, it ran with no deadline at all (an independent attacker); grpc-gateway refuses it."""
    response = await client.post(
        "/v1/differentiate", content=_DIFFERENTIATE, headers={**JSON, "grpc-timeout": timeout}
    )
    assert_status(response, 400, errors.Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["grpc-timeout"])


async def test_two_grpc_timeouts_are_400_as_two_authorizations_are(app: Application) -> None:
    # The first was read: `1m, 10S` timed out and `10S, 1m` did not (an independent attacker).
    for first, second in (("1m", "10S"), ("10S", "1m")):
        request = _post(f"grpc-timeout: {first}", f"grpc-timeout: {second}")
        status, _, body, _ = await _raw_exchange(app.http_port, request)
        assert status == 400 and "grpc-timeout given 2 times" in json.loads(body)["message"]


@pytest.mark.parametrize("timeout", ["0n", "0S"])
async def test_a_grpc_timeout_of_0_has_passed_even_for_a_cached_answer(
    client: httpx.AsyncClient, timeout: str
) -> None:
    """It ran with no deadline (200) where 1n was 504 (an independent tester)."""
    await client.post("/v1/differentiate", content=_DIFFERENTIATE, headers=JSON)  # cached now
    headers = {**JSON, "grpc-timeout": timeout}
    response = await client.post("/v1/differentiate", content=_DIFFERENTIATE, headers=headers)
    assert_status(response, 504, errors.Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")


async def test_a_negative_zero_keeps_its_sign(client: httpx.AsyncClient) -> None:
    """json.loads reads -0 as the integer 0: 1/x at -0 was +Infinity over REST, -Infinity over gRPC."""
    response = await client.post(
        "/v1/evaluate", content=b'{"expression": "1/x", "point": {"x": -0}}', headers=JSON
    )
    assert response.json()["value"] == "-Infinity"


async def test_every_content_encoding_header_is_read(client: httpx.AsyncClient) -> None:
    """identity, then gzip: only the first was read (an independent attacker)."""
    headers = [
        ("content-type", "application/json"),
        ("content-encoding", "identity"),
        ("content-encoding", "gzip"),
    ]
    response = await client.post("/v1/differentiate", content=_DIFFERENTIATE, headers=headers)
    body = assert_status(response, 415, errors.Code.INVALID_ARGUMENT, "UNSUPPORTED_MEDIA_TYPE")
    assert "gzip" in body["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_an_encoded_body_is_415(client: httpx.AsyncClient, encoding: str) -> None:
    """A body said to be gzip was read as plain JSON and answered 200 (an independent attacker)."""
    response = await client.post(
        "/v1/differentiate", content=_DIFFERENTIATE, headers={**JSON, "content-encoding": encoding}
    )
    body = assert_status(response, 415, errors.Code.INVALID_ARGUMENT, "UNSUPPORTED_MEDIA_TYPE")
    assert encoding in body["message"]
