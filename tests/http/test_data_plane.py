"""The data-plane listener (gateway/data_plane.py): `/verify` and `/auth` parsed by llhttp.

Its answers must be the public listener's byte for byte (apart from Date and X-Request-ID), for
the fast answers and for the handlers' alike, and it must be as hard to abuse: request
smuggling refused, sizes bounded, slow clients timed out, pipelined requests answered in order.
Everything is raw bytes over a real socket, as a proxy or an attacker would send them.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.netutil
from conftest import Stack

from gateway import http_limits, server
from gateway.data_plane import DataPlane

VARYING = re.compile(rb"^(Date|X-Request-Id): .*$", re.MULTILINE | re.IGNORECASE)
SETTLE = 10.0  # seconds a test waits at most for the server to close a connection


@pytest.fixture
def plane(stack: Stack) -> Iterator[tuple[Stack, int]]:
    """The stack's gateway with a data plane on a free loopback port."""
    yield from _started(stack)


def _started(stack: Stack) -> Iterator[tuple[Stack, int]]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    started: DataPlane | None = stack.loop.run(
        server.start_data_plane(stack.dev.settings, stack.server, sockets))
    assert started is not None
    yield stack, port
    stack.loop.call(started.stop)
    stack.loop.run(started.close_all_connections())


def _main_port(stack: Stack) -> int:
    return int(stack.dev.gateway_sockets[0].getsockname()[1])


def _exchange(port: int, data: bytes, *, answers: int = 1) -> bytes:
    """Send `data` on a new connection and read until `answers` complete responses (each with
    a Content-Length) have come, or the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(data)
        received = b""
        while _complete_answers(received) < answers:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _read_answers(sock: socket.socket, count: int = 1) -> bytes:
    """What the server sends on an open connection until `count` complete answers have come
    (each with a Content-Length); the connection must not close before."""
    received = b""
    while _complete_answers(received) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {count} answer(s): {received[:200]!r}"
        received += chunk
    return received


def _complete_answers(data: bytes) -> int:
    return len(_answers(data))


def _answers(data: bytes) -> list[tuple[bytes, bytes]]:
    """The complete responses in `data`, in order: (head, body), by their Content-Length."""
    found, rest = [], data
    while b"\r\n\r\n" in rest:
        head, _, after = rest.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: (\d+)", head)
        size = int(length.group(1)) if length else 0
        if len(after) < size:
            break
        found.append((head, after[:size]))
        rest = after[size:]
    return found


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (a FIN, or a reset when it dropped it with
    bytes still unread) within SETTLE seconds."""
    sock.settimeout(SETTLE)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _same(main: bytes, plane: bytes) -> None:
    assert VARYING.sub(b"", plane) == VARYING.sub(b"", main)
    assert plane.startswith(b"HTTP/1.1 ")


def _signed_in(stack: Stack) -> tuple[Any, str]:
    browser = stack.browser()
    browser.login()
    return browser, browser.access_token()


def _get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: gateway.test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- the same answers -----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["verify", "verify refused", "verify no token", "auth cookie",
                                  "auth stranger", "auth session", "head auth", "unknown path",
                                  "http/1.0 keep-alive", "connection close"])
def test_the_data_plane_answers_byte_for_byte_as_the_public_listener(
        plane: tuple[Stack, int], case: str) -> None:
    stack, port = plane
    browser, token = _signed_in(stack)
    session = "; ".join(f"{n}={v}" for n, v in browser.cookies.items()
                        if not n.endswith("gw_access"))
    original = "X-Original-URL: https://app.example.test/a"
    request = {
        "verify": _get("/verify", f"Authorization: Bearer {token}"),
        "verify refused": _get("/verify", f"Authorization: Bearer {token[:-6]}AAAAAA"),
        "verify no token": _get("/verify"),
        "auth cookie": _get("/auth", f"Cookie: gw_access={token}", original),
        "auth stranger": _get("/auth", original),
        "auth session": _get("/auth", f"Cookie: {session}", original),
        "head auth": _get("/auth", f"Cookie: gw_access={token}").replace(b"GET", b"HEAD", 1),
        "unknown path": _get("/login", "Accept: application/json"),
        "http/1.0 keep-alive": _get("/verify", f"Authorization: Bearer {token}",
                                    "Connection: keep-alive", version="1.0"),
        "connection close": _get("/verify", f"Authorization: Bearer {token}",
                                 "Connection: close"),
    }[case]
    if case == "unknown path":  # the public listener's answer for a path it does not have
        main = _exchange(_main_port(stack), _get("/nothing-here", "Accept: application/json"))
    else:
        main = _exchange(_main_port(stack), request)
    _same(main, _exchange(port, request))


