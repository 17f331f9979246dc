"""gRPC health checking (grpc.health.v1): Check, List and Watch for the server ("") and chainrule's service.

Our own rather than grpc_health's: its Watch writes each status while holding the lock every
status change takes, so one Watch from a client that never reads (an HTTP/2 window of 0) held the
lock, and the drain's NOT_SERVING waited on it before its grace began: SIGTERM never finished
(an independent tester). Here a status change only wakes the watchers; each writes on its own, and
the bounds of streaming calls (`streams.OpenStreams`: how many, by whom, how large) apply.
The services are fixed, so nothing a caller names is kept: a Watch of an unknown service is told
SERVICE_UNKNOWN, as the protocol says, and its name is not remembered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2

Status: TypeAlias = int  # a health_pb2.HealthCheckResponse.ServingStatus

SERVING: Status = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Status = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVICE_UNKNOWN: Status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Health:
    """The serving status of each of `services`, NOT_SERVING until set; after
    `enter_graceful_shutdown` NOT_SERVING for good."""

    def __init__(self, services: Iterable[str]) -> None:
        self._statuses: dict[str, Status] = dict.fromkeys(services, NOT_SERVING)
        self._shutting_down = False
        self._changed = asyncio.Event()

    def set(self, service: str, status: Status) -> None:
        """Set a known service's status (ignored once shutting down) and wake its watchers."""
        if self._shutting_down:
            return
        self._set(service, status)

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service from now on: never waits for a watcher."""
        for service in self._statuses:
            self._set(service, NOT_SERVING)
        self._shutting_down = True

    def _set(self, service: str, status: Status) -> None:
        if service not in self._statuses:
            raise KeyError(f"unknown service {service!r}")
        self._statuses[service] = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Check(  # noqa: N802 (the protocol's method names)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:100]!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(  # noqa: N802
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=s) for name, s in self._statuses.items()}
        )

    async def Watch(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        service = request.service if request.service in self._statuses else None
        del request  # an unknown name is not kept for the stream's life
        sent = None
        while True:
            changed = self._changed
            status = _SERVICE_UNKNOWN if service is None else self._statuses[service]
            if status != sent:
                yield health_pb2.HealthCheckResponse(status=status)
                sent = status
            await changed.wait()
