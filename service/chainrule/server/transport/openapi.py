"""The OpenAPI 3 document of the HTTP API, generated from the proto descriptors so it cannot drift; `/docs`.

Schemas come from walking `chainrule_pb2.DESCRIPTOR` with the proto3 JSON mapping (lowerCamelCase
names; 64-bit integers as strings; doubles as numbers or "NaN"/"Infinity"/"-Infinity"; bytes as
base64; enums by name; maps as objects; repeated fields as arrays). Routes come from the RPCs'
`google.api.http` options. Descriptions are the proto's comments, read from the `.proto` source
when it is on disk (a checkout, the container image); without it the document has no prose but the
same shape. The one hand-written operation is the `GET /v1/differentiate` extra. Every operation
carries an example request and the reply the server gives to it (checked against the live server by
the tests), and its error responses (`google.rpc.Status`) by HTTP status, each with an example built
from the error classes themselves. `/docs` (pages.py) renders the document with Swagger UI.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chainrule.server.transport.examples import ERRORS, EXAMPLES, POST_ERRORS, STATUSES, Example
from chainrule.server.transport.status import status_proto
from chainrule.v1 import chainrule_pb2 as pb

Schema = dict[str, Any]

OPENAPI_VERSION = "3.0.3"
SERVICE = pb.DESCRIPTOR.services_by_name["DifferentiationService"]
_REF = "#/components/schemas/"
_NUMBER: Schema = {
    "anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}],
}
_T = FieldDescriptor
_SCALARS: Mapping[int, Schema] = {
    _T.TYPE_DOUBLE: _NUMBER,
    _T.TYPE_FLOAT: _NUMBER,
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte", "description": "base64 (standard or URL-safe)"},
}
_ANY: Schema = {
    "type": "object",
    "description": "A google.protobuf.Any: `@type` names the message, the other keys are its fields.",
    "properties": {"@type": {"type": "string"}},
    "required": ["@type"],
    "additionalProperties": True,
}


# --- comments from the .proto source ----------------------------------------------------------

_DECLARATION = re.compile(r"^\s*(message|enum|service|rpc)\s+(\w+)")
_FIELD = re.compile(r"^\s*(?:optional\s+|repeated\s+)?(?:map<[^>]*>|[\w.]+)\s+(\w+)\s*=\s*\d+")
_ENUM_VALUE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*-?\d+")


def find_proto_source(start: Path | None = None) -> Path | None:
    """The `.proto` this code was generated from: in a checkout, `protos/` upwards from this module;
    installed, the copy the client distribution ships beside the generated code."""
    relative = Path("protos") / pb.DESCRIPTOR.name
    for folder in (start or Path(__file__).resolve()).parents:
        if (folder / relative).is_file():
            return folder / relative
    shipped = Path(pb.__file__).with_name(Path(pb.DESCRIPTOR.name).name)
    return shipped if shipped.is_file() else None


def proto_comments(source: str) -> dict[str, str]:
    """Leading `//` comments by dotted name: `Wrt`, `Wrt.order`, `DifferentiationService.Evaluate`."""
    comments: dict[str, str] = {}
    scopes: list[str | None] = []  # a name per open brace; None for option braces
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            pending.append(stripped[2:].strip())
            continue
        named = [s for s in scopes if s]
        declared = _DECLARATION.match(line)
        field = _FIELD.match(line) or _ENUM_VALUE.match(line)
        name = declared.group(2) if declared else field.group(1) if field else None
        if name and pending:
            comments[".".join([*named, name])] = " ".join(pending)
        pending = []
        code = line.split("//", 1)[0]
        for index in range(code.count("{")):
            opens_scope = declared is not None and declared.group(1) != "rpc" and index == 0
            scopes.append(declared.group(2) if declared and opens_scope else None)
        for _ in range(code.count("}")):
            if scopes:
                scopes.pop()
    return comments


@functools.cache
def _source_comments() -> Mapping[str, str]:
    source = find_proto_source()
    return proto_comments(source.read_text(encoding="utf-8")) if source else {}


# --- schemas ----------------------------------------------------------------------------------


def _schema_name(descriptor: Descriptor | EnumDescriptor) -> str:
    package = pb.DESCRIPTOR.package + "."
    return descriptor.full_name.removeprefix(package)


def _ref(descriptor: Descriptor | EnumDescriptor) -> Schema:
    return {"$ref": _REF + _schema_name(descriptor)}


def _with_description(schema: Schema, description: str | None) -> Schema:
    if not description:
        return schema
    if "$ref" in schema:  # OpenAPI 3.0 ignores a $ref's siblings
        return {"allOf": [schema], "description": description}
    return {**schema, "description": description}


def _value_schema(field: FieldDescriptor) -> Schema:
    if field.message_type is not None:
        return _ANY if field.message_type.full_name == "google.protobuf.Any" else _ref(field.message_type)
    if field.enum_type is not None:
        return _ref(field.enum_type)
    return dict(_SCALARS[field.type])


def field_schema(field: FieldDescriptor) -> Schema:
    """One field in the proto3 JSON mapping: maps are objects, repeated fields arrays."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _value_schema(message.fields_by_name["value"])}
    if field.is_repeated:
        return {"type": "array", "items": _value_schema(field)}
    return _value_schema(field)


