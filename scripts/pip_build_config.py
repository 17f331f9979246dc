"""The host's pip configuration, lent to a container build so it reaches the same packages.

    python3 scripts/pip_build_config.py build/image     # prints `podman build` arguments, one a line

Reads the host's effective configuration with `pip config list` (its config files and `PIP_*`
variables, which it shows as `:env:`), writes it as one pip.conf into the folder given, and prints
a read-only `--volume` for that file (mounted as /etc/pip.conf) and one for every existing absolute
path its values name: find-links folders, file:// indexes, constraint files, the certificate
bundle, each at the same path. Prints nothing when the host has no pip configuration. Keys that say
where pip installs, caches or logs are left out: the Dockerfile decides those.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

# `pip config list` prints `section.key='value'`, values in Python's repr.
LINE = re.compile(r"^(?P<section>[^.=]*)\.(?P<key>[^=]+)=(?P<value>.*)$")
# What pip's environment variables are shown as; they win over every file.
ENV_SECTION = ":env:"
BUILD_DECIDES = {"cache-dir", "config-file", "log", "log-file", "prefix", "python", "require-virtualenv"}
BUILD_DECIDES |= {"root", "src", "target", "user"}
CONTAINER_CONF = "/etc/pip.conf"


def parse(listing: str) -> dict[str, dict[str, str]]:
    """Sections of pip's configuration from `pip config list`; `:env:` values folded into each."""
    sections: dict[str, dict[str, str]] = {}
    environment: dict[str, str] = {}
    for line in listing.splitlines():
        match = LINE.match(line.strip())
        if match is None or match["key"] in BUILD_DECIDES:
            continue
        value = str(ast.literal_eval(match["value"]))
        if match["section"] == ENV_SECTION:
            environment[match["key"]] = value
        else:
            sections.setdefault(match["section"], {})[match["key"]] = value
    if environment:
        sections.setdefault("global", {}).update(environment)
        for values in sections.values():  # a variable overrides the key in every command's section
            values.update({key: environment[key] for key in values.keys() & environment.keys()})
    return sections


def paths(sections: dict[str, dict[str, str]]) -> list[Path]:
    """Existing absolute paths the values name: plain paths and file:// URLs, lists split on spaces.

    A file:// index is mounted from its parent folder: a simple index's pages link to files beside
    it (`../../files/...`). A path inside another one found is covered by that one's mount.
    """
    found: set[Path] = set()
    for values in sections.values():
        for key, value in values.items():
            for word in value.split():
                candidate = Path(unquote(urlparse(word).path) if word.startswith("file:") else word)
                if key.endswith("index-url") and word.startswith("file:"):
                    candidate = candidate.parent
                if candidate.is_absolute() and candidate.exists():
                    found.add(candidate)
    return sorted(path for path in found if not any(other in path.parents for other in found))


def render(sections: dict[str, dict[str, str]]) -> str:
    """One pip.conf holding every section (a value of several lines continues indented)."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value.replace(chr(10), chr(10) + '    ')}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def volumes(conf: Path, mounted: Iterable[Path]) -> list[str]:
    """`--volume` arguments: the written pip.conf, then each path read-only at the same place."""
    arguments = [f"--volume={conf.resolve()}:{CONTAINER_CONF}:ro"]
    arguments += [f"--volume={path}:{path}:ro" for path in mounted]
    return arguments


def main(folder: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    sections = parse(listing)
    if not sections:
        return
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "pip.conf"
    conf.write_text(render(sections))
    print("\n".join(volumes(conf, paths(sections))))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
