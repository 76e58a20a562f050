"""The Google stand-in in a process of its own, so that its CPU is not counted in the gateway's.

    python bench/standin.py PORT GATEWAY_ISSUER SECTION_JSON [--stall SECONDS] [--hold]

Writes the gateway's `providers.google` section (fresh client credentials) as JSON to
SECTION_JSON once it listens. With `--stall`, every code exchange waits that long and then
answers normally: a slow provider. With `--hold`, after `POST /bench/hold` every code exchange
waits until `POST /bench/release` (then, with `--stall`, that long again), so that the
benchmark can measure while all are parked and time the release from one moment.
`GET /bench/stats` answers how many code exchanges arrived and how many are being held.

The benchmark's users are returning ones: signed in at Google and consented before, so the
authorization request is answered with the redirect back at once (as Google does), not with the
account chooser. The request is checked and the code issued as for the chooser: the gateway sees
the same redirect, and the load core is not spent rendering a page the gateway never sees.

The protocol is the development stand-in's (gateway/dev/standins/google.py: the authorization
request's checks, single-use codes bound to redirect_uri and PKCE, client authentication, an
RS256 ID token with the nonce), served by a small HTTP/1.1 server on llhttp (httptools) instead
of Tornado. The load generator and this stand-in share the load core, and a login is three
requests there plus an RSA signature: served by Tornado they were the limit of the login
benchmark, not the gateway (docs/benchmarks.md). Its answers carry the headers Tornado's did,
so that the gateway parses what it parsed before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httptools

from gateway.dev.standins.common import ProtocolError
from gateway.dev.standins.google import GoogleStandIn, dev_provider
from gateway.handlers.base import http_date  # the gateway's Date, made once a second

SIGNED_IN_ACCOUNT = "ada"
MAX_BODY_BYTES = 64 * 1024
REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed"}
JSON_TYPE = "application/json; charset=utf-8"


class Answer:
    """An HTTP answer: status, headers (beside Date and Content-Length) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: tuple[tuple[str, str], ...] = (),
                 body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers, body

    def encoded(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Error')}",
                 *(f"{name}: {value}" for name, value in self.headers),
                 f"Date: {http_date()}", f"Content-Length: {len(self.body)}"]
        if not keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def json_answer(document: dict[str, object], status: int = 200) -> Answer:
    return Answer(status, (("Content-Type", JSON_TYPE), ("Cache-Control", "no-store")),
                  json.dumps(document).encode())


def _error(e: ProtocolError) -> Answer:
    return json_answer({"error": e.error, "error_description": e.description}, e.status)


def _once(pairs: list[tuple[str, str]]) -> dict[str, str | None]:
    """Every argument by name, None for one given several times (the stand-in's rule)."""
    values: dict[str, str | None] = {}
    for name, value in pairs:
        values[name] = None if name in values else value
    return values