def message_schema(descriptor: Descriptor, comments: Mapping[str, str]) -> Schema:
    """An object schema; unknown keys are refused, as the server refuses them."""
    name = _schema_name(descriptor)
    properties = {
        field.json_name: _with_description(
            _nullable(field_schema(field)), comments.get(f"{name}.{field.name}")
        )
        for field in descriptor.fields
    }
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return _with_description(schema, comments.get(name))


def _nullable(schema: Schema) -> Schema:
    """proto3 JSON reads `null` as the field's default, and so does the server: say so."""
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def enum_schema(descriptor: EnumDescriptor, comments: Mapping[str, str]) -> Schema:
    name = _schema_name(descriptor)
    values = [value.name for value in descriptor.values]
    lines = [f"- `{v}`: {comments[f'{name}.{v}']}" for v in values if f"{name}.{v}" in comments]
    description = "\n".join(filter(None, [comments.get(name, ""), *lines]))
    return _with_description({"type": "string", "enum": values}, description)


def _referenced(descriptor: Descriptor) -> Iterator[Descriptor | EnumDescriptor]:
    """`descriptor` and every message and enum reachable from it (map entries inlined, Any special)."""
    seen: set[str] = set()
    stack: list[Descriptor | EnumDescriptor] = [descriptor]
    while stack:
        item = stack.pop()
        if item.full_name in seen:
            continue
        seen.add(item.full_name)
        if isinstance(item, Descriptor) and item.full_name != "google.protobuf.Any":
            if not item.GetOptions().map_entry:
                yield item
            stack.extend(f.message_type for f in item.fields if f.message_type is not None)
            stack.extend(f.enum_type for f in item.fields if f.enum_type is not None)
        elif isinstance(item, EnumDescriptor):
            yield item


def component_schemas(service: ServiceDescriptor, comments: Mapping[str, str]) -> dict[str, Schema]:
    """Schemas for every message and enum the service's RPCs use, plus google.rpc.Status."""
    roots = [m.input_type for m in service.methods] + [m.output_type for m in service.methods]
    roots.append(cast(Descriptor, status_pb2.Status.DESCRIPTOR))
    schemas: dict[str, Schema] = {}
    for root in roots:
        for item in _referenced(root):
            if isinstance(item, Descriptor):
                schemas[_schema_name(item)] = message_schema(item, comments)
            else:
                schemas[_schema_name(item)] = enum_schema(item, comments)
    return dict(sorted(schemas.items()))


# --- paths ------------------------------------------------------------------------------------


def _json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


_ERROR = {"$ref": "#/components/responses/Error"}


def _error_ref(status: str) -> Schema:
    return {"$ref": f"#/components/responses/Error{status}"}


def _error_responses(statuses: Sequence[str]) -> dict[str, Schema]:
    return {**{status: _error_ref(status) for status in statuses}, "default": _ERROR}


