"""A differential fuzz of the two public listeners: Tornado's HTTP/1.1 connection and the llhttp
one (gateway/data_plane.py, `[listen] http_parser = "llhttp"`), serving the same application.

Each case is bytes generated from a grammar that mutates valid requests to the gateway's real
routes (request line, header fields, framing, bodies, pipelining), written to a fresh
connection on each listener in the case's pieces. What each listener did is normalized (the
answers' status, fields and bodies without what differs from one request to the next, and
whether the server closed the connection) and must be the same, except for the deliberate
differences of KNOWN_DIFFERENCES (SECURITY H7).

Reading ends when the server closes, or when no byte came for a while: then we half-close (a
server still waiting for a request's rest then knows none comes) and read to the end. Never a
half-close right after sending: a handler still answering then loses its answer on both
listeners, as a race. A difference is read again twice, patiently and one case at a time, and
counts only if it stays: a busy machine makes no failure.

`DIFF_FUZZ_CASES=20000 DIFF_FUZZ_SEED=7 pytest tests/http/test_listener_differential.py -s`
runs more (`DIFF_FUZZ_DUMP=file` writes every unexplained one there); a failure prints the seed
and the smallest case found that still differs, as a repr.
"""

from __future__ import annotations

import os
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest
from conftest import Stack
from test_data_plane import _main_port, _signed_in
from test_llhttp_listener import _serve_every_route

from gateway import http_limits

