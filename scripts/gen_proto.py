"""Generate the Python code for protos/ into clients/python, with a copy of the .proto (one command).

Run as `python scripts/gen_proto.py [--check]`. With --check, generate into a temporary folder
and fail when the committed files differ, so stale generated code cannot land.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import google.api  # the installed googleapis-common-protos ships its .proto files
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUTPUT_ROOT = ROOT / "clients" / "python"
GENERATED_DIR = Path("chainrule") / "v1"


def _include_dirs() -> list[Path]:
    """protoc's include path: ours, the well-known types, and googleapis-common-protos' protos."""
    googleapis_root = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    return [PROTO_ROOT, well_known, googleapis_root]


def generate(output_root: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / GENERATED_DIR).glob("*.proto"))
    plugins = Path(sys.executable).parent  # mypy-protobuf's plugins live beside this interpreter
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--plugin=protoc-gen-{name}={plugins / f'protoc-gen-{name}'}" for name in ("mypy", "mypy_grpc")]
    args += [
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        f"--mypy_out={output_root}",
        f"--mypy_grpc_out={output_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed: {' '.join(args)}")


def _generated_files(root: Path) -> set[str]:
    return {p.name for p in (root / GENERATED_DIR).iterdir() if p.suffix in {".py", ".pyi", ".proto"}}


def ship_sources(output_root: Path) -> None:
    """A copy of each .proto beside its generated code: the package carries its contract (comments
    included, for the OpenAPI document's prose in an installed server, and for grpcurl users)."""
    for proto in (PROTO_ROOT / GENERATED_DIR).glob("*.proto"):
        shutil.copyfile(proto, output_root / GENERATED_DIR / proto.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    options = parser.parse_args()
    if not options.check:
        target = OUTPUT_ROOT / GENERATED_DIR
        for old in [*target.glob("*_pb2*.py*"), *target.glob("*.proto")]:
            old.unlink()
        generate(OUTPUT_ROOT)
        ship_sources(OUTPUT_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        ship_sources(Path(tmp))
        fresh, committed = Path(tmp), OUTPUT_ROOT
        names = _generated_files(fresh)
        stale = sorted(
            name
            for name in names | _generated_files(committed)
            if not (committed / GENERATED_DIR / name).exists()
            or not (fresh / GENERATED_DIR / name).exists()
            or not filecmp.cmp(fresh / GENERATED_DIR / name, committed / GENERATED_DIR / name, shallow=False)
        )
        if stale:
            print(f"generated code is stale, run `make proto`: {', '.join(stale)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
