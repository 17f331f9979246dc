"""Symbolic jobs: text in, picklable results out, so they can run in a thread or a symbolic worker.

Each job parses the expression itself (cheap next to what follows, and it keeps the arguments plain
data). Nothing here knows about protobuf or a transport.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import sympy

from chainrule import engine
from chainrule.engine import codegen, explain, implicit, numeric_code, parsing, series, verify
from chainrule.engine.errors import ChainruleError, InvalidArgument, NoClosedForm
from chainrule.engine.limits import declared, exceeded
from chainrule.server.config import Settings, limit_settings

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """The parser's and the engine's limits together, built once from the settings."""

    parse: parsing.ParseLimits
    engine: engine.EngineLimits

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        values = {declaration.name: getattr(settings, name) for name, declaration in limit_settings()}
        return cls(parse=_filled(parsing.ParseLimits, values), engine=_filled(engine.EngineLimits, values))


_L = TypeVar("_L")


def _filled(limits: type[_L], values: Mapping[str, int]) -> _L:
    """A limits dataclass with every declared limit taken from `values` (by the limit's name)."""
    return limits(**{field_name: values[declaration.name] for field_name, declaration in declared(limits)})


Wrt = tuple[tuple[str, int], ...]


# Explain, verify and the extra output formats of Differentiate.


@dataclass(frozen=True)
class Extras:
    """What Differentiate returns besides text and LaTeX, as plain picklable values."""

    steps: tuple[explain.Step, ...] = ()
    check: verify.Check | None = None
    mathml: str = ""
    code: tuple[codegen.GeneratedCode, ...] = ()


@dataclass(frozen=True)
class ExtrasRequest:
    """Which extras to compute: `languages` in the order the request listed them."""

    explain: bool = False
    verify: bool = False
    mathml: bool = False
    languages: tuple[codegen.Language, ...] = ()

    def __bool__(self) -> bool:
        return self.explain or self.verify or self.mathml or bool(self.languages)


@dataclass(frozen=True)
class Derivation:
    """A derivative as the Differentiate RPC returns it."""

    text: str
    latex: str
    variables: tuple[str, ...]
    extras: Extras = field(default_factory=Extras)


def parse(text: str, limits: Limits) -> sympy.Expr:
    """Parse user text under the configured limits."""
    return parsing.parse(text, limits.parse)


def derive(
    text: str, wrt: Wrt, simplification: engine.Simplification, latex: bool, limits: Limits
) -> Derivation:
    """Parse, differentiate, simplify and print: the whole cold path of Differentiate."""
    expression = parse(text, limits)
    derivative = engine.differentiate(expression, wrt, simplification, limits.engine)
    return Derivation(
        text=parsing.to_text(derivative),
        latex=engine.to_latex(derivative) if latex else "",
        variables=engine.free_variables(expression),
    )


def gradient_variables(free: tuple[str, ...], variables: Sequence[str], limits: Limits) -> tuple[str, ...]:
    """The gradient's variables, checked: those asked for, or else the free ones (sorted)."""
    names = tuple(variables) or free
    for index, name in enumerate(names):
        parsing.check_variable_name(name, f"variables[{index}]")
        if name in names[:index]:
            raise InvalidArgument(f"variable '{name}' is listed twice", field=f"variables[{index}]")
    if len(names) > limits.parse.max_variables:
        if variables:
            what, hint = "too many variables", ""
        else:  # the free ones: the caller sent no `variables`
            what = "the expression has too many free variables for its columns"
            hint = f"list the ones wanted (at most {limits.parse.max_variables}) in `variables`"
        raise exceeded(limits.parse, "max_variables", len(names), field="variables", what=what, hint=hint)
    return names


def _node_count(expression: sympy.Expr) -> int:
    return int(sympy.count_ops(expression, visual=False)) + len(expression.free_symbols) + 1


class Stage(NamedTuple):
    """One stage of work timed where it ran (a worker process or a thread): for metrics and spans."""

    name: str
    seconds: float
    start_ns: int  # wall clock, `time.time_ns()`: one clock for every process on the host
    pid: int


def timed(name: str, fn: Callable[..., T], *args: Any) -> tuple[T, Stage]:
    """`fn(*args)` and the `Stage` it took."""
    start_ns, start = time.time_ns(), time.perf_counter()
    result = fn(*args)
    return result, Stage(name, time.perf_counter() - start, start_ns, os.getpid())


# Jobs for the cached path. Each returns its stages as plain values, so the server process can
# observe them in its metrics and trace even when the job ran in a worker process.
Timings = tuple[Stage, ...]


@dataclass(frozen=True)
class _Symbolic:
    """An expression crossing from a job (portable: pickled once), with what numeric work needs."""

    portable: engine.Portable
    variables: tuple[str, ...]
    node_count: int
    timings: Timings

    @property
    def expression(self) -> sympy.Expr:
        return self.portable.expression


@dataclass(frozen=True)
class Parsed(_Symbolic):
    """A parsed expression with its canonical key: equal expressions have equal keys.

    The key is a digest of `engine.canonical_key` (an srepr, which includes assumptions): 32 bytes in
    every cache key below, however large the expression; `size` is the length of that srepr, a
    measure of the tree.
    """

    key: bytes
    size: int


@dataclass(frozen=True)
class Derived(_Symbolic):
    """A derivative, simplified and printed as text.

    A derivative the grammar cannot write (d/ds zeta(s)) has no text but a `refusal`, the error
    Differentiate answers with; its expression still serves numeric evaluation when `numeric` (every
    derivative sympy left unevaluated is one of a table function: numeric_code.numeric_refusal).
    """

    text: str
    refusal: NoClosedForm | None = None
    numeric: bool = True


def parse_canonical(text: str, limits: Limits, seconds: float | None = None) -> Parsed:
    """Parse `text` and compute its canonical key (`srepr`, which includes assumptions); past
    `seconds` of building, parsing.TooSlow (see there)."""
    (expression, canonical), stage = timed("parse", _parse_with_key, text, limits, seconds)
    return Parsed(
        portable=engine.Portable(expression),
        variables=engine.free_variables(expression),
        node_count=_node_count(expression),
        timings=(stage,),
        key=hashlib.sha256(canonical).digest(),
        size=len(canonical),
    )


def _parse_with_key(text: str, limits: Limits, seconds: float | None) -> tuple[sympy.Expr, bytes]:
    expression = parsing.parse(text, limits.parse, seconds=seconds)
    return expression, engine.canonical_key(expression).encode()


def derive_parsed(
    expression: sympy.Expr | engine.Portable,
    wrt: Wrt,
    simplification: engine.Simplification,
    limits: Limits,
) -> Derived:
    """Differentiate and simplify an already parsed expression, timing the two stages apart."""
    raw, differentiated = timed(
        "differentiate",
        engine.differentiate,
        engine.resolved(expression),
        wrt,
        engine.Simplification.NONE,
        limits.engine,
    )
    derivative, simplified = timed("simplify", engine.simplify, raw, simplification)
    text, refusal, numeric = _text_or_refusal(derivative)
    return Derived(
        portable=engine.Portable(derivative),
        variables=engine.free_variables(derivative),
        node_count=_node_count(derivative),
        timings=(differentiated, simplified),
        text=text,
        refusal=refusal,
        numeric=numeric,
    )


def _text_or_refusal(derivative: sympy.Expr) -> tuple[str, NoClosedForm | None, bool]:
    """A derivative's text, or why the grammar cannot write it and whether its values can be computed
    (`Derived`)."""
    try:
        return parsing.to_text(derivative), None, True
    except NoClosedForm as error:
        return "", error, numeric_code.numeric_refusal([derivative]) is None


# Numeric plans: everything symbolic (partials, common subexpressions, code generation) runs here, in
# a killable worker under the request's budget; the server process only binds the program.

_C = TypeVar("_C", engine.CompiledFunction, engine.CompiledGradient, engine.CompiledJacobian)


@dataclass(frozen=True)
class Compiled(Generic[_C]):
    """A compiled numeric function (it pickles as its program) and the stage timings of the job."""

    value: _C
    timings: Timings

    @property
    def size(self) -> int:
        """Bytes the compiled function holds once bound."""
        return self.value.program.memory_bytes


def compile_function(
    expression: sympy.Expr | engine.Portable,
    variables: tuple[str, ...],
    limits: Limits,
    function: sympy.Expr | engine.Portable | None = None,
    along: str | None = None,
) -> Compiled[engine.CompiledFunction]:
    """Compile an expression (or a derivative of `function`, NaN where it is, taken `along` one
    variable if given) for Evaluate, over `variables` in that order."""
    guard = None if function is None else engine.resolved(function)
    compile_guarded = functools.partial(engine.compile_function, along=along)
    compiled, stage = timed(
        "compile", compile_guarded, engine.resolved(expression), variables, limits.engine, guard
    )
    return Compiled(compiled, (stage,))


def compile_gradient(
    expression: sympy.Expr | engine.Portable, variables: tuple[str, ...], hessian: bool, limits: Limits
) -> Compiled[engine.CompiledGradient]:
    """Differentiate (partials, Hessian) and compile value, gradient and Hessian as one function."""
    components, differentiated = timed(
        "differentiate",
        engine.gradient_components,
        engine.resolved(expression),
        variables,
        hessian,
        limits.engine,
    )
    compiled, stage = timed(
        "compile", engine.compile_components, components, variables, hessian, limits.engine
    )
    return Compiled(compiled, (differentiated, stage))


def compile_jacobian(
    rows: tuple[sympy.Expr | engine.Portable, ...], variables: tuple[str, ...], limits: Limits
) -> Compiled[engine.CompiledJacobian]:
    """Differentiate every row by every variable and compile values and Jacobian as one function."""
    expressions = [engine.resolved(row) for row in rows]
    components, differentiated = timed(
        "differentiate", engine.jacobian_components, expressions, variables, limits.engine
    )
    compiled, stage = timed(
        "compile", engine.compile_jacobian_components, components, variables, len(rows), limits.engine
    )
    return Compiled(compiled, (differentiated, stage))


def evaluate_pointwise(
    run: Callable[..., T], compiled: Any, columns: Mapping[str, Any], size: int
) -> tuple[T, Stage]:
    """`run(compiled, columns, size)` (engine.evaluate, gradient or jacobian) for code that calls
    mpmath's kernels (`Program.pointwise`): in a worker, not on a thread of the server, whose every
    other call would wait for the GIL while mpmath computes (seconds for a few hundred points)."""
    return timed("evaluate", run, compiled, columns, size, None)


def readable(expression: sympy.Expr | engine.Portable, seconds: float | None = None) -> tuple[str, str]:
    """An expression as canonical text and as LaTeX (what Parse returns); parsing.TooSlow once
    printing both has taken more than `seconds` (None: no allowance)."""
    resolved = engine.resolved(expression)
    start = time.monotonic()
    text = parsing.to_text(resolved, seconds=seconds)
    left = None if seconds is None else seconds - (time.monotonic() - start)
    return text, engine.to_latex(resolved, seconds=left)


def latex(expression: sympy.Expr | engine.Portable) -> str:
    """LaTeX for an expression (printing only: no stage of its own)."""
    return engine.to_latex(engine.resolved(expression))


def derive_extras(
    portable: sympy.Expr | engine.Portable,
    wrt: Wrt,
    simplification: engine.Simplification,
    request: ExtrasRequest,
    limits: Limits,
) -> Extras:
    """Steps, check, MathML and code for the derivative `derive_parsed` returns (each only when asked).

    The derivative is computed again here rather than passed in: a sympy expression sent to a symbolic
    worker is rebuilt with evaluation (6*(3*x + 1) arrives as 18*x + 6), and the last step must read
    exactly as the derivative returned.
    """
    expression = engine.resolved(portable)
    derivative = engine.differentiate(expression, wrt, simplification, limits.engine)
    steps = (
        tuple(explain.explain(expression, wrt, derivative, limits=limits.engine)) if request.explain else ()
    )
    check = verify.verify(expression, wrt, derivative) if request.verify else None
    markup = codegen.mathml(derivative) if request.mathml else ""
    variables = engine.free_variables(expression)
    comment = f"{_derivative_label(expression, wrt, limits)} of {parsing.to_text(expression)}, by chainrule"
    code = tuple(
        codegen.generate(derivative, variables, language, comment=comment) for language in request.languages
    )
    return Extras(steps, check, markup, code)


def _derivative_label(expression: sympy.Expr, wrt: Wrt, limits: Limits) -> str:
    resolved = engine.resolve_wrt(expression, wrt, limits.engine)
    if not resolved:
        return "the derivative"
    total = sum(order for _, order in resolved)
    below = " ".join(f"d{name}^{order}" if order > 1 else f"d{name}" for name, order in resolved)
    return f"d^{total}/{below}" if total > 1 else f"d/{below}"


# Taylor series and implicit differentiation (issue 18).


@dataclass(frozen=True)
class Expansion:
    """A Taylor polynomial as the Series RPC returns it: text, LaTeX when asked, exact coefficients."""

    variable: str
    text: str
    latex: str
    coefficients: tuple[str, ...]
    remainder: str


def expand_series(
    expression: sympy.Expr | engine.Portable,
    variable: str,
    around: str,
    order: int,
    *,
    latex: bool,
    limits: Limits,
) -> Expansion:
    """The Taylor polynomial of a parsed expression around the constant written `around` (empty: 0)."""
    point = _around(around, limits)
    expr = engine.resolved(expression)
    if (variable or len(expr.free_symbols) == 1) and not point.free_symbols:
        at = {symbol: point for symbol in expr.free_symbols if not variable or symbol.name == variable}
        parsing.check_costly_at(expr, at, limits.parse, "around")
    try:
        found = series.taylor(expr, variable, point, order, limits.engine)
    except ChainruleError as error:  # a derivative too large names `wrt`: a Series has `order`
        raise error.relocated({"wrt": "order"}) from None
    coefficients = tuple(_coefficient_text(found, k, around) for k in range(len(found.coefficients)))
    return Expansion(
        variable=found.variable.name,
        text=found.text,
        latex=found.latex if latex else "",
        coefficients=coefficients,
        remainder=found.remainder,
    )


def _coefficient_text(found: series.Series, k: int, around: str) -> str:
    """The k-th coefficient as text; one the grammar cannot write (zeta'(2)) is refused saying which,
    and what computes it (the refusal named sympy's value of zeta(2), 'in pi^2/6': an independent
    tester)."""
    try:
        return parsing.to_text(found.coefficients[k])
    except NoClosedForm as error:  # k > 0: the value of a function of ours is written
        function, argument = error.metadata["function"], int(error.metadata.get("argument", "0"))
        x, power = found.variable.name, parsing.to_text((found.variable - found.around) ** k)
        power = f"({power})" if k == 1 and found.around != 0 else power
        divided = f", divided by {k}!," if k > 1 else ""
        raise NoClosedForm(
            f"the coefficient of {power} holds a derivative of {function} the grammar cannot write: "
            f"Evaluate with wrt ({x}, order {k}) at {around.strip() or '0'}{divided} computes its value "
            f"numerically, and a Series of order up to {k - 1} has a polynomial",
            function=function,
            argument=argument,
        ) from None


def _around(text: str, limits: Limits) -> sympy.Expr:
    if not text.strip():
        return sympy.S.Zero
    try:
        point = parse(text, limits)
    except ChainruleError as error:
        raise error.relocated({"expression": "around"}) from None
    series.check_around(point, text)  # its messages quote the caller's text, not sympy's rewrite of it
    # `around` is exact, so the coefficients are: a decimal in it is the number it spells (0.1 is
    # 1/10, as 1e-1 is), not the double nearest it. The clients send a float as its shortest repr.
    return point.xreplace({number: _exact(number) for number in point.atoms(sympy.Float)})


def _exact(number: sympy.Float) -> sympy.Rational:
    double = float(number)
    if sympy.Float(double) == number:  # a literal of up to 17 digits: the decimal that reads back as it
        return sympy.Rational(repr(double))
    return sympy.Rational(str(number))  # a longer literal, kept at its own precision


@dataclass(frozen=True)
class ImplicitRequest:
    """What implicit differentiation is asked: the equation's text, `wrt` and the dependent variable."""

    text: str
    wrt: Wrt
    dependent: str


@dataclass(frozen=True)
class Equation:
    """An equation parsed for implicit differentiation, with what it defines."""

    lhs: sympy.Expr
    rhs: sympy.Expr
    function: sympy.Expr
    target: implicit.Implicit


def parse_equation(asked: ImplicitRequest, limits: Limits) -> Equation:
    """Parse `lhs = rhs` (or F) and check that it defines `dependent` as a function of one variable."""
    lhs, rhs = parsing.parse_equation(asked.text, limits.parse)
    function = implicit.equation_function(lhs, rhs)
    target = implicit.resolve(function, asked.dependent, asked.wrt, limits.engine)
    return Equation(lhs, rhs, function, target)


@dataclass(frozen=True)
class ImplicitDerived(Derived):
    """An implicit derivative, with the equation's own variables (the parameters of generated code)."""

    equation_variables: tuple[str, ...] = ()


def derive_implicit(
    asked: ImplicitRequest, simplification: engine.Simplification, limits: Limits
) -> ImplicitDerived:
    """Parse the equation and take d^k(dependent)/dx^k, timing the stages as `derive_parsed` does."""
    equation, parsed = timed("parse", parse_equation, asked, limits)
    derivative, differentiated = timed(
        "differentiate",
        implicit.implicit_derivative,
        equation.function,
        equation.target,
        simplification,
        limits.engine,
    )
    # Evaluate computes y' of zeta(x, y) = 1 from its partials as it computes d/dx zeta(x, y): only
    # Differentiate refuses the text (it refused Evaluate too: an independent tester).
    text, refusal, numeric = _text_or_refusal(derivative)
    return ImplicitDerived(
        portable=engine.Portable(derivative),
        variables=engine.free_variables(derivative),
        node_count=_node_count(derivative),
        timings=(parsed, differentiated),
        text=text,
        refusal=refusal,
        numeric=numeric,
        equation_variables=engine.free_variables(equation.function),
    )


def derive_implicit_extras(
    asked: ImplicitRequest, simplification: engine.Simplification, request: ExtrasRequest, limits: Limits
) -> Extras:
    """Steps, check, MathML and code of an implicit derivative (each only when asked)."""
    equation = parse_equation(asked, limits)
    target = equation.target
    derivative = implicit.implicit_derivative(equation.function, target, simplification, limits.engine)
    steps = (
        tuple(explain.explain_implicit(equation.lhs, equation.rhs, target, derivative))
        if request.explain
        else ()
    )
    check = verify.verify_implicit(equation.function, target, derivative) if request.verify else None
    markup = codegen.mathml(derivative) if request.mathml else ""
    variables = engine.free_variables(equation.function)
    y, x, k = target.dependent.name, target.variable.name, target.order
    label = f"d^{k}{y}/d{x}^{k}" if k > 1 else f"d{y}/d{x}"
    comment = f"{label} of {parsing.to_text(equation.lhs)} = {parsing.to_text(equation.rhs)}, by chainrule"
    code = tuple(
        codegen.generate(derivative, variables, language, comment=comment) for language in request.languages
    )
    return Extras(steps, check, markup, code)
