"""`GET /auth` with a valid access JWT is answered below the RequestHandler (ForwardAuthRoute in
gateway/handlers/forward_auth.py): its 200 must be the one ForwardAuthHandler gives for the same
request, byte for byte apart from Date and X-Request-ID, and every other request must still
reach ForwardAuthHandler. A request announcing an empty body (`Content-Length: 0`) is one the
route leaves to the handler: the comparisons send the same request with and without it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import Stack

from gateway.cookies import versioned_secrets
from gateway.handlers.base import HSTS
from gateway.handlers.forward_auth import ForwardAuthHandler
from gateway.oidc.grants import NOT_REVOKED_SECONDS
from gateway.sessions import RECENT_SECONDS, Sessions

VARYING = {"date", "x-request-id"}
TO_HANDLER = {"Content-Length": "0"}
ORIGINAL = {"X-Original-URL": "https://app.example.test/reports?year=2026"}


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The methods ForwardAuthHandler was instantiated for: what the fast path did not answer."""
    seen: list[str] = []
    original = ForwardAuthHandler.initialize

    def initialize(self: ForwardAuthHandler, **kwargs: Any) -> None:
        seen.append(self.request.method or "")
        original(self, **kwargs)
    monkeypatch.setattr(ForwardAuthHandler, "initialize", initialize)
    yield seen


def _cookie_header(browser: Any, *, access: bool = True) -> str:
    """The browser's cookies as nginx forwards them (optionally without the access cookie)."""
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items()
                     if access or not name.endswith("gw_access"))


def _signed_in(stack: Stack, user: str | None = None) -> tuple[Any, dict[str, str]]:
    browser = stack.browser()
    browser.login(**({"user": user} if user else {}))
    return browser, {"Cookie": _cookie_header(browser), **ORIGINAL}


def _both(stack: Stack, method: str, headers: dict[str, str], handled: list[str]
          ) -> tuple[httpx.Response, httpx.Response]:
    """The handler's answer and the fast one, to the same request."""
    by_handler = httpx.request(method, f"{stack.url}/auth", headers={**headers, **TO_HANDLER})
    assert handled == [method]
    fast = httpx.request(method, f"{stack.url}/auth", headers=headers)
    assert handled == [method], "the fast path handed the request on"
    return by_handler, fast


def _same_answer(by_handler: httpx.Response, fast: httpx.Response) -> None:
    assert fast.status_code == by_handler.status_code == 200
    assert fast.content == by_handler.content == b""
    # The same headers in the same order: the same bytes.
    assert [(k, v) for k, v in fast.headers.items() if k not in VARYING] == [
        (k, v) for k, v in by_handler.headers.items() if k not in VARYING]
    assert set(fast.headers) == set(by_handler.headers)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_access_cookie_is_answered_below_the_handler_with_the_same_answer(
        stack: Stack, handled: list[str], method: str) -> None:
    _, headers = _signed_in(stack)
    by_handler, fast = _both(stack, method, headers, handled)
    _same_answer(by_handler, fast)
    assert fast.headers["X-Auth-Request-User"].startswith("google:")
    assert fast.headers["X-Auth-Request-Email"] == "ada@example.com"
    assert fast.headers["Cache-Control"] == "no-store"  # SECURITY H1
    assert fast.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in fast.headers and "Authorization" not in fast.headers


def test_a_bearer_token_is_answered_below_the_handler_with_the_same_answer(
        stack: Stack, handled: list[str]) -> None:
    browser, _ = _signed_in(stack)
    headers = {"Authorization": f"Bearer {browser.access_token()}"}
    _same_answer(*_both(stack, "GET", headers, handled))


def test_pass_token_gives_the_same_authorization_header(
        make_stack: Callable[..., Stack], handled: list[str]) -> None:
    stack = make_stack(forward_auth={"pass_token": True})
    browser, headers = _signed_in(stack)
    by_handler, fast = _both(stack, "GET", headers, handled)
    _same_answer(by_handler, fast)
    assert fast.headers["Authorization"] == f"Bearer {browser.access_token()}"


def test_a_name_outside_printable_ascii_is_encoded_the_same_way(
        stack: Stack, handled: list[str]) -> None:
    ctx = stack.ctx
    token = stack.loop.call(lambda: ctx.issuer.issue(
        "google:zoe", ctx.settings.audience, {"name": "Zoë\r\nX-Evil: 1", "idp": "google"}))
    by_handler, fast = _both(stack, "GET", {"Authorization": f"Bearer {token}"}, handled)
    _same_answer(by_handler, fast)
    assert fast.headers["X-Auth-Request-Preferred-Username"] == "Zo%C3%AB%0D%0AX-Evil: 1"
    assert "X-Evil" not in fast.headers


