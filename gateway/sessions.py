"""The gateway's own sessions: server-side records behind a random id in a signed cookie.

A new id at every login (no fixation, SECURITY P2); an idle and an absolute timeout (P4). The
cookie holds only the id: no personal data, no upstream token (P6).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from gateway.identity import Identity
from gateway.store import Store

NAMESPACE = "session"
TOUCH_INTERVAL = 60.0  # seconds; refreshing last_seen on every request would be a write each


@dataclass(frozen=True)
class Session:
    sub: str
    idp: str
    claims: dict[str, Any]
    created: float
    last_seen: float
    # Public id of this browser's sign-in (the `sid` of ID tokens): the key that sign-out uses to
    # revoke the refresh-token families started in it. Kept when the same user signs in again.
    sid: str = ""


class Sessions:
    def __init__(self, store: Store, *, lifetime: int, idle_timeout: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._lifetime = lifetime
        self._idle_timeout = idle_timeout
        self._clock = clock

    async def start(self, identity: Identity, *, replacing: str | None = None) -> str:
        sid = ""
        if replacing:
            old = await self._store.get(NAMESPACE, _key(replacing))
            if old is not None and old.get("sub") == identity.sub:
                sid = old.get("sid") or ""
            await self.end(replacing)
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(identity.sub, identity.idp, identity.profile_claims(), now, now,
                          sid or secrets.token_urlsafe(16))
        await self._store.put(NAMESPACE, _key(session_id), asdict(session), self._ttl(session))
        return session_id

    async def lookup(self, session_id: str) -> Session | None:
        record = await self._store.get(NAMESPACE, _key(session_id))
        if record is None:
            return None
        session = Session(**record)
        now = self._clock()
        if now - session.created > self._lifetime or now - session.last_seen > self._idle_timeout:
            await self.end(session_id)
            return None
        if now - session.last_seen > TOUCH_INTERVAL:
            session = replace(session, last_seen=now)
            await self._store.put(NAMESPACE, _key(session_id), asdict(session),
                                  self._ttl(session))
        return session

    async def end(self, session_id: str) -> None:
        await self._store.delete(NAMESPACE, _key(session_id))

    def _ttl(self, session: Session) -> float:
        remaining = session.created + self._lifetime - self._clock()
        return max(1.0, min(self._idle_timeout, remaining))


def _key(session_id: str) -> str:
    # Stored under a hash: a dump of the store holds no usable session cookie.
    return hashlib.sha256(session_id.encode()).hexdigest()