def error_responses() -> dict[str, Schema]:
    """`components.responses`: a google.rpc.Status response per HTTP status, each with an example."""
    status_schema = {"$ref": _REF + "google.rpc.Status"}
    responses: dict[str, Schema] = {
        f"Error{status}": {
            "description": description,
            "content": {
                "application/json": {
                    "schema": status_schema,
                    "example": json_format.MessageToDict(status_proto(error)),
                }
            },
        }
        for status, (description, error) in ERRORS.items()
    }
    responses["Error"] = {
        "description": "Any other google.rpc.Status: code, message, and details such as "
        "google.rpc.BadRequest (field violations) and google.rpc.ErrorInfo (reason).",
        "content": _json_content(status_schema),
    }
    return responses


def _summary_and_description(method: MethodDescriptor, comments: Mapping[str, str]) -> tuple[str, str]:
    """The comment's first sentence is the summary; the description is the rest, and what it is."""
    comment = comments.get(f"{SERVICE.name}.{method.name}", "")
    first, _, rest = comment.partition(". ")
    note = f"The `{method.full_name}` RPC, in the proto3 JSON mapping."
    return first.rstrip(".") or method.name, f"{rest}\n\n{note}" if rest else note


def _examples(examples: Sequence[Example], part: str) -> Schema:
    return {f"example{i}": {"summary": e.name, "value": getattr(e, part)} for i, e in enumerate(examples)}


def _rpc_operation(method: MethodDescriptor, verb: str, comments: Mapping[str, str]) -> Schema:
    summary, description = _summary_and_description(method, comments)
    examples = EXAMPLES[method.name]
    reply = {"schema": _ref(method.output_type), "examples": _examples(examples, "reply")}
    operation: Schema = {
        "operationId": method.name,
        "summary": summary,
        "description": description,
        "tags": [SERVICE.name],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": reply}},
            **_error_responses(STATUSES.get(method.name, POST_ERRORS)),
        },
    }
    if verb == "post":
        request = {"schema": _ref(method.input_type), "examples": _examples(examples, "request")}
        operation["requestBody"] = {
            "required": False,
            "description": "The request message; an empty body is the empty message. "
            "Original (snake_case) field names are accepted too.",
            "content": {"application/json": request},
        }
    return operation


def _http_rule(method: MethodDescriptor) -> Any:
    """The method's `google.api.http` option (a google.api.HttpRule), found without importing its stubs."""
    for field, value in method.GetOptions().ListFields():
        if field.full_name == "google.api.http":
            return value
    raise ValueError(f"{method.full_name} has no google.api.http option")


def rpc_paths(comments: Mapping[str, str]) -> dict[str, Schema]:
    """One operation per RPC, at the path and verb of its `google.api.http` option."""
    paths: dict[str, Schema] = {}
    for method in SERVICE.methods:
        rule = _http_rule(method)
        verb = rule.WhichOneof("pattern")
        if verb not in {"get", "post"}:
            raise ValueError(f"{method.full_name}: unsupported google.api.http pattern {verb!r}")
        if verb == "post" and rule.body != "*":
            raise ValueError(f'{method.full_name}: only body "*" is served')
        paths.setdefault(getattr(rule, verb), {})[verb] = _rpc_operation(method, verb, comments)
    return paths


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


