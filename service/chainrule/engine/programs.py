"""Compiled numeric code that crosses processes: generated where sympy runs, bound where numpy runs.

`generate` lambdifies component expressions over positional arguments, with common subexpressions
eliminated, and keeps only the generated function's code object (marshalled) and the names of the
globals it reads. `bind` turns that back into a function whose globals are exactly those names,
taken from one namespace built once from `functions.lambdify_modules()`. So the expensive part
(partials, CSE, printing, compiling) can run in a killable worker process under a time budget, and
the process that evaluates only binds, in time linear in the code's size.

Why not the lambdified function itself: it does not pickle, and each one carries a private copy of
the whole namespace (every kernel, `kernels.NAMESPACE`) as its globals; a bound program carries its
code and a handful of names. The code is printed by `numeric_code.NumericPrinter`: kernels by name,
constants folded to doubles. `marshal` is valid only within one interpreter version,
which holds here: programs come from our own worker processes, forked from our own forkserver, and
are code our generator printed from trees our parser built, never text from a request.
"""

from __future__ import annotations

import builtins
import dis
import functools
import inspect
import marshal
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.core.symbol import Str

from chainrule.engine import destinations, functions, numeric_code, removable
from chainrule.engine.limits import EngineLimits, exceeded
from chainrule.engine.overflow import GENERATED_FILE_NAME

# What a bound program holds, fitted to tracemalloc's measure (tests/engine/test_programs.py; within
# 25% above it from 1 to 12 arguments and 0.1 to 11 KB of code): the function object, its globals
# dict, the unmarshalled code (1.5 times the marshalled bytes and more, kept too: 2.5 times in all
# came 0.2% under for the gradients of a product of sines, 7 KB of code each) and, per argument,
# its name and slot in the code object.
_BOUND_OVERHEAD = 1600
_BOUND_PER_NAME = 64
_BOUND_PER_ARGUMENT = 112
# A float constant is 9 marshalled bytes and, unmarshalled, an object of 24 bytes and a tuple's slot
# of 8: what the marshalled size leaves out, mostly the Taylor polynomials' coefficients (`removable`,
# 30 to 40 a polynomial). 13 bytes a float more than counted, measured, and a margin (a plan holding
# one polynomial held 7% more than it was counted without this).
_BOUND_PER_FLOAT = 16


@dataclass(frozen=True)
class Program:
    """A generated numeric function in a form that pickles.

    `code` is the marshalled code object of a function taking one argument per name in `arguments`
    and returning one value (`single`) or a tuple of `outputs` values; `names` are the globals it
    reads. `reads` are the arguments the expressions depend on (the others may be given any value);
    `operations` counts the nodes of the code after common subexpressions are shared, slow kernels
    weighted by their cost (`numeric_code.cost`): the work per point, within a small factor; and
    `overhead` what one evaluation costs besides, whatever the points (`numeric_code.overhead`).
    """

    code: bytes
    names: tuple[str, ...]
    arguments: tuple[str, ...]
    reads: frozenset[str]
    outputs: int
    single: bool
    operations: int
    overhead: int = 0
    floats: int = 0  # float constants in the code, however deep (`memory_bytes`)

    @property
    def pointwise(self) -> bool:
        """Whether it calls mpmath's kernels, which compute point by point in Python and hold the
        GIL throughout (seconds for a few hundred points of zeta's partials): nothing else weighs as
        much (`numeric_code.cost`)."""
        return self.operations >= numeric_code.MPMATH_COST

    @property
    def memory_bytes(self) -> int:
        """What holding this program and its bound function costs, in bytes (an upper estimate)."""
        return (
            _BOUND_OVERHEAD
            + 21 * len(self.code) // 8
            + _BOUND_PER_NAME * len(self.names)
            + _BOUND_PER_ARGUMENT * len(self.arguments)
            + _BOUND_PER_FLOAT * self.floats
        )


