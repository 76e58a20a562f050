"""The gateway's own HTTP/1.1 connection, parsed by llhttp: the public listener, every route
(`[listen] http_parser = "llhttp"`, the default), and the data-plane listener, `/verify` and
`/auth` on a port of their own (`[data_plane]`).

Every request of every app behind the gateway asks `/verify` (the apps) or `/auth` (their
reverse proxy). Their common answer is already known (gateway/fast_route.py), and what is left is
Tornado's HTTP/1.1 layer, written in Python: reading and parsing the request costs more than the
answer. With `[data_plane] port` set, the gateway also listens there with a protocol of its own
on asyncio's transports, whose parser is llhttp (through `httptools`, the parser uvicorn uses),
in the same process and event loop as everything else.

It serves exactly two paths, by handing each parsed request to the same routers as the main
listener (VerifyRoute, ForwardAuthRoute): a fast answer, or the route's RequestHandler run on
this connection. So the answers are the main listener's, byte for byte (tests compare them).
Any other path gets the application's 404; logins, OpenID Connect, admin and pages stay on the
main listener.

As the public listener (`every_route`), every other path goes to the application's own routing
(`Application.find_handler`, as Tornado's server does), and the connection does what Tornado's
HTTP/1.1 layer does for handlers that need it: `100 Continue` for a request that expects it, a
chunked answer when a handler flushes before it knows its length (HTTP/1.1; an HTTP/1.0 answer of
unknown length ends with the connection), and a handler's flush waits while the client is not
reading (asyncio's write buffer limits).

Hardened as the main listener is (SECURITY H7): llhttp in its strict mode refuses conflicting
or duplicate Content-Length, Content-Length beside Transfer-Encoding, a Transfer-Encoding that
does not end in chunked, obsolete line folding, bare CR or LF and invalid characters (request
smuggling); anything but HTTP/1.0 and 1.1 and CONNECT are refused too. Each of those is a 400
and the connection closed. An offer to switch protocols is declined, as Tornado declines it: the
request is answered over HTTP/1.1, and the connection ends with that answer. The limits are the
main listener's (gateway/http_limits.py): past MAX_HEADER_BYTES of headers or MAX_BODY_BYTES of
body the connection is dropped (after the answers to the requests read before); a connection
gets IDLE_CONNECTION_TIMEOUT to send a request's headers and BODY_TIMEOUT for its body, then it
is closed. Requests on one connection are answered in order, one at a time (reading pauses while
one waits behind another, and while the client leaves answers unread: asyncio's write buffer
past its high-water mark); more than MAX_PIPELINED at once drop the connection. A malformed
request gets its 400 after the answers to those read before it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httptools
import tornado.httputil
import tornado.iostream
import tornado.web

from gateway import http_limits
from gateway.fast_route import DirectConnection, FastRoute
from gateway.handlers.base import NotFoundHandler

log = logging.getLogger("gateway.data_plane")

VERSIONS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1"}
# Requests parsed from what one read brought, before any is answered: each waits in memory as
# a request object, so a client sending thousands at once is dropped instead (Tornado reads
# one request at a time; proxies do not pipeline).
MAX_PIPELINED = 128
MAX_READ = 256 * 1024  # the most one data_received brings (asyncio's selector transports)
# A body's bytes on the wire, chunks' framing included, may be this many times the body limit:
# a body sent in 1-byte chunks takes six (`1\r\nx\r\n`).
BODY_FRAMING_ALLOWANCE = 8
LISTEN_BACKLOG = 128  # tornado.netutil.bind_sockets's
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"  # Tornado's spelling


@dataclass(frozen=True)
class _Context:
    """What tornado.httputil.HTTPServerRequest reads from its connection's `context`."""

    remote_ip: str
    protocol: str = "http"


