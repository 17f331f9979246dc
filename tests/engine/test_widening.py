"""Chunks that overflowed float64 on the way are computed again in long double (`widening`)."""

from __future__ import annotations

import math
import time
from typing import Any

import mpmath
import numpy as np
import pytest

from chainrule import engine
from chainrule.engine import functions, kernels, numeric, overflow, parsing, programs, symbolic, widening
from chainrule.engine.errors import ResourceExhausted


def _evaluate(text: str, xs: list[float]) -> np.ndarray:
    compiled = engine.compile_function(parsing.parse(text), ["x"])
    return engine.evaluate(compiled, {"x": np.array(xs)}, len(xs)).values


def test_a_hessian_term_past_every_double_keeps_its_sign() -> None:
    """make fuzz: d2/dx2 of x/(x^x - e) at 60 divides by (x^x - e)^3 = 1.2e320; it was -3.2e-104."""
    compiled = engine.compile_gradient(parsing.parse("x/(x^x - e)"), ["x"], hessian=True)
    result = engine.gradient(compiled, {"x": np.array([60.0])}, 1)
    with mpmath.workdps(40):
        exact = float(mpmath.diff(lambda t: t / (t**t - mpmath.e), 60, 2))
    assert result.hessians[0][0] == pytest.approx(exact, rel=1e-14, abs=0)
    assert result.nonfinite_count == 0


def test_a_point_gets_in_a_batch_what_it_gets_alone() -> None:
    """Only the values the two runs disagree on change: a chunk's other points keep their float64
    bits, so they match their single-point evaluation exactly."""
    text = "x^(2x)/(x^x - e)^3 + sin(x)/x^3"  # from x = 57 on the cube overflows
    rng = np.random.default_rng(14)
    xs = np.concatenate([[60.0, 150.0, 170.0], rng.uniform(-5, 80, 3000), [1e-3, -0.0, np.inf, np.nan]])
    batch = _evaluate(text, xs.tolist())
    singles = [_evaluate(text, [x])[0] for x in xs[::37]]
    assert np.array_equal(batch[::37], singles, equal_nan=True)
    unwidened = engine.compile_function(parsing.parse(text), ["x"])([xs])
    changed = ~((batch == unwidened) | (np.isnan(batch) & np.isnan(unwidened)))
    assert changed.any() and (xs[changed] > 50).all()


def test_a_cancellation_next_to_an_overflow_keeps_its_float64_value() -> None:
    """log10(cosh(x)^(e/1.5e-8)) at 1.9e-7 raises 1 + 1.8e-14 to the 1.8e8th: float64 and long double
    differ in the third digit. Next to points where the power overflows (both runs), it was NaN in a
    batch and a number alone (make fuzz); now it is its own float64 value either way."""
    text = "log10(cosh(x)^(e/1.5e-8))"
    xs = [1.8999999999999998e-07, 1.0, 5.0, 2e-7]
    batch = _evaluate(text, xs)
    singles = [_evaluate(text, [x])[0] for x in xs]
    assert np.array_equal(batch, singles, equal_nan=True)
    assert np.isfinite(batch[[0, 3]]).all()


def _jacobian(texts: list[str], columns: dict[str, list[float]]) -> list[np.ndarray]:
    """The values, then the Jacobian's entries row-major, of `texts` in (x, y) at the points."""
    compiled = engine.compile_jacobian([parsing.parse(text) for text in texts], ("x", "y"))
    found = engine.jacobian(
        compiled, {name: np.array(values) for name, values in columns.items()}, len(columns["x"])
    )
    return [*found.values, *found.jacobian]


@pytest.mark.parametrize("companions", [31, 32, 200])
def test_a_point_beside_many_that_overflow_even_in_long_double_gets_what_it_gets_alone(
    companions: int,
) -> None:
    """Past 32 points overflowing beside it, the search for the points that overflow alone ran out of
    evaluations, and every disagreeing point was taken as overflowing: sqrt(x^2 + y^2) at (1e-300,
    1e-300) was NaN (alone 1.4e-300), log(x^2 + y^2) e^x at (0, 1e-160) 1.5e-8 off (an independent
    hunt). A point the search finds not to overflow alone keeps what it gets alone."""
    texts = ["sqrt(x^2 + y^2)", "exp(x)", "log(x^2 + y^2)*exp(x)"]
    first = {"x": [1e-300, 0.0], "y": [1e-300, 1e-160]}
    for point in range(2):
        alone = _jacobian(texts, {name: [values[point]] for name, values in first.items()})
        columns = {
            "x": [first["x"][point]] + [1e300] * companions,
            "y": [first["y"][point]] + [1.0] * companions,
        }
        batch = _jacobian(texts, columns)
        assert [output[0] for output in batch] == pytest.approx(
            [output[0] for output in alone], rel=0, abs=0, nan_ok=True
        )
    assert _jacobian(texts, {"x": [1e-300], "y": [1e-300]})[0][0] == pytest.approx(
        math.sqrt(2) * 1e-300, rel=1e-15
    )


