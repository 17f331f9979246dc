"""Property-based checks of the live HTTP API against its own /openapi.json (schemathesis).

Every documented operation gets a bounded number of generated requests (fixed seed: hypothesis runs
derandomized), first schema-conforming ones, then schema-violating ones. No answer may be a 5xx,
every answer must conform to the document (status code, content type, body schema), and requests
that break the schema must be refused with a 4xx.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from chainrule.server.app import Application
from chainrule.server.transport.http_server import create_http_app

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def run_operation(operation: Any, mode: GenerationMode, base_url: str) -> None:
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base_url, checks=checks, timeout=30)

    check()


def run_examples(schema: Any, operation: Any, base_url: str) -> None:
    """The document's own examples first: they are the requests that must get a 200 and a full reply."""
    strategies = schema.get_strategies_from_examples(operation)
    if not strategies:
        return

    @hypothesis.settings(SETTINGS, max_examples=5)
    @hypothesis.given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)
        assert response.status_code == 200, response.text

    check()


def run_all(base_url: str, routes: int) -> list[str]:
    """Runs every operation in both modes; returns what each one that failed reported."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    failures: list[str] = []
    results = list(schema.get_all_operations())
    assert not [result.err() for result in results if isinstance(result, Err)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == routes, f"the document lists every route: {[op.label for op in operations]}"
    for operation in operations:
        # An operation with neither query nor body has no schema to break: positive cases only.
        takes_input = len(operation.query) > 0 or len(operation.body) > 0
        modes = (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
        )
        try:
            run_examples(schema, operation, base_url)
        except Exception as error:
            failures.append(f"{operation.label} [examples]: {error}")
        for mode in modes:
            try:
                run_operation(operation, mode, base_url)
            except Exception as error:  # collect them all: one report for every broken operation
                failures.append(f"{operation.label} [{mode.value}]: {error}")
    return failures


@pytest.mark.timeout(120)
async def test_live_server_conforms_to_its_openapi_document(app: Application) -> None:
    # schemathesis is synchronous; the server shares this event loop, so the client runs in a thread.
    before = requests_by_status(app, "/v1/evaluate")
    # Every route but the document itself, which schemathesis does not test.
    routes = len(served_routes(app) - {("/openapi.json", "GET")})
    failures = await asyncio.to_thread(run_all, f"http://127.0.0.1:{app.http_port}", routes)
    assert not failures, "\n\n".join(failures)
    after = requests_by_status(app, "/v1/evaluate")
    sent = {status: after[status] - before.get(status, 0) for status in after}
    # The run really exercised the server, with answers and refusals both.
    assert sum(sent.values()) >= 2 * EXAMPLES_PER_OPERATION * 0.8, sent
    assert sent.get("200", 0) > 0 and sent.get("400", 0) > 0, sent


def served_routes(app: Application) -> set[tuple[str, str]]:
    """(path, method) of every route the HTTP app serves (static files aside, which are no operation)."""
    routes = create_http_app(CollectorRegistry(), lambda: True, api=app.api).routes
    return {
        (route.path, method)
        for route in routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def requests_by_status(app: Application, route: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for metric in app.registry.collect():
        for sample in metric.samples:
            if sample.name == "chainrule_http_requests_total" and sample.labels["route"] == route:
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0) + sample.value
    return counts