class DataPlane:
    """The listener: its sockets, its connections, the routes it serves."""

    def __init__(self, application: tornado.web.Application,
                 routes: dict[str, FastRoute], *, every_route: bool = False) -> None:
        self.application = application
        self.routes = routes  # path -> its Router (gateway/fast_route.py)
        self.every_route = every_route  # the public listener: the application's routing
        self._servers: list[asyncio.AbstractServer] = []
        self._starting: asyncio.Future[None] | None = None  # `listen`'s start
        self._connections: set[_Connection] = set()

    async def start(self, sockets: Sequence[socket.socket], *,
                    shared_socket: bool = False) -> None:
        """Serve on `sockets`. A socket several worker processes accept on (`shared_socket`)
        is accepted from one connection per wake-up, as server.SharedSocketHTTPServer does,
        so that a burst is shared instead of taken by the first worker awake."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            # asyncio's `backlog` is both listen()'s and how many it accepts per wake-up.
            self._servers.append(await loop.create_server(
                lambda: _Connection(self), sock=sock, start_serving=True,
                backlog=1 if shared_socket else LISTEN_BACKLOG))
            sock.listen(LISTEN_BACKLOG)  # the kernel's queue stays Tornado's length

    def listen(self, sockets: Sequence[socket.socket], *, shared_socket: bool = False) -> None:
        """`start`, from code that cannot await (inside the loop): the sockets already listen,
        so a client that connects meanwhile waits in the backlog."""
        self._starting = asyncio.ensure_future(self.start(sockets, shared_socket=shared_socket))
        self._starting.add_done_callback(_started)

    def stop(self) -> None:
        """Stop accepting connections."""
        if self._starting is not None and not self._starting.done():
            self._starting.add_done_callback(lambda _: self.stop())
            return
        for server in self._servers:
            server.close()

    async def close_all_connections(self) -> None:
        """Close every connection: at once when idle, after its answer otherwise."""
        for connection in list(self._connections):
            connection.close_when_idle()
        while self._connections:
            await asyncio.sleep(0.01)

    def delegate_for(self, request: tornado.httputil.HTTPServerRequest
                     ) -> tornado.httputil.HTTPMessageDelegate:
        route = self.routes.get(request.path)
        if route is not None:
            return route.find_handler(request)
        if self.every_route:
            return self.application.find_handler(request)
        return self.application.get_handler_delegate(request, NotFoundHandler)


def _started(starting: asyncio.Future[None]) -> None:
    """Say at once when `listen`'s start failed (else only a collected task would)."""
    if not starting.cancelled() and (error := starting.exception()) is not None:
        log.critical("the listener could not start: %s", error, exc_info=error)


