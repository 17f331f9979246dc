"""Deployment files: the image's entrypoint and health check run, dashboards and alerts name real metrics.

The Dockerfile's exact ENTRYPOINT (with the host and ports a test may use) is started as a
process, and its HEALTHCHECK command is run against it: quick checks for every `make test`. The
built image itself is run by `make image-test` (tests/image/).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chainrule.server.app import Application
from chainrule.server.config import Settings
from chainrule.server.sizing import SUPERVISOR_BYTES, memory_bound
from chainrule.server.supervisor import _restart_counter, _stall_counter
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.manifests import Dockerfile

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
# Names PromQL knows that are not metrics.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or"}
PROMQL_WORDS |= {"unless", "le", "inf", "nan"}


# --- the image's commands, run as processes --------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile()


@pytest.fixture(scope="module")
def entrypoint(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """The image's ENTRYPOINT, two workers, on loopback ports picked by the kernel."""
    command = dockerfile.exec_form("ENTRYPOINT")
    assert command == ["chainrule", "serve"]
    assert dockerfile.exec_form("CMD") == ["--host", "0.0.0.0"]
    ready = tmp_path_factory.mktemp("image") / "ready.json"
    # Network tests stay on 127.0.0.1: the host flag is the one part of CMD replaced.
    args = ["--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--ready-file", str(ready)]
    environ = {**os.environ, "CHAINRULE_WORKERS": "2", "CHAINRULE_LOG_FORMAT": "json"}
    process = subprocess.Popen([str(BIN / command[0]), *command[1:], *args], env=environ)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the entrypoint did not start"
            time.sleep(0.05)
        yield json.loads(ready.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_healthcheck_command_passes_against_the_entrypoint(
    dockerfile: Dockerfile, entrypoint: dict[str, int]
) -> None:
    command = dockerfile.exec_form("HEALTHCHECK")
    assert command[0] == "python"
    environ = {**os.environ, "CHAINRULE_HTTP_PORT": str(entrypoint["http_port"])}
    result = subprocess.run([sys.executable, *command[1:]], env=environ, timeout=30, check=False)
    assert result.returncode == 0


def test_healthcheck_command_fails_when_nothing_listens(dockerfile: Dockerfile) -> None:
    command = dockerfile.exec_form("HEALTHCHECK")
    environ = {**os.environ, "CHAINRULE_HTTP_PORT": "1"}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=environ, capture_output=True, timeout=30, check=False
    )
    assert result.returncode != 0


# --- metric names ----------------------------------------------------------------------------------


def _sample_names(exposition: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


async def _traffic(port: int) -> None:
    """Calls that make every labelled metric appear: success, caller error, evaluation with points."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x^2)"), timeout=30)
        await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x^2)"), timeout=30)
        await stub.Evaluate(pb.EvaluateRequest(expression="x^2", point={"x": 2.0}), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Differentiate(pb.DifferentiateRequest(expression="sin(x"), timeout=30)


@pytest.fixture(scope="module")
async def exported(entrypoint: dict[str, int], app: Application) -> set[str]:
    """Every sample name the service exports: multi-worker, single-process, and the supervisor's."""
    names: set[str] = set()
    for grpc_port, http_port in (
        (entrypoint["grpc_port"], entrypoint["http_port"]),
        (app.grpc_port, app.http_port),
    ):
        await _traffic(grpc_port)
        async with httpx.AsyncClient(timeout=10) as client:
            names |= _sample_names((await client.get(f"http://127.0.0.1:{http_port}/metrics")).text)
    registry = CollectorRegistry()
    _restart_counter(registry)
    _stall_counter(registry)
    names |= _sample_names(generate_latest(registry).decode())
    return names


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords and labels removed)."""
    text = re.sub(r'"[^"]*"', "", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        word = match.group()
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            'sum by (le) (rate(grpc_server_handling_seconds_bucket{job=~"$job"}[5m]))',
            {"grpc_server_handling_seconds_bucket"},
        ),
        ("a_total / (b_total + c_total) < 0.5 * d offset 1h", {"a_total", "b_total", "c_total", "d"}),
        ('up{job="chainrule"} == 0', {"up"}),
    ],
)
def test_metric_names_are_found_in_promql(expression: str, expected: set[str]) -> None:
    assert metric_names(expression) == expected


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "chainrule.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        metric = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
        assert metric, variable["definition"]
        queries.append(metric.group(1))
    return queries


def test_dashboard_has_the_panels_operators_need() -> None:
    joined = "\n".join(_dashboard_queries())
    for needed in (
        "grpc_server_handled_total",
        'grpc_code!="OK"',
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "chainrule_cache_hits_total",
        "chainrule_requests_in_flight",
        "chainrule_worker_restarts_total",
    ):
        assert needed in joined


def test_every_dashboard_query_names_exported_metrics(exported: set[str]) -> None:
    for query in _dashboard_queries():
        names = metric_names(query)
        assert names, query
        assert names <= exported, f"{query}: {names - exported} not exported"


def test_every_alert_names_exported_metrics(exported: set[str]) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(expressions) >= 6
    for expression in expressions:
        names = metric_names(expression)
        assert names, expression
        allowed = exported | {"up"}
        assert names <= allowed, f"{expression}: {names - exported} not exported"


def test_the_bounds_of_issue_15_have_panels_and_alerts() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = "\n".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    panels = "\n".join(_dashboard_queries())
    for metric in (
        "chainrule_http_connections_closed_total",
        "chainrule_worker_stalls_total",
        'chainrule_overload_rejections_total{cause="overloaded"}',
        'chainrule_overload_rejections_total{cause="caller_share"}',
        "chainrule_refused_reply_bytes_total",
        "chainrule_symbolic_worker_replacements_total",
        "chainrule_http_requests_queued_total",
    ):
        assert metric in alerts, metric
        assert metric.split("{")[0] in panels, metric
    assert "chainrule_limit_rejections_total" in panels


def test_compose_scrapes_chainrule_and_provisions_grafana() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"chainrule", "prometheus", "grafana"} <= set(compose["services"])
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert "chainrule:8080" in targets
    for mount in compose["services"]["grafana"]["volumes"]:
        assert (DEPLOY / mount.split(":")[0]).resolve().exists(), mount


# --- the memory bound ------------------------------------------------------------------------------


def test_the_pod_memory_limit_is_the_memory_bound_of_its_settings() -> None:
    # docs/operations.md, "The memory bound of a process": every term is enforced, so a limit at
    # least their sum means no request can get the pod OOM-killed; at most a quarter above it.
    config = yaml.safe_load((DEPLOY / "k8s/base/configmap.yaml").read_text())["data"]
    settings = Settings.from_environ({key: str(value) for key, value in config.items()})
    processes = int(config["CHAINRULE_WORKERS"])
    bound = processes * sum(memory_bound(settings).values()) + (SUPERVISOR_BYTES if processes > 1 else 0)
    deployment = yaml.safe_load((DEPLOY / "k8s/base/deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    limit = _mebibytes(container["resources"]["limits"]["memory"]) * 2**20
    assert bound <= limit <= 1.25 * bound, (bound / 2**20, limit / 2**20)


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]
