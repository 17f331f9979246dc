"""Programs: compiled numeric functions that cross processes as marshalled code and bind to names."""

from __future__ import annotations

import gc
import pickle
import tracemalloc
from typing import Any

import mpmath
import numpy as np
import pytest
import sympy

from chainrule import engine
from chainrule.engine import functions, parsing, programs, vectormath
from chainrule.engine.errors import FailedPrecondition, LimitExceeded
from chainrule.engine.limits import EngineLimits

x, y = (sympy.Symbol(name, real=True) for name in "xy")


def _call(spec: functions.FunctionSpec) -> str:
    # The variable last, where each function has a closed-form derivative (zeta's is in `a`).
    arity = 2 if spec.name == "zeta" else spec.min_args
    return f"{spec.name}({', '.join([*('2' for _ in range(arity - 1)), 'x'])})"


@pytest.mark.parametrize("spec", functions.SPECS, ids=lambda spec: spec.name)
def test_every_function_and_its_derivatives_bind_after_a_round_trip(spec: functions.FunctionSpec) -> None:
    # Every global the generated code reads must be in the shared namespace: the derivatives of a
    # function print other functions (digamma's is polygamma), so the gradient is compiled too.
    expression = parsing.parse(_call(spec)) * y
    compiled = engine.compile_gradient(expression, ["x", "y"], hessian=True)
    loaded = pickle.loads(pickle.dumps(compiled))
    columns = [np.array([0.7, 1.3]), np.array([2.0, -1.0])]
    for ours, theirs in zip(loaded(columns), compiled(columns), strict=True):
        assert np.array_equal(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), equal_nan=True)


@pytest.mark.parametrize(
    ("text", "at", "expected"),
    [
        ("zeta(x)", 2.5, lambda: mpmath.zeta(2.5, 1, 1)),
        ("zeta(x/2 + 3)", 1.0, lambda: mpmath.zeta(3.5, 1, 1) / 2),
        ("zeta(x, 2)", 0.5, lambda: mpmath.zeta(0.5, 2, 1)),
    ],
)
def test_a_derivative_without_a_closed_form_has_values(text: str, at: float, expected: Any) -> None:
    """sympy leaves d/ds zeta(s) unevaluated; numeric code computes it point by point (mpmath; the
    derivatives of polygamma in its order are in tests/server/test_every_number.py)."""
    compiled = engine.compile_gradient(parsing.parse(text), ["x"], hessian=False)
    loaded = pickle.loads(pickle.dumps(compiled))
    _, partial = loaded([np.array([at])])
    with mpmath.workdps(30):
        assert float(np.asarray(partial)[0]) == pytest.approx(float(expected()), rel=1e-12, abs=0)


def test_a_derivative_of_no_table_shape_is_no_numeric_form() -> None:
    """A derivative that is not one of a table function by its own arguments cannot be computed:
    NO_NUMERIC_FORM, named by the function as the text's refusal names it."""
    unevaluated = sympy.Derivative(sympy.zeta(x, x), x, evaluate=False)
    with pytest.raises(FailedPrecondition) as caught:
        engine.compile_function(unevaluated, ["x"])
    assert caught.value.reason == "NO_NUMERIC_FORM"
    assert caught.value.metadata["function"] == "zeta"
    assert "_xi" not in caught.value.message


def test_integer_powers_bind_to_vectormath_and_a_point_gets_what_a_batch_gets() -> None:
    # x^n outside numpy's fast exponents runs as vectormath.integer_power (numpy's power of a
    # negative base is scalar); the name comes from the shared namespace after a round trip.
    compiled = engine.compile_gradient(parsing.parse("(x - 1)^3/x^4 + x^5*y^2"), ["x", "y"], hessian=True)
    loaded = pickle.loads(pickle.dumps(compiled))
    assert loaded.function.__globals__["integer_power"] is vectormath.integer_power
    xs, ys = np.linspace(-3.0, 3.0, 601), np.linspace(-2.0, 2.0, 601)
    batch = engine.gradient(loaded, {"x": xs, "y": ys}, len(xs))
    for index in range(0, len(xs), 7):
        point = engine.gradient(loaded, {"x": xs[index : index + 1], "y": ys[index : index + 1]}, 1)
        for ours, theirs in zip((point.value, *point.gradients, *point.hessians),
                                (batch.value, *batch.gradients, *batch.hessians), strict=True):  # fmt: skip
            assert ours[0].tobytes() == theirs[index].tobytes()
    with np.errstate(divide="ignore"):  # x = 0 is among the points: -inf
        want = (xs - 1) ** 3 / xs**4 + xs**5 * ys**2
    np.testing.assert_allclose(batch.value, want, rtol=1e-14)


