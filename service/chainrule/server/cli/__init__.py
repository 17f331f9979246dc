"""The `chainrule` command: `serve` runs the server; `diff`, `eval`, `grad`, `jac` and `series`
compute one answer.

They compute locally, under the server's symbolic budget (local.py; calculus.py for implicit
derivatives, Jacobians and series), or ask a server (`eval` and `grad` with `--target host:port`,
through the Python client: remote.py); both print the same way (output.py).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from chainrule.server.config import ConfigError, Settings
from chainrule.server.version import VERSION

FORMATS = ("latex", "mathml", "python", "c", "javascript")
SIMPLIFICATIONS = ("none", "fast", "full")


def _wrt_argument(text: str) -> tuple[str, int]:
    name, colon, order = text.partition(":")
    try:
        return name, _order_argument(order) if colon else 1
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"expected VARIABLE[:ORDER], got {text!r}: {error}") from None


def _order_argument(text: str) -> int:
    """An order as written on a command line: digits, 0 or more (int() also took -1, which the
    engine then refused with exit status 1 where other bad orders were usage errors, and "1_0")."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"an order is a whole number 0, 1, 2, ..., got {text!r}")
    return int(text)


# A number as written in code: float() also read "1_0" as 10 and an Arabic-Indic digit as its value
# (an independent tester); inf and nan are written so.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)


def _point_argument(text: str) -> tuple[str, float]:
    name, equals, value = text.partition("=")
    value = value.strip()
    if not equals or not name.strip() or not _NUMBER.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected VARIABLE=NUMBER, got {text!r}")
    number = float(value)
    if math.isinf(number) and "inf" not in value.lower():
        raise argparse.ArgumentTypeError(f"{value} is past the largest double (about 1.8e308); write inf")
    return name.strip(), number


def _budget_argument(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(seconds):  # nan compared false with everything: no budget at all (a hunt)
        raise argparse.ArgumentTypeError(f"the budget must be a finite number of seconds, got {text!r}")
    if seconds < 0:
        raise argparse.ArgumentTypeError("the budget cannot be negative")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Differentiation as a service: run the server, or compute one answer from the shell.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_diff(commands)
    _add_eval(commands)
    _add_grad(commands)
    _add_jac(commands)
    _add_series(commands)
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gRPC and HTTP server",
        description="Serve gRPC and REST/JSON until SIGTERM or SIGINT, then drain. Every setting is also "
        "a CHAINRULE_* variable (docs/operations.md); a flag wins over its variable.",
    )
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


def _add_wrt(command: argparse.ArgumentParser, meaning: str) -> None:
    command.add_argument(
        "--wrt", action="append", type=_wrt_argument, default=[], metavar="VAR[:ORDER]", help=meaning
    )


def _add_budget(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--budget",
        type=_budget_argument,
        metavar="SECONDS",
        help="stop local symbolic work after this long (default: the server's, "
        f"CHAINRULE_SYMBOLIC_BUDGET_SECONDS, {Settings().symbolic_budget_seconds:g} s; 0: no limit)",
    )


def _add_common(command: argparse.ArgumentParser, *, remote: bool) -> None:
    """The expression (and, for the commands that evaluate, the point), where and under what budget
    the work runs."""
    command.add_argument("expression", help="the expression, in chainrule's grammar, e.g. 'sin(x^2)'")
    if remote:
        command.add_argument(
            "point", nargs="*", type=_point_argument, metavar="VAR=NUMBER", help="a value for each variable"
        )
    _add_budget(command)
    if remote:
        command.add_argument(
            "--target",
            metavar="HOST:PORT",
            help="ask this chainrule server (gRPC) instead of computing locally",
        )
        command.add_argument("--token", help="bearer token for --target, if the server requires one")
        command.add_argument("--tls", action="store_true", help="use TLS (the system's roots) for --target")