def generate(
    parts: Sequence[sympy.Expr],
    arguments: Sequence[str],
    *,
    single: bool,
    limits: EngineLimits,
    taylor: bool = True,
) -> Program:
    """Compile `parts` (one expression if `single`) over `arguments` into a `Program`.

    Every free symbol of `parts` must be named in `arguments`. The code's marshalled size is bounded
    by `limits.max_code_bytes` (LimitExceeded `code_bytes`): it is what the caller keeps in its caches.
    With `taylor`, a part of one variable that cancels next to a point has its Taylor polynomial
    there (`removable`).
    """
    position = {name: index for index, name in enumerate(arguments)}
    # Argument names of our own, so no user variable can shadow a kernel's name in the generated code.
    symbols = [sympy.Symbol(f"_a{index}", real=True) for index in range(len(arguments))]
    renames: dict[sympy.Basic, sympy.Basic] = {
        s: symbols[position[s.name]] for part in parts for s in part.free_symbols
    }
    written = [numeric_code.exact_decimals(part.xreplace(renames)) for part in parts]
    with removable.tries(
        slow=_SLOW_TRIES_PER_PLAN, every=_TRIES_PER_PLAN, costly=_COSTLY_EVALUATIONS_PER_PLAN
    ):
        if taylor:
            written = [_taylor_factors(part) for part in written]
        renamed, constants = numeric_code.prepare(written)
        if taylor:
            renamed = [_taylor_near(raw, ready) for raw, ready in zip(written, renamed, strict=True)]
    replacements, reduced = sympy.cse(renamed)
    operations = sum(_tree_size(value) for _, value in replacements) + sum(map(_tree_size, reduced))
    shared = (replacements, reduced[0] if single else reduced)
    function = _lambdified(symbols, renamed[0] if single else renamed, constants, cse=lambda _: shared)
    code = _with_destinations(function, 1 if single else len(parts))
    marshalled = marshal.dumps(code)
    if len(marshalled) > limits.max_code_bytes:
        what = "the compiled numeric code is too large (simplify the expression or evaluate it in parts)"
        raise exceeded(limits, "max_code_bytes", len(marshalled), field="expression", what=what)
    names = tuple(sorted({name for name in _global_names(code) if name in function.__globals__}))
    _check_namespace(names, function.__globals__)
    return Program(
        code=marshalled,
        names=names,
        arguments=tuple(arguments),
        reads=frozenset(s.name for part in parts for s in part.free_symbols),
        outputs=1 if single else len(parts),
        single=single,
        # The heavier of the parts as written and as `prepare` rewrote them: a rewrite may call a
        # slower kernel (log(gamma(x)) is log_gamma, 300 a point, where gamma and log weigh 32).
        operations=operations
        + max(numeric_code.cost(sympy.Tuple(*parts)), numeric_code.cost(sympy.Tuple(*renamed))),
        overhead=numeric_code.overhead(renamed),
        floats=_float_constants(code.co_consts),
    )


def _lambdified(
    symbols: Sequence[sympy.Symbol], expr: Any, constants: dict[sympy.Symbol, float], **options: Any
) -> Callable[..., Any]:
    """lambdify with our kernels and printer (prepared expressions: `numeric_code.prepare`)."""
    function: Callable[..., Any] = sympy.lambdify(
        symbols,
        expr,
        modules=functions.lambdify_modules(),
        printer=numeric_code.NumericPrinter(constants),
        docstring_limit=0,  # no docstring: printing the expression for it costs as much again
        **options,
    )
    return function


# Polynomials tried for formulas calling polygamma, and for all formulas, and evaluations of formulas
# calling polygamma at 1,024 bits, a plan (`removable.tries`).
_SLOW_TRIES_PER_PLAN = 3
_TRIES_PER_PLAN = 12
_COSTLY_EVALUATIONS_PER_PLAN = 100


