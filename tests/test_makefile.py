"""`make run`: flags only for what the command line sets, so CHAINRULE_* in the environment count."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def run_command(*variables: str, environ: dict[str, str] | None = None) -> str:
    """The command `make run` would start (make -n), with the set-up stamp taken as fresh."""
    # Not the variables of a make that runs this test (`make test`): this is a make of its own.
    inherited = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    completed = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "run", *variables],
        cwd=ROOT,
        env={**inherited, **(environ or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip().splitlines()[-1]


def test_defaults_are_the_servers() -> None:
    assert run_command().split() == [".venv/bin/chainrule", "serve"]


def test_command_line_variables_become_flags() -> None:
    command = run_command("HOST=0.0.0.0", "GRPC_PORT=50052", "HTTP_PORT=8081")
    assert command.split()[2:] == ["--host", "0.0.0.0", "--grpc-port", "50052", "--http-port", "8081"]


def test_the_environment_is_left_to_the_server() -> None:
    # HOST is often set by shells: from the environment it must not override CHAINRULE_HOST.
    command = run_command(environ={"HOST": "somewhere", "CHAINRULE_HOST": "0.0.0.0", "GRPC_PORT": "1"})
    assert command.split() == [".venv/bin/chainrule", "serve"]
