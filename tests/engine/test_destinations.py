"""Destinations: generated code computes each output in its column, to the same bits as fresh arrays."""

from __future__ import annotations

import ast
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
import sympy

from chainrule import engine
from chainrule.engine import destinations, functions, kernels, numeric, parsing, programs

FloatArray = npt.NDArray[np.float64]


def _same_bits(ours: FloatArray, theirs: Any) -> bool:
    """Equal values, NaN where NaN, and the same sign of every zero."""
    theirs = np.broadcast_to(np.asarray(theirs, dtype=np.float64), ours.shape)
    number = ~np.isnan(ours)
    return bool(
        np.array_equal(ours, theirs, equal_nan=True)
        and np.array_equal(np.signbit(ours[number]), np.signbit(theirs[number]))
    )


def test_each_output_last_ufunc_writes_into_its_argument() -> None:
    source = (
        "def _lambdifygenerated(_a0, _a1):\n"
        "    x0 = _a0*_a1\n"
        "    return [_a0*x0 + sin(x0), -x0*exp(_a1), x0, _a1**2.0, (1 - x0)/2, 0.0, exp(x0 + 1.0), -_a0]\n"
    )
    rewritten = destinations.rewrite(source, 8, programs.namespace())
    arguments = ", ".join(f"_o{index}=None" for index in range(8))
    assert rewritten == (
        f"def _lambdifygenerated(_a0, _a1, {arguments}):\n"
        "    x0 = _a0*_a1\n"  # temporaries as lambdify wrote them
        "    _r0 = add(_a0*x0, sin(x0), out=_o0)\n"  # each output on a line of its own
        "    _r1 = multiply(-x0, exp(_a1), out=_o1)\n"
        "    _r2 = x0\n"
        "    _r3 = _a1**2.0\n"
        "    _r4 = divide(1 - x0, 2, out=_o4)\n"
        "    _r5 = 0.0\n"
        "    _r6 = exp(x0 + 1.0, out=_o6)\n"
        "    _r7 = negative(_a0, out=_o7)\n"
        "    return [_r0, _r1, _r2, _r3, _r4, _r5, _r6, _r7]\n"
    )
    compile(rewritten, "<test>", "exec")


def test_one_value_is_returned_in_its_argument() -> None:
    source = "def _lambdifygenerated(_a0):\n    return _a0*3.0 + 1.0\n"
    rewritten = destinations.rewrite(source, 1, programs.namespace())
    assert rewritten.endswith("    return add(_a0*3.0, 1.0, out=_o0)\n")


