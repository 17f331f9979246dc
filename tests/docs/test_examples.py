"""Every example in README.md, docs/*.md and the clients' READMEs runs against a live server, and every
output they show is what it prints: a doc that drifts fails the build (conventions: docs/examples.md).

The server is `chainrule serve` on free ports; examples show `make run`'s addresses (127.0.0.1:50051,
localhost:8080), which are rewritten to the live ones before running and back in the outputs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import json_format

from chainrule.server.config import Settings, env_name
from chainrule.v1 import chainrule_pb2 as pb
from tests.docs.examples import (
    DEFAULT_GRPC,
    DEFAULT_HTTP,
    Block,
    Command,
    blocks,
    commands,
    expected_prints,
    matches,
    normalise,
    rewrite_addresses,
)

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "clients" / "python" / "README.md",
    ROOT / "clients" / "node" / "README.md",
]
CHAINRULE = Path(sys.executable).parent / "chainrule"
NODE = ROOT / "clients" / "node"
SHELL = {"sh", "bash", "shell", "console"}
# Environment variables the docs name that are not settings: the Node tests' server.
NOT_SETTINGS = {"CHAINRULE_SERVER"}


class Live:
    """The `chainrule serve` the examples talk to."""

    def __init__(self, grpc_port: int, http_port: int) -> None:
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.ports = {grpc_port: DEFAULT_GRPC, http_port: DEFAULT_HTTP}

    def rewrite(self, text: str) -> str:
        return rewrite_addresses(text, self.grpc_port, self.http_port)

    def normalise(self, text: str) -> list[str]:
        return normalise(text, self.ports)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    ready = tmp_path_factory.mktemp("docs") / "ready.json"
    argv = ["serve", "--workers", "1", "--grpc-port", "0", "--http-port", "0", "--ready-file", str(ready)]
    environ = {**os.environ, "CHAINRULE_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([str(CHAINRULE), *argv], env=environ)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "chainrule serve did not become ready"
        ports = json.loads(ready.read_text())
        yield Live(ports["grpc_port"], ports["http_port"])
    finally:
        process.terminate()
        process.wait(timeout=30)


def _of(language: set[str]) -> list[Path]:
    return [d for d in DOCUMENTS if any(b.language in language for b in blocks(d))]


def _id(document: Path) -> str:
    return str(document.relative_to(ROOT))


def _mismatch(where: str, expected: list[str], actual: list[str]) -> str:
    shown = "\n".join(f"    {line}" for line in expected)
    printed = "\n".join(f"    {line}" for line in actual)
    return f"{where}: the doc shows\n{shown}\nbut it prints\n{printed}"


# --- python ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", _of({"python"}), ids=_id)
def test_python_examples(document: Path, live: Live) -> None:
    namespace: dict[str, object] = {"__name__": f"docs:{document.name}"}
    for block in blocks(document):
        if block.language != "python" or "skip" in block.flags:
            continue
        code = live.rewrite(block.text)
        printed = io.StringIO()
        # Line numbers of the document in tracebacks: the block's code starts at its own line.
        compiled = compile("\n" * (block.line - 1) + code, str(document), "exec")
        with contextlib.redirect_stdout(printed):
            exec(compiled, namespace)
        arrows = expected_prints(block.text)
        expected = block.output.text if block.output is not None else arrows and "\n".join(arrows)
        if expected:
            shown, actual = live.normalise(expected), live.normalise(printed.getvalue())
            assert matches(shown, actual), _mismatch(block.where, shown, actual)


def test_python_examples_name_their_target() -> None:
    """`Client()` would talk to 127.0.0.1:50051 behind the runner's back: examples write the address."""
    bare = re.compile(r"\b(?:Async)?Client\((?!\s*[\"'])")
    for document in DOCUMENTS:
        for block in blocks(document):
            if block.language == "python":
                for found in bare.finditer(block.text):
                    line = block.line + block.text.count("\n", 0, found.start())
                    pytest.fail(f'{_id(document)}:{line}: write the target, e.g. Client("127.0.0.1:50051")')


# --- shell: curl, chainrule, grpcurl --------------------------------------------------------------


@pytest.mark.parametrize("document", _of(SHELL), ids=_id)
def test_shell_examples(document: Path, live: Live) -> None:
    problems: list[str] = []  # every drifted example of the document at once, not only the first
    for block in blocks(document):
        if block.language not in SHELL or "skip" in block.flags:
            continue
        listed = list(commands(block))
        for index, command in enumerate(listed):
            output = block.output if index == len(listed) - 1 else None
            where = f"{_id(document)}:{command.line}"
            try:
                if command.program == "grpcurl":
                    _check_grpcurl(where, command, output, live)
                elif command.program in {"curl", "chainrule"}:
                    _run(where, command, output, live)
                else:
                    problems.append(
                        f"{where}: `{command.program}` is neither run nor checked: flag the block skip"
                    )
            except AssertionError as error:
                problems.append(str(error).split("\nassert ")[0])
    assert not problems, "\n\n".join(problems)


