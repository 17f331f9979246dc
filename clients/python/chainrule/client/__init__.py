"""chainrule's Python client: `Client` and `AsyncClient` over gRPC, typed results and errors.

from chainrule.client import Client

with Client("127.0.0.1:50051") as client:
    print(client.differentiate("sin(x^2)").derivative)            # 2*x*cos(x^2)
    print(client.evaluate("x*y", {"x": 2, "y": 3}).value)           # 6.0
    print(client.gradient("x^2*y", {"x": 1, "y": 2}).gradient)      # (4.0, 1.0)
    print(client.parse("sin(x").error.position)                     # 3
    print(client.jacobian(["x*y", "x + y"], {"x": 2, "y": 3}).jacobian)  # ((3.0, 2.0), (1.0, 1.0))
    print(client.series("sin(x)", order=3).series)                  # x - x^3/6
"""

from __future__ import annotations

from ._client import AsyncClient, Client
from ._config import DEFAULT_TIMEOUT, USE_CLIENT_DEFAULT, RetryPolicy, UseClientDefault
from ._exceptions import (
    ChainruleError,
    DeadlineExceededError,
    FieldViolation,
    InvalidArgumentError,
    LimitExceededError,
    MissingVariableError,
    ParseError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownFunctionError,
)
from ._models import (
    ChainRule,
    Check,
    CheckPoint,
    Column,
    Derivative,
    Evaluation,
    ExpressionError,
    Formula,
    GeneratedCode,
    Gradient,
    Jacobian,
    Limit,
    Parsed,
    Series,
    ServerInfo,
    Step,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "USE_CLIENT_DEFAULT",
    "AsyncClient",
    "ChainRule",
    "ChainruleError",
    "Check",
    "CheckPoint",
    "Client",
    "Column",
    "DeadlineExceededError",
    "Derivative",
    "Evaluation",
    "ExpressionError",
    "FieldViolation",
    "Formula",
    "GeneratedCode",
    "Gradient",
    "InvalidArgumentError",
    "Jacobian",
    "Limit",
    "LimitExceededError",
    "MissingVariableError",
    "ParseError",
    "Parsed",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Series",
    "ServerInfo",
    "Step",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownFunctionError",
    "UseClientDefault",
]
