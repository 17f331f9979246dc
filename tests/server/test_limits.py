"""Each limit is declared once; settings, GetServerInfo and the compute layer's limits derive from it."""

from __future__ import annotations

from dataclasses import fields

import pytest

from chainrule.engine.limits import ENGINE_LIMITS, EngineLimits, Layer, Limit, ParseLimits, declared
from chainrule.server.api import ChainruleApi
from chainrule.server.compute import jobs
from chainrule.server.compute.executors import InlineExecutor
from chainrule.server.config import Settings, limit_settings
from chainrule.v1 import chainrule_pb2 as pb


def test_every_field_of_the_engine_limits_is_a_declared_limit() -> None:
    for cls in (ParseLimits, EngineLimits):
        assert [name for name, _ in declared(cls)] == [item.name for item in fields(cls)]


def test_every_engine_limit_has_its_setting_with_the_declared_default() -> None:
    by_name = dict(limit_settings())
    for declaration in ENGINE_LIMITS:
        setting = f"max_{declaration.name}"
        assert by_name[setting] is declaration
        assert getattr(Settings(), setting) == declaration.default


def test_settings_reach_the_engine_limits_by_the_declared_name() -> None:
    settings = Settings.from_environ({"CHAINRULE_MAX_PARSE_DEPTH": "7", "CHAINRULE_MAX_POINTS": "11"})
    limits = jobs.Limits.from_settings(settings)
    assert (limits.parse.max_depth, limits.engine.max_points) == (7, 11)
    # Every other limit keeps its declared default.
    assert limits.parse.max_length == ParseLimits().max_length


@pytest.mark.parametrize("declaration", [d for _, d in limit_settings()], ids=lambda d: d.name)
def test_names_are_unique_and_documented(declaration: Limit) -> None:
    names = [d.name for _, d in limit_settings()]
    assert names.count(declaration.name) == 1
    assert declaration.description
    assert declaration.layer in set(Layer)


async def test_server_info_reports_every_limit_in_force() -> None:
    settings = Settings(max_parse_depth=42)
    api = ChainruleApi(settings, InlineExecutor(), InlineExecutor())
    info = await api.server_info(pb.GetServerInfoRequest())
    reported = {limit.name: limit.maximum for limit in info.limits}
    assert list(reported) == [d.name for _, d in limit_settings()]
    assert reported["parse_depth"] == 42
    assert reported["request_bytes"] == settings.max_request_bytes
