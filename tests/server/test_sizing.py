"""Replies sized before computing: the estimate against real replies, and what the refusal says."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from chainrule.engine.errors import LimitExceeded
from chainrule.server import sizing
from chainrule.server.api import ChainruleApi
from chainrule.server.cache import Caches
from chainrule.server.compute import jobs
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.config import ConfigError, Settings
from chainrule.server.metrics import Metrics
from chainrule.server.sizing import JSON, PROTOBUF, Encoding, Wire, memory_bound
from chainrule.server.transport.protojson import message_to_json
from chainrule.server.version import VERSION
from chainrule.v1 import chainrule_pb2 as pb
from tests.conftest import make_settings

NAMES = ("a", "b", "c", "d")
EXPRESSION = "a*b + sin(c)*d^2"  # a gradient over 4 variables with Hessian: 1 + 4 + 16 = 21 columns


def make_api(**settings: object) -> tuple[ChainruleApi, CollectorRegistry]:
    config = make_settings(**settings)
    caches, registry = Caches(config), CollectorRegistry()
    metrics = Metrics(registry, VERSION, caches)
    return ChainruleApi(config, InlineExecutor(), InlineExecutor(), caches=caches, metrics=metrics), registry


def gradient_request(points: int, raw: bool) -> pb.GradientAtPointRequest:
    rng = np.random.default_rng(20250101)
    columns = {name: rng.uniform(-3.0, 3.0, points) for name in NAMES}
    arrays = {
        name: pb.Array(f64le=values.astype("<f8").tobytes()) if raw else pb.Array(values=values.tolist())
        for name, values in columns.items()
    }
    return pb.GradientAtPointRequest(expression=EXPRESSION, points=arrays, hessian=True)


def encoded(response: pb.GradientAtPointResponse, encoding: Encoding) -> bytes:
    return message_to_json(response) if encoding is JSON else response.SerializeToString()


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON], ids=lambda e: e.name)
@pytest.mark.parametrize("raw", [True, False], ids=["f64le", "values"])
async def test_the_reply_estimate_bounds_the_real_reply(encoding: Encoding, raw: bool) -> None:
    api, _ = make_api()
    points = 2_000
    response = await api.gradient(gradient_request(points, raw), Wire(encoding))
    actual = len(encoded(response, encoding))
    shape = sizing.Shape(points, 21, 15, len(NAMES), raw)
    estimate = shape.reply_bytes(encoding)
    # Never under; listed values in JSON are estimated at their longest (24 characters, where 0.0
    # takes 3).
    assert actual <= estimate <= 3 * actual, (actual, estimate)


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON], ids=lambda e: e.name)
async def test_a_refused_reply_says_how_many_points_fit_and_that_many_do(encoding: Encoding) -> None:
    api, registry = make_api(max_response_bytes=1_000_000)
    with pytest.raises(LimitExceeded) as caught:
        await api.gradient(gradient_request(20_000, raw=True), Wire(encoding))
    error = caught.value
    assert error.metadata["limit"] == "response_bytes"
    assert error.metadata["points"] == "20000" and error.metadata["columns"] == "21"
    assert int(error.metadata["value"]) > 1_000_000 == int(error.metadata["maximum"])
    assert "chunk_points" in error.message and error.violations[0].field == "points"
    fits = int(error.metadata["points_that_fit"])
    response = await api.gradient(gradient_request(fits, raw=True), Wire(encoding))
    assert len(encoded(response, encoding)) <= 1_000_000
    with pytest.raises(LimitExceeded):
        await api.gradient(gradient_request(fits + 1, raw=True), Wire(encoding))
    assert registry.get_sample_value("chainrule_limit_rejections_total", {"limit": "response_bytes"}) == 2
    refused = registry.get_sample_value("chainrule_refused_reply_bytes_total")
    assert refused is not None and refused > 2_000_000


async def test_working_memory_is_bounded_apart_from_the_reply() -> None:
    api, _ = make_api(max_working_bytes=2_000_000)
    with pytest.raises(LimitExceeded) as caught:
        await api.gradient(gradient_request(5_000, raw=False), Wire(JSON))
    assert caught.value.metadata["limit"] == "working_bytes"
    fits = int(caught.value.metadata["points_that_fit"])
    assert 0 < fits < 5_000
    await api.gradient(gradient_request(fits, raw=False), Wire(JSON))


async def test_points_that_fit_fit_both_limits() -> None:
    """A reply over its limit says how many points fit that and the working memory's: an independent
    tester's Jacobian was refused on the reply with 1,268 points that fit, then on working memory."""
    for reply_limit, working_limit in ((1_000_000, 2_000_000), (2_000_000, 1_000_000)):
        api, _ = make_api(max_response_bytes=reply_limit, max_working_bytes=working_limit)
        with pytest.raises(LimitExceeded) as caught:
            await api.gradient(gradient_request(20_000, raw=False), Wire(JSON))
        fits = int(caught.value.metadata["points_that_fit"])
        assert 0 < fits < 20_000
        await api.gradient(gradient_request(fits, raw=False), Wire(JSON))


def test_carries_points_needs_no_size() -> None:
    assert sizing.carries_points(pb.EvaluateResponse(values=pb.Array(values=[1.0])))
    assert not sizing.carries_points(pb.EvaluateResponse(value=1.0))
    assert not sizing.carries_points(pb.DifferentiateResponse(derivative="x"))


async def test_a_gradient_too_big_to_reply_is_refused_before_it_is_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*args: object) -> None:
        raise AssertionError("compiled a gradient whose reply was over the limit")

    monkeypatch.setattr(jobs, "compile_gradient", forbidden)
    api, _ = make_api(max_response_bytes=1_000_000)
    with pytest.raises(LimitExceeded) as caught:
        await api.gradient(gradient_request(20_000, raw=True), Wire(PROTOBUF))
    assert caught.value.metadata["limit"] == "response_bytes"


def test_the_receiving_term_follows_the_stream_window() -> None:
    """Each call waiting to read holds up to the window; a window HTTP/2 cannot announce is refused."""
    wide = Settings.from_environ({"CHAINRULE_GRPC_STREAM_WINDOW_BYTES": str(1 << 20)})
    narrow = Settings.from_environ({})
    grown = memory_bound(wide)["receiving"] - memory_bound(narrow)["receiving"]
    assert grown == narrow.calls_in_flight * ((1 << 20) - 64 * 1024)
    for value in ("65534", str(2**31)):
        with pytest.raises(ConfigError, match="GRPC_STREAM_WINDOW_BYTES must be between 65535"):
            Settings.from_environ({"CHAINRULE_GRPC_STREAM_WINDOW_BYTES": value})
