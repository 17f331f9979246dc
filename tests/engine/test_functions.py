"""Tests for chainrule.engine.functions: the table, the real roots, and the numeric forms lambdify uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import sympy
from sympy.core.function import Application

from chainrule.engine import kernels, numeric, reference
from chainrule.engine.functions import (
    CONSTANTS,
    FUNCTIONS,
    RESERVED_NAMES,
    SPECS,
    FunctionSpec,
    RealCeiling,
    RealFloor,
    RealRoot,
    lambdify_modules,
)

x = sympy.Symbol("x", real=True)
n = sympy.Symbol("n", real=True)


def _compile(expr: sympy.Expr) -> object:
    return numeric.compile_function(expr, ["x"]).function


def test_table_is_consistent() -> None:
    for spec in SPECS:
        assert 0 < spec.min_args <= spec.max_args
        for name in spec.names:
            assert FUNCTIONS[name] is spec
        built = spec.build(*_arguments(spec.name, spec.max_args))
        for node in sympy.preorder_traversal(built):
            if isinstance(node, Application):  # numeric code calls a kernel of that name
                assert reference.kernel_name(node) in kernels.NAMESPACE, spec.name
    namespace = lambdify_modules()[0]
    assert isinstance(namespace, dict) and set(namespace) == set(kernels.NAMESPACE)
    assert set(FUNCTIONS) | set(CONSTANTS) == RESERVED_NAMES
    assert {
        "sin",
        "arcsin",
        "asin",
        "ln",
        "nthRoot",
        "ceil",
        "min",
        "Max",
        "e",
        "pi",
        "\u03c0",
    } <= RESERVED_NAMES


def _arguments(name: str, count: int) -> list[sympy.Expr]:
    if name == "polygamma":
        return [sympy.Integer(1), x]
    if name == "DiracDelta":
        return [x, sympy.Integer(1)][:count]
    return [x, sympy.Rational(3, 2)][:count]


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_every_function_compiles_and_evaluates(spec: FunctionSpec) -> None:
    expr = spec.build(*_arguments(spec.name, spec.max_args))
    points = np.array([0.3, 0.7, 1.9])
    with np.errstate(all="ignore"):
        values = np.asarray(_compile(expr)(points), dtype=np.float64)  # type: ignore[operator]
    expected = [complex(expr.subs(x, sympy.Float(point)).evalf()) for point in points]
    for value, want in zip(np.broadcast_to(values, points.shape), expected, strict=True):
        if spec.name == "DiracDelta" or abs(want.imag) > 1e-12:
            continue  # 0 away from 0 / complex in sympy: not comparable as a real value
        assert value == pytest.approx(want.real, rel=1e-9, abs=1e-12), spec.name


# (x, n, expected, reason)
ROOTS = [
    (-8, 3, -2, "real cube root of a negative number"),
    (8, 3, 2, "positive"),
    (-32, 5, -2, "odd root"),
    (16, 4, 2, "even root"),
    (-16, 4, math.nan, "even root of a negative number has no real value"),
    (0, 7, 0, "zero"),
    (27.0, 3, 3.0, "float input"),
]


@pytest.mark.parametrize(("value", "degree", "expected", "reason"), ROOTS)
def test_real_root_numeric(value: float, degree: int, expected: float, reason: str) -> None:
    compiled = numeric.compile_function(RealRoot(x, n), ["x", "n"])
    result = float(compiled([np.float64(value), np.float64(degree)]))
    if math.isnan(expected):
        assert math.isnan(result), reason
    else:
        assert result == pytest.approx(expected, rel=1e-15, abs=0), reason


def test_real_root_exact_and_symbolic() -> None:
    assert RealRoot(-8, 3) == -2
    assert RealRoot(sympy.Rational(-1, 27), 3) == sympy.Rational(-1, 3)
    assert RealRoot(2, 3) == sympy.root(2, 3)
    assert RealRoot(-8, 2).func is RealRoot  # no real value: stays unevaluated
    assert RealRoot(x, 3).is_extended_real
    assert str(RealRoot(x, 3)) == "cbrt(x)"
    assert str(RealRoot(x, 5)) == "root(x, 5)"
    assert sympy.latex(RealRoot(x, 5)) == r"\sqrt[5]{x}"


@pytest.mark.parametrize("point", [-3.7, -0.4, 0.6, 2.5])
@pytest.mark.parametrize("degree", [3, 5])
def test_real_root_derivative_matches_finite_differences(point: float, degree: int) -> None:
    derivative = _compile(sympy.diff(RealRoot(x, degree), x))
    f = _compile(RealRoot(x, degree))
    h = 1e-6
    central = (f(point + h) - f(point - h)) / (2 * h)  # type: ignore[operator]
    assert float(derivative(point)) == pytest.approx(central, rel=1e-7, abs=0)  # type: ignore[operator]


def test_real_root_cube_uses_numpy_cbrt() -> None:
    values = np.array([-27.0, -8.0, 1e-300, 64.0])
    assert np.array_equal(_compile(RealRoot(x, 3))(values), np.cbrt(values))  # type: ignore[operator]


def test_floor_and_ceiling_have_zero_derivative_and_usual_values() -> None:
    assert sympy.diff(RealFloor(x**2), x) == 0
    assert sympy.diff(RealCeiling(x), x) == 0
    assert RealFloor(sympy.Rational(7, 2)) == 3
    assert RealCeiling(sympy.Rational(7, 2)) == 4
    assert str(RealFloor(x)) == "floor(x)"
    assert sympy.latex(RealCeiling(x)) == r"\left\lceil{x}\right\rceil"
    assert list(_compile(RealFloor(x))(np.array([-1.5, 2.5]))) == [-2.0, 2.0]  # type: ignore[operator]


def test_special_functions_agree_with_scipy() -> None:
    points = np.array([0.5, 1.5, 3.0])
    checks = [
        (sympy.erf(x), scipy.special.erf(points)),
        (sympy.gamma(x), scipy.special.gamma(points)),
        (sympy.polygamma(1, x), scipy.special.polygamma(1, points)),
        (sympy.loggamma(x), scipy.special.gammaln(points)),
    ]
    for expr, expected in checks:
        assert np.allclose(_compile(expr)(points), expected, rtol=1e-14)  # type: ignore[operator]
