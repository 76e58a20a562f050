"""SQLite store: one file on local disk that survives restarts and needs no server.

The embedded default for a single instance (several worker processes on one host may share the
file: SQLite's locking in WAL mode serialises their writes). The stdlib `sqlite3` module blocks,
so every call runs in one dedicated worker thread that owns the connection: the event loop never
waits on the disk, and the single thread serialises this process's operations.

Entries carry an absolute expiry in wall-clock seconds (so it means the same after a restart).
Expired rows are invisible at once and deleted in bounded batches: every `sweep_every` writes,
when a bounded namespace is full, and on `ping` (the readiness probe) once `SWEEP_INTERVAL` has
passed, so that an idle gateway does not keep personal data on disk long after it expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from gateway.store import StoreFull, StoreUnavailable

log = logging.getLogger("gateway.store")
T = TypeVar("T")

SCHEMA_VERSION = 1
SWEEP_EVERY = 100  # writes between two sweeps
SWEEP_BATCH = 1000  # rows one sweep deletes at most, so that a sweep never holds the lock long
SWEEP_INTERVAL = 60.0  # seconds after which an idle store sweeps when pinged
BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock
BUSY_RETRY_SECONDS = 0.01  # between two tries to prepare a file another process holds
FILE_MODE = 0o600  # the file holds session records (names, emails): the owner only

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,    -- JSON
    expires REAL NOT NULL,  -- Unix time, seconds
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires);
-- Rows per namespace (expired but unswept ones included), kept by triggers so that a bounded
-- namespace is checked in constant time, across every process that shares the file.
CREATE TABLE IF NOT EXISTS namespace_sizes (
    namespace TEXT PRIMARY KEY,
    entries INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entry_added AFTER INSERT ON entries BEGIN
    INSERT OR IGNORE INTO namespace_sizes VALUES (new.namespace, 0);
    UPDATE namespace_sizes SET entries = entries + 1 WHERE namespace = new.namespace;
END;
CREATE TRIGGER IF NOT EXISTS entry_removed AFTER DELETE ON entries BEGIN
    UPDATE namespace_sizes SET entries = entries - 1 WHERE namespace = old.namespace;
END;
-- Sets (add_member, members): one row a member, each with its own expiry.
CREATE TABLE IF NOT EXISTS members (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (namespace, key, member)
);
CREATE INDEX IF NOT EXISTS members_by_expiry ON members (expires);
"""


