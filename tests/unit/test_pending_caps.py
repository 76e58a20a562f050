"""SECURITY H10 without sockets: the per-client count of started logins and saved /authorize
requests, its windows and `Retry-After`, and the settings that size it."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_support import assert_refused, write_config
from ratelimit_support import START, Clock, run

from gateway.config import load_settings
from gateway.errors import RateLimited, StoreFull
from gateway.pending import AUTHORIZATION_REQUESTS, LOGINS, PendingCaps
from gateway.store.memory import MemoryStore

LIFETIME = 600


def caps(per_client: int, clock: Clock, store: MemoryStore | None = None) -> PendingCaps:
    # Not `store or ...`: an empty MemoryStore is falsy (it has __len__).
    return PendingCaps(MemoryStore() if store is None else store, per_client=per_client,
                       lifetime=LIFETIME, clock=clock)


def admitted(cap: PendingCaps, kind: str, address: str) -> bool:
    try:
        run(cap.admit(kind, address))
    except RateLimited:
        return False
    return True


def test_H10_a_client_may_start_its_cap_and_the_next_is_refused() -> None:
    cap = caps(3, Clock())
    assert [admitted(cap, LOGINS, "203.0.113.1") for _ in range(4)] == [True] * 3 + [False]
    assert admitted(cap, LOGINS, "203.0.113.2")  # another client's count is its own


def test_H10_retry_after_is_the_time_left_until_a_new_window() -> None:
    clock = Clock(START + 100)
    cap = caps(1, clock)
    run(cap.admit(LOGINS, "203.0.113.1"))
    with pytest.raises(RateLimited) as refused:
        run(cap.admit(LOGINS, "203.0.113.1"))
    assert refused.value.retry_after == LIFETIME - 100
    assert refused.value.status == 429
    clock.now = START + LIFETIME  # a new window: what the client started is expiring
    assert admitted(cap, LOGINS, "203.0.113.1")


def test_H10_one_ipv6_client_is_its_whole_64() -> None:
    cap = caps(2, Clock())
    assert admitted(cap, LOGINS, "2001:db8:1:2::1")
    assert admitted(cap, LOGINS, "2001:db8:1:2:aaaa:bbbb:cccc:dddd")
    assert not admitted(cap, LOGINS, "2001:db8:1:2::ffff")
    assert admitted(cap, LOGINS, "2001:db8:1:3::1")


def test_H10_logins_and_authorization_requests_are_counted_apart() -> None:
    cap = caps(1, Clock())
    assert admitted(cap, AUTHORIZATION_REQUESTS, "198.51.100.1")
    assert not admitted(cap, AUTHORIZATION_REQUESTS, "198.51.100.1")
    assert admitted(cap, LOGINS, "198.51.100.1")


def test_H10_a_store_full_of_counters_leaves_the_bound_to_the_items_own_put() -> None:
    store = MemoryStore(max_entries=1)
    cap = caps(1, Clock(), store)
    run(cap.admit(LOGINS, "203.0.113.1"))  # the one entry the store holds
    run(cap.admit(LOGINS, "203.0.113.2"))  # not counted, not refused...
    with pytest.raises(StoreFull):  # ...and the transaction itself is bounded
        run(store.put("login-tx", "t", {}, LIFETIME))


def test_H10_the_defaults_keep_the_total_far_above_one_clients_cap(tmp_path: Path) -> None:
    login = load_settings(write_config(tmp_path), {}).login
    # Filling the total takes at least this many clients (addresses, or IPv6 /64s).
    assert login.max_pending_transactions // (2 * login.max_pending_per_client) >= 10_000


@pytest.mark.parametrize("changes", [
    {"login.max_pending_per_client": 0},
    {"login.max_pending_per_client": 11, "login.max_pending_transactions": 10},
])
def test_H10_a_per_client_cap_out_of_range_is_refused(
        tmp_path: Path, changes: dict[str, int]) -> None:
    assert_refused(tmp_path, changes, "login.max_pending_per_client")
