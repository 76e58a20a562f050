"""SECURITY H10: pending logins and saved /authorize requests are capped per client address
(an IPv6 client is its /64); past its cap a client gets its own 429, while every other address
goes on signing in. The total bound stays, far above, and only it is everyone's 503."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Browser, Stack
from metrics_support import sample
from oidc_support import CLIENTS, authorization_params, authorize_url
from store_backends import REDIS_URL, delete_prefix, require_redis, unique_prefix

from gateway.pending import TOO_MANY_PENDING

TRUSTED = ["127.0.0.1/32"]  # the tests are the proxy: their X-Forwarded-For is believed
JSON = {"Accept": "application/json"}


def xff(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The `[store]` settings of each backend (Redis under a prefix of its own)."""
    if request.param == "memory":
        yield {"url": "memory://"}
    elif request.param == "sqlite":
        yield {"url": f"sqlite://{tmp_path}/gateway.db"}
    else:
        require_redis()
        prefix = unique_prefix()
        try:
            yield {"url": REDIS_URL, "key_prefix": prefix}
        finally:
            delete_prefix(prefix)


@pytest.fixture
def capped(make_stack: Callable[..., Stack]) -> Iterator[Callable[..., Stack]]:
    """make_stack behind a trusted proxy, limits enforced in development mode, with a
    per-client cap; its stores are closed at the end."""
    stacks: list[Stack] = []

    def start(per_client: int, total: int = 500_000, **overrides: Any) -> Stack:
        stack = make_stack(proxy={"trusted": TRUSTED},
                           rate_limits={"enforce_in_dev_mode": True},
                           login={"max_pending_per_client": per_client,
                                  "max_pending_transactions": total}, **overrides)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.loop.run(stack.ctx.store.close())


def start_login(stack: Stack, address: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/login/google", headers=xff(address, **headers))


def browser_at(stack: Stack, address: str) -> Browser:
    """A browser whose requests reach the gateway through the proxy from `address`."""
    browser = stack.browser()
    browser.http = httpx.Client(timeout=15, headers=xff(address))
    return browser


def test_H10_an_address_past_its_cap_gets_a_429_while_another_still_logs_in(
        capped: Callable[..., Stack], store: dict[str, str]) -> None:
    stack = capped(per_client=3, store=store)
    for _ in range(3):
        assert start_login(stack, "203.0.113.1").status_code == 302
    page = start_login(stack, "203.0.113.1", Accept="text/html")
    assert page.status_code == 429
    assert 1 <= int(page.headers["Retry-After"]) <= stack.dev.settings.login.transaction_lifetime
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Too many sign-ins were started from your network" in page.text
    api = start_login(stack, "203.0.113.1", **JSON)
    assert api.status_code == 429 and "Retry-After" in api.headers
    assert api.json() == {"error": "rate_limited", "error_description": TOO_MANY_PENDING}

    done = browser_at(stack, "203.0.113.2").login()  # another address signs in, all the way
    assert done.status_code == 302, done.text
    assert done.headers["location"] == f"{stack.url}/"
    assert start_login(stack, "203.0.113.1").status_code == 429  # still that address's own


def test_H10_refusals_are_counted_and_logged_like_other_refusals(
        capped: Callable[..., Stack], caplog: pytest.LogCaptureFixture) -> None:
    stack = capped(per_client=1)
    assert start_login(stack, "203.0.113.7").status_code == 302
    with caplog.at_level("WARNING", logger="gateway.http"):
        assert start_login(stack, "203.0.113.7").status_code == 429
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.http"]
    assert any("status=429" in line and "pending login cap" in line for line in lines), lines

    async def exposition() -> str:  # on the loop: after the answer's access-log line
        return stack.ctx.metrics.exposition().decode()

    metrics = stack.loop.run(exposition())
    assert sample(metrics, "gateway_http_requests_total", route="/login/google", method="GET",
                  status="429") == 1


def test_H10_an_ipv6_client_is_capped_as_its_whole_64(capped: Callable[..., Stack]) -> None:
    stack = capped(per_client=2)
    assert start_login(stack, "2001:db8:a:b::1").status_code == 302
    assert start_login(stack, "2001:db8:a:b::2").status_code == 302
    assert start_login(stack, "2001:db8:a:b:ffff:1:2:3").status_code == 429  # the same /64
    assert start_login(stack, "2001:db8:a:c::1").status_code == 302  # the next /64


def test_H10_saved_authorization_requests_are_capped_per_address(
        capped: Callable[..., Stack], store: dict[str, str]) -> None:
    stack = capped(per_client=2, clients=CLIENTS, store=store)
    url = authorize_url(stack, **authorization_params())

    def authorize(address: str, **headers: str) -> httpx.Response:
        return httpx.get(url, headers=xff(address, **headers))

    for _ in range(2):
        saved = authorize("198.51.100.1")
        assert saved.status_code == 302
        assert "/login" in saved.headers["location"]
    refused = authorize("198.51.100.1", **JSON)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited" and "Retry-After" in refused.headers
    assert authorize("198.51.100.2").status_code == 302  # another address
    # Counted apart from logins: the address can still finish the logins it needs.
    assert start_login(stack, "198.51.100.1").status_code == 302


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_H10_the_total_bound_is_a_503_only_once_it_is_reached(
        capped: Callable[..., Stack], backend: str, tmp_path: Path) -> None:
    if backend == "redis":
        require_redis()
        prefix = unique_prefix()
        store = {"url": REDIS_URL, "key_prefix": prefix}
    else:
        store = {"url": f"sqlite://{tmp_path}/gateway.db"}
    try:
        stack = capped(per_client=2, total=5, store=store)
        statuses = [start_login(stack, address).status_code
                    for address in ["192.0.2.1"] * 3 + ["192.0.2.2"] * 2 + ["192.0.2.3"] * 2]
        # 2 logins, then that address's 429 (not a 503); 2 more; the fifth fills the store.
        assert statuses == [302, 302, 429, 302, 302, 302, 503]
        assert start_login(stack, "192.0.2.4", **JSON).json()["error"] == \
            "temporarily_unavailable"
    finally:
        if backend == "redis":
            delete_prefix(prefix)


def test_H10_development_mode_has_no_caps_unless_limits_are_enforced(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(login={"max_pending_per_client": 1})
    assert [httpx.get(f"{stack.url}/login/google").status_code for _ in range(3)] == [302] * 3
