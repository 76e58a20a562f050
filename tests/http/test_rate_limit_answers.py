"""Rate limits per client address on the login, token and verify route groups (SECURITY H5):
429 with `Retry-After`, counters in the store (shared by replicas with Redis), /verify counted
in process and never broken by a store outage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Stack
from ratelimit_support import check, limiter, run
from store_backends import REDIS_URL, delete_prefix, require_redis, unique_prefix

from gateway.errors import RateLimited
from gateway.store.redis import RedisStore


def test_H5_counters_in_redis_are_shared_by_replicas() -> None:
    require_redis()
    prefix = unique_prefix()

    async def scenario() -> None:
        stores = [RedisStore(REDIS_URL, key_prefix=prefix) for _ in range(2)]
        replicas = [limiter(store, requests=4) for store in stores]
        try:
            for replica in replicas * 2:  # 4 requests, spread over two replicas
                await check(replica, "login", "203.0.113.1")
            with pytest.raises(RateLimited):
                await check(replicas[0], "login", "203.0.113.1")
            with pytest.raises(RateLimited):
                await check(replicas[1], "login", "203.0.113.1")
        finally:
            for store in stores:
                await store.close()

    try:
        run(scenario())
    finally:
        delete_prefix(prefix)


# ---------------------------------------------------------------------------------------------
# Over HTTP


def limited(make_stack: Callable[..., Stack], **limits: Any) -> Stack:
    return make_stack(rate_limits={"enforce_in_dev_mode": True, **limits})


def test_H5_login_over_the_limit_is_a_429_page_with_retry_after(
        make_stack: Callable[..., Stack]) -> None:
    stack = limited(make_stack, login_requests=2)
    for _ in range(2):
        assert httpx.get(f"{stack.url}/login/google").status_code == 302
    refused = httpx.get(f"{stack.url}/login/google", headers={"Accept": "text/html"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["Content-Type"].startswith("text/html")
    assert "Too many requests" in refused.text
    assert refused.headers["Cache-Control"] == "no-store"


def test_H5_login_over_the_limit_is_json_when_asked(make_stack: Callable[..., Stack]) -> None:
    stack = limited(make_stack, login_requests=1)
    httpx.get(f"{stack.url}/login")
    refused = httpx.get(f"{stack.url}/login", headers={"Accept": "application/json"})
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert "Retry-After" in refused.headers


def test_H5_token_endpoint_over_the_limit_is_a_json_429(make_stack: Callable[..., Stack]) -> None:
    stack = limited(make_stack, token_requests=2)
    for _ in range(2):
        assert httpx.post(f"{stack.url}/token", data={}).status_code != 429
    refused = httpx.post(f"{stack.url}/token", data={})
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_H5_verify_over_the_limit_is_a_json_429(make_stack: Callable[..., Stack]) -> None:
    stack = limited(make_stack, verify_requests=3)
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        assert httpx.get(f"{stack.url}/verify", headers=auth).status_code == 200
    refused = httpx.get(f"{stack.url}/verify", headers=auth)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert "Retry-After" in refused.headers


def test_H5_routes_outside_the_groups_are_not_limited(make_stack: Callable[..., Stack]) -> None:
    stack = limited(make_stack, login_requests=1, token_requests=1, verify_requests=1)
    for _ in range(5):
        assert httpx.get(f"{stack.url}/.well-known/jwks.json").status_code == 200
        assert httpx.get(f"{stack.url}/healthz").status_code == 200


def test_H5_development_mode_has_no_limits_unless_asked(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(rate_limits={"login_requests": 1})
    for _ in range(5):
        assert httpx.get(f"{stack.url}/login").status_code == 200
