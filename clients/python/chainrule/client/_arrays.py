"""Columns of float64 values on the wire: numpy arrays as raw `f64le` bytes, lists as `values`.

numpy is optional. It is never imported here unless the caller already handed us a numpy array
(then it is in `sys.modules`) or a reply must be decoded into one.
"""

from __future__ import annotations

import array
import decimal
import importlib
import numbers
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias, cast

from chainrule.v1 import chainrule_pb2 as pb

from ._models import Column

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# What a caller may give for one variable: a number (broadcast), a sequence of numbers or an array.
ColumnInput: TypeAlias = "float | numbers.Real | decimal.Decimal | Iterable[float] | npt.NDArray[np.generic]"


def loaded_numpy() -> ModuleType | None:
    """numpy if the caller's program has already imported it, else None (never imports it)."""
    return sys.modules.get("numpy")


def is_ndarray(value: object) -> bool:
    """True for a numpy array, without importing numpy."""
    numpy = loaded_numpy()
    return numpy is not None and isinstance(value, numpy.ndarray)


def is_single_number(value: object) -> bool:
    """A number that applies to every point: a Python or numpy real scalar (np.int64, np.float32 as
    well as float), or an array of no dimensions."""
    if isinstance(value, numbers.Real | decimal.Decimal):  # Fraction and Decimal too
        return not isinstance(value, bool)
    numpy = loaded_numpy()
    if numpy is None:
        return False
    if isinstance(value, numpy.ndarray):
        return bool(value.ndim == 0)
    return bool(isinstance(value, numpy.integer | numpy.floating))


def encode_column(column: ColumnInput, name: str) -> pb.Array:
    """One variable's values as an `Array`: ndarray -> raw little-endian float64, else a list."""
    if is_ndarray(column):
        data = cast("npt.NDArray[np.generic]", column)
        if data.ndim > 1:
            raise ValueError(f"points[{name!r}] must be one-dimensional, got shape {data.shape}")
        # Real numbers only: complex would lose its imaginary part, strings be parsed, booleans and
        # times be taken for 0, 1 and counts of their units, as a bool or a datetime alone is not.
        if data.dtype.kind not in "iuf":
            raise TypeError(f"points[{name!r}] must be real numbers, not an array of {data.dtype}")
        if numpy_masked(data):  # its masked entries would go as their fill value (1e20)
            raise TypeError(f"points[{name!r}] has masked values: fill them, or drop those points")
        return pb.Array(f64le=data.astype("<f8").reshape(-1).tobytes())
    where = f"points[{name!r}]"
    if is_single_number(column):
        return pb.Array(values=[number(column, where)])
    if isinstance(column, str | bytes | bool | complex):
        raise TypeError(f"{where} must be numbers, not {type(column).__name__}")
    return pb.Array(values=[number(v, where) for v in cast("Iterable[float]", column)])


# numpy's kinds of scalars that are not real numbers: complex, bool, bytes, str, object, times.
_NOT_REAL = frozenset("cbSUOmM")


def numpy_masked(data: object) -> bool:
    """Whether `data` is a numpy masked array with entries masked."""
    numpy = loaded_numpy()
    return numpy is not None and bool(numpy.ma.is_masked(data))


def number(value: object, where: str) -> float:
    """A value as a float: a real number (numpy's too), never a string float() would parse; one past
    the doubles is a ValueError saying so (float() raised a bare OverflowError)."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)  # numpy's complex64 is no `complex`
    if (
        isinstance(value, str | bytes | bool | complex)
        or kind in _NOT_REAL
        or not hasattr(value, "__float__")
    ):
        raise TypeError(f"{where} must hold numbers, not {type(value).__name__} {value!r}")
    try:
        return float(cast(float, value))
    except OverflowError:  # (an integer of 4,300 digits or more cannot even be printed)
        raise ValueError(f"{where}: a number past the largest double (about 1.8e308)") from None


def decode_column(column: pb.Array, *, as_numpy: bool) -> Column:
    """An `Array` as a numpy array (when asked for) or as a list of floats."""
    if as_numpy:
        numpy = importlib.import_module("numpy")
        if column.f64le:
            return cast(Column, numpy.frombuffer(column.f64le, dtype="<f8"))
        return cast(Column, numpy.asarray(column.values, dtype="<f8"))
    if column.f64le:
        return _unpack_f64le(column.f64le)
    return list(column.values)


def _unpack_f64le(raw: bytes) -> list[float]:
    values = array.array("d")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()  # the wire format is little-endian whatever this machine is
    return values.tolist()
