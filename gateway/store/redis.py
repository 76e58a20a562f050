"""Redis store: one store shared by several gateway replicas (redis-py's asyncio client).

Each entry is one Redis string, `<prefix>:<namespace>:<key>` -> JSON, written with `SET ... PX`
so that Redis itself expires it; `take` is `GETDEL` (Redis >= 6.2): atomic across every replica.
A bounded namespace (login transactions) also keeps a sorted set `<prefix>:<namespace>#index`
of its keys by expiry, changed in the same atomic step as the entry (a Lua script), so that a
flood of unfinished logins cannot fill a Redis that sessions and other replicas rely on.

The same store runs on one server, on the master sentinels watch (followed across failovers),
or on a Cluster (redis_connect.py opens each). Every command touches one key, but the bounded
namespaces' scripts, which touch an entry and its index: on a Cluster both carry the hash tag
`{prefix:namespace}`, so they share a slot (and a node) and the scripts stay atomic.
With `store.min_replicas_ack` every write but a counter's waits for that many replicas
(SECURITY T7, `_write`).

Timeouts are short and a failed command is retried once, at once (a pooled connection goes
stale when Redis restarts); past that, every error becomes `StoreUnavailable` in `_unavailable`,
the one place where redis-py's exceptions are mapped, and `ping` answers False. A dead Redis
fails a request within about two timeouts instead of hanging a login.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.store import StoreFull, StoreUnavailable
from gateway.store.redis_connect import connect

log = logging.getLogger("gateway.store")

DEFAULT_KEY_PREFIX = "oauth-gateway"
DEFAULT_TIMEOUT = 1.0  # seconds, to connect and for each command; `?socket_timeout=` overrides
# Connections per process (`?max_connections=` overrides). A burst of logins beyond it waits for
# a free connection, up to POOL_WAIT seconds: redis-py's plain pool would fail it at once.
MAX_CONNECTIONS = 50
POOL_WAIT = 5.0
# The share of the command timeout a WAIT for replicas may take (store.min_replicas_ack).
ACK_SHARE = 0.5

# KEYS: the entry, the namespace's index. ARGV: JSON value, TTL in ms, the namespace's limit.
# The index's members are entry keys scored by expiry (ms, Redis's clock): expired members are
# dropped first, then the live ones are counted. Scripts are atomic, and since Redis 5 they are
# replicated by their effects, so reading TIME before writing is allowed.
PUT_BOUNDED = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3])
        and not redis.call('ZSCORE', KEYS[2], KEYS[1]) then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
if redis.call('PTTL', KEYS[2]) < ttl then
    redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"""
# KEYS: the entry, the namespace's index.
TAKE_BOUNDED = """
local value = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return value
"""
# KEYS: the counter. ARGV: TTL in ms. The TTL is set only on a counter without one (a fixed
# window): atomic, one round trip, on any Redis version (PEXPIRE NX needs 7.0).
INCR_FIXED_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""
# A set is a sorted set scored by each member's expiry, in the server's clock (replicas' clocks
# may differ); the key lives as long as its longest-lived member.
ADD_MEMBER = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
    redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""
