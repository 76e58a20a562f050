"""One HTTP/1.1 call on a kept-alive connection, written and read directly on the stream.

Tornado's simple client builds, for every call, an `HTTP1Connection`, a message delegate, a
gzip delegate and a connect timeout, and writes the request's head and body in two writes.
On a connection the pool already holds (pool.py), that machinery is most of the call's cost;
here the request leaves in one write and the answer is read straight from the `IOStream`
(plain or TLS), with the rules of Tornado's client:

- a header line holding CR or LF is refused before anything is sent (ValueError);
- the answer's head is read up to `max_header_size`; 1xx answers are skipped (at most ten,
  and none may announce a body);
- the body is framed by Content-Length (digits only; duplicates must be equal; at most
  `max_body_size`), by chunked transfer coding (no trailers, the total at most
  `max_body_size`), or by the close (at most `max_body_size`); Content-Length with
  Transfer-Encoding, or any coding but chunked, is refused (request smuggling);
- 204 and 304 answers have no body;
- `Content-Encoding: gzip` is decompressed when asked, the decompressed size capped too.

The framing rules are plain functions; `exchange` is the I/O. pool.py decides which calls may
take this path and turns its outcome into an `HTTPResponse`.
"""

from __future__ import annotations

import re
import urllib.parse
import zlib
from dataclasses import dataclass

import tornado
from tornado import httputil
from tornado.http1connection import is_transfer_encoding_chunked, parse_hex_int, parse_int
from tornado.iostream import IOStream, StreamClosedError

MAX_1XX_RESPONSES = 10  # as Tornado's client
MAX_CHUNK_LINE_BYTES = 64  # a chunk's size line, as Tornado's client
READ_BYTES = 64 * 1024  # a read of an answer delimited by the close
HEAD_END = rb"\r?\n\r?\n"  # RFC 9112 2.2: a bare LF ends a line too
_LIST_SEPARATOR = re.compile(r",[ \t]*")


@dataclass(frozen=True)
class Target:
    """Where a URL's request goes, and what its request line and Host header say."""

    scheme: str
    host: str  # for the connection: an IPv6 literal without its brackets
    port: int
    host_header: str
    path: str  # with the query


def target_of(url: str) -> Target | None:
    """None for what this path does not send: another scheme, credentials in the URL, a port
    that is no number (Tornado's client answers those with its own error)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or "@" in parsed.netloc:
        return None
    try:
        host, port = httputil.split_host_and_port(parsed.netloc)
    except ValueError:
        return None
    if port is None:
        port = 443 if parsed.scheme == "https" else 80
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    return Target(parsed.scheme, host, port, parsed.netloc, path)


def request_message(method: str, target: Target, headers: httputil.HTTPHeaders,
                    body: bytes | None, *, user_agent: str | None, decompress: bool) -> bytes:
    """The request's head and body as one buffer. The headers Tornado's client adds are added
    to `headers` in place, as it does; a line with CR or LF in it is a ValueError."""
    if "Connection" not in headers:
        headers["Connection"] = "keep-alive"
    if "Host" not in headers:
        headers["Host"] = target.host_header
    if user_agent:
        headers["User-Agent"] = user_agent
    elif headers.get("User-Agent") is None:
        headers["User-Agent"] = f"Tornado/{tornado.version}"
    if body is not None:
        headers["Content-Length"] = str(len(body))
    if method == "POST" and "Content-Type" not in headers:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if decompress:
        headers["Accept-Encoding"] = "gzip"
    pairs = list(headers.get_all())
    fields = "\r\n".join(f"{name}: {value}" for name, value in pairs)
    start = f"{method} {target.path} HTTP/1.1"
    separators = len(pairs) - 1  # the only CRs and LFs allowed in `fields`
    if ("\r" in start or "\n" in start or fields.count("\r") != separators
            or fields.count("\n") != separators):
        raise ValueError("Illegal characters (CR or LF) in a request header")
    return (start.encode("utf-8") + b"\r\n" + fields.encode("latin-1") + b"\r\n\r\n"
            + (body or b""))


def parse_response_head(data: bytes) -> tuple[httputil.ResponseStartLine,
                                              httputil.HTTPHeaders]:
    """The status line and header fields of an answer's head (HTTPInputError if malformed).
    Empty lines before it are skipped (RFC 9112 2.2)."""
    text = data.decode("latin-1").lstrip("\r\n")
    end_of_line = text.find("\n")
    start_line = httputil.parse_response_start_line(text[:end_of_line].rstrip("\r"))
    return start_line, httputil.HTTPHeaders.parse(text[end_of_line:])


@dataclass(frozen=True)
class Framing:
    """How an answer's body ends: after `length` bytes, at the last chunk, or at the close
    (`length` None and not `chunked`)."""

    length: int | None
    chunked: bool = False

    @property
    def delimited(self) -> bool:
        """The body's end is known without the close: the connection may carry another call."""
        return self.length is not None or self.chunked


NO_BODY = Framing(0)