def _add_diff(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = commands.add_parser(
        "diff",
        help="print a derivative, computed locally",
        description="Print the derivative of an expression (first line: text in chainrule's grammar).",
    )
    _add_common(diff, remote=False)
    _add_wrt(
        diff,
        "differentiate with respect to VAR, ORDER times (repeat for mixed partials; "
        "default: the only variable)",
    )
    diff.add_argument(
        "--format",
        action="append",
        choices=FORMATS,
        default=[],
        dest="formats",
        help="also print the derivative as LaTeX, presentation MathML, or a Python (numpy), C or "
        "JavaScript function (repeat for several)",
    )
    diff.add_argument("--latex", action="store_true", help="also print LaTeX (the same as --format latex)")
    diff.add_argument("--explain", action="store_true", help="print the derivation step by step")
    diff.add_argument("--verify", action="store_true", help="check the derivative numerically")
    diff.add_argument(
        "--simplify",
        choices=SIMPLIFICATIONS,
        default="fast",
        help="none: the raw derivative; fast (default): cheap and deterministic; full: sympy.simplify",
    )
    _add_dependent(diff, "VAR's derivative by the --wrt one")


def _add_dependent(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--dependent",
        metavar="VAR",
        help=f"implicit differentiation: the equation (lhs = rhs) defines VAR as a function of the --wrt "
        f"one; {what}",
    )


def _add_eval(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="print the value of an expression (or of a derivative) at one point",
        description="Print the value of an expression at one point, e.g. chainrule eval 'x*y + 1' x=2 y=3.",
    )
    _add_common(evaluate, remote=True)
    _add_wrt(evaluate, "evaluate this derivative of the expression instead (repeat for mixed partials)")
    _add_dependent(evaluate, "print the value of VAR's derivative at the point (nothing is solved)")


def _add_grad(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    grad = commands.add_parser(
        "grad",
        help="print the value, gradient and Hessian at one point",
        description="Print the value and gradient (and Hessian) at one point, "
        "e.g. chainrule grad 'x^2 y' x=3 y=2.",
    )
    _add_common(grad, remote=True)
    grad.add_argument(
        "--variables",
        metavar="X,Y,...",
        help="the gradient's variables, in order (default: the free variables, sorted)",
    )
    grad.add_argument("--hessian", action="store_true", help="also print the Hessian")


def _add_jac(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jac = commands.add_parser(
        "jac",
        help="print the Jacobian of several expressions, computed locally",
        description="Print the Jacobian of a system, symbolically or at one point, "
        "e.g. chainrule jac 'x^2 y' '5x + sin(y)' --at x=1 --at y=2.",
    )
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
    _add_budget(jac)


def _add_series(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    series = commands.add_parser(
        "series",
        help="print a Taylor polynomial, computed locally",
        description="Print a Taylor polynomial and its remainder, e.g. chainrule series 'sin(x)' --order 4.",
    )
    series.add_argument("expression", help="the expression, in chainrule's grammar, e.g. 'sin(x)'")
    series.add_argument("--variable", default="", help="the variable (default: the only one)")
    series.add_argument("--around", default="0", help="an exact constant such as 0, 1/2, pi/2 (default 0)")
    series.add_argument(
        "--order", type=_order_argument, default=5, help="the polynomial's degree (default 5)"
    )
    series.add_argument("--latex", action="store_true", help="also print LaTeX")
    series.add_argument("--coefficients", action="store_true", help="also print the coefficients")
    _add_budget(series)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    for index, argument in enumerate(arguments, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:  # bytes the terminal's encoding could not decode (a hunt: tracebacks)
            print(f"chainrule: argument {index} ({argument!r}) is not UTF-8 text", file=sys.stderr)
            return 2
    parser = build_parser()
    options = parser.parse_args(arguments)
    for pairs in (getattr(options, "point", None), getattr(options, "at", None)):
        names = [name for name, _ in pairs or ()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # the last value silently won
            parser.error(f"{', '.join(repeated)} given more than once: give each variable one value")
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
        from chainrule.server.cli.serve import serve  # noqa: PLC0415 - the others need no server

        return serve(settings, options.ready_file)
    if getattr(options, "target", None):
        from chainrule.server.cli import remote  # noqa: PLC0415

        return remote.run(options)
    from chainrule.server.cli import local  # noqa: PLC0415

    return local.run(settings, options)
