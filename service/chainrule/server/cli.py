"""The `chainrule` command: `serve` runs the server, `diff` prints a derivative locally."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chainrule import engine
from chainrule.engine import explain, verify
from chainrule.engine.errors import ChainruleError
from chainrule.server.compute import jobs
from chainrule.server.config import ConfigError, Settings


def _wrt_argument(text: str) -> tuple[str, int]:
    name, _, order = text.partition(":")
    try:
        return name, int(order) if order else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VARIABLE[:ORDER], got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainrule", description="Differentiation as a service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC (and HTTP) server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, CHAINRULE_HOST)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051, 0 picks one)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080, 0 picks one)")
    serve.add_argument("--ready-file", type=Path, help="write the bound ports here as JSON when ready")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="server processes sharing the ports (default: one per CPU; 1 serves in this process)",
    )
    diff = commands.add_parser("diff", help="print a derivative, computed locally")
    diff.add_argument("expression", help="e.g. 'sin(x^2)'")
    diff.add_argument(
        "--wrt",
        action="append",
        type=_wrt_argument,
        default=[],
        metavar="VAR[:ORDER]",
        help="differentiate with respect to VAR, ORDER times (repeat for mixed partials)",
    )
    diff.add_argument("--latex", action="store_true", help="also print LaTeX")
    diff.add_argument("--explain", action="store_true", help="print the derivation step by step")
    diff.add_argument("--verify", action="store_true", help="check the derivative numerically")
    diff.add_argument("--simplify", choices=[s.name.lower() for s in engine.Simplification], default="fast")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        settings = Settings.from_environ(
            host=getattr(options, "host", None),
            grpc_port=getattr(options, "grpc_port", None),
            http_port=getattr(options, "http_port", None),
            workers=getattr(options, "workers", None),
        )
    except ConfigError as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 2
    if options.command == "serve":
        return _serve(settings, options.ready_file)
    return _diff(settings, options)


def _serve(settings: Settings, ready_file: Path | None) -> int:
    from chainrule.server.app import serve  # noqa: PLC0415 - keeps `diff` free of grpc start-up
    from chainrule.server.logs import configure_logging  # noqa: PLC0415
    from chainrule.server.supervisor import run_supervisor, server_process_count  # noqa: PLC0415
    from chainrule.server.transport.grpc_server import PortInUseError  # noqa: PLC0415

    if server_process_count(settings) > 1:
        return run_supervisor(settings, ready_file)
    configure_logging(settings)
    try:
        serve(settings, ready_file)
    except PortInUseError as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 1
    return 0


def _diff(settings: Settings, options: argparse.Namespace) -> int:
    try:
        result = jobs.derive(
            options.expression,
            tuple(options.wrt),
            engine.Simplification[options.simplify.upper()],
            options.latex,
            jobs.Limits.from_settings(settings),
        )
    except ChainruleError as error:
        print(f"chainrule: {error.message}", file=sys.stderr)
        return 1
    if options.explain or options.verify:
        return _diff_extras(settings, options, result.text)
    print(result.text)
    if options.latex:
        print(result.latex)
    return 0


def _diff_extras(settings: Settings, options: argparse.Namespace, text: str) -> int:
    limits = jobs.Limits.from_settings(settings)
    try:
        expression = jobs.parse(options.expression, limits)
        wrt = tuple(options.wrt)
        mode = engine.Simplification[options.simplify.upper()]
        derivative = engine.differentiate(expression, wrt, mode, limits.engine)
        if options.explain:
            print(explain.format_steps(explain.explain(expression, wrt, derivative, limits=limits.engine)))
            print()
        print(f"derivative: {text}")
        if options.latex:
            print(f"latex: {engine.to_latex(derivative)}")
        if options.verify:
            print(verify.format_check(verify.verify(expression, wrt, derivative)))
    except ChainruleError as error:
        print(f"chainrule: {error.message}", file=sys.stderr)
        return 1
    return 0