SEED = int(os.environ.get("DIFF_FUZZ_SEED", "20261205"))
CASES = int(os.environ.get("DIFF_FUZZ_CASES", "1000"))
# Reading stops once no byte came for this long (the server waits for more, or is done): never
# an assertion on time. A difference is read again, one case at a time, with the patient value.
QUICK_IDLE = 0.5
PATIENT_IDLE = 3.0
CLOSE_WAIT = 10.0  # after our half-close, the server closes at once: at most this long
WORKERS = 6


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What is sent: `requests` one after the other, in pieces that end at `splits`."""

    index: int
    requests: tuple[bytes, ...]
    splits: tuple[int, ...] = ()

    @property
    def data(self) -> bytes:
        return b"".join(self.requests)

    def pieces(self) -> list[bytes]:
        data, pieces, start = self.data, [], 0
        for end in (*self.splits, len(self.data)):
            if end > start:
                pieces.append(data[start:end])
                start = end
        return pieces


ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("GET", "/healthz", ()),
    ("GET", "/verify", ()),
    ("GET", "/verify", ("Authorization: Bearer {token}",)),
    ("GET", "/verify", ("Authorization: Bearer not.a.token",)),
    ("GET", "/auth", ("X-Original-URL: https://app.example.test/a",)),
    ("GET", "/auth", ("Cookie: gw_access={token}", "X-Original-URL: https://app.example.test/")),
    ("GET", "/login/google?return_to=https%3A%2F%2Fevil.example%2F", ("Accept: application/json",)),
    ("GET", "/login/nobody", ()),
    ("GET", "/.well-known/jwks.json", ()),
    ("GET", "/.well-known/openid-configuration", ()),
    ("GET", "/nothing-here", ("Accept: application/json",)),
    ("GET", "/nothing-here", ("Accept: text/html",)),
    ("HEAD", "/healthz", ()),
    ("HEAD", "/verify", ("Authorization: Bearer {token}",)),
    ("POST", "/token", ("Content-Type: application/x-www-form-urlencoded",)),
    ("POST", "/nothing-here", ("Content-Type: application/x-www-form-urlencoded",)),
)
FORM = b"grant_type=authorization_code&code=x&client_id=nobody&client_secret=y"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "Get", "FOO",
           "TRACE", "PRI", "M-SEARCH")
VERSIONS = ("HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.2", "HTTP/1.10",
            "http/1.1", "HTTP/1.1 ", "HTTP/11", "")


def _request_line(rng: random.Random, method: str, target: str, version: str) -> bytes:
    roll = rng.random()
    if roll < 0.12:
        method = rng.choice(METHODS)
    elif roll < 0.22:
        version = rng.choice(VERSIONS)
    elif roll < 0.34:
        target = rng.choice([
            "http://gateway.test" + target, "HTTP://gateway.test:80" + target, "*",
            "gateway.test:80", "/%68ealthz", target + "?a=%zz", target + "#frag",
            "/" + "a" * rng.choice([100, 8000, 70_000]), target.replace("/", "//", 1),
            "/caf\u00e9", "/\xff", target + "?q=\u00e9", "", "healthz", "/../healthz",
            target + "?" + "x=1&" * 500])
    sep = rng.choice([" "] * 12 + ["  ", "\t", " \t"])
    line = f"{method}{sep}{target}{sep}{version}" if version else f"{method}{sep}{target}"
    if rng.random() < 0.03:
        line = " " + line
    return line.encode("utf-8", "surrogateescape")


FIELD_MUTATIONS: tuple[str, ...] = (
    "Connection: close", "Connection: keep-alive", "Connection: Close",
    "Connection: keep-alive, close",
    "Connection: close, keep-alive", "Connection: upgrade", "Connection: Upgrade, HTTP2-Settings",
    "Connection: te, close", "Connection: foo",
    "Upgrade: h2c", "Upgrade: websocket", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
    "Expect: 100-continue", "Expect: 100-Continue", "Expect: nothing",
    "Host: other.test", "Host:", "Host: a b", "X-Forwarded-For: 10.0.0.1",
    "Accept-Encoding: gzip", "Accept: */*", "Cookie: a=b; c=d", "Content-Type: text/plain",
    "X-Empty:", "X-Spaces:    x   ", "X-Tab:\tx\t", "X-Latin: caf\xe9", "X-Utf8: caf\u00e9",
    "X-Nul: a\x00b", "X-Del: a\x7fb", "X-Ctl: a\x01b", "X-Esc: \x1b[0m", "X-Cr: a\rb",
    "X-Lf: a\nb", "X-Obs: a\r\n b", "X-Obs-Tab: a\r\n\tb", "Bad Name: x", "Bad(Name): x",
    "X-Colon : x", "X-Colon\t: x", ": novalue", "NoColon", "x-lower: y", "X-UPPER: Y",
    "X-Long: {long}", "{longname}: x",
)


def _fields(rng: random.Random, extra: tuple[str, ...], token: str) -> list[str]:
    fields = ["Host: gateway.test", *(field.format(token=token) for field in extra)]
    roll = rng.random()
    if roll < 0.06:
        fields.remove("Host: gateway.test")
    elif roll < 0.12:
        fields.append("Host: gateway.test")
    elif roll < 0.16:
        fields[0] = rng.choice(["HOST: gateway.test", "host: gateway.test", "Host:gateway.test",
                                "Host:  gateway.test  ", "Host : gateway.test"])
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        field = rng.choice(FIELD_MUTATIONS)
        field = field.replace("{long}", "v" * rng.choice([1000, 9000, 70_000]))
        field = field.replace("{longname}", "X-" + "n" * rng.choice([1000, 9000]))
        fields.insert(rng.randrange(len(fields) + 1), field)
    if rng.random() < 0.03:
        fields += [f"X-Many-{i}: {i}" for i in range(rng.choice([50, 200, 2000]))]
    return fields


def _chunked(rng: random.Random, body: bytes) -> bytes:
    pieces, rest = [], body
    while rest:
        size = rng.randint(1, max(1, len(rest)))
        piece, rest = rest[:size], rest[size:]
        size_text = rng.choice(["%x", "%X", "%04x", "%x ", "%x;ext=1", "%x;a", "%x ;a=b",
                                "%x\t", "0x%x", "+%x", "%x;a=\"q\""] if rng.random() < 0.2
                               else ["%x"]) % len(piece)
        pieces.append(size_text.encode() + b"\r\n" + piece + b"\r\n")
    end = rng.choice([b"0\r\n\r\n"] * 8 + [b"0\r\n", b"0\r\nX-Trailer: a\r\n\r\n",
                                            b"00\r\n\r\n", b"0;ext\r\n\r\n", b"",
                                            b"0\r\n\r\r\n", b"0\n\n", b"1\r\na\r\n"])
    return b"".join(pieces) + end


def _framing(rng: random.Random, method: str, body: bytes) -> tuple[list[str], bytes]:
    """The fields that frame a body and the bytes after the head."""
    roll = rng.random()
    size = len(body)
    if method not in ("POST", "PUT", "PATCH") and roll < 0.85:
        return [], b""
    if roll < 0.55:
        return [f"Content-Length: {size}"], body
    choices: list[tuple[list[str], bytes]] = [
        ([f"Content-Length: 0{size}"], body),
        ([f"Content-Length: +{size}"], body),
        ([f"Content-Length: -{size}"], body),
        ([f"Content-Length: {size}", f"Content-Length: {size}"], body),
        ([f"Content-Length: {size}, {size}"], body),
        ([f"Content-Length: {size}", f"Content-Length: {size + 1}"], body + b"x"),
        ([f"Content-Length: {size + 5}"], body),  # short of what it announced
        ([f"Content-Length: {max(0, size - 5)}"], body),  # longer: the rest is a "request"
        ([f"Content-Length: {size}", "Transfer-Encoding: chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: Chunked"], _chunked(rng, body)),
        (["TRANSFER-ENCODING: chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: gzip"], body),
        (["Transfer-Encoding: gzip, chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: chunked, chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], _chunked(rng, body)),
        (["Transfer-Encoding: identity", "Transfer-Encoding: chunked"], _chunked(rng, body)),
        (["Transfer-Encoding:  chunked "], _chunked(rng, body)),
        ([f"Content-Length: {http_limits.MAX_BODY_BYTES + 1}"], body),
        ([f"Content-Length: {size}"], body),
        ([f"Content-Length: 1{size:0>25}"], body),
        ([], body),  # a body without a length
    ]
    return rng.choice(choices)


def _request(rng: random.Random, token: str) -> bytes:
    method, target, extra = rng.choice(ROUTES)
    version = "HTTP/1.1" if rng.random() < 0.85 else "HTTP/1.0"
    fields = _fields(rng, extra, token)
    body = FORM if method == "POST" else b""
    if rng.random() < 0.1:
        body = rng.choice([b"", b"a", b"x" * 3000, bytes(range(256))])
    framing, after = _framing(rng, method, body)
    for field in framing:
        fields.insert(rng.randrange(min(1, len(fields)), len(fields) + 1), field)
    line = _request_line(rng, method, target, version)
    ends = rng.choice([b"\r\n"] * 30 + [b"\n"])
    head = ends.join([line, *(f.encode("utf-8", "surrogateescape") for f in fields)])
    last = rng.choice([b"\r\n\r\n"] * 40 + [b"\r\n\n", b"\n\n", b"\r\n"])
    return head + last + after


def _with_close(request: bytes) -> bytes:
    """The request asking to end the connection after its answer (a case that ends itself)."""
    head, sep, rest = request.partition(b"\r\n")
    if not sep:
        return request
    return head + b"\r\nConnection: close\r\n" + rest


def generate(seed: int, count: int, token: str) -> Iterator[Case]:
    """`count` cases, the same for the same seed."""
    rng = random.Random(seed)
    for index in range(count):
        requests = [_request(rng, token) for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4]))]
        if rng.random() < 0.5:
            requests[-1] = _with_close(requests[-1])
        size = sum(map(len, requests))
        roll = rng.random()
        if roll < 0.5 or size < 2:
            splits: tuple[int, ...] = ()
        elif roll < 0.65 and size <= 160:
            splits = tuple(range(1, size))  # a byte at a time
        else:
            splits = tuple(sorted(rng.sample(range(1, size), min(size - 1, rng.randint(1, 6)))))
        yield Case(index, tuple(requests), splits)


# -- what a listener did ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    fields: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    answers: tuple[Answer, ...]
    rest: bytes  # bytes after the last whole answer (none, unless an answer is cut)
    closed: bool  # the server closed the connection before our half-close


DROPPED_FIELDS = {"date", "x-request-id"}
TOKEN = re.compile(rb"[A-Za-z0-9_\-]{20,}={0,2}")


def _normal(value: bytes) -> bytes:
    return TOKEN.sub(b"<token>", value)


def _parse(received: bytes, heads: list[bool]) -> tuple[tuple[Answer, ...], bytes]:
    """The answers in `received`, framed as a client frames them (`heads`: which were to a
    HEAD, so bodiless)."""
    answers: list[Answer] = []
    rest = received
    while b"\r\n\r\n" in rest:
        head, _, after = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        match = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
        if match is None:
            break
        status = int(match.group(1))
        fields: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.decode("latin1").partition(":")
            key, value = name.strip().lower(), value.strip()
            if key == "content-length":
                length = int(value)
            if key == "transfer-encoding" and value.lower() == "chunked":
                chunked = True
            if key in DROPPED_FIELDS:
                continue
            if key == "set-cookie":
                value = value.partition("=")[0]
            fields.append((key, _normal(value.encode("latin1")).decode("latin1")))
        to_head = status >= 200 and bool(heads) and heads.pop(0)
        bodiless = status < 200 or status in (204, 304) or to_head
        if bodiless:
            body = b""
        elif chunked:
            body = b""
            while True:
                size_line, sep, after = after.partition(b"\r\n")
                if not sep:
                    return tuple(answers), rest
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    after = after[2:]
                    break
                body += after[:size]
                after = after[size + 2:]
        elif length is not None:
            if len(after) < length:
                break
            body, after = after[:length], after[length:]
        else:  # until the connection ends
            body, after = after, b""
        answer = Answer(status, tuple(sorted(fields)), _normal(body))
        if answer == LLHTTP_REFUSAL:
            # The connection's own refusal of a malformed request, as each spells it: Tornado
            # as "400 Bad Request" alone, then closes; llhttp's says so (a handler's has a body).
            answer = BARE_REFUSAL
        answers.append(answer)
        rest = after
    return tuple(answers), rest


def _heads(case: Case) -> list[bool]:
    return [request.startswith(b"HEAD ") for request in case.requests]


def _run(port: int, case: Case, idle: float) -> Outcome:
    """Send the case, read until the server closes or `idle` passes without a byte, then
    half-close (a server waiting for more then knows none comes) and read what is left."""
    received = bytearray()
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSE_WAIT) as sock:
        try:
            for number, piece in enumerate(case.pieces()):
                if number:
                    time.sleep(0.001)
                sock.sendall(piece)
        except OSError:
            pass  # the server closed (or reads no more): what it answered is what counts
        sock.settimeout(idle)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break  # nothing more comes until we do something
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
        if not closed:
            sock.settimeout(CLOSE_WAIT)
            try:
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    received += chunk
            except OSError:
                pass
    answers, rest = _parse(bytes(received), _heads(case))
    return Outcome(answers, rest, closed)


Pair = tuple[Outcome, Outcome]  # Tornado's, llhttp's


def _both(ports: tuple[int, int], case: Case, idle: float) -> Pair:
    return _run(ports[0], case, idle), _run(ports[1], case, idle)


# -- the deliberate differences ---------------------------------------------------------------

BARE_REFUSAL = Answer(400, (), b"")  # Tornado's "HTTP/1.1 400 Bad Request\r\n\r\n"
LLHTTP_REFUSAL = Answer(400, (("connection", "close"), ("content-length", "0")), b"")


def _request_of(outcome: Outcome, k: int) -> int:
    """Which request answer `k` answers: the answers before it, but interim ones."""
    return sum(answer.status != 100 for answer in outcome.answers[:k])


def _refused_instead(pair: Pair) -> int | None:
    """Which request llhttp refused (400, closed) where Tornado answered it or refused it
    otherwise: the answers before it are the same."""
    tornado, llhttp = pair
    if not llhttp.closed or not llhttp.answers or llhttp.answers[-1] != BARE_REFUSAL:
        return None
    k = len(llhttp.answers) - 1
    if tornado.answers[:k] != llhttp.answers[:k] or len(tornado.answers) <= k:
        return None
    return _request_of(llhttp, k)


def _tornado_refuses_instead(pair: Pair) -> int | None:
    """Which request Tornado refused where llhttp answered it, or still waits for its body
    (Tornado refuses at the end of the head)."""
    tornado, llhttp = pair
    if not tornado.closed or not tornado.answers or tornado.answers[-1] != BARE_REFUSAL:
        return None
    k = len(tornado.answers) - 1
    if llhttp.answers[:k] != tornado.answers[:k]:
        return None
    waiting = len(llhttp.answers) == k and not llhttp.closed
    if not waiting and (len(llhttp.answers) <= k or llhttp.answers[k] == BARE_REFUSAL):
        return None
    return _request_of(tornado, k)


def _closes_instead(case: Case, pair: Pair) -> int | None:
    """Which request's answer ended the connection on llhttp, with `Connection: close`, where
    Tornado gave the same answer without it and kept the connection."""
    tornado, llhttp = pair
    k = len(llhttp.answers) - 1
    if not llhttp.closed or k < 0 or len(tornado.answers) <= k:
        return None
    if llhttp.answers[:k] != tornado.answers[:k]:
        return None
    theirs, ours = tornado.answers[k], llhttp.answers[k]
    closing = tuple(sorted((*theirs.fields, ("connection", "close"))))
    if ours != replace(theirs, fields=closing):
        return None
    request = _request_of(llhttp, k)
    if len(tornado.answers) == k + 1 and tornado.closed and request + 1 >= len(case.requests):
        return None  # Tornado closed too, and not for a request after it
    return request


def _nth(case: Case, k: int) -> bytes:
    return case.requests[k] if k < len(case.requests) else b""


def _head(request: bytes) -> bytes:
    return request.partition(b"\r\n\r\n")[0]


def _line(case: Case, k: int) -> bytes:
    return _nth(case, k).partition(b"\n")[0]


def _values(request: bytes, name: bytes) -> list[bytes]:
    """The values of the fields called `name` in the request's head."""
    found = []
    for line in re.split(rb"\r?\n", _head(request))[1:]:
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == name:
            found.append(value.strip())
    return found


