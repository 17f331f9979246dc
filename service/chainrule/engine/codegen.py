"""Derivatives as code a caller can compile (Python/numpy, C with math.h, JavaScript) and as MathML.

Each generator returns one complete function definition taking the expression's variables (sorted) as
arguments, with common subexpressions hoisted into temporaries. It computes what Evaluate computes:
the real n-th root is the real root (`cbrt(-8)` is -2), `x^(1/3)` is NaN for x < 0 as in numpy.
A variable whose name is a keyword or a name the generated code uses gets a trailing underscore.

A derivative that needs a function the target lacks (erf or gamma in JavaScript's `Math`,
DiracDelta or polygamma in C) raises `FailedPrecondition` naming the function and the language.
"""

from __future__ import annotations

import enum
import functools
import html.entities
import keyword
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.printing.c import C99CodePrinter, get_math_macros
from sympy.printing.jscode import JavascriptCodePrinter
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.numpy import SciPyPrinter

from chainrule.engine import bignum, functions, parsing
from chainrule.engine.errors import FailedPrecondition

__all__ = ["GeneratedCode", "Language", "generate", "mathml", "supported_functions"]

FUNCTION_NAME = "derivative"


class Language(enum.Enum):
    """A target language for generated code."""

    PYTHON = "Python"
    C = "C"
    JAVASCRIPT = "JavaScript"


@dataclass(frozen=True)
class GeneratedCode:
    """Source of one function definition, its name and its parameters (in order)."""

    language: Language
    source: str
    function_name: str
    parameters: tuple[str, ...]


