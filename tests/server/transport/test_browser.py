"""The playground and /docs in a real browser: headless Chromium, driven by Selenium, on `chainrule serve`.

Three servers, started as `make run` starts one: default settings, bearer tokens on, and
`CHAINRULE_PLAYGROUND=false`. Chromium resolves no host but 127.0.0.1, so a page that needed the
network would fail, and every test also checks that no request left the page's origin and that the
console has no error. Screenshots of each state go to build/browser/ for review. Needs Debian's
`chromium` and `chromium-driver` (make system-deps): skipped with the reason when they are missing,
except under CI (`CI=true`), where that fails the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from chainrule.server.transport import examples

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium and chromium-driver are not installed; CI must install them (make system-deps)")
    pytest.skip(
        "chromium or chromedriver not found (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 (only once the browser is known to be there)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "build" / "browser"
CHAINRULE = Path(sys.executable).parent / "chainrule"
TOKEN = "browser-test-token"
WAIT_SECONDS = 15.0
# Chromium must not reach out on its own (updates, sync, QUIC probes), and can resolve only loopback;
# HOST is a name for it that is not localhost, where pages must behave as on a real server.
HOST = "chainrule.test"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--host-resolver-rules=MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,1000",
]
# The stroke colours of f, f' and f'' in playground.js.
SERIES_RGB = [(0x1D, 0x4E, 0x89), (0xD1, 0x49, 0x5B), (0x2A, 0x9D, 0x4B)]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    ready: Path
    origin: str = ""
    grpc_port: int = 0


def _start(folder: Path, **environ: str) -> Server:
    ready = folder / "ready.json"
    command = [str(CHAINRULE), "serve", "--workers", "1", "--grpc-port", "0", "--http-port", "0"]
    env = {**os.environ, "CHAINRULE_GRACE_SECONDS": "2", **environ}
    process = subprocess.Popen([*command, "--ready-file", str(ready)], env=env)
    return Server(process, ready)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while not server.ready.exists():
        assert server.process.poll() is None, f"chainrule serve exited with {server.process.returncode}"
        assert time.monotonic() < deadline, "chainrule serve was not ready within 60 s"
        time.sleep(0.05)
    ports = json.loads(server.ready.read_text())
    server.origin = f"http://127.0.0.1:{ports['http_port']}"
    server.grpc_port = ports["grpc_port"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """The three servers, started together (each warms its symbolic workers meanwhile)."""
    started = {
        "default": _start(tmp_path_factory.mktemp("default")),
        "auth": _start(
            tmp_path_factory.mktemp("auth"), CHAINRULE_AUTH_TOKENS=TOKEN, CHAINRULE_SYMBOLIC_WORKERS="0"
        ),
        "off": _start(
            tmp_path_factory.mktemp("off"), CHAINRULE_PLAYGROUND="false", CHAINRULE_SYMBOLIC_WORKERS="0"
        ),
    }
    try:
        for server in started.values():
            _wait_ready(server)
        yield started
    finally:
        for server in started.values():
            server.process.terminate()
        for server in started.values():
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser, with the console and the network checked after the test."""
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


# --- helpers ------------------------------------------------------------------------------------


def wait(driver: webdriver.Chrome, condition: Any, what: str) -> Any:
    return WebDriverWait(driver, WAIT_SECONDS).until(condition, message=what)


