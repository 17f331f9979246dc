"""Bearer-token authentication for both transports, and the TLS material they serve with.

Off unless tokens are configured (`CHAINRULE_AUTH_TOKENS`, `CHAINRULE_AUTH_TOKENS_FILE`). Tokens
are compared in constant time against every configured token (no early exit, so timing tells
neither which token nor how much of one matched). Always exempt: gRPC health checking
(`grpc.health.v1.Health/*`) and HTTP `/healthz`, `/readyz`, since Kubernetes probes send no token;
CORS preflights (browsers send no credentials on them); the pages `/` and `/docs` and their
`/static/` files, which are the same for everyone and hold no data (a browser cannot send a token
when it opens a page: the page asks for one and sends it with each call); and `/metrics` unless
`CHAINRULE_METRICS_AUTH` is on. Server reflection requires a token: it describes the API to
whoever asks. Failures are UNAUTHENTICATED (gRPC) or 401 with `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from starlette.types import ASGIApp, Receive, Scope, Send

from chainrule.engine.errors import Unauthenticated
from chainrule.server.config import PREFIX, ConfigError, Settings
from chainrule.server.logs import note_caller, note_error
from chainrule.server.transport.pages import PAGE_PATHS, STATIC_PREFIX
from chainrule.server.transport.status import error_response

HEALTH_PREFIX = "/grpc.health.v1.Health/"
HTTP_OPEN_PATHS = frozenset({"/healthz", "/readyz"}) | PAGE_PATHS
_BEARER = "bearer "
_CHALLENGE = 'Bearer realm="chainrule"'


def load_tokens(settings: Settings) -> tuple[bytes, ...]:
    """The accepted tokens from the setting and the file (blank lines and `#` comments skipped)."""
    tokens = [part.strip() for part in settings.auth_tokens.split(",")]
    if settings.auth_tokens_file:
        try:
            text = Path(settings.auth_tokens_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{PREFIX}AUTH_TOKENS_FILE cannot be read: {error}") from error
        tokens += [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    return tuple(token.encode() for token in tokens if token)


@dataclass(frozen=True)
class TokenChecker:
    """Checks `Authorization: Bearer <token>` values against the configured tokens."""

    tokens: tuple[bytes, ...]

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def accepts(self, authorization: str | bytes | None) -> bool:
        """True when the header carries one of the tokens; compares against all of them every time."""
        return self.identify(authorization) is not None

    def identify(self, authorization: str | bytes | None) -> str | None:
        """The caller's name in logs (`token:` and a fingerprint of the token), or None if refused."""
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        if not authorization or authorization[: len(_BEARER)].lower() != _BEARER:
            return None
        # HTTP's optional whitespace only: str.strip() took a no-break space (b"\xa0" read as latin-1)
        # off the token too (a regression hunt).
        offered = authorization[len(_BEARER) :].strip(" \t").encode("utf-8", "surrogateescape")
        matched: bytes | None = None
        for token in self.tokens:
            if hmac.compare_digest(offered, token):
                matched = token
        return None if matched is None else fingerprint(matched)


def fingerprint(token: bytes) -> str:
    """A short name for a token that logs can show: 8 hex digits of its SHA-256, never the token."""
    return "token:" + hashlib.sha256(token).hexdigest()[:8]


@dataclass(frozen=True)
class Callers:
    """Who a call comes from, for sharing compute fairly (see `executors.Admission`).

    The bearer token's fingerprint (never the token) when tokens are configured, else the peer's IP
    address: not the port, or opening more connections would buy a larger share; IPv6 peers by
    their /64 network, since one host commonly holds a whole /64.
    """

    checker: TokenChecker = TokenChecker(())

    def identify(self, authorization: str | bytes | None, address: str) -> str:
        if self.checker.enabled:
            found = self.checker.identify(authorization)
            if found is not None:
                return found
        return address_caller(address)

    def of_grpc(self, context: Any) -> str:
        """The caller of a gRPC call, from its metadata and `context.peer()` (`ipv4:1.2.3.4:5678`)."""
        if not self.checker.enabled:
            return _peer_caller(context.peer())
        header, _ = authorization(context.invocation_metadata(), "authorization")
        return self.identify(header, grpc_peer_address(context.peer()))

    def of_http(self, scope: Mapping[str, Any]) -> str:
        """The caller of an HTTP request, from its ASGI scope (`client` and the headers)."""
        header = None
        if self.checker.enabled:
            header, _ = authorization(scope.get("headers"), b"authorization")
        client = scope.get("client")
        return self.identify(header, str(client[0]) if client else "")


