"""A bare `grpc.aio` server for Evaluate and GradientAtPoint: the physical floor of moving the bytes.

Same process model and message limits as `chainrule serve`, no interceptors, metrics or logging,
no maths: it decodes the request and answers with a response of the same shape and size as
chainrule's (one f64le column per value/partial, built from the input columns' bytes), so
chainrule's end-to-end time minus this one is what chainrule adds besides the arithmetic.

    python bench/echo_numeric.py --port 0 --ready-file /tmp/echo.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Mapping
from pathlib import Path

import grpc

from chainrule.v1 import chainrule_pb2 as pb

SERVICE = "chainrule.v1.DifferentiationService"
MESSAGE_LIMIT = 512 * 1024 * 1024


def _columns(points: Mapping[str, pb.Array]) -> list[bytes]:
    return [points[name].f64le for name in sorted(points)]


async def _evaluate(request: pb.EvaluateRequest, context: grpc.aio.ServicerContext) -> pb.EvaluateResponse:
    if request.point:
        return pb.EvaluateResponse(value=sum(request.point.values()))
    first = _columns(request.points)[0]
    return pb.EvaluateResponse(values=pb.Array(f64le=first))


async def _gradient(
    request: pb.GradientAtPointRequest, context: grpc.aio.ServicerContext
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
        },
    )


async def serve(host: str, port: int, ready_file: Path | None) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
        ]
    )
    server.add_generic_rpc_handlers((_handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    if ready_file is not None:
        partial = ready_file.with_suffix(".partial")
        partial.write_text(json.dumps({"grpc_port": bound}))
        partial.replace(ready_file)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    options = parser.parse_args()
    asyncio.run(serve(options.host, options.port, options.ready_file))


if __name__ == "__main__":
    main()