def _stream_line(case: Case, k: int) -> bytes:
    """The request line of request `k` as the server reads it: after the bytes a request
    before it sent past its head without announcing a body (they start the line)."""
    line = _line(case, k)
    if 0 < k < len(case.requests):
        before = case.requests[k - 1]
        rest = before.partition(b"\r\n\r\n")[2]
        if rest and not _values(before, b"content-length") and not _values(
                before, b"transfer-encoding"):
            return rest + line
    return line


def _llhttp_refuses_a_method_tornado_routes(case: Case, pair: Pair) -> bool:
    """llhttp knows the methods of its table only, in capitals (`get`, `FOO` are a 400; `PRI`
    expects HTTP/2's preface); Tornado hands any token to the application (a 405), also one
    made of a body sent without a length and the next request's method."""
    k = _refused_instead(pair)
    if k is None:
        return False
    method = _stream_line(case, k).split(b" ")[0]
    return method not in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
                          b"TRACE")


def _llhttp_refuses_a_method_a_short_body_left(case: Case, pair: Pair) -> bool:
    """A body shorter than its Content-Length takes the next request's first bytes: what is
    left of its method (`NS` of `OPTIONS`) is a token Tornado routes (a 405) and llhttp
    refuses, as in `_llhttp_refuses_a_method_tornado_routes`."""
    k = _refused_instead(pair)
    if k is None or k == 0 or k >= len(case.requests):
        return False
    before = case.requests[k - 1]
    lengths = _values(before, b"content-length")
    body = before.partition(b"\r\n\r\n")[2]
    if len(lengths) != 1 or not lengths[0].isdigit():
        return False
    short = int(lengths[0]) - len(body)
    method = _line(case, k).split(b" ")[0]
    return 0 < short < len(method) and method[short:] not in (b"GET", b"HEAD", b"POST", b"PUT",
                                                            b"DELETE", b"OPTIONS", b"PATCH")


