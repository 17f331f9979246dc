"""`diff`, `eval`, `grad`, `jac` and `series` computed in this process, under the server's budget.

The work runs on a daemon thread while the main thread waits for at most the budget (the server's
`CHAINRULE_SYMBOLIC_BUDGET_SECONDS` unless `--budget` says otherwise), showing the elapsed time on a
terminal. sympy cannot be interrupted, so on overrun the command prints why and exits at once: this
process is the killable worker. `eval` and `grad` go through the API layer with inline executors,
so they answer (and fail) exactly as a server would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from chainrule import engine
from chainrule.engine import codegen, explain, verify
from chainrule.engine.errors import ChainruleError
from chainrule.server.cli import calculus, output
from chainrule.server.cli.budget import within_budget
from chainrule.server.compute import jobs
from chainrule.server.config import Settings

_LANGUAGES = {language.name.lower(): language for language in codegen.Language}


def run(settings: Settings, options: argparse.Namespace) -> int:
    """Run `diff`, `eval`, `grad`, `jac` or `series` here; the exit status."""
    budget = settings.symbolic_budget_seconds if options.budget is None else options.budget
    limits = jobs.Limits.from_settings(settings)
    implicit = getattr(options, "dependent", None)
    work: dict[str, Callable[[], list[str]]] = {
        "diff": lambda: calculus.diff_implicit(limits, options) if implicit else _diff(settings, options),
        "eval": lambda: _point(settings, options, gradient=False),
        "grad": lambda: _point(settings, options, gradient=True),
        "jac": lambda: calculus.jacobian(limits, options),
        "series": lambda: calculus.series(limits, options),
    }
    label = {
        "diff": "differentiating",
        "eval": "evaluating",
        "grad": "computing the gradient",
        "jac": "computing the Jacobian",
        "series": "expanding the series",
    }
    try:
        lines = within_budget(work[options.command], budget, label[options.command])
    except ChainruleError as error:
        if options.command == "jac":  # several expressions: name the row rather than point into one
            row = calculus.row_of(error)
            print(f"chainrule: {row + ': ' if row else ''}{error.message}", file=sys.stderr)
        else:  # the caret goes under the text at fault: series' `--around` has positions of its own
            at_fault = options.around if _names(error, "around") else options.expression
            output.print_error(error.message, at_fault, error.metadata)
        return 1
    except MemoryError:  # one allocation refused whole, e.g. an integer of astronomically many bits
        print(f"chainrule: {label[options.command]} ran out of memory: ask for less", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def _names(error: ChainruleError, field: str) -> bool:
    return any(violation.field == field for violation in error.violations)


def _diff(settings: Settings, options: argparse.Namespace) -> list[str]:
    limits = jobs.Limits.from_settings(settings)
    wrt = tuple(options.wrt)
    simplification = engine.Simplification[options.simplify.upper()]
    formats = list(dict.fromkeys(["latex"] * options.latex + options.formats))
    derived = jobs.derive(options.expression, wrt, simplification, "latex" in formats, limits)
    wanted = jobs.ExtrasRequest(
        explain=options.explain,
        verify=options.verify,
        mathml="mathml" in formats,
        languages=tuple(_LANGUAGES[name] for name in formats if name in _LANGUAGES),
    )
    extras = (
        jobs.derive_extras(jobs.parse(options.expression, limits), wrt, simplification, wanted, limits)
        if wanted
        else jobs.Extras()
    )
    labelled = options.explain or options.verify
    lines = [explain.format_steps(extras.steps), ""] if extras.steps else []
    lines.append(f"derivative: {derived.text}" if labelled else derived.text)
    code = iter(extras.code)
    for name in formats:
        if name == "latex":
            lines.append(f"latex: {derived.latex}" if labelled else derived.latex)
        elif name == "mathml":
            lines.append(f"mathml: {extras.mathml}" if labelled else extras.mathml)
        else:
            lines.append(next(code).source.rstrip("\n"))
    if extras.check is not None:
        lines.append(verify.format_check(extras.check))
    return lines


def _point(settings: Settings, options: argparse.Namespace, *, gradient: bool) -> list[str]:
    from chainrule.server.api import ChainruleApi  # noqa: PLC0415 - only these two commands need it
    from chainrule.server.compute.executors import InlineExecutor  # noqa: PLC0415
    from chainrule.v1 import chainrule_pb2 as pb  # noqa: PLC0415

    api = ChainruleApi(settings, InlineExecutor(), InlineExecutor())
    point = dict(options.point)
    if not gradient:
        wrt = [pb.Wrt(variable=name, order=order) for name, order in options.wrt]
        request = pb.EvaluateRequest(
            expression=options.expression, point=point, wrt=wrt, dependent=options.dependent or ""
        )
        reply = asyncio.run(api.evaluate(request))
        return output.point_lines(output.PointAnswer(reply.value))
    gradient_request = pb.GradientAtPointRequest(
        expression=options.expression,
        point=point,
        variables=_variables(options.variables),
        hessian=options.hessian,
    )
    answer = asyncio.run(api.gradient(gradient_request))
    n = len(answer.variables)
    hessian = list(answer.hessian)
    return output.point_lines(
        output.PointAnswer(
            answer.value,
            tuple(answer.variables),
            tuple(answer.gradient),
            tuple(tuple(hessian[i * n : (i + 1) * n]) for i in range(n)) if options.hessian else None,
        )
    )


def _variables(text: str | None) -> list[str]:
    return [name.strip() for name in text.split(",")] if text else []
