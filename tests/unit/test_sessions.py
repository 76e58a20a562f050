"""The gateway's own sessions (SECURITY P2, P4): rotated at login, idle and absolute timeouts."""

from __future__ import annotations

import asyncio

from gateway.identity import Identity
from gateway.sessions import Sessions
from gateway.store.memory import MemoryStore

ADA = Identity("google", "1", name="Ada Lovelace")


def _sessions(now: list[float]) -> Sessions:
    store = MemoryStore(clock=lambda: now[0])
    return Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])


def test_P4_a_session_unused_past_the_idle_timeout_ends() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id = await sessions.start(ADA)
        now[0] += 599
        assert await sessions.lookup(session_id) is not None
        now[0] += 601
        assert await sessions.lookup(session_id) is None

    asyncio.run(scenario())


def test_P4_a_session_in_use_still_ends_at_its_absolute_lifetime() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id = await sessions.start(ADA)
        for _ in range(11):
            now[0] += 300  # used every five minutes, up to 3300 s: never idle
            assert await sessions.lookup(session_id) is not None
        now[0] = 3601  # 301 s after the last use: not idle, but past the absolute lifetime
        assert await sessions.lookup(session_id) is None

    asyncio.run(scenario())


def test_P2_a_new_login_replaces_the_old_session() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        old = await sessions.start(ADA)
        new = await sessions.start(ADA, replacing=old)
        assert new != old
        assert await sessions.lookup(old) is None
        assert await sessions.lookup(new) is not None

    asyncio.run(scenario())


def test_P6_the_stored_session_holds_no_upstream_token() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    sessions = Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])
    session_id = asyncio.run(sessions.start(ADA))
    assert session_id not in str(store._entries)  # stored under a hash of the id
    assert "token" not in str(store._entries)