def test_a_rows_values_do_not_depend_on_the_other_rows() -> None:
    """exp(x) - 1 at (1e300, 1) is inf both in float64 and in long double; beside a row that
    overflows in float64 alone (x^2), it was NaN, its partial in y too (0 alone): equal runs agree."""
    system = _jacobian(["sqrt(x^2 + y^2)", "exp(x) - 1"], {"x": [1e300], "y": [1.0]})
    alone = _jacobian(["exp(x) - 1"], {"x": [1e300], "y": [1.0]})
    assert (
        [system[1][0], system[4][0], system[5][0]]
        == [output[0] for output in alone]
        == [math.inf, math.inf, 0.0]
    )
    assert system[0][0] == 1e300


@pytest.mark.parametrize(
    ("text", "x", "expected"),
    [
        ("exp(x)*exp(-x/2)", 1000.0, math.exp(500)),
        ("exp(-x)*exp(x)", 800.0, 1.0),
        ("1/(1 + exp(x))", 800.0, 0.0),
        ("1/(1 + exp(x))", 12000.0, 0.0),
        ("exp(x)", 800.0, math.inf),
        ("log(1 + x^2)", 1e200, 2 * math.log(1e200)),
    ],
)
def test_values_past_every_double_on_the_way(text: str, x: float, expected: float) -> None:
    assert _evaluate(text, [x])[0] == pytest.approx(expected, rel=1e-15, abs=0)


def test_gamma_past_the_doubles_is_computed_in_long_double() -> None:
    """gamma(180) is inf in float64 (scipy sets no flag; the kernel reports it): the wide run takes
    exp(loggamma) in long double, so 180^200/gamma(180) is 1.0e124, not 1e451/inf = 0."""
    with mpmath.workdps(40):
        exact = [float(mpmath.mpf(180) ** k / mpmath.gamma(180 + j)) for k, j in ((200, 0), (100, 1))]
    assert _evaluate("x^200/gamma(x)", [180.0])[0] == pytest.approx(exact[0], rel=1e-12, abs=0)
    assert _evaluate("x^100/factorial(x)", [180.0])[0] == pytest.approx(exact[1], rel=1e-12, abs=0)


@pytest.mark.parametrize(
    ("text", "x"),
    [
        ("gamma(x)/gamma(x + 1)", 171.5),
        ("gamma(x + 1)/gamma(x)", 171.0),
        ("gamma(x)*exp(-x)", 172.5),
        ("x^100/gamma(x)", 180.0),
        ("factorial(x)/factorial(x - 1)", 171.5),
    ],
)
def test_an_overflow_only_gamma_reports_is_computed_in_long_double(text: str, x: float) -> None:
    """Nothing but scipy's gamma overflows here, without the flag: the kernel's own report must reach
    the evaluation's handler. It was made while the kernel's flag was still ignored, so nobody heard
    it: gamma(x)/gamma(x + 1) at 171.5 was 0.0 and counted finite (an independent tester)."""
    variable = mpmath.mpf(x)
    with mpmath.workdps(40):
        exact = {
            "gamma(x)/gamma(x + 1)": lambda: 1 / variable,
            "gamma(x + 1)/gamma(x)": lambda: variable,
            "gamma(x)*exp(-x)": lambda: mpmath.gamma(variable) * mpmath.exp(-variable),
            "x^100/gamma(x)": lambda: variable**100 / mpmath.gamma(variable),
            "factorial(x)/factorial(x - 1)": lambda: variable,
        }[text]()
    assert _evaluate(text, [x])[0] == pytest.approx(float(exact), rel=1e-12, abs=0)


