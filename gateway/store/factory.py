"""Opens the store backend named by the `store.url` setting (gateway/store/location.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway import transactions
from gateway.errors import ConfigError
from gateway.oidc import grants
from gateway.store import Store, StoreUnavailable
from gateway.store.location import parse_store_url, store_url
from gateway.store.memory import MemoryStore

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger("gateway.store")


def open_store(settings: Settings) -> Store:
    """The store the settings name (already validated by gateway.config)."""
    location = parse_store_url(store_url(settings.store.url, dev_mode=settings.dev_mode))
    # Only unfinished logins and saved /authorize requests are bounded in the persistent stores
    # (a flood of them must not fill the disk or Redis; SECURITY H10 keeps each client to its
    # own share); sessions are bounded by the login rate and their lifetime.
    limits = {transactions.NAMESPACE: settings.login.max_pending_transactions,
              grants.REQUESTS: settings.login.max_pending_transactions}
    log.info("store: %s", location.describe())
    if location.kind == "sqlite":
        from gateway.store.sqlite import SqliteStore

        try:
            return SqliteStore(location.path, namespace_limits=limits)
        except StoreUnavailable as e:
            raise ConfigError("store.url", str(e)) from None
    if location.kind == "redis":
        from gateway.store.redis import RedisStore

        return RedisStore(location.url, password=settings.store.password.reveal() or None,
                          key_prefix=settings.store.key_prefix, namespace_limits=limits,
                          sentinel_password=settings.store.sentinel_password.reveal() or None,
                          min_replicas_ack=settings.store.min_replicas_ack)
    return MemoryStore(max_entries=settings.login.max_pending_transactions)
