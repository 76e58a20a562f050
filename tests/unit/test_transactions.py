"""Login transactions and the in-memory store: single use, expiry, browser and provider binding."""

from __future__ import annotations

import asyncio

import pytest

from gateway import transactions
from gateway.errors import LoginFailed
from gateway.store import StoreFull
from gateway.store.memory import MemoryStore


def _tx(provider: str = "google", browser_id: str = "browser-1"):
    return transactions.new_transaction(provider, browser_id, "https://app/", now=0.0)


def test_S6_state_started_at_one_provider_is_refused_at_another() -> None:
    tx = _tx(provider="google")
    with pytest.raises(LoginFailed) as refused:
        transactions.check_transaction(tx, provider="facebook", browser_id="browser-1")
    assert "another provider" in refused.value.description


def test_S1_transaction_of_another_browser_is_refused() -> None:
    with pytest.raises(LoginFailed):
        transactions.check_transaction(_tx(), provider="google", browser_id="browser-2")
    with pytest.raises(LoginFailed):
        transactions.check_transaction(_tx(), provider="google", browser_id=None)


def test_S1_missing_transaction_is_refused() -> None:
    with pytest.raises(LoginFailed):
        transactions.check_transaction(None, provider="google", browser_id="browser-1")


def test_S1_state_has_at_least_128_bits_and_is_unique() -> None:
    states = {transactions.new_state() for _ in range(1000)}
    assert len(states) == 1000
    assert all(len(s) >= 22 for s in states)


def test_S2_pkce_challenge_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    expected = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert transactions.pkce_s256_challenge(verifier) == expected


def test_S2_verifier_length_is_within_rfc7636_bounds() -> None:
    assert 43 <= len(_tx().code_verifier) <= 128


def test_store_take_is_single_use_and_respects_expiry() -> None:
    now = [100.0]
    store = MemoryStore(clock=lambda: now[0])

    async def scenario() -> None:
        await store.put("ns", "k", {"v": 1}, ttl=10)
        assert await store.take("ns", "k") == {"v": 1}
        assert await store.take("ns", "k") is None
        await store.put("ns", "k2", {"v": 2}, ttl=10)
        now[0] += 11
        assert await store.get("ns", "k2") is None
        assert await store.take("ns", "k2") is None

    asyncio.run(scenario())


def test_store_is_bounded_against_floods_of_unfinished_logins() -> None:
    now = [0.0]
    store = MemoryStore(max_entries=3, clock=lambda: now[0])

    async def scenario() -> None:
        for i in range(3):
            await store.put("ns", str(i), {}, ttl=5)
        with pytest.raises(StoreFull):
            await store.put("ns", "overflow", {}, ttl=5)
        now[0] += 6  # the earlier entries expire and make room
        await store.put("ns", "overflow", {}, ttl=5)
        assert len(store) == 1

    asyncio.run(scenario())
