"""One contract for the store backends (memory, SQLite in a temporary file, the real Redis on
127.0.0.1:6379, Redis with failover: a Sentinel-watched master and a Cluster of the tests' own,
and the real PostgreSQL on 127.0.0.1:5432 in a database of the test run's own), then what only
SQLite (a file that outlives the process, never blocking the event loop) and Redis (shared by
replicas, failing fast and recovering) promise; PostgreSQL's own promises are in
test_store_postgres.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_topology import PASSWORD, SENTINEL_PASSWORD
from store_backends import (
    REDIS_URL,
    PrivateRedis,
    delete_prefix,
    postgres_url,
    require_redis,
    unique_prefix,
)

from gateway.store import Store, StoreFull, StoreUnavailable
from gateway.store.memory import MemoryStore
from gateway.store.postgres import PostgresStore
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore

BOUNDED = "login-tx"  # the namespace a store is opened with a limit for
TTL = 30.0  # long enough never to expire during a test
SHORT_TTL = 0.3
EXPIRY_DEADLINE = 5.0

Scenario = Callable[[Store], Awaitable[None]]


@dataclass
class Backend:
    name: str
    open_store: Callable[[int | None], Store]  # called inside the event loop; arg: BOUNDED limit

    def run(self, scenario: Scenario, *, limit: int | None = None) -> None:
        """Open a store, run the scenario on it in a fresh event loop, close the store."""
        async def main() -> None:
            store = self.open_store(limit)
            try:
                await scenario(store)
            finally:
                await store.close()
        asyncio.run(main())


@pytest.fixture(params=["memory", "sqlite", "redis", "sentinel", "cluster", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        url = postgres_url(request.getfixturevalue("pg_database"))
        yield Backend("postgres", lambda limit: PostgresStore(url,
                                                              namespace_limits=_limits(limit)))
    elif request.param == "memory":
        yield Backend("memory", lambda limit: MemoryStore(max_entries=limit or 200_000))
    elif request.param == "sqlite":
        path = tmp_path / "gateway.db"
        yield Backend("sqlite", lambda limit: SqliteStore(path, namespace_limits=_limits(limit)))
    elif request.param == "redis":
        require_redis()
        prefix = unique_prefix()
        yield Backend("redis", lambda limit: RedisStore(REDIS_URL, key_prefix=prefix,
                                                        namespace_limits=_limits(limit)))
        delete_prefix(prefix)
    else:
        # Redis with failover (tests/redis_topology.py, started once for the session): the
        # master the sentinels name, every write acknowledged by a replica (SECURITY T7); and
        # a Cluster of three masters, the bounded namespace's keys in one hash slot.
        topology = request.getfixturevalue(f"{request.param}_topology")
        prefix = unique_prefix()
        acks = 1 if request.param == "sentinel" else 0
        yield Backend(request.param, lambda limit: RedisStore(
            topology.url(), password=PASSWORD, sentinel_password=SENTINEL_PASSWORD,
            key_prefix=prefix, namespace_limits=_limits(limit), min_replicas_ack=acks))
        topology.delete_prefix(prefix)


def _limits(limit: int | None) -> dict[str, int] | None:
    return {BOUNDED: limit} if limit else None


async def _until_gone(store: Store, namespace: str, key: str) -> None:
    deadline = time.monotonic() + EXPIRY_DEADLINE
    while await store.get(namespace, key) is not None:
        assert time.monotonic() < deadline, "the entry did not expire"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# The contract


def test_put_then_get_round_trips(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.put("session", "k", {"sub": "google:1", "n": 2}, TTL)
        assert await store.get("session", "k") == {"sub": "google:1", "n": 2}
        assert await store.get("session", "k") == {"sub": "google:1", "n": 2}  # get keeps it
    backend.run(scenario)


def test_get_of_an_unknown_key_is_none(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.get("session", "nothing-here") is None
        assert await store.take("session", "nothing-here") is None
    backend.run(scenario)


def test_entry_expires_after_its_ttl(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        started = time.monotonic()
        await store.put("session", "k", {"v": 1}, SHORT_TTL)
        assert await store.get("session", "k") == {"v": 1}
        await _until_gone(store, "session", "k")
        assert time.monotonic() - started >= SHORT_TTL - 0.05  # not before its time
        assert await store.take("session", "k") is None
    backend.run(scenario)


def test_take_returns_the_value_once(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        for namespace in ("session", BOUNDED):
            await store.put(namespace, "state", {"v": 1}, TTL)
            assert await store.take(namespace, "state") == {"v": 1}
            assert await store.take(namespace, "state") is None
            assert await store.get(namespace, "state") is None
    backend.run(scenario, limit=10)


def test_take_of_an_expired_entry_is_none(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.put(BOUNDED, "state", {"v": 1}, SHORT_TTL)
        await _until_gone(store, BOUNDED, "state")
        assert await store.take(BOUNDED, "state") is None
    backend.run(scenario, limit=10)


def test_take_is_atomic_under_concurrency(backend: Backend) -> None:
    """50 concurrent takes of one key: exactly one winner, in bounded and plain namespaces."""
    async def scenario(store: Store) -> None:
        for round_ in range(5):
            for namespace in ("session", BOUNDED):
                key = f"state-{round_}"
                await store.put(namespace, key, {"round": round_}, TTL)
                results = await asyncio.gather(*(store.take(namespace, key) for _ in range(50)))
                winners = [r for r in results if r is not None]
                assert winners == [{"round": round_}], (namespace, results)
    backend.run(scenario, limit=100)


def test_delete_removes_the_entry(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        for namespace in ("session", BOUNDED):
            await store.put(namespace, "k", {"v": 1}, TTL)
            await store.delete(namespace, "k")
            assert await store.get(namespace, "k") is None
            assert await store.take(namespace, "k") is None
            await store.delete(namespace, "k")  # deleting what is not there is no error
    backend.run(scenario, limit=10)


def test_put_overwrites_the_value_and_the_ttl(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.put("session", "k", {"v": 1}, TTL)
        await store.put("session", "k", {"v": 2, "extra": True}, SHORT_TTL)
        assert await store.get("session", "k") == {"v": 2, "extra": True}
        await _until_gone(store, "session", "k")  # the new, short TTL applies
    backend.run(scenario)


def test_namespaces_are_isolated(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.put("session", "same-key", {"ns": "session"}, TTL)
        await store.put(BOUNDED, "same-key", {"ns": BOUNDED}, TTL)
        assert await store.take(BOUNDED, "same-key") == {"ns": BOUNDED}
        assert await store.get("session", "same-key") == {"ns": "session"}
        await store.delete("session", "same-key")
        await store.put(BOUNDED, "same-key", {"ns": BOUNDED}, TTL)
        assert await store.get(BOUNDED, "same-key") == {"ns": BOUNDED}
    backend.run(scenario, limit=10)


def test_json_values_with_unicode_round_trip(backend: Backend) -> None:
    value: dict[str, Any] = {
        "name": "Zoë Ångström 李小龍 🦊", "email": "zoë@exämple.org",
        "claims": {"picture": "https://x/ä.png", "list": [1, 2.5, None, True, "ß"]},
        "quote": 'a "quoted" \\ back\nslash', "empty": {}, "zero": 0, "neg": -1.25e-3,
    }

    async def scenario(store: Store) -> None:
        await store.put("session", "ключ-🔑", value, TTL)
        assert await store.get("session", "ключ-🔑") == value
        assert await store.take("session", "ключ-🔑") == value
    backend.run(scenario)


def test_stored_value_is_a_copy(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        value: dict[str, Any] = {"list": [1]}
        await store.put("session", "k", value, TTL)
        value["list"].append(2)
        got = await store.get("session", "k")
        assert got == {"list": [1]}
        assert got is not None
        got["list"].append(3)
        assert await store.get("session", "k") == {"list": [1]}
    backend.run(scenario)


def test_a_set_holds_its_members_once_each_until_removed(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.members("session-of", "u1") == []
        for member in ("a", "b", "a"):
            await store.add_member("session-of", "u1", member, TTL)
        assert sorted(await store.members("session-of", "u1")) == ["a", "b"]
        await store.remove_member("session-of", "u1", "a")
        await store.remove_member("session-of", "u1", "never-added")
        assert await store.members("session-of", "u1") == ["b"]
        assert await store.members("session-of", "u2") == []  # sets are apart
        assert await store.members("other-sets", "u1") == []  # so are namespaces
    backend.run(scenario)


def test_each_member_of_a_set_expires_on_its_own(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.add_member("session-of", "u1", "short", SHORT_TTL)
        await store.add_member("session-of", "u1", "long", TTL)
        deadline = time.monotonic() + EXPIRY_DEADLINE
        while "short" in await store.members("session-of", "u1"):
            assert time.monotonic() < deadline, "the member did not expire"
            await asyncio.sleep(0.02)
        assert await store.members("session-of", "u1") == ["long"]
        await store.add_member("session-of", "u1", "long", SHORT_TTL)  # re-added: new expiry
        await store.add_member("session-of", "u1", "short", TTL)
        while "long" in await store.members("session-of", "u1"):
            assert time.monotonic() < deadline, "the re-added member kept its old expiry"
            await asyncio.sleep(0.02)
        assert await store.members("session-of", "u1") == ["short"]
    backend.run(scenario)


def test_ping_is_true_when_the_store_serves(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.ping() is True
    backend.run(scenario)


def test_bounded_namespace_refuses_new_entries_when_full(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        for i in range(3):
            await store.put(BOUNDED, f"tx-{i}", {"i": i}, TTL)
        with pytest.raises(StoreFull):
            await store.put(BOUNDED, "tx-3", {"i": 3}, TTL)
        await store.put(BOUNDED, "tx-0", {"i": 0, "again": True}, TTL)  # replacing adds nothing
        assert await store.take(BOUNDED, "tx-1") == {"i": 1}  # a finished login makes room
        await store.put(BOUNDED, "tx-3", {"i": 3}, TTL)
        await store.delete(BOUNDED, "tx-2")  # and so does a deleted one
        await store.put(BOUNDED, "tx-4", {"i": 4}, TTL)
        assert await store.get(BOUNDED, "tx-4") == {"i": 4}
    backend.run(scenario, limit=3)


def test_expired_entries_make_room_in_a_full_namespace(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.put(BOUNDED, "old-0", {}, SHORT_TTL)
        await store.put(BOUNDED, "old-1", {}, SHORT_TTL)
        with pytest.raises(StoreFull):
            await store.put(BOUNDED, "new", {}, TTL)
        await _until_gone(store, BOUNDED, "old-0")
        await _until_gone(store, BOUNDED, "old-1")
        await store.put(BOUNDED, "new", {"v": 1}, TTL)
        assert await store.get(BOUNDED, "new") == {"v": 1}
    backend.run(scenario, limit=2)


def test_H5_incr_counts_from_one(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert [await store.incr("ratelimit", "login:1:ip", TTL) for _ in range(3)] == [1, 2, 3]
        assert await store.incr("ratelimit", "login:1:other", TTL) == 1  # per key
        assert await store.incr("other-counters", "login:1:ip", TTL) == 1  # per namespace
    backend.run(scenario)


def test_H5_incr_is_atomic_under_concurrency(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        counts = await asyncio.gather(*(store.incr("ratelimit", "k", TTL) for _ in range(50)))
        assert sorted(counts) == list(range(1, 51))
    backend.run(scenario)


def test_H5_incr_counter_expires_after_its_ttl_and_starts_again(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        started = time.monotonic()
        assert await store.incr("ratelimit", "k", SHORT_TTL) == 1
        assert await store.incr("ratelimit", "k", SHORT_TTL) == 2
        deadline = started + EXPIRY_DEADLINE
        while await store.incr("ratelimit", "k", SHORT_TTL) != 1:
            assert time.monotonic() < deadline, "the counter did not expire"
            await asyncio.sleep(0.05)
        assert time.monotonic() - started >= SHORT_TTL - 0.05
    backend.run(scenario)


def test_H5_incr_does_not_extend_the_window(backend: Backend) -> None:
    """A fixed window: incrementing within it never pushes its end further."""
    async def scenario(store: Store) -> None:
        started = time.monotonic()
        assert await store.incr("ratelimit", "k", 1.0) == 1
        count = 1
        while True:
            count_now = await store.incr("ratelimit", "k", 1.0)
            if count_now == 1:
                break
            assert count_now == count + 1
            count = count_now
            assert time.monotonic() - started < 1.0 + EXPIRY_DEADLINE / 2, "window extended"
            await asyncio.sleep(0.1)
        assert count >= 2
    backend.run(scenario)


# ---------------------------------------------------------------------------------------------
# The persistent backends bound only the login namespace: sessions are not refused


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_persistent_stores_bound_only_the_bounded_namespace(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    prefix = unique_prefix()
    if kind == "redis":
        require_redis()
    url = postgres_url(request.getfixturevalue("pg_database")) if kind == "postgres" else ""

    async def scenario() -> None:
        limits = {BOUNDED: 1}
        store: Store = (SqliteStore(tmp_path / "gw.db", namespace_limits=limits)
                        if kind == "sqlite" else
                        PostgresStore(url, namespace_limits=limits) if kind == "postgres" else
                        RedisStore(REDIS_URL, key_prefix=prefix, namespace_limits=limits))
        try:
            await store.put(BOUNDED, "tx", {}, TTL)
            for i in range(5):
                await store.put("session", f"s-{i}", {}, TTL)
            with pytest.raises(StoreFull):
                await store.put(BOUNDED, "tx-2", {}, TTL)
        finally:
            await store.close()
    try:
        asyncio.run(scenario())
    finally:
        if kind == "redis":
            delete_prefix(prefix)


# ---------------------------------------------------------------------------------------------
# SQLite


def test_sqlite_entries_survive_closing_and_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"

    async def before_restart() -> None:
        store = SqliteStore(path)
        await store.put("session", "s", {"sub": "google:1", "name": "Zoë"}, TTL)
        await store.put(BOUNDED, "state", {"v": 1}, TTL)
        await store.close()

    async def after_restart() -> None:
        store = SqliteStore(path, namespace_limits={BOUNDED: 1})
        assert await store.get("session", "s") == {"sub": "google:1", "name": "Zoë"}
        with pytest.raises(StoreFull):  # the namespace sizes survived too
            await store.put(BOUNDED, "other", {}, TTL)
        assert await store.take(BOUNDED, "state") == {"v": 1}
        await store.close()

    asyncio.run(before_restart())
    asyncio.run(after_restart())


def test_sqlite_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    old_umask = os.umask(0o022)
    try:
        async def scenario() -> None:
            store = SqliteStore(path)
            await store.put("session", "s", {"v": 1}, TTL)
            files = [p for p in tmp_path.iterdir() if p.name.startswith("gateway.db")]
            assert {p.name for p in files} >= {"gateway.db", "gateway.db-wal"}
            for file in files:  # the WAL and shared-memory files too
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
            await store.close()
        asyncio.run(scenario())
    finally:
        os.umask(old_umask)


def test_sqlite_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    path.touch()
    path.chmod(0o644)
    asyncio.run(SqliteStore(path).close())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sqlite_uses_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    asyncio.run(SqliteStore(path).close())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_calls_do_not_block_the_event_loop(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQL statement the store runs, counted by the thread that runs it: none on the
    event loop's thread (a count, not a stopwatch, so a busy machine cannot fail it)."""
    threads: Counter[int] = Counter()
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(lambda _statement: threads.update([threading.get_ident()]))
        return db

    monkeypatch.setattr(sqlite3, "connect", traced_connect)

    async def scenario() -> int:
        store = SqliteStore(tmp_path / "gateway.db", namespace_limits={BOUNDED: 10})
        for i in range(20):
            await store.put("session", f"k-{i}", {"blob": "x" * 10_000}, TTL)
            await store.put(BOUNDED, f"k-{i % 5}", {"v": i}, TTL)
            assert await store.get("session", f"k-{i}") is not None
            await store.take(BOUNDED, f"k-{i % 5}")
            await store.incr("ratelimit", "k", TTL)
            await store.delete("session", f"k-{i}")
        assert await store.ping()
        await store.close()
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert sum(threads.values()) >= 120, "the statements were not traced"
    assert threads[loop_thread] == 0, f"{threads[loop_thread]} statements ran on the event loop"


