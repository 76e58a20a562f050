"""The error table (gateway/errors.py): what each error's answer carries, and the one place
where other exceptions become an error a client sees."""

from __future__ import annotations

import re

import pytest

from gateway import errors
from gateway.errors import (
    AccessDenied,
    AuthorizationRedirect,
    GatewayError,
    InvalidClient,
    InvalidToken,
    LoginFailed,
    MissingToken,
    NotPermitted,
    RateLimited,
    StoreFull,
    StoreUnavailable,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
    login_outcome,
    public_error,
)

SAFE_NAME = re.compile(r"[A-Za-z0-9-]+")
SAFE_VALUE = re.compile(r"[\x20-\x7e]*")


def _all_error_classes() -> list[type[GatewayError]]:
    found: list[type[GatewayError]] = []
    pending = [GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_of_the_module_is_in_the_table() -> None:
    classes = set(_all_error_classes())
    defined = {value for value in vars(errors).values()
               if isinstance(value, type) and issubclass(value, GatewayError)}
    assert defined <= classes


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda cls: cls.__name__)
def test_each_error_has_a_status_code_and_safe_headers(cls: type[GatewayError]) -> None:
    assert 300 <= cls.status < 600
    assert re.fullmatch(r"[a-z_]+", cls.error)
    for name, value in cls.headers:
        assert SAFE_NAME.fullmatch(name) and SAFE_VALUE.fullmatch(value)


@pytest.mark.parametrize(("error", "header"), [
    (InvalidToken("expired"), ("WWW-Authenticate", 'Bearer error="invalid_token"')),
    (MissingToken("no token"), ("WWW-Authenticate", 'Bearer realm="oauth-gateway"')),
    (InvalidClient("wrong secret"), ("WWW-Authenticate", 'Basic realm="oauth-gateway"')),
    (RateLimited(7), ("Retry-After", "7")),
])
def test_errors_carry_the_headers_their_rfcs_ask_for(error: GatewayError,
                                                      header: tuple[str, str]) -> None:
    assert header in error.response_headers()


def test_other_errors_add_no_headers() -> None:
    assert LoginFailed("state expired").response_headers() == ()
    assert UpstreamError("bad answer", provider="google").response_headers() == ()


@pytest.mark.parametrize(("error", "outcome"), [
    (AccessDenied("declined"), "denied"),
    (NotPermitted("google:1"), "not_permitted"),
    (UpstreamTimeout("slow", provider="google"), "upstream_timeout"),
    (UpstreamError("bad", provider="google"), "upstream_error"),
    (LoginFailed("replayed state"), "invalid_state"),
    (Unavailable("store down"), "unavailable"),
    (StoreUnavailable("redis get: down"), "unavailable"),
    (StoreFull("login-tx"), "unavailable"),
    (GatewayError("a client's mistake"), "invalid_request"),
    (GatewayError("ours", status=500), "error"),
    (RuntimeError("a bug"), "error"),
])
def test_login_outcome_of_each_error(error: BaseException, outcome: str) -> None:
    assert login_outcome(error) == outcome


def test_a_refusal_sent_back_to_the_app_counts_as_its_cause() -> None:
    redirect = AuthorizationRedirect("access_denied", "no", location="https://app.example/cb")
    redirect.__cause__ = NotPermitted("google:1")
    assert login_outcome(redirect) == "not_permitted"
    alone = AuthorizationRedirect("access_denied", "no", location="https://app.example/cb")
    assert login_outcome(alone) == "invalid_request"


def test_H9_store_errors_become_a_503_that_says_nothing_of_the_cause() -> None:
    for error in (StoreUnavailable("redis 10.0.0.7:6379 get: Connection refused"),
                  StoreFull("login-tx")):
        public = public_error(error)
        assert public is not None and public.status == 503
        assert public.error == "temporarily_unavailable"
        assert "redis" not in public.description and "login-tx" not in public.description


def test_an_unexpected_exception_has_no_public_form() -> None:
    assert public_error(KeyError("x")) is None
    token_error = InvalidToken("bad signature")
    assert public_error(token_error) is token_error