def _taylor_near(raw: sympy.Expr, ready: sympy.Expr) -> sympy.Expr:
    """`ready` (the printable form of `raw`), with the Taylor polynomials of `raw` where it cancels
    (`removable`). Numbers are exact rationals of their doubles: the printer writes the doubles.
    A formula past the plan's tries stays as it is (and is not cached as patched or not)."""
    try:
        found = _patches(raw)
    except removable.OutOfTries:
        return ready
    for patch in found:
        shifted = 1 / patch.symbol if patch.reciprocal else patch.symbol - sympy.Rational(patch.at)
        u = shifted / sympy.Rational(patch.scale)
        exact = sympy.Tuple(*(sympy.Rational(c) for c in patch.coefficients))
        reach = sympy.Rational(patch.reach)
        ready = numeric_code.Kernel(
            Str(removable.KERNEL),
            u,
            reach,
            ready,
            exact,
            sympy.true if patch.exact else sympy.false,
            sympy.Integer(patch.side),
        )
    return ready


# The partials of a product share its factors (the value, gradient and Hessian of y*log(1 + x^2)
# each have log(1 + x^2)): each is looked at once (55 ms where a polynomial is built or refused).
@functools.lru_cache(maxsize=256)
def _patches(raw: sympy.Expr) -> tuple[removable.Patch, ...]:
    return tuple(removable.patches(raw, float64=_Float64(raw)))


class _Float64:
    """A formula of one variable as its generated code computes it (`numeric_code.prepare`'s
    rewrites, our kernels), compiled when first called: only a formula that cancels as written is."""

    def __init__(self, raw: sympy.Expr) -> None:
        self._raw = raw
        self._function: Callable[..., Any] | None = None

    def __call__(self, points: Any) -> Any:
        if self._function is None:
            (ready,), constants = numeric_code.prepare([self._raw])
            (symbol,) = self._raw.free_symbols
            self._function = _lambdified([symbol], ready, constants)
        return self._function(points)


def _taylor_factors(raw: sympy.Expr, *, arguments: bool = True) -> sympy.Expr:
    """A part written as a product with its common factors taken out (or a sum), where the factors
    (or terms) of one variable calling only elementary functions, taken together, have a Taylor
    polynomial (`_taylor_near`): y (cos(x)/x - sin(x)/x^2), the partial of y sin(x)/x, cancels next
    to x = 0 as its factor of x does, and so does the derivative of gamma(sin(x)/x), gamma(u)
    digamma(u) (cos(x)/x - sin(x)/x^2), which as a whole calls functions no patch is built for (an
    independent hunt: -0.0 at 1e-8, truth 1.9e-9). Sums and products among the rest are looked into
    the same way: the second derivative of gamma(sin(x)/x) is gamma(u)/x times a sum of terms such as
    (2 sin(x)/x^2 - 2 cos(x)/x - sin(x)) digamma(u) (a hunt: 1.72 at 1e-8, truth 0.192). As it
    was, elsewhere, and for a part of one variable that is patched whole. With `arguments`, a part
    of several variables is first tried as a function of one argument of several variables
    (`_in_one_argument`): as a whole, since its pieces may cancel only together (the partials of
    z (x y - sin(x y))/(x y)^3 hold x y - sin(x y), which cancels on its own too); then a sum of
    products of factors of one variable each as a product of sums of one variable (`_separated`)."""
    symbols = raw.free_symbols
    if not symbols or (len(symbols) == 1 and removable.elementary(raw)):
        return raw
    if sympy.count_ops(raw) > removable.MAX_NODES:
        return raw
    if arguments and len(symbols) > 1:
        patched = _in_one_argument(raw)
        if patched is not raw:
            return patched
    if isinstance(raw, _STEPS):
        return _patched_arguments(raw)
    whole = sympy.factor_terms(raw)
    separated = _separated(whole) if arguments else None
    if separated is not None:
        patched = _patched_product(separated, raw)
        if patched is not raw:
            return patched
    if whole.is_Add:
        return _patched_sum(whole, raw)
    if whole.is_Mul:
        return _patched_product(whole, raw)
    return raw


