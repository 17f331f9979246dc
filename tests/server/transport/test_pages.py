"""The pages and their files without a browser: policies, no inline code, everything served, auth, packaging.

What a browser does with them is tests/server/transport/test_browser.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware

from chainrule.server.api import ChainruleApi
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.config import Settings
from chainrule.server.transport import pages
from chainrule.server.transport.auth import AuthMiddleware, TokenChecker
from chainrule.server.transport.http_server import create_http_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "pages-token"


def client_for(site: pages.Site) -> httpx.AsyncClient:
    api = ChainruleApi(make_settings(), InlineExecutor(), InlineExecutor())
    app = create_http_app(CollectorRegistry(), lambda: True, api=api, site=site)
    if site.token_auth:  # as app.py installs it
        app.user_middleware.append(Middleware(AuthMiddleware, checker=TokenChecker((TOKEN.encode(),))))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(pages.Site(grpc_port=4242)) as opened:
        yield opened


class _Markup(HTMLParser):
    """What a page loads (src and href) and any inline code it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        names = dict(attrs)
        if tag == "style" or "style" in names or any(name.startswith("on") for name in names):
            self.inline.append(f"<{tag} {attrs}>")
        if tag == "script" and not names.get("src"):
            self.inline.append("<script> without src")
        for name in ("src", "href"):
            if names.get(name):
                self.references.append(str(names[name]))


def markup(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    return parser


async def test_the_playground_has_the_strict_policy_and_no_inline_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'self';")
    assert "unsafe" not in policy and "data:" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    page = markup(response.text)
    assert page.inline == []
    assert 'data-auth="none"' in response.text and 'data-grpc-port="4242"' in response.text


async def test_docs_loosens_only_what_swagger_ui_needs(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src" not in policy and "unsafe-eval" not in policy  # scripts stay 'self' only
    assert "style-src 'self' 'unsafe-inline'" in policy and "img-src 'self' data:" in policy
    assert markup(response.text).inline == []
    assert "/static/vendor/swagger-ui-dist/swagger-ui-bundle.js" in markup(response.text).references


def test_the_scripts_never_evaluate_text_or_write_html() -> None:
    for script in sorted(pages.STATIC_DIR.glob("*.js")):
        source = script.read_text(encoding="utf-8")
        for banned in ("eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML", '"style"'):
            assert banned not in source, f"{script.name} uses {banned}"


async def test_every_file_a_page_loads_is_served_from_here(client: httpx.AsyncClient) -> None:
    seen: set[str] = set()
    for path in ("/", "/docs"):
        references = markup((await client.get(path)).text).references
        local = [ref for ref in references if ref.startswith(pages.STATIC_PREFIX)]
        assert local and all(ref.startswith("/") for ref in references), references  # no other host
        seen.update(local)
    for reference in sorted(seen):
        response = await client.get(reference)
        assert response.status_code == 200, reference
        assert response.headers["x-content-type-options"] == "nosniff"
    imports = re.findall(r'from "\./([\w.]+)"', (pages.STATIC_DIR / "playground.js").read_text())
    assert imports and all((pages.STATIC_DIR / name).is_file() for name in imports)


@pytest.mark.parametrize(
    "ranges", ["bytes=0-0", "bytes=" + ", ".join(f"{2 * k}-{2 * k}" for k in range(100))]
)
async def test_static_files_are_sent_whole_whatever_ranges_are_asked(
    client: httpx.AsyncClient, ranges: str
) -> None:
    """100 one-byte ranges cost 27 ms of CPU a request (a seek and a read on a thread each)."""
    path = "/static/playground.js"
    response = await client.get(path, headers={"range": ranges})
    assert response.status_code == 200
    assert response.content == (pages.STATIC_DIR / "playground.js").read_bytes()


def test_katex_finds_a_woff2_for_every_font_it_declares() -> None:
    # Browsers take the first format they support: woff2 everywhere current, so only woff2 ships.
    css = (pages.STATIC_DIR / "vendor" / "katex" / "katex.min.css").read_text()
    fonts = re.findall(r"url\((fonts/[\w-]+\.woff2)\)", css)
    assert len(fonts) >= 15
    missing = [font for font in fonts if not (pages.STATIC_DIR / "vendor" / "katex" / font).is_file()]
    assert missing == []


async def test_with_tokens_the_pages_are_open_and_the_calls_are_not() -> None:
    async with client_for(pages.Site(token_auth=True)) as client:
        for path in ("/", "/docs", "/static/playground.js", "/static/vendor/katex/katex.min.css"):
            assert (await client.get(path)).status_code == 200, path
        assert 'data-auth="bearer"' in (await client.get("/")).text
        assert (await client.get("/openapi.json")).status_code == 401
        assert (await client.post("/v1/parse", json={})).status_code == 401
        assert (await client.post("/static/playground.js")).status_code == 401  # only reading is open
        answered = await client.post(
            "/v1/parse", json={"expression": "x"}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert answered.json()["canonical"] == "x"


async def test_with_the_playground_off_root_is_not_found() -> None:
    async with client_for(pages.Site(playground=False)) as client:
        response = await client.get("/")
        assert response.status_code == 404
        assert response.json()["message"] == "no route for GET /"
        docs = await client.get("/docs")
        assert docs.status_code == 200 and 'href="/"' not in docs.text
        assert "/" not in (await client.get("/openapi.json")).json()["paths"]


def test_the_setting_turns_the_playground_off() -> None:
    assert Settings.from_environ({}).playground is True
    assert Settings.from_environ({"CHAINRULE_PLAYGROUND": "false"}).playground is False


def test_the_server_wheel_ships_every_page_file(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("chainrule-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    package = Path("chainrule") / "server" / "transport"
    wanted = [
        str(package / path.relative_to(pages.HERE))
        for folder in (pages.STATIC_DIR, pages.TEMPLATES_DIR)
        for path in folder.rglob("*")
        if path.is_file()
    ]
    assert len(wanted) > 30
    assert [name for name in wanted if name not in shipped] == []
