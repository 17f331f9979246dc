"""The `chainrule` command's local calculus: implicit `diff`, `jac` and `series` (output and exit codes)."""

from __future__ import annotations

import pytest

from chainrule.server.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_diff_dependent_prints_the_implicit_derivative(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "diff", "x^2 + y^2 = 25", "--dependent", "y") == (0, ["-x/y"], "")
    code, out, _ = run(
        capsys, "diff", "x^2 + y^2 = 25", "--dependent", "y", "--wrt", "x:2", "--explain", "--verify"
    )
    assert code == 0
    assert "d/dx y^2 = 2*y*y'" in "\n".join(out)
    assert "derivative: -(x^2/y^2 + 1)/y" in out
    assert any(line.startswith("verify: OK") for line in out)


def test_diff_of_an_equation_without_dependent_says_what_is_needed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "diff", "x^2 + y^2 = 25")
    assert (code, out) == (1, [])
    assert "dependent" in err
    code, _, err = run(capsys, "diff", "x^2 + y^2 = 25", "--dependent", "z")
    assert code == 1 and "'z' does not occur" in err


def test_jac_prints_derivatives_or_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "jac", "x^2 y", "5x + sin(y)")
    assert (code, out) == (0, ["variables: x, y", "[2*x*y, x^2]", "[5, cos(y)]"])
    code, out, _ = run(
        capsys, "jac", "x^2 y", "5x + sin(y)", "--variables", "y", "--at", "x=1", "--at", "y=0"
    )
    assert (code, out) == (0, ["variables: y", "[1]", "[1]"])
    code, _, err = run(capsys, "jac", "x", "sin(")
    assert code == 1 and err.startswith("chainrule: expressions[1]: ")


def test_series_prints_the_polynomial_with_its_remainder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "series", "sin(x)", "--around", "pi/2", "--order", "2", "--coefficients")
    assert (code, out) == (0, ["1 - (x - pi/2)^2/2 + O((x - pi/2)^3)", "coefficients: 1, 0, -1/2"])
    code, out, err = run(capsys, "series", "abs(x)")
    assert (code, out) == (1, [])
    assert "no Taylor series at x = 0" in err