LIVE_MEMBERS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""
DELETE_BOUNDED = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"""


class RedisStore:
    """The `Store` interface over Redis. Connecting is lazy: a gateway starts while Redis is
    down, says "not ready" on /readyz, and serves once Redis answers."""

    def __init__(self, url: str, *, password: str | None = None,
                 sentinel_password: str | None = None,
                 key_prefix: str = DEFAULT_KEY_PREFIX,
                 namespace_limits: Mapping[str, int] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, min_replicas_ack: int = 0) -> None:
        self.key_prefix = key_prefix
        self._limits = dict(namespace_limits or {})
        self._connection = connect(url, password=password, sentinel_password=sentinel_password,
                                   timeout=timeout, max_connections=MAX_CONNECTIONS,
                                   pool_wait=POOL_WAIT)
        self._redis = self._connection.client
        self._gate = self._connection.gate
        self._min_replicas_ack = min_replicas_ack
        # WAIT answers before the command's own timeout, so that a late acknowledgement is
        # told apart from a dead server (and the command is never retried for it).
        self._ack_timeout_ms = max(1, int(self._connection.socket_timeout * 1000 * ACK_SHARE))
        self._put_bounded = self._redis.register_script(PUT_BOUNDED)
        self._take_bounded = self._redis.register_script(TAKE_BOUNDED)
        self._delete_bounded = self._redis.register_script(DELETE_BOUNDED)
        self._incr = self._redis.register_script(INCR_FIXED_WINDOW)
        self._add_member = self._redis.register_script(ADD_MEMBER)
        self._live_members = self._redis.register_script(LIVE_MEMBERS)

    def entry_key(self, namespace: str, key: str) -> str:
        if self._connection.cluster and namespace in self._limits:
            # A bounded namespace's entries and index share one hash slot (the part in
            # braces), so that its scripts, which touch both, run on one Cluster node.
            return f"{{{self.key_prefix}:{namespace}}}:{key}"
        return f"{self.key_prefix}:{namespace}:{key}"

    def index_key(self, namespace: str) -> str:
        if self._connection.cluster:
            return f"{{{self.key_prefix}:{namespace}}}#index"
        return f"{self.key_prefix}:{namespace}#index"

    async def put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        entry = self.entry_key(namespace, key)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        ttl_ms = max(1, round(ttl * 1000))
        limit = self._limits.get(namespace)
        if limit is None:
            await self._write("put", lambda client: client.set(entry, text, px=ttl_ms))
            return
        stored = await self._write("put", lambda client: self._put_bounded(
            keys=[entry, self.index_key(namespace)], args=[text, ttl_ms, limit], client=client))
        if not stored:
            raise StoreFull(namespace)

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        async with self._operation("get"):
            raw = await self._redis.get(self.entry_key(namespace, key))
        return _decode(raw)

    async def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        entry = self.entry_key(namespace, key)
        if namespace in self._limits:
            raw = await self._write("take", lambda client: self._take_bounded(
                keys=[entry, self.index_key(namespace)], client=client))
        else:
            raw = await self._write("take", lambda client: client.getdel(entry))
        return _decode(raw)

    async def delete(self, namespace: str, key: str) -> None:
        entry = self.entry_key(namespace, key)
        if namespace in self._limits:
            await self._write("delete", lambda client: self._delete_bounded(
                keys=[entry, self.index_key(namespace)], client=client))
        else:
            await self._write("delete", lambda client: client.delete(entry))

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        # Counters (rate limits, pending-login caps) are not waited for: a count lost in a
        # failover restarts one window, and grants nothing (docs/security.md T7).
        async with self._operation("incr"):
            count = await self._incr(keys=[self.entry_key(namespace, key)],
                                     args=[max(1, round(ttl * 1000))])
        return int(count)

    async def add_member(self, namespace: str, key: str, member: str, ttl: float) -> None:
        entry = self.entry_key(namespace, key)
        await self._write("add_member", lambda client: self._add_member(
            keys=[entry], args=[member, max(1, round(ttl * 1000))], client=client))

    async def members(self, namespace: str, key: str) -> list[str]:
        async with self._operation("members"):
            raw = await self._live_members(keys=[self.entry_key(namespace, key)])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]

    async def remove_member(self, namespace: str, key: str, member: str) -> None:
        entry = self.entry_key(namespace, key)
        await self._write("remove_member", lambda client: client.zrem(entry, member))

    async def ping(self) -> bool:
        try:
            async with self._operation("ping"):
                if self._connection.cluster:  # every master must answer: each holds slots
                    return bool(await self._redis.ping(target_nodes=RedisCluster.PRIMARIES))
                return bool(await self._redis.ping())
        except StoreUnavailable as e:
            log.warning("store not ready: %s", e)
            return False

    async def close(self) -> None:
        with _unavailable("close"):
            await self._connection.close()

    @asynccontextmanager
    async def _operation(self, operation: str) -> AsyncIterator[None]:
        with _unavailable(operation):
            async with self._gate:
                yield

    async def _write(self, operation: str, command: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run a write. With `min_replicas_ack` (SECURITY T7) it is sent with a WAIT in one
        pipeline, so on one connection (WAIT counts the replicas that have that connection's
        writes), and fewer acknowledgements than asked are a StoreUnavailable: the write is
        on the master but may not survive its loss, so no one is told it succeeded."""
        async with self._operation(operation):
            if not self._min_replicas_ack:
                return await command(self._redis)
            pipeline = self._redis.pipeline(transaction=False)
            await command(pipeline)
            pipeline.wait(self._min_replicas_ack, self._ack_timeout_ms)
            result, acknowledged = await pipeline.execute()
        if acknowledged < self._min_replicas_ack:
            raise StoreUnavailable(
                f"redis {operation}: {acknowledged} of {self._min_replicas_ack} replicas "
                f"acknowledged the write within {self._ack_timeout_ms} ms")
        return result


@contextmanager
def _unavailable(operation: str) -> Iterator[None]:
    """The one place redis-py's exceptions (and socket errors) become StoreUnavailable."""
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as e:
        # redis-py's messages name the host and port, never the password.
        raise StoreUnavailable(f"redis {operation}: {type(e).__name__}: {e}"[:300]) from e


def _decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StoreUnavailable("redis: a stored value is not a JSON object")
    return value