def by_test_id(driver: webdriver.Chrome, name: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    wait(
        driver,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true",
        "page ready",
    )


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    """The whole page, not only the window, into build/browser/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, min(max(height, 600), 4000))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def assert_same_origin(driver: webdriver.Chrome, origin: str) -> None:
    """Every resource the page loaded, scripts, styles, fonts and API calls, came from `origin`."""
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert names, "the page loaded no resources: the check would prove nothing"
    strangers = [name for name in names if f"{urlsplit(name).scheme}://{urlsplit(name).netloc}" != origin]
    assert not strangers, strangers


def differentiate(driver: webdriver.Chrome, text: str) -> WebElement:
    box = by_test_id(driver, "expression")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    derivative = by_test_id(driver, "derivative")
    wait(driver, lambda d: by_test_id(d, "plot").get_attribute("data-series"), f"the plot of {text}")
    return derivative


def series_pixels(driver: webdriver.Chrome) -> list[int]:
    """How many pixels of the plot's canvas have each series' colour (about: lines are antialiased)."""
    script = """
    const canvas = document.querySelector('[data-testid="plot"] canvas');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    return arguments[0].map(([r, g, b]) => {
      let count = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - r) < 24 && Math.abs(data[i + 1] - g) < 24 && Math.abs(data[i + 2] - b) < 24
            && data[i + 3] > 200) count++;
      }
      return count;
    });
    """
    counts: list[int] = driver.execute_script(script, [list(rgb) for rgb in SERIES_RGB])
    return counts


# --- the playground -----------------------------------------------------------------------------


def test_a_typed_expression_is_differentiated_typeset_explained_and_plotted(
    page: webdriver.Chrome, servers: dict[str, Server]
) -> None:
    origin = servers["default"].origin
    open_page(page, origin + "/")
    derivative = differentiate(page, "sin(x^2)")
    assert derivative.find_elements(By.CLASS_NAME, "katex"), "typeset by KaTeX"
    assert "cos" in derivative.text
    assert page.find_element(By.ID, "derivative-text").text == "2*x*cos(x^2)"
    assert by_test_id(page, "verdict").text == "verified"
    steps = by_test_id(page, "steps")
    assert "chain rule" in steps.text
    layer = steps.find_element(By.CSS_SELECTOR, ".chain .layer")
    assert "cos" in layer.text and "outer f(u)" in layer.text
    plot = by_test_id(page, "plot")
    canvas = plot.find_element(By.TAG_NAME, "canvas")
    assert canvas.size["width"] > 300 and canvas.size["height"] > 150, canvas.size
    assert plot.get_attribute("data-series") == "2"
    legend = [label.text for label in plot.find_elements(By.CSS_SELECTOR, ".u-legend .u-series .u-label")]
    assert legend == ["x", "f", "f'"]
    f, f_prime, f_second = series_pixels(page)
    assert f > 200 and f_prime > 200 and f_second == 0, (f, f_prime, f_second)
    screenshot(page, "playground")
    page.find_element(By.ID, "second").click()  # f'' too: one more batched Evaluate
    wait(page, lambda d: plot.get_attribute("data-series") == "3", "a third curve")
    assert series_pixels(page)[2] > 200
    assert_same_origin(page, origin)


def test_an_unclosed_call_shows_the_error_at_its_position_as_you_type(
    page: webdriver.Chrome, servers: dict[str, Server]
) -> None:
    origin = servers["default"].origin
    open_page(page, origin + "/")
    box = by_test_id(page, "expression")
    box.send_keys("sin(x")  # no Enter: the check runs as the text is typed
    error = by_test_id(page, "error")
    wait(page, lambda d: error.is_displayed(), "the parse error")
    caret_line, marker = page.find_element(By.ID, "error-caret").text.split("\n")
    # The caret points at the parenthesis that is never closed, as the message says.
    assert (caret_line, marker) == ("sin(x", " " * 3 + "^")
    assert "'(' at 3 is never closed" in error.text
    assert not by_test_id(page, "derivative").is_displayed()
    screenshot(page, "parse-error")
    box.send_keys(")")
    wait(page, lambda d: not error.is_displayed(), "the error to go once the text parses")
    assert "sin" in page.find_element(By.ID, "preview").text
    assert_same_origin(page, origin)


def test_gaps_sliders_and_a_link_that_reproduces_the_view(
    page: webdriver.Chrome, servers: dict[str, Server]
) -> None:
    origin = servers["default"].origin
    open_page(page, origin + "/")
    differentiate(page, "log(x) y")
    plot = by_test_id(page, "plot")
    assert int(plot.get_attribute("data-gaps") or 0) > 0  # log(x) is not real for x <= 0
    assert "gaps" in page.find_element(By.ID, "plot-note").text
    slider = page.find_element(By.CSS_SELECTOR, '#sliders input[data-variable="y"]')
    before = page.current_url
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    wait(page, lambda d: "at=y%3A1.2" in d.current_url or "at=y:1.2" in d.current_url, "y fixed at 1.2")
    assert page.current_url != before
    shown = page.find_element(By.ID, "derivative-text").text
    link = by_test_id(page, "permalink").get_attribute("href")
    screenshot(page, "plot-with-gaps")
    assert link is not None
    open_page(page, link)
    wait(page, lambda d: d.find_element(By.ID, "derivative-text").text == shown, "the same derivative")
    assert by_test_id(page, "expression").get_attribute("value") == "log(x) y"
    assert (
        page.find_element(By.CSS_SELECTOR, '#sliders input[data-variable="y"]').get_attribute("value")
        == "1.2"
    )
    assert_same_origin(page, origin)


def test_the_code_shown_sends_the_same_request(page: webdriver.Chrome, servers: dict[str, Server]) -> None:
    server = servers["default"]
    open_page(page, f"{server.origin}/?e=x%5E3%20y%5E2&wrt=x:1,y:2&s=fast&explain=0&verify=0")
    wait(page, lambda d: d.find_element(By.ID, "derivative-text").text, "the derivative from the link")
    shown = page.find_element(By.ID, "derivative-text").text
    assert shown == "6*x^2"
    python_code = page.find_element(By.ID, "snippet-python").get_attribute("textContent") or ""
    command = [sys.executable, "-c", python_code]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == shown
    curl = page.find_element(By.ID, "snippet-curl").get_attribute("textContent") or ""
    assert curl.startswith(f"curl -s {server.origin}/v1/differentiate")
    body = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
    reply = httpx.post(f"{server.origin}/v1/differentiate", json=body, timeout=30).json()
    assert reply["derivative"] == shown
    typescript = page.find_element(By.ID, "snippet-typescript").get_attribute("textContent") or ""
    assert f'new ChainruleClient("127.0.0.1:{server.grpc_port}")' in typescript
    assert '{ wrt: {"x":1,"y":2}, simplification: "fast", latex: true }' in typescript
    assert_same_origin(page, server.origin)


# --- the API reference --------------------------------------------------------------------------


def test_docs_lists_every_route_and_try_it_out_calls_the_server(
    page: webdriver.Chrome, servers: dict[str, Server]
) -> None:
    # Under a name that is not localhost, as on a real server (Swagger UI treats localhost apart).
    origin = servers["default"].origin.replace("127.0.0.1", HOST)
    page.get(origin + "/docs")
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 5, "Swagger UI's operations")
    listed = {
        (block.find_element(By.CLASS_NAME, "opblock-summary-method").text.lower(),
         block.find_element(By.CLASS_NAME, "opblock-summary-path").text.replace("\u200b", ""))
        for block in page.find_elements(By.CSS_SELECTOR, ".opblock")
    }  # fmt: skip
    document = httpx.get(servers["default"].origin + "/openapi.json", timeout=30).json()
    assert listed == {(verb, path) for path, item in document["paths"].items() for verb in item}
    operation = page.find_element(By.ID, "operations-DifferentiationService-Parse")
    # The toggle itself: a click in the middle of the summary row may land on its long description.
    operation.find_element(By.CLASS_NAME, "opblock-summary-control").click()
    wait(page, lambda d: operation.find_elements(By.CLASS_NAME, "try-out__btn"), "the Try it out button")
    operation.find_element(By.CLASS_NAME, "try-out__btn").click()
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()
    live = wait(
        page, lambda d: operation.find_elements(By.CSS_SELECTOR, ".live-responses-table .response"), "a reply"
    )
    assert live[0].find_element(By.CLASS_NAME, "response-col_status").text.startswith("200")
    assert '"canonical": "sin(x^2)"' in live[0].text
    screenshot(page, "docs")
    assert_same_origin(page, origin)


# --- with tokens, and without the playground ----------------------------------------------------


def test_with_tokens_the_page_asks_for_one_and_sends_it(
    browser: webdriver.Chrome, servers: dict[str, Server]
) -> None:
    origin = servers["auth"].origin
    assert httpx.post(origin + "/v1/parse", json={}, timeout=30).status_code == 401
    assert httpx.get(origin + "/", timeout=30).status_code == 200  # the page is open, its calls are not
    open_page(browser, origin + "/")
    form = browser.find_element(By.ID, "token-form")
    assert form.is_displayed()
    screenshot(browser, "token-prompt")
    by_test_id(browser, "token").send_keys("not-the-token", Keys.ENTER)
    by_test_id(browser, "expression").send_keys("x^3", Keys.ENTER)
    wait(browser, lambda d: form.is_displayed(), "the form again once the token is refused")
    assert "not valid" in browser.find_element(By.ID, "token-problem").text
    by_test_id(browser, "token").send_keys(TOKEN, Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.ID, "derivative-text").text == "3*x^2", "the derivative")
    python_code = browser.find_element(By.ID, "snippet-python").get_attribute("textContent") or ""
    assert 'token=os.environ["CHAINRULE_TOKEN"]' in python_code
    assert_same_origin(browser, origin)


def test_with_the_playground_off_root_is_absent_and_docs_stay(servers: dict[str, Server]) -> None:
    origin = servers["off"].origin
    assert httpx.get(origin + "/", timeout=30).status_code == 404
    docs = httpx.get(origin + "/docs", timeout=30)
    assert docs.status_code == 200 and 'href="/"' not in docs.text
    assert "/" not in httpx.get(origin + "/openapi.json", timeout=30).json()["paths"]
    assert set(examples.EXAMPLES) <= {
        op["operationId"]
        for item in httpx.get(origin + "/openapi.json", timeout=30).json()["paths"].values()
        for op in item.values()
    }
