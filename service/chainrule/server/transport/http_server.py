"""The HTTP transport: health and metrics endpoints (REST routes join them), served by uvicorn.

It runs in the same process and event loop as the gRPC server and shares its API layer, cache and
metrics registry. Starlette + uvicorn: small, typed, ASGI, well kept, and uvicorn can be driven as
a coroutine on a socket we bind ourselves (port 0 in tests, SO_REUSEPORT in multi-process mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainrule.server.api import ChainruleApi
from chainrule.server.metrics import HttpMetrics
from chainrule.server.transport import openapi, rest
from chainrule.server.version import VERSION

log = logging.getLogger(__name__)

# Which server process answered: an HTTP header here, gRPC trailing metadata (app.py).
WORKER_HEADER = "x-chainrule-worker"


def create_http_app(
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    api: ChainruleApi | None = None,
    http_metrics: HttpMetrics | None = None,
) -> Starlette:
    """The ASGI application: `/healthz` (alive), `/readyz` (ready to serve), `/metrics`; with an
    `api`, the REST routes, `/openapi.json` and `/docs` too (see rest.py), and HTTP request metrics."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if api is None:
        return Starlette(routes=routes)
    routes += rest.rest_routes(api, api.settings) + openapi.openapi_routes(VERSION)
    return Starlette(
        routes=routes,
        middleware=rest.http_middleware(api.settings, http_metrics or HttpMetrics(registry)),
        exception_handlers=rest.exception_handlers(),
    )


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """Bind the HTTP listening socket ourselves, so port 0 works and a taken port fails clearly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {error.strerror}") from error
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _EmbeddedUvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The application owns SIGTERM/SIGINT and drains both servers; uvicorn must not take them.
        yield


class HttpServer:
    """uvicorn driven as a task on our event loop, on a socket we bound."""

    def __init__(
        self,
        app: Starlette,
        sock: socket.socket,
        grace_seconds: float,
        ssl_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`ssl_options`: uvicorn's `ssl_*` settings for HTTPS (see `auth.uvicorn_ssl_options`)."""
        self._socket = sock
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, round(grace_seconds)),
            **dict(ssl_options or {}),
        )
        self._server = _EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # re-raise why it could not start
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()


class WorkerIdMiddleware:
    """ASGI middleware: every HTTP response carries the serving process id."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._header = (WORKER_HEADER.encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._header]
            await send(message)

        await self._app(scope, receive, tagged)
