"""Writes bench/RESULTS.md (the table, the command, the machine) and bench/results.png (the plot)."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from common import Row


def machine() -> dict[str, str]:
    """nproc, CPU model, OS, Python and library versions: what the figures were measured on."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    found = {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for name in ("numpy", "sympy", "grpc", "jax"):
        try:
            module = __import__(name)
            found[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            found[name] = "not installed"
    found["node"] = _output(["node", "--version"])
    found["h2load"] = _output(["h2load", "--version"]).split("\n")[0]
    return found


def _output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "not installed"


def _figure(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _met(row: Row) -> str:
    return {None: "—", True: "yes", False: "**no**"}[row.met]


def markdown(
    rows: Sequence[Row],
    command: str,
    seconds: float,
    notes: Sequence[str],
    gaps: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> str:
    """RESULTS.md: the table of rows, what limits the missed targets, notes; then `sections` (lines)."""
    info = machine()
    lines = [
        "# chainrule benchmarks: side by side with what users would pick instead",
        "",
        "Every figure below comes from one run of the command below; chainrule and each baseline ran in",
        "the same run, alternating rounds, medians compared. Ratios are chainrule / baseline: for times",
        "lower is better (target ≤), for throughput higher is better (target ≥). See bench/README.md",
        "for how each scenario is measured and bench/PROFILE.md for the profile behind the changes.",
        "",
        f"- command: `{command}` ({seconds:.0f} s)",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['nproc']} x {info['cpu']} (shared with other work), {info['os']}",
        f"- software: Python {info['python']}, numpy {info['numpy']}, sympy {info['sympy']}, "
        f"grpcio {info['grpc']}, jax {info['jax']}, node {info['node']}, {info['h2load']}",
        "",
        "| scenario | measure | chainrule | baseline | unit | ratio | target | met? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.scenario} | {r.measure} | {_figure(r.chainrule)} | {_figure(r.baseline)} | {r.unit} "
        f"| {r.ratio:.2f} | {r.target_text} | {_met(r)} |"
        for r in rows
    ]
    if gaps:
        lines += ["", "## Targets missed, and what limits them", "", *[f"- {gap}" for gap in gaps]]
    lines += ["", "## Notes per row", ""]
    lines += [f"- **{r.scenario}, {r.measure}**: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "## Reading the figures", "", *[f"- {note}" for note in notes]]
    if sections:
        lines += ["", *sections]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path) -> bool:
    """Each ratio as a bar against its target; False when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: PLC0415 (a bench-only extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib not installed: no plot (pip install '.[bench]')", file=sys.stderr)
        return False
    shown = [r for r in rows if not math.isnan(r.ratio) and r.ratio > 0]
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.5))
    labels = [f"{r.scenario[:2]}{r.measure[:60]}" for r in shown]
    colours = ["grey" if r.met is None else ("tab:green" if r.met else "tab:red") for r in shown]
    positions = range(len(shown))
    axes.barh(positions, [r.ratio for r in shown], color=colours)
    for y, row in zip(positions, shown, strict=True):
        if row.target is not None:
            axes.plot([row.target, row.target], [y - 0.4, y + 0.4], color="black", linewidth=2)
    axes.set_yticks(list(positions), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel(
        "chainrule / baseline (log scale); black tick: target; green met, red not, grey no target"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