def _separated(whole: sympy.Expr) -> sympy.Expr | None:
    """A sum (or a product holding sums) of products of factors of one variable each, written as a
    product of sums of one variable each where it is one, else None. The mixed partial of
    sin(x)/x cos(y)/y is four such terms that cancel next to x = 0 only as (cos(x) - sin(x)/x)/x, a
    factor of it sympy does not write (0.0 at (1e-8, 3), truth -2.1e-10). Terms are grouped by their
    factors in all variables but the first: the sum separates where each group's factors in the first
    are the same up to a number (not `sympy.factor`: it took 5 s to find that a sum of two such
    products of six variables does not factor)."""
    factors: list[sympy.Expr] = []
    changed = False
    for piece in sympy.Mul.make_args(whole):
        split = _split(piece) if piece.is_Add else None
        changed = changed or split is not None
        factors.extend(split or [piece])
    return sympy.Mul(*factors, evaluate=False) if changed else None


def _split(total: sympy.Expr) -> list[sympy.Expr] | None:
    """The factors of one variable each whose product is `total`, a sum, if it separates (`_separated`)."""
    terms: list[tuple[sympy.Expr, dict[sympy.Basic, sympy.Expr]]] = []
    for term in sympy.Add.make_args(total):
        number, rest = term.as_coeff_Mul()
        by_variable: dict[sympy.Basic, sympy.Expr] = {}
        for factor in sympy.Mul.make_args(rest):
            symbols = factor.free_symbols
            if len(symbols) != 1:
                return None
            (symbol,) = symbols
            by_variable[symbol] = by_variable.get(symbol, sympy.S.One) * factor
        terms.append((number, by_variable))
    variables = sorted({symbol for _, by_variable in terms for symbol in by_variable}, key=str)
    if len(variables) < 2:
        return None
    first = variables[0]
    groups: dict[sympy.Expr, dict[sympy.Expr, sympy.Expr]] = {}
    for number, by_variable in terms:
        others = sympy.Mul(*(factor for symbol, factor in by_variable.items() if symbol != first))
        mine = by_variable.get(first, sympy.S.One)
        group = groups.setdefault(others, {})
        group[mine] = group.get(mine, sympy.S.Zero) + number
    (_, shape), *rest = groups.items()
    multiples: list[sympy.Expr] = [sympy.S.One]
    for _, group in rest:
        if group.keys() != shape.keys():
            return None
        ratios = {group[key] / shape[key] for key in shape}
        if len(ratios) != 1:
            return None
        multiples.append(ratios.pop())
    in_first = sympy.Add(*(number * factor for factor, number in shape.items()))
    in_others = sympy.Add(*(multiple * key for multiple, key in zip(multiples, groups, strict=True)))
    if in_others.is_Add:
        return [in_first, *(_split(in_others) or [in_others])]
    return [in_first, *sympy.Mul.make_args(in_others)]


def _patched_product(whole: sympy.Expr, raw: sympy.Expr) -> sympy.Expr:
    """A product's factors of one variable, grouped by variable, each group patched (`_taylor_factors`)."""
    groups: dict[sympy.Basic, list[sympy.Expr]] = {}
    pieces: list[sympy.Expr] = []
    changed = False
    for piece in whole.args:
        variable = _elementary_in(piece)
        if variable is not None:
            groups.setdefault(variable, []).append(piece)
        else:
            inner = _taylor_factors(piece, arguments=False) if _looked_into(piece) else piece
            changed = changed or inner is not piece
            pieces.append(inner)
    for group in groups.values():
        one = sympy.Mul(*group)
        patched = _taylor_near(one, one)
        changed = changed or patched is not one
        pieces.append(patched)
    return sympy.Mul(*pieces) if changed else raw


# The variable a part is written in when it is looked at as a function of one argument (a name no
# caller's variable has: theirs are renamed `_a0`, `_a1`, ...).
_ARGUMENT = sympy.Symbol("_w", real=True)
# Arguments of several variables a part is tried in, at most (each costs a look at the part: `patches`).
_MAX_ARGUMENTS = 3


