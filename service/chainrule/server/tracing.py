"""OpenTelemetry tracing: off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`).

The OpenTelemetry packages are the `otel` extra of the server distribution (`pip install
'chainrule[otel]'`; `make setup` installs it) and are imported only when tracing is on, so the
server runs without them. `config.Settings` reads `OTEL_TRACES_EXPORTER` and
`OTEL_EXPORTER_OTLP_PROTOCOL`; the SDK reads the other standard variables itself
(`OTEL_SERVICE_NAME`, default `chainrule`; `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_EXPORTER_OTLP_ENDPOINT`,
`..._HEADERS`; `OTEL_TRACES_SAMPLER`; `OTEL_PROPAGATORS`, default W3C `traceparent` + baggage).

Spans:
- one SERVER span per call, continuing the caller's `traceparent`: for gRPC made by the
  instrumentation (instrumentation.py; named `chainrule.v1.DifferentiationService/Differentiate`,
  with `rpc.*` attributes and the request id), for HTTP by opentelemetry-instrumentation-asgi
  (`POST /v1/differentiate`);
- under it, one span per stage of work: parse, differentiate, simplify, compile, evaluate (a
  cached answer has none). Symbolic stages run in the killable worker processes: each job times
  its stages where it runs (`jobs.Stage`: wall-clock start, duration, pid) and returns them with
  its result, and the server process records the spans. Nothing about tracing crosses into a
  worker: no exporter per process, and a worker killed mid-task loses only its own timings (the
  RPC span still ends, with the error).

Log lines carry the current trace and span ids (logs.py) while tracing is on.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from chainrule.engine.errors import Code
from chainrule.server import logs
from chainrule.server.config import ConfigError, Settings
from chainrule.server.version import VERSION

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span
    from starlette.middleware import Middleware

    from chainrule.server.compute.jobs import Stage

# Server span status per the RPC semantic conventions: these codes are the server's failure.
_SERVER_ERRORS = frozenset(
    {
        Code.UNKNOWN,
        Code.DEADLINE_EXCEEDED,
        Code.UNIMPLEMENTED,
        Code.INTERNAL,
        Code.UNAVAILABLE,
        Code.DATA_LOSS,
    }
)


class Tracing:
    """Spans for one server process, from one `TracerProvider` (the SDK's global one is left alone)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import propagate, trace  # noqa: PLC0415 - the `otel` extra, loaded when on

        self.provider = provider
        self._tracer = provider.get_tracer("chainrule", VERSION)
        self._extract = propagate.extract
        self._trace = trace

    @contextlib.contextmanager
    def rpc_span(self, method: str, metadata: Iterable[tuple[str, Any]] | None) -> Iterator[Span]:
        """The SERVER span of one gRPC call, a child of the caller's `traceparent` if it sent one."""
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        service, _, name = method.lstrip("/").rpartition("/")
        with self._tracer.start_as_current_span(
            method.lstrip("/"),
            context=self._extract(carrier),
            kind=self._trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def end_rpc(self, span: Span, code: Code) -> None:
        """Record how the call ended and its request id."""
        span.set_attribute("rpc.grpc.status_code", int(code))
        span.set_attribute("chainrule.request_id", logs.current_request().request_id)
        if code in _SERVER_ERRORS:
            span.set_status(self._trace.StatusCode.ERROR, code.name)

    def stage(self, stage: Stage) -> None:
        """A finished span for one stage of work, timed where it ran, under the current span."""
        span = self._tracer.start_span(
            stage.name, start_time=stage.start_ns, attributes={"process.pid": stage.pid}
        )
        span.end(end_time=stage.start_ns + int(stage.seconds * 1e9))

    def http_middleware(self) -> Middleware:
        """The ASGI middleware that makes the SERVER span of each HTTP request (outermost)."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware  # noqa: PLC0415
        from starlette.middleware import Middleware  # noqa: PLC0415

        # One span per request: no child spans for each ASGI receive and send message.
        return Middleware(
            OpenTelemetryMiddleware, tracer_provider=self.provider, exclude_spans=["receive", "send"]
        )

    def current_ids(self) -> tuple[str, str] | None:
        """The current trace and span ids in hex, as logs show them; None outside a span."""
        context = self._trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    def shutdown(self) -> None:
        """Export what is buffered and stop."""
        self.provider.shutdown()


def configure_tracing(settings: Settings) -> Tracing | None:
    """The tracing `settings` ask for, exporting with a batch processor; None when it is off."""
    names = settings.traces_exporters
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError as error:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={settings.otel_traces_exporter} needs the OpenTelemetry packages: "
            f"pip install 'chainrule[otel]' ({error})"
        ) from error
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read by the SDK
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "chainrule"}))
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, settings)))
    return Tracing(provider)


def _exporter(name: str, settings: Settings) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter()
    protocol = "grpc" if settings.otel_exporter_otlp_protocol == "grpc" else "http"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{protocol}.trace_exporter")
    except ImportError as error:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'chainrule[otel]' ({error})"
        ) from error
    exporter: SpanExporter = module.OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
    return exporter
