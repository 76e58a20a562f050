"""The stores the benchmark compares, each as a `[store]` section for a gateway, set up for the
run and cleaned up after it:

- memory: the one-process store (`memory://`);
- SQLite: a database file in a directory of the run's own (`sqlite:///...`), removed after;
- Redis: the machine's 127.0.0.1:6379 under a key prefix of the run's own, whose keys are
  deleted at the end (nothing else on that server is touched);
- Redis Sentinel: a master, a replica and three sentinels of the benchmark's own
  (bench/redis_sentinel.py), with and without `min_replicas_ack = 1`;
- PostgreSQL: a database of the benchmark's own on the local server, dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from redis_sentinel import sentinel_topology

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NAMES = ("memory", "SQLite", "Redis", "Redis Sentinel", "Redis Sentinel, min_replicas_ack 1",
         "PostgreSQL")


@dataclass(frozen=True)
class StoreSetup:
    """A store under test: its name in the tables and the gateway's `[store]` settings."""

    name: str
    settings: dict[str, str | int]

    def environment(self) -> dict[str, str]:
        """The settings as GATEWAY_STORE__... variables (for `serve --dev`)."""
        return {f"GATEWAY_STORE__{key.upper()}": str(value)
                for key, value in self.settings.items()}


@contextlib.contextmanager
def stores(names: tuple[str, ...] = NAMES) -> Iterator[list[StoreSetup]]:
    """The named stores, ready; cleaned up (keys deleted, processes stopped, database dropped)
    when the block ends."""
    with contextlib.ExitStack() as stack:
        setups = []
        sentinel_url = ""
        for name in names:
            if name == "memory":
                setups.append(StoreSetup(name, {"url": "memory://"}))
            elif name == "SQLite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                setups.append(StoreSetup(name, {"url": f"sqlite:///{folder}/gateway.db"}))
            elif name == "Redis":
                prefix = stack.enter_context(shared_redis_prefix())
                setups.append(StoreSetup(name, {"url": SHARED_REDIS_URL, "key_prefix": prefix}))
            elif name.startswith("Redis Sentinel"):
                sentinel_url = sentinel_url or stack.enter_context(sentinel_topology())
                acks = 1 if name.endswith("min_replicas_ack 1") else 0
                setups.append(StoreSetup(name, {"url": sentinel_url, "min_replicas_ack": acks,
                                                "key_prefix": f"bench-{len(setups)}"}))
            elif name == "PostgreSQL":
                setups.append(StoreSetup(name, {"url": stack.enter_context(
                    postgres_database())}))
            else:
                raise ValueError(f"no store named {name!r}")
        yield setups


@contextlib.contextmanager
def shared_redis_prefix() -> Iterator[str]:
    """A key prefix of this run's own on the shared Redis; its keys deleted at the end (hash-
    tagged ones, `{prefix:...}`, too)."""
    prefix = f"bench-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        with redis.Redis.from_url(SHARED_REDIS_URL, socket_timeout=5) as client:
            for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
                for batch in _batches(client.scan_iter(match=pattern, count=1000), 500):
                    client.delete(*batch)


def _batches(keys: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new database on the local PostgreSQL, dropped at the end: its store.url."""
    import asyncpg

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    name = f"bench_{secrets.token_hex(4)}"
    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
