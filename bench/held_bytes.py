"""Bytes per value a reply holds while it is built and encoded, by encoding: the figures of sizing.py.

Each measurement runs in a fresh process: the columns of a GradientAtPoint reply (10^6 points x 4
columns) are made first, the peak resident size is reset, then the reply is filled and encoded as
the server does (gRPC: a `batches.Reply`, its f64le columns appended to the message's bytes; the
message filled, then `SerializeToString` or `message_to_json`). The peak's growth per value is what
`sizing.Encoding.held_*` must cover; the encoded size per value is what `wire_*` must cover.

    .venv/bin/python bench/held_bytes.py
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import numpy as np

from chainrule.server.batches import Reply, fill
from chainrule.server.transport.protojson import message_to_json
from chainrule.v1 import chainrule_pb2 as pb

POINTS, COLUMNS = 1_000_000, 4


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(encoding: str, raw: bool) -> tuple[float, float]:
    """(encoded bytes per value, peak bytes held per value), in this process."""
    columns = [np.random.default_rng(seed).standard_normal(POINTS) for seed in range(COLUMNS)]
    gc.collect()
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    encoded: bytes | str
    if encoding == "gRPC":
        built = Reply(pb.GradientAtPointResponse())
        built.add("values", columns[0], raw)
        for column in columns[1:]:
            built.add("gradients", column, raw)
        encoded = built.SerializeToString()
    else:
        reply = pb.GradientAtPointResponse()
        fill(reply.values, columns[0], raw)
        for column in columns[1:]:
            fill(reply.gradients.add(), column, raw)
        encoded = message_to_json(reply) if encoding == "JSON" else reply.SerializeToString()
    values = POINTS * COLUMNS
    return len(encoded) / values, (_status("VmHWM") - before) / values


def main() -> None:
    if len(sys.argv) == 3:
        wire, held = measure(sys.argv[1], sys.argv[2] == "f64le")
        print(f"{wire:.2f} {held:.2f}")
        return
    print("| encoding | form | sent per value | held per value |\n|---|---|---|---|")
    for encoding in ("gRPC", "protobuf", "JSON"):
        for form in ("f64le", "values"):
            result = subprocess.run(
                [sys.executable, __file__, encoding, form], capture_output=True, text=True, check=True
            )
            sent, kept = result.stdout.split()
            print(f"| {encoding} | {form} | {sent} | {kept} |")


if __name__ == "__main__":
    main()
