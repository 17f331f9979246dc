"""A bare `grpc.aio` server for Evaluate, GradientAtPoint and Jacobian: the floor of moving the bytes.

Same process model and message limits as `chainrule serve`, no instrumentation, metrics or logging,
no maths: it decodes the request and answers with a response of the same shape and size as
chainrule's (one f64le column per value/partial/entry, built from the input columns' bytes), so
chainrule's end-to-end time minus this one is what chainrule adds besides the arithmetic.

    python bench/echo_numeric.py --port 0 --ready-file /tmp/echo.json
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import echo_server
import grpc

from chainrule.v1 import chainrule_pb2 as pb

SERVICE = "chainrule.v1.DifferentiationService"
MESSAGE_LIMIT = 512 * 1024 * 1024


def _columns(points: Mapping[str, pb.Array]) -> list[bytes]:
    return [points[name].f64le for name in sorted(points)]


async def _evaluate(
    request: pb.EvaluateRequest, context: grpc.aio.ServicerContext[pb.EvaluateRequest, pb.EvaluateResponse]
) -> pb.EvaluateResponse:
    if request.point:
        return pb.EvaluateResponse(value=sum(request.point.values()))
    first = _columns(request.points)[0]
    return pb.EvaluateResponse(values=pb.Array(f64le=first))


async def _gradient(
    request: pb.GradientAtPointRequest,
    context: grpc.aio.ServicerContext[pb.GradientAtPointRequest, pb.GradientAtPointResponse],
) -> pb.GradientAtPointResponse:
    names = sorted(request.point or request.points)
    if request.point:
        values = [request.point[name] for name in names]
        return pb.GradientAtPointResponse(variables=names, value=sum(values), gradient=values)
    columns = _columns(request.points)
    return pb.GradientAtPointResponse(
        variables=names,
        values=pb.Array(f64le=columns[0]),
        gradients=[pb.Array(f64le=column) for column in columns],
    )


async def _jacobian(
    request: pb.JacobianRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> pb.JacobianResponse:
    names = sorted(request.point or request.points)
    rows, n = len(request.expressions), len(names)
    if request.point:
        values = [request.point[name] for name in names]
        return pb.JacobianResponse(
            variables=names, values=values[:1] * rows, jacobian=[values[i % n] for i in range(rows * n)]
        )
    columns = _columns(request.points)
    return pb.JacobianResponse(
        variables=names,
        value_arrays=[pb.Array(f64le=columns[0]) for _ in range(rows)],
        jacobian_arrays=[pb.Array(f64le=columns[i % n]) for i in range(rows * n)],
    )


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Evaluate": grpc.unary_unary_rpc_method_handler(
                _evaluate,
                request_deserializer=pb.EvaluateRequest.FromString,
                response_serializer=pb.EvaluateResponse.SerializeToString,
            ),
            "GradientAtPoint": grpc.unary_unary_rpc_method_handler(
                _gradient,
                request_deserializer=pb.GradientAtPointRequest.FromString,
                response_serializer=pb.GradientAtPointResponse.SerializeToString,
            ),
            "Jacobian": grpc.unary_unary_rpc_method_handler(
                _jacobian,
                request_deserializer=pb.JacobianRequest.FromString,
                response_serializer=pb.JacobianResponse.SerializeToString,
            ),
        },
    )


if __name__ == "__main__":
    echo_server.main(
        _handler(),
        __doc__.splitlines()[0],
        (
            *echo_server.DEFAULT_OPTIONS,
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ),
    )