def test_a_bound_function_holds_only_the_names_it_reads() -> None:
    compiled = engine.compile_function(sympy.sin(x) * sympy.exp(y), ["x", "y"])
    names = set(compiled.function.__globals__) - {"__builtins__"}
    assert names == set(compiled.program.names)
    assert {"sin", "exp"} <= names
    assert len(names) < 10  # lambdify's own function carries all of numpy's and scipy's names


def test_programs_bound_and_dropped_leave_nothing_behind() -> None:
    # A server process binds every plan it compiles; each distinct file name of lambdify's numbered
    # ones stayed in memory after its code was gone (60 bytes a plan, 3,000 a batch, without bound).
    batches = [
        [
            engine.compile_function(x * k + sympy.Rational(k, 7), ["x"]).program
            for k in range(start, start + 50)
        ]
        for start in (1, 1001)
    ]
    growth = []
    tracemalloc.start()
    try:
        for batch in batches:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for program in batch:
                programs.bind(program)(np.ones(4))
            gc.collect()
            growth.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    assert growth[1] < 1_000, growth  # the first batch warms what is shared


def test_the_generated_code_size_is_a_limit() -> None:
    with pytest.raises(LimitExceeded) as caught:
        engine.compile_function(sympy.sin(x) + x**3, ["x"], EngineLimits(max_code_bytes=100))
    assert caught.value.metadata["limit"] == "code_bytes"
    assert int(caught.value.metadata["value"]) > 100


def test_bind_refuses_anything_but_a_code_object() -> None:
    program = engine.compile_function(x + 1, ["x"]).program
    forged = programs.Program(b"N", (), program.arguments, program.reads, 1, True, 1)  # marshal of None
    with pytest.raises(TypeError):
        programs.bind(forged)


def test_operations_count_shared_work_once() -> None:
    # atan: sin(u)^2 + sin(u) would be factored as sin(u) (1 + sin(u)), which calls one_minus_sin
    shared = sympy.atan(x * y + 1)
    once = engine.compile_function(shared, ["x", "y"]).program.operations
    twice = engine.compile_function(shared**2 + shared, ["x", "y"]).program.operations
    assert once < twice < 2 * once + 6


EXPRESSIONS = [
    "sin(3x) exp(y/4) + x^5",
    "tanh(w*x + b)^2*sin(x*y)/(1 + x^2 + y^2)",
    "log(1 + x^2 + y^2) * erf(x - y) + gamma(1 + x^2)",
    # issue 15's compile bomb in small: a product of sines of one sum (six variables, not 32)
    "*".join(f"sin({'+'.join(f'v{i}' for i in range(6))}+{k})" for k in range(1, 4)),
    "exp(" + "*".join(f"v{i}" for i in range(12)) + ")",
]


def _held_bytes(blobs: list[bytes]) -> tuple[int, list[Any]]:
    """tracemalloc's measure of `blobs` unpickled: the least of three tries, since it counts every
    thread's allocations and another thread (a server a fixture left running, the logging) only adds."""
    tries: list[int] = []
    held: list[Any] = []
    for _ in range(3):
        held = []
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            held = [pickle.loads(blob) for blob in blobs]
            gc.collect()
            tries.append(tracemalloc.get_traced_memory()[0] - before)
        finally:
            tracemalloc.stop()
    return min(tries), held


@pytest.mark.parametrize("text", EXPRESSIONS)
@pytest.mark.parametrize("hessian", [False, True])
def test_the_memory_estimate_covers_what_a_bound_program_holds(text: str, hessian: bool) -> None:
    # What the caches count for a compiled plan (`Program.memory_bytes`) against tracemalloc's
    # measure of 20 of them unpickled (5 Hessians, each several times a gradient's size and up to
    # 2 s to compile), as the server holds them: never under, at most 1.5x over. Distinct plans, not
    # one loaded many times: the copies of one share its constants (1 to 2% less held).
    expression = parsing.parse(text)
    names = engine.free_variables(expression)
    plans = 6 if hessian else 21
    blobs = [pickle.dumps(engine.compile_gradient(expression + k, names, hessian)) for k in range(plans)]
    programs.namespace()
    # What a first bind builds once per process, not per plan (the identifiers every plan of these
    # variables shares among them), kept while the others are measured.
    warm = pickle.loads(blobs[0])
    measured, held = _held_bytes(blobs[1:])
    del warm
    estimated = sum(compiled.program.memory_bytes for compiled in held)
    assert measured <= estimated <= 1.5 * measured, (measured, estimated)