class _Connection(asyncio.Protocol, DirectConnection):
    """One client connection: llhttp's callbacks in, Tornado's HTTPConnection interface out
    (write_headers, write, finish, set_close_callback), for the requests it hands on."""

    _transfer_encoding: bytes  # the request's Transfer-Encoding fields, joined (_reset_message)
    # The request and its start line, made when its head is complete (on_headers_complete)
    _request: tuple[tornado.httputil.HTTPServerRequest, tornado.httputil.RequestStartLine] | None

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.transport: asyncio.Transport | None = None
        self.context = _Context("")
        self._context = contextvars.Context()
        self.parser = httptools.HttpRequestParser(self)
        self._queue: deque[tuple[tornado.httputil.HTTPServerRequest,
                                 tornado.httputil.RequestStartLine, bool]] = deque()
        self._answering: tornado.httputil.HTTPServerRequest | None = None
        self._keep_alive = True
        self._head = False
        self._close_callback: Callable[[], None] | None = None
        # When the connection is aborted unless it moves on (None: never), and the one timer
        # that checks it, due at or before it (`_wait`).
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._in_loop = False
        self._chunking = False  # the answer being written is chunked
        self._writing_paused = False  # asyncio's write buffer is past its high-water mark
        self._flushes: list[asyncio.Future[None]] = []  # waiting for the buffer to drain
        self._continue_owed = False  # a request expects 100 Continue once its turn comes
        self._remaining: int | None = None  # body bytes the answer's Content-Length still owes
        self._refusal_owed = False  # a 400 to send once the requests before it are answered
        self._refusal = b""  # what the refusal owed sends: a 400, or nothing (a limit: _drop)
        self._in_message = False  # llhttp is inside a request (begun, not complete)
        self._reset_message()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._context = contextvars.copy_context()  # the connection's own, as it was accepted
        peer = transport.get_extra_info("peername")
        self.context = _Context(peer[0] if isinstance(peer, tuple) else "")
        self.plane._connections.add(self)
        self._wait(http_limits.IDLE_CONNECTION_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        while True:  # once more for each offer to switch protocols (a loop: never recursion)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as offer:
                data = self._declined(data[offer.args[0]:])
                continue
            except httptools.HttpParserCallbackError as e:
                cause = e.__context__
                if isinstance(cause, _Dropped):
                    self._drop(str(cause))
                else:
                    self._refuse(str(cause))
                return
            except httptools.HttpParserError as e:
                self._refuse(str(e))
                return
            break
        if self._in_message and not self._headers_done:
            # llhttp keeps a header's name or value whole before `on_header` counts it: one
            # endless header would grow without bound. Every read while the head is incomplete
            # counts here (the first may hold the end of the request before: one read more).
            self._head_read += len(data)
            if self._head_read > http_limits.MAX_HEADER_BYTES + MAX_READ:
                self._drop("headers too large")
                return
        elif self._in_message:
            # llhttp takes chunk extensions and leading zeros of any length (Tornado refuses
            # extensions, and reads a chunk's size line up to 64 bytes): counted here, framing
            # and all, else they could keep the parser busy until the body's time is up.
            self._body_read += len(data)
            if self._body_read > BODY_FRAMING_ALLOWANCE * http_limits.MAX_BODY_BYTES + MAX_READ:
                self._drop("body too large")
                return
        self._answer_queued()

    def connection_lost(self, exc: Exception | None) -> None:
        self.plane._connections.discard(self)
        self._cancel_timer()
        self._queue.clear()
        self._writing_paused = False
        self._end_flushes(closed=True)
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()

    # -- llhttp's callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._continue_owed = False
        self._in_message = True
        # The headers' limit, from their first byte; then the body's, from the headers' end.
        # Neither moves as more bytes come: a client sending a byte now and then (slowloris)
        # is cut all the same, as Tornado's header and body timeouts cut it.
        self._wait(http_limits.IDLE_CONNECTION_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            # A chunked body's trailer: never a request header, and refused, as Tornado does.
            raise _Refused("trailer fields are not accepted")
        self._count(len(name) + len(value) + 4)
        # The whitespace llhttp leaves after a value is not part of it (RFC 9110 5.5).
        value = value.rstrip(b" \t")
        self._headers.append((name, value))
        # The two this connection acts on before the body; a length test first, as every
        # request of every app passes here.
        if len(name) == 14 and name.lower() == b"content-length":
            self._length = value
        elif len(name) == 6 and name.lower() == b"expect":
            self._expect = value.lower()
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            # Every field of it, as one list (RFC 9110 5.3): `gzip` and then `chunked` in two
            # fields is a coding before chunked all the same.
            self._transfer_encoding = (self._transfer_encoding + b", " + value
                                       if self._transfer_encoding else value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self.parser.should_upgrade():
            if self.parser.get_method() == b"CONNECT":
                raise _Refused("CONNECT")  # a tunnel (Tornado reads its bytes as requests)
            return  # an offer to switch protocols: declined (_declined), the head read again
        if self._transfer_encoding and self._transfer_encoding.lower() != b"chunked":
            # llhttp takes `gzip, chunked` and hands the body over still coded: Tornado
            # refuses any coding but chunked, and so do we.
            raise _Refused("transfer coding other than chunked")
        # The request, from its head: a version but 1.0 and 1.1, or a missing, doubled or
        # malformed Host (HTTPServerRequest's checks) is refused now, as Tornado refuses it,
        # not after a body it would never use.
        self._request = self._request_of_head()
        self._wait(http_limits.BODY_TIMEOUT)
        if self._length.isdigit() and int(self._length) > http_limits.MAX_BODY_BYTES:
            raise _Dropped("body too large")  # before any 100 Continue invites it
        if self._expect == b"100-continue" and self.parser.get_http_version() == "1.1":
            # Never ahead of an earlier answer: then once its turn comes (_answer_queued).
            self._continue_owed = True
            self._send_continue_if_due()

    def _declined(self, rest: bytes) -> bytes:
        """What to parse after a request that offers to switch protocols (`Upgrade: h2c`, which
        Java's HttpClient sends with every request over plain HTTP; a websocket): the offer is
        declined and the request answered over HTTP/1.1, as Tornado does (RFC 9110 7.8),
        where a 400 would fail those clients. llhttp stops at the end of its head, so the head
        goes again to a new parser, without the offer and with `Connection: close`: a proxy
        that took the offer for a switch gets no tunnel for later requests. `rest` is what
        followed the head (its body first)."""
        method, version = self.parser.get_method(), self.parser.get_http_version()
        lines = [b"%s %s HTTP/%s" % (method, self._url, version.encode("latin1"))]
        lines.extend(name + b": " + value for name, value in self._headers
                     if name.lower() not in (b"upgrade", b"connection"))
        lines.append(b"Connection: close")
        self.parser = httptools.HttpRequestParser(self)
        return b"\r\n".join(lines) + b"\r\n\r\n" + rest

    def _send_continue_if_due(self) -> None:
        if (self._continue_owed and self._answering is None and not self._queue
                and self.transport is not None and not self.transport.is_closing()):
            self._continue_owed = False
            self.transport.write(CONTINUE)
            self._wait(http_limits.BODY_TIMEOUT)  # the body's time starts with the invitation

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > http_limits.MAX_BODY_BYTES:
            raise _Dropped("body too large")
        # One buffer, not a list of the pieces llhttp hands over: a chunked body of 2-byte
        # chunks would be half a million bytes objects, twenty times its size in memory.
        self._body += body

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():  # llhttp stops here, its body unread: _declined
            return
        if len(self._queue) >= MAX_PIPELINED:
            raise _Dropped(f"more than {MAX_PIPELINED} requests pipelined")
        assert self._request is not None  # on_headers_complete made it
        request, start_line = self._request
        request.body = bytes(self._body)
        self._queue.append((request, start_line, self._keeps_alive(
            start_line.method, start_line.version, request.headers.get("Connection", ""))))
        # The request holds what it needs: its body and headers are not kept here as well
        # while it is answered, nor after, for as long as the connection idles.
        self._reset_message()
        self._in_message = False
        self._continue_owed = False  # the body came without it
        self._deadline = None  # no time limit while it waits for its answer

    def _request_of_head(self) -> tuple[tornado.httputil.HTTPServerRequest,
                                        tornado.httputil.RequestStartLine]:
        version = VERSIONS.get(self.parser.get_http_version())
        if version is None:
            raise _Refused("HTTP version not supported")
        headers = tornado.httputil.HTTPHeaders()
        for name, value in self._headers:
            # llhttp refused a name that is not a token and a control character in a value,
            # all that Tornado's `add` checks again (the value is stripped, in on_header).
            key, text = name.decode("latin1"), value.decode("latin1")
            if key in headers:
                headers.add(key, text)
            else:
                headers[key] = text
        start_line = tornado.httputil.RequestStartLine(
            self.parser.get_method().decode("latin1"), self._url.decode("latin1"), version)
        request = tornado.httputil.HTTPServerRequest(
            connection=self, start_line=start_line, headers=headers)
        return request, start_line

    def _keeps_alive(self, method: str, version: str, connection: str) -> bool:
        """llhttp's answer, but an HTTP/1.0 request keeps the connection only when its end is
        known, as on Tornado (HTTP1Connection._can_keep_alive): a body sent without a length by
        an HTTP/1.0 client would otherwise be read as the next request. And only when it asks
        for exactly that (`connection`: its Connection fields, joined), as on Tornado: llhttp
        reads `keep-alive` on HTTP/1.0 and not a `close` beside it, and the answer would not
        announce Keep-Alive (_framing_fields), so the client would wait for the end of it."""
        if not self.parser.should_keep_alive():
            return False
        if version == "HTTP/1.1":
            return True
        return connection.lower() == "keep-alive" and (
            bool(self._length) or bool(self._transfer_encoding) or method in ("GET", "HEAD"))

    # -- Tornado's HTTPConnection, for the request being answered ----------------------------

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def write_headers(self, start_line: tornado.httputil.RequestStartLine
                      | tornado.httputil.ResponseStartLine,
                      headers: tornado.httputil.HTTPHeaders, chunk: bytes | None = None
                      ) -> asyncio.Future[None]:
        assert isinstance(start_line, tornado.httputil.ResponseStartLine)
        request = self._answering
        assert request is not None
        code = start_line.code
        length = headers.get("Content-Length")
        bodiless = self._head or code in (204, 304) or code < 200
        # Tornado's rule (HTTP1Connection.write_headers): a handler that flushed before it
        # finished has no Content-Length; HTTP/1.1 frames its answer in chunks.
        self._chunking = length is None and not bodiless and request.version == "HTTP/1.1"
        if length is None and not bodiless and not self._chunking:
            self._keep_alive = False  # HTTP/1.0: the end of the connection ends the answer
        self._remaining = 0 if bodiless else (
            int(length) if length is not None and length.isdigit() else None)
        # The connection's own fields replace a handler's of the same name, in its place, as
        # on HTTP1Connection: a handler's `Transfer-Encoding: chunked` would otherwise announce
        # chunks its body is not framed in (the client would read the body as the next
        # answer), and its `Connection: keep-alive` would stand beside our `close`.
        for name, value in self._framing_fields(request):
            headers[name] = value
        data = self._head_bytes(start_line, headers.get_all(), None)
        if chunk:
            data += self._framed(chunk)
        return self._send(data)

    def write_answer(self, start_line: tornado.httputil.ResponseStartLine,
                     fields: dict[str, str], body: bytes | None) -> None:
        request = self._answering
        assert request is not None
        # A fast answer's fields are never those the connection sets: they go after them.
        self._send(self._head_bytes(start_line, itertools.chain(
            ((_spelled(name), value) for name, value in fields.items()),
            self._framing_fields(request)), body))
        self.finish()

    def _framing_fields(self, request: tornado.httputil.HTTPServerRequest
                        ) -> list[tuple[str, str]]:
        """The fields HTTP1Connection.write_headers sets itself: whether the connection ends
        with the answer, and its chunks."""
        fields = []
        if request.version == "HTTP/1.1" and not self._keep_alive:
            fields.append(("Connection", "close"))
        if request.version == "HTTP/1.0" and self._keep_alive:  # it asked so (_keeps_alive)
            fields.append(("Connection", "Keep-Alive"))
        if self._chunking:
            fields.append(("Transfer-Encoding", "chunked"))
        return fields

    def _head_bytes(self, start_line: tornado.httputil.ResponseStartLine,
                    fields: Iterable[tuple[str, str]], chunk: bytes | None) -> bytes:
        """The status line and header fields as HTTP1Connection.write_headers writes them, and
        the body's first chunk (none for a HEAD)."""
        lines = [f"HTTP/1.1 {start_line.code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in fields)
        text = "\r\n".join(lines)
        # No header splitting: the only CR and LF are the separators just put in.
        if text.count("\r") != len(lines) - 1 or text.count("\n") != len(lines) - 1:
            raise ValueError("Illegal characters (CR or LF) in header")
        data = text.encode("latin1") + b"\r\n\r\n"
        if chunk and not self._head:
            data += chunk
        return data

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self._send(self._framed(chunk))

    def _framed(self, chunk: bytes) -> bytes:
        if self._head or not chunk:
            return b""
        if self._chunking:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if self._remaining is not None:
            if len(chunk) > self._remaining:  # as Tornado: never past the announced length
                raise tornado.httputil.HTTPOutputError(
                    "Tried to write more data than Content-Length")
            self._remaining -= len(chunk)
        return chunk

    def finish(self) -> None:
        if self._chunking:
            self._chunking = False
            self._send(b"0\r\n\r\n")
        if self._remaining:
            # Short of its Content-Length (a handler that failed after its headers): the
            # client would read the next answer as the rest of this one.
            self._keep_alive = False
        self._remaining = None
        self._answering = None
        if not self._keep_alive:
            # What came after a request that ends the connection is never read, nor refused
            # (Tornado stops reading there).
            self._queue.clear()
            self._close()
        elif self._refusal_owed and not self._queue:
            self._send_refusal()
        elif self._closing and not self._refusal_owed:
            self._queue.clear()
            self._close()
        elif not self._in_loop:  # an answer that waited (a handler): on to the next request
            self._answer_next()

    def close_when_idle(self) -> None:
        self._closing = True
        if self._answering is None:
            # Requests read but not yet answered (the client left earlier answers unread) are
            # dropped as Tornado drops them: else nothing would answer them, nor close.
            self._queue.clear()
            self._close()

    # -- the rest ----------------------------------------------------------------------------

    def _answer_queued(self) -> None:
        """Answer the parsed requests in order, one at a time: a fast answer is written at
        once, a handler's later (its `finish` comes back here). Reading pauses meanwhile."""
        self._in_loop = True
        try:
            while self._queue and self._answering is None and not self._writing_paused:
                request, start_line, self._keep_alive = self._queue.popleft()
                self._answering = request
                self._head = request.method == "HEAD"
                try:
                    delegate = self.plane.delegate_for(request)
                    delegate.headers_received(start_line, request.headers)
                    if request.body:
                        delegate.data_received(request.body)
                    delegate.finish()
                except Exception:  # a bug: the connection goes, the loop stays
                    log.exception("data plane: answering %s failed", request.path)
                    self._queue.clear()
                    self._close()
                    return
        finally:
            self._in_loop = False
        if self.transport is None or self.transport.is_closing():
            return
        if self._answering is None and not self._writing_paused and not self._refusal_owed:
            self.transport.resume_reading()  # nothing to do unless it was paused
            self._limit_waiting()
            self._send_continue_if_due()
        elif self._queue or self._writing_paused or self._refusal_owed:
            # A request waits behind the one being answered, or the client is not reading its
            # answers: read no more until then. (Not before: pausing and resuming for every
            # handler's answer are two epoll calls, and what a client can send meanwhile is
            # one request, within the limits.)
            self.transport.pause_reading()
            if self._answering is None:  # a client that never reads is closed in time
                self._limit_waiting()

    def _answer_next(self) -> None:
        """`_answer_queued`, called from a handler's task or a write callback: run in the
        connection's own context, not in theirs. Else the next requests' handlers (a task
        copies the context it starts in), the reads asyncio resumes (its callback too) and this
        connection's log lines would carry that request's id and span into the requests after
        it, where Tornado starts each in its connection's task."""
        self._context.copy().run(self._answer_queued)

    def _send(self, data: bytes) -> asyncio.Future[None]:
        """Write `data`; the future is done once the write buffer has room again (a handler's
        flush waits on it, as on Tornado's IOStream)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.transport is None or self.transport.is_closing():
            future.set_exception(tornado.iostream.StreamClosedError())
            future.exception()  # retrieved: a closed client is no error of ours
        else:
            if data:
                self.transport.write(data)
            if self._writing_paused:
                self._flushes.append(future)
            else:
                future.set_result(None)
        return future

    # asyncio's flow control: the transport's buffer passed its high-water mark, and drained.
    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.transport is not None:
            # No more requests read, so no more answers, until the client reads these.
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._end_flushes(closed=False)
        if self._answering is None and not self._in_loop and not self._closing:
            self._answer_next()  # the requests read meanwhile, then reading again

    def _end_flushes(self, *, closed: bool) -> None:
        flushes, self._flushes = self._flushes, []
        for future in flushes:
            if future.done():
                continue
            if closed:
                future.set_exception(tornado.iostream.StreamClosedError())
                future.exception()
            else:
                future.set_result(None)

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._length = self._expect = b""  # the Content-Length and Expect headers' values
        self._header_bytes = 0
        self._head_read = 0  # bytes read while this request's head was incomplete
        self._body_read = 0  # and while its body was
        self._headers_done = False
        self._transfer_encoding = b""
        self._body = bytearray()
        # The request and its start line, made when the head is complete (on_headers_complete)
        self._request = None

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > http_limits.MAX_HEADER_BYTES:
            raise _Dropped("headers too large")

    def _refuse(self, reason: str) -> None:
        """A malformed request: 400 and close, as Tornado answers one (after the answers to the
        requests read before it: never in their place)."""
        log.info("malformed HTTP request from %s: %s", self.context.remote_ip, reason)
        self._refuse_after_answers(BAD_REQUEST)

    def _refuse_after_answers(self, refusal: bytes) -> None:
        """Send `refusal` (if any) and close, once the requests read before it are answered."""
        self._refusal, self._refusal_owed = refusal, True
        if self.transport is not None:
            self.transport.pause_reading()  # nothing after it is read
        if self._answering is None and not self._queue:
            self._send_refusal()
        else:  # the requests read before it are answered first, as Tornado would
            self._answer_queued()

    def _send_refusal(self) -> None:
        if self._refusal and self.transport is not None and not self.transport.is_closing():
            self.transport.write(self._refusal)
        self._close()

    def _drop(self, reason: str) -> None:
        log.info("connection from %s dropped: %s", self.context.remote_ip, reason)
        if self._answering is None and not self._queue:
            self._abort()
            return
        # The requests read before it are answered first, as Tornado (which reads one request
        # at a time) answers them; then the connection ends, with no word for this one.
        self._refuse_after_answers(b"")

    def _limit_waiting(self) -> None:
        """Nothing being answered: the idle limit between requests; inside one, its own
        limit stands, even one that passed while an earlier request was answered."""
        if self._in_message:
            self._arm()
        else:
            self._wait(http_limits.IDLE_CONNECTION_TIMEOUT)

    def _wait(self, seconds: float) -> None:
        """Abort the connection unless it moves on within `seconds`."""
        self._deadline = asyncio.get_running_loop().time() + seconds
        self._arm()

    def _arm(self) -> None:
        """The connection's one timer, due at or before its deadline. Each request moves the
        deadline three times: the timer stays where it is unless the deadline comes before
        it, and when it fires early it waits again for what is left."""
        deadline = self._deadline
        if deadline is None:
            return
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if asyncio.get_running_loop().time() < deadline:
            self._arm()
        elif self._answering is None:
            self._deadline = None
            self._abort()  # a client that stopped reading gets no time to drain its buffer
        # Else an answer is being written: the deadline stays, and is met once it is done
        # (_limit_waiting).

    def _abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
            if self.transport.get_write_buffer_size():
                # asyncio closes once the client has read what is buffered: one that never
                # reads is cut in time, as on a connection kept open.
                self._wait(http_limits.IDLE_CONNECTION_TIMEOUT)


class _Dropped(Exception):
    """A limit passed inside one of llhttp's callbacks: the connection is dropped."""


class _Refused(Exception):
    """A request llhttp parsed that we refuse all the same: 400, and the connection closed."""


@functools.lru_cache(maxsize=256)
def _spelled(name: str) -> str:
    """A header name as Tornado's HTTPHeaders writes it ("X-Request-ID": "X-Request-Id")."""
    return "-".join(word.capitalize() for word in name.split("-"))