def body_framing(code: int, headers: httputil.HTTPHeaders, max_body_size: int) -> Framing:
    """RFC 9112 6.3, as strict as Tornado's client (HTTPInputError otherwise)."""
    if code == 304:
        return NO_BODY
    content_length: int | None = None
    if "Content-Length" in headers:
        announced = headers["Content-Length"]
        if "," in announced:  # the same header given twice arrives joined by commas
            pieces = _LIST_SEPARATOR.split(announced)
            if any(piece != pieces[0] for piece in pieces):
                raise httputil.HTTPInputError(f"Multiple unequal Content-Lengths: {announced!r}")
            announced = headers["Content-Length"] = pieces[0]
        try:
            content_length = parse_int(announced)
        except ValueError:
            raise httputil.HTTPInputError(
                f"Only integer Content-Length is allowed: {announced!r}") from None
        if content_length > max_body_size:
            raise httputil.HTTPInputError("Content-Length too long")
    chunked = is_transfer_encoding_chunked(headers)  # refuses CL with TE, and other codings
    if code == 204:
        if chunked or content_length not in (None, 0):
            raise httputil.HTTPInputError("Response with code 204 should not have body")
        return NO_BODY
    if chunked:
        return Framing(None, chunked=True)
    return Framing(content_length)


def keeps_alive(version: str, request_headers: httputil.HTTPHeaders,
                response_headers: httputil.HTTPHeaders, framing: Framing) -> bool:
    """RFC 9112 9.3: HTTP/1.1, neither side said `Connection: close`, and the body's end was
    known without the close."""
    return (version == "HTTP/1.1" and framing.delimited
            and not _says_close(request_headers) and not _says_close(response_headers))


def _says_close(headers: httputil.HTTPHeaders) -> bool:
    value = headers.get("Connection")
    return value is not None and "close" in (
        option.strip().lower() for option in value.split(","))


def gunzipped(body: bytes, max_body_size: int) -> bytes:
    """A gzip body decompressed, refused past `max_body_size` before more is made."""
    pieces: list[bytes] = []
    size, data = 0, body
    while data:  # a body may hold several gzip members
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            piece = member.decompress(data, max_body_size + 1 - size)
        except zlib.error as e:
            raise httputil.HTTPInputError(f"invalid gzip data: {e}") from None
        size += len(piece)
        if size > max_body_size:
            raise httputil.HTTPInputError("decompressed body too large")
        if not member.eof:
            raise httputil.HTTPInputError("invalid gzip data: truncated")
        pieces.append(piece)
        data = member.unused_data
    return b"".join(pieces)


@dataclass(frozen=True)
class Answer:
    start_line: httputil.ResponseStartLine
    headers: httputil.HTTPHeaders
    body: bytes
    framing: Framing


async def exchange(stream: IOStream, message: bytes, *, max_header_size: int,
                   max_body_size: int, decompress: bool) -> Answer:
    """Send one request and read its answer. Raises HTTPInputError for an answer out of
    protocol, StreamClosedError (or UnsatisfiableReadError, an over-long head) when the
    connection ends first; the caller closes the stream on any of them."""
    stream.write(message)
    for _ in range(MAX_1XX_RESPONSES + 1):
        head = await stream.read_until_regex(HEAD_END, max_bytes=max_header_size)
        start_line, headers = parse_response_head(head)
        if not 100 <= start_line.code < 200:
            break
        if "Content-Length" in headers or "Transfer-Encoding" in headers:
            raise httputil.HTTPInputError(f"Response code {start_line.code} cannot have body")
    else:
        raise httputil.HTTPInputError("Too many 1xx responses")
    framing = body_framing(start_line.code, headers, max_body_size)
    if framing.chunked:
        body = await _chunked_body(stream, max_body_size)
    elif framing.length is None:
        body = await _body_to_the_close(stream, max_body_size)
    else:
        body = await stream.read_bytes(framing.length) if framing.length else b""
    if decompress and headers.get("Content-Encoding", "").lower() == "gzip":
        # As Tornado's client: what the caller reads is the decompressed body.
        headers.add("X-Consumed-Content-Encoding", headers["Content-Encoding"])
        del headers["Content-Encoding"]
        body = gunzipped(body, max_body_size)
    return Answer(start_line, headers, body, framing)


async def _chunked_body(stream: IOStream, max_body_size: int) -> bytes:
    pieces: list[bytes] = []
    total = 0
    while True:
        size_line = await stream.read_until(b"\r\n", max_bytes=MAX_CHUNK_LINE_BYTES)
        try:
            size = parse_hex_int(size_line[:-2].decode("latin-1"))
        except ValueError:
            raise httputil.HTTPInputError("invalid chunk size") from None
        if size == 0:
            if await stream.read_bytes(2) != b"\r\n":  # no trailers
                raise httputil.HTTPInputError("improperly terminated chunked request")
            return b"".join(pieces)
        total += size
        if total > max_body_size:
            raise httputil.HTTPInputError("chunked body too large")
        pieces.append(await stream.read_bytes(size))
        if await stream.read_bytes(2) != b"\r\n":
            raise httputil.HTTPInputError("improperly terminated chunk")


async def _body_to_the_close(stream: IOStream, max_body_size: int) -> bytes:
    pieces: list[bytes] = []
    total = 0
    while True:
        try:
            piece = await stream.read_bytes(READ_BYTES, partial=True)
        except StreamClosedError:
            return b"".join(pieces)  # the close is this body's end
        total += len(piece)
        if total > max_body_size:
            raise httputil.HTTPInputError("Body too long")
        pieces.append(piece)
