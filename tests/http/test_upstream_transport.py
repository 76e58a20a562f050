"""The upstream HTTP client's transport (gateway/upstream/client.py and pool.py): TLS to
a provider verified against the system's store or a configured CA (SECURITY C6), connections
kept alive between calls and never reused when they could be stale or out of step, the
response cap counted after decompression and without an announced length, transport failures
named in the log without the exception's own words.

Providers here are real Tornado servers on loopback; the TLS ones present certificates made for
the test by a throwaway CA (cryptography), as a private CA or a TLS-inspecting proxy would."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import json
import resource
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.web
from conftest import LoopThread
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from process_support import HTTP_TIMEOUT, Deployment

from gateway.config import UpstreamSettings
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.server import bind, bound_port
from gateway.upstream import pool as upstream_pool
from gateway.upstream.client import Upstream, make_http_client

CAP = 64 * 1024  # max_response_bytes for these tests


# ---------------------------------------------------------------------------------------------
# A throwaway certificate authority


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
        return cls(key, certificate)

    def pem(self, directory: Path) -> Path:
        path = directory / "ca.pem"
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def server_context(self, directory: Path, *, names: list[x509.GeneralName]
                       ) -> ssl.SSLContext:
        """A server's TLS context with a certificate for `names`, signed by this authority."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provider")]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        cert_file, key_file = directory / "server.pem", directory / "server.key"
        cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context


