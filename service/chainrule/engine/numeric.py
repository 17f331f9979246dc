"""Numeric evaluation: sympy expressions compiled to numpy functions, run over float64 columns.

Compiled functions pickle as their `programs.Program` (marshalled code and the names it reads), so
a worker process can compile and the evaluating process only binds.
Evaluation never raises for maths: NaN/±Inf land in their slots and are counted.
Large batches run in chunks: a chunk's temporaries stay in cache, which alone beats one whole-array
numpy pass by 2x. One thread per batch: numpy releases the GIL inside each operation, but a chunk
is dozens of short operations, and two threads splitting a batch ran no faster than one (GIL
hand-offs on small chunks, shared cache bandwidth on large ones; bench/PROFILE.md). Concurrent
requests still use the executor's threads.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import sympy

from chainrule.engine import kernels, overflow, programs, widening
from chainrule.engine.errors import FieldViolation, InvalidArgument, MissingVariable
from chainrule.engine.limits import EngineLimits
from chainrule.engine.programs import Program

FloatArray = npt.NDArray[np.float64]
Column = npt.ArrayLike
# Where a batch's results go: arrays of n_points float64 values the caller allocated (any alignment:
# views into the reply it will send), else None and the engine allocates them.
Outputs = Sequence[FloatArray] | None

# Elements per chunk across all outputs and a few temporaries: 4 MB of float64, measured best
# (from 1 to 8 MB) on 10^5 and 10^6 points; smaller chunks pay numpy's per-call overhead more often.
_CACHE_ELEMENTS = 524_288
_MIN_CHUNK, _MAX_CHUNK = 4_096, 65_536
_UNUSED = np.zeros(1)
_LIMITS = EngineLimits()
# A call (its float64 run and its mpmath kernels) may take this many times the time its cost
# estimate says, and at least this long: the estimate is a worst case within a factor of two or so
# (numeric_code.cost).
_POINTWISE_SLACK = 4
_MIN_POINTWISE_SECONDS = 1.0
_FLOAT64_RUN = "the evaluation"
_WIDENING = "computing again in long double the values that overflowed or underflowed float64"
# What helps instead: such points cost some 50 times as much, so fewer points, or fewer such ones.
_WIDENING_INSTEAD = (
    "(points where a value on the way is past the doubles cost some 50 times as much), or write the "
    "expression so that what it computes on the way stays within them (exp(a - b), not exp(a)/exp(b))"
)


@dataclass(frozen=True, eq=False)
class _Bound:
    """A `Program` and its function, bound where it is built or unpickled: it pickles as its fields,
    so a worker process can compile it; `reads` are the variables it depends on."""

    program: Program
    function: Callable[..., Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "function", programs.bind(self.program))

    @functools.cached_property
    def wide(self) -> Callable[..., Any]:
        """The function computing in long double where it can (`widening`), bound when first needed."""
        return programs.bind(self.program, widening.namespace())

    @functools.cached_property
    def feeds(self) -> dict[int, int] | None:
        """The outputs each line of the code feeds (`programs.feeds`), read when first needed."""
        return programs.feeds(self.function.__code__)

    @property
    def reads(self) -> frozenset[str]:
        return self.program.reads

    @property
    def guards(self) -> tuple[tuple[int, range], ...]:
        """(an output, the outputs it guards): where the first is NaN, so are the others. A derivative
        exists only where its function has a real value: d/dx log(x) is 1/x, finite at x = -1 where
        log(x) has no real value, and atanh, acoth, acosh and loggamma's do the same."""
        return ()

    @property
    def one_sided(self) -> tuple[tuple[int, int, int], ...]:
        """(an output, its function's output, the column it is a derivative along): where it is +-Inf
        at an edge of the function's domain, the one-sided limit's sign (`_one_sided`)."""
        return ()

    def __call__(self, columns: Sequence[FloatArray | float]) -> Any:
        with np.errstate(all="ignore"):
            return self.function(*columns)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), tuple(getattr(self, item.name) for item in fields(self) if item.init))


