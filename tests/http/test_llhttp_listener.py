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
import socket
from collections.abc import Callable, Iterator

import pytest
import tornado.netutil
import tornado.web
from conftest import Stack
from test_data_plane import SETTLE, _answers, _exchange, _get, _main_port, _same

from gateway.data_plane import DataPlane
from gateway.fast_route import fast_routes


def _serve_every_route(stack: Stack, application: tornado.web.Application | None = None
                       ) -> Iterator[int]:
    """`application` (the stack's own by default) on a free port, as `listen.http_parser =
    "llhttp"` serves it."""
    app = application or stack.application
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    plane = DataPlane(app, fast_routes(app), every_route=True)
    stack.loop.run(plane.start(sockets))
    yield int(sockets[0].getsockname()[1])
    stack.loop.call(plane.stop)
    stack.loop.run(plane.close_all_connections())


@pytest.fixture
def every_route(stack: Stack) -> Iterator[tuple[Stack, int]]:
    for port in _serve_every_route(stack):
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
        received = b""
        while not _answers(received):
            received += sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 401 ")


def test_H7_a_body_announced_past_the_limit_is_refused_before_100_continue(
        every_route: tuple[Stack, int]) -> None:
    _, port = every_route
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999\r\n"
                     b"Expect: 100-continue\r\n\r\n")
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
    yield from _serve_every_route(stack, tornado.web.Application([(r"/stream", _Streaming)]))


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