DIFFERENTIATE_QUERY: Schema = {
    "operationId": "DifferentiateQuery",
    "summary": "Differentiate from a query string (a chainrule extra)",
    "description": "A convenience for browsers and curl, not part of the gRPC transcoding: a "
    "transcoder cannot fill repeated messages from a query string. Same answers and errors as "
    "`POST /v1/differentiate`.",
    "tags": [SERVICE.name],
    "x-chainrule-extra": True,
    "parameters": [
        {
            **_query("expression", {"type": "string"}, "The expression, e.g. `sin(x^2)` (URL-encoded)."),
            "example": EXAMPLES["DifferentiateQuery"][0].request["expression"],
        },
        {
            **_query(
                "wrt",
                {"type": "array", "items": {"type": "string"}},
                "`variable` or `variable:order`, repeated for mixed partials (`wrt=x&wrt=y:2`).",
            ),
            "style": "form",
            "explode": True,
            "example": EXAMPLES["DifferentiateQuery"][0].request["wrt"],
        },
        {
            **_query(
                "dependent",
                {"type": "string"},
                "Implicit differentiation: the expression is an equation defining this variable as a "
                "function of the one `wrt` variable (`x^2 + y^2 = 25`, `dependent=y`); empty or absent: "
                "explicit.",
            ),
            "example": "",
        },
        _query("latex", {"type": "boolean"}, "Also return LaTeX."),
        _query("explain", {"type": "boolean"}, "Also return the derivation, step by step."),
        _query("verify", {"type": "boolean"}, "Also check the derivative numerically."),
        _query("simplification", {"type": "string", "enum": ["none", "fast", "full"]}, "Default fast."),
    ],
    "responses": {
        "200": {
            "description": "OK",
            "content": {
                "application/json": {
                    "schema": _ref(pb.DifferentiateResponse.DESCRIPTOR),
                    "examples": _examples(EXAMPLES["DifferentiateQuery"], "reply"),
                }
            },
        },
        **_error_responses(STATUSES["DifferentiateQuery"]),
    },
}


def _plain(operation_id: str, summary: str, media: str, schema: Schema, *extra: str) -> Schema:
    responses: Schema = {"200": {"description": "OK", "content": {media: {"schema": schema}}}}
    for status in extra:
        responses[status] = {"description": "Not ready", "content": {media: {"schema": schema}}}
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["operations"],
            "responses": responses,
        }
    }


_HEALTH = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}


def operations_paths(playground: bool = True) -> dict[str, Schema]:
    """Health, metrics, this document and the pages (pages.py)."""
    pages = {
        "/": _plain("Playground", "The playground: try the API in a browser", "text/html", {"type": "string"})
    }
    return {
        **(pages if playground else {}),
        "/healthz": _plain("Healthz", "Liveness: the process answers", "application/json", _HEALTH),
        "/readyz": _plain("Readyz", "Readiness: serving, not draining", "application/json", _HEALTH, "503"),
        "/metrics": _plain("Metrics", "Prometheus metrics", "text/plain", {"type": "string"}),
        "/openapi.json": _plain("OpenApi", "This document", "application/json", {"type": "object"}),
        "/docs": _plain(
            "Docs", "This document in Swagger UI, calls included", "text/html", {"type": "string"}
        ),
    }


@functools.cache
def build_openapi(version: str, playground: bool = True) -> Schema:
    """The whole document; pure and cached (the descriptors cannot change while we run)."""
    comments = _source_comments()
    paths = rpc_paths(comments)
    paths["/v1/differentiate"]["get"] = DIFFERENTIATE_QUERY
    paths.update(operations_paths(playground))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "chainrule",
            "version": version,
            "description": (
                f"{comments.get(SERVICE.name, 'chainrule')}\n\n"
                "Bodies use the proto3 JSON mapping of `chainrule.v1` (lowerCamelCase keys in replies; "
                "both spellings accepted in requests; 64-bit integers as strings; bytes as base64; "
                'non-finite doubles as "NaN"/"Infinity"/"-Infinity"). Errors are '
                "`google.rpc.Status` JSON with the HTTP status of the canonical code "
                "(INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, "
                "DEADLINE_EXCEEDED 504, INTERNAL 500); the HTTP layer adds 405, 413 and 415. With "
                "bearer tokens configured, every call needs an `authorization: Bearer <token>` header "
                "(401 without one)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": component_schemas(SERVICE, comments),
            "responses": error_responses(),
        },
    }


# --- routes -----------------------------------------------------------------------------------


def openapi_routes(version: str, playground: bool = True) -> list[Route]:
    """`GET /openapi.json`, the document (`/docs` renders it: see pages.py)."""
    document = json.dumps(build_openapi(version, playground), ensure_ascii=False).encode()

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    return [Route("/openapi.json", openapi_json, methods=["GET"])]
