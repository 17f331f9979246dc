"""The numeric engine of this tree against an older commit's, point by point, judged by mpmath.

    python scripts/compare_trees.py --base 247013a --cases cases.json [--out build/compare]

A rule that mends one shape can break a neighbour: each round of numeric rules (numeric_code.py)
went through such a hunt, and each found points where the new tree was worse than the old one
(752 once, 675 once). `cases.json` lists `{"expr": ..., "vars": ["x"], "order": k, "points": [...]}`
(two variables: points are pairs, and order k > 0 means the mixed partial of order (1, 1)). Both
trees evaluate every case, each in a process of its own (`git archive` of the base, PYTHONPATH);
where they differ, the truth is the derivative evaluated with mpmath at 3,000 and 12,000 bits (a
point where those disagree is skipped as uncertain). A point is a regression where this tree's
relative error is above 1e-12 and four times the base's; the report (REPORT.md, regressions.json)
lists them, and the exit status is 1 if there are any.

    python scripts/compare_trees.py --decimals --cases cases.json

compares this tree with itself instead: each case with its whole numbers written as decimals (1 as
1.0) against the case as written. 1.0 is 1, so a point where the decimal form is worse (as above) is
a rule that missed the decimal: every rule did once (`numeric_code.exact_decimals`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Case = dict[str, Any]


def _derivative(case: Case) -> tuple[Any, Any]:
    """(function, formula) of a case, parsed and differentiated by the tree on the path."""
    from chainrule.engine import parsing, symbolic  # noqa: PLC0415 - the tree under test's

    expression = parsing.parse(case["expr"])
    variables = case["vars"]
    if not case["order"]:
        return expression, expression
    wrt = [(name, 1) for name in variables] if len(variables) > 1 else [(variables[0], case["order"])]
    return expression, symbolic.differentiate(expression, wrt)


def evaluate(cases: list[Case]) -> list[list[float] | str]:
    """Every case's values, or why it failed, in the tree on the path."""
    import numpy as np  # noqa: PLC0415

    from chainrule.engine import numeric  # noqa: PLC0415

    results: list[list[float] | str] = []
    for case in cases:
        try:
            function, formula = _derivative(case)
            compiled = numeric.compile_function(formula, case["vars"], function=function)
            points = np.array(case["points"], dtype=float).reshape(len(case["points"]), -1)
            columns = {name: points[:, index].copy() for index, name in enumerate(case["vars"])}
            values = numeric.evaluate(compiled, columns, len(points)).values
            results.append([float(value) for value in values])
        except Exception as error:  # a failure is a result to compare
            results.append(f"{type(error).__name__}: {error}"[:300])
    return results


def _truth(case: Case, point: Any) -> float | None:
    """The formula at `point` by mpmath, or None where two precisions disagree."""
    from chainrule.engine import reference  # noqa: PLC0415

    _, formula = _derivative(case)
    values = point if isinstance(point, list) else [point]
    at = dict(zip(case["vars"], values, strict=True))
    low, high = (float(reference.evaluate(formula, at, prec=bits)) for bits in (3_000, 12_000))
    if low == high or (math.isnan(low) and math.isnan(high)):
        return high
    return high if math.isfinite(high) and abs(low - high) <= 1e-15 * abs(high) else None


def _error(value: float, truth: float) -> float:
    if math.isnan(truth):
        return 0.0 if math.isnan(value) else 1.0
    if math.isinf(truth) or math.isinf(value) or math.isnan(value):
        return 0.0 if value == truth else math.inf
    return abs(value - truth) / abs(truth) if truth else abs(value)


def _tree_values(service: Path, cases_file: Path, out: Path) -> list[list[float] | str]:
    env = {**os.environ, "PYTHONPATH": str(service)}
    command = [sys.executable, __file__, "--evaluate", str(cases_file), "--out", str(out)]
    subprocess.run(command, env=env, check=True)  # noqa: S603 - this script, on a case file
    values: list[list[float] | str] = json.loads(out.read_text())
    return values


