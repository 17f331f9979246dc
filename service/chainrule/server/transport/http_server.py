"""The HTTP transport: health and metrics endpoints (REST routes join them), served by uvicorn.

It runs in the same process and event loop as the gRPC server and shares its API layer, cache and
metrics registry. Starlette + uvicorn: small, typed, ASGI, well kept, and uvicorn can be driven as
a coroutine on a socket we bind ourselves (port 0 in tests, SO_REUSEPORT in multi-process mode).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainrule.server.api import ChainruleApi
from chainrule.server.config import Settings
from chainrule.server.metrics import HttpMetrics
from chainrule.server.transport import connections, openapi, pages, rest
from chainrule.server.transport.auth import Callers
from chainrule.server.transport.drain import Drain, DrainMiddleware
from chainrule.server.version import VERSION

log = logging.getLogger(__name__)

# Which server process (of `--workers N`) answered: an HTTP header here, gRPC trailing metadata
# (app.py). The name predates "server process" and stays: clients and dashboards read it.
SERVER_PROCESS_HEADER = "x-chainrule-worker"


class Exposition:
    """The registry's text exposition, made off the event loop, one at a time, at most every
    `SPACING_SECONDS`; each scrape gets one begun after it arrived, shared with the scrapes that
    arrived before that began. With `--workers` above 1 a scrape reads every process's metric files
    (4 to 10 ms): an attack hunt's 50 connections scraping from one address, made on the loop, kept
    other callers' gRPC calls waiting up to 2.2 s."""

    SPACING_SECONDS = 0.25

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._lock = asyncio.Lock()
        self._body = b""
        self._began = self._ended = -math.inf
        # Its own thread: the loop's default executor may be busy with numeric work.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")

    async def latest(self) -> bytes:
        arrived = time.monotonic()
        async with self._lock:
            if self._began >= arrived:
                return self._body
            await asyncio.sleep(max(0.0, self._ended + self.SPACING_SECONDS - time.monotonic()))
            self._began = time.monotonic()
            loop = asyncio.get_running_loop()
            self._body = await loop.run_in_executor(self._thread, generate_latest, self._registry)
            self._ended = time.monotonic()
            return self._body

    def close(self) -> None:
        """Let the thread go: an idle pool thread is not a daemon, and the exit waited for it (0.5 s,
        and a warning that work was still running on it)."""
        self._thread.shutdown(wait=False, cancel_futures=True)


def create_http_app(
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    *,
    api: ChainruleApi | None = None,
    http_metrics: HttpMetrics | None = None,
    callers: Callers | None = None,
    drain: Drain | None = None,
    site: pages.Site | None = None,
) -> Starlette:
    """The ASGI application: `/healthz` (alive), `/readyz` (ready to serve), `/metrics`; with an
    `api`, the REST routes, `/openapi.json`, the pages `/` and `/docs` with their `/static/` files
    (`site` describes the server to them; by default, from the settings), and HTTP request metrics.
    `callers` identifies who REST requests come from (fair shares of compute)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    exposition = Exposition(registry)

    async def metrics(request: Request) -> Response:
        return Response(await exposition.latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if api is None:
        application = Starlette(routes=routes)
    else:
        site = site or pages.Site(playground=api.settings.playground, grpc_port=api.settings.grpc_port)
        routes += rest.rest_routes(api, api.settings, callers)
        routes += openapi.openapi_routes(VERSION, site.playground) + pages.page_routes(site)
        middleware = rest.http_middleware(api.settings, http_metrics or HttpMetrics(registry))
        if drain is not None:
            # Inside the metrics (after the access log and the metrics, `rest.http_middleware`):
            # refusals and cancelled calls are counted with their 503.
            middleware.insert(2, Middleware(DrainMiddleware, drain=drain))
        application = Starlette(
            routes=routes, middleware=middleware, exception_handlers=rest.exception_handlers()
        )
    # What `HttpServer.stop` calls once it has stopped serving the application (the lifespan
    # protocol is off: uvicorn does not drive the application's start and stop).
    application.state.on_stop = [exposition.close]
    return _without_slash_redirects(application)


def _without_slash_redirects(application: Starlette) -> Starlette:
    """An unknown path is a 404 Status, `/v1/info/` too: Starlette's default answered it with an empty
    307 to a Location built from the caller's Host header, always http:// (an independent tester)."""
    application.router.redirect_slashes = False
    return application


