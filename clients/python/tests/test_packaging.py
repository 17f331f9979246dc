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


def test_the_distribution_describes_itself() -> None:
    from importlib import metadata, resources  # noqa: PLC0415

    meta = metadata.metadata("chainrule-client")
    assert meta["Summary"] and meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    assert "chainrule.v1" in (meta.get_payload() or "")  # type: ignore[attr-defined]  # the README, with compatibility
    assert resources.files("chainrule.client").joinpath("py.typed").is_file()
