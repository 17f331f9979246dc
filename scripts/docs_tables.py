"""Generate every part of the docs that restates code, so it cannot drift: settings, limits, functions.

Each generated part sits between two markers in a Markdown file:

    <!-- generated:NAME (scripts/docs_tables.py; do not edit by hand) -->
    ...
    <!-- /generated:NAME -->

python scripts/docs_tables.py           # rewrite every generated part in README.md and docs/*.md
python scripts/docs_tables.py --check   # exit 1 if one is out of date (make lint, tests/docs)

The parts: `settings` (every `Settings` field and `chainrule serve` flag), `limits` and
`limits-summary` (every limit, from its one declaration: engine/limits.py and the server's in
config.py, which GetServerInfo reports too), `bounds` (the settings that bound resources all calls
share), `memory` (the memory bound of a process, `sizing.memory_bound`), `functions` and
`function-names` (the grammar's function table), `constants`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

from chainrule.engine import functions
from chainrule.server import sizing
from chainrule.server.cache import Caches
from chainrule.server.cli import build_parser
from chainrule.server.config import (
    PARSE_SPARES,
    PARSE_WORKERS,
    PREFIX,
    Settings,
    bound_settings,
    env_name,
    limit_settings,
)

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(
    r"(?P<start><!-- generated:(?P<name>[\w-]+) \(scripts/docs_tables\.py; do not edit by hand\) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- /generated:(?P=name) -->)",
    re.DOTALL,
)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# --- settings -------------------------------------------------------------------------------------


def _serve_flags() -> dict[str, argparse.Action]:
    """The `chainrule serve` options, by destination name."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = subparsers.choices["serve"]
    return {
        action.dest: action for action in serve._actions if action.option_strings and action.dest != "help"
    }


def _default(value: object) -> str:
    if value == "":
        return '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def settings_table() -> str:
    """One row per setting, then the flags that are not settings."""
    flags = _serve_flags()
    rows = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for item in fields(Settings):
        default = item.default_factory() if callable(item.default_factory) else item.default
        flag = flags.pop(item.name, None)
        flag_text = f"`{flag.option_strings[0]}`" if flag else ""
        doc = item.metadata.get("doc", "")
        rows.append(f"| `{env_name(item)}` | {flag_text} | {_default(default)} | {doc} |")
    for dest, action in sorted(flags.items()):
        rows.append(f"| | `{action.option_strings[0]}` | | {action.help or dest} |")
    return "\n".join(rows)


# --- limits ---------------------------------------------------------------------------------------


def limits_table() -> str:
    """Every limit, from its one declaration (engine/limits.py, or the server's in config.py)."""
    rows = ["| Limit | Default | Unit | Checked by | Setting | Meaning |", "|---|---|---|---|---|---|"]
    for name, declaration in limit_settings():
        rows.append(
            f"| `{declaration.name}` | {_default(declaration.default)} | {declaration.unit} | "
            f"{declaration.layer.value} | `{PREFIX}{name.upper()}` | {declaration.description} |"
        )
    return "\n".join(rows)


def _amount(unit: str, value: float) -> str:
    """A limit's value as people read it: 64 MiB, 5 s, 2,000,000."""
    if unit == "bytes" and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        mib = int(value) // (1024 * 1024)
        return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
    if unit == "seconds":
        return f"{value:g} s"
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def limits_summary() -> str:
    parts = [
        f"`{declaration.name}` {_amount(declaration.unit, declaration.default)}"
        for _, declaration in limit_settings()
    ]
    return (
        "- Limits (defaults; each is a `CHAINRULE_*` setting, `GetServerInfo` reports those in force, and "
        f"[docs/operations.md](docs/operations.md#limits) says what each bounds): {', '.join(parts)}."
    )


# --- shared bounds and the memory of a process ---------------------------------------------------


def bounds_table() -> str:
    """The settings that bound resources all calls share."""
    rows = ["| Setting | Default | Bounds |", "|---|---|---|"]
    defaults = Settings()
    for item in fields(Settings):
        if item.name in bound_settings():
            rows.append(
                f"| `{env_name(item)}` | {_default(getattr(defaults, item.name))} | {item.metadata['doc']} |"
            )
    return "\n".join(rows)