def test_a_forged_bearer_token_falls_back_to_the_access_cookie(
        stack: Stack, handled: list[str]) -> None:
    browser, headers = _signed_in(stack)
    token = browser.access_token()
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    answer = httpx.get(f"{stack.url}/auth",
                       headers={**headers, "Authorization": f"Bearer {forged}"})
    assert answer.status_code == 200
    assert handled == []


@pytest.mark.parametrize(("query", "status"), [("?mode=status", 200), ("?mode=redirect", 200),
                                               ("?mode=other", 400), ("?mode=status&mode=x", 400)])
def test_a_known_mode_is_answered_below_the_handler_any_other_by_it(
        stack: Stack, handled: list[str], query: str, status: int) -> None:
    _, headers = _signed_in(stack)
    answer = httpx.get(f"{stack.url}/auth{query}", headers=headers)
    assert answer.status_code == status
    assert handled == ([] if status == 200 else ["GET"])


def test_without_a_valid_token_the_handler_looks_up_the_session(
        stack: Stack, handled: list[str]) -> None:
    browser, _ = _signed_in(stack)
    session_only = {"Cookie": _cookie_header(browser, access=False), **ORIGINAL}
    assert httpx.get(f"{stack.url}/auth", headers=session_only).status_code == 200
    assert httpx.get(f"{stack.url}/auth", headers=ORIGINAL).status_code == 401
    assert handled == ["GET", "GET"]


