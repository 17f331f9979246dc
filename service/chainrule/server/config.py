"""Settings: one frozen object built from an environ mapping (`CHAINRULE_*`), validated at start-up.

Only this module reads the environment. Tests build settings from a plain dict.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from chainrule.engine.limits import ENGINE_LIMITS, Layer, Limit

PREFIX = "CHAINRULE_"
_TRACES_EXPORTERS = {"otlp", "console"}
_HTTP2_DEFAULT_WINDOW, _HTTP2_MAX_WINDOW = 65_535, 2**31 - 1  # RFC 9113, 6.9.2
# An origin as browsers send it: scheme, host and optional port, no path.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:,]+(:[0-9]{1,5})?")
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has a value that cannot be used; raised at start-up, never per request."""


_ENGINE_LIMITS = {declaration.name: declaration for declaration in ENGINE_LIMITS}


def _engine_limit(name: str) -> Any:
    """The setting of an engine limit: `max_<name>`, its default and description as declared."""
    declaration = _ENGINE_LIMITS[name]
    return field(default=declaration.default, metadata={"doc": declaration.description, LIMIT: declaration})


def _server_limit(name: str, default: float, unit: str, description: str) -> Any:
    """A limit the server enforces around the engine, declared here with its setting."""
    declaration = Limit(name, default, unit, description, Layer.SERVER)
    return field(default=default, metadata={"doc": description, LIMIT: declaration})


# Parse's own symbolic pool (app._parse_executor), not a setting: one worker, as a check takes a few
# milliseconds, and a spare, so that the next check need not wait for a killed one's replacement.
PARSE_WORKERS, PARSE_SPARES = 1, 1