def test_pipelined_requests_are_answered_in_order_fast_and_handled_alike(
        plane: tuple[Stack, int]) -> None:
    stack, port = plane
    browser, token = _signed_in(stack)
    session = "; ".join(f"{n}={v}" for n, v in browser.cookies.items()
                        if not n.endswith("gw_access"))
    requests = [_get("/verify", f"Authorization: Bearer {token}"),  # fast
                _get("/auth", f"Cookie: {session}"),  # the handler: a store lookup
                _get("/verify", "Authorization: Bearer x.y.z"),  # fast refusal
                _get("/verify", f"Authorization: Bearer {token}")]
    received = _exchange(port, b"".join(requests), answers=4)
    statuses = [head.split(b" ")[1] for head, _ in _answers(received)]
    assert statuses == [b"200", b"200", b"401", b"200"]
    assert received.count(b"X-Auth-Request-User: google:") == 1


def test_a_keep_alive_connection_serves_many_requests(plane: tuple[Stack, int]) -> None:
    stack, port = plane
    _, token = _signed_in(stack)
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        for _ in range(50):
            sock.sendall(_get("/verify", f"Authorization: Bearer {token}"))
            received = _read_answers(sock)
            assert received.startswith(b"HTTP/1.1 200 OK")
    text = stack.loop.call(lambda: stack.ctx.metrics.exposition().decode())
    assert 'route="/verify",status="200"} 50.0' in text


# -- request smuggling and malformed requests: 400, closed ----------------------------------


SMUGGLING = {
    "content-length and transfer-encoding": b"GET /verify HTTP/1.1\r\nHost: a\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two content-lengths": b"GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
    "obsolete line folding": b"GET /verify HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer\r\n"
    b" x.y.z\r\n\r\n",
    "transfer-encoding not ending in chunked": b"GET /verify HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n",
    "space before the colon": b"GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n"
    b"abc",
    "bare LF line ends": b"GET /verify HTTP/1.1\nHost: a\n\n",
    "signed content-length": b"GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    "HTTP/2.0 on the request line": b"GET /verify HTTP/2.0\r\nHost: a\r\n\r\n",
    "CONNECT": b"CONNECT gateway.test:443 HTTP/1.1\r\nHost: gateway.test:443\r\n\r\n",
    # What Tornado's HTTPHeaders.add would refuse, refused by llhttp (data_plane.py relies on it).
    "NUL in a value": b"GET /verify HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
    "DEL in a value": b"GET /verify HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n",
    "a bare CR in a value": b"GET /verify HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
    "a name that is not a token": b"GET /verify HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n",
    # llhttp takes this and hands the body over still gzipped; Tornado refuses it.
    "a coding before chunked": b"POST /verify HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "a coding before chunked, in a field of its own": b"POST /verify HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    # llhttp hands a chunked body's trailer over as headers: refused, as by Tornado.
    "a trailer after a chunked body": b"POST /verify HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Forwarded-User: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_H7_request_smuggling_and_malformed_requests_are_a_400_and_closed(
        plane: tuple[Stack, int], name: str) -> None:
    _, port = plane
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(SMUGGLING[name])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