_SYMBOLIC_CACHES = len(list(Caches(Settings()))) - 1  # all but the compiled plans'
_MEMORY_TERMS = {
    "process": "the interpreter with sympy, numpy, scipy and grpc (measured 117 MiB, warm)",
    "caches": f"the byte bounds of the {_SYMBOLIC_CACHES + 1} caches (`CACHE_BYTES` x {_SYMBOLIC_CACHES} + "
    "`CACHE_COMPILED_BYTES`)",
    "requests": f"{sizing.REQUEST_EXPANSION} x `REQUEST_BYTES_IN_FLIGHT` (the bytes, the parsed message, "
    "JSON's objects)",
    "numeric": "`NUMERIC_MEMORY_BYTES`: the working memory of the numeric calls computing at once",
    "workers": f"(`SYMBOLIC_WORKERS` + {PARSE_WORKERS}) x `WORKER_MEMORY_BYTES` (their address-space "
    f"limit; the {PARSE_WORKERS} more is Parse's own), and the spares ({PARSE_SPARES} more for Parse) and "
    f"the forkserver idle and warm ({sizing.WARM_WORKER_BYTES // 2**20} MiB each)",
    "receiving": "`GRPC_RECEIVING_CALLS` x `MAX_REQUEST_BYTES` (gRPC messages being read) and "
    "`CALLS_IN_FLIGHT` x `GRPC_STREAM_WINDOW_BYTES` (calls waiting to read theirs, at the stream window)",
    "connections": "`MAX_CONNECTIONS` x 32 KiB (HTTP) and `MAX_GRPC_CONNECTIONS` x 20 KiB (gRPC): "
    "every connection open, each idle or sending its request head",
    "streams": f"`MAX_STREAMS` x {sizing.STREAM_BYTES // 1024} KiB: streaming gRPC calls open (health "
    "Watch, reflection), each with grpc's state and its request message (at most "
    f"{sizing.STREAM_MESSAGE_BYTES:,} bytes)",
    "pending": f"{sizing.GRPC_BACKLOG:,} calls (or 4 x `CALLS_IN_FLIGHT`) x ({sizing.METADATA_EXPANSION} x "
    f"`GRPC_METADATA_BYTES` + {sizing.PENDING_CALL_BYTES // 1024} KiB): calls grpc received and holds until "
    "the event loop picks them up (calls their clients reset, or grpc refused for their metadata, wait "
    "there too)",
}


def memory_table() -> str:
    """`sizing.memory_bound` with the default settings, term by term."""
    bound = sizing.memory_bound(Settings())
    rows = ["| Term | Default | What |", "|---|---|---|"]
    rows += [f"| {term} | {size // 2**20} MiB | {_MEMORY_TERMS[term]} |" for term, size in bound.items()]
    rows.append(f"| **one server process** | **{sum(bound.values()) // 2**20} MiB** | the sum |")
    return "\n".join(rows)


# --- functions and constants ----------------------------------------------------------------------


def _arity(spec: functions.FunctionSpec) -> str:
    if spec.min_args == spec.max_args:
        return str(spec.min_args)
    return f"{spec.min_args} to {spec.max_args}"


def functions_table() -> str:
    rows = ["| function | also spelled | arguments | notes |", "| --- | --- | --- | --- |"]
    for spec in functions.SPECS:
        aliases = ", ".join(f"`{alias}`" for alias in spec.aliases)
        rows.append(f"| `{spec.name}` | {aliases} | {_arity(spec)} | {spec.summary} |")
    return "\n".join(rows)


def function_names() -> str:
    names = " ".join("/".join(spec.names) for spec in functions.SPECS)
    return (
        f"- Functions (case-sensitive; aliases after a slash; `docs/api.md` has arities and notes): {names}."
    )


def constants_line() -> str:
    names = ", ".join(f"`{name}`" for name in functions.CONSTANTS)
    return f"- Constants: {names}."


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "limits": limits_table,
    "limits-summary": limits_summary,
    "bounds": bounds_table,
    "memory": memory_table,
    "functions": functions_table,
    "function-names": function_names,
    "constants": constants_line,
}


# --- rendering ------------------------------------------------------------------------------------


def parts(document: str) -> Iterator[str]:
    """The names of the generated parts `document` has."""
    for match in MARKER.finditer(document):
        yield match.group("name")


def render(document: str) -> str:
    """`document` with every generated part brought up to date."""
    cache: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise KeyError(f"unknown generated part {name!r}; known: {', '.join(GENERATORS)}")
        if name not in cache:
            cache[name] = GENERATORS[name]()
        return f"{match.group('start')}{cache[name]}\n{match.group('end')}"

    return MARKER.sub(replace, document)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a document is out of date")
    options = parser.parse_args(argv)
    stale = []
    for path in documents():
        current = path.read_text()
        wanted = render(current)
        if wanted == current:
            continue
        if options.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.write_text(wanted)
    if stale:
        names = ", ".join(map(str, stale))
        print(f"out of date: {names}; run python scripts/docs_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
