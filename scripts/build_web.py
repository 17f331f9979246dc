"""Copy the browser libraries the pages use from web/node_modules into the server package (`make web`).

python scripts/build_web.py           # copy them (after `npm ci --ignore-scripts` in web/)
python scripts/build_web.py --check   # exit 1 if the committed copy differs from a fresh one (make lint)

The versions are pinned in web/package.json and web/package-lock.json; only the files listed below
are copied (minified code, styles, woff2 fonts, licences), so the server serves every script, style
and font itself and a page works without a network.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
TARGET = ROOT / "service" / "chainrule" / "server" / "transport" / "static" / "vendor"

# Per package: the files to copy (globs in the package folder); a leading `dist/` is dropped.
FILES: dict[str, tuple[str, ...]] = {
    "katex": ("dist/katex.min.js", "dist/katex.min.css", "dist/fonts/*.woff2", "LICENSE"),
    "uplot": ("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"),
    "swagger-ui-dist": (
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js.LICENSE.txt",
        "swagger-ui.css",
        "LICENSE",
        "NOTICE",
    ),
}


def _pinned() -> dict[str, str]:
    manifest = json.loads((WEB / "package.json").read_text(encoding="utf-8"))
    return dict(manifest["dependencies"])


def build(target: Path) -> None:
    """Copy the listed files of each pinned package into `target`, and write versions.json."""
    pinned = _pinned()
    if set(pinned) != set(FILES):
        sys.exit(f"web/package.json pins {sorted(pinned)} but this script copies {sorted(FILES)}")
    for package, patterns in FILES.items():
        source = WEB / "node_modules" / package
        installed = json.loads((source / "package.json").read_text(encoding="utf-8"))["version"]
        if installed != pinned[package]:
            sys.exit(f"{package} {installed} is installed, {pinned[package]} pinned: run `make web`")
        for pattern in patterns:
            matches = sorted(source.glob(pattern))
            if not matches:
                sys.exit(f"{package}: nothing matches {pattern}")
            for path in matches:
                relative = path.relative_to(source)
                if relative.parts[0] == "dist":
                    relative = Path(*relative.parts[1:])
                destination = target / package / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
    (target / "versions.json").write_text(json.dumps(pinned, indent=2, sort_keys=True) + "\n")


def _tree(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed copy is stale")
    options = parser.parse_args()
    if not options.check:
        shutil.rmtree(TARGET, ignore_errors=True)
        build(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        build(fresh)
        names = _tree(fresh) | _tree(TARGET)
        stale = sorted(
            str(name)
            for name in names
            if not (fresh / name).is_file()
            or not (TARGET / name).is_file()
            or not filecmp.cmp(fresh / name, TARGET / name, shallow=False)
        )
    if stale:
        print(f"vendored web assets are stale, run `make web`: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
