"""The Kubernetes manifests (base and every overlay) and compose agree with the image they run.

Ports, user, probes, writable paths and the stop sequence are declared in the Dockerfile and in
deploy/k8s; these checks tie the two together, and `make image-test` runs the built image the way
deploy/k8s says (tests/image/).
"""

from __future__ import annotations

import re

import pytest
import yaml

from chainrule.v1 import chainrule_pb2 as pb
from tests.manifests import DEPLOY, Dockerfile, Pod, pods, version

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DifferentiationService"].full_name
PODS = pods()


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile()


def test_every_overlay_is_rendered() -> None:
    assert [pod.name for pod in PODS][:1] == ["base"]
    assert "overlays/tls" in [pod.name for pod in PODS]


@pytest.mark.parametrize("pod", PODS, ids=lambda pod: pod.name)
def test_ports_are_the_images(pod: Pod, dockerfile: Dockerfile) -> None:
    assert set(pod.ports) == {"grpc", "http"}
    assert set(pod.ports.values()) == dockerfile.exposed
    annotations = pod.deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == pod.ports["http"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "chainrule"]
    assert annotations["prometheus.io/path"] == job["metrics_path"]


@pytest.mark.parametrize("pod", PODS, ids=lambda pod: pod.name)
def test_security_context_is_the_images_user_locked_down(pod: Pod, dockerfile: Dockerfile) -> None:
    assert (pod.security("runAsUser"), pod.security("runAsGroup")) == dockerfile.user
    assert pod.security("runAsNonRoot") is True
    assert dockerfile.user[0] != 0
    assert pod.security("readOnlyRootFilesystem") is True
    assert pod.security("allowPrivilegeEscalation") is False
    assert pod.container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("pod", PODS, ids=lambda pod: pod.name)
def test_probes_ask_the_health_the_server_serves(pod: Pod) -> None:
    kinds = {probe.kind: probe for probe in pod.probes}
    assert set(kinds) == {"startupProbe", "livenessProbe", "readinessProbe"}
    for probe in pod.probes:
        if probe.grpc_service is not None:
            assert probe.port == pod.ports["grpc"]
            assert probe.grpc_service in ("", SERVICE_NAME)
        else:
            assert probe.port == pod.ports["http"]
            assert probe.http_path in ("/healthz", "/readyz")
    # Readiness asks whether the service serves (NOT_SERVING while draining), not only whether
    # the process is alive.
    readiness = kinds["readinessProbe"]
    assert readiness.grpc_service == SERVICE_NAME or readiness.http_path == "/readyz"


@pytest.mark.parametrize("pod", PODS, ids=lambda pod: pod.name)
def test_writes_land_on_empty_dirs(pod: Pod) -> None:
    assert "/tmp" in pod.empty_dirs
    metrics_dir = pod.env["CHAINRULE_METRICS_DIR"]
    assert any(metrics_dir.startswith(path.rstrip("/") + "/") for path in pod.empty_dirs), metrics_dir


@pytest.mark.parametrize("pod", PODS, ids=lambda pod: pod.name)
def test_the_drain_fits_in_the_termination_grace(pod: Pod) -> None:
    assert pod.grace_seconds > pod.pre_stop_seconds + float(pod.env["CHAINRULE_GRACE_SECONDS"])


def test_images_are_tagged_with_the_package_version() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "base" / "kustomization.yaml").read_text())
    assert [image["newTag"] for image in kustomization["images"]] == [version()]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["chainrule"]["image"] == f"chainrule:{version()}"


def test_compose_runs_the_image_as_kubernetes_does(dockerfile: Dockerfile) -> None:
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["chainrule"]
    base = PODS[0]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert {int(mapping.split(":")[-1]) for mapping in service["ports"]} == dockerfile.exposed
    seconds = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
    assert seconds, service["stop_grace_period"]
    grace = float(service["environment"]["CHAINRULE_GRACE_SECONDS"])
    assert int(seconds.group(1)) > grace
    assert service["environment"]["CHAINRULE_WORKERS"] == base.env["CHAINRULE_WORKERS"]
