"""Connection settings shared by both clients: deadlines, retries, TLS and the bearer token."""

from __future__ import annotations

import importlib.metadata
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc

from ._exceptions import ChainruleError, ResourceExhaustedError, UnavailableError

DEFAULT_TIMEOUT: Final = 10.0
# Room for the replies of servers configured above their default reply limit (64 MiB); bigger batches
# go in chunks (`chunk_points`).
DEFAULT_MAX_MESSAGE_BYTES: Final = 512 * 1024 * 1024
USER_AGENT: Final = f"chainrule-client-python/{importlib.metadata.version('chainrule-client')}"


class UseClientDefault:
    """The type of `USE_CLIENT_DEFAULT`: "take this setting from the client"."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = UseClientDefault()

Timeout = float | None | UseClientDefault


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on UNAVAILABLE, and on RESOURCE_EXHAUSTED when the server says when to come back.

    Attempt k (1-based) that fails with UNAVAILABLE waits a random time in [0, min(max_backoff,
    initial_backoff * multiplier ** (k - 1))] before the next one. RESOURCE_EXHAUSTED with a retry
    delay (`google.rpc.RetryInfo`: the server was busy) waits that delay plus the same jitter, so
    callers turned away together do not come back together; without one (the request overran its
    own budget or memory bound, and would again) it is raised at once. `max_attempts=1` turns
    retries off. Retries never outlive the call's deadline.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """How long to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return rng.uniform(0, ceiling)


class Deadline:
    """One call's time budget across all of its attempts, on `clock` (seconds, monotonic)."""

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = None if timeout is None else clock() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None for no deadline."""
        return None if self._end is None else max(0.0, self._end - self._clock())

    def allows(self, delay: float) -> bool:
        """True if waiting `delay` seconds still leaves time for another attempt."""
        return self._end is None or self._clock() + delay < self._end


def retry_delay(
    policy: RetryPolicy, error: ChainruleError, attempt: int, deadline: Deadline, rng: random.Random
) -> float | None:
    """The wait before retrying after `error`, or None when the error must be raised now."""
    if attempt >= policy.max_attempts:
        return None
    if isinstance(error, UnavailableError):
        delay = policy.backoff(attempt, rng)
    elif isinstance(error, ResourceExhaustedError) and error.retry_after is not None:
        delay = error.retry_after + policy.backoff(attempt, rng)
    else:
        return None
    return delay if deadline.allows(delay) else None


@dataclass(frozen=True)
class Settings:
    """Everything a client needs to open its channel and make calls."""

    target: str
    timeout: float | None
    retry: RetryPolicy
    metadata: tuple[tuple[str, str], ...]
    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, Any], ...]

    def call_timeout(self, timeout: Timeout) -> float | None:
        """The deadline for one call: its own `timeout` unless it asked for the client's."""
        return self.timeout if isinstance(timeout, UseClientDefault) else checked_timeout(timeout)


# Past this a timeout is no deadline: grpc's conversion of float("inf") or 1e300 overflowed, and the
# call failed at once with DEADLINE_EXCEEDED (an independent tester).
_FOREVER: Final = 10.0**9  # seconds, some 30 years


def checked_timeout(timeout: float | None) -> float | None:
    """`timeout` in seconds as grpc takes it: None (no deadline) for None, infinity or past _FOREVER;
    ValueError for NaN or a negative one."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if not timeout >= 0:  # NaN too
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
    return None if timeout > _FOREVER else float(timeout)


def build_settings(
    target: str,
    *,
    timeout: float | None,
    retry: RetryPolicy | None,
    token: str | None,
    metadata: Mapping[str, str] | None,
    tls: bool,
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
    tls_server_name: str | None,
    max_message_bytes: int,
    channel_options: Sequence[tuple[str, Any]],
) -> Settings:
    """Validate the client's keyword arguments into `Settings`."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("mutual TLS needs both private_key and certificate_chain")
    secure = tls or any(v is not None for v in (root_certificates, private_key, tls_server_name))
    credentials = (
        grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain) if secure else None
    )
    headers = [(key.lower(), value) for key, value in (metadata or {}).items()]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.primary_user_agent", USER_AGENT),
    ]
    if tls_server_name is not None:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return Settings(
        target=target,
        timeout=checked_timeout(timeout),
        retry=retry or RetryPolicy(),
        metadata=tuple(headers),
        credentials=credentials,
        options=(*options, *channel_options),
    )
