"""The engine is a library of its own: importing it (or the CLI's local commands) loads no server stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_STACK = ("grpc", "google", "starlette", "uvicorn", "prometheus_client")


@pytest.mark.parametrize("module", ["chainrule.engine", "chainrule.server.cli"])
def test_importing_loads_no_server_dependency(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_STACK!r})))\n"
        "print(sorted(m for m in sys.modules if m.startswith('chainrule.server.')))"
    )
    found, server = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert found == "[]"
    if module == "chainrule.engine":
        assert server == "[]"