def compare(base: str, cases_file: Path, out_dir: Path) -> int:
    cases: list[Case] = json.loads(cases_file.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        git = shutil.which("git") or "git"
        archive = subprocess.run(  # noqa: S603 - a revision the caller named, to git archive
            [git, "archive", base, "service"], cwd=ROOT, capture_output=True, check=True
        )
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(scratch, filter="data")
        old = _tree_values(Path(scratch) / "service", cases_file, out_dir / "base.json")
    new = _tree_values(ROOT / "service", cases_file, out_dir / "new.json")
    return _report(cases, old, new, out_dir, base)


def _report(
    cases: list[Case], old: list[list[float] | str], new: list[list[float] | str], out_dir: Path, base: str
) -> int:
    """Points where `new` is worse than `old` (`regressions.json`, REPORT.md); 1 if there are any."""
    regressions: list[dict[str, Any]] = []
    improved = compared = 0
    for case, before, now in zip(cases, old, new, strict=True):
        if isinstance(now, str) and not isinstance(before, str):
            regressions.append({"case": case, "failure": now})
            continue
        if isinstance(now, str) or isinstance(before, str):
            continue
        for point, b, n in zip(case["points"], before, now, strict=True):
            compared += 1
            if b == n or (math.isnan(b) and math.isnan(n)):
                continue
            truth = _truth(case, point)
            if truth is None:
                continue
            new_error, old_error = _error(n, truth), _error(b, truth)
            if new_error > 1e-12 and new_error > 4 * old_error:
                regressions.append({"case": case["expr"], "order": case["order"], "point": point,
                                    "new": n, "base": b, "truth": truth})  # fmt: skip
            elif old_error > 1e-12 and old_error > 4 * new_error:
                improved += 1
    (out_dir / "regressions.json").write_text(json.dumps(regressions, indent=1))
    summary = (
        f"{compared:,} points compared against {base}: {improved:,} improved, {len(regressions):,} worse"
    )
    lines = [f"# {summary}", ""] + [f"- {json.dumps(item)}" for item in regressions]
    (out_dir / "REPORT.md").write_text("\n".join(lines) + "\n")
    print(summary)
    return 1 if regressions else 0


def _with_decimals(case: Case) -> Case:
    """The case with each whole number written as a decimal: 1 - tanh(x)^2 as 1.0 - tanh(x)^2. A case
    that divides is left: x/3.0 is x times the double nearest 1/3, another function than x/3."""
    if "/" in case["expr"]:
        return case
    return {**case, "expr": re.sub(r"(?<![\w.])(\d+)(?![\w.])", r"\1.0", case["expr"])}


def compare_decimals(cases_file: Path, out_dir: Path) -> int:
    pairs = [(case, _with_decimals(case)) for case in json.loads(cases_file.read_text())]
    cases = [case for case, decimal in pairs if decimal != case]
    out_dir.mkdir(parents=True, exist_ok=True)
    decimal_cases = out_dir / "decimal_cases.json"
    decimal_cases.write_text(json.dumps([decimal for case, decimal in pairs if decimal != case]))
    as_written = _tree_values(ROOT / "service", _written(cases, out_dir), out_dir / "written.json")
    decimals = _tree_values(ROOT / "service", decimal_cases, out_dir / "decimals.json")
    return _report(cases, as_written, decimals, out_dir, "the cases as written")


def _written(cases: list[Case], out_dir: Path) -> Path:
    path = out_dir / "cases.json"
    path.write_text(json.dumps(cases))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base", help="the commit to compare with")
    parser.add_argument("--decimals", action="store_true", help="compare with the cases' decimal forms")
    parser.add_argument("--cases", type=Path, help="the cases (JSON list)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compare")
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)  # one tree, in its own process
    options = parser.parse_args()
    if options.evaluate:
        options.out.write_text(json.dumps(evaluate(json.loads(options.evaluate.read_text()))))
        return 0
    if options.decimals and options.cases:
        return compare_decimals(options.cases, options.out)
    if not (options.base and options.cases):
        parser.error("--base (or --decimals) and --cases are needed")
    return compare(options.base, options.cases, options.out)


if __name__ == "__main__":
    sys.exit(main())