LIMIT = "limit"
# Marks a setting that bounds a resource shared by all calls (workers, queues, memory, caches): the
# tables of docs/security.md and docs/operations.md list them with the limits.
BOUND = "bound"


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with. Field `name` is read from `CHAINRULE_NAME`
    (or the variable its metadata names under `env`: the OpenTelemetry ones)."""

    host: str = field(default="127.0.0.1", metadata={"doc": "address both servers bind"})
    grpc_port: int = field(default=50051, metadata={"doc": "gRPC port (0 picks a free one)"})
    http_port: int = field(default=8080, metadata={"doc": "HTTP port for REST, metrics, health"})
    grace_seconds: float = field(default=10.0, metadata={"doc": "how long calls in flight may finish"})
    # Multi-process serving (see supervisor.py): server processes, each with its own symbolic workers.
    workers: int = field(
        default=0,
        metadata={"doc": "server processes (not symbolic workers); 0: one per CPU; 1: no supervisor"},
    )
    heartbeat_seconds: float = field(
        default=5.0,
        metadata={
            "doc": "the supervisor kills and replaces a server process whose event loop has not "
            "ticked for this long (stopped, hung, or stalled by a bug); 0: never"
        },
    )
    reuse_port: bool = field(
        default=False, metadata={"doc": "share both ports (SO_REUSEPORT); the supervisor sets it"}
    )
    metrics_dir: str = field(
        default="", metadata={"doc": "Prometheus multiprocess directory; empty: a fresh temporary one"}
    )
    log_level: str = field(default="INFO", metadata={"doc": "DEBUG logs one line per request"})
    log_format: str = field(default="text", metadata={"doc": "text or json (JSON lines)"})
    access_log: bool = field(
        default=True, metadata={"doc": "an access line for every request; false: for failed requests only"}
    )
    access_log_failures_per_second: float = field(
        default=50.0,
        metadata={
            "doc": "access lines of failed requests (not bugs) each server process writes a second, on "
            "average; those past it are counted by code in one line; 0: every one"
        },
    )
    max_request_bytes: int = _server_limit(
        "request_bytes", 64 * 1024 * 1024, "bytes", "bytes in one request message or HTTP body"
    )
    # Evaluate, GradientAtPoint and Jacobian replies are sized before computing (points x output
    # columns x the encoding's bytes per value, see sizing.py); larger batches go in chunks (both
    # clients chunk).
    max_response_bytes: int = _server_limit(
        "response_bytes", 64 * 1024 * 1024, "bytes", "bytes in one reply message or HTTP body"
    )
    max_working_bytes: int = _server_limit(
        "working_bytes",
        256 * 1024 * 1024,
        "bytes",
        "memory one Evaluate, GradientAtPoint or Jacobian may take to compute and encode its reply",
    )
    # Checked before any work proportional to the request: a request has at most 32 variables, and
    # the margin lets callers reuse one point map for several expressions.
    max_field_entries: int = _server_limit(
        "field_entries",
        64,
        "entries",
        "entries in one map or list field of a request (point, points, variables, wrt, formats, expressions)",
    )
    compute_threads: int = field(
        default=4, metadata={BOUND: True, "doc": "threads for symbolic and numeric work"}
    )
    # Connections (see transport/connections.py and grpc_server.server_options).
    max_connections: int = _server_limit(
        "connections", 1000, "connections", "open HTTP connections in one server process"
    )
    # Half by default: one address (a flood, or a proxy in front) leaves the other half to everyone else.
    max_connections_per_caller: int = _server_limit(
        "connections_per_caller",
        0,
        "connections",
        "open HTTP connections of one caller address (IPv6: /64) in one server process; "
        "0: half of MAX_CONNECTIONS",
    )
    # A cached call holds the event loop about half a millisecond: one address pipelining them on 200
    # connections kept 200 ready at every turn of the loop, and everyone else's calls, health checks
    # included, waited a second (an attack hunt, 2026-12-07). Its next ones wait their turn instead.
    max_http_requests_per_caller: int = _server_limit(
        "http_requests_per_caller",
        8,
        "requests",
        "HTTP requests of one caller address (IPv6: /64) in progress at once in one server process; "
        "the next waits, its connection unread, until one of them is answered",
    )
    http_turn_seconds: float = _server_limit(
        "http_turn_seconds",
        1.0,
        "seconds",
        "an HTTP request may wait for its turn among its address's (HTTP_REQUESTS_PER_CALLER); then 429 "
        "with a retry delay",
    )
    # grpc cannot share its connections fairly or evict one to make room: the cap must exceed what one
    # address can open to one port (65,535 source ports), and is lowered to fit the descriptor limit.
    max_grpc_connections: int = _server_limit(
        "grpc_connections",
        70_000,
        "connections",
        "open gRPC connections in one server process (at most the file descriptor limit allows)",
    )
    header_timeout_seconds: float = _server_limit(
        "header_timeout_seconds",
        30.0,
        "seconds",
        "for a complete HTTP request head after connecting or a response, and for each piece of its body; "
        "for a gRPC request message to arrive once read",
    )
    # Machines, not people, send the HTTP/2 preface (and TLS): a client does it in milliseconds. Short,
    # because grpc cannot evict an idle connection to make room at its cap as the HTTP side does.
    grpc_handshake_seconds: float = _server_limit(
        "grpc_handshake_seconds", 5.0, "seconds", "for a new gRPC connection's TLS and HTTP/2 handshake"
    )
    http_idle_seconds: float = _server_limit(
        "http_idle_seconds", 5.0, "seconds", "an idle kept-alive HTTP connection stays open"
    )
    grpc_idle_seconds: float = _server_limit(
        "grpc_idle_seconds", 300.0, "seconds", "a gRPC connection with no call stays open"
    )
    grpc_connection_age_seconds: float = _server_limit(
        "grpc_connection_age_seconds",
        1800.0,
        "seconds",
        "a gRPC connection lives (then GOAWAY; clients reconnect and rebalance); 0: for ever",
    )
    malloc_keep_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata={"doc": "freed memory glibc keeps for the next batch (no page faults); 0: its defaults"},
    )
    # Killable compute and overload (see compute/pool.py, compute/deadlines.py).
    symbolic_workers: int = field(
        default=2,
        metadata={
            BOUND: True,
            "doc": "processes for cold sympy work, per server process; 0: threads, no kill on overrun",
        },
    )
    symbolic_spares: int = field(default=1, metadata={"doc": "warm symbolic workers kept beyond the above"})
    symbolic_budget_seconds: float = _server_limit(
        "symbolic_budget_seconds",
        5.0,
        "seconds",
        "seconds of symbolic work per request (a caller whose deadline is sooner is answered then, and "
        "its work stops half a second later at most)",
    )
    symbolic_queue: int = field(
        default=64,
        metadata={
            BOUND: True,
            "doc": "symbolic tasks that may wait for a symbolic worker; beyond: RESOURCE_EXHAUSTED",
        },
    )
    numeric_queue: int = field(
        default=16,
        metadata={BOUND: True, "doc": "numeric tasks that may wait for a thread; beyond: RESOURCE_EXHAUSTED"},
    )
    parse_queue: int = field(
        default=16,
        metadata={
            BOUND: True,
            "doc": "Parse calls that may wait for Parse's worker; beyond: RESOURCE_EXHAUSTED",
        },
    )
    worker_memory_bytes: int = _server_limit(
        "worker_memory_bytes",
        1024 * 1024 * 1024,
        "bytes",
        "address space (RLIMIT_AS) of a symbolic worker; 0: none",
    )
    slots_per_caller: int = field(
        default=0,
        metadata={
            BOUND: True,
            "doc": "symbolic workers (and numeric threads) one caller may hold at once; 0: all but one",
        },
    )
    calls_in_flight: int = field(
        default=1024,
        metadata={
            BOUND: True,
            "doc": "calls one server process serves at once; beyond: RESOURCE_EXHAUSTED, retry later",
        },
    )
    max_streams: int = field(
        default=1024,
        metadata={
            BOUND: True,
            "doc": "streaming gRPC calls (health Watch, reflection) one server process keeps open at "
            "once, a sixteenth for one caller, the last eighth for callers holding none; beyond: "
            "RESOURCE_EXHAUSTED, retry later",
        },
    )
    # grpc grants a message being read a window of its declared length before any handler can count
    # it (transport/receiving.py): the messages being read at once bound that memory.
    grpc_receiving_calls: int = field(
        default=4,
        metadata={
            BOUND: True,
            "doc": "gRPC request messages one server process reads at once, each up to MAX_REQUEST_BYTES "
            "(half for one caller); other calls wait for a slot up to HEADER_TIMEOUT_SECONDS",
        },
    )
    # Fixed, as grpc's bandwidth probe is off (transport/grpc_server.py): the probe would widen
    # unread streams' windows too. Each call waiting to read counts at this in `sizing.memory_bound`.
    grpc_stream_window_bytes: int = field(
        default=64 * 1024,
        metadata={
            BOUND: True,
            "doc": "bytes of a gRPC request message accepted before its handler reads it (HTTP/2's "
            "initial stream window): a request up to this size is spared a round trip; each call "
            "waiting to read holds up to this",
        },
    )
    grpc_metadata_bytes: int = field(
        default=8 * 1024,
        metadata={
            BOUND: True,
            "doc": "bytes of one gRPC call's request metadata (headers); beyond: refused by grpc "
            "(RESOURCE_EXHAUSTED) before the call starts",
        },
    )
    request_bytes_in_flight: int = field(
        default=256 * 1024 * 1024,
        metadata={
            BOUND: True,
            "doc": "bytes of the requests one server process serves at once, and of their replies until "
            "sent (at least MAX_REQUEST_BYTES); beyond: RESOURCE_EXHAUSTED, retry later",
        },
    )
    numeric_memory_bytes: int = field(
        default=512 * 1024 * 1024,
        metadata={
            BOUND: True,
            "doc": "working memory of the numeric calls computing at once (at least MAX_WORKING_BYTES); "
            "a call waits until its share fits",
        },
    )
    retry_after_seconds: float = field(
        default=1.0, metadata={"doc": "retry delay suggested to callers turned away by overload"}
    )
    # Authentication and transport security (see docs/security.md); all off by default.
    auth_tokens: str = field(default="", metadata={"doc": "comma-separated bearer tokens accepted"})
    auth_tokens_file: str = field(default="", metadata={"doc": "file of bearer tokens, one a line"})
    metrics_auth: bool = field(default=False, metadata={"doc": "require a token for /metrics too"})
    tls_cert_file: str = field(default="", metadata={"doc": "PEM certificate chain: serve TLS on both ports"})
    tls_key_file: str = field(default="", metadata={"doc": "PEM private key of the certificate"})
    tls_client_ca_file: str = field(
        default="", metadata={"doc": "PEM CA bundle: require client certificates it signed (mutual TLS)"}
    )
    # The engine's limits (engine/limits.py declares each: default, unit, description).
    max_expression_length: int = _engine_limit("expression_length")
    max_parse_nodes: int = _engine_limit("parse_nodes")
    max_parse_depth: int = _engine_limit("parse_depth")
    max_integer_digits: int = _engine_limit("integer_digits")
    max_power_bits: int = _engine_limit("power_bits")
    max_factorial_argument: int = _engine_limit("factorial_argument")
    max_variables: int = _engine_limit("variables")
    max_exponent_depth: int = _engine_limit("exponent_depth")
    max_root_bits: int = _engine_limit("root_bits")
    max_root_degree: int = _engine_limit("root_degree")
    max_derivative_order: int = _engine_limit("derivative_order")
    max_derivative_nodes: int = _engine_limit("derivative_nodes")
    max_points: int = _engine_limit("points")
    max_numeric_cost: int = _engine_limit("numeric_cost")
    max_code_bytes: int = _engine_limit("code_bytes")
    max_series_order: int = _engine_limit("series_order")
    max_jacobian_rows: int = _engine_limit("jacobian_rows")
    # Caches (see cache.Caches): each cache is bounded by entries and by approximate bytes.
    cache_entries: int = field(
        default=10_000,
        metadata={
            BOUND: True,
            "doc": "entries in each symbolic cache (one per RPC, parse, derivative, latex); 0 = off",
        },
    )
    cache_bytes: int = field(
        default=32 * 1024 * 1024, metadata={BOUND: True, "doc": "approximate bytes in each symbolic cache"}
    )
    cache_compiled_entries: int = field(
        default=1_000,
        metadata={BOUND: True, "doc": "compiled numeric functions kept (values, gradients, Hessians)"},
    )
    cache_compiled_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={BOUND: True, "doc": "approximate bytes of compiled numeric functions"},
    )
    # HTTP transport.
    playground: bool = field(
        default=True, metadata={"doc": "serve the playground at `/` (the API reference at `/docs` stays)"}
    )
    cors_origins: str = field(
        default="",
        metadata={"doc": "comma-separated origins allowed by CORS (`*` for any); empty turns CORS off"},
    )
    # Tracing (tracing.py): the standard OpenTelemetry variables, not CHAINRULE_ ones. The SDK reads
    # the rest of OTEL_* itself (endpoint, headers, service name, resource attributes, sampler).
    otel_traces_exporter: str = field(
        default="none",
        metadata={
            "env": "OTEL_TRACES_EXPORTER",
            "doc": "otlp, console or none (comma-separated for several); needs the `otel` extra",
        },
    )
    otel_exporter_otlp_protocol: str = field(
        default="grpc",
        metadata={"env": "OTEL_EXPORTER_OTLP_PROTOCOL", "doc": "grpc or http/protobuf: how otlp exports"},
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `CHAINRULE_*` from `environ` (default: the process environment); overrides win."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = source.get(env_name(item))
            if raw is not None:
                values[item.name] = _convert(item.name, raw, _parser_for(item.type))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Refuse values the server cannot run with, naming the variable."""
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):  # nan < 0 is False: no bound at all
                raise ConfigError(f"{env_name(item)} must be a finite number, got {value}")
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{env_name(item)} must not be negative, got {value}")
        for name in ("grpc_port", "http_port"):
            if getattr(self, name) > 65535:
                raise ConfigError(f"{PREFIX}{name.upper()} must be a port number, got {getattr(self, name)}")
        if self.log_format not in {"text", "json"}:
            raise ConfigError(f"{PREFIX}LOG_FORMAT must be 'text' or 'json', got {self.log_format!r}")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"{PREFIX}LOG_LEVEL is not a logging level: {self.log_level!r}")
        for name in ("grpc_receiving_calls", "max_streams", "max_http_requests_per_caller"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1, got {getattr(self, name)}")
        if not _HTTP2_DEFAULT_WINDOW <= self.grpc_stream_window_bytes <= _HTTP2_MAX_WINDOW:
            raise ConfigError(
                f"{PREFIX}GRPC_STREAM_WINDOW_BYTES must be between {_HTTP2_DEFAULT_WINDOW} (HTTP/2's "
                f"default) and {_HTTP2_MAX_WINDOW}, got {self.grpc_stream_window_bytes}"
            )
        if self.compute_threads < 1:
            raise ConfigError(f"{PREFIX}COMPUTE_THREADS must be at least 1, got {self.compute_threads}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError(f"{PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE go together: set both")
        if self.symbolic_budget_seconds <= 0:
            raise ConfigError(f"{PREFIX}SYMBOLIC_BUDGET_SECONDS must be positive")
        for total, single in (
            ("request_bytes_in_flight", "max_request_bytes"),
            ("numeric_memory_bytes", "max_working_bytes"),
        ):
            if getattr(self, total) < getattr(self, single):
                raise ConfigError(
                    f"{PREFIX}{total.upper()} ({getattr(self, total)}) must be at least "
                    f"{PREFIX}{single.upper()} ({getattr(self, single)}): one call could never start"
                )
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError(f"{PREFIX}TLS_CLIENT_CA_FILE (mutual TLS) needs {PREFIX}TLS_CERT_FILE too")
        unknown = set(self.traces_exporters) - _TRACES_EXPORTERS
        if unknown:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER may name {', '.join(sorted(_TRACES_EXPORTERS))}; "
                f"got {self.otel_traces_exporter!r}"
            )
        if self.otel_exporter_otlp_protocol not in {"grpc", "http/protobuf"}:
            protocol = self.otel_exporter_otlp_protocol
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got {protocol!r}")
        for origin in self.cors_origin_list:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"{PREFIX}CORS_ORIGINS entries must be `*` or scheme://host[:port], got {origin!r}"
                )

    @property
    def connections_per_caller(self) -> int:
        """The open HTTP connections one caller may hold (`max_connections_per_caller`, 0: half)."""
        return min(self.max_connections, self.max_connections_per_caller or max(1, self.max_connections // 2))

    @property
    def traces_exporters(self) -> tuple[str, ...]:
        """The span exporters to run (empty: tracing off)."""
        names = (part.strip().lower() for part in self.otel_traces_exporter.split(","))
        return tuple(name for name in names if name and name != "none")

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The allowed CORS origins, parsed from the comma-separated setting."""
        return tuple(part.strip() for part in self.cors_origins.split(",") if part.strip())


def env_name(item: dataclasses.Field[Any]) -> str:
    """The environment variable a setting is read from: `CHAINRULE_<NAME>` unless it names another."""
    return str(item.metadata.get("env", PREFIX + item.name.upper()))


def _parser_for(annotation: object) -> Callable[[str], object]:
    # Annotations are strings under `from __future__ import annotations`.
    parsers: dict[str, Callable[[str], object]] = {
        "int": int,
        "float": float,
        "str": str,
        "bool": _parse_bool,
    }
    return parsers.get(str(annotation), str)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _convert(name: str, raw: str, parse: Callable[[str], object]) -> object:
    try:
        return parse(raw.strip())
    except ValueError as error:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not valid: {error}") from error


def bound_settings() -> list[str]:
    """The names of the settings that bound a shared resource, in declaration order."""
    return [item.name for item in fields(Settings) if item.metadata.get(BOUND)]


def limit_settings() -> list[tuple[str, Limit]]:
    """(setting name, declaration) of every limit: the engine's (parser first), then the server's."""
    found = [(item.name, item.metadata[LIMIT]) for item in fields(Settings) if LIMIT in item.metadata]
    order = list(Layer)
    return sorted(found, key=lambda pair: order.index(pair[1].layer))
