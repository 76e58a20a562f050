"""The gateway's own sessions (SECURITY P2, P4): rotated at login, idle and absolute timeouts."""

from __future__ import annotations

import asyncio

import pytest
from race_support import racing_a_read

from gateway import sessions as sessions_module
from gateway.identity import Identity
from gateway.session_list import session_rows
from gateway.sessions import RECENT_SECONDS, TOUCH_INTERVAL, Sessions
from gateway.store.memory import MemoryStore

ADA = Identity("google", "1", name="Ada Lovelace")


def _sessions(now: list[float]) -> Sessions:
    store = MemoryStore(clock=lambda: now[0])
    return Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])


def test_P4_a_session_unused_past_the_idle_timeout_ends() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id, _ = await sessions.start(ADA)
        now[0] += 599
        assert await sessions.lookup(session_id) is not None
        now[0] += 601
        assert await sessions.lookup(session_id) is None

    asyncio.run(scenario())


def test_P4_a_session_in_use_still_ends_at_its_absolute_lifetime() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id, _ = await sessions.start(ADA)
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
        old, _ = await sessions.start(ADA)
        new, _ = await sessions.start(ADA, replacing=old)
        assert new != old
        assert await sessions.lookup(old) is None
        assert await sessions.lookup(new) is not None

    asyncio.run(scenario())


def test_P6_the_stored_session_holds_no_upstream_token() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    sessions = Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])
    session_id, _ = asyncio.run(sessions.start(ADA))
    assert session_id not in str(store._entries)  # stored under a hash of the id
    assert "token" not in str(store._entries)


def test_P8_every_login_gets_a_new_sid_and_keeps_the_earlier_ones_of_its_user() -> None:
    now = [0.0]
    sessions = _sessions(now)
    grace = Identity("google", "2", name="Grace Hopper")

    async def scenario() -> None:
        old, first = await sessions.start(ADA)
        new, second = await sessions.start(ADA, replacing=old)
        assert second.sid != first.sid
        assert second.all_sids == (second.sid, first.sid)
        _, other_user = await sessions.start(grace, replacing=new)
        assert other_user.all_sids == (other_user.sid,)  # another user inherits nothing

    asyncio.run(scenario())


def test_P8_a_session_is_ended_by_any_of_its_sids_and_then_is_gone_for_everyone() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        old, first = await sessions.start(ADA)
        current, second = await sessions.start(ADA, replacing=old)
        ended = await sessions.end_sid(first.sid)  # the sid of an earlier ID token
        assert ended is not None and ended.sid == second.sid
        assert await sessions.lookup(current) is None
        assert await sessions.end_sid(second.sid) is None  # nothing left to end
        assert await sessions.end_sid("no-such-sid") is None

    asyncio.run(scenario())


def test_P8_ending_a_session_by_its_cookie_removes_its_sid_index_too() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    sessions = Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])

    async def scenario() -> None:
        session_id, session = await sessions.start(ADA)
        assert await sessions.end(session_id) == session
        assert await sessions.end_sid(session.sid) is None
        assert not store._entries and not store._sets  # nothing of it is left behind

    asyncio.run(scenario())


def test_P8_a_users_sessions_are_listed_and_ended_one_by_one() -> None:
    now = [0.0]
    sessions = _sessions(now)
    grace = Identity("google", "2", name="Grace Hopper")

    async def scenario() -> None:
        laptop, _ = await sessions.start(ADA)
        now[0] += 10
        phone, _ = await sessions.start(ADA)
        await sessions.start(grace)
        listed = await sessions.of_sub(ADA.sub)
        assert [s.created for _, s in listed] == [0.0, 10.0]  # oldest first, Grace's apart
        handle, _ = listed[0]
        assert handle != laptop  # a handle is not the cookie value
        ended = await sessions.end_by_handle(handle)
        assert ended is not None and ended.created == 0.0
        assert await sessions.lookup(laptop) is None
        assert await sessions.lookup(phone) is not None
        assert [s.created for _, s in await sessions.of_sub(ADA.sub)] == [10.0]
        now[0] += 601  # idle past the timeout: no longer listed
        assert await sessions.of_sub(ADA.sub) == []

    asyncio.run(scenario())



def test_P8_a_session_keeps_its_device_and_address_and_is_found_by_sid() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id, started = await sessions.start(ADA, device="Firefox on Linux",
                                                   address="203.0.113.7")
        found = await sessions.by_sid(started.sid)
        assert found is not None
        handle, session = found
        assert handle == sessions.handle(session_id)
        assert (session.device, session.address) == ("Firefox on Linux", "203.0.113.7")
        assert await sessions.lookup(session_id) is not None  # finding ends nothing
        await sessions.end(session_id)
        assert await sessions.by_sid(started.sid) is None

    asyncio.run(scenario())