class Request:
    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(self, method: str, url: bytes, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(url.decode("latin-1"))
        self.method, self.path, self.query = method, parts.path, parts.query
        self.headers, self.body = headers, body


class StandIn:
    """The Google stand-in's endpoints the gateway and the benchmark call."""

    def __init__(self, provider: GoogleStandIn, stall: float, hold: bool) -> None:
        self.provider = provider
        self.stall = stall
        self.gate: asyncio.Event | None = None
        if hold:
            self.gate = asyncio.Event()
            self.gate.set()  # open until the benchmark asks to hold
        self.arrived = 0
        self.held = 0

    def answer(self, request: Request) -> Answer | Awaitable[Answer]:
        path, method = request.path, request.method
        if path == "/o/oauth2/v2/auth" and method == "GET":
            return self.authorize(request)
        if path == "/token" and method == "POST":
            if self.gate is None and not self.stall:
                self.arrived += 1
                return self.token(request)
            return self.held_token(request)
        if path == "/oauth2/v3/certs" and method == "GET":
            return Answer(200, (("Content-Type", JSON_TYPE),
                                ("Cache-Control", "public, max-age=21600")),
                          json.dumps(self.provider.jwks()).encode())
        if path == "/v1/userinfo" and method == "GET":
            try:
                return json_answer(self.provider.userinfo(request.headers.get("authorization")))
            except ProtocolError as e:
                return _error(e)
        if path == "/bench/stats" and method == "GET":
            return json_answer({"arrived": self.arrived, "held": self.held})
        if path in ("/bench/hold", "/bench/release") and method == "POST":
            assert self.gate is not None
            if path == "/bench/hold":
                self.gate.clear()
            else:
                self.gate.set()
            return json_answer({"held": self.held})
        return Answer(404, (("Content-Type", "text/plain"),), b"not found")

    def authorize(self, request: Request) -> Answer:
        provider = self.provider
        try:
            checked = provider.check_authorization_request(_once(parse_qsl(request.query)))
        except ProtocolError as e:
            return _error(e)  # the real page is HTML; the benchmark never sends one
        account = provider.account(SIGNED_IN_ACCOUNT)
        assert account is not None
        params = {"code": provider.approve(checked, account),
                  "scope": " ".join(checked.scope), "authuser": "0", "prompt": "none"}
        if checked.state is not None:
            params["state"] = checked.state
        return Answer(302, (("Content-Type", "text/html; charset=UTF-8"),
                            ("Location", f"{checked.redirect_uri}?{urlencode(params)}")))

    def token(self, request: Request) -> Answer:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return json_answer({"error": "invalid_request",
                                "error_description": "Invalid content type."}, 400)
        form = _once(parse_qsl(request.body.decode("utf-8", "replace")))
        try:
            return json_answer(self.provider.exchange_code(
                form, request.headers.get("authorization")))
        except ProtocolError as e:
            return _error(e)

    async def held_token(self, request: Request) -> Answer:
        self.arrived += 1
        self.held += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.stall:
                await asyncio.sleep(self.stall)
            return self.token(request)
        finally:
            self.held -= 1


class Connection(asyncio.Protocol):
    """One client connection: requests parsed by llhttp, answered in order."""

    def __init__(self, standin: StandIn, connections: set[Connection]) -> None:
        self.standin = standin
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.waiting: list[tuple[Request, bool]] = []
        self.busy = False
        self.pending: asyncio.Future[None] | None = None  # an answer that waits (--hold, --stall)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(Answer(400), keep_alive=False)

    # llhttp's callbacks
    def on_message_begin(self) -> None:
        self.url, self.headers, self.body, self.body_size = b"", {}, [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > MAX_BODY_BYTES:
            raise httptools.HttpParserError("body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        request = Request(method, self.url, self.headers, b"".join(self.body))
        keep_alive = self.parser.should_keep_alive()
        if self.busy:
            self.waiting.append((request, keep_alive))
        else:
            self._answer(request, keep_alive)

    def _answer(self, request: Request, keep_alive: bool) -> None:
        answer = self.standin.answer(request)
        if isinstance(answer, Answer):
            self._write(answer, keep_alive)
            return
        self.busy = True
        self.pending = asyncio.ensure_future(self._answer_later(answer, keep_alive))

    async def _answer_later(self, answer: Awaitable[Answer], keep_alive: bool) -> None:
        self._write(await answer, keep_alive)
        self.busy = False
        while self.waiting and not self.busy:
            self._answer(*self.waiting.pop(0))

    def _write(self, answer: Answer, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(answer.encoded(keep_alive))
        if not keep_alive:
            self.transport.close()


async def serve(port: int, issuer: str, section_path: Path, stall: float, hold: bool) -> None:
    provider, section = dev_provider(f"http://127.0.0.1:{port}", issuer)
    standin = StandIn(provider, stall, hold)
    connections: set[Connection] = set()
    loop = asyncio.get_running_loop()
    section_path.write_text(json.dumps(section))  # before it listens: ready means both
    server = await loop.create_server(lambda: Connection(standin, connections), "127.0.0.1",
                                      port, backlog=16384)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    for connection in list(connections):
        if connection.transport is not None:
            connection.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("issuer")
    parser.add_argument("section", type=Path)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.issuer, args.section, args.stall, args.hold))


if __name__ == "__main__":
    main()
