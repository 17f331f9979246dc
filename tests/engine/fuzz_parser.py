"""Atheris fuzz target for the parser: any bytes give an expression or one of our InvalidArgument errors.

Run it by hand: pip install -e ".[fuzz]" (atheris) && python tests/engine/fuzz_parser.py -runs=100000
Without atheris it says so and exits 0. pytest does not collect it (no `test_` prefix); test_parsing runs
`check` on a few inputs so the target itself stays working.
"""

from __future__ import annotations

import sys

import sympy

from chainrule.engine import errors
from chainrule.engine.parsing import parse


def check(data: bytes) -> None:
    """One fuzz input: decode leniently, parse, tolerate only an expression or our own errors."""
    text = data.decode("utf-8", errors="replace")
    try:
        result = parse(text)
    except errors.InvalidArgument:
        return
    assert isinstance(result, sympy.Basic), type(result)


def main() -> None:
    try:
        import atheris  # noqa: PLC0415
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        raise SystemExit(0) from None
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