def _llhttp_refuses_http_1_2_and_the_like(case: Case, pair: Pair) -> bool:
    """Only HTTP/1.0 and 1.1 are served on llhttp: Tornado answers `HTTP/1.2` and `HTTP/1.10`
    as HTTP/1.x requests."""
    k = _refused_instead(pair)
    return k is not None and re.search(rb" HTTP/1\.(?![01]\r?$)\d+\r?$", _line(case, k)) is not None


def _llhttp_refuses_targets_tornado_takes(case: Case, pair: Pair) -> bool:
    """llhttp refuses a target in authority form (`gateway.test:80`), one that is no URL at all
    (`healthz`) and raw bytes past ASCII in a target; Tornado takes them (its application's 404
    or 400)."""
    k = _refused_instead(pair)
    if k is None:
        return False
    parts = _line(case, k).split()
    target = parts[1] if len(parts) > 1 else b""
    return (not target.startswith((b"/", b"*", b"http://", b"HTTP://"))
            or any(byte > 0x7F for byte in target))


def _llhttp_refuses_equal_lengths_given_twice(case: Case, pair: Pair) -> bool:
    """Two equal Content-Lengths, in two fields or as `3, 3` (a proxy that joined them):
    Tornado takes them, llhttp refuses any two (SECURITY H7)."""
    k = _refused_instead(pair)
    if k is None:
        return False
    values = _values(_nth(case, k), b"content-length")
    return len(values) > 1 or any(b"," in value for value in values)