def test_sqlite_sweeps_expired_rows_from_the_file(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / "gateway.db"

    def rows() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    async def scenario() -> None:
        store = SqliteStore(path, clock=lambda: now[0], sweep_every=10)
        for i in range(9):
            await store.put("session", f"old-{i}", {"name": "personal data"}, 60)
        now[0] += 61
        assert rows() == 9  # expired (invisible) but not yet swept
        assert await store.get("session", "old-0") is None
        await store.put("session", "new", {}, 60)  # the 10th write sweeps
        assert rows() == 1
        for i in range(3):
            await store.put("session", f"idle-{i}", {}, 60)
        now[0] += 3600  # an idle store sweeps when the readiness probe pings it
        assert await store.ping()
        assert rows() == 0
        await store.close()
    asyncio.run(scenario())


def test_sqlite_take_is_atomic_across_two_stores_on_one_file(tmp_path: Path) -> None:
    """Two worker processes of one host share the file: a state still works once."""
    path = tmp_path / "gateway.db"

    async def scenario() -> None:
        one, two = SqliteStore(path), SqliteStore(path)
        for i in range(10):
            await one.put(BOUNDED, f"state-{i}", {"i": i}, TTL)
            results = await asyncio.gather(*(store.take(BOUNDED, f"state-{i}")
                                             for _ in range(25) for store in (one, two)))
            assert [r for r in results if r is not None] == [{"i": i}]
        await one.close()
        await two.close()
    asyncio.run(scenario())


def test_sqlite_workers_starting_together_on_a_fresh_file_both_open_it(tmp_path: Path) -> None:
    """`serve --workers 2` on a new file: both processes switch it to WAL at the same moment,
    which SQLite refuses ("database is locked") without waiting on its busy handler; one
    worker in three failed to start. Forked pairs, each released at one instant."""
    failures = []
    for round_ in range(40):
        path = tmp_path / f"gateway-{round_}.db"
        start = time.monotonic() + 0.02
        pids = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:  # the child: open, report by exit status, never return into pytest
                status = 1
                try:
                    while time.monotonic() < start:
                        pass
                    SqliteStore(path)
                    status = 0
                finally:
                    os._exit(status)
            pids.append(pid)
        failures += [pid for pid in pids if os.waitpid(pid, 0)[1] != 0]
    assert failures == []


def test_sqlite_unusable_path_fails_when_opened(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no-such-dir"):
        SqliteStore(tmp_path / "no-such-dir" / "gateway.db")
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("x" * 4096)
    with pytest.raises(StoreUnavailable, match=r"notes\.txt"):
        SqliteStore(not_a_database)


def test_sqlite_closed_store_is_unavailable(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "gateway.db")
        await store.close()
        await store.close()  # twice is fine
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable):
            await store.get("session", "k")
    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# Redis


def test_redis_entries_are_json_under_the_prefix_with_a_ttl(redis_prefix: str) -> None:
    async def scenario() -> None:
        store = RedisStore(REDIS_URL, key_prefix=redis_prefix)
        await store.put("session", "k", {"name": "Zoë"}, 90)
        await store.close()
    asyncio.run(scenario())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"{redis_prefix}:session:k"
        assert client.get(key) == '{"name":"Zoë"}'.encode()
        assert 80_000 < client.pttl(key) <= 90_000
    finally:
        client.close()


def test_redis_two_replicas_see_each_others_writes_and_takes(redis_prefix: str) -> None:
    async def scenario() -> None:
        one = RedisStore(REDIS_URL, key_prefix=redis_prefix, namespace_limits={BOUNDED: 10})
        two = RedisStore(REDIS_URL, key_prefix=redis_prefix, namespace_limits={BOUNDED: 10})
        await one.put("session", "s", {"v": 1}, TTL)
        assert await two.get("session", "s") == {"v": 1}
        await two.put(BOUNDED, "state", {"v": 2}, TTL)
        assert await one.take(BOUNDED, "state") == {"v": 2}
        assert await two.get(BOUNDED, "state") is None
        assert await two.take(BOUNDED, "state") is None
        await two.delete("session", "s")
        assert await one.get("session", "s") is None
        await one.close()
        await two.close()
    asyncio.run(scenario())


def test_redis_take_is_atomic_across_replicas(redis_prefix: str) -> None:
    async def scenario() -> None:
        replicas = [RedisStore(REDIS_URL, key_prefix=redis_prefix) for _ in range(2)]
        for i in range(5):
            await replicas[0].put("code", f"c-{i}", {"i": i}, TTL)
            results = await asyncio.gather(*(r.take("code", f"c-{i}")
                                             for _ in range(25) for r in replicas))
            assert [r for r in results if r is not None] == [{"i": i}]
        for replica in replicas:
            await replica.close()
    asyncio.run(scenario())


def test_redis_burst_beyond_the_connection_pool_waits_instead_of_failing(
        redis_prefix: str) -> None:
    """1000 logins at once: more than the pool's connections, all served."""
    async def scenario() -> None:
        store = RedisStore(REDIS_URL, key_prefix=redis_prefix, namespace_limits={BOUNDED: 5000})
        await asyncio.gather(*(store.put(BOUNDED, f"s-{i}", {"i": i}, TTL) for i in range(1000)))
        taken = await asyncio.gather(*(store.take(BOUNDED, f"s-{i}") for i in range(1000)))
        assert taken == [{"i": i} for i in range(1000)]
        await store.close()
    asyncio.run(scenario())


def test_redis_key_prefixes_keep_two_gateways_apart(redis_prefix: str) -> None:
    async def scenario() -> None:
        ours = RedisStore(REDIS_URL, key_prefix=redis_prefix)
        theirs = RedisStore(REDIS_URL, key_prefix=f"{redis_prefix}:other")
        await ours.put("session", "s", {"gateway": "ours"}, TTL)
        assert await theirs.get("session", "s") is None
        await theirs.put("session", "s", {"gateway": "theirs"}, TTL)
        assert await ours.get("session", "s") == {"gateway": "ours"}
        await ours.close()
        await theirs.close()
    asyncio.run(scenario())


def test_redis_down_ping_is_false_and_every_operation_fails_fast() -> None:
    """A closed port: nothing hangs, nothing but StoreUnavailable escapes."""
    async def scenario() -> None:
        store = RedisStore("redis://127.0.0.1:1/0", namespace_limits={BOUNDED: 10})
        started = time.monotonic()
        assert await store.ping() is False
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get("session", "k"),
            lambda: store.put("session", "k", {}, TTL),
            lambda: store.put(BOUNDED, "k", {}, TTL),
            lambda: store.take("session", "k"),
            lambda: store.take(BOUNDED, "k"),
            lambda: store.delete("session", "k"),
            lambda: store.delete(BOUNDED, "k"),
        ]
        for operation in operations:
            with pytest.raises(StoreUnavailable):
                await operation()
        await store.close()
        assert time.monotonic() - started < 2.0
    asyncio.run(scenario())


