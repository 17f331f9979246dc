"""The `chainrule` command: version, help, `diff` formats, errors with a caret, the budget, and `eval`
and `grad` computed locally or by a server (`--target`), printed the same way."""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
from importlib import metadata
from pathlib import Path

import pytest

from chainrule.server.app import Application
from chainrule.server.cli import build_parser, local, main
from chainrule.server.cli.output import Elapsed, error_lines
from chainrule.server.config import ConfigError, Settings

CHAINRULE = Path(sys.executable).parent / "chainrule"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def command(*argv: str) -> tuple[int, str, str]:
    """The installed `chainrule` in a subprocess (while the test's server keeps serving on this loop)."""
    process = await asyncio.create_subprocess_exec(
        str(CHAINRULE), *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"chainrule {metadata.version('chainrule')}"


def test_every_option_has_help() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"serve", "diff", "eval", "grad", "jac", "series"}
    for name, command in commands.choices.items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"chainrule {name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("latex", "2 x \\cos{\\left(x^{2} \\right)}"),
        ("mathml", "<mi>cos</mi>"),
        ("python", "def derivative(x):"),
        ("c", "double derivative(double x) {"),
        ("javascript", "function derivative(x) {"),
    ],
)
def test_diff_formats(capsys: pytest.CaptureFixture[str], fmt: str, expected: str) -> None:
    status, out, _ = run(capsys, "diff", "sin(x^2)", "--format", fmt)
    assert status == 0
    first, rest = out.split("\n", 1)
    assert first == "2*x*cos(x^2)"
    assert expected in rest


def test_diff_prints_several_formats_in_the_order_asked(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "diff", "x^3", "--format", "javascript", "--format", "latex")
    lines = out.splitlines()
    assert lines[0] == "3*x^2"
    assert lines.index("3 x^{2}") > next(i for i, line in enumerate(lines) if "function derivative" in line)


def test_a_parse_error_shows_a_caret_under_the_position(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "diff", "(x + 1))")
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "chainrule: unmatched ')' at 7: remove it, or add a '(' before it",
        "  (x + 1))",
        "         ^",
    ]


@pytest.mark.parametrize(
    ("expression", "position", "caret"),
    [
        ("sin²x + )", "8", "          ^"),  # ² is one column
        ("数 + )", "4", "       ^"),  # a wide character takes two
    ],
)
def test_the_caret_counts_terminal_columns(expression: str, position: str, caret: str) -> None:
    lines = error_lines("oops", expression, {"position": position})
    assert lines[1:] == [f"  {expression}", caret]


def test_errors_without_a_position_have_no_caret() -> None:
    assert error_lines("no value given for variable 'y'", "x*y", {}) == [
        "chainrule: no value given for variable 'y'"
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eval", "x*y + 1", "x=2", "y=3"], "7.0\n"),
        (["eval", "cbrt(x)", "x=-8"], "-2.0\n"),
        (["eval", "x^3", "x=2", "--wrt", "x:2"], "12.0\n"),
        (["eval", "log(x)", "x=-1"], "nan\n"),
        (["grad", "x^2 y", "x=3", "y=2"], "value: 18.0\ngradient (x, y): [12.0, 9.0]\n"),
        (
            ["grad", "x^2 y", "x=3", "y=2", "--hessian", "--variables", "y,x"],
            "value: 18.0\ngradient (y, x): [9.0, 12.0]\nhessian: [[0.0, 6.0], [6.0, 4.0]]\n",
        ),
    ],
)
def test_eval_and_grad_locally(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    assert run(capsys, *argv)[:2] == (0, expected)


def test_a_missing_value_is_an_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "eval", "x*y", "x=2")
    assert status == 1 and err == "chainrule: no value given for variable 'y'\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["diff", "x", "--wrt", "x:-1"],  # int() took it, the engine refused it: exit 1, not 2
        ["diff", "x", "--wrt", "x:"],  # read as 1
        ["diff", "x", "--wrt", "x:1_0"],  # int() read 10
        ["diff", "x", "--wrt", "x:\u0662"],  # and an Arabic-Indic two as 2
        ["series", "sin(x)", "--order", "-1"],
    ],
)
def test_an_order_is_digits_or_a_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "an order is a whole number 0, 1, 2, ..." in capsys.readouterr().err