def _tornado_drops_a_head_over_the_limit(case: Case, pair: Pair) -> bool:
    """A head past MAX_HEADER_BYTES (to its first blank line, maybe through the requests after
    it) with something malformed before the limit: llhttp refuses that as it comes (400),
    Tornado drops the connection for the size without a word."""
    tornado, llhttp = pair
    k = len(tornado.answers)
    return (tornado.closed and llhttp.closed and llhttp.answers == (*tornado.answers, BARE_REFUSAL)
            and len(_head(b"".join(case.requests[k:]))) > http_limits.MAX_HEADER_BYTES)


def _llhttp_refuses_bare_lf(case: Case, pair: Pair) -> bool:
    """A line of the head ended by a bare LF: refused on llhttp (SECURITY H7), taken by
    Tornado."""
    k = _refused_instead(pair)
    return k is not None and re.search(rb"(?<!\r)\n", _head(_nth(case, k))) is not None


def _llhttp_refuses_before_the_end_of_the_request(case: Case, pair: Pair) -> bool:
    """llhttp refuses a malformed request as its bytes come; Tornado reads the head to its end
    (and a body to its end) first, and the case never sends that end: Tornado still waits
    (then closes at our half-close)."""
    tornado, llhttp = pair
    k = len(llhttp.answers) - 1
    return (llhttp.closed and k >= 0 and llhttp.answers[k] == BARE_REFUSAL
            and tornado.answers == llhttp.answers[:k] and not tornado.closed and not tornado.rest)


