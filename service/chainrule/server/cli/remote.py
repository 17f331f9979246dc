"""`eval` and `grad` with `--target HOST:PORT`: asked of a chainrule server through the Python client."""

from __future__ import annotations

import argparse
import sys

from chainrule.client import ChainruleError, Client, DeadlineExceededError, UnavailableError
from chainrule.server.cli import output
from chainrule.server.cli.budget import within_budget


def run(options: argparse.Namespace) -> int:
    """Ask the server at `options.target`; print what `chainrule.server.cli.local` would; the exit status."""
    point = dict(options.point)
    budget = 0.0 if options.budget is None else options.budget  # the server applies its own

    def ask() -> output.PointAnswer:
        with Client(options.target, token=options.token, tls=options.tls) as client:
            if options.command == "eval":
                evaluation = client.evaluate(
                    options.expression, point, wrt=options.wrt or None, dependent=options.dependent
                )
                assert evaluation.value is not None  # one point in, one value out
                return output.PointAnswer(evaluation.value)
            variables = [n.strip() for n in options.variables.split(",")] if options.variables else None
            result = client.gradient(options.expression, point, variables=variables, hessian=options.hessian)
            assert result.value is not None and result.gradient is not None
            return output.PointAnswer(
                result.value, result.variables, result.gradient, result.hessian if options.hessian else None
            )

    try:
        answer = within_budget(ask, budget, f"asking {options.target}")
    except (UnavailableError, DeadlineExceededError) as error:  # no answer: not the request's fault
        print(f"chainrule: {options.target} gave no answer: {error.message}", file=sys.stderr)
        return output.NO_ANSWER
    except ChainruleError as error:
        output.print_error(error.message, options.expression, error.metadata)
        return 1
    print("\n".join(output.point_lines(answer)))
    return 0
