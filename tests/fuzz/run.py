"""`make fuzz`: the differential fuzzer for MINUTES minutes with fresh seeds; findings go to build/fuzz/.

    python -m tests.fuzz.run --minutes 20 [--out build/fuzz] [--seed N]

Rounds of hypothesis examples, each round under a seed of its own (printed, and written with every
finding, so `--seed` replays one). Findings are recorded, not raised (no shrinking: the run goes on);
`findings.jsonl` has one per line, `summary.txt` counts them by check and kind. Symbolic work runs in
killable worker processes under a budget (FULL simplification can take very long); every check,
FULL read-back included, runs. Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import faulthandler
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed

from chainrule.server.api import ChainruleApi
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.compute.pool import ProcessExecutor
from tests.conftest import make_settings
from tests.fuzz import checks, trees
from tests.fuzz.test_differential import cases

_ROUND = 100  # examples per seed
_SLOW = 120.0  # seconds after which an example's stack is printed
_MEMORY_BYTES = 12 << 30  # the fuzzing process's address space (its workers have 4 GiB each)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("build/fuzz"))
    parser.add_argument("--seed", type=int, default=None, help="replay one round")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    # A checker that would take all the machine's memory (1^cosh(1.3e11) made mpmath build a 24 GB
    # int: the OOM killer ended the run) raises MemoryError instead, recorded as a finding.
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    loop = asyncio.new_event_loop()
    pool = ProcessExecutor(1, budget_seconds=30.0, memory_bytes=4 << 30, queue=4)
    loop.run_until_complete(pool.start())
    api = ChainruleApi(make_settings(), pool, InlineExecutor())
    differential = checks.Differential(api, loop, full=True)
    deadline = time.monotonic() + 60 * options.minutes
    findings: list[tuple[int, checks.Finding]] = []
    examples = 0
    with (options.out / "findings.jsonl").open("w") as sink:
        while time.monotonic() < deadline:
            round_seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
            found, ran = _round(differential, round_seed, deadline, options.out / "current.json")
            examples += ran
            for finding in found:
                findings.append((round_seed, finding))
                sink.write(json.dumps(_record(round_seed, finding), default=str) + "\n")
                sink.flush()
                print(f"seed {round_seed}: {finding.describe()}", flush=True)
            if options.seed is not None:
                break
    loop.run_until_complete(pool.close())
    summary = _summary(findings, examples, options.minutes)
    (options.out / "summary.txt").write_text(summary)
    print(summary)
    return 1 if findings else 0


def _round(
    differential: checks.Differential, round_seed: int, deadline: float, current: Path
) -> tuple[list[checks.Finding], int]:
    found: list[checks.Finding] = []
    ran = [0]

    @hypothesis_seed(round_seed)
    @settings(
        max_examples=_ROUND,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    def explore(case: tuple[trees.Node, list[dict[str, float]], int]) -> None:
        if time.monotonic() > deadline:
            return
        tree, points, seed = case
        ran[0] += 1
        # Named before it runs: an example that hangs or kills the process is found here afterwards
        # (faulthandler's stack dump of a thread deep in sympy once crashed the run itself).
        example = {"seed": round_seed, "expression": trees.to_text(tree), "points": points}
        current.write_text(json.dumps(example, default=str) + "\n")
        # An example that takes minutes is itself a finding (no evaluation may be unbounded): where it is.
        faulthandler.dump_traceback_later(_SLOW, exit=False)
        try:
            found.extend(differential.run(tree, points, seed))
        except Exception as error:  # the checker's own failure is a finding, and the run goes on
            detail = f"the checker failed: {type(error).__name__}: {error}"[:500]
            found.append(checks.Finding("checker", trees.to_text(tree), points[0] if points else {}, detail))
        finally:
            faulthandler.cancel_dump_traceback_later()

    explore()
    return found, ran[0]


def _record(round_seed: int, finding: checks.Finding) -> dict[str, Any]:
    return {
        "seed": round_seed,
        "check": finding.check,
        "expression": finding.expression,
        "point": dict(finding.point),
        "detail": finding.detail,
        "ours": finding.ours,
        "expected": finding.expected,
        "extra": dict(finding.extra),
    }


def _summary(findings: list[tuple[int, checks.Finding]], examples: int, minutes: float) -> str:
    kinds = collections.Counter((f.check.split(" ")[0], f.detail.split(" (")[0][:60]) for _, f in findings)
    lines = [f"{examples} expressions in {minutes:g} minutes, {len(findings)} findings"]
    lines += [f"{count:6}  {check}: {detail}" for (check, detail), count in kinds.most_common()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
