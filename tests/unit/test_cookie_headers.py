"""The Set-Cookie headers cookies.py makes itself (SECURITY P1, P5): byte for byte what
Tornado's `set_cookie` makes, for every attribute the gateway sets, and signed values Tornado
reads back. A handler here is a real RequestHandler whose answer is flushed into a buffer."""

from __future__ import annotations

import http.cookies
import random
import string
from typing import Any

import pytest
import tornado.web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from gateway import cookies
from gateway.config import CookieSettings
from gateway.config.settings import Secret

SECRET = "s" * 48


class Connection:
    """What RequestHandler.flush writes to: the headers it sends."""

    def __init__(self) -> None:
        self.headers: HTTPHeaders | None = None

    def set_close_callback(self, callback: Any) -> None:
        del callback

    def write_headers(self, start_line: Any, headers: HTTPHeaders, chunk: bytes = b"") -> Any:
        self.headers = headers
        return None

    def write(self, chunk: bytes) -> Any:
        return None


def set_cookie_headers(set_cookies: Any) -> list[str]:
    """The Set-Cookie headers a handler sends after `set_cookies(handler)`."""
    application = tornado.web.Application(cookie_secret=SECRET)
    connection = Connection()
    request = HTTPServerRequest(start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
                                headers=HTTPHeaders({"Host": "gw.example.org"}),
                                connection=connection)  # type: ignore[arg-type]
    handler = tornado.web.RequestHandler(application, request)
    handler._transforms = []  # as Application.__call__ gives every handler
    set_cookies(handler)
    handler.flush()
    assert connection.headers is not None
    return connection.headers.get_list("Set-Cookie")


SETTINGS = [
    CookieSettings(secret=Secret(SECRET), secure=True),
    CookieSettings(secret=Secret(SECRET), secure=False, samesite="Strict"),
    CookieSettings(secret=Secret(SECRET), secure=True, samesite="None",
                   domain="example.org"),
]
VALUES = ["abcDEF012-_", "eyJhbGciOiJFZERTQSJ9." + "x" * 700 + ".c2ln",
          "with=equals", 'a"quoted"\\value', "{\"json\":[1,2]}", ""]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("base, shared", [(cookies.SESSION, False), (cookies.ACCESS, True),
                                          (cookies.LOGIN, False), (cookies.X_REQUEST_TOKEN,
                                                                   False)])
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("max_age", [600, 0])
def test_P1_our_set_cookie_is_tornados_byte_for_byte(settings: CookieSettings, base: str,
                                                     shared: bool, value: str,
                                                     max_age: int) -> None:
    policy = cookies.CookiePolicy(settings)
    ours = set_cookie_headers(
        lambda handler: policy.set(handler, base, value, max_age=max_age, shared=shared))
    tornados = set_cookie_headers(
        lambda handler: handler.set_cookie(policy.name(base, shared=shared), value,
                                           max_age=max_age, **policy._attributes(base, shared)))
    assert ours == tornados and len(ours) == 1


def test_a_signed_cookie_is_read_back_by_tornado() -> None:
    policy = cookies.CookiePolicy(SETTINGS[0])
    header, = set_cookie_headers(lambda handler: policy.set(
        handler, cookies.SESSION, "the-session-id", max_age=600, signed=True))
    jar = http.cookies.SimpleCookie()
    jar.load(header)
    name = policy.name(cookies.SESSION)
    assert tornado.web.decode_signed_value(SECRET, name, jar[name].value) == b"the-session-id"
    assert tornado.web.decode_signed_value("another secret", name, jar[name].value) is None


def test_the_last_cookie_of_a_name_wins_whichever_way_it_was_set() -> None:
    policy = cookies.CookiePolicy(SETTINGS[0])
    name = policy.name(cookies.SESSION)

    def set_then_clear(handler: tornado.web.RequestHandler) -> None:
        policy.set(handler, cookies.SESSION, "first", max_age=600)
        policy.clear(handler, cookies.SESSION)

    def clear_then_set(handler: tornado.web.RequestHandler) -> None:
        policy.clear(handler, cookies.SESSION)
        policy.set(handler, cookies.SESSION, "second", max_age=600)

    cleared, = set_cookie_headers(set_then_clear)
    assert cleared.startswith(f'{name}="";') and "expires=" in cleared
    kept, = set_cookie_headers(clear_then_set)
    assert kept.startswith(f"{name}=second;")


@pytest.mark.parametrize("value", ["a b", "a\x00b", "tab\there"])
def test_a_value_with_controls_or_spaces_is_refused_as_tornado_does(value: str) -> None:
    policy = cookies.CookiePolicy(SETTINGS[0])
    with pytest.raises(ValueError):
        set_cookie_headers(lambda handler: policy.set(handler, cookies.SESSION, value,
                                                      max_age=600))


def test_a_value_is_coded_as_morsel_codes_it() -> None:
    """`coded_value` is `SimpleCookie.value_encode`'s coding, for every kind of character:
    legal as it is, quoted only, or quoted and escaped."""
    chooser = random.Random(7)
    alphabet = string.printable + "\x00\x7f\xe9\u20ac\"\\;,="
    encoder = http.cookies.SimpleCookie()
    values = ["", "=", "a=b", "2|1:0|10:17|7:session|4:YWI=|ff", '"', "a\\b", "caf\u00e9"]
    values += ["".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 16)))
               for _ in range(20_000)]
    for value in values:
        assert cookies.coded_value(value) == encoder.value_encode(value)[1], value
