"""Upstream identity providers: one module each, and the registry of the enabled ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import Settings
from gateway.providers import google
from gateway.upstream import Upstream
from gateway.upstream_keys import UpstreamKeys


@dataclass(frozen=True)
class EnabledProvider:
    name: str
    provider: Any  # the provider object its handlers receive
    login_mixin: type  # carries the tornado.auth mixin; mixed into the generic handlers


def enabled_providers(settings: Settings, upstream: Upstream) -> list[EnabledProvider]:
    """A provider is enabled by its configuration section."""
    enabled: list[EnabledProvider] = []
    if settings.providers.google is not None:
        google_settings = settings.providers.google
        keys = UpstreamKeys(
            upstream, provider=google.NAME, jwks_url=google_settings.jwks_url,
            cache_seconds=settings.upstream.jwks_cache_seconds,
            refresh_cooldown=settings.upstream.jwks_refresh_cooldown,
        )
        provider = google.GoogleProvider(
            google_settings, upstream, keys,
            callback_url=settings.callback_url(google.NAME), leeway=settings.tokens.leeway,
        )
        enabled.append(EnabledProvider(google.NAME, provider, google.GoogleLogin))
    return enabled