LISTEN_BACKLOG = 1024
# Connections asyncio accepts in one turn of the event loop. It takes the listen backlog for this and
# uvicorn passes its own (2,048): under a flood each turn then accepted thousands of connections, at
# ~0.15 ms each, before the loop answered anything else (health checks waited seconds). A small
# batch lets the loop serve between batches; the kernel's queue keeps LISTEN_BACKLOG (set again
# after uvicorn listened with the batch size).
ACCEPT_BATCH = 32


def bind_socket(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind the HTTP listening socket ourselves, so port 0 works and a taken port fails clearly.
    `listen=False`: bound only, `HttpServer.start` listens (no connection is queued before then)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and accepted
    # connections inherit it. Without it Nagle meets delayed ACKs: ~40 ms per reply on kept-alive connections.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {error.strerror}") from error
    if listen:
        sock.listen(LISTEN_BACKLOG)
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
        settings: Settings,
        ssl_options: Mapping[str, Any] | None = None,
        *,
        closed_by_bound: Callable[[str], None] | None = None,
        on_queued: Callable[[], None] | None = None,
        on_turn_refused: Callable[[], None] | None = None,
    ) -> None:
        """`ssl_options`: uvicorn's `ssl_*` settings for HTTPS (see `auth.uvicorn_ssl_options`);
        `closed_by_bound` counts connections a bound closed, `on_queued` requests made to wait for
        their caller's turn and `on_turn_refused` those refused for waiting too long (see
        connections.py)."""
        self._socket = sock
        protocol = connections.bounded_protocol(
            settings.header_timeout_seconds,
            settings.max_connections,
            settings.connections_per_caller,
            settings.max_http_requests_per_caller,
            turn_seconds=settings.http_turn_seconds,
            retry_after_seconds=settings.retry_after_seconds,
            closed_by_bound=closed_by_bound or (lambda _: None),
            on_queued=on_queued or (lambda: None),
            on_turn_refused=on_turn_refused or (lambda: None),
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            log_config=None,
            access_log=False,
            lifespan="off",
            # No WebSockets: uvicorn answered an upgrade request itself (an empty 403 or 400, no
            # Status body); without them the request is served as the HTTP request it also is.
            ws="none",
            # The caller is the TCP peer (auth.Callers): uvicorn's default trusts X-Forwarded-For
            # from 127.0.0.1, so a client on the same host charged its work to any address it
            # named, another caller's included (an attack hunt: the victim's calls refused 5 times).
            proxy_headers=False,
            backlog=ACCEPT_BATCH,
            timeout_keep_alive=settings.http_idle_seconds,  # type: ignore[arg-type]  # a float works
            # The application has already waited the grace period for calls in flight (drain.py)
            # and `stop` cancels what still runs; this only lets connections close (their last
            # answers flushed), not a client that reads nothing: the grace bounds the whole exit.
            timeout_graceful_shutdown=0.25,  # type: ignore[arg-type]  # a float works
            **dict(ssl_options or {}),
        )
        self._server = _EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None
        self._on_stop: list[Callable[[], None]] = getattr(app.state, "on_stop", [])

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    async def start(self) -> None:
        if not self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            self._socket.listen(LISTEN_BACKLOG)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # re-raise why it could not start
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        self._socket.listen(LISTEN_BACKLOG)  # uvicorn listened with ACCEPT_BATCH

    async def stop(self) -> None:
        """Stop serving: calls still running are cancelled (drain.py answers them), then uvicorn exits."""
        _UVICORN_ERRORS.addFilter(_not_cancelled)
        for task in list(self._server.server_state.tasks):
            task.cancel()
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()
        for stop in self._on_stop:
            stop()


_UVICORN_ERRORS = logging.getLogger("uvicorn.error")


def _not_cancelled(record: logging.LogRecord) -> bool:
    """Drops uvicorn's "Exception in ASGI application" for a task `stop` cancelled: a reply its
    client never read, ended as the drain does, is no error of the application (an attack hunt:
    1,960 tracebacks, 10.7 MB of log, formatted on the loop while the grace ran out)."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


class ServerProcessMiddleware:
    """ASGI middleware: every HTTP response carries the id of the server process that served it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._header = (SERVER_PROCESS_HEADER.encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._header]
            await send(message)

        await self._app(scope, receive, tagged)