@pytest.mark.parametrize(
    "point",
    [
        ["x:2"],
        ["x=1", "x=2"],  # the last value silently won
        ["x=1_0"],  # float() read 10
        ["x=\u0661"],  # float() read an Arabic-Indic one as 1
        ["x=1e999"],  # float() read inf
    ],
)
def test_points_must_be_one_number_per_variable(capsys: pytest.CaptureFixture[str], point: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["eval", "x", *point])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert any(why in err for why in ("VARIABLE=NUMBER", "more than once", "past the largest double")), err


def test_non_finite_points_are_written_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "eval", "x", "x=-inf")[:2] == (0, "-inf\n")
    assert run(capsys, "eval", "x", "x=-.5e1")[:2] == (0, "-5.0\n")


def test_eval_gives_an_implicit_derivative_at_a_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "eval", "x^2 + y^2 = 25", "x=3", "y=4", "--dependent", "y")[:2] == (0, "-0.75\n")


async def test_a_server_that_gives_no_answer_is_exit_status_3() -> None:
    status, _, err = await command("eval", "x", "x=1", "--target", "127.0.0.1:1")
    assert status == 3 and "127.0.0.1:1 gave no answer" in err


def test_a_long_text_shows_a_window_around_the_error() -> None:
    text = "x+" * 6_000 + "("
    _, line, caret = error_lines("too long", text, {"position": "10000"})
    assert len(line) < 100 and line.startswith("  ...") and line.endswith("...")
    assert line[len(caret) - 2 : len(caret)] == text[9_999:10_001]  # the caret under character 10,000


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "x*y + 1", "x=2", "y=3"],
        ["eval", "sin(x)^2", "x=0.5", "--wrt", "x"],
        ["grad", "x^2 y", "x=3", "y=2", "--hessian"],
        ["eval", "(x + 1))", "x=1"],
    ],
)
async def test_a_server_answers_as_the_local_command_does(
    app: Application, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    local = run(capsys, *argv)  # in this process: the work runs on a thread of its own
    remote = await command(*argv, "--target", f"127.0.0.1:{app.grpc_port}")
    assert remote == local


async def test_local_work_stops_at_the_budget() -> None:
    # Minutes of sympy.simplify without a budget; refused once the budget has run out.
    status, out, err = await command(
        "diff", "(x+y+z+w)^60", "--wrt", "x", "--simplify", "full", "--budget", "0.5"
    )
    assert (status, out) == (1, "")
    assert "did not finish within the budget of 0.5 s" in err


async def test_local_work_stops_at_the_budget_inside_one_long_call_into_c() -> None:
    # `--verify` of an exp tower: mpmath multiplies integers of billions of bits, one call into C that
    # holds the GIL for minutes, so the thread that watches the budget never ran (a hunt, 2026-12-05).
    # The watchdog process stops it a second past the budget, with the same message. `sum` over a
    # range is such a call too, and one that holds the GIL from the start.
    holding = (
        "from chainrule.server.cli.budget import within_budget\n"
        "within_budget(lambda: sum(range(10**12)), 0.5, 'summing')"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", holding, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode, out) == (-signal.SIGKILL, b"")
    assert b"summing did not finish within the budget of 0.5 s" in err
    status, _, message = await command("diff", "exp(exp(exp(exp(x))))", "--verify", "--budget", "2")
    assert status in (1, -signal.SIGKILL)  # whichever notices first: the thread or the watchdog
    assert "did not finish within the budget of 2 s" in message


def test_running_out_of_memory_is_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_: object) -> list[str]:
        raise MemoryError

    monkeypatch.setattr(local, "_diff", refused)
    status, out, err = run(capsys, "diff", "x^2")
    assert (status, out) == (1, "")
    assert err == "chainrule: differentiating ran out of memory: ask for less\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_elapsed_time_shows_on_a_terminal_only() -> None:
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        elapsed = Elapsed("differentiating", stream, after=0.0)
        elapsed.tick()
        elapsed.done()
    assert terminal.getvalue().startswith("\rdifferentiating: ")
    assert "differentiating took " in terminal.getvalue()
    assert pipe.getvalue() == ""


def test_quick_work_shows_no_time() -> None:
    terminal = _Terminal()
    elapsed = Elapsed("differentiating", terminal)  # under the second it waits for
    elapsed.tick()
    elapsed.done()
    assert terminal.getvalue() == ""


# --- implicit derivatives, Jacobians and series (issue 18) -----------------------------------------


def lines(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    status, out, err = run(capsys, *argv)
    return status, out.splitlines(), err


def test_diff_dependent_prints_the_implicit_derivative(capsys: pytest.CaptureFixture[str]) -> None:
    assert lines(capsys, "diff", "x^2 + y^2 = 25", "--dependent", "y") == (0, ["-x/y"], "")
    code, out, _ = lines(
        capsys, "diff", "x^2 + y^2 = 25", "--dependent", "y", "--wrt", "x:2", "--explain", "--verify"
    )
    assert code == 0
    assert "d/dx y^2 = 2*y*y'" in "\n".join(out)
    assert "derivative: -(x^2 + y^2)/y^3" in out
    assert any(line.startswith("verify: OK") for line in out)


def test_diff_of_an_equation_without_dependent_says_what_is_needed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = lines(capsys, "diff", "x^2 + y^2 = 25")
    assert (code, out) == (1, [])
    assert "dependent" in err
    code, _, err = lines(capsys, "diff", "x^2 + y^2 = 25", "--dependent", "z")
    assert code == 1 and "'z' does not occur" in err


def test_jac_prints_derivatives_or_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lines(capsys, "jac", "x^2 y", "5x + sin(y)")
    assert (code, out) == (0, ["variables: x, y", "[2*x*y, x^2]", "[5, cos(y)]"])
    code, out, _ = lines(
        capsys, "jac", "x^2 y", "5x + sin(y)", "--variables", "y", "--at", "x=1", "--at", "y=0"
    )
    assert (code, out) == (0, ["variables: y", "[1]", "[1]"])
    code, _, err = lines(capsys, "jac", "x", "sin(")
    assert code == 1 and err.startswith("chainrule: expressions[1]: ")


def test_series_prints_the_polynomial_with_its_remainder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lines(capsys, "series", "sin(x)", "--around", "pi/2", "--order", "2", "--coefficients")
    assert (code, out) == (0, ["1 - (x - pi/2)^2/2 + O((x - pi/2)^3)", "coefficients: 1, 0, -1/2"])
    code, out, err = lines(capsys, "series", "abs(x)")
    assert (code, out) == (1, [])
    assert "no Taylor series at x = 0" in err


def test_series_puts_the_caret_under_around_when_around_is_at_fault(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A parse error in `--around` points into that text, not into the expression at the same offset."""
    code, out, err = lines(capsys, "series", "sin(x)", "--around", "1 +")
    assert (code, out) == (1, [])
    assert err.splitlines()[1:] == ["  1 +", "     ^"]


# --- a second attack hunt (2026-12-05) --------------------------------------------------------------


@pytest.mark.parametrize("budget", ["nan", "inf", "1e400"])
def test_a_budget_that_is_no_number_of_seconds_is_refused(budget: str) -> None:
    # nan compared false with everything: the command ran without any budget.
    with pytest.raises(SystemExit) as caught:
        main(["diff", "x", "--budget", budget])
    assert caught.value.code == 2


@pytest.mark.parametrize("variable", ["SYMBOLIC_BUDGET_SECONDS", "GRACE_SECONDS", "HEARTBEAT_SECONDS"])
def test_a_setting_that_is_no_finite_number_is_refused(variable: str) -> None:
    # A server with CHAINRULE_SYMBOLIC_BUDGET_SECONDS=nan started, then refused every cold call.
    with pytest.raises(ConfigError, match=f"CHAINRULE_{variable} must be a finite number"):
        Settings.from_environ({f"CHAINRULE_{variable}": "nan"}).validate()


async def test_an_argument_that_is_not_utf8_is_a_message_not_a_traceback() -> None:
    process = await asyncio.create_subprocess_exec(
        str(CHAINRULE), "eval", b"\xff", "x=1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode, out) == (2, b"")
    assert err.decode().startswith("chainrule: argument 2") and b"Traceback" not in err


async def test_the_watchdog_goes_with_a_command_killed_before_its_budget() -> None:
    # Killed by SIGTERM, the command left its watchdog asleep for the rest of the budget.
    process = await asyncio.create_subprocess_exec(
        str(CHAINRULE), "diff", "(x+y+z+w)^60", "--wrt", "x", "--simplify", "full", "--budget", "600",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    children: list[int] = []
    for _ in range(200):  # until it has forked its watchdog
        await asyncio.sleep(0.05)
        children = [
            int(pid)
            for task in Path(f"/proc/{process.pid}/task").glob("*")
            for pid in (task / "children").read_text().split()
        ]
        if children:
            break
    assert children
    process.terminate()
    await process.wait()
    await asyncio.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
