"""Every float64 kernel numeric code calls: a NaN argument (no real value) gives NaN, whatever the others.

scipy answers beta(NaN, -4) with inf (the pole of the other argument) and numpy's heaviside reads its
second argument only at 0; the fuzzer found `acsch(beta(atanh(y), -4))` at y = 2.68 to be 0 for it.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import numpy as np
import pytest

from chainrule.engine import kernels

# Arguments next to which kernels branch: poles, zeros, edges of domains, infinities, huge values.
_OTHERS = (-4.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 20.0, 1e300, np.inf, -np.inf)
# Not called so: integer powers print only exponents outside {-1, 0, 1, 2}; `partial` takes a
# function's name and orders first, `piecewise` (condition, value) pairs.
_NOT_CALLED = {"integer_power", "odd_power", "partial", "piecewise"}


def _arities(function: Any) -> range:
    function = inspect.unwrap(function)  # a kernel whose infinities are reported (`overflow.reporting`)
    if isinstance(function, np.ufunc):
        return range(function.nin, function.nin + 1)
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return range(1, 3)
    required = sum(p.default is p.empty for p in parameters)
    return range(required, len(parameters) + 1)


CASES = [
    (name, arity)
    for name, function in sorted(kernels.NAMESPACE.items())
    if callable(function) and not inspect.isclass(function) and name not in _NOT_CALLED
    for arity in _arities(function)
    if arity >= 1
]


@pytest.mark.parametrize(("name", "arity"), CASES, ids=[f"{n}/{a}" for n, a in CASES])
def test_a_nan_argument_gives_nan(name: str, arity: int) -> None:
    function = kernels.NAMESPACE[name]
    for position in range(arity):
        for others in itertools.product(_OTHERS, repeat=arity - 1):
            args = [np.array([value]) for value in others]
            args.insert(position, np.array([np.nan]))
            with np.errstate(all="ignore"):
                result = np.asarray(function(*args), dtype=np.float64)
            assert np.isnan(result).all(), (name, [float(a[0]) for a in args], result)
