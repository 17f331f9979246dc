"""The distribution's promises: importing the client pulls in neither numpy nor the server."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_numpy_sympy_or_the_server() -> None:
    probe = (
        "import sys, chainrule.client; "
        "bad = [m for m in ('numpy', 'sympy', 'chainrule.server') if m in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr


def test_lists_in_lists_out_never_import_numpy() -> None:
    from chainrule.client._arrays import decode_column, encode_column  # noqa: PLC0415

    column = encode_column([1.0, 2.5], "x")
    assert list(column.values) == [1.0, 2.5]
    raw = column.__class__(f64le=b"\x00\x00\x00\x00\x00\x00\xf0\x3f")
    assert decode_column(raw, as_numpy=False) == [1.0]