def test_a_token_of_another_audience_goes_to_the_handler(stack: Stack,
                                                         handled: list[str]) -> None:
    ctx = stack.ctx
    token = stack.loop.call(lambda: ctx.issuer.issue(
        "google:1", "https://api.other.example", {"idp": "google"}))
    answer = httpx.get(f"{stack.url}/auth", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert handled == ["GET"]


def test_C5_a_user_the_policy_no_longer_admits_gets_the_handlers_403(
        make_stack: Callable[..., Stack], handled: list[str]) -> None:
    stack = make_stack()
    _, headers = _signed_in(stack)
    from gateway.access import AccessPolicy
    stack.ctx.access = AccessPolicy(email_domains=frozenset({"elsewhere.example"}))
    answer = httpx.get(f"{stack.url}/auth", headers=headers)
    assert answer.status_code == 403
    assert handled == ["GET"]


def test_T6_with_revocation_checked_the_store_is_asked_once_a_second(
        make_stack: Callable[..., Stack], handled: list[str]) -> None:
    """The first request asks the store (the handler); the next within the second are
    answered from what it said (Grants.recently_not_revoked), the same answer; then again."""
    stack = make_stack(tokens={"verify_checks_revocation": True})
    _, headers = _signed_in(stack)
    by_handler = httpx.get(f"{stack.url}/auth", headers=headers)
    assert handled == ["GET"]
    _same_answer(by_handler, httpx.get(f"{stack.url}/auth", headers=headers))
    assert handled == ["GET"]
    grants = stack.ctx.grants
    real_clock = grants._clock
    grants._clock = lambda: real_clock() + NOT_REVOKED_SECONDS
    try:
        assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 200
    finally:
        grants._clock = real_clock
    assert handled == ["GET", "GET"]


def test_other_methods_and_bodies_go_to_the_handler(stack: Stack, handled: list[str]) -> None:
    _, headers = _signed_in(stack)
    assert httpx.post(f"{stack.url}/auth", headers=headers).status_code == 405
    assert httpx.request("GET", f"{stack.url}/auth", content=b"x",
                         headers={**headers, "Content-Type": "text/plain"}).status_code == 200
    assert handled == ["POST", "GET"]


def test_the_fast_answer_counts_in_metrics_and_keeps_a_sane_request_id(
        stack: Stack, handled: list[str]) -> None:
    _, headers = _signed_in(stack)
    kept = httpx.get(f"{stack.url}/auth", headers={**headers, "X-Request-ID": "lb-1.a"})
    replaced = httpx.get(f"{stack.url}/auth", headers={**headers, "X-Request-ID": "a b<x>"})
    assert handled == []
    assert kept.headers["X-Request-ID"] == "lb-1.a"
    assert len(replaced.headers["X-Request-ID"]) == 32
    text = stack.loop.call(lambda: stack.ctx.metrics.exposition().decode())
    assert 'method="GET",route="/auth",status="200"} 2.0' in text


def test_H2_hsts_on_the_fast_answer_of_an_https_issuer(make_stack: Callable[..., Stack],
                                                       handled: list[str]) -> None:
    stack = make_stack(issuer="https://login.example.test",
                       proxy={"trusted": ["127.0.0.1/32"]})
    base = f"http://127.0.0.1:{stack.dev.gateway_sockets[0].getsockname()[1]}"
    ctx = stack.ctx
    token = stack.loop.call(lambda: ctx.issuer.issue("google:ada", ctx.settings.audience, {}))
    fast = httpx.get(f"{base}/auth", headers={"Authorization": f"Bearer {token}"})
    plain = httpx.get(f"{base}/auth", headers={"Authorization": f"Bearer {token}",
                                               "X-Forwarded-Proto": "http"})
    assert handled == []
    assert fast.status_code == plain.status_code == 200
    assert fast.headers["Strict-Transport-Security"] == HSTS
    assert "Strict-Transport-Security" not in plain.headers  # RFC 6797 7.2, trusted proxy


def test_an_unexpected_error_is_the_handlers_clean_500(stack: Stack, handled: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _, headers = _signed_in(stack)

    def broken(token: str) -> dict[str, Any]:
        raise TypeError("a bug")
    monkeypatch.setattr(stack.ctx.verifier, "verify", broken)
    answer = httpx.get(f"{stack.url}/auth", headers=headers)
    assert answer.status_code == 500
    assert answer.json()["error"] == "server_error"
    assert "Traceback" not in answer.text
    assert handled == ["GET"]


# Only the session cookie: the first request looks the session up in the store (the handler),
# the next ones within a second are answered from this replica's memory (Sessions.recent).


def _session_only(browser: Any) -> dict[str, str]:
    return {"Cookie": _cookie_header(browser, access=False), **ORIGINAL}


def test_a_session_found_live_a_moment_ago_is_answered_below_the_handler(
        stack: Stack, handled: list[str]) -> None:
    browser, _ = _signed_in(stack)
    headers = _session_only(browser)
    by_handler = httpx.get(f"{stack.url}/auth", headers=headers)  # looked up in the store
    assert handled == ["GET"]
    fast = httpx.get(f"{stack.url}/auth", headers=headers)
    assert handled == ["GET"], "the recent session went to the handler"
    _same_answer(by_handler, fast)
    assert fast.headers["X-Auth-Request-User"].startswith("google:")


def test_T3_a_session_ended_elsewhere_is_refused_here_within_a_second(
        stack: Stack, handled: list[str]) -> None:
    """Another replica ends the session (in the shared store, not through this process): this
    one answers from memory for at most Sessions' RECENT_SECONDS, then asks the store."""
    browser, _ = _signed_in(stack)
    headers = _session_only(browser)
    assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 200
    ctx = stack.ctx
    secrets, _ = versioned_secrets(ctx.settings.cookies)
    session_id = ctx.cookies.session_id_from(dict(browser.cookies.items()), secrets)
    assert session_id
    elsewhere = Sessions(ctx.store, lifetime=3600, idle_timeout=3600)
    assert stack.loop.run(elsewhere.end(session_id)) is not None
    assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 200  # < 1 s: memory
    real_clock = ctx.sessions._clock
    ctx.sessions._clock = lambda: real_clock() + RECENT_SECONDS
    try:
        assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 401
    finally:
        ctx.sessions._clock = real_clock
    assert handled == ["GET", "GET"]


def test_P7_a_sign_out_here_is_refused_at_once(stack: Stack, handled: list[str]) -> None:
    browser, _ = _signed_in(stack)
    headers = _session_only(browser)
    assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 200
    assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 200
    home = browser.get(f"{stack.url}/")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None
    assert browser.post(f"{stack.url}/logout", data={"_xsrf": xsrf.group(1)}).status_code == 303
    assert httpx.get(f"{stack.url}/auth", headers=headers).status_code == 401
    assert handled == ["GET", "GET"]


def test_pass_token_with_a_session_only_goes_to_the_handler(
        make_stack: Callable[..., Stack], handled: list[str]) -> None:
    stack = make_stack(forward_auth={"pass_token": True})
    browser, _ = _signed_in(stack)
    headers = _session_only(browser)
    for _ in range(2):
        answer = httpx.get(f"{stack.url}/auth", headers=headers)
        assert answer.headers["Authorization"].startswith("Bearer ")  # a token minted each time
    assert handled == ["GET", "GET"]
