"""The gRPC transport: a typed `grpc.aio` servicer over `api.ChainruleApi`, and its server factory."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from chainrule.engine.errors import ChainruleError, InternalError
from chainrule.server.api import ChainruleApi
from chainrule.server.compute import deadlines
from chainrule.server.config import Settings
from chainrule.server.logs import note_error
from chainrule.server.transport.auth import TlsFiles
from chainrule.server.transport.instrumentation import Instrumentation, Registration
from chainrule.server.transport.status import grpc_status
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DifferentiationService"].full_name

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


class PortInUseError(RuntimeError):
    """The gRPC port could not be bound (taken, or not ours to take)."""


class DifferentiationServicer(pb_grpc.DifferentiationServiceServicer):
    """Adapts each RPC to the API layer and turns errors into rich `google.rpc.Status` values."""

    def __init__(self, api: ChainruleApi) -> None:
        self._api = api

    async def Differentiate(
        self, request: pb.DifferentiateRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.DifferentiateResponse:
        return await _serve(self._api.differentiate, request, context)

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.EvaluateResponse:
        return await _serve(self._api.evaluate, request, context)

    async def GradientAtPoint(
        self, request: pb.GradientAtPointRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GradientAtPointResponse:
        return await _serve(self._api.gradient, request, context)

    async def Jacobian(
        self, request: pb.JacobianRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.JacobianResponse:
        return await _serve(self._api.jacobian, request, context)

    async def Series(
        self, request: pb.SeriesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SeriesResponse:
        return await _serve(self._api.series, request, context)

    async def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetServerInfoResponse:
        return await _serve(self._api.server_info, request, context)

    async def Parse(
        self, request: pb.ParseRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ParseResponse:
        return await _serve(self._api.parse, request, context)


async def _serve(
    handler: Callable[[Request], Awaitable[Response]],
    request: Request,
    context: grpc.aio.ServicerContext[object, object],
) -> Response:
    try:
        # The caller's deadline bounds the compute this call starts (compute/deadlines.py, compute/pool.py).
        with deadlines.request_scope(context.time_remaining()):
            return await handler(request)
    except ChainruleError as error:
        note_error(error)
        await context.abort_with_status(grpc_status(error))
    except Exception:
        # A bug: log the traceback here, tell the caller nothing about our insides.
        log.exception("unexpected error in %s", type(request).__name__)
        internal = InternalError("internal error")
        note_error(internal)
        await context.abort_with_status(grpc_status(internal))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel options: message limits, connection bounds and keepalive, no silent port sharing."""
    options = [
        # grpc enables SO_REUSEPORT by default, which lets a second server start silently on a
        # taken port. The multi-process mode turns it on deliberately.
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_response_bytes),
        # Connections: capped, a handshake within the header timeout, idle ones closed.
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.server_handshake_timeout_ms", _ms(settings.header_timeout_seconds)),
        ("grpc.max_connection_idle_ms", _ms(settings.grpc_idle_seconds)),
        # Keepalive: the server pings quiet connections to find dead peers, and refuses (GOAWAY
        # after two strikes) clients that ping more often than every 10 s without calls.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
    ]
    if settings.grpc_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", _ms(settings.grpc_connection_age_seconds)),
            ("grpc.max_connection_age_grace_ms", _ms(settings.grace_seconds)),
        ]
    return options


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def create_server(
    settings: Settings,
    api: ChainruleApi,
    health_servicer: health.aio.HealthServicer | None = None,
    instrumentation: Instrumentation | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build (not start) the gRPC server with chainrule, health and reflection; return it and its port.

    `instrumentation` (request ids, metrics, auth) is built into each handler as it is registered.
    """
    server = grpc.aio.server(options=server_options(settings))
    # The generated `add_*_to_server` functions are typed for a server; they call the two methods
    # `Registration` has.
    target: Any = server if instrumentation is None else Registration(server, instrumentation)
    pb_grpc.add_DifferentiationServiceServicer_to_server(DifferentiationServicer(api), target)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer or health.aio.HealthServicer(), target)
    names = (
        SERVICE_NAME,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    # What `reflection.enable_server_reflection` does, but onto `target` (it checks the server's type).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), target
    )
    address = bind_address(settings.host, settings.grpc_port)
    tls = TlsFiles.from_settings(settings)
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.grpc_credentials())
    except RuntimeError as error:
        raise PortInUseError(f"cannot listen for gRPC on {address}: {error}") from error
    if port == 0:
        raise PortInUseError(f"cannot listen for gRPC on {address}")
    return server, port
