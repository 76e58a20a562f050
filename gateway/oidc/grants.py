"""The code flow's state in the store: pending authorization requests, codes, refresh-token
families with rotation and reuse detection, and revocation (SECURITY C1, T1-T5).

Only the `Store` interface is used (put/get/take/delete with TTLs; `take` is the atomic
single-use primitive), so every backend, and several replicas sharing one, behave the same.
Codes, request ids and refresh tokens are stored under their SHA-256: a dump of the store holds
nothing usable.

A *family* is everything one authorization code led to: the access tokens (their `fid` claim),
the refresh tokens, and each refresh's successors. Revoking a family (code replay, refresh-token
reuse, RFC 7009 revocation, sign-out) is a marker in the store, written whether or not the
family exists yet, so a revocation racing the code exchange still wins.

Rotation (T1, T4): a refresh token is used once (`take`), and has exactly one successor: an
HMAC of the token under a key of the gateway's (`successor_key`), so that the successor can be
handed out again without being stored in clear. Before the token is taken, a `rotated` marker
is written and the successor stored (hashed, like every token), so a request that loses the race
always finds both. A rotated token presented again within `refresh_token_reuse_interval`
seconds (two tabs refreshing at once, however many) gets that same successor: the family never
forks into branches, and a stolen token replayed in the window gains nothing its owner does not
hold too. Later, it revokes the whole family.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from gateway import jose
from gateway.config import ClientSettings, TokenSettings
from gateway.errors import InvalidGrant, InvalidScope, Unavailable
from gateway.oidc.authorization import (
    AuthorizationRequest,
    CodeGrant,
    hashed,
    new_code,
    new_request_id,
)
from gateway.store import Store, StoreFull

log = logging.getLogger("gateway.oidc")

REQUESTS = "oidc-request"
CODES = "oidc-code"
CODE_FAMILIES = "oidc-code-family"  # code -> family, kept past the code to catch replays (C1)
FAMILIES = "oidc-family"
REVOKED_FAMILIES = "oidc-family-revoked"
REFRESH_TOKENS = "oidc-refresh"
ROTATED = "oidc-refresh-rotated"
REVOKED_ACCESS_TOKENS = "oidc-revoked-jti"
ENDED_SESSIONS = "oidc-session-ended"

# `recently_not_revoked`: the store's "not revoked" for an access token is answered from this
# replica's memory for at most this long (SECURITY T3: a revocation reaches every replica within
# a second), for this many tokens at most (least recently used out first).
NOT_REVOKED_SECONDS = 1.0
NOT_REVOKED_ENTRIES = 10_000
CODE_REPLAY_MARGIN = 120.0  # seconds a used or expired code is remembered past its lifetime
REFRESH_TOKEN_BYTES = 32
FAMILY_ID_BYTES = 16


@dataclass(frozen=True)
class Family:
    """One authorization grant and everything issued from it."""

    family_id: str
    client_id: str
    sub: str
    sid: str
    scope: tuple[str, ...]  # what the user granted; a refresh may narrow it, never widen it
    audience: str
    claims: dict[str, Any]
    auth_time: int
    nonce: str | None
    created: float
    expires_at: float  # the absolute lifetime (T5); refresh tokens also die when idle

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Family:
        return cls(**{**record, "scope": tuple(record["scope"])})


@dataclass(frozen=True)
class RefreshTokenInfo:
    """What introspection and revocation learn about a refresh token."""

    family: Family
    client_id: str
    expires_at: float
    active: bool  # false for a rotated (used) token


def narrowed_scope(granted: tuple[str, ...], requested: str | None) -> tuple[str, ...]:
    """RFC 6749 6: a refresh may ask for less than was granted, never more (SECURITY T5).
    The family keeps what was granted; only these tokens carry less."""
    if requested is None:
        return granted
    scope = tuple(dict.fromkeys(requested.split()))
    if not set(scope) <= set(granted):
        raise InvalidScope("The requested scope exceeds what was granted.",
                           log_detail="refresh asked for a wider scope")
    if "openid" not in scope:
        raise InvalidScope("The scope must include openid.")
    return scope


class SessionListener(Protocol):
    """Told who took part in a session and when it ended (back-channel logout, P9)."""

    async def joined(self, sid: str, client_id: str, sub: str) -> None: ...

    async def session_ended(self, sid: str) -> None: ...

    async def client_logged_out(self, sid: str, client_id: str) -> None: ...


def new_family_id() -> str:
    return secrets.token_urlsafe(FAMILY_ID_BYTES)


class Grants:
    def __init__(self, store: Store, tokens: TokenSettings, *, successor_key: bytes,
                 clock: Callable[[], float] = time.time,
                 listener: SessionListener | None = None) -> None:
        self._store = store
        self._listener = listener
        self._tokens = tokens
        self._successor_key = successor_key  # the same on every replica (app.py derives it)
        self._clock = clock
        # Families, markers and revocations outlive the family by an access token's lifetime:
        # the access tokens it issued last stay checkable until they expire.
        self._family_ttl = float(tokens.refresh_token_absolute_lifetime
                                 + tokens.access_token_lifetime + tokens.leeway)
        # jti -> when the store last said that token was not revoked (`recently_not_revoked`).
        self._not_revoked: OrderedDict[str, float] = OrderedDict()
        self._revocations = 0  # revocations made by this replica so far

    # -- authorization requests and codes ------------------------------------------------------

    async def save_request(self, request: AuthorizationRequest, ttl: float) -> str:
        request_id = new_request_id()
        await self._put(REQUESTS, hashed(request_id), request.to_record(), ttl)
        return request_id

    async def take_request(self, request_id: str) -> AuthorizationRequest | None:
        record = await self._store.take(REQUESTS, hashed(request_id))
        return AuthorizationRequest.from_record(record) if record else None

    async def peek_request(self, request_id: str) -> AuthorizationRequest | None:
        """The saved request, left in place (the login page shows its app's name)."""
        record = await self._store.get(REQUESTS, hashed(request_id))
        return AuthorizationRequest.from_record(record) if record else None

    async def issue_code(self, grant: CodeGrant) -> str:
        """A new single-use code for `grant` (C1: >= 128 bits, stored hashed, <= 60 s)."""
        code = new_code()
        lifetime = self._tokens.authorization_code_lifetime
        await self._put(CODE_FAMILIES, hashed(code), {"family_id": grant.family_id},
                        lifetime + CODE_REPLAY_MARGIN)
        await self._put(CODES, hashed(code), grant.to_record(), lifetime)
        return code

    async def redeem_code(self, code: str) -> CodeGrant:
        """Take the code (once). A second use revokes what the first issued (C1)."""
        record = await self._store.take(CODES, hashed(code))
        if record is None:
            replayed = await self._store.get(CODE_FAMILIES, hashed(code))
            if replayed is not None:
                await self.revoke_family(replayed["family_id"], reason="authorization code reuse",
                                         suspected_theft=True)
            raise InvalidGrant("unknown, expired or already used code")
        return CodeGrant.from_record(record)

    # -- families and refresh tokens ----------------------------------------------------------

    async def start_family(self, grant: CodeGrant, audience: str) -> Family:
        now = self._clock()
        family = Family(
            family_id=grant.family_id, client_id=grant.client_id, sub=grant.sub, sid=grant.sid,
            scope=grant.scope, audience=audience, claims=grant.claims, auth_time=grant.auth_time,
            nonce=grant.nonce, created=now,
            expires_at=now + self._tokens.refresh_token_absolute_lifetime,
        )
        await self._put(FAMILIES, family.family_id, family.to_record(), self._family_ttl)
        if self._listener is not None:
            # Before the check below: a sign-out racing this exchange either finds the client
            # among the session's participants, or makes this exchange fail.
            await self._listener.joined(family.sid, family.client_id, family.sub)
        if await self.live_family(family.family_id) is None:
            # The code was replayed while this exchange ran (the replay wins, C1), or the user
            # signed out between the code and its exchange.
            raise InvalidGrant("code replayed during its exchange, or session signed out")
        return family

    async def issue_refresh_token(self, family: Family) -> str:
        """The family's first refresh token (its later ones are successors)."""
        token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        await self._store_refresh_token(token, family)
        return token

    def successor(self, refresh_token: str) -> str:
        """The one refresh token that rotating `refresh_token` gives (T4)."""
        digest = hmac.new(self._successor_key, refresh_token.encode(), hashlib.sha256).digest()
        return jose.base64url(digest)

    async def _store_refresh_token(self, token: str, family: Family) -> None:
        now = self._clock()
        ttl = min(self._tokens.refresh_token_idle_lifetime, family.expires_at - now)
        if ttl <= 0:
            raise InvalidGrant("refresh-token family past its absolute lifetime")
        await self._put(REFRESH_TOKENS, hashed(token),
                        {"family_id": family.family_id, "client_id": family.client_id,
                         "issued_at": now}, ttl)

    async def rotate(self, refresh_token: str, client: ClientSettings, *,
                     requested_scope: str | None) -> tuple[Family, tuple[str, ...], str]:
        """Use a refresh token once: its family, the scope of the new tokens and the new
        refresh token (T1, T4, T5). Nothing is used up when the request is refused."""
        key = hashed(refresh_token)
        record = await self._store.get(REFRESH_TOKENS, key)
        if record is None:
            return await self._rotated_again(refresh_token, client, requested_scope)
        if record["client_id"] != client.client_id:
            raise InvalidGrant(f"refresh token of {record['client_id']} presented by "
                               f"{client.client_id}")
        family = await self._refreshable(record["family_id"])
        scope = narrowed_scope(family.scope, requested_scope)
        now = self._clock()
        # The marker and the successor first: a concurrent request that finds the token gone
        # finds both.
        await self._put(ROTATED, key, {"family_id": family.family_id,
                                       "client_id": family.client_id, "rotated_at": now},
                        max(1.0, family.expires_at - now))
        successor = self.successor(refresh_token)
        await self._store_refresh_token(successor, family)
        if await self._store.take(REFRESH_TOKENS, key) is None:
            log.info("refresh token rotated concurrently client=%s (within the reuse interval)",
                     client.client_id)
        return family, scope, successor

    async def _rotated_again(self, refresh_token: str, client: ClientSettings,
                             requested_scope: str | None) -> tuple[Family, tuple[str, ...], str]:
        marker = await self._store.get(ROTATED, hashed(refresh_token))
        if marker is None:
            raise InvalidGrant("unknown or expired refresh token")
        if marker["client_id"] != client.client_id:
            raise InvalidGrant(f"rotated refresh token of {marker['client_id']} presented by "
                               f"{client.client_id}")
        age = self._clock() - marker["rotated_at"]
        if age <= self._tokens.refresh_token_reuse_interval:
            # T4: two tabs refreshing at once; neither is logged out.
            family = await self._refreshable(marker["family_id"])
            scope = narrowed_scope(family.scope, requested_scope)
            log.info("rotated refresh token reused %.1fs later client=%s: within the reuse "
                     "interval, family kept", age, client.client_id,
                     extra={"event": "refresh_reuse", "client_id": client.client_id})
            return family, scope, self.successor(refresh_token)
        await self.revoke_family(marker["family_id"], reason="refresh token reuse",
                                 suspected_theft=True)
        raise InvalidGrant(f"rotated refresh token reused {age:.0f}s later: family revoked")

    async def _refreshable(self, family_id: str) -> Family:
        family = await self.live_family(family_id)
        if family is None:
            raise InvalidGrant("refresh-token family revoked or expired")
        if self._clock() >= family.expires_at:
            raise InvalidGrant("refresh-token family past its absolute lifetime")
        return family

    async def live_family(self, family_id: str) -> Family | None:
        """The family, unless revoked, signed out of, or gone."""
        record, revoked = await asyncio.gather(
            self._store.get(FAMILIES, family_id), self._store.get(REVOKED_FAMILIES, family_id))
        if record is None or revoked is not None:
            return None
        family = Family.from_record(record)
        if family.sid and await self._store.get(ENDED_SESSIONS, family.sid) is not None:
            return None
        return family

    async def refresh_token_info(self, refresh_token: str) -> RefreshTokenInfo | None:
        """A live or rotated refresh token's family and owner; None when unknown or expired."""
        key = hashed(refresh_token)
        record = await self._store.get(REFRESH_TOKENS, key)
        active = record is not None
        if record is None:
            record = await self._store.get(ROTATED, key)
            if record is None:
                return None
        family = await self.live_family(record["family_id"])
        if family is None:
            return None
        expires_at = family.expires_at
        if active:
            expires_at = min(expires_at, record["issued_at"]
                             + self._tokens.refresh_token_idle_lifetime)
        return RefreshTokenInfo(family, record["client_id"], expires_at,
                                active and self._clock() < expires_at)

    # -- revocation -----------------------------------------------------------------------------

    async def revoke_family(self, family_id: str, *, reason: str,
                            suspected_theft: bool = False) -> None:
        """End a refresh-token family. A WARNING only when a token's reuse suggests it was
        stolen; a client revoking its own tokens or a narrowed policy is routine (INFO). A
        suspected theft logs the client out of the family's session too (back-channel, P9)."""
        family = None
        self._revoked_here()
        if suspected_theft and self._listener is not None:
            family = await self._store.get(FAMILIES, family_id)
        await self._put(REVOKED_FAMILIES, family_id, {"revoked_at": self._clock()},
                        self._family_ttl)
        await self._store.delete(FAMILIES, family_id)
        self._revoked_here()  # again: a check that began during the writes is not remembered
        log.log(logging.WARNING if suspected_theft else logging.INFO,
                "refresh-token family revoked: %s", reason,
                extra={"event": "family_revoked", "reason": reason})
        if family is not None and self._listener is not None:
            await self._listener.client_logged_out(family["sid"], family["client_id"])

    async def end_session(self, sid: str) -> None:
        """Sign-out: every family started in this gateway session is revoked (P2, P7), and
        the clients that took part in it are told over the back channel (P9)."""
        if sid:
            self._revoked_here()
            await self._put(ENDED_SESSIONS, sid, {"ended_at": self._clock()}, self._family_ttl)
            self._revoked_here()
            if self._listener is not None:
                await self._listener.session_ended(sid)

    async def revoke_access_token(self, claims: dict[str, Any]) -> None:
        """Remember a revoked access token by `jti` until it expires anyway."""
        self._revoked_here()
        ttl = float(claims["exp"]) + self._tokens.leeway - self._clock()
        if ttl > 0:
            await self._put(REVOKED_ACCESS_TOKENS, str(claims["jti"]), {}, ttl)
            self._revoked_here()

    async def access_token_revoked(self, claims: dict[str, Any]) -> bool:
        """True when the (already verified) access token was revoked itself, or its family
        was, or the session it was issued in has ended (P8). Store failures propagate: the
        caller fails closed (SECURITY H9). A "no" is remembered for `recently_not_revoked`."""
        jti = str(claims["jti"])
        if self.recently_not_revoked(claims):
            return False
        revocations = self._revocations
        revoked = await self._revoked_in_store(claims)
        if not revoked and revocations == self._revocations:
            # Nothing was revoked here while the store answered (a revocation racing this
            # check is never remembered over).
            self._not_revoked[jti] = self._clock()
            self._not_revoked.move_to_end(jti)
            if len(self._not_revoked) > NOT_REVOKED_ENTRIES:
                self._not_revoked.popitem(last=False)
        return revoked

    def recently_not_revoked(self, claims: dict[str, Any]) -> bool:
        """Whether the store said this token was not revoked less than NOT_REVOKED_SECONDS
        ago, and nothing was revoked on this replica since. No store access, so no await:
        /verify and /auth ask it on every request. A revocation made on this replica applies
        at once; one made on another replica within NOT_REVOKED_SECONDS (SECURITY T3)."""
        jti = str(claims.get("jti"))
        checked_at = self._not_revoked.get(jti)
        if checked_at is None:
            return False
        if not 0 <= self._clock() - checked_at < NOT_REVOKED_SECONDS:
            del self._not_revoked[jti]
            return False
        self._not_revoked.move_to_end(jti)
        return True

    def _revoked_here(self) -> None:
        """Before and after a revocation's writes: what was remembered is forgotten, and a
        check under way meanwhile will not be remembered."""
        self._revocations += 1
        self._not_revoked.clear()

    async def _revoked_in_store(self, claims: dict[str, Any]) -> bool:
        markers = [self._store.get(REVOKED_ACCESS_TOKENS, str(claims["jti"]))]
        sid = claims.get("sid")
        if isinstance(sid, str) and sid:
            markers.append(self._store.get(ENDED_SESSIONS, sid))
        if any(marker is not None for marker in await asyncio.gather(*markers)):
            return True
        family_id = claims.get("fid")
        return isinstance(family_id, str) and await self.live_family(family_id) is None

    async def _put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        try:
            await self._store.put(namespace, key, value, ttl)
        except StoreFull:
            raise Unavailable("The gateway is too busy right now. Please try again in a minute.",
                              log_detail=f"store full ({namespace})") from None