def test_a_patched_value_is_computed_in_its_argument_and_patched_there() -> None:
    source = (
        "def _lambdifygenerated(_a0):\n"
        "    return [taylor_near(_a0 - 1.0, 0.1, _a0**3 - 1.0, (0.0, 3.0), True, 0), "
        "taylor_near(_a0, 0.1, integer_power(_a0, 3), (0.0,), False, 1)]\n"
    )
    rewritten = destinations.rewrite(source, 2, programs.namespace())
    assert rewritten.split("\n")[1:3] == [
        "    _r0 = taylor_near(_a0 - 1.0, 0.1, subtract(_a0**3, 1.0, out=_o0), (0.0, 3.0), True, 0, out=_o0)",
        "    _r1 = taylor_near(_a0, 0.1, integer_power(_a0, 3), (0.0,), False, 1, out=_o1)",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "x^3 - 2*x + 1",
        "sin(x)/x + x",
        "(1 - cos(x))/x^2 - 3",
        "(exp(x) - 1)/x * y",
        "x^2 - 2",
        # partials that share a patched formula (a temporary held by the code, not to be written in)
        "y*(x - sin(x))/x^3 + (x - sin(x))/x^3",
    ],
)
def test_patched_values_written_in_columns_are_the_fresh_values_bit_for_bit(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a formula cancels, `taylor_near` patches it in its column (or in a temporary nothing
    else holds): the same bits as patching a fresh copy, next to the points it patches and away."""
    compiled = engine.compile_gradient(parsing.parse(text), ["x", "y"], hessian=True)
    rng = np.random.default_rng(15)
    roots = [0.0, -0.0, 1.0, 2.0**0.5, -(2.0**0.5), (5**0.5 - 1) / 2, np.nan, np.inf]
    x = np.concatenate(
        [roots, np.repeat(roots[:6], 50) + rng.normal(scale=1e-3, size=300), rng.normal(size=400)]
    )
    y = rng.uniform(0.5, 2.0, len(x))
    result = engine.gradient(compiled, {"x": x, "y": y}, len(x))
    monkeypatch.setattr(numeric, "_computed", lambda function, part, _: function(*part))
    monkeypatch.setattr(kernels, "_ONLY_IN_CALLER", 0)  # no temporary written in place either
    fresh = engine.gradient(compiled, {"x": x, "y": y}, len(x))
    for ours, value in zip(_columns(result), _columns(fresh), strict=True):
        assert _same_bits(ours, value), text


def test_a_function_of_no_argument_takes_its_output_arguments() -> None:
    rewritten = destinations.rewrite("def _lambdifygenerated():\n    return -2.0\n", 1, programs.namespace())
    assert rewritten == "def _lambdifygenerated(_o0=None):\n    return negative(2.0, out=_o0)\n"


def test_a_return_too_deep_to_parse_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing the return here must not fail a program lambdify compiled: its values come fresh."""

    def too_deep(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded during ast construction")

    source = "def _lambdifygenerated(_a0):\n    return _a0 + 1.0\n"
    monkeypatch.setattr(ast, "parse", too_deep)
    rewritten = destinations.rewrite(source, 1, programs.namespace())
    assert rewritten == "def _lambdifygenerated(_a0, _o0=None):\n    return _a0 + 1.0\n"


def test_a_sum_of_many_terms_compiles_as_lambdify_compiles_it() -> None:
    """A sum nests one level per term; rebuilding its tree in Python failed from 1,000 levels."""
    x, y = sympy.symbols("x y", real=True)
    expression = sympy.Add(*(y * x**k for k in range(1, 1200)))
    compiled = engine.compile_function(expression, ["x", "y"])
    expected = sum(2.0 * 0.5**k for k in range(1, 1200))
    assert float(compiled([np.array([0.5]), np.array([2.0])])[0]) == pytest.approx(expected, rel=1e-12, abs=0)


def _function_call(spec: functions.FunctionSpec) -> str:
    arity = 2 if spec.name == "zeta" else spec.min_args
    return f"{spec.name}({', '.join([*('2' for _ in range(arity - 1)), 'x'])})"


@pytest.mark.parametrize("spec", functions.SPECS, ids=lambda spec: spec.name)
def test_values_written_in_columns_are_the_fresh_values_bit_for_bit(
    spec: functions.FunctionSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every function in a gradient and Hessian (their partials print other functions), over points
    that include NaN, infinities, zeros of both signs and the poles: the columns `_run` fills hold
    exactly what it fills them with from the function's values without destinations (the same
    chunks overflow either way, and are mended alike: `widening`)."""
    expression = parsing.parse(f"{_function_call(spec)}*y - x/y + 2")
    compiled = engine.compile_gradient(expression, ["x", "y"], hessian=True)
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e300, -1e-310]
    rng = np.random.default_rng(18)
    xs = np.concatenate([special, rng.uniform(-4, 4, 40)])
    x = np.repeat(xs, len(special))
    y = np.tile(special, len(xs))
    result = engine.gradient(compiled, {"x": x, "y": y}, len(x))
    monkeypatch.setattr(numeric, "_computed", lambda function, part, _: function(*part))
    fresh = engine.gradient(compiled, {"x": x, "y": y}, len(x))
    for ours, value in zip(_columns(result), _columns(fresh), strict=True):
        assert _same_bits(ours, value)
    expected = sum(int(np.count_nonzero(~np.isfinite(column))) for column in _columns(fresh))
    assert result.nonfinite_count == expected + int(np.count_nonzero(~np.isfinite(result.hessians[1])))


def _columns(result: engine.GradientResult) -> list[np.ndarray]:
    """Value, gradient and the Hessian's upper triangle of a gradient by two variables."""
    return [
        result.value,
        *result.gradients,
        *(result.hessians[i * 2 + j] for i in range(2) for j in range(i, 2)),
    ]


def test_the_bench_jacobian_fills_its_columns_as_fresh_values(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        "sin(x)*exp(-y^2/2) + x*y*z*w",
        "log(1 + z^2)*sqrt(1 + w^2) + sin(x)*z",
        "exp(-y^2/2)*cos(w) + x*y*z",
        "atan(x*y) + sqrt(1 + w^2)*y",
    ]
    names = ["w", "x", "y", "z"]
    compiled = engine.compile_jacobian([parsing.parse(row) for row in rows], names)
    rng = np.random.default_rng(4)
    n = 2 * 65_536 + 777  # several chunks, the last a short one
    columns = {name: rng.uniform(-3, 3, n) for name in names}
    columns["z"][::1000] = -1e200  # z^2 overflows: those chunks are computed again (`widening`)
    # About 0.5 s of long double work, against a budget of 1 s at least: this test is about where
    # values land, not the budget, and a loaded machine must not turn it into a refusal.
    monkeypatch.setattr(numeric, "_MIN_POINTWISE_SECONDS", 60.0)
    result = engine.jacobian(compiled, columns, n)
    monkeypatch.setattr(numeric, "_computed", lambda function, part, _: function(*part))
    fresh = engine.jacobian(compiled, columns, n)
    for column, value in zip(
        [*result.values, *result.jacobian], [*fresh.values, *fresh.jacobian], strict=True
    ):
        assert _same_bits(column, value)
    assert result.nonfinite_count == fresh.nonfinite_count


_TWO_OPERATIONS = SimpleNamespace(operations=2, outputs=2, single=False)


def _complex_outputs(a: FloatArray, _o0: Any = None, _o1: Any = None) -> list[Any]:
    # What numpy cannot write into a float64 column: a complex value, real in one output only.
    return [np.multiply(a, 1j**2, out=_o0), np.add(a, 1j, out=_o1)]


def test_values_numpy_cannot_write_as_float64_are_computed_fresh_and_converted() -> None:
    a = np.array([1.0, 2.0, 3.0])
    first, second = np.empty(3), np.empty(3)
    compiled = cast(
        numeric.CompiledFunction,
        SimpleNamespace(function=_complex_outputs, program=_TWO_OPERATIONS, guards=(), one_sided=()),
    )
    counts = numeric._run(compiled, [a], [first, second])
    assert first.tolist() == [-1.0, -2.0, -3.0]
    assert np.isnan(second).all() and counts == [0, 3]
