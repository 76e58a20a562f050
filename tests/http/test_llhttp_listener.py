"""`[listen] http_parser = "llhttp"`: the public listener on the data plane's connection
(gateway/data_plane.py) for every route.

The same application answers behind either parser, so its answers must be the same bytes
(apart from Date and X-Request-ID): these tests put one application behind both and compare.
What only a general-purpose listener needs is tested on its own: `100 Continue`, chunked answers
of handlers that flush early, HTTP/1.0 answers of unknown length, and a handler's flush waiting
for a client that does not read. The whole suite also runs with `pytest --http-parser llhttp`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.netutil
import tornado.web
from conftest import Stack
from test_data_plane import (
    SETTLE,
    _answers,
    _exchange,
    _get,
    _main_port,
    _read_answers,
    _same,
    _signed_in,
)

from gateway import data_plane, http_limits, server
from gateway.data_plane import DataPlane
from gateway.fast_route import fast_routes


def _serve_every_route(stack: Stack, application: tornado.web.Application | None = None
                       ) -> Iterator[tuple[int, DataPlane]]:
    """`application` (the stack's own by default) on a free port, as `listen.http_parser =
    "llhttp"` serves it."""
    app = application or stack.application
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    plane = DataPlane(app, fast_routes(app), every_route=True)
    stack.loop.run(plane.start(sockets))
    yield int(sockets[0].getsockname()[1]), plane
    stack.loop.call(plane.stop)
    stack.loop.run(plane.close_all_connections())


@pytest.fixture
def every_route(stack: Stack) -> Iterator[tuple[Stack, int]]:
    for port, _ in _serve_every_route(stack):
        yield stack, port


def _post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway.test",
             "Content-Type: application/x-www-form-urlencoded",
             f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SAME_ANSWERS = {
    "discovery": _get("/.well-known/openid-configuration"),
    "jwks": _get("/.well-known/jwks.json"),
    "static file": _get("/static/style.css"),
    "unknown path, page": _get("/nothing-here", "Accept: text/html"),
    "unknown path, json": _get("/nothing-here", "Accept: application/json"),
    "unknown provider": _get("/login/nobody"),
    "refused return_to": _get("/login/google?return_to=https%3A%2F%2Fevil.example%2F"),
    "method not allowed": _post("/.well-known/jwks.json", b""),
    "token request of an unknown client": _post(
        "/token", b"grant_type=authorization_code&code=x&client_id=nobody&client_secret=y"),
    "duplicate parameter": _get("/login/google?return_to=a&return_to=b",
                                "Accept: application/json"),
    "http/1.0 keep-alive": _get("/healthz", "Connection: keep-alive", version="1.0"),
    "connection close": _get("/healthz", "Connection: close"),
    # Whitespace around a value is not part of it (RFC 9110 5.5): Tornado's parser strips it.
    "whitespace after a value": _get("/nothing-here", "Accept: application/json \t"),
    "a header given twice": _get("/nothing-here", "Accept: text/html", "Accept: application/json"),
}


@pytest.mark.parametrize("case", sorted(SAME_ANSWERS))
def test_every_route_answers_byte_for_byte_as_on_tornado(every_route: tuple[Stack, int],
                                                         case: str) -> None:
    stack, port = every_route
    request = SAME_ANSWERS[case]
    _same(_exchange(_main_port(stack), request), _exchange(port, request))


def test_a_whole_login_and_its_token_go_through_llhttp(make_stack: Callable[..., Stack]
                                                      ) -> None:
    stack = make_stack(listen={"http_parser": "llhttp"})
    assert isinstance(stack.server, DataPlane) and stack.server.every_route
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    answer = browser.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["sub"].startswith("google:")


def test_a_request_that_expects_100_continue_gets_it_then_its_answer(
        every_route: tuple[Stack, int]) -> None:
    _, port = every_route
    body = b"grant_type=authorization_code&code=x&client_id=nobody&client_secret=y"
    head, _, _ = _post("/token", body, "Expect: 100-continue").partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(head + b"\r\n\r\n")
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 (Continue)\r\n\r\n"
        sock.sendall(body)
        received = _read_answers(sock)
    assert received.startswith(b"HTTP/1.1 401 ")


@pytest.mark.parametrize("after", ["", " \t"], ids=["plain", "whitespace after the values"])
def test_H7_a_body_announced_past_the_limit_is_refused_before_100_continue(
        every_route: tuple[Stack, int], after: str) -> None:
    _, port = every_route
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(f"POST /token HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999{after}\r\n"
                     f"Expect: 100-continue{after}\r\n\r\n".encode())
        assert sock.recv(65536) == b""  # dropped: no 100 invites the body


class _Streaming(tornado.web.RequestHandler):
    """Flushes before it finishes, so it cannot know its length (a download, a feed)."""

    chunks = 64
    size = 1024 * 1024
    flushed = 0

    async def get(self) -> None:
        for _ in range(self.chunks):
            self.write(b"x" * self.size)
            await self.flush()
            type(self).flushed += 1
        self.finish()


@pytest.fixture
def streaming(stack: Stack) -> Iterator[int]:
    _Streaming.flushed = 0
    for port, _ in _serve_every_route(stack, tornado.web.Application([(r"/stream", _Streaming)])):
        yield port


def _read_until(sock: socket.socket, ending: bytes) -> bytes:
    """What the server sends until it ends with `ending`; the connection must stay open."""
    received = b""
    while not received.endswith(ending):
        chunk = sock.recv(65536)
        assert chunk, f"closed before {ending!r}"
        received += chunk
    return received


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(1 << 20):
        received += chunk
    return received


def test_an_answer_flushed_early_is_chunked_on_http_1_1(streaming: int) -> None:
    with socket.create_connection(("127.0.0.1", streaming), timeout=SETTLE) as sock:
        sock.sendall(_get("/stream", "Connection: close"))
        received = _read_all(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    payload, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n"
            break
        payload += rest[:size]
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]
    assert payload == b"x" * (_Streaming.chunks * _Streaming.size)


def test_an_http_1_0_answer_of_unknown_length_ends_with_the_connection(streaming: int) -> None:
    with socket.create_connection(("127.0.0.1", streaming), timeout=SETTLE) as sock:
        sock.sendall(_get("/stream", "Connection: keep-alive", version="1.0"))
        received = _read_all(sock)  # returns: the server closes the connection
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Keep-Alive" not in head
    assert body == b"x" * (_Streaming.chunks * _Streaming.size)


def test_a_flush_waits_while_the_client_does_not_read(stack: Stack, streaming: int) -> None:
    """64 MiB for a client that reads nothing: without flow control every flush would return
    at once and the whole answer would sit in the server's memory."""
    with socket.create_connection(("127.0.0.1", streaming), timeout=SETTLE) as sock:
        sock.sendall(_get("/stream", "Connection: close"))
        # Until the flushes stop advancing: the buffers between us are full.
        previous = -1
        while _Streaming.flushed != previous:
            previous = _Streaming.flushed
            stack.loop.run(asyncio.sleep(0.2))
        assert _Streaming.flushed < _Streaming.chunks
        received = _read_all(sock)
    assert _Streaming.flushed == _Streaming.chunks
    body = received.partition(b"\r\n\r\n")[2]
    assert body.count(b"x") == _Streaming.chunks * _Streaming.size


class _Transport(asyncio.Transport):
    """What the connection writes, and whether it reads: asyncio's flow control driven by the
    test instead of by a socket's buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0  # all written at once


class _Unread(_Transport):
    """A client that reads nothing: what is written stays in the buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = self.close_called = False

    def get_write_buffer_size(self) -> int:
        return len(self.written)

    def close(self) -> None:
        self.closed = self.close_called = True

    def abort(self) -> None:
        self.closed = self.aborted = True


def test_H7_pipelined_requests_are_not_answered_while_the_client_is_not_reading(
        stack: Stack) -> None:
    """Once the transport's buffer is past its high-water mark (the client reads nothing),
    no more requests are read or answered until it drains: else a client sending requests
    and reading nothing would make answers pile up in memory without bound."""
    _, token = _signed_in(stack)
    request = _get("/verify", f"Authorization: Bearer {token}")  # a fast answer: at once

    def scenario() -> tuple[int, bool, int, int, bool]:
        app = stack.application
        connection = data_plane._Connection(DataPlane(app, fast_routes(app), every_route=True))
        transport = _Transport()
        connection.connection_made(transport)
        connection.data_received(request)
        answered = transport.written.count(b"HTTP/1.1 200 OK")
        connection.pause_writing()
        reading_while_paused = transport.reading
        connection.data_received(request * 3)  # what the kernel had already
        while_paused = transport.written.count(b"HTTP/1.1 200 OK")
        connection.resume_writing()
        after = transport.written.count(b"HTTP/1.1 200 OK")
        reading_after = transport.reading
        connection.connection_lost(None)
        return answered, reading_while_paused, while_paused, after, reading_after

    assert stack.loop.call(scenario) == (1, False, 1, 4, True)


def test_H7_a_deadline_pushed_later_holds_and_one_brought_earlier_is_met(stack: Stack) -> None:
    """One timer a connection (`_Connection._wait`): a timer set for an earlier deadline does
    not cut a connection whose deadline has moved later since, and a deadline brought earlier
    than the timer is met."""
    async def scenario() -> tuple[bool, bool, bool]:
        app = stack.application
        connection = data_plane._Connection(DataPlane(app, fast_routes(app), every_route=True))
        transport = _Transport()
        connection.connection_made(transport)  # the idle limit
        connection._wait(0.05)  # brought earlier: the timer moves to it
        connection._wait(60)  # pushed later: the timer stays, and waits again once it fires
        await asyncio.sleep(0.3)
        open_past_the_early_timer = not transport.closed
        rearmed = connection._timer is not None
        connection._wait(0.05)  # brought earlier than the re-armed timer
        await asyncio.sleep(0.3)
        aborted = transport.closed
        connection.connection_lost(None)
        return open_past_the_early_timer, rearmed, aborted

    assert stack.loop.run(scenario()) == (True, True, True)


def test_H7_a_client_that_never_reads_a_closing_answer_is_cut_in_time(
        stack: Stack, short_limits: None) -> None:
    """asyncio's close waits until the client has read what is buffered: one that never reads
    would hold the socket for ever. Cut after the idle limit, as on a kept connection."""
    async def scenario() -> tuple[bool, bool]:
        app = stack.application
        connection = data_plane._Connection(DataPlane(app, fast_routes(app), every_route=True))
        transport = _Unread()
        connection.connection_made(transport)
        connection.data_received(_get("/healthz", "Connection: close"))
        for _ in range(int(SETTLE / 0.05)):  # answered, closed, then cut past the idle limit
            if transport.aborted:
                break
            await asyncio.sleep(0.05)
        connection.connection_lost(None)
        return transport.close_called, transport.aborted

    assert stack.loop.run(scenario()) == (True, True)


def test_no_100_continue_once_the_body_came_without_it(every_route: tuple[Stack, int]) -> None:
    """A request that expects 100 Continue, read whole behind another: its 100 is no longer
    owed (it would come after the final answer, as a stray interim answer)."""
    _, port = every_route
    request = _post("/token", b"grant_type=x", "Expect: 100-continue")
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(_get("/healthz") + request)
        received = b""
        while received.count(b"HTTP/1.1 ") < 2:
            received += sock.recv(65536)
        sock.sendall(_get("/healthz", "Connection: close"))  # what comes before its answer
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert b"100 (Continue)" not in received


class _Gated(tornado.web.RequestHandler):
    """Answers once the test opens its gate: an answer still owed while more bytes come."""

    gate: asyncio.Event

    async def get(self) -> None:
        await self.gate.wait()
        self.finish("slow")

    def post(self) -> None:
        self.finish(b"posted " + self.request.body)


@pytest.fixture
def gated(stack: Stack) -> Iterator[int]:
    _Gated.gate = stack.loop.call(asyncio.Event)
    app = tornado.web.Application([(r"/gated", _Gated)])
    for port, _ in _serve_every_route(stack, app):
        yield port


def test_H7_a_malformed_request_after_one_being_answered_waits_for_its_answer(
        stack: Stack, gated: int) -> None:
    with socket.create_connection(("127.0.0.1", gated), timeout=SETTLE) as sock:
        sock.sendall(_get("/gated"))
        stack.loop.run(asyncio.sleep(0.1))
        sock.sendall(b"\x00garbage\r\n\r\n")
        stack.loop.run(asyncio.sleep(0.1))
        stack.loop.call(_Gated.gate.set)
        received = _read_all(sock)
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.endswith(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")


def test_100_continue_for_a_request_behind_another_comes_once_its_turn_does(
        stack: Stack, gated: int) -> None:
    body = b"abc"
    head = (b"POST /gated HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gated), timeout=SETTLE) as sock:
        sock.sendall(_get("/gated") + head)
        stack.loop.run(asyncio.sleep(0.1))
        stack.loop.call(_Gated.gate.set)
        received = _read_until(sock, b"HTTP/1.1 100 (Continue)\r\n\r\n")
        assert received.startswith(b"HTTP/1.1 200 OK")  # the earlier answer first
        sock.sendall(body)
        _read_until(sock, b"posted abc")


@pytest.fixture
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_limits, "IDLE_CONNECTION_TIMEOUT", 0.3)
    monkeypatch.setattr(http_limits, "BODY_TIMEOUT", 0.3)


@pytest.mark.parametrize("unfinished", [b"GET /gated HTTP/1.1\r\nHo",
                                        b"POST /gated HTTP/1.1\r\nHost: a\r\n"
                                        b"Content-Length: 10\r\n\r\nabc"],
                         ids=["headers", "body"])
def test_H7_a_request_left_unfinished_behind_a_slow_answer_is_cut_after_it(
        stack: Stack, gated: int, short_limits: None, unfinished: bytes) -> None:
    """Its limit passed while the answer before it was written: once that answer is out, the
    connection is cut (it is never left with no limit at all)."""
    with socket.create_connection(("127.0.0.1", gated), timeout=SETTLE) as sock:
        sock.sendall(_get("/gated") + unfinished)
        stack.loop.run(asyncio.sleep(0.6))  # past both limits, the answer still owed
        stack.loop.call(_Gated.gate.set)
        received = _read_all(sock)  # until the server closes (SETTLE at most)
    assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b"slow")


def test_H7_a_body_has_its_whole_time_from_its_100_continue(
        stack: Stack, gated: int, short_limits: None) -> None:
    """A 100 Continue held back behind a slow answer starts the body's time when it is sent,
    not when the headers came."""
    head = (b"POST /gated HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gated), timeout=SETTLE) as sock:
        sock.sendall(_get("/gated") + head)
        stack.loop.run(asyncio.sleep(0.6))  # longer than the body's limit
        stack.loop.call(_Gated.gate.set)
        _read_until(sock, b"HTTP/1.1 100 (Continue)\r\n\r\n")
        sock.sendall(b"abc")
        _read_until(sock, b"posted abc")


class _Short(tornado.web.RequestHandler):
    """Announces ten bytes and sends five: a handler that failed after its headers."""

    async def get(self) -> None:
        self.set_header("Content-Length", "10")
        self.write(b"12345")
        await self.flush()
        self.request.connection.finish()  # type: ignore[union-attr]
        self._finished = True


def test_H7_an_answer_short_of_its_content_length_ends_the_connection(stack: Stack) -> None:
    """Else the client would read the next answer on the connection as the rest of this one."""
    app = tornado.web.Application([(r"/short", _Short)])
    for port, _ in _serve_every_route(stack, app):
        with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
            sock.sendall(_get("/short") + _get("/short"))
            received = _read_all(sock)  # returns: the server closes the connection
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"Content-Length: 10" in head
        assert body == b"12345"  # and no second answer


def _traced_growth(stack: Stack, exchange: Callable[[], None]) -> tuple[int, int]:
    """The memory the process holds more after `exchange` than before, and the most it held
    more meanwhile (bytes, as tracemalloc counts them: no clock involved)."""
    tracemalloc.start()
    try:
        stack.loop.run(asyncio.sleep(0))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        exchange()
        stack.loop.run(asyncio.sleep(0))
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before


def test_H7_an_idle_connection_keeps_nothing_of_the_request_it_answered(
        every_route: tuple[Stack, int]) -> None:
    """Each of these connections sent a body near the limit and got its answer: idle, they
    hold none of it (Tornado's hold nothing either), else a client could park a MiB on each
    connection for the whole idle limit."""
    stack, port = every_route
    body = b"a" * (http_limits.MAX_BODY_BYTES - 1024)
    request = _post("/nothing-here", body)
    connections: list[socket.socket] = []

    def exchange() -> None:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", port), timeout=SETTLE)
            connections.append(sock)
            sock.sendall(request)
            _read_answers(sock)

    try:
        held, _ = _traced_growth(stack, exchange)
    finally:
        for sock in connections:
            sock.close()
    assert held < 2 * len(body)  # not one body for each of the 8 connections


def test_H7_a_body_of_tiny_chunks_takes_no_more_memory_than_its_size(
        every_route: tuple[Stack, int]) -> None:
    """llhttp hands a chunked body over chunk by chunk: 2-byte chunks kept each as an object
    of its own would take some twenty times the body's size while it comes."""
    stack, port = every_route
    chunks = 250_000
    head, _, _ = _post("/nothing-here", b"").partition(b"\r\n\r\n")
    head = head.replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    request = head + b"\r\n\r\n" + b"2\r\naa\r\n" * chunks + b"0\r\n\r\n"

    def exchange() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
            sock.sendall(request)
            _read_answers(sock)

    _, peak = _traced_growth(stack, exchange)
    assert peak < 8 * 2 * chunks  # the body, a copy of it, and room to spare


def test_H7_a_request_carries_nothing_of_the_context_of_the_one_before_it(
        every_route: tuple[Stack, int], logs: Any) -> None:
    """Two requests answered by handlers, pipelined: what the connection does after them
    (here, refuse a malformed request) must not run in the context of one of them, whose
    request id (and span) would be on it; Tornado runs it in the connection's own task."""
    _, port = every_route
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(_get("/healthz") + _get("/verify"))  # /verify without a token: a handler
        _read_answers(sock, 2)
        sock.sendall(b"\x00malformed\r\n\r\n")
        _read_all(sock)
    records = [json.loads(line) for line in logs.lines]
    ids = {record["request_id"] for record in records if record["logger"] == "gateway.access"}
    assert len(ids) == 2
    refusals = [record for record in records if "malformed" in record["message"]]
    assert len(refusals) == 1 and "request_id" not in refusals[0]


class _Big(tornado.web.RequestHandler):
    """An answer larger than the socket buffers: it waits in the write buffer until read."""

    size = 16 * 1024 * 1024
    finished = 0

    def get(self) -> None:
        self.finish(b"x" * self.size)

    def on_finish(self) -> None:
        type(self).finished += 1


def test_H7_a_drain_closes_a_connection_whose_queued_requests_wait_for_a_reader(
        stack: Stack) -> None:
    """Two requests pipelined; the client reads nothing, so the second waits unanswered when
    the drain comes. Once the client reads the first answer the connection must close (as on
    Tornado, which closes at once), not wait with a request nothing will ever answer."""
    _Big.finished = 0
    app = tornado.web.Application([(r"/big", _Big)])
    for port, plane in _serve_every_route(stack, app):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connect
            sock.settimeout(SETTLE)
            sock.connect(("127.0.0.1", port))
            sock.sendall(_get("/big") + _get("/big"))
            for _ in range(int(SETTLE / 0.05)):  # until the first answer waits to be read
                if _Big.finished:
                    break
                stack.loop.run(asyncio.sleep(0.05))
            assert _Big.finished == 1
            draining = asyncio.run_coroutine_threadsafe(plane.close_all_connections(),
                                                        stack.loop.loop)
            received = _read_all(sock)  # returns: the server closes the connection
        draining.result(SETTLE)
        assert received.count(b"HTTP/1.1 200 OK") == 1 and received.endswith(b"x" * 1024)
        assert _Big.finished == 1


# What Java's HttpClient sends over plain HTTP (its default version is HTTP/2): an h2c offer.
H2C_OFFER = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
             "HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA")
OFFERS = {
    "h2c, GET": _get("/.well-known/jwks.json", *H2C_OFFER),
    "h2c, POST with a body": _post(
        "/token", b"grant_type=authorization_code&code=x&client_id=nobody&client_secret=y",
        *H2C_OFFER),
    "h2c, POST with a chunked body": _post("/token", b"", *H2C_OFFER).replace(
        b"Content-Length: 0", b"Transfer-Encoding: chunked") + b"b\r\ngrant_type=\r\n0\r\n\r\n",
    "websocket": _get("/nothing-here", "Connection: Upgrade", "Upgrade: websocket",
                      "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
}


@pytest.mark.parametrize("offer", sorted(OFFERS))
def test_H7_an_offer_to_switch_protocols_is_declined_and_answered_as_on_tornado(
        every_route: tuple[Stack, int], offer: str) -> None:
    """RFC 9110 7.8: a server may ignore `Upgrade`; Tornado does, and answers over HTTP/1.1. A
    400 would fail every call of a Java client over plain HTTP. The answer is Tornado's (with
    `Connection: close`: a proxy that took the offer for a switch gets no tunnel), and nothing
    pipelined after it is read."""
    stack, port = every_route
    request = OFFERS[offer]
    tornado_answer = _exchange(_main_port(stack), request)
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(request + _get("/healthz"))
        received = _read_all(sock)  # returns: the server closes the connection
    assert len(_answers(received)) == 1
    closing = b"\r\nConnection: close\r\n"
    assert closing in received
    # (With `--http-parser llhttp` the stack's own listener is this one: it says so too.)
    _same(tornado_answer.replace(closing, b"\r\n"), received.replace(closing, b"\r\n"))


class _OwnFields(tornado.web.RequestHandler):
    """Sets fields the connection also sets: Tornado's connection replaces them with its own."""

    async def get(self) -> None:
        self.set_header("Connection", "keep-alive")
        self.set_header("Transfer-Encoding", "chunked")  # and writes its body unframed
        self.write(b"0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        await self.flush()
        self.finish(b"!")


def _serve_on_tornado(stack: Stack, application: tornado.web.Application) -> Iterator[int]:
    """`application` on Tornado's HTTP server, as the public listener serves it by default."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http_server = stack.loop.call(lambda: server.make_http_server(application))
    stack.loop.call(lambda: http_server.add_sockets(sockets))
    yield int(sockets[0].getsockname()[1])
    stack.loop.call(http_server.stop)
    stack.loop.run(http_server.close_all_connections())


def test_H7_fields_a_handler_sets_that_frame_the_answer_are_the_connections(
        stack: Stack) -> None:
    """A handler's own `Transfer-Encoding: chunked` and `Connection`: Tornado's connection
    sets both itself (it frames the body in chunks, says close when it closes). Written as the
    handler gave them, the unframed body would be read as chunks, here as a forged second
    answer, and the client would see `keep-alive` beside `close`."""
    app = tornado.web.Application([(r"/own", _OwnFields)])
    request = _get("/own", "Connection: close")
    for tornado_port in _serve_on_tornado(stack, app):
        for port, _ in _serve_every_route(stack, app):
            _same(_read_all_from(tornado_port, request), _read_all_from(port, request))


def _read_all_from(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(request)
        return _read_all(sock)


def test_H7_an_http_1_0_request_of_unknown_length_does_not_keep_the_connection(
        every_route: tuple[Stack, int]) -> None:
    """HTTP/1.0 knows no chunks: without Content-Length, what follows the head of a POST may be
    its body, sent by a client that ends it with the connection. Tornado keeps no such
    connection alive (HTTP1Connection._can_keep_alive), so those bytes are never read as a
    request; llhttp would keep it and answer them."""
    stack, port = every_route
    request = (b"POST /nothing-here HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
               + _get("/healthz", "Connection: keep-alive", version="1.0"))
    for listener in (_main_port(stack), port):
        with socket.create_connection(("127.0.0.1", listener), timeout=SETTLE) as sock:
            sock.sendall(request)
            received = _read_all(sock)  # returns: the server closes the connection
        assert len(_answers(received)) == 1
        assert b"/healthz" not in received and b"200 OK" not in received


def test_H7_requests_read_before_one_that_is_dropped_are_answered_first(
        every_route: tuple[Stack, int]) -> None:
    """A request pipelined behind others announces a body past the hard limit: the connection
    is dropped, but after the answers to the requests read before it, as Tornado (reading one
    request at a time) answers them. Found by the differential fuzz: the whole connection went
    at once, their answers with it."""
    stack, port = every_route
    dropped = (f"POST /token HTTP/1.1\r\nHost: a\r\n"
               f"Content-Length: {http_limits.MAX_BODY_BYTES + 1}\r\n\r\n").encode()
    request = _get("/healthz") + _get("/nothing-here", "Accept: application/json") + dropped
    for listener in (_main_port(stack), port):
        with socket.create_connection(("127.0.0.1", listener), timeout=SETTLE) as sock:
            sock.sendall(request)
            received = _read_all(sock)  # returns: the server closes the connection
        statuses = [head.split(b" ")[1] for head, _ in _answers(received)]
        assert statuses[:2] == [b"200", b"404"]


@pytest.mark.parametrize("fields", [("Connection: keep-alive, close",),
                                    ("Connection: close", "Connection: keep-alive")],
                         ids=["one field", "two fields"])
def test_H7_an_http_1_0_request_that_says_close_is_not_kept_alive(
        every_route: tuple[Stack, int], fields: tuple[str, ...]) -> None:
    """HTTP/1.0 with `close` beside `keep-alive`: llhttp keeps such a connection (it reads only
    `keep-alive` on HTTP/1.0), and its answer announces no Keep-Alive, so a client reading it to
    the connection's end waited for the idle limit. Tornado closes it. Found by the differential
    fuzz."""
    stack, port = every_route
    request = _get("/healthz", *fields, version="1.0")
    for listener in (_main_port(stack), port):
        with socket.create_connection(("127.0.0.1", listener), timeout=SETTLE) as sock:
            sock.sendall(request)
            received = _read_all(sock)  # returns: the server closes the connection
        assert received.startswith(b"HTTP/1.1 200 OK") and b"Keep-Alive" not in received