def test_a_contained_kernels_infinity_reaches_the_callers_handler() -> None:
    watch = overflow.Watch()
    with np.errstate(all="ignore", over="call", call=watch):
        assert overflow.contained(lambda: np.array([np.inf]))()[0] == np.inf
    assert watch.seen


def test_a_cancellation_where_both_runs_overflow_keeps_its_value() -> None:
    """d2/dx2 of sinh(x)/atanh(x) - csch(z + x) at x = 1e-3 cancels 2/x^2 terms (float64 and long
    double differ in the 10th digit) and divides csch(z + x) by sinh(z + x)^2, past both ranges at
    z = 2e6: not a value the overflow damaged, so float64's stays (make fuzz)."""
    compiled = engine.compile_function(
        symbolic.differentiate(parsing.parse("sinh(x)/atanh(x) - csch(z + x)"), [("x", 2)]), ["x", "z"]
    )
    x, z = 0.0009680637844408015, 2164757.6383106937
    value = engine.evaluate(compiled, {"x": np.array([x]), "z": np.array([z])}, 1).values[0]
    with mpmath.workdps(40):
        exact = float(mpmath.diff(lambda t: mpmath.sinh(t) / mpmath.atanh(t), x, 2))
    assert value == pytest.approx(exact, rel=1e-8, abs=0)


