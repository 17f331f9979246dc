"""The server's budget and the caller's deadline of one request (`compute/deadlines.py`)."""

from __future__ import annotations

import time

import pytest

from chainrule.server.compute import deadlines


def test_the_servers_budget_counts_from_when_the_message_was_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading and decoding a 10 MB JSON body took the whole 5 s budget before the expression was
    parsed (an independent tester); the caller's deadline still counts from the request's start."""
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with deadlines.request_scope(8.0):
        clock[0] = 104.0  # reading and decoding the body
        assert deadlines.budget(5.0).seconds == 1.0  # not marked yet: from the start
        deadlines.message_read()
        budget = deadlines.budget(5.0)
        assert (budget.seconds, budget.client_bound) == (4.0, True)  # the caller's 8 s end first
        deadlines.detach()  # work that may outlive its caller keeps the read mark
        assert deadlines.budget(5.0).seconds == 5.0
        clock[0] = 107.0
        assert deadlines.budget(5.0).seconds == 2.0
