"""What writing a reply's values costs the server, per value and encoding (`sizing.Encoding.writing`).

    PYTHONPATH=service python bench/writing.py

Replies of 10^6 doubles of 17 significant digits (what computed values have), best of five: JSON as
the REST transport writes it (`protojson.message_to_json`), listed and as f64le's base64, and
protobuf's serialised message, listed and f64le.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from chainrule.server.transport.protojson import message_to_json
from chainrule.v1 import chainrule_pb2 as pb

POINTS = 1_000_000


def per_value(write: Callable[[], object]) -> float:
    """Nanoseconds a value, best of five."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        write()
        best = min(best, time.perf_counter() - started)
    return best / POINTS * 1e9


def main() -> None:
    values = np.random.default_rng(1).uniform(-1, 1, POINTS) * 1e3
    listed = pb.EvaluateResponse(values=pb.Array(values=values))
    raw = pb.EvaluateResponse(values=pb.Array(f64le=values.tobytes()))

    def protobuf_listed() -> bytes:
        reply = pb.EvaluateResponse()
        reply.values.values.extend(values.tolist())
        return reply.SerializeToString()

    print(f"JSON listed      {per_value(lambda: message_to_json(listed)):7.1f} ns a value")
    print(f"JSON f64le       {per_value(lambda: message_to_json(raw)):7.1f} ns a value")
    print(f"protobuf listed  {per_value(protobuf_listed):7.1f} ns a value")
    print(f"protobuf f64le   {per_value(raw.SerializeToString):7.1f} ns a value")


if __name__ == "__main__":
    main()