def test_redis_unanswering_server_times_out_fast() -> None:
    """A server that accepts connections and never answers: the 1 s timeout, not a hang."""
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get("session", "k")
        assert time.monotonic() - started < 2.0
        assert await store.ping() is False
        await store.close()
        server.close()
        await server.wait_closed()
    asyncio.run(scenario())


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_stopped_and_restarted_the_same_store_recovers(private_redis: PrivateRedis) -> None:
    async def scenario() -> None:
        store = RedisStore(private_redis.url, namespace_limits={BOUNDED: 10})
        await store.put("session", "s", {"v": 1}, TTL)
        assert await store.get("session", "s") == {"v": 1}

        private_redis.stop()
        started = time.monotonic()
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable):
            await store.get("session", "s")
        with pytest.raises(StoreUnavailable):
            await store.put(BOUNDED, "state", {"v": 2}, TTL)
        assert time.monotonic() - started < 2.0

        private_redis.start()  # same port, empty (no persistence in this test server)
        assert await store.ping() is True
        await store.put(BOUNDED, "state", {"v": 2}, TTL)  # its Lua script is loaded again
        assert await store.take(BOUNDED, "state") == {"v": 2}
        await store.put("session", "s", {"v": 3}, TTL)
        assert await store.get("session", "s") == {"v": 3}
        await store.close()
    asyncio.run(scenario())


def test_H9_nothing_stored_is_lost_across_a_redis_outage(private_redis: PrivateRedis) -> None:
    """Redis frozen (as in a network partition or a stall), then back: the store fails fast
    while it is away, and finds every record it had once it answers again."""
    assert private_redis.process is not None
    pid = private_redis.process.pid

    async def scenario() -> None:
        store = RedisStore(private_redis.url, namespace_limits={BOUNDED: 10})
        await store.put("session", "kept", {"sub": "google:1"}, TTL)
        await store.put(BOUNDED, "state", {"v": 1}, TTL)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert await store.ping() is False
            with pytest.raises(StoreUnavailable):
                await store.get("session", "kept")
            assert time.monotonic() - started < 5.0
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while not await store.ping():
            assert time.monotonic() < deadline, "the store did not come back"
            await asyncio.sleep(0.05)
        assert await store.get("session", "kept") == {"sub": "google:1"}
        assert await store.take(BOUNDED, "state") == {"v": 1}
        await store.close()

    asyncio.run(scenario())
