"""A real Prometheus for tests: the Debian package's binary, scraping one target with the deploy config.

The scrape config is `deploy/prometheus/prometheus.yml` with its chainrule job pointed at the
target and a short scrape interval. `require()` skips the calling module with the reason when the
binary is missing, except under CI (`CI=true`), where a missing binary fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "prometheus.yml"
JOB = "chainrule"


def require() -> str:
    """The prometheus binary; skips (or, under CI, fails) the calling module without it."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("prometheus is not installed; CI must install it (apt-get install -y prometheus)")
        pytest.skip("prometheus binary not found (apt-get install -y prometheus)", allow_module_level=True)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_config(target: str, folder: Path, metrics_path: str | None = None) -> Path:
    """The deploy config, scraping `target` every 200 ms; its rule files copied along."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(
        {"scrape_interval": "200ms", "scrape_timeout": "200ms", "evaluation_interval": "1s"}
    )
    for rule_file in config.get("rule_files", []):
        shutil.copy(CONFIG.parent / rule_file, folder / rule_file)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    job["static_configs"] = [{"targets": [target]}]
    if metrics_path is not None:
        job["metrics_path"] = metrics_path
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def running(target: str, folder: Path, metrics_path: str | None = None) -> Iterator[str]:
    """A Prometheus scraping `target`, on a free loopback port; yields its base URL."""
    config = scrape_config(target, folder, metrics_path)
    port = free_port()
    log_path = folder / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                require(),
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)
    if process.returncode not in (0, -15):
        print(log_path.read_text())


async def wait_ready(client: httpx.AsyncClient, base: str) -> None:
    for _ in range(300):
        try:
            if (await client.get(f"{base}/-/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("prometheus did not become ready")


async def query(client: httpx.AsyncClient, base: str, promql: str) -> float | None:
    response = await client.get(f"{base}/api/v1/query", params={"query": promql})
    body = response.json()
    assert body["status"] == "success", body
    results = body["data"]["result"]
    return float(results[0]["value"][1]) if results else None


async def eventually(client: httpx.AsyncClient, base: str, promql: str, expected: float) -> None:
    """Poll until Prometheus has scraped a value equal to `expected` (scrapes run every 200 ms)."""
    seen = None
    for _ in range(150):
        seen = await query(client, base, promql)
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{promql}: expected {expected}, last seen {seen}")
