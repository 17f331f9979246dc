"""Jacobians of systems: against high-precision numeric partials (mpmath), one CSE over all rows."""

from __future__ import annotations

import dis
import pickle

import mpmath
import numpy as np
import pytest
import sympy

from chainrule import engine
from chainrule.engine import parsing
from chainrule.engine.errors import InvalidArgument, LimitExceeded, MissingVariable
from chainrule.engine.limits import EngineLimits

SYSTEM = ["sin(x y) + z^2", "exp(-x^2/2) * log(1 + y^2)", "x y z + sqrt(1 + z^2)", "atan(x/(1 + y^2))"]
NAMES = ("x", "y", "z")


def _numeric_jacobian(texts: list[str], names: tuple[str, ...], point: dict[str, float]) -> list[list[float]]:
    """Partials by mpmath's high-precision central differences, from sympy callables of each row."""
    rows = []
    symbols = [parsing.symbol(name) for name in names]
    with mpmath.workdps(30):  # lambdify's mpmath functions use the global context
        for text in texts:
            f = sympy.lambdify(symbols, parsing.parse(text), modules="mpmath")
            at = [mpmath.mpf(point[name]) for name in names]
            orders = [tuple(int(i == j) for i in range(len(names))) for j in range(len(names))]
            rows.append([float(mpmath.diff(f, at, order)) for order in orders])
    return rows


def test_jacobian_matches_numeric_partials_at_seeded_points() -> None:
    rng = np.random.default_rng(18)
    columns = {name: rng.uniform(-1.5, 1.5, 6) for name in NAMES}
    compiled = engine.compile_jacobian([parsing.parse(text) for text in SYSTEM], NAMES)
    result = engine.jacobian(compiled, columns, 6)
    assert len(result.values) == len(SYSTEM) and len(result.jacobian) == len(SYSTEM) * len(NAMES)
    assert result.nonfinite_count == 0
    for index in range(6):
        point = {name: float(column[index]) for name, column in columns.items()}
        expected = _numeric_jacobian(SYSTEM, NAMES, point)
        ours = [
            [result.jacobian[i * len(NAMES) + j][index] for j in range(len(NAMES))]
            for i in range(len(SYSTEM))
        ]
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
        values = [
            float(parsing.parse(text).subs({parsing.symbol(n): v for n, v in point.items()}))
            for text in SYSTEM
        ]
        np.testing.assert_allclose([column[index] for column in result.values], values, rtol=1e-12)


def test_subexpressions_shared_across_rows_are_computed_once() -> None:
    """One CSE over the whole system: sin(x*y) appears in two rows and in their partials, once in the code
    (as `sin_of_affine`: a product of two variables, exact at any size)."""
    compiled = engine.compile_jacobian(
        [parsing.parse("sin(x y) + x"), parsing.parse("sin(x y) y")], ("x", "y")
    )
    # The bound program has no source (it crossed processes as its code object): count its calls.
    loads = [i.argval for i in dis.get_instructions(compiled.function) if i.opname == "LOAD_GLOBAL"]
    assert loads.count("sin_of_affine") == 1
    assert loads.count("cos_of_affine") == 1


def test_a_partial_jacobian_reads_the_other_variables_and_absent_columns_are_zero() -> None:
    # Columns (a, t): t is in no row (its column is 0); x is read but is no column of the Jacobian.
    compiled = engine.compile_jacobian([parsing.parse("a x^2"), parsing.parse("a + x")], ("a", "t"))
    assert compiled.arguments == ("a", "t", "x")
    result = engine.jacobian(compiled, {"a": np.array([2.0]), "x": np.array([3.0])}, 1)
    assert [float(column[0]) for column in result.values] == [18.0, 5.0]
    assert [float(column[0]) for column in result.jacobian] == [9.0, 0.0, 1.0, 0.0]
    with pytest.raises(MissingVariable) as caught:
        engine.jacobian(compiled, {"a": np.array([2.0])}, 1)
    assert [v.field for v in caught.value.violations] == ["columns.x"]


def test_values_that_are_not_finite_reals_are_counted_in_every_slot() -> None:
    compiled = engine.compile_jacobian([parsing.parse("log(x)"), parsing.parse("1/y")], ("x", "y"))
    result = engine.jacobian(compiled, {"x": np.array([-1.0, 1.0]), "y": np.array([0.0, 2.0])}, 2)
    # log(-1) and its partials (1/x is -1 there, but log has no real value: NaN, as are both of
    # its row's entries); 1/0 and -1/0^2: five non-finite slots. The other point's are finite.
    assert np.isnan(result.values[0][0]) and np.isinf(result.values[1][0])
    assert np.isnan(result.jacobian[0][0]) and np.isnan(result.jacobian[1][0])
    assert result.nonfinite_count == 5


def test_default_columns_are_every_free_variable_sorted() -> None:
    rows = [parsing.parse("z + x"), parsing.parse("b y")]
    assert engine.jacobian_variables(rows) == ("b", "x", "y", "z")


def test_no_rows_and_too_many_rows_name_expressions() -> None:
    with pytest.raises(InvalidArgument) as empty:
        engine.jacobian_components([], ("x",))
    assert [v.field for v in empty.value.violations] == ["expressions"]
    with pytest.raises(LimitExceeded) as many:
        engine.jacobian_components([parsing.parse("x")] * 3, ("x",), EngineLimits(max_jacobian_rows=2))
    assert [v.field for v in many.value.violations] == ["expressions"]
    assert many.value.metadata == {"limit": "jacobian_rows", "value": "3", "maximum": "2"}


def test_a_compiled_jacobian_pickles_as_its_program_and_binds_again() -> None:
    """What a symbolic worker returns: the code and the names it reads, bound again where it lands."""
    compiled = engine.compile_jacobian([parsing.parse("sin(x y)"), parsing.parse("exp(x) + y^2")], ("x", "y"))
    loaded = pickle.loads(pickle.dumps(compiled))
    assert (loaded.program, loaded.variables, loaded.rows) == (compiled.program, ("x", "y"), 2)
    columns = {"x": np.array([0.3, 1.1]), "y": np.array([2.0, -0.5])}
    ours, theirs = engine.jacobian(loaded, columns, 2), engine.jacobian(compiled, columns, 2)
    for mine, original in zip(
        (*ours.values, *ours.jacobian), (*theirs.values, *theirs.jacobian), strict=True
    ):
        np.testing.assert_array_equal(mine, original)
