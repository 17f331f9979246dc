"""One batch as several calls: past the server's message limit, and with the wire and compute overlapped.

`Client.evaluate(..., chunk_points=N)` (and `gradient`, `jacobian`) splits the columns into slices of
at most N points, sends up to `in_flight` of those calls at a time and joins the answers in order.
Slices of numpy arrays are views; only the slice being encoded is copied.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, cast

from ._arrays import ColumnInput, is_ndarray, is_single_number
from ._convert import Points
from ._models import Column, Evaluation, Gradient, Jacobian

T = TypeVar("T")
R = TypeVar("R")


def _length(column: ColumnInput) -> int | None:
    """The number of values of a column; None for a single number (it applies to every point)."""
    if is_single_number(column):
        return None
    return len(cast("Sequence[float]", column))


def split(points: Points, chunk_points: int) -> list[dict[str, ColumnInput]]:
    """`points` as consecutive slices of at most `chunk_points` points (columns of length 1 broadcast)."""
    if isinstance(chunk_points, bool) or not isinstance(chunk_points, int):
        raise TypeError(f"chunk_points must be a whole number, got {chunk_points!r}")
    if chunk_points < 1:
        raise ValueError(f"chunk_points must be at least 1, got {chunk_points}")
    for name, column in points.items():
        shape = getattr(column, "shape", None) if is_ndarray(column) else None
        if shape is not None and len(shape) > 1:  # sliced by rows, its slices would be misreported
            raise ValueError(f"points[{name!r}] must be one-dimensional, got shape {shape}")
    for name, column in points.items():
        if isinstance(column, str | bytes | bool):  # list() would take b"abc" for 97, 98, 99
            raise TypeError(f"points[{name!r}] must be numbers, not {type(column).__name__}")
    columns = {
        name: column
        if is_single_number(column) or is_ndarray(column)
        else list(cast("Iterable[float]", column))
        for name, column in points.items()
    }
    lengths = {name: _length(column) for name, column in columns.items()}
    sizes = {size for size in lengths.values() if size is not None and size != 1}
    if len(sizes) > 1:  # one call: the server's error names the column, as it does unchunked
        return [columns]
    total = sizes.pop() if sizes else 1
    # Columns of no values are one call of no points (no call at all would have no answer to join).
    return [
        {
            name: column if lengths[name] in (None, 1) else column[start : start + chunk_points]  # type: ignore[index]
            for name, column in columns.items()
        }
        for start in range(0, max(total, 1), chunk_points)
    ]


def _concatenate(parts: Sequence[Column], as_numpy: bool) -> Column:
    if as_numpy:
        return cast(Column, importlib.import_module("numpy").concatenate(parts))
    return list(itertools.chain.from_iterable(cast("Sequence[list[float]]", parts)))


def _column(values: Column | None, value: float | None) -> Column:
    # A slice of one point may come back as a single value.
    return values if values is not None else [cast(float, value)]


def join_evaluations(parts: Sequence[Evaluation], as_numpy: bool) -> Evaluation:
    """One `Evaluation` from the answers of consecutive slices."""
    values = [_column(part.values, part.value) for part in parts]
    return Evaluation(
        value=None,
        values=_concatenate(values, as_numpy),
        nonfinite_count=sum(part.nonfinite_count for part in parts),
    )


def join_gradients(parts: Sequence[Gradient], as_numpy: bool) -> Gradient:
    """One `Gradient` from the answers of consecutive slices."""
    first = parts[0]
    n = len(first.variables)
    # A slice of one point may come back as single values; as columns of one value they join.
    gradients = [part.gradients or tuple([v] for v in part.gradient or ()) for part in parts]
    hessians = [
        part.hessians or tuple(tuple([v] for v in row) for row in part.hessian or ()) for part in parts
    ]
    # Asked for, a Hessian over no variables is empty, (), as unchunked; not asked for, None.
    has_hessian = first.hessians is not None or first.hessian is not None
    return Gradient(
        variables=first.variables,
        nonfinite_count=sum(part.nonfinite_count for part in parts),
        values=_concatenate([_column(part.values, part.value) for part in parts], as_numpy),
        gradients=tuple(_concatenate([g[i] for g in gradients], as_numpy) for i in range(n)),
        hessians=tuple(
            tuple(_concatenate([h[i][j] for h in hessians], as_numpy) for j in range(n)) for i in range(n)
        )
        if has_hessian
        else None,
    )


def join_jacobians(parts: Sequence[Jacobian], as_numpy: bool) -> Jacobian:
    """One `Jacobian` from the answers of consecutive slices."""
    first = parts[0]
    # A slice of one point may come back as single values; as columns of one value they join.
    values = [part.value_arrays or tuple([v] for v in part.values or ()) for part in parts]
    grids = [
        part.jacobian_arrays or tuple(tuple([v] for v in row) for row in part.jacobian or ())
        for part in parts
    ]
    rows, n = len(values[0]), len(first.variables)
    return Jacobian(
        variables=first.variables,
        nonfinite_count=sum(part.nonfinite_count for part in parts),
        value_arrays=tuple(_concatenate([v[i] for v in values], as_numpy) for i in range(rows)),
        jacobian_arrays=tuple(
            tuple(_concatenate([grid[i][j] for grid in grids], as_numpy) for j in range(n))
            for i in range(rows)
        ),
    )


async def gather_in_order(call: Callable[[T], Awaitable[R]], items: Sequence[T], in_flight: int) -> list[R]:
    """`call` on each of `items`, at most `in_flight` awaited at a time; results in item order.

    The first failure cancels the calls not finished and is raised as it is.
    """
    if in_flight < 1:
        raise ValueError(f"in_flight must be at least 1, got {in_flight}")
    gate = asyncio.Semaphore(in_flight)

    async def one(item: T) -> R:
        async with gate:
            return await call(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
