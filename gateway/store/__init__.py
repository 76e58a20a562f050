"""Storage for short-lived server-side state: login transactions and gateway sessions.

One small asynchronous interface so that persistent and shared backends (SQLite, Redis) can
replace the in-memory one without touching the handlers. Values are JSON-compatible dicts.
"""

from __future__ import annotations

from typing import Any, Protocol


class Store(Protocol):
    async def put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store `value` under (namespace, key) for `ttl` seconds, replacing any earlier one."""

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The live value, or None when absent or expired."""

    async def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        """Atomically read and delete: the single-use primitive behind `state` and codes."""

    async def delete(self, namespace: str, key: str) -> None: ...

    async def ping(self) -> bool:
        """True when the store can serve requests (used by /readyz)."""

    async def close(self) -> None: ...


class StoreFull(Exception):
    """The store refuses new entries to bound memory (a flood of unfinished logins)."""
