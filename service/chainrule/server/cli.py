"""The `chainrule` command: `serve` runs the server; `diff`, `jac` and `series` compute locally."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chainrule import engine
from chainrule.engine import explain, implicit, parsing, verify
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
    diff.add_argument(
        "--dependent",
        metavar="VAR",
        help="implicit differentiation: the equation defines VAR of the --wrt one",
    )
    _add_jacobian_parser(commands)
    _add_series_parser(commands)
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
    if options.command == "jac":
        return _jacobian(settings, options)
    if options.command == "series":
        return _series(settings, options)
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
    if options.dependent:
        return _diff_implicit(settings, options)
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


# Implicit derivatives, Jacobians and Taylor series (issue 18): each command in functions of its own.


def _diff_implicit(settings: Settings, options: argparse.Namespace) -> int:
    """`chainrule diff "x^2 + y^2 = 25" --dependent y --wrt x:2 [--explain] [--verify] [--latex]`."""
    limits = jobs.Limits.from_settings(settings)
    asked = jobs.ImplicitRequest(options.expression, tuple(options.wrt), options.dependent)
    mode = engine.Simplification[options.simplify.upper()]
    try:
        equation = jobs.parse_equation(asked, limits)
        target = equation.target
        derivative = implicit.implicit_derivative(equation.function, target, mode, limits.engine)
        if options.explain:
            print(
                explain.format_steps(explain.explain_implicit(equation.lhs, equation.rhs, target, derivative))
            )
            print()
        labelled = options.explain or options.verify
        print(f"derivative: {parsing.to_text(derivative)}" if labelled else parsing.to_text(derivative))
        if options.latex:
            print(f"latex: {engine.to_latex(derivative)}" if labelled else engine.to_latex(derivative))
        if options.verify:
            print(verify.format_check(verify.verify_implicit(equation.function, target, derivative)))
    except ChainruleError as error:
        print(f"chainrule: {error.message}", file=sys.stderr)
        return 1
    return 0


def _point_argument(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VARIABLE=NUMBER, got {text!r}") from None


def _add_jacobian_parser(commands: Any) -> None:
    jac = commands.add_parser("jac", help="print the Jacobian of several expressions, computed locally")
    jac.add_argument("expressions", nargs="+", help="the rows, e.g. 'x^2 y' '5x + sin(y)'")
    jac.add_argument(
        "--variables", help="the columns, comma-separated (default: every free variable, sorted)"
    )
    jac.add_argument(
        "--at",
        action="append",
        type=_point_argument,
        default=[],
        metavar="VAR=VALUE",
        help="evaluate at this point (repeat for each variable) instead of printing derivatives",
    )


def _jacobian(settings: Settings, options: argparse.Namespace) -> int:
    """`chainrule jac 'x^2 y' '5x + sin(y)' [--variables x,y] [--at x=1 --at y=2]`."""
    limits = jobs.Limits.from_settings(settings)
    asked = tuple(name.strip() for name in (options.variables or "").split(",") if name.strip())
    try:
        engine.check_jacobian_rows(len(options.expressions), limits.engine)
        rows = [_parsed_row(text, index, limits) for index, text in enumerate(options.expressions)]
        names = jobs.gradient_variables(engine.jacobian_variables(rows), asked, limits)
        print("variables: " + ", ".join(names))
        if options.at:
            compiled = engine.compile_jacobian(rows, names, limits.engine)
            point = {name: np.array([value]) for name, value in options.at}
            found = engine.jacobian(compiled, point, 1).jacobian
            entries = [f"{float(column[0]):.17g}" for column in found]
        else:
            entries = [
                parsing.to_text(engine.simplify(entry, engine.Simplification.FAST))
                for entry in engine.jacobian_components(rows, names, limits.engine)[len(rows) :]
            ]
    except ChainruleError as error:
        where = next((v.field for v in error.violations if v.field.startswith("expressions[")), "")
        print(f"chainrule: {where + ': ' if where else ''}{error.message}", file=sys.stderr)
        return 1
    for row in range(len(rows)):
        print("[" + ", ".join(entries[row * len(names) : (row + 1) * len(names)]) + "]")
    return 0


def _parsed_row(text: str, index: int, limits: jobs.Limits) -> Any:
    try:
        return jobs.parse(text, limits)
    except ChainruleError as error:
        raise error.relocated({"expression": f"expressions[{index}]"}) from None


def _add_series_parser(commands: Any) -> None:
    series = commands.add_parser("series", help="print a Taylor polynomial, computed locally")
    series.add_argument("expression", help="e.g. 'sin(x)'")
    series.add_argument("--variable", default="", help="the variable (default: the only one)")
    series.add_argument("--around", default="0", help="an exact constant such as 0, 1/2, pi/2 (default 0)")
    series.add_argument("--order", type=int, default=5, help="the polynomial's degree (default 5)")
    series.add_argument("--latex", action="store_true", help="also print LaTeX")
    series.add_argument("--coefficients", action="store_true", help="also print the coefficients")


def _series(settings: Settings, options: argparse.Namespace) -> int:
    """`chainrule series 'sin(x)' --around pi/2 --order 4`: `1 - (x - pi/2)^2/2 + ... + O(...)`."""
    limits = jobs.Limits.from_settings(settings)
    try:
        expression = jobs.parse(options.expression, limits)
        found = jobs.expand_series(
            expression, options.variable, options.around, options.order, latex=options.latex, limits=limits
        )
    except ChainruleError as error:
        print(f"chainrule: {error.message}", file=sys.stderr)
        return 1
    print(f"{found.text} + {found.remainder}")
    if options.latex:
        print(found.latex)
    if options.coefficients:
        print("coefficients: " + ", ".join(found.coefficients))
    return 0
