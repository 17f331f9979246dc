"""A bare uvicorn server answering every request with one fixed JSON body: the floor of a REST call.

The same uvicorn as `chainrule serve` (its h11 protocol, a socket bound the way chainrule binds its
own, so TCP_NODELAY is on), no Starlette, routes, middleware, metrics or logging: a plain ASGI app
that reads the request's body and sends the bytes of `--body-file` (chainrule's own reply).

    python bench/echo_http.py --port 0 --body-file reply.json --ready-file /tmp/echo.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

from chainrule.server.transport.http_server import bind_socket

Message = MutableMapping[str, Any]


def make_app(body: bytes) -> Callable[..., Awaitable[None]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(
        scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def serve(body: bytes, host: str, port: int, ready_file: Path | None) -> None:
    sock = bind_socket(host, port)
    config = uvicorn.Config(make_app(body), http="h11", log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)  # it stops on SIGTERM and SIGINT itself
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    if ready_file is not None:
        partial = ready_file.with_suffix(".partial")
        partial.write_text(json.dumps({"http_port": sock.getsockname()[1]}))
        partial.replace(ready_file)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()
    asyncio.run(serve(args.body_file.read_bytes(), args.host, args.port, args.ready_file))


if __name__ == "__main__":
    main()
