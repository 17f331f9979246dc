"""Without a server: rich-status decoding, the retry policy and the argument checks."""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from chainrule.client import (
    ChainruleError,
    Client,
    InvalidArgumentError,
    LimitExceededError,
    MissingVariableError,
    ParseError,
    ResourceExhaustedError,
    RetryPolicy,
    UnauthenticatedError,
    UnavailableError,
    UnknownFunctionError,
)
from chainrule.client._convert import wrt_messages
from chainrule.client._exceptions import STATUS_DETAILS_KEY, error_from_status
from chainrule.v1 import chainrule_pb2 as pb

from manual_time import ClockedClient


def _trailer(code: grpc.StatusCode, *details: object) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=code.value[0], message="m")
    for detail in details:
        status.details.add().Pack(detail)  # type: ignore[arg-type]
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def _info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain="chainrule.dev", metadata=metadata)


def _bad_request(*fields: str) -> error_details_pb2.BadRequest:
    violations = [error_details_pb2.BadRequest.FieldViolation(field=f, description="bad") for f in fields]
    return error_details_pb2.BadRequest(field_violations=violations)


# (reason, the class it must decode to, why)
REASONS = [
    ("PARSE_ERROR", ParseError, "grammar error"),
    ("UNKNOWN_FUNCTION", UnknownFunctionError, "a function we do not know, still a ParseError"),
    ("MISSING_VARIABLE", MissingVariableError, "no value for a variable"),
    ("LIMIT_EXCEEDED", LimitExceededError, "a limit"),
    ("INVALID_ARGUMENT", InvalidArgumentError, "generic bad request"),
    ("SOMETHING_NEW", InvalidArgumentError, "unknown reasons fall back on the code"),
]


@pytest.mark.parametrize(("reason", "expected", "why"), REASONS)
def test_reason_picks_the_class(reason: str, expected: type[ChainruleError], why: str) -> None:
    code = grpc.StatusCode.INVALID_ARGUMENT
    trailers = _trailer(code, _info(reason, position="3"), _bad_request("wrt[1].order"))
    error = error_from_status(code, "m", trailers)
    assert type(error) is expected, why
    assert error.reason == reason and error.code is code
    assert error.field_violations[0].field == "wrt[1].order"
    assert error.metadata == {"position": "3"}


def test_parse_error_position() -> None:
    code = grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_status(code, "unexpected ')' at 7", _trailer(code, _info("PARSE_ERROR", position="7")))
    assert isinstance(error, ParseError) and error.position == 7
    assert str(error) == "INVALID_ARGUMENT: unexpected ')' at 7"


def test_retry_info_becomes_retry_after() -> None:
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000))
    error = error_from_status(code, "busy", _trailer(code, retry))
    assert isinstance(error, ResourceExhaustedError)
    assert error.retry_after == 1.5


@pytest.mark.parametrize(
    ("trailers", "why"),
    [((), "no trailer at all"), (((STATUS_DETAILS_KEY, b"\xff\xff"),), "a garbled trailer")],
)
def test_code_alone_still_decodes(trailers: Sequence[tuple[str, bytes]], why: str) -> None:
    error = error_from_status(grpc.StatusCode.UNAUTHENTICATED, "no token", trailers)
    assert type(error) is UnauthenticatedError, why
    assert error.reason is None and error.field_violations == ()


def test_other_codes_are_plain_chainrule_errors() -> None:
    error = error_from_status(grpc.StatusCode.INTERNAL, "bug", ())
    assert type(error) is ChainruleError and error.code is grpc.StatusCode.INTERNAL


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, retry_after: float | None = None) -> None:
        self._code = code
        self._retry_after = retry_after

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._code.name.lower()

    # grpc's stubs type the items as `_Metadatum`; a real call's are (key, value) pairs, as here.
    def trailing_metadata(self) -> tuple[Any, ...]:
        if self._retry_after is None:
            return ()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self._retry_after * 1e9))
        return _trailer(self._code, error_details_pb2.RetryInfo(retry_delay=delay))


class _Flaky:
    """A stand-in for a stub method: fails with `code` `failures` times, then answers."""

    def __init__(self, code: grpc.StatusCode, failures: int, retry_after: float | None = None) -> None:
        self.code, self.failures, self.calls, self.retry_after = code, failures, 0, retry_after
        self.timeouts: list[object] = []

    def __call__(self, request: pb.EvaluateRequest, **kwargs: object) -> pb.EvaluateResponse:
        self.calls += 1
        self.timeouts.append(kwargs.get("timeout"))
        if self.calls <= self.failures:
            raise _FakeRpcError(self.code, self.retry_after)
        return pb.EvaluateResponse(value=1.0)


FAST = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002)


