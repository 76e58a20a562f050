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

A call made with `call` that finds an idle connection is sent and read by exchange.py,
without Tornado's per-call machinery, when it uses nothing that module does not do (a redirect
followed, a streamed body, a proxy, 100-continue, credentials); every other call, and the
first to each provider, is Tornado's. Both count against `max_clients` alike.

The hooks used are Tornado's: `SimpleAsyncHTTPClient._connection_class` (there to be
overridden), its `active` and `_release_fetch`, and `HTTP1Connection.detach`;
`_HTTPConnection` is subclassed for two methods.
"""

from __future__ import annotations

import asyncio
import collections
import io
import select
import socket
import ssl
import sys
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.iostream import (
    IOStream,
    StreamBufferFullError,
    StreamClosedError,
    UnsatisfiableReadError,
)
from tornado.netutil import Resolver, _client_ssl_defaults
from tornado.simple_httpclient import (
    HTTPStreamClosedError,
    HTTPTimeoutError,
    SimpleAsyncHTTPClient,
    _HTTPConnection,
)
from tornado.tcpclient import TCPClient

from gateway.upstream.exchange import (
    body_framing,
    exchange,
    keeps_alive,
    request_message,
    target_of,
)

IDLE_SECONDS = 20.0  # a pooled connection older than this is closed instead of reused
MAX_IDLE_PER_ORIGIN = 128  # idle connections kept per (host, port, TLS settings)
MAX_HEADER_BYTES = 64 * 1024  # an answer's head, when the client sets none (Tornado's default)

PoolKey = tuple[Hashable, ...]


class ConnectionPool(TCPClient):
    """`TCPClient.connect`, handing out an idle kept-alive stream when one is usable."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        super().__init__(resolver=resolver)
        self._idle: dict[PoolKey, collections.deque[tuple[float, IOStream]]] = {}
        self._keys: weakref.WeakKeyDictionary[IOStream, PoolKey] = weakref.WeakKeyDictionary()

    async def connect(self, host: str, port: int, *args: Any, **kwargs: Any) -> IOStream:
        key = _pool_key(host, port, *args, **kwargs)
        stream = self.take(key) if key is not None else None
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
        # Still writing: the provider answered before our request was all sent (an early
        # 413); what is left of it would go out ahead of the next call's request.
        if (idle is None or len(idle) >= MAX_IDLE_PER_ORIGIN or stream.closed()
                or stream.writing()):
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

    def take(self, key: PoolKey) -> IOStream | None:
        """An idle stream for `key` that is still clean, or None."""
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

    async def call(self, request: HTTPRequest) -> HTTPResponse:
        """`fetch(request, raise_error=True)`; on an idle connection, and when exchange.py
        can make it, without Tornado's per-call machinery. Headers the call needs (Host,
        Content-Length, ...) are added to `request.headers`, as `fetch` adds them to its copy."""
        direct = (self._direct_call(request)
                  if len(self.active) < self.max_clients and not self.queue and not self._closed
                  else None)
        if direct is None:
            return await self.fetch(request, raise_error=True)
        key = object()  # counted against max_clients as Tornado's calls are
        self.active[key] = (request, _no_callback)
        try:
            response = await self._answer_directly(request, *direct)
        finally:
            self._release_fetch(key)
        if response.error is not None:
            raise response.error
        return response

    def _direct_call(self, request: HTTPRequest) -> tuple[IOStream, bytes, float, bool] | None:
        """An idle connection for this call, its request in bytes, its timeout and whether to
        decompress the answer, when exchange.py can make it; None leaves the call to
        Tornado's client."""
        defaults = self.defaults

        def setting(name: str) -> Any:  # as Tornado's _RequestProxy: the client's default
            value = getattr(request, name)
            return defaults.get(name) if value is None else value

        if not _direct(setting, request.method):
            return None
        target = target_of(request.url)  # urlsplit keeps its own cache
        if target is None:
            return None
        ssl_options = _ssl_options(setting, target.scheme)
        if ssl_options is False:
            return None
        af = socket.AF_INET if setting("allow_ipv6") is False else socket.AF_UNSPEC
        key = _pool_key(target.host, target.port, af, ssl_options, self.max_buffer_size)
        if key is None:
            return None
        if not isinstance(request.headers, httputil.HTTPHeaders):
            request.headers = httputil.HTTPHeaders(request.headers)
        decompress = bool(setting("decompress_response"))
        try:  # before a stream is taken: nothing to give back if it fails
            message = request_message(request.method, target, request.headers, request.body,
                                      user_agent=setting("user_agent"), decompress=decompress)
        except ValueError:  # Tornado's client refuses it, with its own error
            return None
        pool = self.tcp_client
        assert isinstance(pool, ConnectionPool)
        stream = pool.take(key)
        if stream is None:
            return None
        return stream, message, float(setting("request_timeout")), decompress

    async def _answer_directly(self, request: HTTPRequest, stream: IOStream, message: bytes,
                               timeout: float, decompress: bool) -> HTTPResponse:
        """The call's answer, or a 599 response holding the error Tornado's client would give.
        The stream goes back to the pool if it may carry another call, else it is closed."""
        loop = asyncio.get_running_loop()
        started, started_wall = loop.time(), time.time()
        timed_out = False

        def time_out() -> None:
            nonlocal timed_out
            timed_out = True
            stream.close()

        timer = loop.call_later(timeout, time_out)
        failure: BaseException | None = None
        try:
            answer = await exchange(stream, message,
                                    max_header_size=self.max_header_size or MAX_HEADER_BYTES,
                                    max_body_size=(self.max_body_size if self.max_body_size
                                                   is not None else stream.max_buffer_size),
                                    decompress=decompress)
        except Exception as e:
            failure = _call_failure(e)
        except BaseException:  # cancelled: the answer's rest would be read as the next one
            stream.close()
            raise
        finally:
            timer.cancel()
        if timed_out or failure is not None:  # timed out: even an answer the close ended
            stream.close()
            return HTTPResponse(request, 599, error=(HTTPTimeoutError("Timeout during request")
                                                     if timed_out else failure),
                                request_time=loop.time() - started, start_time=started_wall)
        if (keeps_alive(answer.start_line.version, request.headers, answer.headers,
                        answer.framing) and not stream.closed()):
            pool = self.tcp_client
            assert isinstance(pool, ConnectionPool)
            pool.give_back(stream)
        else:
            stream.close()
        return HTTPResponse(request, answer.start_line.code, reason=answer.start_line.reason,
                            headers=answer.headers, request_time=loop.time() - started,
                            start_time=started_wall, buffer=io.BytesIO(answer.body),
                            effective_url=request.url)