@dataclass(frozen=True, eq=False)
class CompiledFunction(_Bound):
    """A compiled expression taking one column per name in `variables` (those it does not read need
    no column). A derivative is `guarded` by its function: the program's second output, computed
    where it is evaluated and not returned (`_Bound.guards`)."""

    guarded: bool = False
    # The column a guarded derivative is taken along, where it is taken along one (`_one_sided`).
    along: int | None = None

    @property
    def variables(self) -> tuple[str, ...]:
        return self.program.arguments

    @property
    def guards(self) -> tuple[tuple[int, range], ...]:
        return ((1, range(1)),) if self.guarded else ()

    @property
    def one_sided(self) -> tuple[tuple[int, int, int], ...]:
        return ((0, 1, self.along),) if self.guarded and self.along is not None else ()


@dataclass(frozen=True, eq=False)
class _Components(_Bound):
    """A compiled function returning `component_count` outputs, partials by `variables` among them;
    it takes one column per name in `arguments`: the `variables`, then every other variable the
    expressions read (a gradient by `a, b` of `a*x + b` still needs `x`)."""

    variables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.program.outputs != self.component_count:
            raise ValueError(f"expected {self.component_count} components, got {self.program.outputs}")
        super().__post_init__()

    @property
    def arguments(self) -> tuple[str, ...]:
        return self.program.arguments

    @property
    def component_count(self) -> int:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class CompiledGradient(_Components):
    """One compiled function returning (f, partials..., Hessian upper triangle...)."""

    hessian: bool = False

    @property
    def component_count(self) -> int:
        n = len(self.variables)
        return 1 + n + (n * (n + 1) // 2 if self.hessian else 0)

    @property
    def guards(self) -> tuple[tuple[int, range], ...]:
        return ((0, range(1, self.component_count)),)

    @property
    def one_sided(self) -> tuple[tuple[int, int, int], ...]:
        # A second partial along the first of its variables: the limit from inside the domain is the
        # same along either where the function is smooth there (d2/dxdy asec(x y) at (-1, 1) was
        # +Inf, truth -Inf).
        n = len(self.variables)
        partials = tuple((1 + i, 0, i) for i in range(n))
        if not self.hessian:
            return partials
        return partials + tuple((1 + n + k, 0, i) for k, (i, _) in enumerate(upper_triangle(n)))


@dataclass(frozen=True, eq=False)
class CompiledJacobian(_Components):
    """One compiled function returning (f_1..f_m, then the m*n partials row-major) of a system.

    Subexpressions shared across rows are computed once (one CSE over all).
    """

    rows: int = 1

    @property
    def component_count(self) -> int:
        return self.rows * (1 + len(self.variables))

    @property
    def guards(self) -> tuple[tuple[int, range], ...]:
        n = len(self.variables)
        return tuple((row, range(self.rows + row * n, self.rows + (row + 1) * n)) for row in range(self.rows))

    @property
    def one_sided(self) -> tuple[tuple[int, int, int], ...]:
        n = len(self.variables)
        return tuple((self.rows + row * n + j, row, j) for row in range(self.rows) for j in range(n))


@dataclass(frozen=True)
class EvaluationResult:
    values: FloatArray
    nonfinite_count: int


@dataclass(frozen=True)
class GradientResult:
    """Value, gradient columns (one per variable) and Hessian columns (n*n row-major, symmetric).

    The Hessian's mirrored entries are the same array objects; `nonfinite_count` counts every slot
    of value, gradient and Hessian.
    """

    value: FloatArray
    gradients: tuple[FloatArray, ...]
    hessians: tuple[FloatArray, ...]
    nonfinite_count: int


@dataclass(frozen=True)
class JacobianResult:
    """The rows' values (m columns) and the Jacobian (m*n columns, row-major) at every point."""

    values: tuple[FloatArray, ...]
    jacobian: tuple[FloatArray, ...]
    nonfinite_count: int


def _program(
    parts: Sequence[sympy.Expr],
    variables: Sequence[str],
    single: bool,
    limits: EngineLimits,
    *,
    taylor: bool = True,
) -> Program:
    known = set(variables)
    missing = sorted({s.name for part in parts for s in part.free_symbols if s.name not in known})
    if missing:
        raise missing_columns(missing)
    return programs.generate(parts, variables, single=single, limits=limits, taylor=taylor)


def compile_function(
    expr: sympy.Expr,
    variables: Sequence[str],
    limits: EngineLimits = _LIMITS,
    function: sympy.Expr | None = None,
    *,
    taylor: bool = True,
    along: str | None = None,
) -> CompiledFunction:
    """Compile `expr` to a numpy function taking one column per name in `variables`; `expr` is a
    derivative of `function` if given (NaN where `function` is: `_Bound.guards`), which may read only
    those variables, taken `along` one of them if given (its sign at the edges of the function's
    domain: `_one_sided`). `taylor=False`: no Taylor polynomials where it cancels (`removable`), for
    a function only checked at a few points."""
    if function is None:
        return CompiledFunction(_program([expr], variables, True, limits, taylor=taylor))
    program = _program([expr, function], variables, False, limits)
    column = list(variables).index(along) if along is not None and along in variables else None
    return CompiledFunction(program, guarded=True, along=column)


def compile_components(
    components: Sequence[sympy.Expr],
    variables: Sequence[str],
    hessian: bool,
    limits: EngineLimits = _LIMITS,
) -> CompiledGradient:
    """Compile (f, partials, Hessian upper triangle) as one function with CSE across all of them."""
    arguments = _arguments(components, variables)
    return CompiledGradient(_program(components, arguments, False, limits), tuple(variables), hessian)


def compile_jacobian_components(
    components: Sequence[sympy.Expr], variables: Sequence[str], rows: int, limits: EngineLimits = _LIMITS
) -> CompiledJacobian:
    """Compile (f_1..f_m, then the m*n partials row-major) as one function with CSE across all of them."""
    arguments = _arguments(components, variables)
    return CompiledJacobian(_program(components, arguments, False, limits), tuple(variables), rows)


def _arguments(components: Sequence[sympy.Expr], variables: Sequence[str]) -> tuple[str, ...]:
    """`variables`, then every other variable the components read (in name order)."""
    reads = {symbol.name for part in components for symbol in part.free_symbols}
    return (*variables, *sorted(reads - set(variables)))


def gather_columns(columns: Mapping[str, Column], variables: Sequence[str]) -> tuple[list[FloatArray], int]:
    """Columns of `variables` as 1-d float64 arrays, and the common length (length 1 broadcasts)."""
    missing = [name for name in variables if name not in columns]
    if missing:
        raise missing_columns(missing)
    arrays = [np.asarray(columns[name], dtype=np.float64).reshape(-1) for name in variables]
    length = common_length(
        {name: len(array) for name, array in zip(variables, arrays, strict=True)}, "columns"
    )
    return arrays, length


def common_length(lengths: Mapping[str, int], field: str) -> int:
    """The number of points of columns of these `lengths` (a column of one value is repeated for
    every point); InvalidArgument naming the columns that differ from the most of the others (it
    named x, of x, y: 2 values and z: 3, as the odd one; an independent hunt, 2026-12-06)."""
    by_length: dict[int, list[str]] = {}
    for name, length in lengths.items():
        if length != 1:
            by_length.setdefault(length, []).append(name)
    if len(by_length) <= 1:
        return next(iter(by_length), 1)
    # The most columns agree on the expected length (ties: the longer)
    expected = max(by_length, key=lambda length: (len(by_length[length]), length))
    odd = sorted(name for length, names in by_length.items() if length != expected for name in names)
    described = ", ".join(f"'{name}' has {lengths[name]}" for name in odd)
    agreeing = ", ".join(f"'{name}'" for name in sorted(by_length[expected]))
    raise InvalidArgument(
        f"columns differ in length: {described} values, where {agreeing} "
        f"{'has' if len(by_length[expected]) == 1 else 'have'} {expected} "
        "(every column needs one value per point, or a single value for all)",
        field=f"{field}.{odd[0]}",
    )


def evaluate(
    fn: CompiledFunction, columns: Mapping[str, Column], n_points: int, into: Outputs = None
) -> EvaluationResult:
    """Evaluate at `n_points` points; the result always has n_points float64 values (in `into`'s one
    array when given: see `Outputs`)."""
    arrays = _columns_for(fn.variables, fn.reads, columns, n_points)
    (values,) = outputs = _outputs(1, n_points, into)
    counts = _run(fn, arrays, outputs)
    return EvaluationResult(values, counts[0])


def gradient(
    fg: CompiledGradient, columns: Mapping[str, Column], n_points: int, into: Outputs = None
) -> GradientResult:
    """Value, gradient and (if compiled with it) Hessian at `n_points` points; `into` holds the
    components in the compiled order: value, partials, then the Hessian's upper triangle by rows."""
    arrays = _columns_for(fg.arguments, fg.reads, columns, n_points)
    outputs = _outputs(fg.component_count, n_points, into)
    counts = _run(fg, arrays, outputs)
    n = len(fg.variables)
    value, gradients, upper = outputs[0], tuple(outputs[1 : n + 1]), outputs[n + 1 :]
    pairs = upper_triangle(n) if fg.hessian else []
    index = {pair: k for k, pair in enumerate(pairs)}
    hessians = tuple(upper[index[(min(i, j), max(i, j))]] for i in range(n) for j in range(n) if fg.hessian)
    # Mirrored Hessian entries share one array: count it once per slot it fills.
    count = sum(counts[: n + 1]) + sum(
        found * (1 if i == j else 2) for (i, j), found in zip(pairs, counts[n + 1 :], strict=True)
    )
    return GradientResult(value, gradients, hessians, count)


def upper_triangle(n: int) -> list[tuple[int, int]]:
    """The Hessian entries a gradient computes, in its order: (i, j) with i <= j, by rows."""
    return [(i, j) for i in range(n) for j in range(i, n)]


def jacobian(
    fj: CompiledJacobian, columns: Mapping[str, Column], n_points: int, into: Outputs = None
) -> JacobianResult:
    """The rows' values and the Jacobian at `n_points` points (`into`: the values, then the
    Jacobian row-major)."""
    arrays = _columns_for(fj.arguments, fj.reads, columns, n_points)
    outputs = _outputs(fj.component_count, n_points, into)
    counts = _run(fj, arrays, outputs)
    return JacobianResult(tuple(outputs[: fj.rows]), tuple(outputs[fj.rows :]), sum(counts))


def _outputs(count: int, n_points: int, into: Outputs) -> list[FloatArray]:
    if into is None:
        return [np.empty(n_points, dtype=np.float64) for _ in range(count)]
    if len(into) != count or any(array.shape != (n_points,) or array.dtype != np.float64 for array in into):
        raise ValueError(f"expected {count} float64 outputs of {n_points} values")
    return list(into)


def _columns_for(
    variables: Sequence[str], reads: frozenset[str], columns: Mapping[str, Column], n_points: int
) -> list[FloatArray]:
    # A variable the expression does not read (a gradient by `t` of x^2) needs no column.
    unused = {name: _UNUSED for name in variables if name not in reads and name not in columns}
    arrays, length = gather_columns({**columns, **unused} if unused else columns, variables)
    if length not in (1, n_points):
        raise InvalidArgument(f"columns have {length} values, expected {n_points}", field="columns")
    return arrays


def missing_columns(names: Sequence[str]) -> MissingVariable:
    """The error for variables that have no column of values (`columns.<name>`, one per variable)."""
    listed = ", ".join(repr(name) for name in names)
    return MissingVariable(
        f"no value given for variable{'s' if len(names) > 1 else ''} {listed}",
        violations=[FieldViolation(f"columns.{name}", f"variable '{name}' needs a value") for name in names],
    )


def _run(bound: _Bound, arrays: Sequence[FloatArray], outputs: Sequence[FloatArray]) -> list[int]:
    """Fill `outputs` with `bound`'s values chunk by chunk; return each output's count of non-finite
    values.

    A column or output that is not 8-byte aligned (a view into a request's or reply's bytes, where
    protobuf put its field) goes through an aligned chunk of scratch: numpy reads and writes
    misaligned arrays through a buffered copy at every operation, and a whole-column copy would
    pass through memory twice more.
    """
    single = bound.program.single
    counts = [0] * len(outputs)
    # Outputs past the caller's (a derivative's guard) are computed into scratch and not kept.
    targets: list[FloatArray | None] = [*outputs, *[None] * (bound.program.outputs - len(outputs))]
    n, chunk = len(outputs[0]), _chunk_size(len(targets))
    # The cost charged for the call (`Program.operations` per point, about a nanosecond each),
    # with room for the estimate's error: what its mpmath kernels may take.
    seconds = max(_MIN_POINTWISE_SECONDS, _POINTWISE_SLACK * bound.program.operations * n * 1e-9)
    watch = overflow.Watch()
    reading = [_scratch(array, chunk) for array in arrays]
    writing = [np.empty(chunk) if output is None else _scratch(output, chunk) for output in targets]
    with np.errstate(all="ignore", over="call", under="call", call=watch), kernels.pointwise_budget(seconds):
        for low in range(0, n, chunk):
            high = min(low + chunk, n)
            part = [
                _chunk_of(array, low, high, scratch) for array, scratch in zip(arrays, reading, strict=True)
            ]
            destinations = [
                _destination(target, scratch, low, high)
                for target, scratch in zip(targets, writing, strict=True)
            ]
            watch.clear()
            results = _computed(bound.function, part, destinations)
            overflowed, underflowed, imprecise = watch.seen, watch.underflowed, watch.imprecise
            for index, result in enumerate([results] if single else results):
                written = destinations[index]
                if result is not written:  # not computed in its column (`destinations`): copied there
                    written[...] = _as_real(result)
            if overflowed or underflowed:
                progress = (low, n)
                if overflowed:  # the chunk's values again where its float64 run overflowed (`widening`)
                    _mend(bound, part, destinations, watch, progress, underflow=False)
                if underflowed:
                    _mend_underflowed(bound, part, destinations, watch, progress)
                _check_widening_budget(high, n)
            unknown = None
            if imprecise is not None:
                unknown = _mend_imprecise(
                    bound, part, destinations, imprecise, watch=watch, progress=(low, n)
                )
            # Counted while the chunk is still in cache: a second pass would reread every output.
            found = _guarded_counts(bound.guards, destinations, unknown)
            if any(found) and bound.one_sided:
                _one_sided(bound, part, destinations)  # still not finite where it mends: counts stand
            for index, target in enumerate(outputs):
                counts[index] += found[index]
                if writing[index] is not None:
                    target[low:high] = destinations[index]
            # The float64 run's time is bounded too, not only the mpmath and long double kernels':
            # a weight below what a function takes on some arguments (numpy's scalar cos past 2^19)
            # ran a call 2.4 times past its budget, on a thread nothing can stop.
            kernels.check_budget(_FLOAT64_RUN, high, n)
    return counts


def _guarded_counts(
    guards: Sequence[tuple[int, range]],
    destinations: Sequence[FloatArray],
    unknown: Sequence[widening.BoolArray] | None = None,
) -> list[int]:
    """Each output's count of non-finite values, once the outputs a NaN guards are NaN there too;
    not where the guard is NaN as `unknown` (`_mend_imprecise`: it has a value, not known here), so
    that d/dy of sin(x^3) + y stays 1 where sin(x^3) is not known (a regression hunt, 2026-12-06)."""
    counts = [_nonfinite_count(written) for written in destinations]
    for guard, guarded in guards:
        if not counts[guard]:  # the usual case: every value finite, nothing to look for
            continue
        undefined = np.isnan(destinations[guard])
        if unknown is not None:
            undefined &= ~unknown[guard]
        if not undefined.any():
            continue
        for index in guarded:
            destinations[index][undefined] = np.nan
            counts[index] = _nonfinite_count(destinations[index])
    return counts


def _one_sided(bound: _Bound, part: Sequence[FloatArray], destinations: Sequence[FloatArray]) -> None:
    """A derivative that is +-Inf where its function is finite, at an edge of the function's domain
    along the derivative's variable, given the sign it has inside: there it is a one-sided limit,
    and its formula divides by a zero whose sign says nothing of the side (d^2/dx^2 asec(x) at -1
    was -Inf, from 1/(x + 1) with x + 1 = +0; the limit from the domain, x < -1, is +Inf; a hunt,
    2026-12-05). The sign inside is the derivative's at the double next to the point, where it must
    be growing toward the point (larger there than _FAR_ULPS doubles further in, with the same
    sign): next to 1, asin(x) - 1e9 x has the derivative 6.7e7 - 1e9, whose sign is not the limit's
    (the regression hunt of the rule). Where the point is isolated (no neighbour in the domain), NaN;
    where both neighbours are in the domain, or the sign inside is not growing, the value stands."""
    by_column: dict[int, list[tuple[int, int]]] = {}
    for output, guard, along in bound.one_sided:
        by_column.setdefault(along, []).append((output, guard))
    for along, pairs in by_column.items():
        infinite = [
            np.isinf(destinations[output]) & np.isfinite(destinations[guard]) for output, guard in pairs
        ]
        points = np.flatnonzero(np.logical_or.reduce(infinite))
        if not len(points):
            continue
        columns = [column if len(column) == 1 else column[points] for column in part]
        at = np.broadcast_to(columns[along], (len(points),))
        sides: dict[tuple[float, int], list[FloatArray]] = {}
        with np.errstate(all="ignore"):
            for toward in (-1.0, 1.0):
                for ulps in (1, _FAR_ULPS):
                    columns[along] = at + toward * ulps * np.abs(np.spacing(at))
                    results = bound.function(*columns)
                    outputs = [results] if bound.program.single else results
                    sides[toward, ulps] = [
                        np.broadcast_to(_as_real(value), (len(points),)) for value in outputs
                    ]
        for (output, guard), mask in zip(pairs, infinite, strict=True):
            near = {toward: ~np.isnan(sides[toward, 1][guard]) for toward in (-1.0, 1.0)}
            # No neighbour in the domain: an isolated point; else the value stands, but at an edge.
            mended = np.where(near[-1.0] | near[1.0], destinations[output][points], np.nan)
            for toward, other in ((-1.0, 1.0), (1.0, -1.0)):
                close, far = sides[toward, 1][output], sides[toward, _FAR_ULPS][output]
                growing = (np.sign(close) == np.sign(far)) & (np.abs(close) > np.abs(far))
                growing &= ~np.isnan(sides[toward, _FAR_ULPS][guard]) & (close != 0)
                edge = near[toward] & ~near[other]
                mended = np.where(edge & growing, np.sign(close) * np.inf, mended)
            chosen = mask[points]
            destinations[output][points[chosen]] = mended[chosen]


# How far in the second neighbour is, in doubles: where the derivative grows as 1/sqrt of the
# distance, 1,000 times smaller than at the first; where a finite term outweighs that growth, as
# large or larger.
_FAR_ULPS = 2**20


def _destination(target: FloatArray | None, scratch: FloatArray | None, low: int, high: int) -> FloatArray:
    """Where a chunk's output is computed: its place in the target, or scratch (copied there after)."""
    if scratch is not None:
        return scratch[: high - low]
    assert target is not None  # every output without a target has scratch
    return target[low:high]


def _scratch(array: FloatArray, chunk: int) -> FloatArray | None:
    """An aligned chunk for a misaligned column of many values (None: the column is used in place)."""
    return None if len(array) == 1 or array.flags.aligned else np.empty(chunk)


def _chunk_of(array: FloatArray, low: int, high: int, scratch: FloatArray | None) -> FloatArray:
    if len(array) == 1:  # broadcast
        return array
    if scratch is None:
        return array[low:high]
    copied = scratch[: high - low]
    np.copyto(copied, array[low:high])
    return copied


def _mend_underflowed(
    bound: _Bound,
    part: Sequence[FloatArray],
    destinations: Sequence[FloatArray],
    watch: overflow.Watch,
    progress: tuple[int, int],
) -> None:
    """The chunk's values again where its float64 run underflowed on the way: only at the points
    whose values an underflow may have damaged (`widening.doubtful`), as a Gaussian's tails underflow
    in every chunk that holds one and their long double run costs some 50 times float64's."""
    points = widening.doubtful(destinations, part)
    if not len(points):
        return
    columns = [column if len(column) == 1 else column[points] for column in part]
    values = [written[points] for written in destinations]
    _mend(bound, columns, values, watch, progress, underflow=True)
    for written, mended in zip(destinations, values, strict=True):
        written[points] = mended


def _mend_imprecise(
    bound: _Bound,
    part: Sequence[FloatArray],
    destinations: Sequence[FloatArray],
    imprecise: widening.BoolArray,
    *,
    watch: overflow.Watch,
    progress: tuple[int, int],
) -> list[widening.BoolArray]:
    """The chunk's values again in long double at the points where a periodic function's computed
    argument was too large for float64 (`imprecise`: `kernels.periodic_argument`), each from its
    own argument, so alone it gets the same. Where it is too large for long double as well, the
    values that depend on it are NaN: those that change when it moves (`widening.unknown_arguments_moved`).
    Where the long double run overflowed at such a point, `widening.mend` decides, as for the values
    float64 overflowed on the way to. Returns, for each output, where it is NaN for that alone."""
    size = len(destinations[0])
    unknown = [np.zeros(size, dtype=bool) for _ in destinations]
    points = np.flatnonzero(np.broadcast_to(imprecise, (size,)))
    if not len(points):
        return unknown
    columns = [column if len(column) == 1 else column[points] for column in part]
    values = [written[points] for written in destinations]
    if _quick_only.get():
        raise NeedsWidening
    wide_part = widening.widened(columns)
    watch.clear()
    again = _wide_values(bound, wide_part, len(points), progress)
    with widening.unknown_arguments_moved():
        moved = _wide_values(bound, wide_part, len(points), progress)
    for values_again, values_moved, not_known in zip(again, moved, unknown, strict=True):
        # On what is not known: it changes, or only the moved run is NaN (no double a quarter turn
        # away, or a move out of a domain); NaN in both is NaN as it is.
        depends = ~((values_again == values_moved) | (np.isnan(values_again) & np.isnan(values_moved)))
        values_again[depends] = np.nan
        not_known[points[depends]] = True

    def damaged(wide: bool, chosen: widening.IntArray) -> widening.BoolArray:
        if not wide:  # each of them, by its own argument
            return np.ones(len(chosen), dtype=bool)

        def evaluate(subset: widening.IntArray) -> object:
            _check_widening_budget(*progress)
            return bound.wide(*(c if len(c) == 1 else c[subset] for c in wide_part))

        return widening.flagging(evaluate, chosen, watch)

    widening.mend(values, again, watch.seen, damaged)
    for written, mended in zip(destinations, values, strict=True):
        written[points] = mended
    return unknown


def _mend(
    bound: _Bound,
    part: Sequence[FloatArray],
    values: Sequence[FloatArray],
    watch: overflow.Watch,
    progress: tuple[int, int],
    *,
    underflow: bool,
) -> None:
    """`values`, computed from `part` in float64, corrected by a long double run (`widening.mend`)
    where their own float64 evaluation overflowed (and with `underflow`, underflowed).

    Long double costs some 50 times float64, and where it is needed is known only now: the time
    budget of the call (`kernels.check_budget`, `progress`: the chunk's first point and the call's
    points) is checked before each evaluation, and the wide run goes _WIDE_SLICE points at a time,
    so no call computes for long past its budget (one ran for minutes, its deadline long gone)."""
    if _quick_only.get():
        raise NeedsWidening
    wide_part = widening.widened(part)
    watch.clear()
    again = _wide_values(bound, wide_part, len(values[0]), progress)
    wide_lost = watch.seen or (underflow and watch.underflowed)

    wide_lines: dict[int, set[int]] = {}

    def damaged(wide: bool, points: widening.IntArray) -> widening.BoolArray:
        function, columns = (bound.wide, wide_part) if wide else (bound.function, part)

        def evaluate(chosen: widening.IntArray) -> object:
            _check_widening_budget(*progress)
            return function(*(c if len(c) == 1 else c[chosen] for c in columns))

        return widening.flagging(
            evaluate, points, watch, underflow=underflow, lines=wide_lines if wide else None
        )

    def fed(point: int) -> int | None:
        """The outputs what overflowed in the point's wide run feeds (None: not known, all)."""
        feeds, lines = bound.feeds, wide_lines.get(point)
        if feeds is None or lines is None or not lines <= feeds.keys():  # UNKNOWN_LINE is no line
            return None
        return functools.reduce(operator.or_, (feeds[line] for line in lines), 0)

    widening.mend(values, again, wide_lost, damaged, fed)


def _wide_values(bound: _Bound, columns: Sequence[Any], size: int, progress: tuple[int, int]) -> list[Any]:
    """Each output of `bound`'s long double run over `columns` (`size` points), _WIDE_SLICE points
    at a time with the budget checked before each."""
    outputs: list[list[Any]] = []
    for low in range(0, size, _WIDE_SLICE):
        _check_widening_budget(*progress)
        high = min(low + _WIDE_SLICE, size)
        results = bound.wide(*(c if len(c) == 1 else c[low:high] for c in columns))
        sliced = [results] if bound.program.single else list(results)
        outputs.append([np.broadcast_to(_as_real(result), (high - low,)) for result in sliced])
    return [np.concatenate(pieces) for pieces in zip(*outputs, strict=True)]


def _check_widening_budget(done: int, total: int) -> None:
    kernels.check_budget(_WIDENING, done, total, instead=_WIDENING_INSTEAD)


# Points of one long double evaluation between checks of the call's time budget: about 1 ms of
# float64 work at 20 operations a point, some 50 ms in long double.
_WIDE_SLICE = 1024


class NeedsWidening(Exception):
    """An evaluation that must stay quick (`quick_only`) needs a long double run, which may cost
    some 50 times as much: the caller computes it again where it may take that long."""


_quick_only: contextvars.ContextVar[bool] = contextvars.ContextVar("quick_only", default=False)


@contextlib.contextmanager
def quick_only() -> Iterator[None]:
    """Evaluations in this block raise NeedsWidening rather than compute in long double (the server
    evaluates small requests on its event loop, where nothing may take long)."""
    token = _quick_only.set(True)
    try:
        yield
    finally:
        _quick_only.reset(token)


def _computed(
    function: Callable[..., Any], part: Sequence[FloatArray], destinations: Sequence[FloatArray]
) -> Any:
    """The function's values on one chunk, each output computed in its destination where it can be
    (`destinations`): one point and values numpy cannot write as float64 (complex ones) come fresh."""
    if len(destinations[0]) == 1:  # numpy writes a one-element array over itself slowly
        return function(*part)
    try:
        return function(*part, *destinations)
    except TypeError:  # a ufunc refused to cast a value into a float64 destination, before writing it
        return function(*part)


def _chunk_size(outputs: int) -> int:
    """A power of two such that the outputs and a few temporaries of one chunk fit in _CACHE_ELEMENTS."""
    wanted = _CACHE_ELEMENTS // (outputs + 4)
    return max(_MIN_CHUNK, min(_MAX_CHUNK, 1 << max(wanted, 1).bit_length() - 1))


def _as_real(result: Any) -> Any:
    """Float64 values (scalars broadcast on assignment); complex results keep only real values."""
    array = np.asarray(result)
    if array.dtype.kind == "c":
        array = np.where(array.imag == 0, array.real, np.nan)
    if array.dtype != np.float64:
        return widening.to_doubles(array)  # a long double run's values, or integers
    return array


def _nonfinite_count(array: FloatArray) -> int:
    if len(array) == 1:  # the single-point path: a scalar test costs a tenth of the array one
        return 0 if math.isfinite(array[0]) else 1
    # A sum is finite only if every value is (NaN and +-Inf propagate; an overflow only sends us to
    # the exact count): one pass and no temporary, unlike isfinite + count_nonzero, which runs only
    # then. Not a BLAS dot with zeros: OpenBLAS wakes its threads for each call, which under CPU
    # contention cost milliseconds a call (a 4x4 Jacobian at 10^5 points: 0.73 s of 0.79 s).
    if math.isfinite(np.add.reduce(array)):
        return 0
    return int(len(array) - np.count_nonzero(np.isfinite(array)))