class _MathMLPrinter(MathMLPresentationPrinter):  # type: ignore[misc]
    """sympy's presentation MathML printer, writing integers of any size (`bignum`)."""

    def _print_int(self, p: int) -> Any:
        element = self.dom.createElement(self.mathml_tag(p))
        element.appendChild(self.dom.createTextNode(bignum.decimal(p)))
        return element

    # sympy prints a subclass named otherwise as a plain function of its class's name: our real
    # versions of floor, ceiling, re and im were `realfloor(x)` (an independent hunt, 2026-12-06).
    def _print_RealFloor(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._print_floor(expr)

    def _print_RealCeiling(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._print_ceiling(expr)

    def _print_RealPart(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._print_re(expr)

    def _print_ImaginaryPart(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._print_im(expr)

    # Constants and steps sympy's printer does not know: Catalan was `catalan()`, DiracDelta
    # `diracdelta(x, 1)` and Heaviside showed its hidden value at 0, `Θ(x, 1/2)` (a hunt).
    def _print_Catalan(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._identifier("G")

    def _print_DiracDelta(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._applied("\N{GREEK SMALL LETTER DELTA}", expr.args[0])

    def _print_Heaviside(self, expr: sympy.Expr) -> Any:  # noqa: N802
        return self._applied("\N{GREEK CAPITAL LETTER THETA}", expr.args[0])

    def _identifier(self, name: str) -> Any:
        element = self.dom.createElement("mi")
        element.appendChild(self.dom.createTextNode(name))
        return element

    def _applied(self, name: str, argument: sympy.Expr) -> Any:
        """name(argument), as sympy writes a function."""
        row, brackets = self.dom.createElement("mrow"), self.dom.createElement("mrow")
        for text in ("(", None, ")"):
            if text is None:
                brackets.appendChild(self._print(argument))
                continue
            bracket = self.dom.createElement("mo")
            bracket.appendChild(self.dom.createTextNode(text))
            brackets.appendChild(bracket)
        row.appendChild(self._identifier(name))
        row.appendChild(brackets)
        return row

    def _print_RealRoot(self, expr: sympy.Expr) -> Any:  # noqa: N802
        """`root(x, n)` as the radical it is, as in LaTeX (was `realroot(x, n)`)."""
        x, n = expr.args
        element = self.dom.createElement("msqrt" if n == 2 else "mroot")
        element.appendChild(self._print(x))
        if n != 2:
            element.appendChild(self._print(n))
        return element


def mathml(expr: sympy.Expr) -> str:
    """Presentation MathML (the inner markup, without the `<math>` wrapper), via sympy's printer,
    well-formed XML: the HTML entities sympy writes (`&pi;`, `&InvisibleTimes;`) are the characters
    they name, which an XML parser without HTML's entity table refused (an independent hunt)."""
    return _NAMED_ENTITY.sub(_entity_character, str(_MathMLPrinter().doprint(expr)))


# XML's own five entities stay as they are: they escape markup.
_NAMED_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|apos);)([A-Za-z][A-Za-z0-9]*);")


def _entity_character(match: re.Match[str]) -> str:
    return html.entities.html5.get(f"{match.group(1)};", match.group(0))


def generate(
    expr: sympy.Expr,
    variables: Sequence[str],
    language: Language,
    *,
    name: str = FUNCTION_NAME,
    comment: str = "",
) -> GeneratedCode:
    """One function `name(variables...)` returning `expr`, in `language`.

    A derivative our grammar cannot write (d/ds zeta(s)) has no code either: errors.NoClosedForm.
    """
    refusal = parsing.unwritable(expr)
    if refusal is not None:
        raise refusal
    target = _prepare(expr)
    printer = _PRINTERS[language]()
    _check_supported(printer, target, language)
    parameters = _safe_names(variables, language)
    symbols = {symbol.name: symbol for symbol in target.free_symbols}
    renamed = target.xreplace(
        {symbols[old]: sympy.Symbol(new, real=True) for old, new in zip(variables, parameters, strict=True)
         if old in symbols}
    )  # fmt: skip
    temporaries, (body,) = sympy.cse(renamed, symbols=_temporary_names(parameters))
    # Constants a language has no name for (Catalan, EulerGamma in C and JavaScript) are declared
    # first, as the temporaries are: sympy's human-readable printing put their declarations inside
    # the returned expression, `return const double Catalan = ...;`, which did not compile (an
    # independent hunt, 2026-12-06).
    constants: set[tuple[sympy.Expr, str]] = set()

    def printed(part: sympy.Expr) -> str:
        declared, _, code = _machine_printed(printer, part)
        constants.update(declared)
        return code

    lines = [(printed(symbol), printed(value)) for symbol, value in temporaries]
    result = printed(body)
    lines = [(str(constant), value) for constant, value in sorted(constants, key=str)] + lines
    source = _LAYOUTS[language](printer, name, parameters, lines, result, comment=comment)
    return GeneratedCode(language, source, name, tuple(parameters))


@functools.cache
def supported_functions(language: Language) -> tuple[str, ...]:
    """Every function name of the grammar (aliases included) the language's generated code can compute."""
    x, y = sympy.Symbol("x", real=True), sympy.Symbol("y", real=True)
    names: list[str] = []
    for spec in functions.SPECS:
        sample = (
            spec.build(x, 5) if spec.root and spec.min_args == 2 else spec.build(*[x, y][: spec.min_args])
        )
        try:
            _check_supported(_PRINTERS[language](), _prepare(sample), language)
        except FailedPrecondition:
            continue
        names.extend(spec.names)
    return tuple(sorted(names))


# --- preparing the expression -------------------------------------------------------------------

_REWRITES: Sequence[tuple[Any, Callable[..., sympy.Expr]]] = (
    # Elementary forms of what neither math.h nor Math has; real semantics for re/im.
    (sympy.sec, lambda a: 1 / sympy.cos(a)),
    (sympy.csc, lambda a: 1 / sympy.sin(a)),
    (sympy.cot, lambda a: 1 / sympy.tan(a)),
    (sympy.asec, lambda a: sympy.acos(1 / a)),
    (sympy.acsc, lambda a: sympy.asin(1 / a)),
    (sympy.acot, lambda a: sympy.atan(1 / a)),
    (sympy.sech, lambda a: 1 / sympy.cosh(a)),
    (sympy.csch, lambda a: 1 / sympy.sinh(a)),
    (sympy.coth, lambda a: 1 / sympy.tanh(a)),
    (sympy.asech, lambda a: sympy.acosh(1 / a)),
    (sympy.acsch, lambda a: sympy.asinh(1 / a)),
    (sympy.acoth, lambda a: sympy.atanh(1 / a)),
    # As written: evaluating sympy's own floor again (of 10^100/asin(10^-100)'s 333 bits, which ours
    # leaves alone) asks for more precision than sympy allows (PrecisionExhausted).
    (functions.RealFloor, lambda a: sympy.floor(a, evaluate=False)),
    (functions.RealCeiling, lambda a: sympy.ceiling(a, evaluate=False)),
    (sympy.re, lambda a: a),
    (sympy.im, lambda a: sympy.S.Zero),
    # As Evaluate computes them (a hunt, 2026-12-05): factorial is gamma(a + 1) (scipy's factorial is
    # 0.0 below 0, Evaluate's gamma(1/2) at -1/2), and the principal log gamma has no real value
    # below 0 (scipy's gammaln and C's lgamma are log|gamma| there).
    (sympy.factorial, lambda a: sympy.gamma(a + 1)),
    (sympy.loggamma, lambda a: sympy.Piecewise((sympy.loggamma(a), a > 0), (sympy.nan, True))),
)


def _prepare(expr: sympy.Expr) -> sympy.Expr:
    for cls, rewrite in _REWRITES:
        if expr.has(cls):
            expr = expr.replace(cls, rewrite)
    if expr.has(sympy.zoo):
        # 1/0 (x/(sign(2) - 1), or 1/im(c) once im is 0): no real value, NaN in every language, as
        # in Evaluate.
        expr = expr.xreplace({sympy.zoo: sympy.nan})
    if expr.has(sympy.I):
        # A non-real constant (d/dx (-8)^x holds log(8) + i pi): what it reaches has no real value,
        # NaN as in Evaluate; Python's code returned a complex number, C's and JavaScript's did not
        # compile (a hunt, 2026-12-05).
        expr = expr.xreplace({sympy.I: sympy.nan})
    return expr


def _machine_printed(printer: Any, expr: sympy.Expr) -> tuple[set[tuple[sympy.Expr, str]], set[Any], str]:
    """sympy's printing for programs: the constants to declare, what is not supported, the code."""
    printer._settings["human"] = False
    try:
        printed: tuple[set[tuple[sympy.Expr, str]], set[Any], str] = printer.doprint(expr)
    finally:
        printer._settings["human"] = True
    return printed


def _check_supported(printer: Any, expr: sympy.Expr, language: Language) -> None:
    _, unsupported, _ = _machine_printed(printer, expr)
    if unsupported:
        names = sorted({_grammar_name(node) for node in unsupported})
        listed = ", ".join(names)
        raise FailedPrecondition(
            f"the derivative needs {listed}, which generated {language.value} code cannot compute",
            reason="UNSUPPORTED_FUNCTION",
            metadata={"function": listed, "format": language.name},
        )


def _grammar_name(node: sympy.Basic) -> str:
    cls = type(node)
    for spec in functions.SPECS:
        sample = spec.build
        if sample is cls or getattr(sample, "__name__", "") == cls.__name__:
            return spec.name
    return cls.__name__


# --- names ---------------------------------------------------------------------------------------

_C_RESERVED = frozenset(
    """auto break case char const continue default do double else enum extern float for goto if inline
    int long register restrict return short signed sizeof static struct switch typedef union unsigned
    void volatile while pow fabs cbrt copysign tgamma lgamma fmax fmin exp2 expm1 log1p hypot fma
    NAN INFINITY HUGE_VAL M_E M_PI M_PI_2 M_PI_4 M_1_PI M_2_PI M_2_SQRTPI M_SQRT2 M_SQRT1_2 M_LN2 M_LN10
    M_LOG2E M_LOG10E""".split()  # noqa: SIM905
)
_JS_RESERVED = frozenset(
    """break case catch class const continue debugger default delete do else export extends false finally
    for function if import in instanceof new null return super switch this throw true try typeof var void
    while with yield let static enum await implements package protected interface private public
    arguments eval undefined NaN Infinity Math""".split()  # noqa: SIM905
)
_PYTHON_RESERVED = frozenset({*keyword.kwlist, *keyword.softkwlist, "numpy", "scipy", "functools", "math"})
_RESERVED = {Language.C: _C_RESERVED, Language.JAVASCRIPT: _JS_RESERVED, Language.PYTHON: _PYTHON_RESERVED}


def _safe_names(variables: Sequence[str], language: Language) -> list[str]:
    taken = set(variables) | _RESERVED[language]
    result = []
    for name in variables:
        safe = name
        while safe in _RESERVED[language] or (safe != name and safe in taken):
            safe += "_"
        taken.add(safe)
        result.append(safe)
    return result


def _temporary_names(parameters: Sequence[str]) -> Any:
    prefix = "t"
    while any(name.startswith(prefix) and name[len(prefix) :].isdigit() for name in parameters):
        prefix += "_"
    return sympy.numbered_symbols(prefix, real=True)


# --- printers ------------------------------------------------------------------------------------


def _integer_index(expr: sympy.Expr) -> int:
    n = expr.args[1]
    if not n.is_Integer or n <= 0:
        raise FailedPrecondition(
            f"root with the index {n} has no generated code: use an integer index",
            reason="UNSUPPORTED_FUNCTION",
            metadata={"function": "root"},
        )
    return int(n)


class _CPrinter(bignum.DoubleLiterals, C99CodePrinter):  # type: ignore[misc]
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__({"strict": False, **(settings or {})})

    def _print_RealRoot(self, expr: sympy.Expr) -> str:  # noqa: N802
        n, x = _integer_index(expr), self._print(expr.args[0])
        if n == 3:
            return f"cbrt({x})"
        if n % 2:
            return f"copysign(pow(fabs({x}), 1.0/{n}), {x})"
        return f"pow({x}, 1.0/{n})"

    def _print_Pow(self, expr: sympy.Pow) -> str:  # noqa: N802
        # sympy prints x^(1/3) as cbrt(x), real for x < 0; chainrule (like numpy) gives NaN there.
        if expr.exp == sympy.Rational(1, 3):
            return f"pow({self._print(expr.base)}, 1.0/3.0)"
        return str(super()._print_Pow(expr))


class _JsPrinter(bignum.DoubleLiterals, JavascriptCodePrinter):  # type: ignore[misc]
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__({"strict": False, **(settings or {})})

    def _print_NaN(self, expr: sympy.Expr) -> str:  # noqa: N802
        return "NaN"

    def _print_RealRoot(self, expr: sympy.Expr) -> str:  # noqa: N802
        n, x = _integer_index(expr), self._print(expr.args[0])
        if n == 3:
            return f"Math.cbrt({x})"
        if n % 2:
            return f"Math.sign({x})*Math.pow(Math.abs({x}), 1/{n})"
        return f"Math.pow({x}, 1/{n})"

    def _print_Pow(self, expr: sympy.Pow) -> str:  # noqa: N802
        # sympy prints x^(1/3) as Math.cbrt(x), real for x < 0; chainrule (like numpy) gives NaN there.
        if expr.exp == sympy.Rational(1, 3):
            return f"Math.pow({self._print(expr.base)}, 1/3)"
        return str(super()._print_Pow(expr))


class _PythonPrinter(bignum.DoubleLiterals, SciPyPrinter):  # type: ignore[misc]
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__({"fully_qualified_modules": True, "strict": False, **(settings or {})})

    def _print_Pi(self, expr: sympy.Expr) -> str:  # noqa: N802
        self.module_imports["numpy"].add("pi")
        return "numpy.pi"

    def _print_RealRoot(self, expr: sympy.Expr) -> str:  # noqa: N802
        n, x = _integer_index(expr), self._print(expr.args[0])
        self.module_imports["numpy"].update({"cbrt", "sign", "abs"})
        if n == 3:
            return f"numpy.cbrt({x})"
        if n % 2:
            return f"numpy.sign({x})*numpy.abs({x})**(1/{n})"
        return f"numpy.power({x}, 1/{n})"

    def _print_DiracDelta(self, expr: sympy.Expr) -> str:  # noqa: N802
        # As Evaluate: 0 away from 0, NaN (no finite value) at 0.
        self.module_imports["numpy"].update({"where", "nan"})
        return f"numpy.where({self._print(expr.args[0])} == 0, numpy.nan, 0.0)"


_PRINTERS: dict[Language, Callable[[], Any]] = {
    Language.C: _CPrinter,
    Language.JAVASCRIPT: _JsPrinter,
    Language.PYTHON: _PythonPrinter,
}


# --- layouts -------------------------------------------------------------------------------------

Lines = Sequence[tuple[str, str]]


def _c_layout(
    printer: Any, name: str, parameters: Sequence[str], lines: Lines, result: str, *, comment: str
) -> str:
    arguments = ", ".join(f"double {p}" for p in parameters) or "void"
    body = [f"    (void){p};" for p in parameters]  # no unused-parameter warnings
    body += [f"    const double {t} = {v};" for t, v in lines]
    doc = f"/* {_one_line(comment)} */\n" if comment else ""
    code = "\n".join([*(v for _, v in lines), result])
    return f"#include <math.h>\n{_c_macros(code)}\n{doc}double {name}({arguments}) {{\n" + "\n".join(
        [*body, f"    return {result};", "}", ""]
    )


def _c_macros(code: str) -> str:
    """Definitions of the M_* constants the code uses: POSIX has them, strict C99 does not."""
    lines = []
    for value, macro in sorted(get_math_macros().items(), key=lambda item: str(item[1])):
        if re.search(rf"\b{macro}\b", code):
            lines += [f"#ifndef {macro}", f"#define {macro} {sympy.N(value, 21)}", "#endif"]
    return "".join(f"{line}\n" for line in lines)


def _js_layout(
    printer: Any, name: str, parameters: Sequence[str], lines: Lines, result: str, *, comment: str
) -> str:
    doc = f"/** {_one_line(comment)} */\n" if comment else ""
    body = [f"  const {t} = {v};" for t, v in lines]
    return f"{doc}function {name}({', '.join(parameters)}) {{\n" + "\n".join(
        [*body, f"  return {result};", "}", ""]
    )


def _python_layout(
    printer: Any, name: str, parameters: Sequence[str], lines: Lines, result: str, *, comment: str
) -> str:
    # float64 semantics for plain Python numbers too: (-8.0)**(1/3) is NaN, as in Evaluate, not complex.
    printer.module_imports["numpy"].update({"asarray", "float64"})
    imports = sorted(f"import {module}" for module in printer.module_imports)
    body = [f"    {p} = numpy.asarray({p}, dtype=numpy.float64)" for p in parameters]
    body += [f"    {t} = {v}" for t, v in lines]
    doc = [f'    """{_one_line(comment)}"""'] if comment else []
    header = "\n".join(imports) + "\n\n\n" if imports else ""
    return (
        header
        + f"def {name}({', '.join(parameters)}):\n"
        + "\n".join([*doc, *body, f"    return {result}", ""])
    )


def _one_line(comment: str) -> str:
    """A comment that cannot end its comment or docstring early."""
    return " ".join(comment.split()).replace("*/", "* /").replace('"', "'").replace("\\", "/")


_LAYOUTS = {Language.C: _c_layout, Language.JAVASCRIPT: _js_layout, Language.PYTHON: _python_layout}
