"""A provider's published signing keys (JWKS), fetched from configuration only and cached.

SECURITY C6: the JWKS URL comes from configuration, never from a token header; an unknown `kid`
triggers at most one refresh per cooldown; concurrent refreshes share one request so a burst of
callbacks never becomes a burst of fetches; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import jwt

from gateway.errors import UpstreamError
from gateway.upstream.client import Upstream

log = logging.getLogger("gateway.upstream")


class UpstreamKeys:
    def __init__(self, upstream: Upstream, *, provider: str, jwks_url: str,
                 cache_seconds: float, refresh_cooldown: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._upstream = upstream
        self._provider = provider
        self._jwks_url = jwks_url
        self._cache_seconds = cache_seconds
        self._refresh_cooldown = refresh_cooldown
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._refreshing: asyncio.Future[None] | None = None

    async def key_for(self, kid: str) -> jwt.PyJWK:
        """The provider's key with this `kid`, refreshing the cache when it is stale or lacks it."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._cache_seconds
        cooled = self._fetched_at is None or now - self._fetched_at > self._refresh_cooldown
        if stale or (kid not in self._keys and cooled):
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise UpstreamError(
                "The sign-in provider's answer could not be verified.",
                provider=self._provider, log_detail=f"id_token kid {kid[:64]!r} not in JWKS",
            )
        return key

    async def _refresh(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._fetch())
        refreshing = self._refreshing
        try:
            await asyncio.shield(refreshing)
        finally:
            if self._refreshing is refreshing and refreshing.done():
                self._refreshing = None

    async def _fetch(self) -> None:
        request = self._upstream.request(self._jwks_url)
        document = await self._upstream.fetch_json(request, provider=self._provider, what="jwks")
        self._keys = parse_jwks(document)
        self._fetched_at = self._clock()
        log.info("fetched %d signing keys of provider=%s", len(self._keys), self._provider)


def parse_jwks(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS by `kid`; keys we cannot use are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("skipping an unusable key in a provider JWKS")
    return keys
