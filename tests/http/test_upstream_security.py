"""How the gateway treats its providers (SECURITY C2, C6): upstream tokens stay server-side,
no redirects are followed, JWKS are fetched from configuration only, cached and refreshed at most
once per cooldown, without queueing behind Tornado's default of 10 concurrent requests."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import Stack

from gateway.dev.standins.google import Fault
from gateway.errors import UpstreamError
from gateway.upstream.client import Upstream, make_http_client
from gateway.upstream.provider_keys import UpstreamKeys


def test_C2_the_upstream_access_token_never_reaches_the_browser_or_a_log(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser = stack.browser()
    done = browser.login()
    home = browser.get(f"{stack.url}/")
    verified = browser.get(f"{stack.url}/verify")
    upstream_tokens = list(stack.google._access_tokens)
    assert upstream_tokens, "the stand-in issued no access token"
    seen_by_browser = "\n".join([*browser.set_cookie_headers, done.text, home.text,
                                 verified.text, *done.headers.values()])
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith(("gateway", "tornado")))
    for token in upstream_tokens:
        assert token not in seen_by_browser
        assert token not in logged
        assert token[5:20] not in logged


def test_C6_a_redirect_from_the_token_endpoint_is_not_followed(make_stack) -> None:
    stack = make_stack()
    stack.google.faults["token"] = Fault(status=302, body="")
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    answer = browser.get(back.headers["location"])
    assert answer.status_code == 502
    assert "refused the request" in answer.text


def test_C6_provider_keys_are_cached_between_logins(stack: Stack) -> None:
    for user in ("ada", "grace", "alan"):
        assert stack.browser().login(user=user).status_code == 302
    assert stack.google.calls["jwks"] == 1


def test_C6_a_rotated_provider_key_is_fetched_once_and_logins_go_on(make_stack) -> None:
    stack = make_stack(upstream={"jwks_refresh_cooldown": 0})
    assert stack.browser().login().status_code == 302
    stack.google.rotate_signing_key()
    assert stack.browser().login().status_code == 302
    assert stack.browser().login(user="grace").status_code == 302
    assert stack.google.calls["jwks"] == 2


def _upstream(stack: Stack) -> Upstream:
    """A client of the stack's loop (libcurl's sockets are watched by the loop it is made in)."""
    settings = stack.dev.settings.upstream
    return Upstream(stack.loop.call(lambda: make_http_client(settings)), settings)


def _keys(stack: Stack, now: list[float]) -> UpstreamKeys:
    upstream = _upstream(stack)
    return UpstreamKeys(upstream, provider="google", jwks_url=stack.google.jwks_url,
                        cache_seconds=3600, refresh_cooldown=60, clock=lambda: now[0])


def test_C6_an_unknown_kid_refreshes_at_most_once_per_cooldown(stack: Stack) -> None:
    now = [1000.0]
    keys = _keys(stack, now)

    async def scenario() -> None:
        await keys.key_for(stack.google.kid)
        for _ in range(5):
            with pytest.raises(UpstreamError):
                await keys.key_for("attacker-chosen-kid")
        now[0] += 61
        with pytest.raises(UpstreamError):
            await keys.key_for("attacker-chosen-kid")

    stack.loop.run(scenario())
    assert stack.google.calls["jwks"] == 2  # the first fetch, one refresh after the cooldown


def test_C6_concurrent_callbacks_share_one_jwks_fetch(stack: Stack) -> None:
    keys = _keys(stack, [0.0])

    async def scenario() -> None:
        await asyncio.gather(*(keys.key_for(stack.google.kid) for _ in range(50)))

    stack.loop.run(scenario())
    assert stack.google.calls["jwks"] == 1


def test_C6_upstream_calls_are_not_queued_behind_tornados_default_of_ten(make_stack) -> None:
    """Google holds every userinfo call until 40 are in flight at once: with Tornado's default
    of ten connections the other thirty would wait in its queue and the count would stop at ten."""
    stack = make_stack()
    gate = asyncio.Event()
    stack.google.faults["userinfo"] = Fault(status=200, body='{"sub": "1"}', gate=gate)
    upstream = _upstream(stack)

    async def scenario() -> int:
        calls = asyncio.gather(*(upstream.fetch_json(upstream.request(stack.google.userinfo_url),
                                                     provider="google", what="userinfo")
                                 for _ in range(40)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5  # ten calls arrive at once; the count never grows after
        while stack.google.calls["userinfo"] < 40 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        in_flight_at_once = stack.google.calls["userinfo"]
        gate.set()
        await calls
        return in_flight_at_once

    assert stack.loop.run(scenario()) == 40