def test_P8_the_list_shows_this_device_first_then_the_most_recently_used() -> None:
    now = [1_767_225_600.0]  # 2026-01-01 00:00 UTC
    sessions = _sessions(now)

    async def scenario() -> None:
        first, _ = await sessions.start(ADA, device="Chrome on Windows", address="192.0.2.1")
        now[0] += 120
        second, _ = await sessions.start(ADA, device="Safari on iPhone")
        now[0] += 120
        third, _ = await sessions.start(ADA, device="Firefox on Linux")
        now[0] += 120
        await sessions.lookup(first)  # used again: most recent of the others
        rows = session_rows(await sessions.of_sub(ADA.sub),
                            current_handle=sessions.handle(third),
                            provider_names={"google": "Google"})
        assert [row.device for row in rows] == [
            "Firefox on Linux", "Chrome on Windows", "Safari on iPhone"]
        assert [row.current for row in rows] == [True, False, False]
        assert rows[1].provider == "Google" and rows[1].address == "192.0.2.1"
        assert rows[1].signed_in == "2026-01-01 00:00 UTC"
        assert rows[1].last_active_iso == "2026-01-01T00:06:00Z"
        assert rows[2].address == "unknown"
        assert second  # started, listed by its device

    asyncio.run(scenario())


# `recent`: what /auth answers without the store, for a second at most (SECURITY T3).


def test_T3_a_session_found_live_is_recent_for_under_a_second_then_asked_again() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id, _ = await sessions.start(ADA)
        assert sessions.recent(session_id) is None  # never looked up here yet
        assert await sessions.lookup(session_id) is not None
        now[0] += RECENT_SECONDS - 0.01
        recent = sessions.recent(session_id)
        assert recent is not None and recent.sub == ADA.sub
        now[0] += 0.01
        assert sessions.recent(session_id) is None  # a second on: the store is asked again
        assert sessions.recent("another cookie value") is None

    asyncio.run(scenario())


def test_T3_a_session_ended_on_another_replica_is_recent_here_for_a_second_at_most() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    here = Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])
    there = Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])

    async def scenario() -> None:
        session_id, _ = await here.start(ADA)
        assert await here.lookup(session_id) is not None
        assert await there.end(session_id) is not None
        assert here.recent(session_id) is not None  # not told: the bound is the second
        now[0] += RECENT_SECONDS
        assert here.recent(session_id) is None
        assert await here.lookup(session_id) is None

    asyncio.run(scenario())


def test_T3_a_session_ended_here_is_never_recent_again() -> None:
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        session_id, _ = await sessions.start(ADA)
        other_id, _ = await sessions.start(Identity("google", "2"))
        for each in (session_id, other_id):
            assert await sessions.lookup(each) is not None
        await sessions.end(session_id)
        assert sessions.recent(session_id) is None
        await sessions.end_sid(await _sid_of(sessions, other_id))
        assert sessions.recent(other_id) is None

    async def _sid_of(sessions: Sessions, session_id: str) -> str:
        found = await sessions.lookup(session_id)
        assert found is not None
        return found.sid

    asyncio.run(scenario())


def test_T3_a_lookup_racing_a_sign_out_is_not_remembered() -> None:
    """The store answered "live", then this replica ended the session before the lookup went
    on: what the lookup read is stale and must not be answered for the next second."""
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    sessions = Sessions(store, lifetime=3600, idle_timeout=600, clock=lambda: now[0])

    async def scenario() -> None:
        session_id, _ = await sessions.start(ADA)
        found = await racing_a_read(store, sessions.lookup(session_id),
                                    lambda: sessions.end(session_id))
        assert found is not None  # it read the session before the end
        assert sessions.recent(session_id) is None

    asyncio.run(scenario())


def test_recent_sessions_are_bounded_and_a_touch_due_goes_to_the_store(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "RECENT_ENTRIES", 3)
    now = [0.0]
    sessions = _sessions(now)

    async def scenario() -> None:
        ids = [(await sessions.start(Identity("google", str(n))))[0] for n in range(4)]
        for each in ids:
            assert await sessions.lookup(each) is not None
        assert sessions.recent(ids[0]) is None  # the least recently used went first
        assert all(sessions.recent(each) is not None for each in ids[1:])
        now[0] += TOUCH_INTERVAL + 1  # due for a touch: a write only lookup makes
        assert await sessions.lookup(ids[1]) is not None
        assert sessions.recent(ids[1]) is None  # touched, not remembered (saved meanwhile)
        assert await sessions.lookup(ids[1]) is not None
        assert sessions.recent(ids[1]) is not None

    asyncio.run(scenario())
