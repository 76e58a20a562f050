"""The gateway's own sessions: server-side records behind a random id in a signed cookie.

A new id at every login (no fixation, SECURITY P2); an idle and an absolute timeout (P4). The
cookie holds only the id: no personal data, no upstream token (P6).

Each session also has a public `sid` (the `sid` of our ID tokens and access tokens), new at
every login, and is found by it as well (P8): an RP-initiated logout names the session by the
`sid` of its `id_token_hint`, with or without the browser's cookie, and ends that very session.
A login that replaces a session of the same user carries the earlier `sid`s along, so that
ending the session, by either name, ends everything started under any of them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from gateway.identity import Identity
from gateway.store import Store

NAMESPACE = "session"
SID_INDEX = "session-sid"  # sid -> the hash the session is stored under
BY_SUB = "sessions-of"  # hash of sub -> the set of the hashes its sessions are stored under
TOUCH_INTERVAL = 60.0  # seconds; refreshing last_seen on every request would be a write each
MAX_EARLIER_SIDS = 8
# `recent`: a session found in the store is answered from this replica's memory for at most
# this long (SECURITY T3: an ending reaches every replica within a second), for this many
# sessions at most (each lives a second; the least recently used goes first).
RECENT_SECONDS = 1.0
RECENT_ENTRIES = 10_000


@dataclass(frozen=True)
class Session:
    sub: str
    idp: str
    claims: dict[str, Any]
    created: float
    last_seen: float
    # Public id of this sign-in (the `sid` of our tokens): the key that sign-out and logout use
    # to end it and revoke what was issued in it. New at every login.
    sid: str = ""
    # The sids of the sessions of the same user this one replaced, in this browser.
    earlier_sids: tuple[str, ...] = ()
    # What its user sees in the list of their sessions: the device as named by
    # devices.describe_device (never the raw User-Agent) and the address it signed in from.
    device: str = ""
    address: str = ""

    @property
    def all_sids(self) -> tuple[str, ...]:
        return (self.sid, *self.earlier_sids) if self.sid else self.earlier_sids


class Sessions:
    def __init__(self, store: Store, *, lifetime: int, idle_timeout: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._lifetime = lifetime
        self._idle_timeout = idle_timeout
        self._clock = clock
        # The hash a session is stored under -> (when the store last said it was live, it).
        self._recent: OrderedDict[str, tuple[float, Session]] = OrderedDict()
        self._changes = 0  # sessions saved or ended by this replica so far

    async def start(self, identity: Identity, *, replacing: str | None = None,
                    device: str = "", address: str = "") -> tuple[str, Session]:
        """A new session (its cookie value, and itself), replacing the browser's old one."""
        earlier: tuple[str, ...] = ()
        if replacing:
            old = await self._record(_key(replacing))
            if old is not None and old.sub == identity.sub:
                earlier = old.all_sids[:MAX_EARLIER_SIDS]
            await self.end(replacing)
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(identity.sub, identity.idp, identity.profile_claims(), now, now,
                          secrets.token_urlsafe(16), earlier, device=device, address=address)
        await self._save(_key(session_id), session)
        return session_id, session

    async def lookup(self, session_id: str) -> Session | None:
        key = _key(session_id)
        changes = self._changes
        session = await self._record(key)
        if session is None:
            return None
        now = self._clock()
        if not self._live(session, now):
            await self._end(key, session)
            return None
        if now - session.last_seen > TOUCH_INTERVAL:
            session = replace(session, last_seen=now)
            await self._save(key, session)
        elif changes == self._changes:
            # Nothing was saved or ended here while the store answered: what it said still
            # holds on this replica (a logout racing this lookup is never remembered over).
            self._remember(key, session, now)
        return session

    def recent(self, session_id: str) -> Session | None:
        """The session behind this cookie value if `lookup` found it live on this replica less
        than RECENT_SECONDS ago and it still is (not past its timeouts, not due for a touch),
        else None: then ask `lookup`. No store access, so no await: /auth asks it on every
        request of every app. A session ended here is forgotten at once; one ended on another
        replica is answered for RECENT_SECONDS at most (SECURITY T3)."""
        key = _key(session_id)
        found = self._recent.get(key)
        if found is None:
            return None
        seen_at, session = found
        now = self._clock()
        if not 0 <= now - seen_at < RECENT_SECONDS or not self._live(session, now) \
                or now - session.last_seen > TOUCH_INTERVAL:
            del self._recent[key]
            return None
        self._recent.move_to_end(key)
        return session

    def _live(self, session: Session, now: float) -> bool:
        return (now - session.created <= self._lifetime
                and now - session.last_seen <= self._idle_timeout)

    def _remember(self, key: str, session: Session, now: float) -> None:
        self._recent[key] = (now, session)
        self._recent.move_to_end(key)
        if len(self._recent) > RECENT_ENTRIES:
            self._recent.popitem(last=False)

    async def end(self, session_id: str) -> Session | None:
        """End the session of this cookie value; the session it was, if any."""
        key = _key(session_id)
        session = await self._record(key)
        await self._end(key, session)
        return session

    async def end_sid(self, sid: str) -> Session | None:
        """End the session that has (or had, before a new login replaced it) this `sid`,
        wherever its browser is: the session it was, if any (P8)."""
        index = await self._store.get(SID_INDEX, sid)
        if index is None:
            return None
        session = await self._record(index["key"])
        if session is None or sid not in session.all_sids:
            await self._store.delete(SID_INDEX, sid)
            return None
        await self._end(index["key"], session)
        return session

    async def by_sid(self, sid: str) -> tuple[str, Session] | None:
        """The live session that has (or had) this `sid`, with its handle; nothing is ended."""
        index = await self._store.get(SID_INDEX, sid)
        if index is None:
            return None
        session = await self._record(index["key"])
        if session is None or sid not in session.all_sids:
            return None
        return index["key"], session

    async def of_sub(self, sub: str) -> list[tuple[str, Session]]:
        """The live sessions of a user, each with the hash it is stored under (its handle for
        `end_by_handle`; never the cookie value), oldest first."""
        found = []
        for key in await self._store.members(BY_SUB, _key(sub)):
            session = await self._record(key)
            if session is None or session.sub != sub:
                await self._store.remove_member(BY_SUB, _key(sub), key)
                continue
            found.append((key, session))
        return sorted(found, key=lambda pair: pair[1].created)

    async def end_by_handle(self, handle: str) -> Session | None:
        """End the session stored under `handle` (from `of_sub`); the session it was."""
        session = await self._record(handle)
        await self._end(handle, session)
        return session

    @staticmethod
    def handle(session_id: str) -> str:
        """The handle (as `of_sub` gives it) of the session behind this cookie value."""
        return _key(session_id)

    async def _record(self, key: str) -> Session | None:
        record = await self._store.get(NAMESPACE, key)
        if record is None:
            return None
        record["earlier_sids"] = tuple(record.get("earlier_sids", ()))
        return Session(**record)

    async def _save(self, key: str, session: Session) -> None:
        self._changes += 1
        self._recent.pop(key, None)
        ttl = self._ttl(session)
        await self._store.put(NAMESPACE, key, _record(session), ttl)
        for sid in session.all_sids:
            await self._store.put(SID_INDEX, sid, {"key": key}, ttl)
        await self._store.add_member(BY_SUB, _key(session.sub), key, ttl)

    async def _end(self, key: str, session: Session | None) -> None:
        self._changes += 1
        self._recent.pop(key, None)
        await self._store.delete(NAMESPACE, key)
        if session is not None:
            for sid in session.all_sids:
                await self._store.delete(SID_INDEX, sid)
            await self._store.remove_member(BY_SUB, _key(session.sub), key)

    def _ttl(self, session: Session) -> float:
        remaining = session.created + self._lifetime - self._clock()
        return max(1.0, min(self._idle_timeout, remaining))


def _key(session_id: str) -> str:
    # Stored under a hash: a dump of the store holds no usable session cookie.
    return hashlib.sha256(session_id.encode()).hexdigest()


_SESSION_FIELDS = tuple(f.name for f in fields(Session))


def _record(session: Session) -> dict[str, Any]:
    """The session as stored: its fields, shallow (every store copies or serializes it; a
    deep `asdict` per login would copy the claims once more)."""
    return {name: getattr(session, name) for name in _SESSION_FIELDS}
