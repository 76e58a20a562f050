"""Rate limits per client address on the login, token and verify route groups (SECURITY H5):
429 with `Retry-After`, counters in the store (shared by replicas with Redis), /verify counted
in process and never broken by a store outage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Stack
from store_backends import REDIS_URL, delete_prefix, require_redis, unique_prefix

from gateway.errors import RateLimited
from gateway.ratelimits import Limit, RateLimiter, client_key, route_group
from gateway.store import StoreFull, StoreUnavailable
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore

WINDOW = 60
START = 1_800_000_000.0  # a window boundary: START % WINDOW == 0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class BrokenStore(MemoryStore):
    """A store whose counters fail the way a backend does."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.calls = 0

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        self.calls += 1
        raise self.error


def limiter(store: Any = None, requests: int = 3, clock: Clock | None = None,
            **kwargs: Any) -> RateLimiter:
    limits = {group: Limit(requests, WINDOW) for group in ("login", "token", "verify")}
    return RateLimiter(store if store is not None else MemoryStore(), limits,
                       clock=clock or Clock(), **kwargs)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def check(rl: RateLimiter, group: str, address: str) -> None:
    """One request, as the gateway counts it: decided now, or by the store's answer."""
    pending = rl.count(group, address)
    if pending is not None:
        await pending


async def count(rl: RateLimiter, group: str, address: str, times: int) -> None:
    for _ in range(times):
        await check(rl, group, address)


# ---------------------------------------------------------------------------------------------
# The policy: plain objects


@pytest.mark.parametrize(("path", "group"), [
    ("/login", "login"), ("/login/google", "login"), ("/authorize", "login"),
    ("/token", "token"), ("/revoke", "token"), ("/introspect", "token"),
    ("/verify", "verify"), ("/userinfo", "verify"),
    ("/", None), ("/healthz", None), ("/callback/google", None), ("/loginx", None),
    ("/.well-known/jwks.json", None),
])
def test_H5_route_groups(path: str, group: str | None) -> None:
    assert route_group(path) == group


def test_H5_requests_within_the_limit_pass_and_the_next_is_refused() -> None:
    clock = Clock(START + 15)
    rl = limiter(clock=clock)
    run(count(rl, "login", "203.0.113.1", 3))
    with pytest.raises(RateLimited) as refused:
        run(check(rl, "login", "203.0.113.1"))
    assert refused.value.status == 429
    assert refused.value.retry_after == WINDOW - 15  # the rest of the window


def test_H5_a_new_window_starts_a_new_count() -> None:
    clock = Clock()
    rl = limiter(clock=clock)
    run(count(rl, "token", "203.0.113.1", 3))
    clock.now += WINDOW
    run(count(rl, "token", "203.0.113.1", 3))


def test_H5_clients_and_groups_are_counted_apart() -> None:
    rl = limiter()
    run(count(rl, "login", "203.0.113.1", 3))
    run(count(rl, "login", "203.0.113.2", 3))
    run(count(rl, "token", "203.0.113.1", 3))


def test_H5_one_ipv6_client_is_its_whole_64() -> None:
    rl = limiter()
    run(count(rl, "login", "2001:db8:1:2::1", 2))
    with pytest.raises(RateLimited):
        run(count(rl, "login", "2001:db8:1:2:ffff::9", 2))
    assert client_key("::ffff:203.0.113.1") == "203.0.113.1"


def test_H5_zero_requests_means_no_limit() -> None:
    rl = limiter(requests=0)
    assert not rl.limits("login")
    run(count(rl, "login", "203.0.113.1", 50))


def test_H5_retry_after_is_at_least_one_second() -> None:
    rl = limiter(requests=1, clock=Clock(START + WINDOW - 0.2))
    run(check(rl, "verify", "203.0.113.1"))
    with pytest.raises(RateLimited) as refused:
        run(check(rl, "verify", "203.0.113.1"))
    assert refused.value.retry_after == 1


def test_H5_verify_is_counted_in_process_without_the_store() -> None:
    store = BrokenStore(StoreUnavailable("down"))
    rl = limiter(store)
    run(count(rl, "verify", "203.0.113.1", 3))
    with pytest.raises(RateLimited):
        run(check(rl, "verify", "203.0.113.1"))
    assert store.calls == 0  # the hot path never waits on the store


def test_H5_shared_verify_limit_fails_open_when_the_store_is_down() -> None:
    store = BrokenStore(StoreUnavailable("down"))
    rl = limiter(store, verify_shared=True)
    run(count(rl, "verify", "203.0.113.1", 10))  # /verify keeps working (stateless, issue 4)
    assert store.calls == 10


def test_H5_login_and_token_limits_need_the_store() -> None:
    rl = limiter(BrokenStore(StoreUnavailable("down")))
    for group in ("login", "token"):
        with pytest.raises(StoreUnavailable):  # the usual 503: these requests need it anyway
            run(check(rl, group, "203.0.113.1"))


def test_H5_a_store_full_of_counters_fails_open() -> None:
    rl = limiter(BrokenStore(StoreFull("ratelimit")))
    run(count(rl, "login", "203.0.113.1", 10))


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
