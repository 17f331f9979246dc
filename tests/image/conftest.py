"""Fixtures of the image test: the engine and image `make image` built, and one container of it.

The container runs as deploy/k8s/base says (tests/manifests.py); its size and build time are
reported at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.image.container import Container, Engine
from tests.manifests import KUSTOMIZATIONS, Pod

MB = 1_000_000


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.from_build()


@pytest.fixture(scope="session")
def pod() -> Pod:
    return Pod(KUSTOMIZATIONS[0])


@pytest.fixture(scope="module")
def container(engine: Engine, pod: Pod) -> Iterator[Container]:
    started = Container(engine, pod, f"chainrule-image-test-{os.getpid()}")
    try:
        started.wait_ready()
        yield started
    finally:
        print(started.logs()[-4000:])  # shown when a test failed
        started.remove()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    try:
        engine = Engine.from_build()
        size = engine.inspect_image()["Size"]
    except (AssertionError, pytest.fail.Exception):
        return
    built = engine.built
    terminalreporter.write_sep("-", "image")
    terminalreporter.write_line(
        f"{engine.image}: {size / MB:.0f} MB ({engine.command}; base {built['python_image']}, "
        f"runtime {built['runtime_image']}); last build {built['build_seconds']} s"
    )