LOOPBACK = [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
ANOTHER_HOST = [x509.DNSName("accounts.example.org")]


# ---------------------------------------------------------------------------------------------
# A provider-like server


class DocumentHandler(tornado.web.RequestHandler):
    """A JSON answer naming the client port it came in on (one port: one connection)."""

    def get(self) -> None:
        stream = self.request.connection.stream  # type: ignore[union-attr]
        self.write({"client_port": stream.socket.getpeername()[1]})


class ClosingHandler(DocumentHandler):
    """Answers, then says the connection ends there."""

    def get(self) -> None:
        self.set_header("Connection", "close")
        super().get()


class BombHandler(tornado.web.RequestHandler):
    """A JSON object padded with 4 MB of zeros, gzipped: a few KB on the wire, 64 times the
    cap once decompressed (uncapped, it would be a valid answer)."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Encoding", "gzip")
        self.write(gzip.compress(b'{"pad": "' + b"0" * (4 * 1024 * 1024) + b'"}'))


class StreamedHandler(tornado.web.RequestHandler):
    """More than the cap in chunks, with no Content-Length announced (uncapped, a valid
    answer: white space, then an object)."""

    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        for _ in range(32):
            self.write(b" " * 8192)
            await self.flush()
        self.write(b"{}")


@dataclass
class Provider:
    url: str
    server: tornado.httpserver.HTTPServer


@pytest.fixture
def serve(loop_thread: LoopThread) -> Iterator[Callable[..., Provider]]:
    servers: list[tornado.httpserver.HTTPServer] = []

    def start(tls: ssl.SSLContext | None = None, idle_timeout: float | None = None
              ) -> Provider:
        sockets = bind("127.0.0.1", 0)
        app = tornado.web.Application([(r"/doc", DocumentHandler), (r"/bomb", BombHandler),
                                       (r"/streamed", StreamedHandler),
                                       (r"/closing", ClosingHandler)])

        def listen() -> tornado.httpserver.HTTPServer:
            server = tornado.httpserver.HTTPServer(app, ssl_options=tls,
                                                   idle_connection_timeout=idle_timeout)
            server.add_sockets(sockets)
            return server

        server = loop_thread.call(listen)
        servers.append(server)
        scheme = "https" if tls else "http"
        return Provider(f"{scheme}://127.0.0.1:{bound_port(sockets)}", server)

    yield start
    for server in servers:
        loop_thread.call(server.stop)


def upstream(loop: LoopThread, **settings: Any) -> Upstream:
    """The production client, made in the loop that watches its sockets."""
    chosen = UpstreamSettings(max_response_bytes=CAP, **settings)
    return Upstream(loop.call(lambda: make_http_client(chosen)), chosen)


def fetch(loop: LoopThread, client: Upstream, url: str) -> dict[str, Any]:
    return loop.run(client.fetch_json(client.request(url), provider="google", what="token"))


def refusal(loop: LoopThread, client: Upstream, url: str) -> UpstreamError:
    with pytest.raises(UpstreamError) as refused:
        fetch(loop, client, url)
    return refused.value


# ---------------------------------------------------------------------------------------------
# TLS (SECURITY C6)


def test_C6_a_provider_certificate_from_the_configured_ca_is_trusted(
        loop_thread: LoopThread, serve: Callable[..., Provider], tmp_path: Path) -> None:
    authority = Authority.create("private CA")
    provider = serve(authority.server_context(tmp_path, names=LOOPBACK))
    client = upstream(loop_thread, ca_file=str(authority.pem(tmp_path)))
    assert "client_port" in fetch(loop_thread, client, f"{provider.url}/doc")


def test_C6_a_provider_certificate_the_system_store_does_not_trust_is_refused(
        loop_thread: LoopThread, serve: Callable[..., Provider], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    provider = serve(Authority.create("unknown CA").server_context(tmp_path, names=LOOPBACK))
    error = refusal(loop_thread, upstream(loop_thread), f"{provider.url}/doc")
    assert error.description == "The sign-in provider could not be reached."
    assert "TLS certificate not trusted" in caplog.text


def test_C6_a_certificate_for_another_host_is_refused_even_from_a_trusted_ca(
        loop_thread: LoopThread, serve: Callable[..., Provider], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    authority = Authority.create("private CA")
    provider = serve(authority.server_context(tmp_path, names=ANOTHER_HOST))
    client = upstream(loop_thread, ca_file=str(authority.pem(tmp_path)))
    refusal(loop_thread, client, f"{provider.url}/doc")
    assert "TLS certificate not trusted" in caplog.text


def test_C6_another_ca_than_the_configured_one_is_refused(
        loop_thread: LoopThread, serve: Callable[..., Provider], tmp_path: Path) -> None:
    trusted, other = Authority.create("private CA"), Authority.create("attacker CA")
    provider = serve(other.server_context(tmp_path, names=LOOPBACK))
    refusal(loop_thread, upstream(loop_thread, ca_file=str(trusted.pem(tmp_path))),
            f"{provider.url}/doc")


@pytest.mark.slow
@pytest.mark.parametrize("trust", ["upstream.ca_file", "SSL_CERT_FILE"])
def test_C6_a_whole_login_against_a_provider_over_tls(
        deployments: Callable[..., Deployment], tmp_path: Path, trust: str) -> None:
    """A gateway process and the Google stand-in on https://, its certificate from a private
    CA the gateway is told about by `upstream.ca_file` or, as the system's store, by
    SSL_CERT_FILE: the code exchange, the JWKS fetch and the login go over verified TLS."""
    authority = Authority.create("private CA")
    ca_file = authority.pem(tmp_path)
    deployment = deployments(
        store={"url": "memory://"},
        upstream={"ca_file": str(ca_file)} if trust == "upstream.ca_file" else {},
        provider_tls=authority.server_context(tmp_path, names=LOOPBACK))
    assert deployment.google.standin.base_url.startswith("https://")
    deployment.start(env={"SSL_CERT_FILE": str(ca_file)} if trust == "SSL_CERT_FILE" else {})
    browser = deployment.browser()
    browser.http = httpx.Client(timeout=HTTP_TIMEOUT, verify=ssl.create_default_context(
        cafile=str(ca_file)))  # the user's browser trusts the stand-in's consent page too
    done = browser.login()
    assert done.status_code == 302, done.text
    assert browser.access_token()
    assert deployment.google.standin.calls["token"] == 1


@pytest.mark.slow
def test_C6_a_provider_the_gateway_process_does_not_trust_fails_the_login_clearly(
        deployments: Callable[..., Deployment], tmp_path: Path) -> None:
    authority = Authority.create("private CA")
    ca_file = authority.pem(tmp_path)
    deployment = deployments(store={"url": "memory://"},
                             provider_tls=authority.server_context(tmp_path, names=LOOPBACK))
    gateway = deployment.start()
    browser = deployment.browser()
    browser.http = httpx.Client(timeout=HTTP_TIMEOUT, verify=ssl.create_default_context(
        cafile=str(ca_file)))
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    answer = browser.get(back.headers["location"])
    assert answer.status_code == 502
    assert "could not be reached" in answer.text and "Traceback" not in answer.text
    assert deployment.google.standin.calls["token"] == 0  # nothing sent before the handshake
    gateway.assert_logged("token: TLS certificate not trusted")


# ---------------------------------------------------------------------------------------------
# Connections, caps, failures


def ports_of(loop: LoopThread, client: Upstream, url: str, calls: int) -> list[int]:
    """The client port each call came in on, as the provider saw it."""
    return [int(fetch(loop, client, url)["client_port"]) for _ in range(calls)]


def test_calls_to_a_provider_reuse_one_kept_alive_connection(
        loop_thread: LoopThread, serve: Callable[..., Provider]) -> None:
    """Tornado's simple client opened a connection per call (a handshake each, TLS against a
    real provider, and a port in TIME_WAIT); ten calls in a row now come in on one."""
    provider = serve()
    assert len(set(ports_of(loop_thread, upstream(loop_thread), f"{provider.url}/doc", 10))) == 1


def test_a_tls_connection_is_reused_without_a_new_handshake(
        loop_thread: LoopThread, serve: Callable[..., Provider], tmp_path: Path) -> None:
    authority = Authority.create("private CA")
    provider = serve(authority.server_context(tmp_path, names=LOOPBACK))
    client = upstream(loop_thread, ca_file=str(authority.pem(tmp_path)))
    assert len(set(ports_of(loop_thread, client, f"{provider.url}/doc", 5))) == 1


def test_a_connection_the_provider_closed_while_idle_is_not_reused(
        loop_thread: LoopThread, serve: Callable[..., Provider]) -> None:
    """The provider's idle timeout ends the pooled connection: the next call connects anew
    and succeeds (it is never sent into a closed socket)."""
    provider = serve(idle_timeout=0.2)
    client = upstream(loop_thread)
    first = ports_of(loop_thread, client, f"{provider.url}/doc", 1)
    time.sleep(0.6)
    assert ports_of(loop_thread, client, f"{provider.url}/doc", 1) != first


def test_connection_close_from_the_provider_is_honoured(
        loop_thread: LoopThread, serve: Callable[..., Provider]) -> None:
    provider = serve()
    ports = ports_of(loop_thread, upstream(loop_thread), f"{provider.url}/closing", 3)
    assert len(set(ports)) == 3


def test_a_connection_idle_past_the_limit_is_not_reused(
        loop_thread: LoopThread, serve: Callable[..., Provider],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_pool, "IDLE_SECONDS", 0.1)
    provider = serve()
    client = upstream(loop_thread)
    first = ports_of(loop_thread, client, f"{provider.url}/doc", 1)
    time.sleep(0.3)
    assert ports_of(loop_thread, client, f"{provider.url}/doc", 1) != first


def test_bytes_after_an_answer_make_its_connection_unusable(loop_thread: LoopThread) -> None:
    """A provider (or a box in between) that sends more than the answer it announced is out
    of step: reusing the connection would read those bytes as the next call's answer (a
    desynchronised, or smuggled, response). Each call then gets a fresh connection, and each
    reads its own answer."""
    async def answer_with_trailing_bytes(reader: asyncio.StreamReader,
                                         writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                body = json.dumps({"client_port": writer.get_extra_info("peername")[1]})
                writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                             + b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"forged": true}')
                await writer.drain()
        writer.close()

    server = loop_thread.run(asyncio.start_server(answer_with_trailing_bytes, "127.0.0.1", 0))
    try:
        port = server.sockets[0].getsockname()[1]
        answers = [fetch(loop_thread, client, f"http://127.0.0.1:{port}/doc")
                   for client in [upstream(loop_thread)] for _ in range(3)]
        assert all("forged" not in answer for answer in answers)
        assert len({answer["client_port"] for answer in answers}) == 3
    finally:
        loop_thread.call(server.close)  # in its loop: asyncio's Server is not thread-safe


@pytest.mark.parametrize("kept", [False, True], ids=["new connection", "kept connection"])
def test_a_compressed_answer_is_capped_after_decompression(
        loop_thread: LoopThread, serve: Callable[..., Provider],
        caplog: pytest.LogCaptureFixture, kept: bool) -> None:
    """On a new connection Tornado's client reads it; on a kept one, exchange.py."""
    provider = serve()
    client = upstream(loop_thread)
    if kept:
        fetch(loop_thread, client, f"{provider.url}/doc")
    error = refusal(loop_thread, client, f"{provider.url}/bomb")
    assert error.description == "The sign-in provider could not be reached."
    assert "answer over max_response_bytes" in caplog.text
    assert "MemoryError" not in caplog.text


