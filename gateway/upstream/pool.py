"""Kept-alive connections to the providers, for Tornado's simple HTTP client.

Tornado's simple client opens a connection for every call and closes it after the answer: a
TCP (and, against a real provider, a TLS) handshake per login, and at a sustained few hundred
logins a second to one provider address, the ephemeral ports run out in TIME_WAIT. Here an
answer that leaves its HTTP/1.1 connection reusable gives the stream back to a small pool, and
the next call to the same host, port and TLS settings takes it instead of connecting.

A pooled stream is handed out only if it is still open, nothing was received on it while idle
(a close or stray bytes), and it idled less than IDLE_SECONDS (below the idle timeouts of the
usual servers, so that a provider closing it at the moment we write is unlikely). A call is
never retried on another connection: a code exchange is single use. In flight nothing changes:
each call holds one connection, as before (libcurl, which keeps connections too, costs 16 KB
more per call in flight: README, Benchmarks).

The hooks used are Tornado's: `SimpleAsyncHTTPClient._connection_class` (there to be
overridden) and `HTTP1Connection.detach`; `_HTTPConnection` is subclassed for two methods.
"""

from __future__ import annotations

import collections
import select
import time
import weakref
from collections.abc import Hashable
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream
from tornado.netutil import Resolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient, _HTTPConnection
from tornado.tcpclient import TCPClient

IDLE_SECONDS = 20.0  # a pooled connection older than this is closed instead of reused
MAX_IDLE_PER_ORIGIN = 128  # idle connections kept per (host, port, TLS settings)

PoolKey = tuple[Hashable, ...]


class ConnectionPool(TCPClient):
    """`TCPClient.connect`, handing out an idle kept-alive stream when one is usable."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        super().__init__(resolver=resolver)
        self._idle: dict[PoolKey, collections.deque[tuple[float, IOStream]]] = {}
        self._keys: weakref.WeakKeyDictionary[IOStream, PoolKey] = weakref.WeakKeyDictionary()

    async def connect(self, host: str, port: int, *args: Any, **kwargs: Any) -> IOStream:
        key = _pool_key(host, port, *args, **kwargs)
        stream = self._take(key) if key is not None else None
        if stream is not None:
            return stream
        stream = await super().connect(host, port, *args, **kwargs)
        if key is not None:
            self._keys[stream] = key
        return stream

    def give_back(self, stream: IOStream) -> None:
        """An answered call's stream, clean and reusable; closed if the pool has no room."""
        key = self._keys.get(stream)
        idle = self._idle.setdefault(key, collections.deque()) if key is not None else None
        if idle is None or len(idle) >= MAX_IDLE_PER_ORIGIN or stream.closed():
            stream.close()
            return
        # Watched while idle: a close by the provider ends it (and frees the socket) at once.
        stream.set_close_callback(lambda: _forget(idle, stream))
        idle.append((time.monotonic(), stream))

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop()[1].close()
        super().close()

    def _take(self, key: PoolKey) -> IOStream | None:
        idle = self._idle.get(key)
        while idle:
            since, stream = idle.pop()  # the most recently used: the least likely to be stale
            stream.set_close_callback(None)
            if time.monotonic() - since < IDLE_SECONDS and _usable(stream):
                return stream
            stream.close()
        return None


class KeepAliveHTTPClient(SimpleAsyncHTTPClient):
    """Tornado's simple client over a `ConnectionPool`."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.tcp_client = ConnectionPool(resolver=self.resolver)

    def _connection_class(self) -> type:
        return _KeepAliveConnection


class _KeepAliveConnection(_HTTPConnection):
    """One call: asks for keep-alive, and gives a reusable connection back to the pool."""

    _response_version = ""

    async def run(self) -> None:
        # Tornado sends `Connection: close` unless told otherwise; HTTP/1.1 keeps it alive.
        self.request.headers.setdefault("Connection", "keep-alive")
        await super().run()

    def _create_connection(self, stream: IOStream) -> HTTP1Connection:
        stream.set_nodelay(True)
        return HTTP1Connection(
            stream, True,
            HTTP1ConnectionParameters(
                no_keep_alive=False,
                max_header_size=self.max_header_size,
                max_body_size=self.max_body_size,
                decompress=bool(self.request.decompress_response),
            ),
            self._sockaddr,
        )

    async def headers_received(
            self, first_line: httputil.ResponseStartLine | httputil.RequestStartLine,
            headers: httputil.HTTPHeaders) -> None:
        if isinstance(first_line, httputil.ResponseStartLine) and first_line.code >= 200:
            self._response_version = first_line.version
        await super().headers_received(first_line, headers)

    def _on_end_request(self) -> None:
        if self._reusable():
            stream = self.connection.detach()  # HTTP/1 processing of this call is over
            pool = self.tcp_client
            assert isinstance(pool, ConnectionPool)
            pool.give_back(stream)
        else:
            self.stream.close()

    def _reusable(self) -> bool:
        """RFC 9112 9.3: HTTP/1.1, neither side said `Connection: close`, and the answer had
        a length (an answer read to the close leaves nothing to reuse). Whether the stream is
        still clean is checked once, when the pool hands it out (`_usable`)."""
        headers = self.headers
        if headers is None or self._response_version != "HTTP/1.1" or self.stream.closed():
            return False
        closing = (self.request.headers.get("Connection", "").lower() == "close"
                   or headers.get("Connection", "").lower() == "close")
        delimited = ("Content-Length" in headers
                     or headers.get("Transfer-Encoding", "").lower() == "chunked"
                     or self.code in (204, 304))
        return not closing and delimited


def _pool_key(host: str, port: int, af: Any = None, ssl_options: Any = None,
              max_buffer_size: Any = None, source_ip: Any = None, source_port: Any = None,
              timeout: Any = None) -> PoolKey | None:
    """Calls may share a connection when they go to the same place the same way. TLS
    settings given as a dict (not a context object) are not pooled: they cannot be compared."""
    if isinstance(ssl_options, dict):
        return None
    return (host, port, af, id(ssl_options) if ssl_options is not None else None,
            max_buffer_size, source_ip, source_port)


def _usable(stream: IOStream) -> bool:
    """Open, nothing buffered, and nothing to read on the socket: an idle HTTP/1.1
    connection receives nothing until we ask, so anything readable is a close or junk."""
    if stream.closed() or int(getattr(stream, "_read_buffer_size", 0)):
        return False
    pending = getattr(stream.socket, "pending", None)  # TLS: decrypted bytes held back
    if pending is not None and pending():
        return False
    # poll, not select: select refuses descriptors past 1024, which a gateway holding
    # thousands of connections hands out, and every provider call would then connect anew.
    poller = select.poll()
    try:
        poller.register(stream.socket, select.POLLIN | select.POLLPRI)
        ready = poller.poll(0)
    except (OSError, ValueError):
        return False
    return not ready


def _forget(idle: collections.deque[tuple[float, IOStream]], stream: IOStream) -> None:
    for entry in list(idle):
        if entry[1] is stream:
            idle.remove(entry)