def _tornado_drops_a_chunk_size_line_past_64_bytes(case: Case, pair: Pair) -> bool:
    """Tornado reads a chunk-size line of 64 bytes at most, and drops the connection without a
    word past it (a line that is not a chunk size at all); llhttp refuses it with a 400."""
    tornado, llhttp = pair
    k = len(tornado.answers)
    return (tornado.closed and llhttp.closed and llhttp.answers == (*tornado.answers, BARE_REFUSAL)
            and any(b"chunked" in value.lower()
                    for value in _values(_nth(case, k), b"transfer-encoding")))


def _llhttp_drops_a_body_over_the_limit(case: Case, pair: Pair) -> bool:
    """A Content-Length past MAX_BODY_BYTES: llhttp drops the connection without a word
    (before any 100 Continue invites the body), Tornado says 400 and closes."""
    tornado, llhttp = pair
    return (tornado.answers == (*llhttp.answers, BARE_REFUSAL) and llhttp.closed
            and any(value.isdigit() and int(value) > http_limits.MAX_BODY_BYTES
                    for request in case.requests for value in _values(request, b"content-length")))


def _llhttp_closes_on_close_among_other_tokens(case: Case, pair: Pair) -> bool:
    """`Connection: keep-alive, close` (or `close` in one field and `Upgrade` in another):
    a list with `close` in it ends the connection on llhttp, as RFC 9110 7.6.1 says; Tornado
    closes on exactly `close` only."""
    k = _closes_instead(case, pair)
    if k is None:
        return False
    values = _values(_nth(case, k), b"connection")
    tokens = {token.strip().lower() for value in values for token in value.split(b",")}
    return b"close" in tokens


def _llhttp_closes_after_declining_an_upgrade(case: Case, pair: Pair) -> bool:
    """An offer to switch protocols is declined on both; llhttp ends the connection with the
    answer (SECURITY H7), so that a proxy that took it for a switch has no tunnel."""
    k = _closes_instead(case, pair)
    return k is not None and bool(_values(_nth(case, k), b"upgrade"))