@pytest.mark.parametrize("kept", [False, True], ids=["new connection", "kept connection"])
def test_a_streamed_answer_without_length_is_capped(
        loop_thread: LoopThread, serve: Callable[..., Provider],
        caplog: pytest.LogCaptureFixture, kept: bool) -> None:
    provider = serve()
    client = upstream(loop_thread)
    if kept:
        fetch(loop_thread, client, f"{provider.url}/doc")
    refusal(loop_thread, client, f"{provider.url}/streamed")
    assert "answer over max_response_bytes" in caplog.text


def test_a_refused_connection_is_named_in_the_log_not_curls_message(
        loop_thread: LoopThread, caplog: pytest.LogCaptureFixture) -> None:
    port = bound_port(bind("127.0.0.1", 0))  # closed again: nothing listens there
    error = refusal(loop_thread, upstream(loop_thread), f"http://127.0.0.1:{port}/doc")
    assert not isinstance(error, UpstreamTimeout)
    assert "token: connection refused" in caplog.text
    assert f"port {port}" not in caplog.text  # curl's own wording stays out


def test_connections_are_reused_when_descriptors_run_past_1024(
        loop_thread: LoopThread, serve: Callable[..., Provider]) -> None:
    """A gateway at C10K holds thousands of sockets: a pooled connection whose descriptor is
    past select()'s limit of 1024 is still checked and reused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    provider = serve()
    held = [socket.socket() for _ in range(1100)]  # the next descriptors are past 1024
    try:
        client = upstream(loop_thread)
        assert len(set(ports_of(loop_thread, client, f"{provider.url}/doc", 5))) == 1
    finally:
        for each in held:
            each.close()


# ---------------------------------------------------------------------------------------------
# Calls made directly on a kept connection (upstream/exchange.py)


def counting_direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls exchange.py makes (the others are Tornado's client's)."""
    made: list[int] = []
    direct = upstream_pool.exchange

    async def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return await direct(*args, **kwargs)

    monkeypatch.setattr(upstream_pool, "exchange", counted)
    return made


