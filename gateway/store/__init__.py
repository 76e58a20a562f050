"""Storage for short-lived server-side state: login transactions and gateway sessions.

One small asynchronous interface, four backends chosen by the `store.url` setting (parsed in
location.py, opened by factory.py): `memory.py` (one process, for development and tests),
`sqlite.py` (a file: survives restarts, no server), and `redis.py` and `postgres.py` (shared by
several replicas; PostgreSQL's schema and statements are in postgres_schema.py).
Values are JSON-compatible dicts; every entry has a TTL and is invisible once expired.

Backends raise only two errors (defined in gateway/errors.py): `StoreFull` when a bounded
namespace refuses a new entry, and `StoreUnavailable` when the storage cannot be reached or fails
(each backend maps its driver's exceptions to it in one place). Clients see both as a 503
(SECURITY H9: an outage of the store never yields a login).
"""

from __future__ import annotations

from typing import Any, Protocol

# Defined with the other errors (gateway/errors.py); backends import them from here.
from gateway.errors import StoreFull, StoreUnavailable

__all__ = ["Store", "StoreFull", "StoreUnavailable"]


class Store(Protocol):
    async def put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store `value` under (namespace, key) for `ttl` seconds, replacing any earlier one."""

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The live value, or None when absent or expired."""

    async def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        """Atomically read and delete: the single-use primitive behind `state` and codes."""

    async def delete(self, namespace: str, key: str) -> None: ...

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        """Atomically add one to the counter (namespace, key) and return its new value; a new
        (or expired) counter starts at 1 and lives `ttl` seconds from then, later increments
        never extend it (a fixed window). A counter's namespace holds counters only."""

    async def add_member(self, namespace: str, key: str, member: str, ttl: float) -> None:
        """Add `member` to the set (namespace, key) for `ttl` seconds: each member expires on
        its own; adding one again replaces its expiry. A set's namespace holds sets only."""

    async def members(self, namespace: str, key: str) -> list[str]:
        """The set's live members, in no particular order ([] for no set)."""

    async def remove_member(self, namespace: str, key: str, member: str) -> None: ...

    async def ping(self) -> bool:
        """True when the store can serve requests (used by /readyz)."""

    async def close(self) -> None: ...