def _run(where: str, command: Command, output: Block | None, live: Live) -> None:
    text = re.sub(r"(^|\s)(?:\.venv/bin/)?chainrule\b", rf"\g<1>{CHAINRULE}", live.rewrite(command.text))
    done = subprocess.run(
        ["bash", "-c", text],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = done.stdout + done.stderr
    if output is not None and output.language == "json":
        assert json.loads(printed) == json.loads(output.text), f"{where}: the JSON shown differs:\n{printed}"
        return
    if command.expected is None:
        assert done.returncode == 0, f"{where}: exited {done.returncode}:\n{printed}"
        return
    shown = live.normalise("\n".join(command.expected))
    actual = live.normalise(printed)
    assert matches(shown, actual), _mismatch(where, shown, actual)


def _check_grpcurl(where: str, command: Command, output: Block | None, live: Live) -> None:
    """grpcurl is not installed here: its request must parse as the method's request message, and the
    output shown must be what the server answers."""
    words = command.words
    target = next((w for w in words if w.startswith("chainrule.v1.")), None)
    if target is None:
        assert words[-1] in {"list", "describe"} or "list" in words, f"{where}: which method?"
        return
    service_name, _, method_name = target.rpartition("/")
    service = pb.DESCRIPTOR.services_by_name.get(service_name.removeprefix("chainrule.v1."))
    assert service is not None, f"{where}: no service {service_name}"
    method = service.methods_by_name.get(method_name)
    assert method is not None, f"{where}: {service_name} has no method {method_name}"
    request_class = getattr(pb, method.input_type.name)
    body = words[words.index("-d") + 1] if "-d" in words else "{}"
    request = json_format.Parse(body, request_class())
    shown = output.text if output is not None else "\n".join(command.expected or [])
    if not shown:
        return
    response_class = getattr(pb, method.output_type.name)
    with grpc.insecure_channel(f"127.0.0.1:{live.grpc_port}") as channel:
        call = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        answer = json_format.MessageToDict(call(request, timeout=30))
    assert answer == json.loads(shown), f"{where}: the server answers {answer}"


# --- TypeScript -----------------------------------------------------------------------------------


def test_typescript_examples_type_check_against_the_node_client(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (NODE / "node_modules" / "typescript").is_dir():
        pytest.skip("needs node and clients/node/node_modules (make node-lint or npm ci there)")
    out = NODE / "build" / "docs"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = []
    for document in DOCUMENTS:
        code = [b for b in blocks(document) if b.language in {"ts", "typescript"} and "skip" not in b.flags]
        if code:
            name = re.sub(r"\W", "_", _id(document)) + ".mts"
            (out / name).write_text(_module(code))
            files.append(name)
    config = {
        "extends": "../../tsconfig.json",
        "compilerOptions": {
            "noEmit": True,
            "rootDir": "../..",
            "noUnusedLocals": False,
            "paths": {"@chainrule/client": ["../../src/index.ts"]},
        },
        "files": files,
    }
    (out / "tsconfig.json").write_text(json.dumps(config))
    tsc = NODE / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        ["node", str(tsc), "-p", str(out / "tsconfig.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"the TypeScript examples do not type-check:\n{done.stdout}{done.stderr}"


def _module(code: list[Block]) -> str:
    """A document's TypeScript blocks as one ES module: imports first, then each block, with its place."""
    imports: list[str] = []
    body: list[str] = []
    for block in code:
        body.append(f"// {block.where}")
        for line in block.text.splitlines():
            if line.startswith("import "):
                if line not in imports:
                    imports.append(line)
            else:
                body.append(line)
    return "\n".join([*imports, "export {};", *body]) + "\n"


# --- tables and names -----------------------------------------------------------------------------


def _docs_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_parts_are_up_to_date() -> None:
    tables = _docs_tables()
    for document in tables.documents():
        current = document.read_text()
        assert tables.render(current) == current, f"{document.name} is stale: python scripts/docs_tables.py"
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert {"settings", "limits", "bounds", "memory"} <= set(tables.parts(operations))
    assert {"limits", "bounds"} <= set(tables.parts((ROOT / "docs" / "security.md").read_text()))
    assert {"functions", "constants"} <= set(tables.parts((ROOT / "docs" / "api.md").read_text()))


def test_every_variable_the_docs_name_is_a_setting() -> None:
    settings = {env_name(item) for item in fields(Settings)}
    for document in DOCUMENTS:
        named = set(re.findall(r"\bCHAINRULE_[A-Z0-9_]*[A-Z0-9]\b", document.read_text()))
        unknown = named - settings - NOT_SETTINGS
        assert not unknown, f"{_id(document)} names {sorted(unknown)}, which are not settings"