def _in_one_argument(raw: sympy.Expr) -> sympy.Expr:
    """A part of several variables that cancels where one argument w = w(x, y, ...) of its functions
    is next to a point, written in w and the variables but one, patched there (`_taylor_factors`),
    then in the variables again: the partials of sin(x y)/(x y) are y (cos(w)/w - sin(w)/w^2) and
    w (...) + (...) with w = x y, whose terms cancel next to w = 0 whatever x and y are. They were
    -3.33e-8 at (1e-8, 3), truth -3e-8, and -2.2e138 at (1e-154, 3) (a review of what was left).
    Tried on the arguments in which some variable x or its square is linear (w = a x + b, a and b
    free of x: x y, x + y, 2x - y z, x^2 + y^2): x is (w - b)/a, which sympy's products and sums
    cancel again once w is written back (x y/y is x)."""
    for argument in _composite_arguments(raw)[:_MAX_ARGUMENTS]:
        written = _written_in(raw, argument)
        if written is None:
            continue
        if written.free_symbols == {_ARGUMENT}:
            patched = _taylor_near(written, written) if removable.elementary(written) else written
        else:
            patched = _taylor_factors(written, arguments=False)
        if patched is not written:
            # Where w is 0 as the formula is not 0/0 (y = 0 in sin(x y)/x, whose partials are
            # y^k g(w)/w^k), the polynomial's own point keeps the w form, 0/0: the part as written
            # there (a regression hunt: d/dx sin(x y)/x at (1, 0) was NaN, truth 0).
            return numeric_code.Kernel(Str("finite_or"), patched.xreplace({_ARGUMENT: argument}), raw)
    return raw


def _composite_arguments(raw: sympy.Expr) -> list[sympy.Expr]:
    """The arguments of the part's functions and the bases of its powers that hold several variables,
    largest first (their order is sympy's, so the same part is always tried the same way)."""
    found = {
        argument
        for node in sympy.preorder_traversal(raw)
        if isinstance(node, (sympy.Function, sympy.Pow))
        for argument in (node.args if isinstance(node, sympy.Function) else node.args[:1])
        if len(argument.free_symbols) > 1
    }
    return sorted(found, key=lambda argument: (-_tree_size(argument), sympy.default_sort_key(argument)))


def _written_in(raw: sympy.Expr, argument: sympy.Expr) -> sympy.Expr | None:
    """`raw` written through the argument (`_ARGUMENT`, w), by the first variable x (by name) the
    argument is linear in, or else in x^2 (x^2 + y^2): x (or x^2) is (w - b)/a; None where there is
    none. sympy's `subs` of x^2 leaves odd powers of x as they are, and writes x^4 as (x^2)^2."""
    marker = sympy.Dummy()
    for variable in sorted(argument.free_symbols, key=lambda symbol: symbol.name):
        for generator in (variable, variable**2):
            through = argument.subs(generator, marker)
            if through.has(variable):
                continue
            offset, varying = through.as_independent(marker, as_Add=True)
            slope, alone = varying.as_independent(marker, as_Add=False)
            if alone != marker:  # not linear, or not as sympy wrote it (x y + x)
                continue
            written = raw.subs(generator, (_ARGUMENT - offset) / slope)
            return written if written.has(_ARGUMENT) else None
    return None


