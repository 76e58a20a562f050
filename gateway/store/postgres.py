"""PostgreSQL store: one database shared by several gateway replicas (asyncpg's pool).

The schema is the gateway's own (gateway/store/postgres_schema.py): created and migrated by the
first connection of each process, under an advisory lock, or beforehand by `oauth-gateway store
migrate`. Expiry is the database's: rows carry `expires_at` computed with `now()`, reads skip
expired rows, and every replica deletes a bounded batch of expired rows every SWEEP_INTERVAL
(with SKIP LOCKED, so that replicas sweeping at once share the work; no leader is needed).

`take` is one `DELETE ... RETURNING`: atomic across every replica. Revocations are rows read on
each request (no cache in any replica), so a revocation on one replica is seen by the next
request on any other (SECURITY T3).

Connecting is lazy, as with Redis: a gateway starts while PostgreSQL is down, says "not ready"
on /readyz, and serves once it answers. Every wait is bounded: a free pooled connection
(POOL_WAIT), connecting (`?connect_timeout=`, DEFAULT_CONNECT_TIMEOUT) and each statement
(`?command_timeout=`, DEFAULT_COMMAND_TIMEOUT, also set as the server's statement_timeout).
Past them, and on any database error, `StoreUnavailable` (a 503) in `_unavailable`, the one
place asyncpg's exceptions are mapped; `ping` answers False.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from gateway.store import StoreFull, StoreUnavailable
from gateway.store import postgres_schema as sql

log = logging.getLogger("gateway.store")
T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 2.0  # seconds to open a connection, TLS and authentication included
DEFAULT_COMMAND_TIMEOUT = 1.0  # seconds for one statement, on the client and on the server
# Connections per process (`?max_connections=` overrides): every replica and worker opens up to
# this many, and PostgreSQL's max_connections (100 by default) bounds their sum. A burst beyond
# it waits for a free connection, up to POOL_WAIT seconds.
MAX_CONNECTIONS = 10
POOL_WAIT = 5.0
IDLE_CONNECTION_LIFETIME = 300.0  # seconds before an unused pooled connection is closed
SWEEP_INTERVAL = 30.0  # seconds between two sweeps of a replica (jittered by 20%)
SWEEP_BATCH = 1000  # rows one statement deletes at most, so that no sweep holds locks long
SWEEP_BATCHES = 10  # batches per table and sweep at most; the next sweep does the rest,
SWEEP_AGAIN = 1.0  # this many seconds later when a sweep left expired rows behind
CLOSE_TIMEOUT = 5.0
# A migration may wait for another replica's (the advisory lock) and run DDL: longer than a
# statement, bounded all the same. Only a start, or `store migrate`, waits on it.
MIGRATION_TIMEOUT = 30.0

# Errors after which the connection is gone but the statement never ran or can run again
# harmlessly: an idempotent operation is retried once, at once, on a fresh connection (a pooled
# connection goes stale when PostgreSQL restarts or an administrator ends it).
CONNECTION_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError,
                   asyncpg.CannotConnectNowError, asyncpg.InternalClientError, ConnectionError)
# Errors after which a connection is in no known state: it is closed, never pooled again.
# (Seen: a backend ended by pg_terminate_backend whose notice arrived before its end of file
# left asyncpg's connection "in another operation"; a statement timed out on a dead link
# would have its release wait on a cancel request that cannot get through either.)
CONNECTION_BROKEN = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)


class SchemaTooNew(Exception):
    """The database was migrated by a newer gateway: serving would misread it."""


class PostgresStore:
    """The `Store` interface over PostgreSQL."""

    def __init__(self, url: str, *, password: str | None = None,
                 namespace_limits: Mapping[str, int] | None = None,
                 sweep_interval: float = SWEEP_INTERVAL) -> None:
        self.dsn, options = split_options(url)
        self._password = password
        self._limits = dict(namespace_limits or {})
        self._sweep_interval = sweep_interval
        self.connect_timeout = float(options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self.command_timeout = float(options.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
        self._max_connections = int(options.get("max_connections", MAX_CONNECTIONS))
        self._pool: asyncpg.Pool | None = None
        self._ready = False  # the pool exists and the schema is this gateway's
        self._lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # opened outside an event loop: connects on first use
        # Connect and migrate at start rather than on the first request.
        self._spawn(self._start())

    # -- the Store interface -----------------------------------------------------------------

    async def put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        text = _encode(value)
        limit = self._limits.get(namespace)
        if limit is None:
            await self._run("put", lambda c: c.execute(sql.PUT, namespace, key, text, ttl),
                            retry=True)
            return
        stored = await self._run("put", lambda c: c.fetchval(
            sql.PUT_BOUNDED, namespace, key, text, ttl, limit), retry=True)
        if stored is None:  # full: its own expired rows first make room, if it has any
            await self._run("put", lambda c: c.execute(sql.SWEEP_NAMESPACE, namespace,
                                                       SWEEP_BATCH))
            stored = await self._run("put", lambda c: c.fetchval(
                sql.PUT_BOUNDED, namespace, key, text, ttl, limit), retry=True)
        if stored is None:
            raise StoreFull(namespace)

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        text = await self._run("get", lambda c: c.fetchval(sql.GET, namespace, key),
                               retry=True)
        return _decode(text)

    async def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        # Never retried: a take whose DELETE committed before the connection broke must not
        # be run again (its value is gone; the caller sees a failure, never a second use).
        row = await self._run("take", lambda c: c.fetchrow(sql.TAKE, namespace, key))
        if row is None or not row["live"]:
            return None
        return _decode(row["value"])

    async def delete(self, namespace: str, key: str) -> None:
        await self._run("delete", lambda c: c.execute(sql.DELETE, namespace, key), retry=True)

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        # Not retried either: an increment counted twice would refuse a client early.
        count = await self._run("incr", lambda c: c.fetchval(sql.INCR, namespace, key, ttl))
        return int(count)

    async def add_member(self, namespace: str, key: str, member: str, ttl: float) -> None:
        await self._run("add_member", lambda c: c.execute(sql.ADD_MEMBER, namespace, key,
                                                          member, ttl), retry=True)

    async def members(self, namespace: str, key: str) -> list[str]:
        rows = await self._run("members", lambda c: c.fetch(sql.MEMBERS, namespace, key),
                               retry=True)
        return [row["member"] for row in rows]

    async def remove_member(self, namespace: str, key: str, member: str) -> None:
        await self._run("remove_member", lambda c: c.execute(sql.REMOVE_MEMBER, namespace, key,
                                                             member), retry=True)

    async def ping(self) -> bool:
        try:
            await self._run("ping", lambda c: c.fetchval(sql.PING), retry=True)
        except StoreUnavailable as e:
            log.warning("store not ready: %s", e)
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                self._pool.terminate()

    # -- expiry ----------------------------------------------------------------------------

    async def sweep(self) -> tuple[int, bool]:
        """Delete expired rows, a bounded number of batches per table: the rows deleted, and
        whether some may be left (a table gave full batches up to the bound)."""
        deleted, unfinished = 0, False
        for statement in sql.SWEEPS.values():
            for batch in range(SWEEP_BATCHES):
                status = await self._run("sweep", functools.partial(_sweep_batch, statement))
                count = int(str(status).rsplit(" ", 1)[-1])
                deleted += count
                if count < SWEEP_BATCH:
                    break
                unfinished = unfinished or batch == SWEEP_BATCHES - 1
        return deleted, unfinished

    async def _sweep_forever(self) -> None:
        pause = self._sweep_interval
        while True:
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))
            pause = self._sweep_interval
            try:
                deleted, unfinished = await self.sweep()
            except StoreUnavailable as e:
                log.debug("store: sweep skipped: %s", e)
                continue
            if unfinished:  # rows expire faster than a sweep a period deletes: keep up
                pause = min(SWEEP_AGAIN, self._sweep_interval)
            if deleted:
                log.debug("store: swept %d expired rows", deleted)

    # -- connections -----------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self._ready_pool()
        except StoreUnavailable as e:
            log.warning("store not ready: %s", e)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ready_pool(self) -> asyncpg.Pool:
        """The pool, once the schema is migrated; connects and migrates on first use."""
        if self._ready and self._pool is not None:
            return self._pool
        if self._closed:
            raise StoreUnavailable("postgresql: the store is closed")
        if self._lock is None:
            self._lock = asyncio.Lock()
        # Requests arriving while another one connects and migrates wait for it, but no longer
        # than one operation may take: queued behind a dead server, each would otherwise wait
        # for every connection attempt before its own.
        try:
            async with asyncio.timeout(self.connect_timeout + self.command_timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreUnavailable("postgresql: still connecting to the database") from None
        try:
            if self._pool is None:
                with _unavailable("connect"):
                    self._pool = await asyncpg.create_pool(
                        self.dsn, password=self._password, min_size=0,
                        max_size=self._max_connections,
                        max_inactive_connection_lifetime=IDLE_CONNECTION_LIFETIME,
                        timeout=self.connect_timeout, command_timeout=self.command_timeout,
                        reset=reset_connection,
                        server_settings={
                            "application_name": "oauth-gateway",
                            # The server gives up too, so that nothing runs on after we left.
                            "statement_timeout": str(round(self.command_timeout * 1000)),
                            "idle_in_transaction_session_timeout":
                                str(round(self.command_timeout * 10_000)),
                        })
            if not self._ready:
                await self._run_on(self._pool, "migrate", migrate)
                self._ready = True
                if not self._closed:
                    self._spawn(self._sweep_forever())
        finally:
            self._lock.release()
        return self._pool

    async def _run(self, operation: str, statement: Callable[[asyncpg.Connection], Awaitable[T]],
                   *, retry: bool = False) -> T:
        pool = await self._ready_pool()
        try:
            return await self._run_on(pool, operation, statement, lost=True)
        except _Lost as lost:
            # The server went away (a restart, a failover, an administrator): the other idle
            # connections are as dead as this one, and are replaced when next acquired.
            await pool.expire_connections()
            if not retry:
                raise lost.unavailable from lost.__cause__
            log.info("store: %s retried on a new connection (%s)", operation, lost.unavailable)
        return await self._run_on(pool, operation, statement)

    async def _run_on(self, pool: asyncpg.Pool, operation: str,
                      statement: Callable[[asyncpg.Connection], Awaitable[T]],
                      *, lost: bool = False) -> T:
        """`statement` on a pooled connection; `lost`: a lost connection raises _Lost."""
        try:
            with _unavailable(operation):
                async with pool.acquire(timeout=POOL_WAIT + self.connect_timeout) as connection:
                    try:
                        return await statement(connection)
                    except CONNECTION_BROKEN:
                        connection.terminate()
                        raise
        except StoreUnavailable as e:
            if lost and isinstance(e.__cause__, CONNECTION_LOST):
                raise _Lost(e) from e.__cause__
            raise


async def _sweep_batch(statement: str, connection: asyncpg.Connection) -> str:
    return str(await connection.execute(statement, SWEEP_BATCH))


class _Lost(Exception):
    def __init__(self, unavailable: StoreUnavailable) -> None:
        super().__init__(str(unavailable))
        self.unavailable = unavailable


async def reset_connection(connection: asyncpg.Connection) -> None:
    """The pool's reset between two uses. Nothing of ours outlives a statement but an
    interrupted transaction (no session settings, cursors, LISTEN or session advisory locks),
    so asyncpg's default reset, a round trip on every release, would only halve throughput."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def migrate(connection: asyncpg.Connection) -> list[sql.Migration]:
    """Apply the migrations this database lacks, each once, each in its own transaction under
    the advisory lock (replicas starting together wait for each other); the ones applied."""
    applied: list[sql.Migration] = []
    timeout = MIGRATION_TIMEOUT
    while True:
        async with connection.transaction():
            await connection.execute(f"SET LOCAL statement_timeout = {round(timeout * 1000)}",
                                     timeout=timeout)
            await connection.execute(sql.LOCK, sql.MIGRATION_LOCK, timeout=timeout)
            # Created only when missing: a database prepared by an administrator needs no
            # CREATE privilege on the database afterwards.
            if not await connection.fetchval(sql.HAS_SCHEMA, timeout=timeout):
                await connection.execute(sql.CREATE_SCHEMA, timeout=timeout)
            version = int(await connection.fetchval(sql.APPLIED_VERSION, timeout=timeout))
            if version > sql.LATEST_VERSION:
                raise SchemaTooNew(f"the database's schema is version {version}, newer than "
                                   f"this gateway's ({sql.LATEST_VERSION}): upgrade the gateway")
            pending = [m for m in sql.MIGRATIONS if m.version > version]
            if not pending:
                return applied
            migration = pending[0]
            await connection.execute(migration.sql, timeout=timeout)
            await connection.execute(sql.RECORD_VERSION, migration.version,
                                     migration.description, timeout=timeout)
        log.info("store: schema migrated to version %d (%s)", migration.version,
                 migration.description)
        applied.append(migration)


