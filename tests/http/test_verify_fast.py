"""`GET /verify` with a Bearer token is answered below the RequestHandler (VerifyRoute in
gateway/handlers/verify.py): its 200 and its 401 must be the ones VerifyHandler gives (for the
same token in the access cookie), byte for byte apart from Date and X-Request-ID, and every
other request must still reach VerifyHandler."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import Stack
from log_canaries import LogScan

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


def _signed_in(stack: Stack) -> tuple[str, dict[str, str]]:
    """An access token, and the access cookie carrying it (the cookie goes to the handler)."""
    browser = stack.browser()
    browser.login()
    name = next(name for name in browser.cookies if name.endswith("gw_access"))
    token = browser.access_token()
    return token, {name: token}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _same_answer(handler: httpx.Response, fast: httpx.Response, status: int = 200) -> None:
    assert fast.status_code == handler.status_code == status
    assert fast.content == handler.content
    # The same headers in the same order: the same bytes.
    assert [(k, v) for k, v in fast.headers.items() if k not in VARYING] == [
        (k, v) for k, v in handler.headers.items() if k not in VARYING]
    assert set(fast.headers) == set(handler.headers)


def test_a_bearer_token_is_answered_below_the_handler_with_the_same_answer(
        stack: Stack, handled: list[str]) -> None:
    token, cookie = _signed_in(stack)
    by_handler = httpx.get(f"{stack.url}/verify", cookies=cookie)
    assert handled == ["GET"]
    first = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    again = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert handled == ["GET"]  # both Bearer requests answered without a handler
    _same_answer(by_handler, first)
    _same_answer(by_handler, again)
    assert again.headers["Cache-Control"] == "no-store"  # SECURITY H1
    assert again.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in again.headers
    assert again.json()["sub"].startswith("google:")


def test_J9_a_refusal_below_the_handler_is_the_handlers_refusal(
        stack: Stack, handled: list[str], logs: LogScan) -> None:
    token, cookie = _signed_in(stack)
    name = next(iter(cookie))
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    by_handler = httpx.get(f"{stack.url}/verify", cookies={name: forged})
    fast = httpx.get(f"{stack.url}/verify", headers={**_bearer(forged), "X-Request-ID": "r-1"})
    assert handled == ["GET"]
    _same_answer(by_handler, fast, status=401)
    assert fast.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert fast.json()["error"] == "invalid_token"
    stack.loop.call(lambda: None)
    refused = [json.loads(line) for line in logs.lines if '"refused"' in line]
    assert [(e["reason"], e.get("request_id")) for e in refused][-1] == ("bad signature", "r-1")
    text = stack.loop.call(lambda: stack.ctx.metrics.exposition().decode())
    assert 'gateway_tokens_refused_total{reason="bad_signature"} 2.0' in text


def test_the_fast_answer_counts_in_metrics_and_keeps_a_sane_request_id(
        stack: Stack, handled: list[str]) -> None:
    token, _ = _signed_in(stack)
    httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    kept = httpx.get(f"{stack.url}/verify", headers={**_bearer(token), "X-Request-ID": "lb-1.a"})
    replaced = httpx.get(f"{stack.url}/verify",
                         headers={**_bearer(token), "X-Request-ID": "a b<script>"})
    assert handled == []
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
    token, _ = _signed_in(stack)
    content = b"x" if extra else None
    answer = httpx.request(method, f"{stack.url}/verify", headers={**_bearer(token), **extra},
                           content=content)
    assert handled == [method]
    assert answer.status_code == (200 if method == "GET" else 405)


def test_no_token_goes_to_the_handler(stack: Stack, handled: list[str]) -> None:
    answer = httpx.get(f"{stack.url}/verify")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="oauth-gateway"'
    assert handled == ["GET"]


def test_J4_an_expired_cached_token_is_refused(stack: Stack, handled: list[str]) -> None:
    token, _ = _signed_in(stack)
    assert httpx.get(f"{stack.url}/verify", headers=_bearer(token)).status_code == 200
    verifier = stack.ctx.verifier
    later = verifier._clock() + 3600
    verifier._clock = lambda: later
    refused = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_H2_hsts_on_the_fast_answer_of_an_https_issuer(make_stack: Callable[..., Stack],
                                                       handled: list[str]) -> None:
    stack = make_stack(issuer="https://login.example.test",
                       proxy={"trusted": ["127.0.0.1/32"]})
    base = f"http://127.0.0.1:{stack.dev.gateway_sockets[0].getsockname()[1]}"
    # Its login cookies are Secure (not sent back over plain http): a token from its issuer.
    token = stack.loop.call(lambda: stack.ctx.issuer.issue(
        "google:ada", stack.ctx.settings.issuer, {}))
    fast = httpx.get(f"{base}/verify", headers=_bearer(token))
    plain = httpx.get(f"{base}/verify", headers={**_bearer(token), "X-Forwarded-Proto": "http"})
    no_token = httpx.get(f"{base}/verify")  # the handler's answer carries HSTS too
    assert handled == ["GET"]
    assert fast.status_code == 200
    assert fast.headers["Strict-Transport-Security"] == HSTS
    assert no_token.headers["Strict-Transport-Security"] == HSTS
    assert plain.status_code == 200
    assert "Strict-Transport-Security" not in plain.headers  # RFC 6797 7.2, trusted proxy


def test_an_unexpected_error_is_the_handlers_clean_500(stack: Stack, handled: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = _signed_in(stack)

    def broken(token: str) -> tuple[dict[str, Any], bytes]:
        raise TypeError("a bug")
    monkeypatch.setattr(stack.ctx.verifier, "verify_as_json", broken)
    answer = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert answer.status_code == 500
    assert answer.json()["error"] == "server_error"
    assert "Traceback" not in answer.text
    assert handled == ["GET"]


def test_a_refused_token_leaves_no_reference_cycle(stack: Stack) -> None:
    """A refusal kept its traceback, whose frames led back to the answer through the
    connection: ~35 objects per forged token for the cyclic collector, whose pauses were the
    p99 of a forged-token flood. Now it leaves no more than a valid token does."""
    token, _ = _signed_in(stack)
    with httpx.Client() as client:  # one kept-alive connection, as a flood comes

        def cyclic_garbage_of(tokens: list[str], status: int) -> int:
            gc.collect()
            gc.disable()  # the server's thread too: what is left is counted below
            try:
                for each in tokens:
                    assert client.get(f"{stack.url}/verify", headers=_bearer(each)
                                      ).status_code == status
                return gc.collect()
            finally:
                gc.enable()

        valid = cyclic_garbage_of([token] * 40, 200)
        forged = cyclic_garbage_of([f"{token[:-4]}{i:04d}" for i in range(40)], 401)
    assert forged <= valid + 40, (valid, forged)


def test_T6_with_revocation_checked_a_token_the_store_cleared_is_answered_below_the_handler(
        make_stack: Callable[..., Stack], handled: list[str]) -> None:
    """The first /verify asks the store (the handler); within the second the route answers
    from that (Grants.recently_not_revoked), the same answer. Signing out here revokes the
    session's tokens at once, remembered answer or not."""
    stack = make_stack(tokens={"verify_checks_revocation": True})
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    by_handler = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    fast = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert handled == ["GET"]
    _same_answer(by_handler, fast)
    home = browser.get(f"{stack.url}/")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None
    assert browser.post(f"{stack.url}/logout", data={"_xsrf": xsrf.group(1)}).status_code == 303
    refused = httpx.get(f"{stack.url}/verify", headers=_bearer(token))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
