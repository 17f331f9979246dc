"""The OpenAPI document as a reference: examples the server really answers, summaries, error responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainrule.engine import errors
from chainrule.server.app import Application
from chainrule.server.transport import examples, openapi
from chainrule.server.transport.examples import EXAMPLES, Example
from chainrule.server.transport.status import HTTP_STATUS
from chainrule.v1 import chainrule_pb2 as pb


@pytest.fixture(scope="module")
async def client(app: Application) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=30) as opened:
        yield opened


def contained(example: Any, actual: Any) -> bool:
    """`example` is `actual` or a part of it: keys a subset, lists a prefix (the info example is cut)."""
    if isinstance(example, dict):
        return isinstance(actual, dict) and all(
            k in actual and contained(v, actual[k]) for k, v in example.items()
        )
    if isinstance(example, list):
        return (
            isinstance(actual, list) and len(example) <= len(actual) and all(map(contained, example, actual))
        )
    return bool(example == actual)


def operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (path, verb, operation), for every operation of the document."""
    document = openapi.build_openapi("test")
    return {
        operation["operationId"]: (path, verb, operation)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }


async def send(client: httpx.AsyncClient, path: str, verb: str, example: Example) -> httpx.Response:
    if verb == "post":
        return await client.post(path, json=example.request)
    return await client.get(path, params=example.request)


@pytest.mark.parametrize(
    ("operation_id", "example"),
    [(name, example) for name, examples in EXAMPLES.items() for example in examples],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
async def test_each_example_reply_is_what_the_server_answers(
    client: httpx.AsyncClient, operation_id: str, example: Example
) -> None:
    path, verb, operation = operations()[operation_id]
    response = await send(client, path, verb, example)
    assert response.status_code == 200, response.text
    assert contained(example.reply, response.json()), response.json()
    shown = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert example.reply in [item["value"] for item in shown.values()]


def test_every_rpc_operation_shows_an_example_request_and_reply() -> None:
    for operation_id, (_, verb, operation) in operations().items():
        if operation.get("tags") == ["operations"]:
            continue  # health, metrics, the pages: no body, nothing to show
        assert operation_id in EXAMPLES, operation_id
        assert operation["responses"]["200"]["content"]["application/json"]["examples"]
        if verb == "post":
            assert operation["requestBody"]["content"]["application/json"]["examples"]


def test_summaries_are_not_the_descriptions_again() -> None:
    for operation_id, (_, _, operation) in operations().items():
        summary, description = operation["summary"], operation.get("description", "")
        assert summary, operation_id
        assert not description.startswith(summary), operation_id
    _, _, differentiate = operations()["Differentiate"]
    assert differentiate["summary"] == "Differentiate returns the symbolic derivative of an expression"


# Errors the HTTP layer sends with a status of its own, not the one of the canonical code.
HTTP_LAYER = {"413": errors.Code.INVALID_ARGUMENT, "415": errors.Code.INVALID_ARGUMENT}


def test_error_responses_are_statuses_by_http_code_with_examples() -> None:
    document = openapi.build_openapi("test")
    responses = document["components"]["responses"]
    for status in examples.ERRORS:
        example = responses[f"Error{status}"]["content"]["application/json"]["example"]
        code = errors.Code(example["code"])
        assert HTTP_LAYER.get(status) == code or str(HTTP_STATUS[code]) == status, status
        assert example["message"]
        types = [detail["@type"].rsplit(".", 1)[-1] for detail in example["details"]]
        assert "ErrorInfo" in types, status
    for operation_id, (_, verb, operation) in operations().items():
        if operation.get("tags") == ["operations"]:
            continue
        listed = set(operation["responses"]) - {"200", "default"}
        assert {"400", "401", "500"} <= listed, operation_id
        if verb == "post":
            assert {"413", "415", "429"} <= listed, operation_id
        for status in listed:
            assert operation["responses"][status] == {"$ref": f"#/components/responses/Error{status}"}


async def test_a_documented_error_is_the_shape_the_server_sends(client: httpx.AsyncClient) -> None:
    example = openapi.build_openapi("test")["components"]["responses"]["Error400"]["content"][
        "application/json"
    ]
    response = await client.post("/v1/differentiate", json={"expression": "sin(x"})
    assert response.status_code == 400
    assert response.json() == example["example"]


def test_an_installed_server_reads_the_contract_shipped_with_the_client(tmp_path: Path) -> None:
    # Outside a checkout (the container image) the comments come from the copy beside the stubs.
    shipped = openapi.find_proto_source(start=tmp_path)
    assert shipped is not None and shipped.parent == Path(pb.__file__).parent
    checkout = openapi.find_proto_source()
    assert checkout is not None and shipped.read_bytes() == checkout.read_bytes()
