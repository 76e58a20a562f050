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
    if location.kind == "postgres":
        from gateway.store.postgres import PostgresStore

        return PostgresStore(location.url, password=settings.store.password.reveal() or None,
                             namespace_limits=limits)
    return MemoryStore(max_entries=settings.login.max_pending_transactions)


async def migrate_store(settings: Settings) -> str:
    """`oauth-gateway store migrate`: bring the configured store's schema up to this gateway's
    version (what every gateway process also does when it starts); one line saying what was
    done. Raises StoreUnavailable when the store cannot be reached or migrated."""
    location = parse_store_url(store_url(settings.store.url, dev_mode=settings.dev_mode))
    if location.kind == "postgres":
        from gateway.store.postgres import migrate_database
        from gateway.store.postgres_schema import LATEST_VERSION

        applied = await migrate_database(location.url,
                                         password=settings.store.password.reveal() or None)
        done = (f"applied {', '.join(f'{m.version} ({m.description})' for m in applied)}"
                if applied else "already up to date")
        return f"{location.describe()}: schema at version {LATEST_VERSION}, {done}"
    if location.kind == "sqlite":
        from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

        await SqliteStore(location.path).close()  # opening the file prepares its schema
        return f"{location.describe()}: schema at version {SCHEMA_VERSION}"
    return f"{location.describe()}: nothing to migrate (no schema)"
