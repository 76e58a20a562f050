"""An OpenID provider's metadata from its discovery document (OpenID Connect Discovery 1.0),
fetched through the upstream client, checked, cached and refreshed.

SECURITY C9: the document's `issuer` must be exactly the configured one (Discovery 4.3): a
document naming another issuer (a mix-up, a compromised or misconfigured host) configures
nothing. Its endpoints must be https (http only on a loopback host, as in the configuration).
Any failure is a `ProviderUnavailable` (503): no login can start without the document.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config.settings import TOKEN_ENDPOINT_AUTH_METHODS
from gateway.errors import ProviderUnavailable, UpstreamError
from gateway.upstream.client import Upstream

log = logging.getLogger("gateway.upstream")

DISCOVERY_PATH = "/.well-known/openid-configuration"
UNAVAILABLE_TEXT = ("The sign-in provider is unavailable right now. Please try again in a few "
                    "minutes.")


class DiscoveryError(ValueError):
    """A discovery document we refuse; the message is for our log (no provider text in it)."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What the gateway uses of a discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    # `id_token_signing_alg_values_supported`, RS256 when the document lists none.
    id_token_signing_algs: tuple[str, ...]
    # How we authenticate at the token endpoint: client_secret_basic unless only _post is listed.
    token_endpoint_auth_method: str


def discovery_url(issuer: str) -> str:
    """Discovery 4: the issuer without its terminating '/', then the well-known path."""
    return issuer.rstrip("/") + DISCOVERY_PATH


def parse_metadata(document: dict[str, Any], *,
                   expected_issuer: str | tuple[str, ...]) -> ProviderMetadata:
    """The metadata of a discovery document, or DiscoveryError. `expected_issuer` (or one of
    them) is compared as an exact string (Discovery 4.3: "MUST be identical")."""
    expected = expected_issuer if isinstance(expected_issuer, tuple) else (expected_issuer,)
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer not in expected:
        raise DiscoveryError("the discovery document names another issuer")
    endpoints = {name: _endpoint(document, name) for name in
                 ("authorization_endpoint", "token_endpoint", "jwks_uri")}
    userinfo = document.get("userinfo_endpoint")
    response_types = document.get("response_types_supported")
    if isinstance(response_types, list) and "code" not in response_types:
        raise DiscoveryError("the provider does not offer the authorization code flow")
    algs = _strings(document, "id_token_signing_alg_values_supported") or ("RS256",)
    methods = _strings(document, "token_endpoint_auth_methods_supported") or (
        "client_secret_basic",)  # Discovery 3: the default when omitted
    method = next((m for m in TOKEN_ENDPOINT_AUTH_METHODS if m in methods), None)
    if method is None:
        raise DiscoveryError("the token endpoint takes neither client_secret_basic nor "
                             "client_secret_post")
    return ProviderMetadata(
        issuer=issuer, authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"], jwks_uri=endpoints["jwks_uri"],
        userinfo_endpoint=_endpoint(document, "userinfo_endpoint") if userinfo else None,
        id_token_signing_algs=algs, token_endpoint_auth_method=method)


def _endpoint(document: dict[str, Any], name: str) -> str:
    url = document.get(name)
    if not isinstance(url, str) or not is_provider_url(url):
        raise DiscoveryError(f"{name} is missing or not an https URL")
    return url


def _strings(document: dict[str, Any], name: str) -> tuple[str, ...]:
    value = document.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError(f"{name} is not a list of strings")
    return tuple(value)


def is_provider_url(url: str) -> bool:
    """https, or http on a loopback host (a stand-in, a test): the configuration's rule."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class StaticMetadata:
    """Metadata known from the configuration rather than fetched: Google's endpoints (they
    are its discovery document's, configurable to point at a stand-in)."""

    def __init__(self, metadata: ProviderMetadata) -> None:
        self._metadata = metadata

    async def metadata(self) -> ProviderMetadata:
        return self._metadata


class Discovery:
    """One provider's discovery document, fetched when first needed and again once older than
    `cache_seconds`. A failed refresh keeps the last good document (retried after
    `retry_seconds`); with none, the failure is a ProviderUnavailable. Concurrent fetches
    share one request."""

    def __init__(self, upstream: Upstream, *, provider: str, url: str,
                 expected_issuer: str | tuple[str, ...],
                 cache_seconds: float, retry_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._upstream = upstream
        self._provider = provider
        self._url = url
        self._expected_issuer = expected_issuer
        self._cache_seconds = cache_seconds
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._fetching: asyncio.Future[ProviderMetadata] | None = None

    async def metadata(self) -> ProviderMetadata:
        now = self._clock()
        current = self._metadata
        if current is not None and now - self._fetched_at <= self._cache_seconds:
            return current
        if current is not None and self._failed_at is not None \
                and now - self._failed_at <= self._retry_seconds:
            return current  # stale, but the provider failed a moment ago
        try:
            return await self._fetch_shared()
        except ProviderUnavailable:
            if current is None:
                raise
            log.warning("keeping the last discovery document of provider=%s", self._provider)
            return current

    async def _fetch_shared(self) -> ProviderMetadata:
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
        fetching = self._fetching
        try:
            return await asyncio.shield(fetching)
        finally:
            if self._fetching is fetching and fetching.done():
                self._fetching = None

    async def _fetch(self) -> ProviderMetadata:
        request = self._upstream.request(self._url)
        try:
            document = await self._upstream.fetch_json(request, provider=self._provider,
                                                       what="discovery")
            metadata = parse_metadata(document, expected_issuer=self._expected_issuer)
        except UpstreamError as e:
            self._failed_at = self._clock()
            raise ProviderUnavailable(UNAVAILABLE_TEXT, provider=self._provider,
                                      upstream_status=e.upstream_status,
                                      log_detail=f"discovery: {e.log_detail}") from None
        except DiscoveryError as e:
            self._failed_at = self._clock()
            log.warning("upstream failure provider=%s discovery refused: %s", self._provider, e,
                        extra={"event": "upstream_failure", "provider": self._provider,
                               "call": "discovery", "outcome": "DiscoveryError"})
            raise ProviderUnavailable(UNAVAILABLE_TEXT, provider=self._provider,
                                      log_detail=f"discovery refused: {e}") from None
        self._metadata, self._fetched_at, self._failed_at = metadata, self._clock(), None
        log.info("fetched the discovery document of provider=%s", self._provider)
        return metadata
