"""An adversary for INTERNAL errors: constants at the edges of every function, through every extra.

The differential fuzzer (`trees.py`) checks numbers over a small set of literals. This one checks
that nothing breaks: it writes expressions whose constants are functions of huge, tiny and
near-limit numbers (`acoth(log10(erfc(10^-30)^2)^2)`, `floor(1/asin(1e-100))`, `DiracDelta(pi, 1/2)`)
placed where sympy evaluates, orders or prints them (a sum with x, a power, a logarithm), and sends
each through all the symbolic work a request can ask for: parse and cache key, derivative, steps,
check, MathML, Python, C and JavaScript code, LaTeX, the gradient with its Hessian compiled and
evaluated, a Taylor series around another such constant, and implicit differentiation. Each one must
come back as a value or as a chainrule error; anything else would reach a caller as INTERNAL.

It found: a division by a constant sympy rounds to 0 (ZeroDivisionError when printing), 1/0 in
generated Python, DiracDelta of a fractional order, sympy failing on a constant past its precision
(PrecisionExhausted), a pole met while differentiating.

    .venv/bin/python -m tests.fuzz.extremes --seconds 120 --seed 7    # a longer run, in-process
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import random
import resource
import signal
import time
from pathlib import Path

import numpy as np

from chainrule import engine
from chainrule.engine import codegen, functions
from chainrule.engine.errors import ChainruleError, refusing_library_failures
from chainrule.server.compute import jobs
from chainrule.server.config import Settings

_FUNCTIONS = sorted({spec.name for spec in functions.FUNCTIONS.values()})
# Numbers where functions are at their limits: huge, tiny, past the doubles, next to poles.
_ATOMS = (
    "123456789", "1e-200", "1e-100", "10^400", "10^-30", "1/3", "pi", "e", "0.5", "1e300",
    "200", "-200", "50", "2^-60", "1e-17", "3", "1", "0", "-1", "pi/2",
)  # fmt: skip
# What turns a function's value at a limit into cancellation, a pole or a huge number.
_TAILS = ("", " - 1", " - pi/2", "^(-1)", " + 1", "*10^30", "^2")
# Where sympy evaluates, orders or prints a constant.
_FORMS = (
    "x + {c}", "x*{c}", "x/{c}", "sin(x*{c})", "{c}^x", "x^{c}", "log(x + {c})",
    "exp({c}*x) + {c}", "({c})*(x + 1)^2 - {c}*x",
)  # fmt: skip


def constant(rng: random.Random, depth: int = 0) -> str:
    """A constant: a function of constants, then a tail that cancels, inverts or scales it."""
    if depth > 2 or rng.random() < 0.3:
        return rng.choice(_ATOMS)
    name = rng.choice(_FUNCTIONS)
    spec = functions.FUNCTIONS[name]
    if name == "polygamma":
        inner = f"polygamma({rng.randint(0, 3)}, {constant(rng, depth + 1)})"
    else:
        count = rng.randint(spec.min_args, min(spec.max_args, 2))
        inner = f"{name}({', '.join(constant(rng, depth + 1) for _ in range(count))})"
    tail = rng.choice(_TAILS)
    return f"({inner}{tail})" if tail else inner


def expression(rng: random.Random) -> tuple[str, str]:
    """An expression in x, and a constant point to expand it around."""
    return rng.choice(_FORMS).format(c=constant(rng)), constant(rng, depth=2)


_LIMITS = jobs.Limits.from_settings(Settings())
_EXTRAS = jobs.ExtrasRequest(explain=True, verify=True, mathml=True, languages=tuple(codegen.Language))
_POINTS = {"x": np.array([0.3, -2.0, 5.0])}
_SECONDS_EACH = 10
_MEMORY_BYTES = 4 * 1024**3


def exercise(text: str, around: str = "0") -> None:
    """Everything a request can ask of `text` (a function of x): returns, or raises a chainrule error.
    Its Taylor series around `around`, and `text = y` differentiated implicitly for y, too."""
    parsed = jobs.parse_canonical(text, _LIMITS)
    wrt = (("x", 1),)
    jobs.derive_parsed(parsed.portable, wrt, engine.Simplification.FAST, _LIMITS)
    jobs.derive_extras(parsed.portable, wrt, engine.Simplification.FAST, _EXTRAS, _LIMITS)
    jobs.readable(parsed.portable)
    if "x" in parsed.variables:
        compiled = jobs.compile_gradient(parsed.portable, ("x",), True, _LIMITS)
        engine.numeric.gradient(compiled.value, _POINTS, 3)
        for step in (
            lambda: jobs.expand_series(parsed.portable, "x", around, 3, latex=True, limits=_LIMITS),
            lambda: jobs.derive_implicit(
                jobs.ImplicitRequest(f"{text} = y^3 + y", (("x", 2),), "y"),
                engine.Simplification.FAST,
                _LIMITS,
            ),
        ):
            with contextlib.suppress(ChainruleError):  # the others still run
                step()


class _TooSlow(Exception):
    """An expression past its seconds in-process (in a symbolic worker, the budget stops it)."""


def _too_slow(*_: object) -> None:
    raise _TooSlow


def main() -> int:
    parser = argparse.ArgumentParser(description="in-process run of the INTERNAL-error adversary")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--current",
        type=Path,
        default=Path("build/fuzz/extremes-current.txt"),
        help="where the expression being run is written (to name one that stalls)",
    )
    args = parser.parse_args()
    args.current.parent.mkdir(parents=True, exist_ok=True)
    rng, end, count, failures, slow = random.Random(args.seed), time.monotonic() + args.seconds, 0, 0, 0
    signal.signal(signal.SIGALRM, _too_slow)
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))  # as a worker's
    while time.monotonic() < end:
        text, around = expression(rng)
        count += 1
        args.current.write_text(f"{text}\naround {around}\n")
        # SIGALRM stops Python code; a bignum computation in C holds the thread past it, so a
        # watchdog ends the run with a traceback instead (a worker's budget kills it in production).
        faulthandler.dump_traceback_later(3 * _SECONDS_EACH, exit=True)
        signal.alarm(_SECONDS_EACH)
        try:
            refusing_library_failures(exercise, text, around)
        except (ChainruleError, MemoryError):  # a worker answers MemoryError itself
            continue
        except _TooSlow:
            # A worker's budget would end it, but Parse reads on a thread nothing stops: worth a look.
            slow += 1
            print(f"SLOW {text!r} around {around}: over {_SECONDS_EACH} s", flush=True)
            continue
        except Exception as error:  # what a caller would see as INTERNAL
            failures += 1
            print(
                f"INTERNAL {text!r} around {around}: {type(error).__name__}: {str(error)[:200]}", flush=True
            )
        finally:
            signal.alarm(0)
            faulthandler.cancel_dump_traceback_later()
    print(f"{count} expressions, {failures} INTERNAL, {slow} over {_SECONDS_EACH} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
