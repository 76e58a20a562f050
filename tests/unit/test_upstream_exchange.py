"""The rules of a provider call made directly on a kept-alive connection (upstream/exchange.py):
the request it writes, and how it reads an answer's head, frames its body and decides whether
the connection may carry another call. As strict as Tornado's client (SECURITY H7 on the
way back: an answer out of step must never be read as the next call's)."""

from __future__ import annotations

import gzip

import pytest
from tornado.httputil import HTTPHeaders, HTTPInputError

from gateway.upstream.exchange import (
    NO_BODY,
    Framing,
    body_framing,
    gunzipped,
    keeps_alive,
    parse_response_head,
    request_message,
    target_of,
)

CAP = 64 * 1024


def headers(*pairs: tuple[str, str]) -> HTTPHeaders:
    parsed = HTTPHeaders()
    for name, value in pairs:
        parsed.add(name, value)
    return parsed


# ---------------------------------------------------------------------------------------------
# The request


def test_a_url_names_its_host_port_and_path_with_the_query() -> None:
    target = target_of("https://oauth2.example.com/token?a=1#fragment")
    assert target is not None
    assert (target.host, target.port, target.host_header, target.path) == (
        "oauth2.example.com", 443, "oauth2.example.com", "/token?a=1")
    literal = target_of("http://[::1]:8080")
    assert literal is not None
    assert (literal.host, literal.port, literal.path) == ("::1", 8080, "/")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://user:pw@example.com/token"])
def test_what_this_path_does_not_send_is_left_to_tornados_client(url: str) -> None:
    assert target_of(url) is None


def test_the_request_is_one_buffer_with_the_headers_tornados_client_adds() -> None:
    target = target_of("http://127.0.0.1:9000/token")
    assert target is not None
    given = headers(("Accept", "application/json"))
    message = request_message("POST", target, given, b"code=abc", user_agent=None,
                              decompress=True)
    head, _, body = message.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /token HTTP/1.1"
    assert body == b"code=abc"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["Host"] == "127.0.0.1:9000"
    assert fields["Connection"] == "keep-alive"
    assert fields["Content-Length"] == "8"
    assert fields["Content-Type"] == "application/x-www-form-urlencoded"
    assert fields["Accept-Encoding"] == "gzip"
    assert fields["User-Agent"].startswith("Tornado/")
    assert given["Host"] == "127.0.0.1:9000"  # added in place, as Tornado's client does


def test_a_caller_saying_close_is_heard() -> None:
    target = target_of("http://127.0.0.1:9000/")
    assert target is not None
    message = request_message("GET", target, headers(("Connection", "close")), None,
                              user_agent="gw", decompress=False)
    assert b"Connection: close\r\n" in message
    assert b"Content-Length" not in message and b"Accept-Encoding" not in message


@pytest.mark.parametrize("name, value", [("X-Request-ID", "a\r\nX-Injected: 1"),
                                         ("X-Request-ID", "a\nb"), ("X-Request-ID", "a\rb"),
                                         ("X-Bad\r\nName", "v")])
def test_a_header_holding_cr_or_lf_is_refused_before_anything_is_sent(name: str,
                                                                      value: str) -> None:
    """Tornado's `HTTPHeaders.add` refuses them, but a caller's plain dict of headers becomes
    `HTTPHeaders` without that check."""
    target = target_of("http://127.0.0.1:9000/")
    assert target is not None
    with pytest.raises(ValueError):
        request_message("GET", target, HTTPHeaders({name: value}), None, user_agent=None,
                        decompress=False)


# ---------------------------------------------------------------------------------------------
# The answer's head


def test_an_answer_head_is_read_with_crlf_or_bare_lf_after_empty_lines() -> None:
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                b"\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\n"):
        start_line, fields = parse_response_head(raw)
        assert (start_line.version, start_line.code, start_line.reason) == (
            "HTTP/1.1", 200, "OK")
        assert fields["Content-Length"] == "2"