def test_calls_after_the_first_are_made_directly_on_the_kept_connection(
        loop_thread: LoopThread, serve: Callable[..., Provider],
        monkeypatch: pytest.MonkeyPatch) -> None:
    made = counting_direct_calls(monkeypatch)
    provider = serve()
    assert len(set(ports_of(loop_thread, upstream(loop_thread), f"{provider.url}/doc", 5))) == 1
    assert len(made) == 4


def test_a_tls_connection_is_used_directly_too(
        loop_thread: LoopThread, serve: Callable[..., Provider], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    made = counting_direct_calls(monkeypatch)
    authority = Authority.create("private CA")
    provider = serve(authority.server_context(tmp_path, names=LOOPBACK))
    client = upstream(loop_thread, ca_file=str(authority.pem(tmp_path)))
    assert len(set(ports_of(loop_thread, client, f"{provider.url}/doc", 3))) == 1
    assert len(made) == 2


# The client's port -> what the provider sends; None: nothing at all.
Answer = Callable[[int], bytes] | None


def json_answer(port: int, *, head: str = "HTTP/1.1 200 OK", extra: str = "") -> bytes:
    body = json.dumps({"client_port": port})
    return (f"{head}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def chunked_answer(port: int) -> bytes:
    body = json.dumps({"client_port": port}).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]))
            + b"0\r\n\r\n")


