"""`GET /verify` of a token seen before is answered below the RequestHandler
(gateway/handlers/verify_fast.py): the answer must be the one VerifyHandler gives, byte for byte
apart from Date and X-Request-ID, and everything else must still reach VerifyHandler."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import Stack

from gateway.handlers.base import HSTS
from gateway.handlers.verify import VerifyHandler

VARYING = {"date", "x-request-id"}


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The methods VerifyHandler was instantiated for: what the fast path did not answer."""
    seen: list[str] = []
    original = VerifyHandler.initialize

    def initialize(self: VerifyHandler, **kwargs: Any) -> None:
        seen.append(self.request.method or "")
        original(self, **kwargs)
    monkeypatch.setattr(VerifyHandler, "initialize", initialize)
    yield seen


def _signed_in(stack: Stack) -> str:
    browser = stack.browser()
    browser.login()
    return browser.access_token()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _same_answer(first: httpx.Response, second: httpx.Response) -> None:
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    assert sorted((k, v) for k, v in second.headers.items() if k not in VARYING) == sorted(
        (k, v) for k, v in first.headers.items() if k not in VARYING)
    assert set(second.headers) == set(first.headers)


def test_a_cached_token_is_answered_below_the_handler_with_the_same_answer(
        stack: Stack, handled: list[str]) -> None:
    token = _signed_in(stack)
    first = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert handled == ["GET"]  # first sight: the handler verified it
    second = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert handled == ["GET"]  # then answered from the cache, without a handler
    _same_answer(first, second)
    assert second.headers["Cache-Control"] == "no-store"  # SECURITY H1
    assert second.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in second.headers
    assert second.json()["sub"].startswith("google:")


def test_the_fast_answer_counts_in_metrics_and_keeps_a_sane_request_id(
        stack: Stack, handled: list[str]) -> None:
    token = _signed_in(stack)
    httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    kept = httpx.get(f"{stack.url}/verify", headers={**_bearer(token), "X-Request-ID": "lb-1.a"})
    replaced = httpx.get(f"{stack.url}/verify",
                         headers={**_bearer(token), "X-Request-ID": "a b<script>"})
    assert handled == ["GET"]
    assert kept.headers["X-Request-ID"] == "lb-1.a"
    assert replaced.headers["X-Request-ID"] != "a b<script>"
    assert len(replaced.headers["X-Request-ID"]) == 32
    text = stack.loop.call(lambda: stack.ctx.metrics.exposition().decode())
    assert 'gateway_tokens_verified_total{endpoint="verify"} 3.0' in text
    assert 'route="/verify",status="200"} 3.0' in text


@pytest.mark.parametrize(("method", "extra"), [
    ("HEAD", {}),
    ("POST", {}),
    ("GET", {"Content-Type": "text/plain"}),  # with a body, below
])
def test_other_requests_still_go_to_the_handler(stack: Stack, handled: list[str], method: str,
                                                extra: dict[str, str]) -> None:
    token = _signed_in(stack)
    httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    content = b"x" if extra else None
    answer = httpx.request(method, f"{stack.url}/verify", headers={**_bearer(token), **extra},
                           content=content)
    assert handled == ["GET", method]
    if method == "GET":
        assert answer.status_code == 200
    else:
        assert answer.status_code == 405


def test_J4_an_expired_cached_token_goes_to_the_handler_and_is_refused(
        make_stack: Callable[..., Stack], handled: list[str]) -> None:
    now = [0.0]
    stack = make_stack()
    token = _signed_in(stack)
    assert httpx.get(f"{stack.url}/verify", headers=_bearer(token)).status_code == 200
    verifier = stack.ctx.verifier
    real_clock = verifier._clock
    now[0] = real_clock() + 3600
    verifier._clock = lambda: now[0]
    refused = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert handled == ["GET", "GET"]


def test_J1_a_tampered_token_never_takes_the_fast_path(stack: Stack, handled: list[str]) -> None:
    token = _signed_in(stack)
    httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    tampered = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    assert httpx.get(f"{stack.url}/verify", headers=_bearer(tampered)).status_code == 401
    assert handled == ["GET", "GET"]


def test_H2_hsts_on_the_fast_answer_of_an_https_issuer(make_stack: Callable[..., Stack],
                                                       handled: list[str]) -> None:
    stack = make_stack(issuer="https://login.example.test",
                       proxy={"trusted": ["127.0.0.1/32"]})
    base = f"http://127.0.0.1:{stack.dev.gateway_sockets[0].getsockname()[1]}"
    # Its login cookies are Secure (not sent back over plain http): a token from its issuer.
    token = stack.loop.call(lambda: stack.ctx.issuer.issue(
        "google:ada", stack.ctx.settings.issuer, {}))
    first = httpx.get(f"{base}/verify", headers=_bearer(token))
    second = httpx.get(f"{base}/verify", headers=_bearer(token))
    plain = httpx.get(f"{base}/verify", headers={**_bearer(token), "X-Forwarded-Proto": "http"})
    assert handled == ["GET"]
    _same_answer(first, second)
    assert second.headers["Strict-Transport-Security"] == HSTS
    assert plain.status_code == 200
    assert "Strict-Transport-Security" not in plain.headers  # RFC 6797 7.2, trusted proxy