def authorization(pairs: Iterable[tuple[Any, Any]] | None, key: Any) -> tuple[Any, bool]:
    """The one `key` header of `pairs` (None if none or several), and whether there were several:
    the first of two was taken, so `[good, wrong]` passed and `[wrong, good]` did not (an
    independent attacker); which one a proxy adds or keeps is anyone's guess, so several are refused."""
    found = [value for name, value in pairs or () if name == key]
    return (found[0] if len(found) == 1 else None), len(found) > 1


def address_caller(address: str) -> str:
    """The caller an address stands for when no token says who it is: the IP (IPv6: its /64)."""
    return f"address:{_network(address)}"


def grpc_peer_address(peer: str) -> str:
    """The address of a gRPC peer string, without its port: `ipv6:[::1]:5678` gives `::1`."""
    kind, _, rest = peer.partition(":")
    if kind in {"ipv4", "ipv6"}:
        return rest.rpartition(":")[0].strip("[]")
    return peer


# Every call asks who its caller is (executors.CallLimit counts each caller's calls; a gRPC call's
# receiving slot too): parsing an IPv6 address took 14 us of each call, remembered it is one
# dictionary lookup (by the peer, port and all, for a gRPC call: one per connection).
@functools.lru_cache(maxsize=4096)
def _peer_caller(peer: str) -> str:
    return address_caller(grpc_peer_address(peer))


@functools.lru_cache(maxsize=4096)
def _network(address: str) -> str:
    if ":" not in address:
        return address
    try:
        parsed = ipaddress.IPv6Address(address.partition("%")[0])
    except ValueError:
        return address
    if parsed.ipv4_mapped is not None:  # a dual-stack socket's IPv4 peer
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, 64), strict=False))


def _unauthenticated(has_header: bool, several: bool = False) -> Unauthenticated:
    if several:
        return Unauthenticated(
            "several 'authorization' headers: send exactly one 'authorization: Bearer <token>'",
            reason="INVALID_TOKEN",
        )
    if has_header:
        return Unauthenticated("the bearer token is not valid", reason="INVALID_TOKEN")
    return Unauthenticated(
        "this call needs an 'authorization: Bearer <token>' header", reason="MISSING_TOKEN"
    )


def grpc_refusal(checker: TokenChecker, method: str) -> Callable[[Any], Unauthenticated | None] | None:
    """For one gRPC method: a check of a call's metadata (None: let it through), or None if exempt."""
    if not checker.enabled or method.startswith(HEALTH_PREFIX):
        return None

    def refusal(metadata: Any) -> Unauthenticated | None:
        header, several = authorization(metadata, "authorization")
        caller = checker.identify(header)
        if caller is None:
            return _unauthenticated(header is not None, several)
        note_caller(caller)
        return None

    return refusal


class AuthMiddleware:
    """Pure ASGI middleware: 401 with `WWW-Authenticate: Bearer` unless the token is valid."""

    def __init__(self, app: ASGIApp, checker: TokenChecker, metrics_open: bool = True) -> None:
        self.app = app
        self.checker = checker
        self.open_paths = HTTP_OPEN_PATHS | ({"/metrics"} if metrics_open else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        header, several = authorization(scope.get("headers"), b"authorization")
        caller = self.checker.identify(header)
        if caller is not None:
            note_caller(caller)
            await self.app(scope, receive, send)
            return
        error = _unauthenticated(header is not None, several)
        note_error(error)
        response = error_response(error, headers={"WWW-Authenticate": _CHALLENGE})
        await response(scope, receive, send)

    def _exempt(self, scope: Scope) -> bool:
        if scope["method"] == "OPTIONS":
            return True  # CORS preflights carry no credentials; the real request is checked
        path = str(scope["path"])
        return path in self.open_paths or (
            scope["method"] in {"GET", "HEAD"} and path.startswith(STATIC_PREFIX)
        )


@dataclass(frozen=True)
class TlsFiles:
    """PEM material read once at start-up: server chain and key, and the client CA for mTLS."""

    certificate: bytes
    private_key: bytes
    client_ca: bytes | None

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        if not settings.tls_cert_file:
            return None
        return cls(
            _read(settings.tls_cert_file, "TLS_CERT_FILE"),
            _read(settings.tls_key_file, "TLS_KEY_FILE"),
            _read(settings.tls_client_ca_file, "TLS_CLIENT_CA_FILE") if settings.tls_client_ca_file else None,
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{PREFIX}{name} cannot be read: {error}") from error


def uvicorn_ssl_options(settings: Settings) -> dict[str, Any]:
    """HTTPS settings for uvicorn: none without a certificate; client certificates required with a CA."""
    if not settings.tls_cert_file:
        return {}
    options: dict[str, Any] = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
    if settings.tls_client_ca_file:
        options.update(ssl_ca_certs=settings.tls_client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options
