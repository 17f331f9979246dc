"""Bearer tokens, TLS and mutual TLS on both transports; health checks always exempt.

A throwaway CA and certificates are made at test time (`cryptography`); no key is ever committed.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chainrule.server.app import Application
from chainrule.server.config import ConfigError, Settings
from chainrule.server.transport.auth import Callers, TokenChecker, fingerprint, grpc_peer_address
from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc
from tests.conftest import bytes_left_behind, make_settings

TOKEN = "s3cret-token-for-tests"
REQUEST = pb.DifferentiateRequest(expression="sin(x^2)")


# --- certificates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer or (_name(subject), key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _issue("chainrule test CA", None, ca=True)
    rogue_ca_cert, rogue_ca_key = _issue("rogue CA", None, ca=True)
    ca_path, _ = _write(directory, "ca", ca_cert, ca_key)
    server = _write(directory, "server", *_issue("localhost", (ca_cert.subject, ca_key), server=True))
    client = _write(directory, "client", *_issue("client", (ca_cert.subject, ca_key)))
    rogue = _write(directory, "rogue", *_issue("rogue", (rogue_ca_cert.subject, rogue_ca_key)))
    return Pki(ca_path, *server, *client, *rogue)


# --- servers ----------------------------------------------------------------------------------------


async def _started(**overrides: object) -> Application:
    app = Application(make_settings(symbolic_workers=0, **overrides))
    await app.start()
    return app


@pytest.fixture(scope="module")
async def token_app() -> AsyncIterator[Application]:
    app = await _started(auth_tokens=f"other-token, {TOKEN}")
    yield app
    await app.stop()


@pytest.fixture(scope="module")
async def mtls_app(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Application]:
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text(f"# one token a line\n\n{TOKEN}\n")
    app = await _started(
        auth_tokens_file=str(tokens),
        metrics_auth=True,
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.ca),
    )
    yield app
    await app.stop()


@pytest.fixture(scope="module")
async def tls_app(pki: Pki) -> AsyncIterator[Application]:
    app = await _started(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key))
    yield app
    await app.stop()


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return () if token is None else (("authorization", f"Bearer {token}"),)


def _secure_channel(app: Application, pki: Pki, *, cert: Path | None, key: Path | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    return grpc.aio.secure_channel(f"localhost:{app.grpc_port}", credentials)


def _client_ssl(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


# --- tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "accepted"),
    [(TOKEN, True), ("other-token", True), (None, False), ("wrong", False), ("", False)],
)
async def test_grpc_tokens(token_app: Application, token: str | None, accepted: bool) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_app.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        if accepted:
            reply = await stub.Differentiate(REQUEST, metadata=_metadata(token), timeout=5)
            assert reply.derivative == "2*x*cos(x^2)"
            return
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Differentiate(REQUEST, metadata=_metadata(token), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "token" in (caught.value.details() or "")


async def test_grpc_refusals_are_counted_and_carry_the_request_id(token_app: Application) -> None:
    labels = {"grpc_type": "unary", "grpc_service": "chainrule.v1.DifferentiationService"}
    labels |= {"grpc_method": "Differentiate", "grpc_code": "UNAUTHENTICATED"}
    before = token_app.registry.get_sample_value("grpc_server_handled_total", labels) or 0.0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_app.grpc_port}") as channel:
        call = pb_grpc.DifferentiationServiceStub(channel).Differentiate(
            REQUEST, metadata=[("x-request-id", "refused-1")], timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(caught.value.trailing_metadata() or ())["x-request-id"] == "refused-1"
    assert token_app.registry.get_sample_value("grpc_server_handled_total", labels) == before + 1


async def test_refused_callers_leave_nothing_for_the_garbage_collector(token_app: Application) -> None:
    """Ten 2 MB calls without a token hold nothing once refused: the exception that aborts a call is
    kept by grpc in a cycle with the call's context, and its frames held the request until a full
    collection (tests/conftest.py, `bytes_left_behind`): memory an anonymous caller could pile up."""
    request = pb.EvaluateRequest(expression="x + 1", points={"x": pb.Array(f64le=b"\0" * 2_000_000)})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_app.grpc_port}") as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)

        async def call() -> None:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Evaluate(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        held = await bytes_left_behind(call)
    assert held < 3_000_000, f"{held:,} bytes held after the calls"


async def test_grpc_health_is_exempt_and_reflection_is_not(token_app: Application) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_app.grpc_port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in reflection.ServerReflectionInfo(iter([ask]), timeout=5):
                pass
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        replies = [r async for r in reflection.ServerReflectionInfo(iter([ask]), metadata=_metadata(TOKEN))]
        assert replies[0].list_services_response.service


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/v1/info", None, 401),
        ("/v1/info", "wrong", 401),
        ("/v1/info", TOKEN, 200),
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/metrics", None, 200),  # open unless CHAINRULE_METRICS_AUTH
    ],
)
async def test_rest_tokens(token_app: Application, path: str, token: str | None, status: int) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{token_app.http_port}") as client:
        reply = await client.get(path, headers=headers)
    assert reply.status_code == status
    if status == 401:
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.json()["code"] == 16  # UNAUTHENTICATED


@pytest.mark.parametrize("order", ["valid first", "valid last"])
async def test_several_authorization_headers_are_refused_whichever_comes_first(
    token_app: Application, order: str
) -> None:
    # The first of two was taken on both transports: [valid, wrong] passed, [wrong, valid] did not.
    tokens = [TOKEN, "wrong"] if order == "valid first" else ["wrong", TOKEN]
    pairs = [("authorization", f"Bearer {token}") for token in tokens]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_app.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.DifferentiationServiceStub(channel).Differentiate(
                REQUEST, metadata=pairs, timeout=5
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "several 'authorization' headers" in (caught.value.details() or "")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{token_app.http_port}") as client:
        reply = await client.get("/v1/info", headers=httpx.Headers(pairs))
    assert reply.status_code == 401 and "several 'authorization' headers" in reply.json()["message"]


def test_token_check_is_exact() -> None:
    checker = TokenChecker((b"abc",))
    assert (
        checker.accepts("Bearer abc") and checker.accepts("bearer abc") and checker.accepts("Bearer  abc\t")
    )
    refused = (
        "Bearer abcd",
        "Bearer ab",
        "Basic abc",
        "abc",
        "Bearer",
        None,
        b"Bearer \xff",
        b"Bearer abc\xa0",
    )
    for header in refused:
        assert not checker.accepts(header)
    assert not TokenChecker(()).enabled


def test_tls_settings_must_come_in_pairs() -> None:
    with pytest.raises(ConfigError, match="TLS_KEY_FILE"):
        Settings.from_environ({"CHAINRULE_TLS_CERT_FILE": "server.crt"})
    with pytest.raises(ConfigError, match="TLS_CLIENT_CA_FILE"):
        Settings.from_environ({"CHAINRULE_TLS_CLIENT_CA_FILE": "ca.crt"})
    with pytest.raises(ConfigError, match="AUTH_TOKENS_FILE"):
        Application(make_settings(symbolic_workers=0, auth_tokens_file="/nonexistent/tokens"))


# --- TLS ----------------------------------------------------------------------------------------------


async def test_grpc_tls(tls_app: Application, pki: Pki) -> None:
    async with _secure_channel(tls_app, pki, cert=None, key=None) as channel:
        reply = await pb_grpc.DifferentiationServiceStub(channel).Differentiate(REQUEST, timeout=5)
        assert reply.derivative == "2*x*cos(x^2)"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_app.grpc_port}") as plain:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.DifferentiationServiceStub(plain).Differentiate(REQUEST, timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_https(tls_app: Application, pki: Pki) -> None:
    async with httpx.AsyncClient(verify=_client_ssl(pki)) as client:
        reply = await client.get(f"https://localhost:{tls_app.http_port}/v1/info")
    assert reply.status_code == 200
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://127.0.0.1:{tls_app.http_port}/healthz")


# --- mutual TLS (with tokens too, from a file, and metrics behind the token) -------------------------


async def test_grpc_mtls_requires_a_client_certificate_from_our_ca(mtls_app: Application, pki: Pki) -> None:
    async with _secure_channel(mtls_app, pki, cert=pki.client_cert, key=pki.client_key) as channel:
        stub = pb_grpc.DifferentiationServiceStub(channel)
        reply = await stub.Differentiate(REQUEST, metadata=_metadata(TOKEN), timeout=5)
        assert reply.derivative == "2*x*cos(x^2)"
        # Health needs no token, even here (the certificate is the transport's business).
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Differentiate(REQUEST, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):
        async with _secure_channel(mtls_app, pki, cert=cert, key=key) as refused:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.DifferentiationServiceStub(refused).Differentiate(
                    REQUEST, metadata=_metadata(TOKEN), timeout=2
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_https_mtls(mtls_app: Application, pki: Pki) -> None:
    url = f"https://localhost:{mtls_app.http_port}"
    async with httpx.AsyncClient(verify=_client_ssl(pki, pki.client_cert, pki.client_key)) as client:
        assert (await client.get(f"{url}/healthz")).status_code == 200
        assert (await client.get(f"{url}/metrics")).status_code == 401  # CHAINRULE_METRICS_AUTH=1
        authorized = {"authorization": f"Bearer {TOKEN}"}
        assert (await client.get(f"{url}/metrics", headers=authorized)).status_code == 200
        assert (await client.get(f"{url}/v1/info", headers=authorized)).status_code == 200
    for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):
        async with httpx.AsyncClient(verify=_client_ssl(pki, cert, key)) as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(f"{url}/healthz")


# --- callers: who a call comes from, for fair shares -------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.2:54321", "127.0.0.2"),
        ("ipv6:[::1]:5678", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_a_grpc_peer_is_its_address_without_the_port(peer: str, address: str) -> None:
    assert grpc_peer_address(peer) == address


@pytest.mark.parametrize(
    ("address", "caller", "why"),
    [
        ("127.0.0.2", "address:127.0.0.2", "IPv4: the address"),
        ("2001:db8::1", "address:2001:db8::/64", "IPv6: one host holds a whole /64"),
        ("2001:db8::ffff:1", "address:2001:db8::/64", "the same /64, the same caller"),
        ("::ffff:10.1.2.3", "address:10.1.2.3", "a dual-stack socket's IPv4 peer"),
        ("fe80::1%eth0", "address:fe80::/64", "a zone index is not part of the network"),
    ],
)
def test_without_tokens_a_caller_is_its_address(address: str, caller: str, why: str) -> None:
    assert Callers().identify(b"Bearer anything", address) == caller, why


def test_with_tokens_a_caller_is_its_token_and_never_the_token_itself() -> None:
    callers = Callers(TokenChecker((b"alpha", b"beta")))
    # One token from two addresses is one caller, named by the fingerprint the access lines show.
    beta = callers.identify("Bearer beta", "127.0.0.2")
    assert beta == fingerprint(b"beta") == callers.identify("Bearer beta", "127.0.0.3")
    assert "beta" not in beta and beta != callers.identify("Bearer alpha", "127.0.0.2")
    assert callers.identify("Bearer wrong", "127.0.0.2") == "address:127.0.0.2"  # refused anyway
    assert callers.identify(None, "127.0.0.2") == "address:127.0.0.2"


def test_an_http_caller_comes_from_the_asgi_scope() -> None:
    callers = Callers(TokenChecker((b"alpha",)))
    scope = {"client": ("127.0.0.3", 40000), "headers": [(b"authorization", b"Bearer alpha")]}
    assert callers.of_http(scope) == fingerprint(b"alpha")
    assert callers.of_http({"client": ("127.0.0.3", 40001), "headers": []}) == "address:127.0.0.3"
    assert Callers().of_http({"client": None}) == "address:"
