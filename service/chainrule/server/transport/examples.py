"""The examples of the OpenAPI document: a request and its reply per operation, an error per status.

The replies are what the server answers to the requests (tests/server/transport/test_rest.py sends
each request to a live server and compares); the error examples are built from the error classes,
so their shape is the one the server sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainrule.engine import errors
from chainrule.server.version import VERSION

Schema = dict[str, Any]


@dataclass(frozen=True)
class Example:
    """A request an operation takes and the reply the server gives to it (test_rest compares them)."""

    name: str
    request: Schema
    reply: Schema


# Shown by /docs, sent by the schemathesis test, each reply checked against the live server's.
EXAMPLES: Mapping[str, Sequence[Example]] = {
    "Differentiate": [
        Example(
            "sin(x^2) with LaTeX",
            {"expression": "sin(x^2)", "formats": ["OUTPUT_FORMAT_LATEX"]},
            {"derivative": "2*x*cos(x^2)", "latex": r"2 x \cos{\left(x^{2} \right)}", "variables": ["x"],
             "steps": [], "mathml": "", "code": []},
        ),
    ],
    "Evaluate": [
        Example(
            "three points, y broadcast",
            {"expression": "x^2 + y", "points": {"x": {"values": [1, 2, 3]}, "y": {"values": [0.5]}}},
            {"values": {"values": [1.5, 4.5, 9.5], "f64le": ""}, "nonfiniteCount": "0"},
        ),
    ],
    "GradientAtPoint": [
        Example(
            "gradient and Hessian at one point",
            {"expression": "x^2 y", "point": {"x": 3, "y": 2}, "hessian": True},
            {"variables": ["x", "y"], "value": 18.0, "gradient": [12.0, 9.0], "hessian": [4.0, 6.0, 6.0, 0.0],
             "gradients": [], "hessians": [], "nonfiniteCount": "0"},
        ),
    ],
    "Jacobian": [
        Example(
            "two expressions at one point",
            {"expressions": ["x^2 y", "5x + sin(y)"], "point": {"x": 1, "y": 2}},
            {"variables": ["x", "y"], "values": [2.0, 5.909297426825682],
             "jacobian": [4.0, 1.0, 5.0, -0.4161468365471424], "valueArrays": [], "jacobianArrays": [],
             "nonfiniteCount": "0"},
        ),
    ],
    "Series": [
        Example(
            "sin(x) around pi/2 to degree 4",
            {"expression": "sin(x)", "around": "pi/2", "order": 4, "formats": ["OUTPUT_FORMAT_LATEX"]},
            {"series": "1 - (x - pi/2)^2/2 + (x - pi/2)^4/24",
             "latex": r"1 - \frac{\left(x - \frac{\pi}{2}\right)^{2}}{2}"
                      r" + \frac{\left(x - \frac{\pi}{2}\right)^{4}}{24}",
             "coefficients": ["1", "0", "-1/2", "0", "1/24"], "remainder": "O((x - pi/2)^5)",
             "variable": "x"},
        ),
    ],
    "Parse": [
        Example(
            "an expression",
            {"expression": "sin x²"},
            {"canonical": "sin(x^2)", "latex": r"\sin{\left(x^{2} \right)}", "variables": ["x"]},
        ),
        Example(
            "a text that does not parse (still a 200)",
            {"expression": "sin(x"},
            {"error": {"reason": "PARSE_ERROR", "message": "'(' at 3 is never closed: add ')'", "position": 3,
                       "metadata": {}}, "canonical": "", "latex": "", "variables": []},
        ),
    ],
    "DifferentiateQuery": [
        Example(
            "a mixed partial",
            {"expression": "x^3 y^2", "wrt": ["x", "y:2"]},
            {"derivative": "6*x^2", "latex": "", "variables": ["x", "y"], "steps": [], "mathml": "",
             "code": []},
        ),
    ],
    "GetServerInfo": [
        Example(
            "the start of each list",
            {},
            {"version": VERSION,
             "limits": [{"name": "expression_length", "maximum": 10000.0,
                         "description": "code points in an expression"}],
             "functions": ["Abs", "DiracDelta"], "constants": ["Catalan", "E"],
             "outputFormats": ["OUTPUT_FORMAT_TEXT", "OUTPUT_FORMAT_LATEX"],
             "simplifications": ["SIMPLIFICATION_NONE", "SIMPLIFICATION_FAST", "SIMPLIFICATION_FULL"]},
        ),
    ],
}  # fmt: skip

# Error responses by HTTP status: what each means here, and an example built from the error classes.
ERRORS: Mapping[str, tuple[str, errors.ChainruleError]] = {
    "400": (
        "INVALID_ARGUMENT (the request is wrong: a parse error, a missing variable, a limit; "
        "google.rpc.BadRequest names the field) or FAILED_PRECONDITION",
        errors.ParseError("'(' at 3 is never closed", 3, fix="add ')'", placed=True),
    ),
    "401": (
        "UNAUTHENTICATED: bearer tokens are configured and the call has none, or a wrong one",
        errors.Unauthenticated(
            "this call needs an 'authorization: Bearer <token>' header", reason="MISSING_TOKEN"
        ),
    ),
    "413": (
        "The body is over the request_bytes limit",
        errors.LimitExceeded(
            "request_bytes",
            70_000_000,
            67_108_864,
            field="body",
            what="the request body is too large",
            unit="bytes",
        ),
    ),
    "415": (
        "The body is not JSON (send application/json, UTF-8)",
        errors.InvalidArgument(
            "content type 'text/plain' is not supported; send application/json (UTF-8)",
            reason="UNSUPPORTED_MEDIA_TYPE",
        ),
    ),
    "429": (
        "RESOURCE_EXHAUSTED: the server is busy (retry after the Retry-After header), or the work "
        "overran the server's budget",
        errors.ResourceExhausted(
            "the server is busy: 2 symbolic tasks running and 64 queued (the limit); retry after 1 s",
            reason="OVERLOADED",
            metadata={"queue": "symbolic", "limit": "64"},
            retry_after_seconds=1.0,
        ),
    ),
    "500": ("INTERNAL: a bug in chainrule, logged by the server", errors.InternalError("internal error")),
    "503": (
        "UNAVAILABLE: the worker computing the answer died; a retry goes to a healthy one",
        errors.Unavailable("the symbolic worker died; retry"),
    ),
    "504": (
        "DEADLINE_EXCEEDED: the caller's deadline (a grpc-timeout header) ran out",
        errors.DeadlineExceeded("the deadline ran out during differentiation"),
    ),
}
POST_ERRORS = ("400", "401", "413", "415", "429", "500", "503", "504")
# Parse runs in its own worker under the deadline as the others do (it answered 503 and 504 that the
# document did not declare: an independent tester); GET has no body; while draining, every route is 503.
STATUSES: Mapping[str, Sequence[str]] = {
    "GetServerInfo": ("400", "401", "500", "503"),
    "DifferentiateQuery": ("400", "401", "429", "500", "503", "504"),
}
