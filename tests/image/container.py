"""The container engine (docker or podman, as `make image` chose) and one container run as a pod says.

`make image` writes build/image/built.json: the engine, the image, the podman configuration. A
`Container` is started with the pod's environment, args, security settings and writable mounts
(tests/manifests.py reads them from deploy/k8s), its ports published on 127.0.0.1 at ports the
engine picks.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.manifests import ROOT, Pod

BUILT = ROOT / "build" / "image" / "built.json"


@dataclass(frozen=True)
class Engine:
    """A container engine's command line, and the image `make image` built."""

    command: str
    image: str
    environ: dict[str, str]
    built: dict[str, Any]

    @classmethod
    def from_build(cls) -> Engine:
        if not BUILT.exists():
            pytest.fail(f"{BUILT.relative_to(ROOT)} is missing: run `make image` (or `make image-test`)")
        built = json.loads(BUILT.read_text())
        environ = dict(os.environ)
        if built["containers_conf"]:
            environ["CONTAINERS_CONF"] = built["containers_conf"]
        return cls(built["engine"], built["image"], environ, built)

    def run(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the engine with `arguments`; its result, whatever the exit status."""
        return subprocess.run(
            [self.command, *arguments],
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def __call__(self, *arguments: str, check: bool = True) -> str:
        """Run the engine; its standard output, after a zero exit status unless `check` is False."""
        result = self.run(*arguments)
        if check and result.returncode != 0:
            command = " ".join([self.command, *arguments])
            raise AssertionError(f"{command}: exit {result.returncode}\n{result.stderr}")
        return result.stdout

    def inspect_image(self) -> dict[str, Any]:
        (found,) = json.loads(self("image", "inspect", self.image))
        return dict(found)

    def healthcheck(self) -> list[str]:
        """The image's HEALTHCHECK command (podman keeps it beside Config, docker inside it)."""
        found = self.inspect_image()
        check = found.get("Healthcheck") or found["Config"]["Healthcheck"]
        kind, *command = check["Test"]
        assert kind == "CMD", check
        return [str(word) for word in command]


def run_arguments(engine: Engine, pod: Pod) -> list[str]:
    """`run` options that give the container what the pod spec gives it (user: the image's own)."""
    arguments = ["--no-healthcheck", "--cap-drop", "ALL"]
    if pod.security("readOnlyRootFilesystem"):
        arguments.append("--read-only")
        if engine.command == "podman":  # podman adds writable /tmp, /run, /var/tmp unless told not to
            arguments.append("--read-only-tmpfs=false")
    if pod.security("allowPrivilegeEscalation") is False:
        arguments += ["--security-opt", "no-new-privileges"]
    for path in pod.empty_dirs:
        arguments += ["--tmpfs", path]
    for name, value in pod.env.items():
        arguments += ["--env", f"{name}={value}"]
    for port in pod.ports.values():
        arguments += ["--publish", f"127.0.0.1::{port}"]
    return arguments


class Container:
    """A detached container of the built image, run as `pod` says; removed by `remove()`."""

    def __init__(self, engine: Engine, pod: Pod, name: str) -> None:
        self.engine, self.pod, self.name = engine, pod, name
        options = run_arguments(engine, pod)
        engine("run", "--detach", "--name", name, *options, engine.image, *pod.container["args"])
        self.ports = {name: self.published(port) for name, port in pod.ports.items()}

    def published(self, container_port: int) -> int:
        """The loopback port the engine published `container_port` at."""
        address = self.engine("port", self.name, f"{container_port}/tcp").split()[0]
        return int(address.rsplit(":", 1)[1])

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.engine("inspect", "--format", "{{json .State}}", self.name)))

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        """`command` inside the container, as its user."""
        return self.engine.run("exec", self.name, *command)

    def wait_ready(self, seconds: float = 120) -> None:
        """Until HTTP /readyz answers 200; fails at once if the container exits."""
        deadline = time.monotonic() + seconds
        url = f"http://127.0.0.1:{self.ports['http']}/readyz"
        while time.monotonic() < deadline:
            assert self.state()["Running"], f"the container exited:\n{self.logs()}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready in {seconds} s:\n{self.logs()}")

    def logs(self) -> str:
        result = self.engine.run("logs", self.name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.engine("rm", "--force", self.name, check=False)