def _no_callback(response: HTTPResponse) -> None:
    del response


def _direct(setting: Callable[[str], Any], method: str) -> bool:
    """Whether exchange.py can make this call as Tornado's client would."""
    return (method in ("GET", "POST")
            and (setting("body") is not None) == (method == "POST")
            and not setting("follow_redirects") and bool(setting("request_timeout"))
            and setting("body_producer") is None and not setting("expect_100_continue")
            and setting("streaming_callback") is None and setting("header_callback") is None
            and setting("auth_username") is None and not setting("network_interface")
            and not setting("allow_nonstandard_methods")
            and not any(setting(name) for name in _PROXY_SETTINGS))


_PROXY_SETTINGS = ("proxy_host", "proxy_port", "proxy_username", "proxy_password",
                   "proxy_auth_mode")


def _ssl_options(setting: Callable[[str], Any],
                 scheme: str) -> ssl.SSLContext | dict[str, Any] | bool | None:
    """The TLS settings Tornado's client would connect with (so the pool key is the same);
    False when it would make a context for this call alone (never pooled)."""
    if scheme != "https":
        return None
    options: ssl.SSLContext | dict[str, Any] | None = setting("ssl_options")
    if options is not None:
        return options
    if (setting("validate_cert") and setting("ca_certs") is None
            and setting("client_cert") is None and setting("client_key") is None):
        return _client_ssl_defaults()
    return False


def _call_failure(error: Exception) -> BaseException:
    """The error Tornado's client would give for a call that got no usable answer."""
    if isinstance(error, StreamClosedError):
        return error.real_error or HTTPStreamClosedError("Stream closed")
    if isinstance(error, (httputil.HTTPInputError, UnsatisfiableReadError,
                          StreamBufferFullError)):
        # Tornado's client closes on an answer out of protocol or over its limits, and says so.
        return HTTPStreamClosedError("Connection closed")
    return error


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
            # Tornado turned Nagle's algorithm back on once the request was written; a
            # direct call (exchange.py) writes its request whole, and at once.
            stream.set_nodelay(True)
            pool = self.tcp_client
            assert isinstance(pool, ConnectionPool)
            pool.give_back(stream)
        else:
            self.stream.close()

    def _reusable(self) -> bool:
        """exchange.keeps_alive's rule. Whether the stream is still clean is checked once,
        when the pool hands it out (`_usable`)."""
        headers = self.headers
        if headers is None or self.code is None or self.stream.closed():
            return False
        try:  # Tornado read the answer, so its framing holds; exchange.py's rule names it
            framing = body_framing(self.code, headers, sys.maxsize)
        except httputil.HTTPInputError:
            return False
        return keeps_alive(self._response_version, self.request.headers, headers, framing)


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
    if stream.closed() or stream.writing() or int(getattr(stream, "_read_buffer_size", 0)):
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