@pytest.mark.parametrize("raw", [b"\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"])
def test_a_malformed_head_is_an_input_error(raw: bytes) -> None:
    with pytest.raises(HTTPInputError):
        parse_response_head(raw)


# ---------------------------------------------------------------------------------------------
# The body's framing


def test_content_length_frames_the_body_and_equal_duplicates_are_one() -> None:
    assert body_framing(200, headers(("Content-Length", "12")), CAP) == Framing(12)
    duplicated = headers(("Content-Length", "12"), ("Content-Length", "12"))
    assert body_framing(200, duplicated, CAP) == Framing(12)
    assert duplicated["Content-Length"] == "12"


@pytest.mark.parametrize("fields", [
    (("Content-Length", "12"), ("Content-Length", "13")),  # which one?
    (("Content-Length", "+12"),), (("Content-Length", "0x10"),), (("Content-Length", "1 2"),),
    (("Content-Length", str(CAP + 1)),),  # over the cap, refused before reading
    (("Content-Length", "5"), ("Transfer-Encoding", "chunked")),  # smuggling
    (("Transfer-Encoding", "gzip, chunked"),), (("Transfer-Encoding", "identity"),),
])
def test_H7_an_answer_framed_two_ways_or_badly_is_refused(
        fields: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(HTTPInputError):
        body_framing(200, headers(*fields), CAP)


def test_chunked_and_close_delimited_bodies() -> None:
    assert body_framing(200, headers(("Transfer-Encoding", "Chunked")), CAP) == Framing(
        None, chunked=True)
    to_the_close = body_framing(200, headers(), CAP)
    assert to_the_close == Framing(None) and not to_the_close.delimited


def test_204_and_304_have_no_body_and_a_204_announcing_one_is_refused() -> None:
    assert body_framing(304, headers(("Content-Length", "10")), CAP) == NO_BODY
    assert body_framing(204, headers(), CAP) == NO_BODY
    assert body_framing(204, headers(("Content-Length", "0")), CAP) == NO_BODY
    with pytest.raises(HTTPInputError):
        body_framing(204, headers(("Content-Length", "3")), CAP)
    with pytest.raises(HTTPInputError):
        body_framing(204, headers(("Transfer-Encoding", "chunked")), CAP)


def test_a_connection_is_kept_only_for_delimited_http11_answers_nobody_closed() -> None:
    plain = headers()
    assert keeps_alive("HTTP/1.1", plain, plain, Framing(10))
    assert keeps_alive("HTTP/1.1", plain, plain, Framing(None, chunked=True))
    assert not keeps_alive("HTTP/1.0", plain, plain, Framing(10))
    assert not keeps_alive("HTTP/1.1", plain, plain, Framing(None))
    closing = headers(("Connection", "keep-alive, Close"))
    assert not keeps_alive("HTTP/1.1", closing, plain, Framing(10))
    assert not keeps_alive("HTTP/1.1", plain, closing, Framing(10))


# ---------------------------------------------------------------------------------------------
# Compressed answers


def test_a_gzip_body_is_decompressed_member_by_member() -> None:
    assert gunzipped(gzip.compress(b'{"a": 1}'), CAP) == b'{"a": 1}'
    assert gunzipped(gzip.compress(b"ab") + gzip.compress(b"cd"), CAP) == b"abcd"
    assert gunzipped(b"", CAP) == b""


def test_a_gzip_bomb_is_refused_at_the_cap_before_it_is_decompressed_whole() -> None:
    bomb = gzip.compress(b"0" * (64 * CAP))
    assert len(bomb) < CAP // 8
    with pytest.raises(HTTPInputError, match="too large"):
        gunzipped(bomb, CAP)
    assert len(gunzipped(gzip.compress(b"0" * CAP), CAP)) == CAP  # exactly the cap is fine


@pytest.mark.parametrize("body", [gzip.compress(b'{"a": 1}')[:-6], b"not gzip at all"])
def test_truncated_or_invalid_gzip_is_an_input_error(body: bytes) -> None:
    with pytest.raises(HTTPInputError):
        gunzipped(body, CAP)