def _100_continue_sent_otherwise(case: Case, pair: Pair) -> Pair | None:
    """Not a predicate but a reduction (`_explained` tries the others on what it gives back):
    the answers without their `100 Continue`, when those are sent otherwise. Tornado sends
    one to HTTP/1.0 requests too, to a request whose body came with it behind an earlier
    request, where llhttp owes none, and before refusing a message llhttp refuses at once;
    llhttp reads `Expect` case-insensitively (`100-Continue`) and its last field when there
    are two, Tornado reads neither."""
    tornado, llhttp = pair
    expecting = [(k, request) for k, request in enumerate(case.requests)
                 if any(value.lower() == b"100-continue"
                        for value in _values(request, b"expect"))]
    more_on_tornado = any(k > 0 or b" HTTP/1.0" in _line(case, k) for k, _ in expecting)
    more_on_llhttp = any(_values(request, b"expect") != [b"100-continue"]
                         for _, request in expecting)
    extra = (sum(a.status == 100 for a in tornado.answers)
             - sum(a.status == 100 for a in llhttp.answers))
    # Tornado's 100 goes out with the head, before it finds what it refuses in the message.
    before_refusal = any(a.status == 100 and b == BARE_REFUSAL
                         for a, b in zip(tornado.answers, tornado.answers[1:], strict=False))
    on_tornado = more_on_tornado or before_refusal
    if not ((extra > 0 and on_tornado) or (extra < 0 and more_on_llhttp)
            or (extra == 0 and on_tornado and more_on_llhttp)):  # one each, to other requests
        return None

    def final(outcome: Outcome) -> Outcome:
        return replace(outcome, answers=tuple(a for a in outcome.answers if a.status != 100))

    return final(tornado), final(llhttp)


def _tornado_refuses_chunk_extensions(case: Case, pair: Pair) -> bool:
    """A chunk size with an extension (`5;a=b`, RFC 9112 7.1.1): llhttp takes it, Tornado
    refuses it."""
    k = _tornado_refuses_instead(pair)
    return k is not None and re.search(rb"\r\n[0-9a-fA-F]+ *;", _nth(case, k)) is not None


def _tornado_refuses_spaces_in_the_request_line(case: Case, pair: Pair) -> bool:
    """Several spaces between the parts of the request line: llhttp parses on them (RFC 9112
    3 lets a recipient), Tornado refuses."""
    k = _tornado_refuses_instead(pair)
    return k is not None and re.fullmatch(rb"[A-Z-]+ +\S+ +HTTP/1\.[01]\r?",
                                          _line(case, k)) is not None


def _tornado_announces_a_keep_alive_it_does_not_keep(case: Case, pair: Pair) -> bool:
    """HTTP/1.0 `Connection: keep-alive` on a request whose end Tornado cannot tell (a DELETE
    without a length): Tornado's answer says Keep-Alive and the connection closes; llhttp's
    says nothing of it."""
    tornado, llhttp = pair
    if not (tornado.closed and llhttp.closed and tornado.rest == llhttp.rest
            and len(tornado.answers) == len(llhttp.answers) >= 1):
        return False
    k = len(llhttp.answers) - 1
    theirs = tornado.answers[k]
    plain = tuple(field for field in theirs.fields if field != ("connection", "Keep-Alive"))
    return (tornado.answers[:k] == llhttp.answers[:k] and plain != theirs.fields
            and llhttp.answers[k] == replace(theirs, fields=plain)
            and b" HTTP/1.0" in _line(case, _request_of(llhttp, k)))


KnownDifference = Callable[[Case, Pair], bool]
KNOWN_DIFFERENCES: list[KnownDifference] = [
    _llhttp_refuses_a_method_tornado_routes,
    _llhttp_refuses_a_method_a_short_body_left,
    _llhttp_refuses_http_1_2_and_the_like,
    _llhttp_refuses_targets_tornado_takes,
    _llhttp_refuses_equal_lengths_given_twice,
    _tornado_drops_a_head_over_the_limit,
    _llhttp_refuses_bare_lf,
    _llhttp_refuses_before_the_end_of_the_request,
    _tornado_drops_a_chunk_size_line_past_64_bytes,
    _llhttp_drops_a_body_over_the_limit,
    _llhttp_closes_on_close_among_other_tokens,
    _llhttp_closes_after_declining_an_upgrade,
    _tornado_refuses_chunk_extensions,
    _tornado_refuses_spaces_in_the_request_line,
    _tornado_announces_a_keep_alive_it_does_not_keep,
]


