"""`chainrule serve`: one server process, or a supervisor of several (`--workers`)."""

from __future__ import annotations

import sys
from pathlib import Path

from chainrule.server import app
from chainrule.server.config import ConfigError, Settings
from chainrule.server.logs import configure_logging
from chainrule.server.supervisor import run_supervisor, server_process_count
from chainrule.server.transport.grpc_server import PortInUseError


def serve(settings: Settings, ready_file: Path | None) -> int:
    """Serve until a signal; the exit status."""
    if server_process_count(settings) > 1:
        return run_supervisor(settings, ready_file)
    configure_logging(settings)
    try:
        app.serve(settings, ready_file)  # exits the process once drained
    except (PortInUseError, ConfigError, OSError) as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 1
