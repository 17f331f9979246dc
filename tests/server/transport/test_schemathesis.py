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
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from chainrule.server.app import Application
from chainrule.server.transport.openapi import SERVICE

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


def run_all(base_url: str) -> list[str]:
    """Runs every operation in both modes; returns what each one that failed reported."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every RPC, plus five routes of our own (the GET extra, health, readiness, metrics, the document).
    assert len(operations) == len(SERVICE.methods) + 5, "the document lists every route"
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
    failures = await asyncio.to_thread(run_all, f"http://127.0.0.1:{app.http_port}")
    assert not failures, "\n\n".join(failures)
    after = requests_by_status(app, "/v1/evaluate")
    sent = {status: after[status] - before.get(status, 0) for status in after}
    # The run really exercised the server, with answers and refusals both.
    assert sum(sent.values()) >= 2 * EXAMPLES_PER_OPERATION * 0.8, sent
    assert sent.get("200", 0) > 0 and sent.get("400", 0) > 0, sent


def requests_by_status(app: Application, route: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for metric in app.registry.collect():
        for sample in metric.samples:
            if sample.name == "chainrule_http_requests_total" and sample.labels["route"] == route:
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0) + sample.value
    return counts
