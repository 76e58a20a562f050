"""redis-py's asyncio client for a Redis store URL: one server (`redis://`), the master that
sentinels watch (`redis+sentinel://`), or a Cluster (`redis+cluster://`).

Every topology gets the same short timeouts, one immediate retry of a failed command (a pooled
connection goes stale when a server restarts or a master fails over) and a bounded pool whose
callers wait up to `pool_wait` seconds for a free connection:

- one server: redis-py's `BlockingConnectionPool` from the URL;
- Sentinel: `Sentinel.master_for`, which asks the sentinels where the master is before every
  new connection and drops its connections when they name another (a failover, followed by
  itself); its pool blocks too (`_BlockingSentinelPool`);
- Cluster: `RedisCluster`, which learns the slots from the nodes and follows them. Its pools
  refuse a connection beyond their size instead of waiting, so `RedisConnection.gate` keeps the
  process's operations in flight below that size, the others waiting their turn.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.store.location import parse_store_url
from gateway.store.redis_urls import RedisTopology


class _BlockingSentinelPool(SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """The sentinels' master pool, waiting for a free connection like the single server's."""


class Gate:
    """At most `limit` operations in flight; the others wait up to `wait` seconds for a turn,
    then fail as redis-py's blocking pool does (a ConnectionError)."""

    def __init__(self, limit: int, wait: float) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._wait = wait

    async def __aenter__(self) -> None:
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self._wait)
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._semaphore.release()


@dataclass
class RedisConnection:
    """The client and what the store needs to know about it."""

    client: Any  # redis.asyncio.Redis, or RedisCluster
    socket_timeout: float  # seconds, to connect and for each command
    cluster: bool = False
    sentinel: Sentinel | None = None  # closed with the client
    gate: AbstractAsyncContextManager[None] = field(default_factory=nullcontext)

    async def close(self) -> None:
        try:
            await self.client.aclose()
        finally:
            if self.sentinel is not None:
                await self.sentinel.aclose()


def connect(url: str, *, password: str | None, sentinel_password: str | None,
            timeout: float, max_connections: int, pool_wait: float) -> RedisConnection:
    """The client for `url` (already checked by gateway.config); nothing is connected yet."""
    topology = parse_store_url(url).topology
    if topology is None:
        return _single(url, password, timeout, max_connections, pool_wait)
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                               "max_connections": max_connections}
    options.update(topology.options)  # the URL's options win, as in redis-py
    if topology.tls:
        options["ssl"] = True
    credentials = {"username": topology.username or None,
                   "password": topology.password or password}
    if topology.kind == "sentinel":
        return _sentinel(topology, options, credentials, sentinel_password, pool_wait)
    return _cluster(topology, options, credentials, pool_wait)


def _single(url: str, password: str | None, timeout: float, max_connections: int,
            pool_wait: float) -> RedisConnection:
    # Options in the URL's query (e.g. ?socket_timeout=2) win over these, as in redis-py.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, password=password, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1), max_connections=max_connections, timeout=pool_wait)
    client = redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool
    return RedisConnection(client, float(pool.connection_kwargs.get("socket_timeout", timeout)))


def _sentinel(topology: RedisTopology, options: dict[str, Any], credentials: dict[str, Any],
              sentinel_password: str | None, pool_wait: float) -> RedisConnection:
    # The sentinels: their own password, the same timeouts and TLS, no retry (discovery
    # already moves on to the next sentinel).
    sentinel_options = {k: v for k, v in options.items()
                        if k.startswith(("socket_", "ssl")) or k == "client_name"}
    sentinel = Sentinel(list(topology.nodes),
                        sentinel_kwargs={**sentinel_options, "password": sentinel_password})
    client = sentinel.master_for(
        topology.service, connection_pool_class=_BlockingSentinelPool,
        db=topology.database, retry=Retry(NoBackoff(), 1), timeout=pool_wait,
        **credentials, **options)
    return RedisConnection(client, float(options["socket_timeout"]), sentinel=sentinel)


def _cluster(topology: RedisTopology, options: dict[str, Any], credentials: dict[str, Any],
             pool_wait: float) -> RedisConnection:
    limit = int(options["max_connections"])
    client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
                          retry=Retry(NoBackoff(), 1), **credentials, **options)
    return RedisConnection(client, float(options["socket_timeout"]), cluster=True,
                           gate=Gate(limit, pool_wait))