@pytest.mark.parametrize(
    ("code", "failures", "expected_calls", "raises", "why"),
    [
        (grpc.StatusCode.UNAVAILABLE, 2, 3, None, "two blips, third attempt answers"),
        (grpc.StatusCode.UNAVAILABLE, 5, 3, UnavailableError, "attempts are bounded"),
        (grpc.StatusCode.INVALID_ARGUMENT, 1, 1, InvalidArgumentError, "only UNAVAILABLE is retried"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 1, 1, ChainruleError, "deadlines are not retried"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 1, ResourceExhaustedError, "no retry delay: its own cost"),
    ],
)
def test_retry_policy(
    code: grpc.StatusCode, failures: int, expected_calls: int, raises: type[Exception] | None, why: str
) -> None:
    method = _Flaky(code, failures)
    client = _call_until(method, raises)
    assert method.calls == expected_calls, why
    assert len(client.clock.waits) == expected_calls - 1, "one pause between two attempts"


def _call_until(method: _Flaky, raises: type[Exception] | None) -> ClockedClient:
    """Call `method` through a client's retries: it answers, or raises `raises` in the end."""
    with ClockedClient("127.0.0.1:1", retry=FAST, seed=1) as client:
        if raises is None:
            assert client._call(method, pb.EvaluateRequest(), 5.0).value == 1.0  # type: ignore[arg-type]
        else:
            with pytest.raises(raises):
                client._call(method, pb.EvaluateRequest(), 5.0)  # type: ignore[arg-type]
    return client


@pytest.mark.parametrize(
    ("failures", "expected_calls", "raises"), [(2, 3, None), (5, 3, ResourceExhaustedError)]
)
def test_overload_with_a_retry_delay_is_retried_after_it(
    failures: int, expected_calls: int, raises: type[Exception] | None
) -> None:
    method = _Flaky(grpc.StatusCode.RESOURCE_EXHAUSTED, failures, retry_after=0.05)
    client = _call_until(method, raises)
    assert method.calls == expected_calls
    waits = client.clock.waits
    assert len(waits) == expected_calls - 1 and all(wait >= 0.05 for wait in waits), waits  # never sooner


def test_an_overload_retry_delay_past_the_deadline_is_not_waited_for() -> None:
    method = _Flaky(grpc.StatusCode.RESOURCE_EXHAUSTED, 1, retry_after=10.0)
    with ClockedClient("127.0.0.1:1", retry=FAST) as client, pytest.raises(ResourceExhaustedError):
        client._call(method, pb.EvaluateRequest(), 0.5)  # type: ignore[arg-type]
    assert method.calls == 1 and not client.clock.waits


def test_backoff_is_capped_exponential_with_jitter() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.3, multiplier=2.0)
    rng = random.Random(7)  # noqa: S311 - jitter, not secrets
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.3), (6, 0.3)]:
        waits = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jitter spreads over the range


def test_retries_stop_at_the_deadline() -> None:
    method = _Flaky(grpc.StatusCode.UNAVAILABLE, 100)
    slow = RetryPolicy(max_attempts=100, initial_backoff=0.2, max_backoff=0.2, multiplier=1.0)
    with ClockedClient("127.0.0.1:1", retry=slow, seed=3) as client, pytest.raises(UnavailableError):
        client._call(method, pb.EvaluateRequest(), 0.5)  # type: ignore[arg-type]
    waits = client.clock.waits
    # The deadline, not max_attempts, ended the retries; no pause ran past it, and each attempt
    # carried what was left of the one deadline.
    assert 3 <= method.calls == len(waits) + 1 < slow.max_attempts
    assert sum(waits) < 0.5
    left = [0.5 - sum(waits[:attempt]) for attempt in range(method.calls)]
    assert method.timeouts == pytest.approx(left)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_down_is_unavailable_after_bounded_retries() -> None:
    address = f"127.0.0.1:{_free_port()}"
    with ClockedClient(address, retry=FAST, timeout=60) as client, pytest.raises(UnavailableError) as caught:
        client.differentiate("x")
    # UNAVAILABLE on every attempt (a call that waited for the server would have ended in
    # DEADLINE_EXCEEDED), then no more attempts than the policy allows.
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(client.clock.waits) == FAST.max_attempts - 1


@pytest.mark.parametrize(
    ("wrt", "expected"),
    [
        (None, []),
        ("x", [("x", 1)]),
        ({"x": 2, "y": 1}, [("x", 2), ("y", 1)]),
        ([("x", 2), ("y", 0)], [("x", 2), ("y", 0)]),
        (["x", "y"], [("x", 1), ("y", 1)]),
    ],
)
def test_wrt_forms(wrt: object, expected: list[tuple[str, int]]) -> None:
    assert [(w.variable, w.order) for w in wrt_messages(wrt)] == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wrt", "error"),
    [([("x", 1.5)], TypeError), ([("x", True)], TypeError), ({"x": -1}, ValueError), ([(1, 1)], TypeError)],
)
def test_bad_wrt_is_refused_locally(wrt: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        wrt_messages(wrt)  # type: ignore[arg-type]


def test_bad_local_arguments() -> None:
    with Client("127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="simplification"):
            client.differentiate("x", simplification="max")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.gradient("x", {"x": 1.0}, variables="x")
        with pytest.raises(TypeError):
            client.evaluate("x", points={"x": "123"})  # type: ignore[dict-item]


def test_mutual_tls_needs_key_and_chain() -> None:
    with pytest.raises(ValueError, match="mutual TLS"):
        Client("127.0.0.1:1", private_key=b"key")