# Heads that announce a body and are refused for what the head says, before any body is sent.
REFUSED_AT_THE_HEAD = {
    "no Host": b"POST /verify HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
    "two Host fields": b"POST /verify HTTP/1.1\r\nHost: a\r\nHost: b\r\n"
                       b"Content-Length: 10\r\n\r\n",
    "a Host that is no host name": b"POST /verify HTTP/1.1\r\nHost: a b@c\r\n"
                                   b"Content-Length: 10\r\n\r\n",
    "HTTP/0.9": b"POST /verify HTTP/0.9\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(REFUSED_AT_THE_HEAD))
def test_H7_a_bad_host_or_version_is_refused_at_the_end_of_the_head(
        plane: tuple[Stack, int], name: str) -> None:
    """As on Tornado's listener: the 400 comes without waiting for a body it would not use."""
    stack, port = plane
    for each in (_main_port(stack), port):
        with socket.create_connection(("127.0.0.1", each), timeout=SETTLE) as sock:
            sock.sendall(REFUSED_AT_THE_HEAD[name])
            answer = _read_answers(sock)
            assert _closed_by_server(sock)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (each, answer)


def test_H7_a_valid_request_pipelined_after_a_smuggled_one_is_never_answered(
        plane: tuple[Stack, int]) -> None:
    stack, port = plane
    _, token = _signed_in(stack)
    smuggled = SMUGGLING["content-length and transfer-encoding"]
    answer = _exchange(port, smuggled + _get("/verify", f"Authorization: Bearer {token}"),
                       answers=2)
    assert answer.count(b"HTTP/1.1") == 1 and answer.startswith(b"HTTP/1.1 400")


# -- sizes and slow clients --------------------------------------------------------------------


def test_H4_headers_past_the_handlers_limit_get_the_same_431(plane: tuple[Stack, int]) -> None:
    stack, port = plane
    request = _get("/verify", "X-Filler: " + "a" * 20_000, "Authorization: Bearer x.y.z")
    _same(_exchange(_main_port(stack), request), _exchange(port, request))
    assert _exchange(port, request).startswith(b"HTTP/1.1 431")


def test_H7_headers_past_the_hard_limit_drop_the_connection(plane: tuple[Stack, int]) -> None:
    _, port = plane
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"GET /verify HTTP/1.1\r\nHost: a\r\n")
        filler = b"X-Filler: " + b"a" * 8000 + b"\r\n"
        try:
            for _ in range(http_limits.MAX_HEADER_BYTES // len(filler) + 2):
                sock.sendall(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass  # dropped while sending: what is expected
        assert _closed_by_server(sock)


def test_H7_a_body_past_the_hard_limit_drops_the_connection(plane: tuple[Stack, int]) -> None:
    _, port = plane
    size = http_limits.MAX_BODY_BYTES + 1
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(f"GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n"
                     .encode())
        try:
            for _ in range(size // 65536 + 1):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _closed_by_server(sock)


def test_H7_chunk_extensions_count_against_the_body_limit(
        plane: tuple[Stack, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """llhttp reads a chunk extension of any length (Tornado refuses extensions): one endless
    extension is dropped once the body's bytes on the wire pass a few times its limit, instead
    of being parsed until the body's time limit."""
    _, port = plane
    monkeypatch.setattr(http_limits, "MAX_BODY_BYTES", 64 * 1024)
    piece, pieces = b"a" * 65536, 1024  # 64 MiB: far past 8 x 64 KiB, and any socket buffer
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"POST /verify HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"1;name=")
        try:
            for _ in range(pieces):
                sock.sendall(piece)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < pieces
        assert _closed_by_server(sock)


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_limits, "IDLE_CONNECTION_TIMEOUT", 0.3)
    monkeypatch.setattr(http_limits, "BODY_TIMEOUT", 0.3)


@pytest.mark.parametrize("sent", [b"", b"GET /verify HTTP/1.1\r\nHost: a\r\n",
                                  b"GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
                                  b"\r\nabc"])
def test_H7_an_idle_or_slow_client_is_disconnected(short_timeouts: None, stack: Stack,
                                                   sent: bytes) -> None:
    """Nothing, half the headers, half the body: the connection is closed by the server (the
    client never sends the rest), without an answer."""
    for _, port in _started(stack):
        with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            assert _closed_by_server(sock)
            assert time.monotonic() - started < SETTLE


def test_H7_a_slow_body_is_cut_at_the_body_limit_not_the_idle_one(
        monkeypatch: pytest.MonkeyPatch, stack: Stack) -> None:
    """The body's limit comes before the idle connection's: the connection's one timer is
    brought forward to it (data_plane.py `_wait`)."""
    monkeypatch.setattr(http_limits, "IDLE_CONNECTION_TIMEOUT", 600.0)
    monkeypatch.setattr(http_limits, "BODY_TIMEOUT", 0.3)
    for _, port in _started(stack):
        with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
            sock.sendall(b"POST /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            assert _closed_by_server(sock)


def _cut_while_dripping(port: int, start: bytes, drip: bytes) -> bool:
    """Send `start`, then `drip` every 0.1 s: whether the server closes the connection
    within SETTLE seconds although bytes keep coming."""
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(start)
        sock.settimeout(0.1)
        give_up = time.monotonic() + SETTLE
        while time.monotonic() < give_up:
            try:
                sock.sendall(drip)
                if sock.recv(65536) == b"":
                    return True
            except TimeoutError:
                continue
            except OSError:  # reset, or a broken pipe: closed
                return True
    return False


@pytest.mark.parametrize("limit, start, drip", [
    ("IDLE_CONNECTION_TIMEOUT", b"GET /verify HTTP/1.1\r\nHost: a\r\n", b"X"),
    ("BODY_TIMEOUT", b"POST /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n",
     b"a"),
], ids=["headers", "body"])
def test_H7_a_request_sent_a_byte_at_a_time_is_cut_at_its_limit(
        monkeypatch: pytest.MonkeyPatch, stack: Stack, limit: str, start: bytes,
        drip: bytes) -> None:
    """Slowloris: each byte that comes does not move the limit of the headers (from their
    first byte) or of the body (from the headers' end), as with Tornado's timeouts."""
    monkeypatch.setattr(http_limits, "IDLE_CONNECTION_TIMEOUT", 600.0)
    monkeypatch.setattr(http_limits, "BODY_TIMEOUT", 600.0)
    monkeypatch.setattr(http_limits, limit, 0.5)
    for _, port in _started(stack):
        assert _cut_while_dripping(port, start, drip)


def test_H7_one_endless_header_is_cut_near_the_header_limit(plane: tuple[Stack, int]) -> None:
    """llhttp keeps a header value whole until its end: without a count of the bytes read
    meanwhile, one value without end would grow (and be copied) until memory runs out."""
    _, port = plane
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"GET /verify HTTP/1.1\r\nHost: a\r\nX-Big: ")
        with contextlib.suppress(OSError):  # reset, or a broken pipe: cut
            for _ in range(128):  # 8 MiB, far past the limit and a read
                sock.sendall(b"a" * 65536)
        assert _closed_by_server(sock)


def test_H7_a_malformed_request_read_with_valid_ones_is_refused_after_their_answers(
        plane: tuple[Stack, int]) -> None:
    """In one read: the valid requests before it are answered, then the 400, as Tornado
    (which reads one request at a time) answers them."""
    _, port = plane
    request = _get("/verify", "Authorization: Bearer x.y.z")
    received = _exchange(port, request * 2 + b"\x00garbage\r\n\r\n", answers=3)
    heads = [head for head, _ in _answers(received)]
    assert [head.split(b"\r\n")[0] for head in heads] == [
        b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 400 Bad Request"]


def test_bytes_after_a_request_that_closes_the_connection_are_never_read(
        plane: tuple[Stack, int]) -> None:
    """Neither answered nor refused: Tornado stops reading after such a request too."""
    _, port = plane
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(_get("/verify", "Authorization: Bearer x.y.z", "Connection: close")
                     + _get("/verify"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert [head.split(b"\r\n")[0] for head, _ in _answers(received)] == [
        b"HTTP/1.1 401 Unauthorized"]


def test_a_drain_closes_idle_connections_and_finishes_answers(stack: Stack) -> None:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    started = stack.loop.run(server.start_data_plane(stack.dev.settings, stack.server, sockets))
    assert started is not None
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as idle:
        idle.sendall(_get("/verify", "Authorization: Bearer x.y.z"))
        assert _complete_answers(idle.recv(65536)) == 1
        stack.loop.call(started.stop)
        stack.loop.run(started.close_all_connections())
        assert _closed_by_server(idle)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_serve_command_starts_the_data_plane(make_stack: Callable[..., Stack]) -> None:
    """`[data_plane]` is read from the configuration and bound by the serve command's code."""
    stack = make_stack(data_plane={"enabled": True, "address": "127.0.0.1", "port": 0})
    sockets = server.bind_data_plane(stack.dev.settings)
    assert len(sockets) == 1 and sockets[0].getsockname()[0] == "127.0.0.1"
    for socket_ in sockets:
        socket_.close()
    assert server.bind_data_plane(make_stack().dev.settings) == []


def test_a_name_that_would_split_a_header_is_encoded_the_same_way(
        plane: tuple[Stack, int]) -> None:
    stack, port = plane
    ctx = stack.ctx
    token = stack.loop.call(lambda: ctx.issuer.issue(
        "google:zoe", ctx.settings.audience, {"name": "Zoë\r\nX-Evil: 1", "idp": "google"}))
    request = _get("/auth", f"Authorization: Bearer {token}")
    answer = _exchange(port, request)
    _same(_exchange(_main_port(stack), request), answer)
    assert b"X-Auth-Request-Preferred-Username: Zo%C3%AB%0D%0AX-Evil: 1\r\n" in answer
    assert b"\r\nX-Evil" not in answer


def test_H7_a_flood_of_pipelined_requests_drops_the_connection(plane: tuple[Stack, int]) -> None:
    """What one read brings is parsed before anything is answered, each request kept in
    memory: past MAX_PIPELINED the connection goes. Up to it, every one is answered."""
    from gateway.data_plane import MAX_PIPELINED

    _, port = plane
    request = _get("/verify", "Authorization: Bearer x.y.z")
    answered = _exchange(port, request * MAX_PIPELINED, answers=MAX_PIPELINED)
    assert _complete_answers(answered) == MAX_PIPELINED
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # dropped mid-send
            sock.sendall(request * (MAX_PIPELINED * 16))
        assert _closed_by_server(sock)
