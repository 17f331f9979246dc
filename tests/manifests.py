"""How the deployment files say the image runs: the Dockerfile's facts and each rendered kustomization.

deploy/k8s is the one description of how the container runs in production (its ConfigMap, args,
ports, probes, security context, writable mounts, stop sequence). tests/test_manifests.py checks
it against the Dockerfile; tests/image/ runs the built image the way it says and exercises every
probe it names, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from scripts.render_kustomize import render

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = [DEPLOY / "k8s" / "base", *sorted((DEPLOY / "k8s" / "overlays").iterdir())]
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def version() -> str:
    """The server distribution's version, which tags the image."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


class Dockerfile:
    """The instructions of deploy/Dockerfile that the deployment files must agree with."""

    def __init__(self, path: Path = DEPLOY / "Dockerfile") -> None:
        self.lines = path.read_text().replace("\\\n", " ").splitlines()

    def last(self, name: str) -> str:
        """The argument of the last `name` instruction (the runtime stage's)."""
        found = [line[len(name) :].strip() for line in self.lines if line.startswith(name + " ")]
        assert found, f"no {name} in the Dockerfile"
        return found[-1]

    @property
    def exposed(self) -> set[int]:
        return {int(port.split("/")[0]) for port in self.last("EXPOSE").split()}

    @property
    def user(self) -> tuple[int, int]:
        uid, gid = self.last("USER").split(":")
        return int(uid), int(gid)

    def exec_form(self, name: str) -> list[str]:
        argument = self.last(name)
        if name == "HEALTHCHECK":
            argument = argument.split(" CMD ", 1)[1]
        parsed = json.loads(argument)
        assert isinstance(parsed, list), f"{name} must use the exec form"
        return [str(item) for item in parsed]


@dataclass(frozen=True)
class Probe:
    """One kubelet probe, reduced to what is asked: a gRPC health service, or an HTTP path."""

    kind: str  # startupProbe, livenessProbe, readinessProbe
    port: int
    grpc_service: str | None  # the grpc.health.v1 service asked ("" for the server); None: HTTP
    http_path: str | None


class Pod:
    """The chainrule container of one rendered kustomization, and what its pod spec says."""

    def __init__(self, kustomization: Path) -> None:
        self.name = kustomization.relative_to(DEPLOY / "k8s").as_posix()
        self.documents = render(kustomization)
        self.deployment = self.one("Deployment")
        self.spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        (self.container,) = [c for c in self.spec["containers"] if c["name"] == "chainrule"]

    def one(self, kind: str) -> dict[str, Any]:
        (document,) = [doc for doc in self.documents if doc["kind"] == kind]
        return document

    @cached_property
    def env(self) -> dict[str, str]:
        """The environment the container gets: its ConfigMaps (envFrom), then `env` entries."""
        maps = {doc["metadata"]["name"]: doc["data"] for doc in self.documents if doc["kind"] == "ConfigMap"}
        environment: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            environment.update(maps[source["configMapRef"]["name"]])
        environment.update({item["name"]: item["value"] for item in self.container.get("env", [])})
        return environment

    @property
    def ports(self) -> dict[str, int]:
        return {port["name"]: port["containerPort"] for port in self.container["ports"]}

    def port(self, reference: int | str) -> int:
        """A probe's port: a number, or the name of a container port."""
        return self.ports[reference] if isinstance(reference, str) else reference

    @property
    def probes(self) -> list[Probe]:
        found = []
        for kind in PROBES:
            probe = self.container[kind]
            if "grpc" in probe:
                port, service, path = probe["grpc"]["port"], probe["grpc"].get("service", ""), None
            else:
                port, service, path = probe["httpGet"]["port"], None, probe["httpGet"]["path"]
            found.append(Probe(kind, self.port(port), service, path))
        return found

    def security(self, key: str) -> Any:
        """A security setting: the container's, else the pod's."""
        return self.container.get("securityContext", {}).get(key, self.spec["securityContext"].get(key))

    @property
    def empty_dirs(self) -> list[str]:
        """Mount paths of the emptyDir volumes: the only places the container may write."""
        empty = {volume["name"] for volume in self.spec["volumes"] if "emptyDir" in volume}
        return [mount["mountPath"] for mount in self.container["volumeMounts"] if mount["name"] in empty]

    @property
    def pre_stop(self) -> list[str]:
        return [str(word) for word in self.container["lifecycle"]["preStop"]["exec"]["command"]]

    @property
    def pre_stop_seconds(self) -> float:
        """How long the preStop hook pauses (`sleep N`)."""
        match = re.fullmatch(r"sleep (\d+(?:\.\d+)?)", " ".join(self.pre_stop))
        assert match, f"{self.name}: preStop is not a plain sleep: {self.pre_stop}"
        return float(match.group(1))

    @property
    def grace_seconds(self) -> int:
        return int(self.spec["terminationGracePeriodSeconds"])


def pods() -> list[Pod]:
    """The base and every overlay."""
    return [Pod(path) for path in KUSTOMIZATIONS]