def _patched_sum(whole: sympy.Expr, raw: sympy.Expr) -> sympy.Expr:
    """A sum's terms grouped by what multiplies their factors of one variable (`_elementary_in`),
    each group's sum of those factors patched: the product rule's terms share the other factor, and
    cancel only together (d/dx digamma(x + 2) sin(x)/x holds digamma(x + 2) (cos(x) - sin(x)/x)/x as
    two terms: -1.49 at 1e-8 for the second derivative, truth -0.545; a second hunt). A constant term
    joins the sum of the only variable's group (1 - cos(x) - 3(x - sin(x))/x cancels only with it)."""
    groups: dict[tuple[sympy.Basic, sympy.Basic], list[sympy.Expr]] = {}
    constants: list[sympy.Expr] = []
    others: list[sympy.Expr] = []
    changed = False
    for term in whole.args:
        if not term.free_symbols:
            constants.append(term)
            continue
        tagged = [(factor, _elementary_in(factor)) for factor in sympy.Mul.make_args(term)]
        variables = {variable for _, variable in tagged} - {None}
        if _ARGUMENT in variables:  # a part written in one argument: its factors of it, whatever else
            variables = {_ARGUMENT}
        if len(variables) != 1:
            inner = _taylor_factors(term, arguments=False)
            changed = changed or inner is not term
            others.append(inner)
            continue
        (variable,) = variables
        mine = [f for f, of in tagged if of == variable or not f.free_symbols]
        rest = sympy.Mul(*(f for f, of in tagged if of != variable and f.free_symbols))
        groups.setdefault((rest, variable), []).append(sympy.Mul(*mine))
    if len({variable for rest, variable in groups if rest == 1}) == 1:
        key = next(k for k in groups if k[0] == 1)
        groups[key] += constants
    else:
        others += constants
    pieces = others
    for (rest, _), group in groups.items():
        one = sympy.Add(*group)
        patched = _taylor_near(one, one)
        # The product rule's other factor: sign(u) of |u|'s derivative, sign(u) u', cancels as u does.
        kept = _taylor_factors(rest, arguments=False) if rest.has(*_STEPS) else rest
        if patched is not one or kept is not rest:
            changed = True
        pieces.append(kept * patched)
    return sympy.Add(*pieces) if changed else raw


# Functions that are piecewise constant or linear in their arguments (no polynomial is built for
# them: not analytic at their kinks and jumps), whose arguments may still cancel: |u|, sign(u),
# Heaviside(u), floor(u), Min(u, c) of u = sin(x)/x - 1 at 1e-8 were 0.0 (truth 1.7e-17, sign -1),
# the derivative sign(u) u' 0.0 (truth 3.3e-9), and the second, which holds DiracDelta(u), NaN
# (truth -1/3); u alone was right (a numbers hunt, 2026-12-07).
_STEPS = (
    sympy.Abs, sympy.sign, sympy.Heaviside, sympy.DiracDelta, sympy.floor, sympy.ceiling, sympy.Min, sympy.Max
)  # fmt: skip


def _looked_into(piece: sympy.Expr) -> bool:
    """Whether a factor of a product is patched inside (`_taylor_factors`): a sum, or a step."""
    return bool(piece.is_Add) or isinstance(piece, _STEPS)


def _patched_arguments(step: sympy.Expr) -> sympy.Expr:
    """A step function of patched arguments: each one of one variable where it cancels (`_taylor_near`),
    others looked into as any part is; the step itself stays as written."""
    arguments = [
        _taylor_near(argument, argument) if _elementary_in(argument) is not None
        else _taylor_factors(argument, arguments=False)
        for argument in step.args
    ]  # fmt: skip
    if all(new is old for new, old in zip(arguments, step.args, strict=True)):
        return step
    return step.func(*arguments, evaluate=False)


def _elementary_in(piece: sympy.Expr) -> sympy.Basic | None:
    """The variable of a factor or term of one variable calling only elementary functions, else None."""
    symbols = piece.free_symbols
    if len(symbols) == 1 and removable.elementary(piece):
        return next(iter(symbols))
    return None


def _with_destinations(function: Callable[..., Any], outputs: int) -> types.CodeType:
    """The code of lambdify's `function` with one output argument per value (`destinations`)."""
    source = destinations.rewrite(inspect.getsource(function), outputs, function.__globals__)
    # One file name for all: lambdify's are numbered, and each distinct name a server process loaded
    # stayed in its memory after the code was gone (60 bytes per plan ever compiled, without bound).
    compiled = compile(source, GENERATED_FILE_NAME, "exec")
    return next(c for c in compiled.co_consts if isinstance(c, types.CodeType))


