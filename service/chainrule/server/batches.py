"""Points in and out: proto `Array` columns <-> float64 numpy arrays, with field-named errors.

The fast path never builds Python floats: `f64le` columns are read as zero-copy views of the
request's bytes and written back with one copy per column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chainrule.engine.errors import InvalidArgument, LimitExceeded
from chainrule.v1 import chainrule_pb2 as pb

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Batch:
    """Decoded input points: one float64 column per variable, all of length 1 or `size`."""

    columns: Mapping[str, FloatArray]
    size: int
    single: bool
    raw_output: bool
    field: str

    def missing(self, variables: Sequence[str]) -> list[str]:
        return [name for name in variables if name not in self.columns]


def decode_batch(point: Mapping[str, float], points: Mapping[str, pb.Array], max_points: int) -> Batch:
    """The request's `point` or `points`, checked: one of the two, equal lengths, within the limit."""
    if point and points:
        raise InvalidArgument("set either 'point' or 'points', not both", field="points")
    if not points:
        columns = {name: np.array([value], dtype=np.float64) for name, value in point.items()}
        return Batch(columns, 1, single=True, raw_output=False, field="point")
    decoded = {name: _decode_array(array, f"points.{name}") for name, array in points.items()}
    size = _common_length(decoded)
    if size > max_points:
        raise LimitExceeded("points", size, max_points, field="points", what="too many points", unit="points")
    raw = any(len(array.f64le) > 0 for array in points.values())
    return Batch(decoded, size, single=False, raw_output=raw, field="points")


def fill(target: pb.Array, values: FloatArray, raw: bool) -> None:
    """Write a column straight into the response's Array.

    Building an Array and then copying it into the response (CopyFrom, extend) costs one more copy
    of every column: 40 MB for a gradient at 10^6 points, a third of the response's server time.
    """
    if raw:
        target.f64le = np.ascontiguousarray(values, dtype="<f8").tobytes()
    else:
        target.values.extend(values.tolist())


def _decode_array(array: pb.Array, field: str) -> FloatArray:
    if array.values and array.f64le:
        raise InvalidArgument("set either 'values' or 'f64le', not both", field=field)
    if array.f64le:
        if len(array.f64le) % 8:
            raise InvalidArgument(
                f"f64le has {len(array.f64le)} bytes, not a multiple of 8", field=f"{field}.f64le"
            )
        return np.frombuffer(array.f64le, dtype="<f8")
    return np.asarray(array.values, dtype=np.float64)


def _common_length(columns: Mapping[str, FloatArray]) -> int:
    lengths = {len(column) for column in columns.values()} - {1}
    if len(lengths) > 1:
        expected = max(lengths)
        name = next(n for n, c in sorted(columns.items()) if len(c) not in (1, expected))
        raise InvalidArgument(
            f"column '{name}' has {len(columns[name])} values, others have {expected}",
            field=f"points.{name}",
        )
    return lengths.pop() if lengths else 1
