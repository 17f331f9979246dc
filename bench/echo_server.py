"""A bare `grpc.aio` server answering chainrule's Differentiate path: the transport ceiling.

Same process model as `chainrule serve` (one process, one event loop), grpc's default server
options but port sharing (chainrule's bounds and windows, `grpc_server.server_options`, left this
path's requests/s as they were: bench/PROFILE.md, eighth profile), no instrumentation, no metrics,
no logging: it decodes the request and returns a response of the
same shape, so the difference to chainrule's cached path is everything chainrule adds.

    python bench/echo_server.py --port 0 --ready-file /tmp/echo.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Sequence
from pathlib import Path

import grpc

from chainrule.v1 import chainrule_pb2 as pb

METHOD = "/chainrule.v1.DifferentiationService/Differentiate"


async def _echo(
    request: pb.DifferentiateRequest,
    context: grpc.aio.ServicerContext[pb.DifferentiateRequest, pb.DifferentiateResponse],
) -> pb.DifferentiateResponse:
    return pb.DifferentiateResponse(derivative=request.expression, variables=["x"])


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "chainrule.v1.DifferentiationService",
        {
            "Differentiate": grpc.unary_unary_rpc_method_handler(
                _echo,
                request_deserializer=pb.DifferentiateRequest.FromString,
                response_serializer=pb.DifferentiateResponse.SerializeToString,
            )
        },
    )


# Port sharing off, as `chainrule serve` in one process has it (grpc_server.server_options).
DEFAULT_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.so_reuseport", 0),)


async def serve(
    handler: grpc.GenericRpcHandler,
    host: str,
    port: int,
    ready_file: Path | None,
    options: Sequence[tuple[str, int]] = DEFAULT_OPTIONS,
) -> None:
    """Serve `handler` until SIGTERM/SIGINT; write the bound port to `ready_file` once started."""
    server = grpc.aio.server(options=list(options))
    server.add_generic_rpc_handlers((handler,))
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


def main(
    handler: grpc.GenericRpcHandler, description: str, options: Sequence[tuple[str, int]] = DEFAULT_OPTIONS
) -> None:
    """The command line every echo server shares: --host, --port, --ready-file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    options_ = parser.parse_args()
    asyncio.run(serve(handler, options_.host, options_.port, options_.ready_file, options))


if __name__ == "__main__":
    main(_handler(), __doc__.splitlines()[0])
