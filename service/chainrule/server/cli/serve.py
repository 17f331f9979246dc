"""`chainrule serve`: one server process, or a supervisor of several (`--workers`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from chainrule.server.app import Application
from chainrule.server.config import ConfigError, Settings
from chainrule.server.logs import configure_logging
from chainrule.server.supervisor import run_supervisor, worker_count
from chainrule.server.transport.grpc_server import PortInUseError


def serve(settings: Settings, ready_file: Path | None) -> int:
    """Serve until a signal; the exit status."""
    if worker_count(settings) > 1:
        return run_supervisor(settings, ready_file)
    configure_logging(settings)

    async def run() -> None:
        await Application(settings).run(ready_file)

    try:
        asyncio.run(run())
    except (PortInUseError, ConfigError, OSError) as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 1
    return 0
