"""SECURITY H5: the rate limiter's rule (gateway/ratelimits.py): route groups, fixed windows, per
client (an IPv6 client is its /64), counted in process or in the store, failing open only where
that is safe."""

from __future__ import annotations

import pytest
from ratelimit_support import START, WINDOW, BrokenStore, Clock, check, count, limiter, run

from gateway.errors import RateLimited
from gateway.ratelimits import client_key, route_group
from gateway.store import StoreFull, StoreUnavailable


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
