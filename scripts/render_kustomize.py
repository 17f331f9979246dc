"""Render the kustomizations under deploy/k8s without kubectl: the subset of kustomize they use.

    python scripts/render_kustomize.py deploy/k8s/overlays/tls > rendered.yaml
    python scripts/render_kustomize.py deploy/k8s/overlays/tls --same-as kubectl-rendered.yaml

Supported: `resources` (files and directories), `images` (newName/newTag), and `patches` given as a
JSON 6902 file with a kind/name target (ops add, replace, remove). `kubectl kustomize` is used
instead when it is installed (scripts/lint_deploy.sh), which then checks with `--same-as` that the
two agree; this keeps `make lint` working without kubectl, and tests/manifests.py uses it.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def _apply(document: Any, operation: dict[str, Any]) -> None:
    *parents, last = _pointer(operation["path"])
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    match operation["op"], node:
        case "add", list() if last == "-":
            node.append(value)
        case "add", list():
            node.insert(int(last), value)
        case (("add" | "replace"), list()):
            node[int(last)] = value
        case (("add" | "replace"), dict()):
            if operation["op"] == "replace" and last not in node:
                raise KeyError(f"replace of missing {operation['path']}")
            node[last] = value
        case "remove", list():
            del node[int(last)]
        case "remove", dict():
            del node[last]
        case _:
            raise ValueError(f"unsupported operation {operation}")


def render(directory: Path) -> list[dict[str, Any]]:
    """The documents a kustomization directory produces."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    documents: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            documents += render(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for image in kustomization.get("images", []):
        for doc in documents:
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        target = patch["target"]
        for doc in documents:
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                for operation in operations:
                    _apply(doc, operation)
    return documents


def _by_name(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(documents, key=lambda doc: (doc["kind"], doc["metadata"]["name"]))


def main(arguments: list[str]) -> int:
    """Print the rendering; with `--same-as FILE` (kubectl's), say instead whether the two agree."""
    documents = render(Path(arguments[0]))
    if arguments[1:2] == ["--same-as"]:
        other = [doc for doc in yaml.safe_load_all(Path(arguments[2]).read_text()) if doc]
        if _by_name(documents) != _by_name(other):
            print(f"{arguments[0]}: this renderer and {arguments[2]} disagree", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
