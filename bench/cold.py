"""Scenario 2: cold derivatives of distinct expressions vs in-process sympy and vs math.js in Node.

- Server-side time: chainrule's `grpc_server_handling_seconds` (the whole RPC on the server, cache
  misses at every level, worker-process hops included) vs sympy `parse_expr` + `diff` + `str` on
  the same expressions in this process. Chunks alternate chainrule and sympy.
- Throughput: distinct expressions through Differentiate with a few calls in flight vs math.js
  `derivative(text, v).toString()` in Node, on the same expressions.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence

import exprgen
import harness
import sympy
from common import ROOT, Row, channel, delta, handling, median, own_cpu_seconds, stage
from sympy.parsing.sympy_parser import parse_expr

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

Expressions = Sequence[tuple[str, str]]


def sympy_seconds(expressions: Expressions) -> float:
    """What a caller of sympy does in process: parse the text, differentiate, print."""
    start = time.perf_counter()
    for text, variable in expressions:
        parsed = parse_expr(exprgen.to_sympy_syntax(text))
        str(sympy.diff(parsed, sympy.Symbol(variable)))
    return time.perf_counter() - start


def server_side(port: int, http_port: int, expressions: Expressions, chunk: int) -> dict[str, float]:
    """Server-side seconds per derivative for chainrule and sympy, chunks alternating."""
    ours: list[float] = []
    theirs: list[float] = []
    stages = {"parse": 0.0, "differentiate": 0.0, "simplify": 0.0}
    with channel(port) as opened:
        stub = pb_grpc.DifferentiationServiceStub(opened)
        for low in range(0, len(expressions), chunk):
            part = expressions[low : low + chunk]
            before = harness.scrape(http_port)
            for text, variable in part:
                stub.Differentiate(pb.DifferentiateRequest(expression=text, wrt=[pb.Wrt(variable=variable)]))
            after = harness.scrape(http_port)
            seconds, count = delta(handling(before, "Differentiate"), handling(after, "Differentiate"))
            assert count == len(part), f"{count} handled, {len(part)} sent"
            ours.append(seconds / count)
            for name in stages:
                stages[name] += delta(stage(before, name), stage(after, name))[0]
            theirs.append(sympy_seconds(part) / len(part))
    result = {"chainrule": median(ours), "sympy": median(theirs)}
    result.update({f"stage_{name}": total / len(expressions) for name, total in stages.items()})
    return result


def throughput(
    port: int, expressions: Expressions, simplification: pb.Simplification.ValueType, in_flight: int
) -> dict[str, float]:
    """Derivatives per second with `in_flight` calls outstanding; the client's CPU share too."""
    with channel(port) as opened:
        stub = pb_grpc.DifferentiationServiceStub(opened)
        requests = [
            pb.DifferentiateRequest(
                expression=text, wrt=[pb.Wrt(variable=variable)], simplification=simplification
            )
            for text, variable in expressions
        ]
        cpu, start = own_cpu_seconds(), time.perf_counter()
        pending = []
        for request in requests:
            pending.append(stub.Differentiate.future(request))
            if len(pending) >= in_flight:
                pending.pop(0).result()
        for future in pending:
            future.result()
        wall = time.perf_counter() - start
    return {"rps": len(requests) / wall, "client_cpu": (own_cpu_seconds() - cpu) / wall}


def mathjs(expressions: Expressions, simplify: bool) -> dict[str, float]:
    """math.js `derivative` in Node over the same expressions: derivatives per second."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump(list(expressions), listing)
        listing.flush()
        command = ["node", str(ROOT / "bench/mathjs_derivative.js"), listing.name]
        if not simplify:
            command.append("nosimplify")
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT / "bench")
    result = json.loads(output.stdout)
    return {
        "rps": result["count"] / result["seconds"],
        "failed": result["failed"],
        "version": result["version"],
    }


def run(ports: dict[str, int], count: int, chunk: int = 20) -> tuple[list[Row], dict[str, object]]:
    """All rows of scenario 2 against one running chainrule server."""
    timing = server_side(ports["grpc_port"], ports["http_port"], list(exprgen.expressions(count, 1)), chunk)
    per_js = max(count // 4, 10)  # math.js with simplify takes tens of ms per expression
    fast_set = list(exprgen.expressions(per_js, 2))
    raw_set = list(exprgen.expressions(count, 3))
    ours_fast = throughput(ports["grpc_port"], fast_set, pb.SIMPLIFICATION_FAST, 4)
    theirs_fast = mathjs(fast_set, simplify=True)
    ours_raw = throughput(ports["grpc_port"], raw_set, pb.SIMPLIFICATION_NONE, 4)
    theirs_raw = mathjs(raw_set, simplify=False)
    stages = ", ".join(f"{k[6:]} {v * 1e3:.2f} ms" for k, v in timing.items() if k.startswith("stage_"))
    rows = [
        Row("2 cold derivatives", f"server-side time per derivative ({count} distinct) vs sympy",
            timing["chainrule"] * 1e3, timing["sympy"] * 1e3, "ms", 1.0,
            note=f"chainrule stages: {stages}"),
        Row("2 cold derivatives", "derivatives/s vs math.js derivative (simplify on, its default)",
            ours_fast["rps"], theirs_fast["rps"], "1/s", 3.0, higher_is_better=True,
            note=f"{len(fast_set)} distinct; chainrule FAST, 4 in flight; "
            f"client CPU {ours_fast['client_cpu']:.2f}"),
        Row("2 cold derivatives", "derivatives/s vs math.js derivative (simplify off)",
            ours_raw["rps"], theirs_raw["rps"], "1/s", 3.0, higher_is_better=True,
            note=f"{len(raw_set)} distinct; chainrule NONE, 4 in flight; "
            f"client CPU {ours_raw['client_cpu']:.2f}"),
    ]  # fmt: skip
    details: dict[str, object] = {
        "server_side": timing,
        "throughput": {"fast": ours_fast, "none": ours_raw},
        "mathjs": {"simplify": theirs_fast, "nosimplify": theirs_raw},
    }
    return rows, details


if __name__ == "__main__":
    import common

    with harness.running(common.chainrule_command(), common.server_env()) as (_, found):
        found_rows, found_details = run(found, 60)
    for row in found_rows:
        print(row, f"ratio {row.ratio:.2f}")
    print(json.dumps(found_details, indent=1, default=str))
