"""A bare `grpc.aio` server for Evaluate, GradientAtPoint and Jacobian: the floor of moving the bytes.

Same process model, message limits and malloc settings as `chainrule serve`, no instrumentation,
metrics or logging, no maths and no protobuf work on the timed path: its handlers take the request's
bytes and answer with pre-serialised bytes of the same shape and size as chainrule's reply (one
f64le column of n points per value/partial/entry, the Hessian's n² columns when asked), so the floor
moves exactly the bytes chainrule moves: 32 MB in and 8 MB out for Evaluate of 4 columns at 10^6 points.
The reply is built once per distinct request (its length and first 4 KiB: the expression and the
first column's header) when that request first arrives, which the benchmarks do before timing.
chainrule's end-to-end time minus this one is what chainrule adds besides the arithmetic.

    python bench/echo_numeric.py --port 0 --ready-file /tmp/echo.json
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import echo_server
import grpc
from google.protobuf.message import Message

from chainrule.server.compute import allocator
from chainrule.server.config import Settings
from chainrule.v1 import chainrule_pb2 as pb

SERVICE = "chainrule.v1.DifferentiationService"
MESSAGE_LIMIT = 512 * 1024 * 1024
_PREFIX = 4096
Request = TypeVar("Request", bound=Message)


def _column(points: Mapping[str, pb.Array]) -> pb.Array:
    """A column of the request's length, as chainrule answers it (f64le in, f64le out)."""
    first = points[min(points)]
    return pb.Array(f64le=first.f64le) if first.f64le else pb.Array(values=first.values)


def evaluate_reply(request: pb.EvaluateRequest) -> pb.EvaluateResponse:
    if request.point:
        return pb.EvaluateResponse(value=sum(request.point.values()))
    return pb.EvaluateResponse(values=_column(request.points))


def gradient_reply(request: pb.GradientAtPointRequest) -> pb.GradientAtPointResponse:
    names = list(request.variables) or sorted(request.point or request.points)
    outputs = len(names) ** 2 if request.hessian else 0
    if request.point:
        values = [request.point[name] for name in names if name in request.point]
        return pb.GradientAtPointResponse(
            variables=names, value=sum(values), gradient=values, hessian=[0.0] * outputs
        )
    column = _column(request.points)
    return pb.GradientAtPointResponse(
        variables=names,
        values=column,
        gradients=[column] * len(names),
        hessians=[column] * outputs,
    )


def jacobian_reply(request: pb.JacobianRequest) -> pb.JacobianResponse:
    names = sorted(request.point or request.points)
    rows, n = len(request.expressions), len(names)
    if request.point:
        values = [request.point[name] for name in names]
        return pb.JacobianResponse(
            variables=names, values=values[:1] * rows, jacobian=[values[i % n] for i in range(rows * n)]
        )
    column = _column(request.points)
    return pb.JacobianResponse(
        variables=names, value_arrays=[column] * rows, jacobian_arrays=[column] * (rows * n)
    )


def _raw(
    parse: Callable[[bytes], Request], reply: Callable[[Request], Message]
) -> Callable[..., Awaitable[bytes]]:
    """A handler on bytes: the reply to a request seen before is sent as it was serialised then."""
    replies: dict[tuple[int, bytes], bytes] = {}

    async def handle(body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        key = (len(body), body[:_PREFIX])
        found = replies.get(key)
        if found is None:
            message = reply(parse(body))
            found = replies[key] = message.SerializeToString()
        return found

    return handle


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Evaluate": grpc.unary_unary_rpc_method_handler(
                _raw(pb.EvaluateRequest.FromString, evaluate_reply)
            ),
            "GradientAtPoint": grpc.unary_unary_rpc_method_handler(
                _raw(pb.GradientAtPointRequest.FromString, gradient_reply)
            ),
            "Jacobian": grpc.unary_unary_rpc_method_handler(
                _raw(pb.JacobianRequest.FromString, jacobian_reply)
            ),
        },
    )


if __name__ == "__main__":
    # chainrule's server keeps freed memory for the next batch; so does its floor.
    allocator.keep_freed_memory(Settings().malloc_keep_bytes)
    echo_server.main(
        _handler(),
        __doc__.splitlines()[0],
        (
            *echo_server.DEFAULT_OPTIONS,
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ),
    )