@pytest.mark.parametrize(
    ("text", "x", "exact"),
    [
        ("log(1 + exp(x))", [12000.0, -800.0, 1e-17, 3.0], lambda t: mpmath.log(1 + mpmath.exp(t))),
        ("log(cosh(x))", [12000.0, -12000.0, 1e-9, 1.0], lambda t: mpmath.log(mpmath.cosh(t))),
        ("log(sinh(x))", [12000.0, 1e-9, 2.0], lambda t: mpmath.log(mpmath.sinh(t))),
        ("log(exp(x) + exp(2*x))", [12000.0, -3.0], lambda t: mpmath.log(mpmath.exp(t) + mpmath.exp(2 * t))),
        ("x*log(2*cosh(x)^2)", [12000.0, 0.5], lambda t: t * mpmath.log(2 * mpmath.cosh(t) ** 2)),
        ("log(exp(x) + x^2 + 1)", [12000.0, 0.0, -2.0], lambda t: mpmath.log(mpmath.exp(t) + t * t + 1)),
        ("log(x^x)", [1e5, -2.0, 0.5, 1e-10, -12000.0], lambda t: mpmath.log(mpmath.power(t, t))),
        # Where the log as written is finite it stays: its rules next to 1 (review of the rewrite).
        ("log(exp(x)/(1 + exp(x)))", [40.0, 1000.0, 12000.0], lambda t: -mpmath.log1p(mpmath.exp(-t))),
        ("log(1 + x^2*exp(x))", [1e-100, 12000.0], lambda t: mpmath.log1p(t * t * mpmath.exp(t))),
        ("log((x^2 + 1)^x)", [1e5, -3.0], lambda t: t * mpmath.log(t * t + 1)),
        # Quotients, differences, even powers and magnitudes (our own hunt: each was inf at 12000).
        ("log(cosh(x)/x)", [12000.0, 2.0], lambda t: mpmath.log(mpmath.cosh(t) / t)),
        ("log(exp(x) - 1)", [12000.0, 1e-17, 3.0], lambda t: mpmath.log(mpmath.expm1(t))),
        ("log(sinh(x)^2)", [-12000.0, 0.5], lambda t: mpmath.log(mpmath.sinh(t) ** 2)),
        ("log(abs(sinh(x)))", [-12000.0, 1e-9], lambda t: mpmath.log(abs(mpmath.sinh(t)))),
        ("log(x*exp(x))", [12000.0, 3.0], lambda t: mpmath.log(t * mpmath.exp(t))),
    ],
)
def test_the_log_of_exponentials_past_long_double_is_computed_without_them(
    text: str, x: list[float], exact: Any
) -> None:
    """e^x is past long double from 11357 on, so both runs overflowed and the log of it stayed inf:
    log(1 + exp(x)), log(cosh(x)) and log(exp(x) + exp(2x)) at 12000 were inf, their values 12000,
    11999.3 and 24000 (a documented limit, found again in our own hunt). Their logs are taken term
    by term (`numeric_code._logarithm`)."""
    with mpmath.workdps(60):
        expected = [float(exact(mpmath.mpf(t))) for t in x]
    assert _evaluate(text, x).tolist() == pytest.approx(expected, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize(
    ("text", "x", "exact"),
    [
        ("exp(x)/(exp(x) + 1)", [12000.0, -12000.0, 3.0], lambda t: 1 / (1 + mpmath.exp(-t))),
        ("exp(x)/(2*exp(x) + 3)", [12000.0, -2.0], lambda t: mpmath.exp(t) / (2 * mpmath.exp(t) + 3)),
        ("x*exp(x)/(exp(x) + x)", [12000.0, -3.0], lambda t: t * mpmath.exp(t) / (mpmath.exp(t) + t)),
        ("exp(2*x)/(exp(2*x) + 1)", [6000.0, 0.5], lambda t: 1 / (1 + mpmath.exp(-2 * t))),
    ],
)
def test_a_ratio_of_exponentials_past_long_double_takes_the_larger_one_in(
    text: str, x: list[float], exact: Any
) -> None:
    """exp(x)/(exp(x) + 1) at 12000 was NaN, inf/inf in both runs (our own hunt; its value is 1):
    where the ratio as written is not finite, e^-x is taken into the sum (`_exponential_ratio`)."""
    with mpmath.workdps(60):
        expected = [float(exact(mpmath.mpf(t))) for t in x]
    assert _evaluate(text, x).tolist() == pytest.approx(expected, rel=1e-14, abs=1e-300)


def test_a_log_of_a_negative_exponential_product_stays_not_a_number() -> None:
    """log(sinh(x)) below 0 and log(-exp(x)) have no real value: NaN, as before the rewrite."""
    assert np.isnan(_evaluate("log(sinh(x))", [-1.0, -12000.0])).all()
    assert np.isnan(_evaluate("log(-exp(x))", [1.0, 12000.0])).all()
    assert np.isnan(_evaluate("log(cosh(x)/x)", [-12000.0, -2.0])).all()
    assert np.isnan(_evaluate("log(exp(x) - 1)", [-1.0, -12000.0])).all()
    assert _evaluate("log(exp(x) - 1)", [0.0])[0] == -math.inf


def test_outputs_an_overflow_in_the_wide_run_does_not_feed_take_their_wide_values() -> None:
    """exp(x)/(exp(x) + 1) at 6000: its derivative's (e^x + 1)^2 is past long double too, and that
    made every output at the point NaN, the value and the partial in y included (tester round 12).
    Each output on a line of its own, an overflow is told apart by its line (`programs.feeds`):
    only the outputs it feeds stay unknown. (In this form d2/dx2 is now known there too: e^x
    expm1(x)/(e^x + 1)^3 with e^-x taken in, expm1(u) e^w written e^(u + w) - e^w; and in the mirror
    image, 1/(1 + e^-x) at -6000, where that form is not finite, the ratio written in e^x.)"""
    compiled = engine.compile_gradient(parsing.parse("exp(x)/(exp(x) + 1) + y"), ["x", "y"], hessian=True)
    columns = {"x": np.array([6000.0, 1.0, 6000.0]), "y": np.array([2.0, 2.0, -1.0])}
    result = engine.gradient(compiled, columns, 3)
    assert result.value.tolist() == [3.0, pytest.approx(2 + 1 / (1 + math.exp(-1)), rel=1e-15, abs=0), 0.0]
    assert result.hessians[0][[0, 2]].tolist() == [0.0, 0.0]
    assert result.nonfinite_count == 0
    mirrored = engine.compile_gradient(parsing.parse("1/(1 + exp(-x)) + y"), ["x", "y"], hessian=True)
    result = engine.gradient(mirrored, {"x": -columns["x"], "y": columns["y"]}, 3)
    assert result.value.tolist() == [2.0, pytest.approx(2 + 1 / (1 + math.exp(1)), rel=1e-15, abs=0), -1.0]
    assert result.gradients[1].tolist() == [1.0, 1.0, 1.0]
    # d/dx, e^-6000, is 0.0 (its ratio of exponentials with e^-x taken in: `_exponential_ratio`);
    # d2/dx2, over (1 + e^-x)^2 (e^x + 1) as the rules write it, -0.0 in e^x (`_both_ways`).
    assert result.gradients[0][[0, 2]].tolist() == [0.0, 0.0]
    assert result.hessians[0][[0, 2]].tolist() == [0.0, 0.0]
    assert [hessian.tolist() for hessian in result.hessians[1:]] == [[0.0] * 3] * 3
    assert result.nonfinite_count == 0
    softplus = engine.compile_gradient(parsing.parse("log(exp(x) + 1)"), ["x"], hessian=True)
    found = engine.gradient(softplus, {"x": np.array([6000.0])}, 1)
    assert (found.value[0], found.gradients[0][0]) == (6000.0, 1.0)


def test_each_line_of_generated_code_feeds_the_outputs_that_read_it() -> None:
    """`programs.feeds` reads the bytecode: temporaries feed every output reading them, each output's
    own line feeds only it; a function of one output is not told apart (None)."""
    compiled = engine.compile_gradient(parsing.parse("exp(x)/(exp(x) + 1) + y"), ["x", "y"], hessian=False)
    fed = programs.feeds(compiled.function.__code__)
    assert fed is not None
    per_output = sorted(bits for bits in fed.values() if bits)
    assert {1, 2, 4} <= set(per_output)  # the value, d/dx and d/dy each on a line of its own
    assert all(bits in (1, 2, 3, 4) for bits in per_output)  # y's partial reads no temporary
    assert 3 in per_output  # e^x, read by the value and d/dx: a temporary feeds both
    single = engine.compile_function(parsing.parse("exp(x)/(exp(x) + 1)"), ["x"])
    assert programs.feeds(single.function.__code__) is None


@pytest.mark.parametrize(
    ("text", "x", "why"),
    [
        ("x^200/gamma(x)", 2000.0, "gamma(2000) is past long double too: 1e660/inf is not 0"),
        ("gamma(x)*x^1500", -1800.5, "gamma(-1800.5) is past long double too (1e-5061): 0 * 1e4883 is not 0"),
    ],
)
def test_a_kernel_value_past_the_doubles_makes_the_wide_value_unknown(text: str, x: float, why: str) -> None:
    """A kernel without long double computes in doubles in the wide run: where its value is past
    their range, the wide run is no better, and a value the two runs disagree on is NaN."""
    assert math.isnan(_evaluate(text, [x])[0]), why


@pytest.mark.parametrize("spec", functions.SPECS, ids=lambda spec: spec.name)
def test_every_kernel_computes_in_the_wide_namespace(spec: functions.FunctionSpec) -> None:
    """Each function (and the partials its gradient prints) runs with long double columns, each
    kernel without a long double loop in doubles; where nothing overflows, the two runs agree."""
    arity = 2 if spec.name == "zeta" else spec.min_args
    call = f"{spec.name}({', '.join([*('2' for _ in range(arity - 1)), 'x'])})"
    alone = engine.compile_function(parsing.parse(call), ["x", "y"])  # a ufunc's is called with `out=`
    compiled = engine.compile_gradient(parsing.parse(f"{call}*y - x/y"), ["x", "y"], hessian=True)
    xs = np.array([-3.5, -0.5, 0.25, 0.75, 1.5, 2.5, 7.0])
    ys = np.full_like(xs, 1.5)
    with np.errstate(all="ignore"):
        narrow = [alone.function(xs, ys), *compiled.function(xs, ys)]
        wide = [alone.wide(*widening.widened([xs, ys])), *compiled.wide(*widening.widened([xs, ys]))]
    for narrow_values, wide_values in zip(narrow, wide, strict=True):
        again = np.broadcast_to(np.asarray(numeric._as_real(wide_values), dtype=np.float64), xs.shape)
        ours = np.broadcast_to(narrow_values, xs.shape)
        both = np.isfinite(ours) & np.isfinite(again)
        assert np.array_equal(np.isfinite(ours), np.isfinite(again)), spec.name
        assert np.allclose(ours[both], again[both], rtol=1e-9, atol=0), spec.name


def _out_of_time(text: str, xs: np.ndarray) -> str:
    """The message of the evaluation of `text` at `xs`, refused for its time budget."""
    compiled = engine.compile_function(parsing.parse(text), ["x"])
    with pytest.raises(ResourceExhausted) as raised:
        engine.evaluate(compiled, {"x": xs}, len(xs))
    assert raised.value.reason == "COMPUTE_BUDGET_EXCEEDED"
    return str(raised.value)


def test_the_wide_runs_are_bound_by_the_calls_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long double is some 50 times slower: past the call's time the next chunk stops the call."""
    monkeypatch.setattr(numeric, "_MIN_POINTWISE_SECONDS", 0.0)
    # The charge itself (4 chunks, no slack) is a fifth of what the long double run takes.
    monkeypatch.setattr(numeric, "_POINTWISE_SLACK", 1)
    assert "long double" in _out_of_time("1/(1 + exp(x))", np.full(4 * 65_536, 800.0))


def test_the_float64_run_is_bound_by_the_calls_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only the mpmath and long double kernels: a function slower on some arguments than its
    weight says (numpy's scalar cos past 2^19) ran a call 2.4 times past its budget (tester round 10).
    The budget is checked after each chunk."""
    monkeypatch.setattr(numeric, "_MIN_POINTWISE_SECONDS", 0.0)
    monkeypatch.setattr(numeric, "_POINTWISE_SLACK", 0.0)  # no time at all: the first check stops it
    xs = np.full(3 * 65_536, 1e300)
    assert "the evaluation took longer than its cost allows" in _out_of_time("cos(x)", xs)
    monkeypatch.undo()
    compiled = engine.compile_function(parsing.parse("cos(x)"), ["x"])
    assert engine.evaluate(compiled, {"x": xs}, len(xs)).nonfinite_count == 0


def test_work_done_is_not_refused_for_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget stops work still to do: a call whose last chunk is computed is answered (refused
    "500,000 of 500,000 points done", it was only wasted; an independent hunt, 2026-12-06)."""
    monkeypatch.setattr(numeric, "_MIN_POINTWISE_SECONDS", 0.0)
    monkeypatch.setattr(numeric, "_POINTWISE_SLACK", 0.0)  # no time at all
    compiled = engine.compile_function(parsing.parse("cos(x)"), ["x"])
    xs = np.full(1_000, 1e300)  # one chunk: checked only once it is done
    assert engine.evaluate(compiled, {"x": xs}, len(xs)).nonfinite_count == 0


def test_the_budget_counts_the_calls_own_cpu_time_not_its_waits() -> None:
    """A call's budget is the CPU time of the thread computing it: on a loaded machine the numeric
    thread waits for the GIL and a core, and a wall-clock deadline refused a call within its cost
    (COMPUTE_BUDGET_EXCEEDED in the SIGTERM attack on a busy machine)."""
    with kernels.pointwise_budget(0.05):
        time.sleep(0.2)  # waiting, as for the GIL: no CPU time spent
        kernels.check_budget("the evaluation", 1, 2)
        spent = time.thread_time()
        while time.thread_time() - spent < 0.1:  # computing: past the budget
            pass
        with pytest.raises(ResourceExhausted) as raised:
            kernels.check_budget("the evaluation", 1, 2)
    assert raised.value.reason == "COMPUTE_BUDGET_EXCEEDED"


def test_one_chunk_of_long_double_stops_at_the_calls_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is checked before each slice of a wide run, not only after a chunk: one chunk of
    a costly expression in long double ran for minutes past its deadline (tester round 5)."""
    monkeypatch.setattr(numeric, "_MIN_POINTWISE_SECONDS", 0.0)
    monkeypatch.setattr(numeric, "_POINTWISE_SLACK", 0.0)  # no time at all: the first check stops it
    checks: list[int] = []
    real_check = kernels.check_budget

    def counting(what: str, done: int, total: int, **keywords: str) -> None:
        checks.append(done)
        real_check(what, done, total, **keywords)

    monkeypatch.setattr(kernels, "check_budget", counting)
    compiled = engine.compile_function(parsing.parse("1/(1 + exp(x))"), ["x"])
    xs = np.full(8_192, 800.0)  # one chunk
    with pytest.raises(ResourceExhausted) as raised:
        engine.evaluate(compiled, {"x": xs}, len(xs))
    assert raised.value.reason == "COMPUTE_BUDGET_EXCEEDED"
    assert checks == [0]  # inside the chunk (its first point is 0), before its first slice


def test_a_quick_only_evaluation_that_needs_long_double_says_so() -> None:
    """The server evaluates small requests on its event loop (`quick_only`); one that overflows moves
    to a thread, since long double costs up to 50 times the charge (tester round 5: 2.5 s stalls)."""
    compiled = engine.compile_function(parsing.parse("log(1 + x^2)"), ["x"])
    with engine.quick_only(), pytest.raises(engine.NeedsWidening):
        engine.evaluate(compiled, {"x": np.array([1e200])}, 1)
    with engine.quick_only():
        assert engine.evaluate(compiled, {"x": np.array([2.0])}, 1).values[0] == pytest.approx(math.log(5))
    assert engine.evaluate(compiled, {"x": np.array([1e200])}, 1).values[0] == pytest.approx(
        400 * math.log(10)
    )


def test_what_follows_a_double_only_kernel_is_computed_in_long_double() -> None:
    """beta has no long double: the wide run computes it in doubles, and its square (past them) came
    back a double and overflowed again, so beta(sin x, x^x)^2 / x^(2x) at x = 92.8 was NaN (make fuzz)."""
    x = 92.79461985680355
    with mpmath.workdps(60):
        a, b = mpmath.sin(mpmath.mpf(x)), mpmath.mpf(x) ** x
        exact = float((mpmath.gamma(a) * b ** (-a)) ** 2 / (4_000_000 * b**2))
    assert _evaluate("beta(sin(x), x^x)^2/(4000000*x^(2*x))", [x])[0] == pytest.approx(exact, rel=1e-9, abs=0)


def _gradient_at(text: str, point: dict[str, float]) -> tuple[float, list[float]]:
    names = sorted(point)
    compiled = engine.compile_gradient(parsing.parse(text), names, hessian=False)
    result = engine.gradient(compiled, {name: np.array([value]) for name, value in point.items()}, 1)
    return float(result.value[0]), [float(partial[0]) for partial in result.gradients]


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("cbrt(x*y)", lambda x, y: mpmath.cbrt(x * y)),
        ("sqrt(x*y)", lambda x, y: mpmath.sqrt(x * y)),
        ("log(x*y)", lambda x, y: mpmath.log(x * y)),
        ("(x*y)/(x*y + x*x)", lambda x, y: (x * y) / (x * y + x * x)),
        ("(x*y)^(1/5)", lambda x, y: (x * y) ** (mpmath.mpf(1) / 5)),
    ],
)
def test_values_an_underflow_on_the_way_damaged_are_computed_in_long_double(text: str, exact: Any) -> None:
    """x*y at 1e-200 is 1e-400, 0.0 in float64: cbrt(x*y) was 0 (its value is 1e-133), its partials 0
    where they are 3e132, log(x*y) -inf, sqrt's partials inf, the quotient NaN (an independent tester).
    Where an operation underflowed, the points whose values are 0, subnormal or not finite are
    computed again in long double."""
    x = y = 1e-200
    value, partials = _gradient_at(text, {"x": x, "y": y})
    with mpmath.workdps(60):
        mx, my = mpmath.mpf(x), mpmath.mpf(y)
        step = mx * mpmath.mpf(10) ** -25  # relative: the default absolute step would pass through 0
        expected = [
            exact(mx, my),
            mpmath.diff(lambda t: exact(t, my), mx, h=step),
            mpmath.diff(lambda t: exact(mx, t), my, h=step),
        ]
    assert [value, *partials] == pytest.approx([float(e) for e in expected], rel=1e-12, abs=0)


def test_a_product_with_a_factor_that_underflows_is_computed_in_long_double() -> None:
    """exp(-x)*sinh(x - 100) at 800 is about e^-100/2; exp(-800) is 0.0 in float64 (docs/accuracy.md
    said to write such products as one exponential)."""
    with mpmath.workdps(40):
        exact = float(mpmath.exp(-800) * mpmath.sinh(700))
    assert _evaluate("exp(-x)*sinh(x - 100)", [800.0])[0] == pytest.approx(exact, rel=1e-14, abs=0)


def test_a_gaussians_tails_keep_their_float64_values() -> None:
    """Where the value itself is past the doubles, long double agrees with float64 (0, or the same
    subnormal within the smallest normal double): the tails stay as float64 computes them, and a
    point gets in a batch what it gets alone."""
    xs = np.concatenate([np.linspace(-40, 40, 4001), [26.6, 27.2, 1e-160, -0.0]])
    batch = _evaluate("exp(-x^2)", xs.tolist())
    with np.errstate(under="ignore"):
        assert np.array_equal(batch, np.exp(-(xs**2)))
    cube = _evaluate("cbrt(x*x)*exp(-x^2)", xs.tolist())
    singles = [_evaluate("cbrt(x*x)*exp(-x^2)", [x])[0] for x in xs[::97]]
    assert np.array_equal(cube[::97], singles)
    # x*x is 1e-320 there, a subnormal of 10 bits: the point is computed in long double.
    assert cube[-2] == pytest.approx(float(mpmath.cbrt(mpmath.mpf(1e-160) ** 2)), rel=1e-15, abs=0)


def test_an_argument_lost_to_the_doubles_leaves_the_value_unknown() -> None:
    """erf has no long double loop: in the wide run x*y at 1e-200 (1e-400) reaches it as 0.0, so its
    wide value, 0/1e-400 = 0, is no better than float64's 0/0: the value stays NaN, never 0 (the
    wide run reports the lost argument, `widening._lost`)."""
    assert math.isnan(_evaluate_xy("erf(x*y)/(x*y)", 1e-200, 1e-200))


def _evaluate_xy(text: str, x: float, y: float) -> float:
    compiled = engine.compile_function(parsing.parse(text), ["x", "y"])
    return float(engine.evaluate(compiled, {"x": np.array([x]), "y": np.array([y])}, 1).values[0])


def test_long_doubles_round_to_doubles_as_astype_rounds_them() -> None:
    """`widening.to_doubles` skips the processor's slow conversion of values past the doubles."""
    edges = ["1e-400", "-1e-400", "1e-310", "-2.4703282292062327e-324", "2.4703282292062328e-324",
             "1.7976931348623158e308", "1.797693134862315807e308", "1.797693134862315808e308", "1e400",
             "-1e400", "nan", "inf", "-inf", "0", "-0.0", "1.5", "-3e-200"]  # fmt: skip
    rng = np.random.default_rng(5)
    spread = rng.standard_normal(2000) * np.power(np.longdouble(10), rng.integers(-400, 400, 2000))
    values = np.concatenate([np.array([np.longdouble(edge) for edge in edges]), spread])
    with np.errstate(all="ignore"):
        expected = values.astype(np.float64)
    narrowed = widening.to_doubles(values)
    assert np.array_equal(narrowed, expected, equal_nan=True)
    assert np.array_equal(np.signbit(narrowed), np.signbit(expected))


@pytest.mark.parametrize("size", [1, 8, 9, 1000])
def test_sin_of_a_subnormal_is_computed_in_long_double_alike_at_any_size(size: int) -> None:
    """The doubles' sin halves its argument (tan(x/2)), which rounds below the normal doubles: sin(x)/x
    at 5e-324 was 0.0 for up to 8 points, whose Python floats raised no underflow flag, and its
    derivative at 1e-310 was -5e297, truth -3.3e-311, as the wide run called the same sin."""
    points = [5e-324, -5e-324, 1e-310, 0.5] * size
    assert _evaluate("sin(x)/x", points)[:4] == pytest.approx(
        [1.0, 1.0, 1.0, math.sin(0.5) / 0.5], rel=1e-13, abs=0
    )
    formula = symbolic.differentiate(parsing.parse("sin(x)/x"), [("x", 1)])
    derivative = numeric.evaluate(
        numeric.compile_function(formula, ["x"]), {"x": np.array([1e-310] * size)}, size
    )
    assert derivative.values[0] == pytest.approx(-1e-310 / 3, rel=1e-12, abs=0)


def test_a_kernels_branch_not_taken_does_not_overflow_the_long_double_run() -> None:
    """exp_difference computed both branches' expm1, and expm1(2e4) overflows even long double: the
    wide run of log(exp(x) + exp(-x))' at 1e4 counted as lost, NaN where it is tanh(1e4) = 1 (a hunt,
    2026-12-05). Past long double itself (12000) it stays NaN (docs/accuracy.md)."""
    formula = symbolic.differentiate(parsing.parse("log(exp(x) + exp(-x))"), [("x", 1)])
    got = numeric.evaluate(numeric.compile_function(formula, ["x"]), {"x": np.array([1e4, -1e4, 0.5])}, 3)
    assert got.values.tolist() == pytest.approx([1.0, -1.0, math.tanh(0.5)], rel=1e-15, abs=0)