@contextlib.contextmanager
def scripted_provider(loop: LoopThread, answers: list[Answer]) -> Iterator[str]:
    """A provider speaking raw HTTP/1.1 on kept-alive connections: the n-th request of the
    test, on whatever connection, gets `answers[n]`."""
    served = iter(answers)

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                answer = next(served)
                if answer is None:
                    await asyncio.sleep(30)
                    return
                writer.write(answer(port))
                await writer.drain()
        writer.close()

    server = loop.run(asyncio.start_server(converse, "127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/token"
    finally:
        loop.call(server.close)  # in its loop: asyncio's Server is not thread-safe


def test_a_chunked_answer_and_1xx_answers_on_a_kept_connection(
        loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch) -> None:
    made = counting_direct_calls(monkeypatch)
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    answers: list[Answer] = [json_answer, chunked_answer,
                             lambda port: early_hints + early_hints + json_answer(port),
                             json_answer]
    with scripted_provider(loop_thread, answers) as url:
        ports = ports_of(loop_thread, upstream(loop_thread), url, 4)
    assert len(set(ports)) == 1
    assert len(made) == 3


def test_a_provider_silent_on_a_kept_connection_times_out_and_it_is_not_reused(
        loop_thread: LoopThread) -> None:
    client = upstream(loop_thread, request_timeout=0.5)
    with scripted_provider(loop_thread, [json_answer, None, json_answer]) as url:
        first = ports_of(loop_thread, client, url, 1)
        with pytest.raises(UpstreamTimeout):
            fetch(loop_thread, client, url)
        assert ports_of(loop_thread, client, url, 1) != first


@pytest.mark.parametrize("framed_twice", [
    lambda port: json_answer(port, extra="Transfer-Encoding: chunked\r\n"),
    lambda port: json_answer(port, extra="Content-Length: 99\r\n"),
    lambda port: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
], ids=["content-length and chunked", "unequal content-lengths", "bad chunk size"])
def test_H7_an_answer_out_of_protocol_on_a_kept_connection_is_refused_and_closed(
        loop_thread: LoopThread, caplog: pytest.LogCaptureFixture,
        framed_twice: Callable[[int], bytes]) -> None:
    """Whatever follows such an answer could be read as the next call's: the call fails
    clearly and the connection is not used again."""
    client = upstream(loop_thread)
    with scripted_provider(loop_thread, [json_answer, framed_twice, json_answer]) as url:
        first = ports_of(loop_thread, client, url, 1)
        error = refusal(loop_thread, client, url)
        assert error.description == "The sign-in provider could not be reached."
        assert ports_of(loop_thread, client, url, 1) != first
    assert "Traceback" not in caplog.text


def test_an_error_status_on_a_kept_connection_is_a_refusal_and_the_connection_stays(
        loop_thread: LoopThread, caplog: pytest.LogCaptureFixture) -> None:
    refused_body = b'{"error": "invalid_grant", "error_description": "Bad code"}'
    refused: Answer = lambda port: (  # noqa: E731
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(refused_body), refused_body))
    client = upstream(loop_thread)
    with scripted_provider(loop_thread, [json_answer, refused, json_answer]) as url:
        first = ports_of(loop_thread, client, url, 1)
        error = refusal(loop_thread, client, url)
        assert (error.description, error.upstream_status) == (
            "The sign-in provider refused the request.", 400)
        assert ports_of(loop_thread, client, url, 1) == first
    assert "error=invalid_grant" in caplog.text
    assert "Bad code" not in caplog.text


@pytest.mark.parametrize("kept", [False, True], ids=["new connection", "kept connection"])
def test_an_answer_head_over_the_limit_is_a_clear_failure(
        loop_thread: LoopThread, caplog: pytest.LogCaptureFixture, kept: bool) -> None:
    """Tornado's client let this through as an unexpected exception (a 500 at the gateway)."""
    huge: Answer = lambda port: json_answer(port, extra=f"X-Pad: {'a' * 70_000}\r\n")  # noqa: E731
    client = upstream(loop_thread)
    with scripted_provider(loop_thread, [json_answer, huge] if kept else [huge]) as url:
        if kept:
            ports_of(loop_thread, client, url, 1)
        error = refusal(loop_thread, client, url)
    assert error.description == "The sign-in provider could not be reached."
    assert "Traceback" not in caplog.text


def test_a_connection_still_sending_when_the_answer_came_is_not_reused(
        loop_thread: LoopThread) -> None:
    """A provider may answer before it has read the whole request (a 413 to a large body).
    What is left of that request would go out ahead of the next call's, which this provider
    (still reading nothing) would never answer: the connection is closed instead of pooled,
    and the next call gets a connection of its own."""
    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"POST"):  # answered at once, the body left unread
                    writer.write(b"HTTP/1.1 413 Content Too Large\r\n"
                                 b"Content-Length: 2\r\n\r\n{}")
                    await writer.drain()
                    await asyncio.sleep(30)
                    return
                writer.write(json_answer(port))
                await writer.drain()

    server = loop_thread.run(asyncio.start_server(converse, "127.0.0.1", 0))
    client = upstream(loop_thread, request_timeout=2)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/token"
    try:
        ports_of(loop_thread, client, url, 1)
        with pytest.raises(UpstreamError) as refused:
            loop_thread.run(client.fetch_json(
                client.request(url, method="POST", body="x" * (8 * 1024 * 1024)),
                provider="google", what="token"))
        assert refused.value.upstream_status == 413
        assert len(ports_of(loop_thread, client, url, 1)) == 1  # answered, not timed out
    finally:
        loop_thread.call(server.close)  # in its loop: asyncio's Server is not thread-safe
