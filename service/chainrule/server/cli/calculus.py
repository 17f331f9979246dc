"""`diff --dependent`, `jac` and `series` computed in this process (under the budget local.py sets):
each returns the lines to print, or raises the engine's error."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from chainrule import engine
from chainrule.engine import explain, implicit, parsing, verify
from chainrule.engine.errors import ChainruleError
from chainrule.server.compute import jobs


def diff_implicit(limits: jobs.Limits, options: argparse.Namespace) -> list[str]:
    """`chainrule diff "x^2 + y^2 = 25" --dependent y --wrt x:2 [--explain] [--verify] [--latex]`."""
    asked = jobs.ImplicitRequest(options.expression, tuple(options.wrt), options.dependent)
    mode = engine.Simplification[options.simplify.upper()]
    equation = jobs.parse_equation(asked, limits)
    target = equation.target
    derivative = implicit.implicit_derivative(equation.function, target, mode, limits.engine)
    lines: list[str] = []
    if options.explain:
        steps = explain.explain_implicit(equation.lhs, equation.rhs, target, derivative)
        lines += [explain.format_steps(steps), ""]
    labelled = options.explain or options.verify
    text = parsing.to_text(derivative)
    lines.append(f"derivative: {text}" if labelled else text)
    if options.latex or "latex" in options.formats:
        latex = engine.to_latex(derivative)
        lines.append(f"latex: {latex}" if labelled else latex)
    if options.verify:
        lines.append(verify.format_check(verify.verify_implicit(equation.function, target, derivative)))
    return lines


def jacobian(limits: jobs.Limits, options: argparse.Namespace) -> list[str]:
    """`chainrule jac 'x^2 y' '5x + sin(y)' [--variables x,y] [--at x=1 --at y=2]`."""
    asked = tuple(name.strip() for name in (options.variables or "").split(",") if name.strip())
    engine.check_jacobian_rows(len(options.expressions), limits.engine)
    rows = [_parsed_row(text, index, limits) for index, text in enumerate(options.expressions)]
    names = jobs.gradient_variables(engine.jacobian_variables(rows), asked, limits)
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
    width = len(names)
    return ["variables: " + ", ".join(names)] + [
        "[" + ", ".join(entries[row * width : (row + 1) * width]) + "]" for row in range(len(rows))
    ]


def _parsed_row(text: str, index: int, limits: jobs.Limits) -> Any:
    try:
        return jobs.parse(text, limits)
    except ChainruleError as error:
        raise error.relocated({"expression": f"expressions[{index}]"}) from None


def row_of(error: ChainruleError) -> str:
    """The `expressions[i]` a `jac` error is about, if any."""
    return next((v.field for v in error.violations if v.field.startswith("expressions[")), "")


def series(limits: jobs.Limits, options: argparse.Namespace) -> list[str]:
    """`chainrule series 'sin(x)' --around pi/2 --order 4`: `1 - (x - pi/2)^2/2 + ... + O(...)`."""
    expression = jobs.parse(options.expression, limits)
    found = jobs.expand_series(
        expression, options.variable, options.around, options.order, latex=options.latex, limits=limits
    )
    lines = [f"{found.text} + {found.remainder}"]
    if options.latex:
        lines.append(found.latex)
    if options.coefficients:
        lines.append("coefficients: " + ", ".join(found.coefficients))
    return lines