async def migrate_database(url: str, *, password: str | None = None) -> list[sql.Migration]:
    """`oauth-gateway store migrate`: one connection, the pending migrations, closed."""
    dsn, options = split_options(url)
    timeout = float(options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    with _unavailable("connect"):
        connection = await asyncpg.connect(dsn, password=password, timeout=timeout)
    try:
        with _unavailable("migrate"):
            return await migrate(connection)
    finally:
        await connection.close(timeout=CLOSE_TIMEOUT)


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """The URL as asyncpg takes it (the libpq options it knows), and the gateway's own options
    (`connect_timeout`, `command_timeout`, `max_connections`), already checked by location.py.
    asyncpg would pass an option it does not know to the server as a setting."""
    parts = urlsplit(url)
    ours = {"connect_timeout", "command_timeout", "max_connections"}
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {name: value for name, value in query if name in ours}
    kept = urlencode([(name, value) for name, value in query if name not in ours])
    return urlunsplit(parts._replace(scheme="postgresql", query=kept)), options


@contextmanager
def _unavailable(operation: str) -> Iterator[None]:
    """The one place asyncpg's exceptions (and socket errors, timeouts) become
    StoreUnavailable. Their messages name the host, user and database, never the password."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
            TimeoutError, SchemaTooNew) as e:
        reason = str(e) or "timed out"
        raise StoreUnavailable(f"postgresql {operation}: {type(e).__name__}: {reason}"[:300]
                               ) from e


def _encode(value: dict[str, Any]) -> str:
    """JSON text for the database, UTF-8 where it can be: a lone surrogate (a provider's claim
    may hold one) cannot be encoded, so such a value is written with ASCII escapes, which
    decode back to the very same string."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = json.dumps(value, separators=(",", ":"))
    return text


def _decode(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StoreUnavailable("postgresql: a stored value is not a JSON object")
    return value
