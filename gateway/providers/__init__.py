"""Upstream identity providers: one connector module each (providers/base.py says what a
connector does), and this, the only registry.

A provider is enabled by its configuration section. Each module's `build` returns its
connector, or None when its section is absent. Adding a provider: its module, one line in
BUILDERS, its stand-in in dev/standins/, its docs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.config import Settings
from gateway.providers import apple, facebook, github, google, microsoft, oidc, twitter
from gateway.providers.base import Connector
from gateway.store import Store
from gateway.upstream.client import Upstream

__all__ = ["Connector", "enabled_providers"]

def build_x(settings: Settings, upstream: Upstream) -> Connector | None:
    """X in the configured mode: OAuth 2.0 (the default) or OAuth 1.0a."""
    if settings.providers.twitter is None:
        return None
    if settings.providers.twitter.mode == "oauth1":
        # Imported only when configured: the deprecated TwitterMixin stays out of oauth2 mode.
        from gateway.providers import twitter_oauth1

        return twitter_oauth1.build(settings, upstream)
    return twitter.build(settings, upstream)


BUILDERS: tuple[Callable[[Settings, Upstream], Connector | None], ...] = (
    google.build,
    facebook.build,
    build_x,
    github.build,
    microsoft.build,
)


# Builders of any number of connectors: the generic OpenID Connect providers, one per section.
MULTI_BUILDERS: tuple[Callable[[Settings, Upstream], Sequence[Connector]], ...] = (
    oidc.build_all,
)


# Connectors that keep something of their own between logins in the gateway's store (Apple:
# the name it sends once).
STORE_BUILDERS: tuple[Callable[[Settings, Upstream, Store], Connector | None], ...] = (
    apple.build,
)


def enabled_providers(settings: Settings, upstream: Upstream, store: Store) -> list[Connector]:
    enabled = [build(settings, upstream) for build in BUILDERS]
    enabled += [build(settings, upstream, store) for build in STORE_BUILDERS]
    providers = [provider for provider in enabled if provider is not None]
    for build_all in MULTI_BUILDERS:
        providers.extend(build_all(settings, upstream))
    return providers
