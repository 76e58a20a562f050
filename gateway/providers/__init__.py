"""Upstream identity providers: one module each, and the registry of the enabled ones.

A provider is enabled by its configuration section. Each module's `build` returns its
`EnabledProvider`, or None when its section is absent.
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.providers import facebook, google, twitter
from gateway.providers.base import EnabledProvider
from gateway.upstream.client import Upstream

__all__ = ["EnabledProvider", "enabled_providers"]

BUILDERS = (
    google.build,
    facebook.build,
    twitter.build,
)


def enabled_providers(settings: Settings, upstream: Upstream) -> list[EnabledProvider]:
    enabled = [build(settings, upstream) for build in BUILDERS]
    return [provider for provider in enabled if provider is not None]
