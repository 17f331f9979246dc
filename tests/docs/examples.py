"""The examples of a Markdown document: its fenced blocks, the commands in them and the outputs shown.

docs/examples.md describes the conventions this module reads; in short:

- ```python blocks run in order, one namespace per document; `# -> text` at the end of a line is
  one line of what the block prints, in order.
- ```sh blocks: each command (continued with a trailing backslash) runs, or is checked, by its
  program: `curl` and `chainrule` run, `grpcurl` has its request checked against the proto. The
  `# -> text` lines after a command are what it prints; so are the lines after a `$ command`.
- ```ts blocks of a document are type-checked together against the Node client.
- A block whose info string has the word `output` is the output of the block before it (JSON is
  compared as JSON); one with the word `skip` is not run (say why in the text around it).

Expected and actual outputs are compared after `normalise`: the live server's ports become the
defaults, timings, pids and request ids become placeholders, and `...` in an expected line matches
any text (a line of `...` alone, any lines).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<info>.*)$")
ARROW = re.compile(r"\s*# -> ?(?P<text>.*)$")
DEFAULT_GRPC = 50051
DEFAULT_HTTP = 8080


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of its first content line), language, flags."""

    document: Path
    line: int
    language: str
    flags: frozenset[str]
    text: str
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{place(self.document)}:{self.line}"


def place(document: Path) -> str:
    """The document's path as messages name it: relative to the working directory when inside it."""
    try:
        return str(document.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(document)


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of `document`, each with the `output` block that follows it, if any."""
    found: list[Block] = []
    lines = document.read_text().splitlines()
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        index += 1
        if opened is None:
            continue
        indent, fence = len(opened["indent"]), opened["fence"]
        words = opened["info"].split()
        body: list[str] = []
        start = index + 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            line = lines[index]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            index += 1
        index += 1  # the closing fence
        block = Block(
            document,
            start,
            words[0] if words else "",
            frozenset(words[1:]),
            "\n".join(body) + "\n",
        )
        previous = found[-1] if found else None
        if "output" in block.flags and previous is not None:
            found[-1] = Block(
                previous.document, previous.line, previous.language, previous.flags, previous.text, block
            )
            continue
        found.append(block)
    return found


# --- python ---------------------------------------------------------------------------------------


def expected_prints(code: str) -> list[str] | None:
    """The lines the block says it prints (`# -> text`), or None when it shows none."""
    shown = [match["text"] for line in code.splitlines() if (match := ARROW.search(line))]
    return shown or None


# --- shell ----------------------------------------------------------------------------------------


@dataclass
class Command:
    """One command of a shell block, and the output shown after it (None: not shown)."""

    text: str
    line: int
    expected: list[str] | None = None
    words: list[str] = field(default_factory=list)

    @property
    def program(self) -> str:
        return Path(self.words[0]).name if self.words else ""


def commands(block: Block) -> Iterator[Command]:
    """The commands of a shell block with their shown outputs (`# -> ` lines, or a console prompt's)."""
    current: Command | None = None
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        number = block.line + index
        index += 1
        arrow = ARROW.match(line)
        if arrow is not None and line.lstrip().startswith("#"):
            if current is None:
                raise ValueError(f"{place(block.document)}:{number}: output shown before any command")
            current.expected = [*(current.expected or []), arrow["text"]]
            continue
        stripped = line.strip()
        prompt = stripped.startswith("$ ")
        if current is not None and block.language == "console" and not prompt:
            current.expected = [*(current.expected or []), line]  # blank lines included
            continue
        if not stripped or stripped.startswith("#"):
            continue
        text = stripped.removeprefix("$ ")
        while text.endswith("\\") and index < len(lines):
            text = text[:-1] + " " + lines[index].strip()
            index += 1
        if current is not None:
            yield current
        current = Command(text, number, None, shlex.split(_without_comment(text)))
    if current is not None:
        yield current


def _without_comment(text: str) -> str:
    """The command without a trailing `# comment` (outside quotes)."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return text
    return shlex.join(words)


# --- comparing ------------------------------------------------------------------------------------

_VOLATILE = [
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s)\b"), "<duration>"),
    (re.compile(r"\bpid[= ]\d+\b"), "pid=<pid>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]+\b"), "<request-id>"),
]


def normalise(text: str, ports: dict[int, int]) -> list[str]:
    """Lines as compared: live ports as the defaults, volatile figures as placeholders, no trailing space."""
    for live, default in ports.items():
        text = re.sub(rf"(?<=[:/]){live}\b", str(default), text)
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """True when `actual` fits `expected`, where `...` matches any text and a `...` line any lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[skip:]) for skip in range(len(actual) + 1))
    return bool(actual) and _line_matches(head, actual[0]) and matches(rest, actual[1:])


def _line_matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in re.split(r"\.\.\.|…", expected))
    return re.fullmatch(pattern, actual) is not None


def rewrite_addresses(text: str, grpc_port: int, http_port: int) -> str:
    """The default addresses of `make run` in an example, pointed at the live server's ports."""
    text = re.sub(rf"(127\.0\.0\.1|localhost):{DEFAULT_GRPC}\b", f"127.0.0.1:{grpc_port}", text)
    return re.sub(rf"(127\.0\.0\.1|localhost):{DEFAULT_HTTP}\b", f"127.0.0.1:{http_port}", text)
