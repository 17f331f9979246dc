"""The HTML pages on the HTTP port: the playground at `/`, the API reference at `/docs`, and their files.

Every script, style sheet and font a page loads is served from `/static/` by this server (the browser
libraries are vendored by `make web`): the pages work without a network. The playground's
Content-Security-Policy is `default-src 'self'` with nothing loosened: no inline script, no inline
style attribute, no eval (it typesets with `katex.render()` into DOM nodes). Swagger UI sets style
attributes and draws icons from `data:` URLs, so `/docs` has a policy of its own that allows those
two things and nothing else. With bearer tokens configured the pages and files stay open (they are
the same for everyone and hold no data): a page asks for a token and sends it with every API call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
STATIC_PREFIX = "/static/"
PAGE_PATHS = frozenset({"/", "/docs"})

_LOCKED_DOWN = "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
PLAYGROUND_CSP = f"default-src 'self'; {_LOCKED_DOWN}"
DOCS_CSP = f"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; {_LOCKED_DOWN}"
_SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@dataclass(frozen=True)
class Site:
    """What the pages say about the server that serves them."""

    playground: bool = True
    token_auth: bool = False
    grpc_port: int = 50051


def render(template: str, **values: str) -> str:
    """A template of `templates/` with each `{{name}}` replaced (values are ours, never user text)."""
    text = (TEMPLATES_DIR / template).read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def _page(html: str, policy: str) -> Callable[[Request], Awaitable[Response]]:
    headers = {"content-security-policy": policy, "cache-control": "no-cache", **_SECURITY_HEADERS}

    async def endpoint(request: Request) -> Response:
        return HTMLResponse(html, headers=headers)

    return endpoint


class _StaticHeaders:
    """Static files with `nosniff` and revalidation (StaticFiles sends ETag and Last-Modified), and
    without byte ranges: a request for 100 one-byte ranges of a script cost 27 ms of the server's
    CPU (a seek and a read on a thread per range), 110 health checks' worth, without a token (an
    attack hunt, 2026-12-07). The files are small and sent whole: `Range` is dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._headers = [(b"cache-control", b"no-cache")] + [
            (key.encode(), value.encode()) for key, value in _SECURITY_HEADERS.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers]
            await send(message)

        headers = scope.get("headers", [])
        if any(key == b"range" for key, _ in headers):
            scope = {**scope, "headers": [(key, value) for key, value in headers if key != b"range"]}
        await self._app(scope, receive, with_headers)


def page_routes(site: Site) -> list[BaseRoute]:
    """`/` (unless the playground is off), `/docs` and `/static/...`; the HTML is rendered once, here."""
    auth = "bearer" if site.token_auth else "none"
    link = '<a href="/">Playground</a> ' if site.playground else ""
    docs = render("docs.html", auth=auth, playground_link=link)
    routes: list[BaseRoute] = [
        Route("/docs", _page(docs, DOCS_CSP), methods=["GET"]),
        Mount(
            STATIC_PREFIX.rstrip("/"), app=_StaticHeaders(StaticFiles(directory=STATIC_DIR)), name="static"
        ),
    ]
    if site.playground:
        playground = render("playground.html", auth=auth, grpc_port=str(site.grpc_port))
        routes.insert(0, Route("/", _page(playground, PLAYGROUND_CSP), methods=["GET"]))
    return routes
