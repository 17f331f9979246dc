"""Draining the HTTP side: refuse new API calls, let the ones in flight finish, answer the rest cleanly.

On SIGTERM the server keeps its HTTP port open for the grace period, so `/readyz` answers 503 (load
balancers and kubelets see "not ready" instead of a refused connection) and `/healthz` and
`/metrics` keep answering. New API calls get UNAVAILABLE (503, `google.rpc.Status`, Retry-After);
calls already running may finish. A call still running when the grace ends is cancelled, and its
caller gets the same Status body (never uvicorn's plain-text 500).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainrule.engine.errors import Unavailable
from chainrule.server.transport.status import error_response

# API calls are refused while draining; probes, metrics and pages keep being served.
_API_PREFIX = "/v1/"


class Drain:
    """The HTTP calls in flight, and whether the server is draining (shared by middleware and app)."""

    def __init__(self, retry_after_seconds: float = 1.0) -> None:
        self.draining = False
        self.in_flight = 0
        self.retry_after_seconds = retry_after_seconds

    def begin(self) -> None:
        self.draining = True

    def _enter(self) -> None:
        self.in_flight += 1

    def _leave(self) -> None:
        self.in_flight -= 1


class DrainMiddleware:
    """Pure ASGI: counts calls in flight, refuses new ones while draining, answers cancelled ones."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(_API_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await _unavailable("the server is shutting down; retry another replica", self.drain)(
                scope, receive, send
            )
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.drain._enter()
        try:
            await self.app(scope, receive, tracking)
        except asyncio.CancelledError:
            if not (self.drain.draining and not started):
                raise
            # The grace period ended with this call still running: a Status body, not a bare 500.
            await _unavailable("the server stopped before this call finished; retry", self.drain)(
                scope, receive, send
            )
        finally:
            self.drain._leave()


def _unavailable(message: str, drain: Drain) -> ASGIApp:
    return error_response(
        Unavailable(message, reason="DRAINING", retry_after_seconds=drain.retry_after_seconds)
    )