class SqliteStore:
    """The `Store` interface over one SQLite file.

    `namespace_limits` bounds the entries of some namespaces (login transactions: a flood of
    unfinished logins); other namespaces (sessions) are bounded by the disk only. Opening the
    file happens here, synchronously, so that a wrong path fails at start-up.
    """

    def __init__(self, path: str | Path, *, namespace_limits: Mapping[str, int] | None = None,
                 clock: Callable[[], float] = time.time, sweep_every: int = SWEEP_EVERY) -> None:
        self.path = Path(path)
        self.clock = clock
        self._limits = dict(namespace_limits or {})
        self._sweep_every = sweep_every
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        # Touched only by the worker thread:
        self._db: sqlite3.Connection | None = None
        self._writes_since_sweep = 0
        self._last_sweep = 0.0
        self._closed = False
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    # -- the Store interface (event loop side) ---------------------------------------------

    async def put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        await self._call(self._put, namespace, key, value, ttl)

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        return await self._call(self._get, namespace, key)

    async def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        return await self._call(self._take, namespace, key)

    async def delete(self, namespace: str, key: str) -> None:
        await self._call(self._delete, namespace, key)

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        return await self._call(self._incr, namespace, key, ttl)

    async def add_member(self, namespace: str, key: str, member: str, ttl: float) -> None:
        await self._call(self._add_member, namespace, key, member, ttl)

    async def members(self, namespace: str, key: str) -> list[str]:
        return await self._call(self._members, namespace, key)

    async def remove_member(self, namespace: str, key: str, member: str) -> None:
        await self._call(self._remove_member, namespace, key, member)

    async def ping(self) -> bool:
        try:
            await self._call(self._ping)
        except StoreUnavailable as e:
            log.warning("store not ready: %s", e)
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)  # the worker is idle now: this returns at once

    async def _call(self, operation: Callable[..., T], *args: Any) -> T:
        """Run `operation` in the worker thread. The one place sqlite3's errors are mapped."""
        if self._closed:
            raise StoreUnavailable(f"sqlite {self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, operation, *args)
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(f"sqlite {self.path}: {type(e).__name__}: {e}") from e

    # -- the worker thread's side -----------------------------------------------------------

    def _open(self) -> None:
        try:
            # Created with mode 0600 before SQLite opens it; SQLite gives its -wal and -shm
            # files the database file's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE))
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
            if mode & 0o077:
                log.warning("store: %s was readable by others (mode %o); now 0600", self.path,
                            mode)
                os.chmod(self.path, FILE_MODE)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                self._prepare_when_free(db)
            except BaseException:
                db.close()
                raise
        except (sqlite3.Error, OSError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {reason}") from e
        self._db = db
        self._last_sweep = self.clock()

    def _prepare_when_free(self, db: sqlite3.Connection) -> None:
        """`_prepare`, retried while another process holds the file (up to BUSY_TIMEOUT).
        Switching a new file to WAL does not wait on SQLite's busy handler: two workers
        starting together on a fresh file failed with "database is locked" one time in three."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._prepare(db)
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
            time.sleep(BUSY_RETRY_SECONDS)

    def _prepare(self, db: sqlite3.Connection) -> None:
        journal = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if journal != "wal":
            log.warning("store: %s cannot use WAL mode (journal mode %s)", self.path, journal)
        # With WAL, NORMAL loses no committed write on a process crash, only on a power cut
        # (the last transactions): an acceptable trade for short-lived logins and sessions.
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this gateway's")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the store is closed")
        return self._db

    @contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE: take the write lock first, so that a check and the write after it are one
        # atomic step for every process sharing the file.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        db = self._connection()
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        now = self.clock()
        with self._transaction(db):
            limit = self._limits.get(namespace)
            if limit is not None and self._is_full(db, namespace, key, limit):
                self._sweep(db, now)
                if self._is_full(db, namespace, key, limit):
                    raise StoreFull(namespace)
            db.execute(
                "INSERT INTO entries (namespace, key, value, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = excluded.value, expires = excluded.expires",
                (namespace, key, text, now + ttl),
            )
        self._writes_since_sweep += 1
        if self._writes_since_sweep >= self._sweep_every:
            self._sweep(db, now)

    def _is_full(self, db: sqlite3.Connection, namespace: str, key: str, limit: int) -> bool:
        row = db.execute("SELECT entries FROM namespace_sizes WHERE namespace = ?",
                         (namespace,)).fetchone()
        if row is None or row[0] < limit:
            return False
        # Replacing an entry that is already there adds nothing.
        return db.execute("SELECT 1 FROM entries WHERE namespace = ? AND key = ?",
                          (namespace, key)).fetchone() is None

    def _get(self, namespace: str, key: str) -> dict[str, Any] | None:
        row = self._connection().execute(
            "SELECT value FROM entries WHERE namespace = ? AND key = ? AND expires > ?",
            (namespace, key, self.clock()),
        ).fetchone()
        return None if row is None else _decode(row[0])

    def _take(self, namespace: str, key: str) -> dict[str, Any] | None:
        db = self._connection()
        with self._transaction(db):
            # One statement reads and deletes (RETURNING, SQLite >= 3.35): whichever process
            # or task runs it first gets the row, every other one gets nothing.
            rows = db.execute(
                "DELETE FROM entries WHERE namespace = ? AND key = ? RETURNING value, expires",
                (namespace, key),
            ).fetchall()
        if not rows or rows[0][1] <= self.clock():
            return None
        return _decode(rows[0][0])

    def _delete(self, namespace: str, key: str) -> None:
        self._connection().execute("DELETE FROM entries WHERE namespace = ? AND key = ?",
                                   (namespace, key))

    def _incr(self, namespace: str, key: str, ttl: float) -> int:
        # One UPSERT statement: atomic for every process sharing the file. The value column
        # holds the count as JSON (a number); an expired counter starts again at 1.
        now = self.clock()
        row = self._connection().execute(
            "INSERT INTO entries (namespace, key, value, expires) VALUES (?, ?, '1', ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = CASE WHEN entries.expires <= ? THEN '1' "
            "ELSE CAST(CAST(entries.value AS INTEGER) + 1 AS TEXT) END, "
            "expires = CASE WHEN entries.expires <= ? THEN excluded.expires "
            "ELSE entries.expires END "
            "RETURNING value",
            (namespace, key, now + ttl, now, now),
        ).fetchone()
        self._writes_since_sweep += 1
        if self._writes_since_sweep >= self._sweep_every:
            self._sweep(self._connection(), now)
        return int(row[0])

    def _add_member(self, namespace: str, key: str, member: str, ttl: float) -> None:
        self._connection().execute(
            "INSERT INTO members (namespace, key, member, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key, member) DO UPDATE SET expires = excluded.expires",
            (namespace, key, member, self.clock() + ttl))

    def _members(self, namespace: str, key: str) -> list[str]:
        rows = self._connection().execute(
            "SELECT member FROM members WHERE namespace = ? AND key = ? AND expires > ?",
            (namespace, key, self.clock())).fetchall()
        return [row[0] for row in rows]

    def _remove_member(self, namespace: str, key: str, member: str) -> None:
        self._connection().execute(
            "DELETE FROM members WHERE namespace = ? AND key = ? AND member = ?",
            (namespace, key, member))

    def _ping(self) -> None:
        db = self._connection()
        db.execute("SELECT 1 FROM namespace_sizes LIMIT 1").fetchall()
        now = self.clock()
        if now - self._last_sweep >= SWEEP_INTERVAL:
            self._sweep(db, now)

    def _sweep(self, db: sqlite3.Connection, now: float) -> int:
        deleted = db.execute(
            "DELETE FROM entries WHERE rowid IN "
            "(SELECT rowid FROM entries WHERE expires <= ? ORDER BY expires LIMIT ?)",
            (now, SWEEP_BATCH),
        ).rowcount
        db.execute("DELETE FROM members WHERE rowid IN "
                   "(SELECT rowid FROM members WHERE expires <= ? ORDER BY expires LIMIT ?)",
                   (now, SWEEP_BATCH))
        self._writes_since_sweep = 0
        self._last_sweep = now
        return deleted

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _decode(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise sqlite3.DataError("a stored value is not a JSON object")
    return value


def _is_busy(error: sqlite3.OperationalError) -> bool:
    # SQLITE_BUSY and its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...) share the low byte.
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