def bind(program: Program, known: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """The function of `program`, its globals bound from the shared namespace (or `known`, a
    namespace with the same names)."""
    code = marshal.loads(program.code)  # noqa: S302 - our own worker's output, see the module docstring
    if not isinstance(code, types.CodeType):
        raise TypeError(f"a program's code must be a code object, not {type(code).__name__}")
    known = namespace() if known is None else known
    scope: dict[str, Any] = {"__builtins__": builtins}
    for name in program.names:
        scope[name] = known[name]
    # The output arguments default to None: no destination, the values are returned fresh.
    outputs = (None,) * (code.co_argcount - len(program.arguments))
    return types.FunctionType(code, scope, None, outputs)


# The instructions on local variables, as stores and loads of their one or two names (3.11's, and the
# superinstructions of 3.13 and 3.14).
_FAST_LOCALS: dict[str, tuple[str, ...]] = {
    "LOAD_FAST": ("load",),
    "LOAD_FAST_CHECK": ("load",),
    "LOAD_FAST_BORROW": ("load",),
    "LOAD_FAST_AND_CLEAR": ("load",),
    "LOAD_FAST_LOAD_FAST": ("load", "load"),
    "LOAD_FAST_BORROW_LOAD_FAST_BORROW": ("load", "load"),
    "STORE_FAST": ("store",),
    "STORE_FAST_STORE_FAST": ("store", "store"),
    "STORE_FAST_LOAD_FAST": ("store", "load"),
}


def feeds(code: types.CodeType) -> dict[int, int] | None:
    """For each line of a generated function of several outputs, the outputs its value feeds (bit k
    for output k), read off its bytecode: each line assigns one local, and output k is assigned to
    `destinations.RESULT` + k on a line of its own. None where the outputs were not assigned so
    (one output, or a return too deep to rewrite), or the code holds an instruction on locals this
    does not know."""
    stores: dict[int, list[str]] = {}
    loads: dict[int, list[str]] = {}
    line = 0
    for instruction in dis.get_instructions(code):
        line = (
            instruction.positions.lineno if instruction.positions and instruction.positions.lineno else line
        )
        if "FAST" not in instruction.opname:
            continue
        kinds = _FAST_LOCALS.get(instruction.opname)
        if kinds is None:  # an instruction on locals of a Python this does not know: not told apart
            return None
        names = instruction.argval if isinstance(instruction.argval, tuple) else (instruction.argval,)
        for kind, name in zip(kinds, names, strict=True):
            (stores if kind == "store" else loads).setdefault(line, []).append(name)
    results = {f"{destinations.RESULT}{index}": 1 << index for index in range(code.co_argcount)}
    if not any(name in results for names in stores.values() for name in names):
        return None
    # Later lines read what earlier ones assign: from the last line back, what each feeds is known
    # once every line reading its local has been seen.
    needed: dict[str, int] = {}
    fed: dict[int, int] = {}
    for number in sorted(stores.keys() | loads.keys(), reverse=True):
        outputs = 0
        for name in stores.get(number, ()):
            outputs |= results.get(name, 0) | needed.get(name, 0)
        fed[number] = outputs
        for name in loads.get(number, ()):
            needed[name] = needed.get(name, 0) | outputs
    return fed


@functools.cache
def namespace() -> Mapping[str, Any]:
    """Every name generated code may read: lambdify's own namespace for our modules (built once)."""
    probe = sympy.lambdify([], sympy.Integer(0), modules=functions.lambdify_modules(), docstring_limit=0)
    return types.MappingProxyType(dict(probe.__globals__))


def _check_namespace(names: Sequence[str], used: Mapping[str, Any]) -> None:
    """Each global the code reads must be the very object `bind` will give it (a bug otherwise)."""
    known = namespace()
    for name in names:
        if known.get(name) is not used[name]:
            raise RuntimeError(f"generated code reads '{name}', which the shared namespace does not hold")


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _global_names(constant)


def _float_constants(constants: tuple[Any, ...]) -> int:
    """The floats among `constants`, in tuples and nested code objects too."""
    return sum(
        1
        if isinstance(constant, float)
        else _float_constants(constant.co_consts)
        if isinstance(constant, types.CodeType)
        else _float_constants(constant)
        if isinstance(constant, tuple)
        else 0
        for constant in constants
    )


def _tree_size(expr: sympy.Basic) -> int:
    return sum(1 for _ in sympy.preorder_traversal(expr))
