"""Exact numbers of any size in printed form, past Python's guard on int-to-str conversion.

Python refuses `str(n)` for integers of more than 4,300 digits (the guard against quadratic
conversions of untrusted text, CVE-2020-10735), but the parser admits exact numbers of up to
`power_bits` bits (`3^9100` has 4,342 digits) and derivatives multiply them further. The guard
protects text -> int, which we keep bounded (literals of at most `integer_digits` digits); int ->
text of a number we built is safe, so every printer of sympy numbers writes integers with
`decimal`, and code that needs a double takes `nearest_double`. The guard itself stays in force
for the whole process (JSON bodies still need it).
"""

from __future__ import annotations

import math
from typing import Any, Final

import sympy

__all__ = ["DoubleLiterals", "decimal", "fits_double_exactly", "nearest_double"]

# Python's own conversion below this many bits (about 3,000 digits, under the 4,300-digit guard).
_DIRECT_BITS: Final = 10_000
_LOG10_2: Final = math.log10(2)


def decimal(value: int) -> str:
    """The decimal digits of `value`, with a leading `-` if negative, however long it is."""
    if value < 0:
        return "-" + decimal(-value)
    if value.bit_length() <= _DIRECT_BITS:
        return str(value)
    # Divide and conquer: split at a power of ten near the middle, pad the low half with zeros.
    half = int(value.bit_length() * _LOG10_2) // 2
    high, low = divmod(value, 10**half)
    return decimal(high) + decimal(low).rjust(half, "0")


def nearest_double(numerator: int, denominator: int = 1) -> float:
    """numerator/denominator correctly rounded to a double: ±inf beyond the range, ±0.0 below it."""
    try:
        return numerator / denominator  # int true division rounds correctly (CPython, PEP 238)
    except OverflowError:
        return math.inf if (numerator > 0) == (denominator > 0) else -math.inf


def fits_double_exactly(value: int) -> bool:
    """Whether a double holds `value` exactly, so that writing its digits in code loses nothing."""
    return abs(value) <= 2**53


class DoubleLiterals:
    """A code-printer mixin: exact numbers no double holds are written as their nearest double.

    What generated code (and a compiled numpy function) computes with is a double anyway; digits
    it cannot hold would be an invalid C constant, an OverflowError in numpy, and a 4,300-digit
    guard failure in the printer.
    """

    def _print_Integer(self, expr: Any) -> str:  # noqa: N802
        if fits_double_exactly(int(expr.p)):
            return str(super()._print_Integer(expr))  # type: ignore[misc]
        return self._print_double(nearest_double(int(expr.p)))

    def _print_Rational(self, expr: Any) -> str:  # noqa: N802
        p, q = int(expr.p), int(expr.q)
        if fits_double_exactly(p) and fits_double_exactly(q):
            return str(super()._print_Rational(expr))  # type: ignore[misc]
        return self._print_double(nearest_double(p, q))

    def _print_double(self, value: float) -> str:
        if math.isinf(value):
            infinity = sympy.oo if value > 0 else -sympy.oo
            return str(self._print(infinity))  # type: ignore[attr-defined]
        return repr(value)
