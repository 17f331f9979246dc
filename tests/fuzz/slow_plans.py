"""A hunt for plans that take long to compile: random trees (the differential fuzzer's), each compiled
as GradientAtPoint with a Hessian compiles it (derivatives, Taylor patches, code), timed in process.

    python -m tests.fuzz.slow_plans --minutes 10 [--over 2.0] [--budget 30] [--seed N]

Compiling runs in a killable worker under the symbolic budget in production, so a slow plan fails
no request by itself; but each second of it is a second of a worker other callers share, and the
patches' own work (`removable`, mpmath at rising precisions) is bounded only by how many they try.
A plan slower than `--over` seconds is printed with the share of its time spent in `removable`
(the Hessian of acsc(beta(x + E, 1)) took 20 s there: mpmath's psi at 4,096 bits); one still
compiling at `--budget` seconds (production's symbolic budget) is printed as such, and its worker
process replaced, as production's would be. Exit status 1 if a plan ran past the budget: slow ones
under it are what the patches' tries allow (plans of gamma, beta and polygamma formulas took 2 to
5.4 s on 2026-12-07), reported to be looked at.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import random
import time
from dataclasses import dataclass
from multiprocessing.pool import Pool

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed

from chainrule import engine
from chainrule.engine import parsing
from tests.fuzz import trees
from tests.fuzz.test_differential import cases

_ROUND = 50  # examples per seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--over", type=float, default=2.0, help="seconds past which a plan is reported")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds after which a plan is stopped")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    deadline = time.monotonic() + options.minutes * 60
    seeds = random.Random(options.seed)
    worker = _Worker(options.budget)
    counts = _Counts()
    try:
        while time.monotonic() < deadline:
            _round(worker, seeds.randrange(2**32), deadline, options.over, counts)
    finally:
        worker.close()
    print(
        f"{counts.compiled} plans in {options.minutes:g} minutes, {counts.slow} over {options.over:g} s, "
        f"{counts.past_budget} past the {options.budget:g} s budget"
    )
    return 1 if counts.past_budget else 0


@dataclass
class _Counts:
    compiled: int = 0
    slow: int = 0
    past_budget: int = 0


class _Worker:
    """One process compiling plans, replaced when one runs past the budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self._context = multiprocessing.get_context("forkserver")
        self._pool: Pool = self._context.Pool(1)

    def timed(self, text: str, names: list[str]) -> tuple[float, float] | None:
        """(seconds, seconds in removable.patches), or None past the budget."""
        try:
            return self._pool.apply_async(_compile, (text, names)).get(self.budget)
        except multiprocessing.TimeoutError:
            self._pool.terminate()
            self._pool = self._context.Pool(1)
            return None

    def close(self) -> None:
        self._pool.terminate()


def _compile(text: str, names: list[str]) -> tuple[float, float]:
    try:
        expression = parsing.parse(text)
    except Exception:  # what the parser refuses is not a plan
        return 0.0, 0.0
    profile = cProfile.Profile()
    start = time.perf_counter()
    try:
        profile.runcall(engine.compile_gradient, expression, names, hessian=True)
    except Exception:  # refused plans (limits, not computable) are not the hunt
        return 0.0, 0.0
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profile)
    patches = sum(
        row[3]
        for (path, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
        if path.endswith("removable.py") and name == "patches"
    )
    return seconds, patches


def _round(worker: _Worker, round_seed: int, deadline: float, over: float, counts: _Counts) -> None:
    @hypothesis_seed(round_seed)
    @settings(max_examples=_ROUND, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def explore(case: tuple[trees.Node, list[dict[str, float]], int]) -> None:
        if time.monotonic() > deadline:
            return
        tree = case[0]
        text, names = trees.to_text(tree), sorted(tree.variables())
        counts.compiled += 1
        timed = worker.timed(text, names)
        if timed is None:
            counts.past_budget += 1
            print(f"past the {worker.budget:g} s budget, seed {round_seed}: {text}", flush=True)
        elif timed[0] > over:
            counts.slow += 1
            print(
                f"{timed[0]:.1f} s ({timed[1]:.1f} s in removable.patches), seed {round_seed}: {text}",
                flush=True,
            )

    explore()


if __name__ == "__main__":
    raise SystemExit(main())
