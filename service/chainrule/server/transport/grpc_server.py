"""The gRPC transport: a typed `grpc.aio` servicer over `api.ChainruleApi`, and its server factory."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from chainrule.engine.errors import ChainruleError, InternalError, InvalidArgument
from chainrule.server import cache, sizing
from chainrule.server.api import ChainruleApi
from chainrule.server.batches import Reply
from chainrule.server.cache import LruCache
from chainrule.server.compute import deadlines
from chainrule.server.config import Settings
from chainrule.server.logs import note_error
from chainrule.server.sizing import PROTOBUF, Wire
from chainrule.server.transport import connections, wire
from chainrule.server.transport.auth import Callers, TlsFiles
from chainrule.server.transport.health import Health
from chainrule.server.transport.instrumentation import Instrumentation, Registration, abort_unless_ended
from chainrule.server.transport.status import grpc_status
from chainrule.v1 import chainrule_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DifferentiationService"].full_name
# What gRPC health reports on: the server as a whole ("") and chainrule's service.
HEALTH_SERVICES = ("", SERVICE_NAME)

Request = TypeVar("Request", bound=Message)
# Runs a function off the event loop: `ChainruleApi.transcoded`.
OffLoop = Callable[..., Awaitable[Any]]
Context = grpc.aio.ServicerContext[Any, Any]
# Requests and replies bigger than this are parsed and serialised on a thread, off the event loop.
OFFLOAD_BYTES = 256 * 1024
# At most this many fields of a big request are walked on the event loop to find its columns: 20 us
# for six columns, 0.14 ms for 256 small fields, 0.23 ms for 64 columns and 64 variables
# (`field_entries` of each). A request with more is parsed on a thread instead.
_FIELDS_ON_LOOP = 256
_STREAMS_PER_CALL_SLOT = 4
# Descriptors kept for everything but connections: listening sockets, the worker pool's pipes, log,
# metrics and heartbeat files, grpc's and asyncio's own (a few dozen measured; the rest is margin).
DESCRIPTOR_RESERVE = 1024
# What one IPv4 address can open to one port: a connection per source port. A gRPC cap above it
# leaves room for other callers whatever one address does (grpc cannot evict to make room).
ONE_ADDRESS_CONNECTIONS = 65_535


# A repeated request is answered from the bytes of its reply, kept by the bytes of the request
# (at most `cache.KEY_BYTES` of them) in the cache that holds the method's responses whole: no
# parse, no key, no serialisation (a cached Differentiate served 29% more calls a second,
# bench/PROFILE.md, ninth profile). Equal bytes are the same request, whose response the cache
# holds whole anyway; it is counted a hit of that cache, and its bytes in the cache's bound. The
# first item marks the key apart from the API layer's own (no other key holds this object).
_REQUEST_BYTES = object()


class PortInUseError(RuntimeError):
    """The gRPC port could not be bound (taken, or not ours to take)."""


class DifferentiationServicer:
    """Adapts each RPC to the API layer and turns errors into rich `google.rpc.Status` values.

    Its handlers take and return bytes (registered without (de)serializers, see `_add_service`):
    grpc.aio would otherwise parse every request and serialise every reply on the event loop, and a
    64 MB batch takes a tenth of a second to parse. A big batch request has its columns read in
    place instead (`_parsed`), and its reply is serialised on the thread that computed it; other big
    requests and replies are parsed and serialised on a thread.
    """

    def __init__(self, api: ChainruleApi, callers: Callers | None = None) -> None:
        self._api = api
        self._callers = callers or Callers()

    async def Differentiate(self, request: bytes, context: Context) -> bytes:
        caches = self._api.caches
        return await self._serve(
            self._api.differentiate, pb.DifferentiateRequest, request, context, caches.differentiate
        )

    async def Evaluate(self, request: bytes, context: Context) -> bytes:
        return await self._serve(self._api.evaluate_reply, pb.EvaluateRequest, request, context)

    async def GradientAtPoint(self, request: bytes, context: Context) -> bytes:
        return await self._serve(self._api.gradient_reply, pb.GradientAtPointRequest, request, context)

    async def Jacobian(self, request: bytes, context: Context) -> bytes:
        return await self._serve(self._api.jacobian_reply, pb.JacobianRequest, request, context)

    async def Series(self, request: bytes, context: Context) -> bytes:
        caches = self._api.caches
        return await self._serve(self._api.series, pb.SeriesRequest, request, context, caches.series)

    async def Parse(self, request: bytes, context: Context) -> bytes:
        caches = self._api.caches
        return await self._serve(self._api.parse, pb.ParseRequest, request, context, caches.parse_reply)

    async def GetServerInfo(self, request: bytes, context: Context) -> bytes:
        return await self._serve(self._api.server_info, pb.GetServerInfoRequest, request, context)

    async def _serve(
        self,
        handler: Callable[[Request, Wire], Awaitable[Message | Reply[Any]]],
        message_type: type[Request],
        raw: bytes,
        context: Context,
        replies: LruCache[Hashable, Any] | None = None,
    ) -> bytes:
        """`replies`: the cache holding the method's responses whole (the API layer's first level),
        where a short request's serialised reply is kept by the request's bytes too (`_REQUEST_BYTES`)."""
        try:
            # The caller's deadline bounds the compute this call starts (see deadlines.py, pool.py);
            # who the caller is decides its share of the compute (executors.Admission).
            caller = functools.partial(self._callers.of_grpc, context)
            # The call counts until grpc has delivered its reply, not until it is made: a client that
            # never reads keeps its replies in our memory (executors.CallLimit).
            admitted = self._api.calls.admit(len(raw), caller)
            # (grpc-stubs types the callback as a class of its own, which no function is.)
            context.add_done_callback(lambda _: admitted.release())  # type: ignore[arg-type]
            if len(raw) > cache.KEY_BYTES:
                replies = None
            if replies is not None:
                kept: bytes | None = replies.lookup((_REQUEST_BYTES, raw))
                if kept is not None:
                    admitted.charge(len(kept))
                    return kept
            with deadlines.request_scope(context.time_remaining(), caller):
                request, read = await _parsed(
                    message_type, raw, self._api.settings.max_field_entries, self._api.transcoded
                )
                response = await handler(request, read)
                reply = await _serialized(response, self._api)
                self._api.check_reply_bytes(len(reply))
                admitted.charge(len(reply))
                if replies is not None:
                    replies.put((_REQUEST_BYTES, raw), reply, len(reply))
                return reply
        except ChainruleError as error:
            note_error(error)
            await abort_unless_ended(context, grpc_status(error))
        except Exception:
            # A bug: log the traceback here, tell the caller nothing about our insides.
            log.exception("unexpected error in %s", message_type.__name__)
            internal = InternalError("internal error")
            note_error(internal)
            await abort_unless_ended(context, grpc_status(internal))


async def _parsed(
    message_type: type[Request], raw: bytes, max_entries: int, off_loop: OffLoop
) -> tuple[Request, Wire]:
    """The request, and what the API layer is told about it. A big batch request has its columns
    read from `raw` as views, on the event loop (walking a few dozen fields, no payload), and only
    its other fields parsed; any other big request is parsed `off_loop` (a thread in the caller's
    share: `ChainruleApi.transcoded`)."""
    try:
        if len(raw) <= OFFLOAD_BYTES:
            return message_type.FromString(raw), Wire(PROTOBUF, len(raw))
        descriptor = cast(Descriptor, message_type.DESCRIPTOR)
        split = wire.split_points(
            raw, descriptor, max_entries, max_fields=_FIELDS_ON_LOOP, max_rest=OFFLOAD_BYTES
        )
        if split is None:
            request = await off_loop(_counted_then_parsed, message_type, raw, max_entries)
            return request, Wire(PROTOBUF, len(raw))
        wire.check_message_entries(split.rest, descriptor, max_entries)
        return message_type.FromString(split.rest), Wire(PROTOBUF, len(split.rest), split.points)
    except DecodeError as error:
        raise InvalidArgument(
            f"the request is not a valid {message_type.DESCRIPTOR.full_name} message: {error}",
            reason="MALFORMED_MESSAGE",
        ) from None


def _counted_then_parsed(message_type: type[Request], raw: bytes, max_entries: int) -> Request:
    # Parsing builds an object per map entry: count them first (wire.py).
    wire.check_message_entries(raw, cast(Descriptor, message_type.DESCRIPTOR), max_entries)
    return message_type.FromString(raw)


async def _serialized(response: Message | Reply[Any], api: ChainruleApi) -> bytes:
    # Batch methods answer with a `batches.Reply` (its columns appended to the message's bytes),
    # serialised where it was computed unless that was here.
    if isinstance(response, Reply):
        if not response.encoded() and response.carries_points():
            return await api.transcoded(response.SerializeToString)
        return response.SerializeToString()
    if sizing.carries_points(response) or response.ByteSize() > OFFLOAD_BYTES:
        # Off the event loop, in the caller's share of the numeric threads (a long text reply, a
        # cached 16 MB Differentiate, costs some 2 ms a copy: many at once held other calls).
        return await api.transcoded(_bytes_of, response)
    return response.SerializeToString()


def _bytes_of(message: Message) -> bytes:
    return message.SerializeToString()


def _add_service(servicer: DifferentiationServicer, target: Any) -> None:
    """Register the chainrule methods, bytes in and out, by the service's descriptor."""
    service = pb.DESCRIPTOR.services_by_name["DifferentiationService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        method.name: grpc.unary_unary_rpc_method_handler(getattr(servicer, method.name))
        for method in service.methods
    }
    target.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    target.add_registered_method_handlers(SERVICE_NAME, handlers)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel options: message limits that fit the largest batch, connection bounds and keepalive,
    no silent port sharing, and a backlog of calls not yet picked up that outlasts our own limit on
    calls in flight."""
    options = [
        # grpc enables SO_REUSEPORT by default, which lets a second server start silently on a
        # taken port. The multi-process mode turns it on deliberately.
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_response_bytes),
        # Streams per connection: room for a burst past `calls_in_flight`, so the calls over it are
        # refused by the call limit (RESOURCE_EXHAUSTED with a retry delay, counted). At exactly
        # `calls_in_flight`, a client that opens a burst on a fresh connection before it has read
        # our SETTINGS gets the excess reset as REFUSED_STREAM: UNAVAILABLE, uncounted, no delay.
        ("grpc.max_concurrent_streams", _STREAMS_PER_CALL_SLOT * settings.calls_in_flight),
        # A stream's window stays at its initial size (GRPC_STREAM_WINDOW_BYTES) until its message
        # is read (receiving.py): grpc's bandwidth probe would widen every stream's, unread ones too
        # (to 64 MiB on loopback). A message being read gets a window of its whole length either way.
        # The probe also raised the frame size the server accepts: without it, frames of 16 KiB made
        # a 32 MB request 8% slower end to end; 4 MiB frames win back most of that (windows still
        # bound what is sent).
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", settings.grpc_stream_window_bytes),
        ("grpc.http2.max_frame_size", 4 * 1024 * 1024),
        # Messages arrive as sent (identity): grpc inflates a compressed one inside the read that
        # the event loop drives, and a 58 KB gzip frame is a 60 MB request (an attack hunt: eight
        # such calls at a time stalled other callers' calls 2-3 s). A compressed message is
        # UNIMPLEMENTED from grpc itself, before any inflation; grpc-accept-encoding says identity.
        ("grpc.compression_enabled_algorithms_bitset", 1 << 0),
        # One limit for a call's metadata, refused whole past it (grpc's soft limit refuses at
        # random between 8 and 16 KiB): what each call in the backlog below may hold of it.
        ("grpc.max_metadata_size", settings.grpc_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.grpc_metadata_bytes),
        ("grpc.server.max_pending_requests", sizing.grpc_backlog(settings)),
        ("grpc.server.max_pending_requests_hard_limit", sizing.grpc_backlog(settings)),
        # Connections: capped, a handshake within the header timeout, idle ones closed.
        ("grpc.max_allowed_incoming_connections", grpc_connection_cap(settings)),
        ("grpc.server_handshake_timeout_ms", _ms(settings.grpc_handshake_seconds)),
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


def grpc_connection_cap(settings: Settings, descriptors: int | None = None) -> int:
    """`max_grpc_connections`, lowered so that it, the HTTP cap and `DESCRIPTOR_RESERVE` fit the
    descriptor limit (default: this process's): at the cap grpc closes new connections at once,
    while out of descriptors every transport of the process fails."""
    if descriptors is None:
        descriptors = connections.descriptor_limit()
    room = descriptors - settings.max_connections - DESCRIPTOR_RESERVE
    return max(1, min(settings.max_grpc_connections, room))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def create_server(
    settings: Settings,
    api: ChainruleApi,
    health_servicer: Health | None = None,
    instrumentation: Instrumentation | None = None,
    callers: Callers | None = None,
    *,
    listen: bool = True,
) -> tuple[grpc.aio.Server, int]:
    """Build (not start) the gRPC server with chainrule, health and reflection; return it and its port.

    `listen=False` leaves the port to `listen_on_port` (a port of 0 must be bound to be known).

    `instrumentation` (request ids, metrics, auth) is built into each handler as it is registered;
    `callers` says who each call comes from (by token or address), for fair shares of compute.
    """
    server = grpc.aio.server(options=server_options(settings))
    # The generated `add_*_to_server` functions are typed for a server; they call the two methods
    # `Registration` has.
    target: Any = server if instrumentation is None else Registration(server, instrumentation)
    _add_service(DifferentiationServicer(api, callers), target)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer or Health(HEALTH_SERVICES), target)
    names = (
        SERVICE_NAME,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    # What `reflection.enable_server_reflection` does, but onto `target` (it checks the server's type).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), target
    )
    if listen:
        return server, listen_on_port(server, settings)
    return server, settings.grpc_port


def listen_on_port(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind and listen on the gRPC port (grpc listens at once, before `start`); the port bound."""
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
    return port
