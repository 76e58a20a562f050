"""A soak of the llhttp listener (gateway/data_plane.py, every route): well-behaved clients
and hostile ones at the same time, round after round.

Each round runs, concurrently, clients that keep connections alive and pipeline requests (all
must get their exact answers), and clients that trickle headers or bodies (slowloris), pipeline
hundreds of requests and read nothing, reset the connection mid-answer, half-close, send
garbage or endless headers. Afterwards nothing may be left: no connection the listener still
holds, no memory it kept (tracemalloc counts it, no clock involved), no error asyncio logged
(an exception in a callback, a task destroyed while pending, a future's exception never
retrieved). `SOAK_ROUNDS=200 pytest tests/http/test_llhttp_soak.py` soaks longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import tornado.httputil
import tornado.web
from conftest import Stack
from test_data_plane import SETTLE, _answers, _get, _read_answers
from test_llhttp_listener import _serve_every_route

from gateway import data_plane, http_limits
from gateway.data_plane import DataPlane

ROUNDS = int(os.environ.get("SOAK_ROUNDS", "3"))
LIMIT = 0.3  # seconds: the idle and body limits while soaking, so that hostile clients end soon
POLITE_REQUESTS = 20
UNREAD_PIPELINED = 300
# What the process may still hold after the soak, beyond what it held before: caches that stay
# bounded (CPython's type attribute cache keeps the name of each lookup it holds: a handler's
# `request.method.lower()`, 52 bytes, up to 4,096 entries), never a connection's buffers (each
# round sends a body near the 1 MiB limit).
KEPT_BYTES = 1024 * 1024
NEAR_LIMIT_BODY = b"a" * (http_limits.MAX_BODY_BYTES - 16)


@pytest.fixture
def soaked(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, DataPlane]]:
    monkeypatch.setattr(http_limits, "IDLE_CONNECTION_TIMEOUT", LIMIT)
    monkeypatch.setattr(http_limits, "BODY_TIMEOUT", LIMIT)
    yield from _serve_every_route(stack)


class _AsyncioErrors(logging.Handler):
    """Every error asyncio logs: what its loop's exception handler reports."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _polite(port: int) -> None:
    """Keep-alive requests one after the other, then pipelined ones: every answer exact."""
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        for _ in range(POLITE_REQUESTS):
            sock.sendall(_get("/healthz"))
            [(head, body)] = _answers(_read_answers(sock))
            assert head.startswith(b"HTTP/1.1 200 OK") and b'"status"' in body
        sock.sendall(_get("/.well-known/jwks.json") * 4 + _get("/nothing-here") * 2)
        received = _read_answers(sock, 6)
        statuses = [head.split(b"\r\n")[0] for head, _ in _answers(received)]
        assert statuses == [b"HTTP/1.1 200 OK"] * 4 + [b"HTTP/1.1 404 Not Found"] * 2


def _posts_a_big_body(port: int) -> None:
    """A body near the limit, its answer, then the connection idles until the limit cuts it."""
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: a\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(NEAR_LIMIT_BODY) + NEAR_LIMIT_BODY)
        [(head, _)] = _answers(_read_answers(sock))
        assert head.startswith(b"HTTP/1.1 4")
        _closed_by_server(sock)


def _closed_by_server(sock: socket.socket) -> bytes:
    """What the server sends until it closes (SETTLE at most: the limits are LIMIT). A close
    with our bytes still unread there is a reset: that is a close too."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 20):
            received += chunk
    return received


def _slowloris(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        try:
            for _ in range(40):  # a byte every LIMIT / 4: each within the idle limit
                threading.Event().wait(LIMIT / 4)
                sock.sendall(b"x")
        except OSError:
            return  # cut, as it must be
        _closed_by_server(sock)


def _slow_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant")
        _closed_by_server(sock)


def _never_reads(port: int) -> None:
    """Hundreds of requests pipelined, no answer read: reading pauses, memory stays bounded,
    and the connection ends once the client goes."""
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        requests = _get("/.well-known/jwks.json") * UNREAD_PIPELINED
        sent = 0
        for _ in range(200):
            try:
                sent += sock.send(requests[sent:])
            except BlockingIOError:
                threading.Event().wait(0.005)
            if sent == len(requests):
                break
        threading.Event().wait(LIMIT)


def _resets(port: int) -> None:
    """A request, then a reset (SO_LINGER 0) while its answer may be on its way."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SETTLE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(_get("/.well-known/jwks.json") * 3)
    sock.close()


def _half_closes(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(_get("/healthz") * 2)
        sock.shutdown(socket.SHUT_WR)
        _closed_by_server(sock)


def _garbage(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)))
        received = _closed_by_server(sock)
        assert received.startswith(b"HTTP/1.1 400 ") or received == b""


def _endless_header(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=SETTLE) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Long: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * 65536)
        except OSError:
            return  # dropped past the header limit, as it must be
        _closed_by_server(sock)


HOSTILE: tuple[Callable[[int], None], ...] = (
    _posts_a_big_body, _slowloris, _slow_body, _never_reads, _resets, _half_closes, _garbage,
    _endless_header)


def _round(port: int) -> None:
    with ThreadPoolExecutor(max_workers=len(HOSTILE) + 3) as pool:
        polite = [pool.submit(_polite, port) for _ in range(3)]
        hostile = [pool.submit(client, port) for client in HOSTILE]
        for future in polite + hostile:
            future.result()


def _alive(kind: type) -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, kind))


def _open_connections(stack: Stack, plane: DataPlane) -> int:
    return int(stack.loop.call(lambda: len(plane._connections)))


def _until_no_connection_is_left(stack: Stack, plane: DataPlane) -> None:
    for _ in range(int(SETTLE / 0.05)):
        if _open_connections(stack, plane) == 0:
            return
        stack.loop.run(asyncio.sleep(0.05))
    assert _open_connections(stack, plane) == 0, "connections left open after the soak"


def test_H7_a_soak_of_hostile_and_polite_clients_leaves_nothing_behind(
        stack: Stack, soaked: tuple[int, DataPlane]) -> None:
    port, plane = soaked
    errors = _AsyncioErrors()
    logging.getLogger("asyncio").addHandler(errors)
    # Below ERROR, no record is made: pytest's capture would keep each of them in memory.
    logging.disable(logging.WARNING)
    try:
        _round(port)  # warms what a first request warms (imports, logging, caches)
        _until_no_connection_is_left(stack, plane)
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(ROUNDS):
                _round(port)
            _until_no_connection_is_left(stack, plane)
            stack.loop.run(asyncio.sleep(0))
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
            connections = _alive(data_plane._Connection)
            requests = _alive(tornado.httputil.HTTPServerRequest)
            handlers = _alive(tornado.web.RequestHandler)
        finally:
            tracemalloc.stop()
    finally:
        logging.disable(logging.NOTSET)
        logging.getLogger("asyncio").removeHandler(errors)
    assert errors.messages == []
    assert (connections, requests, handlers) == (0, 0, 0)
    assert kept < KEPT_BYTES, f"{kept} bytes kept after {ROUNDS} rounds"