def _explained(case: Case, pair: Pair) -> str | None:
    """The name of the known difference that explains the two outcomes, or None."""
    for known in KNOWN_DIFFERENCES:
        if known(case, pair):
            return known.__name__
    reduced = _100_continue_sent_otherwise(case, pair)
    if reduced is not None:
        if reduced[0] == reduced[1]:
            return _100_continue_sent_otherwise.__name__
        for known in KNOWN_DIFFERENCES:
            if known(case, reduced):
                return f"{_100_continue_sent_otherwise.__name__}, {known.__name__}"
    return None


# -- the test ---------------------------------------------------------------------------------


def _differs(ports: tuple[int, int], case: Case) -> Pair | None:
    """The outcomes when they differ, read patiently twice: a difference of timing (a busy
    machine) is not one."""
    for _ in range(2):
        pair = _both(ports, case, PATIENT_IDLE)
        if pair[0] == pair[1]:
            return None
    return pair


def _unexplained(ports: tuple[int, int], case: Case, quick: Pair) -> Pair | None:
    """The outcomes of a case that differ in a way no known difference explains, or None."""
    if quick[0] == quick[1] or _explained(case, quick) is not None:
        return None
    pair = _differs(ports, case)
    if pair is None or _explained(case, pair) is not None:
        return None
    return pair


def _shrunk(ports: tuple[int, int], case: Case) -> Case:
    """A smaller case that still differs in a way no known difference explains."""
    def still(candidate: Case) -> bool:
        pair = _differs(ports, candidate)
        return pair is not None and _explained(candidate, pair) is None

    if case.splits:
        candidate = replace(case, splits=())
        if still(candidate):
            case = candidate
    for k in range(len(case.requests)):
        if len(case.requests) > 1:
            candidate = replace(case, requests=case.requests[:k + 1], splits=())
            if not case.splits and still(candidate):
                return candidate
    return case


@pytest.fixture
def listeners(make_stack: Callable[..., Stack]) -> Iterator[tuple[tuple[int, int], str]]:
    """One application behind Tornado's listener and behind llhttp's."""
    stack = make_stack(listen={"http_parser": "tornado"},
                       login={"max_pending_per_client": 500_000})
    _, token = _signed_in(stack)
    for port, _ in _serve_every_route(stack):
        yield (_main_port(stack), port), token


def test_both_listeners_do_the_same_with_the_same_bytes(
        listeners: tuple[tuple[int, int], str]) -> None:
    ports, token = listeners
    cases = list(generate(SEED, CASES, token))
    with ThreadPoolExecutor(WORKERS) as pool:
        quick = list(pool.map(lambda case: _both(ports, case, QUICK_IDLE), cases))
        checked = list(pool.map(lambda case, pair: _unexplained(ports, case, pair),
                                cases, quick))
    unexplained = [(case, pair) for case, pair in zip(cases, checked, strict=True)
                   if pair is not None]
    explained: dict[str, int] = {}
    for case, pair in zip(cases, quick, strict=True):
        if pair[0] != pair[1] and (reason := _explained(case, pair)) is not None:
            explained[reason] = explained.get(reason, 0) + 1
    print(f"seed {SEED}: {len(cases)} cases, known differences {explained}, "
          f"{len(unexplained)} unexplained")
    if dump := os.environ.get("DIFF_FUZZ_DUMP"):  # every unexplained one, for a run by hand
        with open(dump, "a") as out:
            for case, (tornado, llhttp) in unexplained:
                out.write(f"case {case.index} seed {SEED}\n{case!r}\n  tornado={tornado!r}\n"
                          f"  llhttp={llhttp!r}\n\n")
    if unexplained:
        case, pair = unexplained[0]
        small = _shrunk(ports, case)
        small_pair = _both(ports, small, PATIENT_IDLE)
        report = [f"seed {SEED}, case {case.index}: {len(unexplained)} unexplained differences; "
                  f"the first, shrunk:", f"requests={small.requests!r}",
                  f"splits={small.splits!r}",
                  f"tornado={small_pair[0]!r}", f"llhttp={small_pair[1]!r}",
                  "others: " + ", ".join(str(c.index) for c, _ in unexplained[1:20])]
        pytest.fail("\n".join(report))
