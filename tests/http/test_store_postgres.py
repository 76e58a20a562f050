"""What the PostgreSQL store promises beyond the contract every store keeps
(test_store_contract.py runs that against it too): its schema migrated once by whichever
replica comes first, expiry by the database's clock with expired rows swept in the background
by every replica without a leader, `take` single use across processes, and failures that are
a StoreUnavailable within the configured timeouts, then recovery, without a new store.

The real PostgreSQL on 127.0.0.1:5432 (tests/store_backends.py), in databases of this test
run's own; outages go through a TCP proxy the test controls, never the shared server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from store_backends import (
    TcpProxy,
    pg_fetch,
    pg_query,
    postgres_url,
)

from gateway.store import StoreFull, StoreUnavailable, postgres
from gateway.store import postgres_schema as schema
from gateway.store.postgres import PostgresStore, migrate_database

BOUNDED = "login-tx"
TTL = 30.0
# A bound on how long a test waits for something that must happen (an outage noticed, a
# sweep run): far above what it takes, so that only "never" fails it. No figure is timed.
PATIENCE = 20.0


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> int:
    """Poll `condition` until true; the number of polls it took."""
    deadline = time.monotonic() + PATIENCE
    polls = 1
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: never"
        polls += 1
        await asyncio.sleep(0.02)
    return polls


def applied_versions(database: str) -> list[int]:
    return [row["version"] for row in
            pg_query(database, "SELECT version FROM oauth_gateway.schema_version ORDER BY 1")]


# ---------------------------------------------------------------------------------------------
# Schema and migrations


def test_the_first_operation_migrates_a_new_database(fresh_database: str) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_url(fresh_database))
        assert await store.ping() is True
        await store.put("session", "s", {"v": 1}, TTL)
        await store.close()
    asyncio.run(scenario())
    assert applied_versions(fresh_database) == [m.version for m in schema.MIGRATIONS]
    tables = {row["tablename"] for row in pg_query(
        fresh_database, "SELECT tablename FROM pg_tables WHERE schemaname = 'oauth_gateway'")}
    assert tables == {"schema_version", "entries", "counters", "members", "namespace_sizes"}
    # Nothing outside the gateway's own schema.
    assert pg_query(fresh_database, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                    "'public'") == []


def test_migrating_again_applies_nothing(fresh_database: str) -> None:
    url = postgres_url(fresh_database)
    first = asyncio.run(migrate_database(url))
    assert [m.version for m in first] == [m.version for m in schema.MIGRATIONS]
    assert asyncio.run(migrate_database(url)) == []
    assert asyncio.run(migrate_database(url)) == []
    assert applied_versions(fresh_database) == [m.version for m in schema.MIGRATIONS]


def test_replicas_starting_together_migrate_once(fresh_database: str) -> None:
    """Eight stores (as eight replicas) open a new database at the same moment: every one
    serves, and each migration was applied once (a second run would have failed on CREATE)."""
    async def scenario() -> None:
        stores = [PostgresStore(postgres_url(fresh_database)) for _ in range(8)]
        assert await asyncio.gather(*(store.ping() for store in stores)) == [True] * 8
        await stores[0].put("session", "s", {"v": 1}, TTL)
        assert await stores[7].get("session", "s") == {"v": 1}
        for store in stores:
            await store.close()
    asyncio.run(scenario())
    assert applied_versions(fresh_database) == [m.version for m in schema.MIGRATIONS]


def test_a_replica_waits_for_another_ones_migration_past_its_statement_timeout(
        fresh_database: str) -> None:
    """While another replica holds the migration lock (here: the test, for longer than the
    store's 0.3 s statement timeout), a starting store waits for it instead of failing, then
    finds the schema as the other left it."""
    async def scenario() -> None:
        holder = await asyncpg.connect(postgres_url(fresh_database))
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(schema.LOCK, schema.MIGRATION_LOCK)
        store = PostgresStore(postgres_url(fresh_database, command_timeout=0.3))
        ping = asyncio.ensure_future(store.ping())
        await asyncio.sleep(1.0)  # three statement timeouts
        assert not ping.done()  # waiting on the lock: it cannot have finished
        await transaction.rollback()
        await holder.close()
        assert await ping is True
        await store.close()
    asyncio.run(scenario())
    assert applied_versions(fresh_database) == [m.version for m in schema.MIGRATIONS]


def test_a_schema_newer_than_the_gateway_is_refused(fresh_database: str) -> None:
    asyncio.run(migrate_database(postgres_url(fresh_database)))
    pg_query(fresh_database, "INSERT INTO oauth_gateway.schema_version (version, description) "
                             "VALUES (999, 'from the future')")

    async def scenario() -> None:
        store = PostgresStore(postgres_url(fresh_database))
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable, match="newer than this gateway's"):
            await store.get("session", "s")
        await store.close()
    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# Rows, expiry and the database's clock


def test_entries_are_json_rows_that_expire_by_the_database_clock(
        pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The expiry is now() + ttl on the server; the gateway's own clock plays no part (a
    replica an hour ahead still reads a live entry as live)."""
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)

    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database))
        await store.put("session", "k", {"name": "Zoë"}, 90)
        assert await store.get("session", "k") == {"name": "Zoë"}
        rows = await pg_fetch(pg_database, "SELECT value, extract(epoch FROM expires_at - now()) "
                                           "AS left FROM oauth_gateway.entries WHERE key = 'k'")
        assert json.loads(rows[0]["value"]) == {"name": "Zoë"}
        assert 80 < rows[0]["left"] <= 90
        await store.close()
    asyncio.run(scenario())


def test_a_value_with_a_lone_surrogate_round_trips(pg_database: str) -> None:
    """A claim may hold what UTF-8 cannot: stored escaped, read back the same, never a 500."""
    value = {"name": "Ada \ud800 Lovelace", "city": "Zürich"}

    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database))
        await store.put("session", "k", value, TTL)
        assert await store.get("session", "k") == value
        await store.put("session", "plain", {"city": "Zürich"}, TTL)
        await store.close()
    asyncio.run(scenario())
    stored = pg_query(pg_database, "SELECT value FROM oauth_gateway.entries WHERE key = 'plain'")
    assert stored[0]["value"] == '{"city":"Zürich"}'  # UTF-8 where it can be


def test_expired_rows_are_swept_in_the_background(pg_database: str) -> None:
    async def rows() -> int:
        counted = await pg_fetch(pg_database,
                                 "SELECT (SELECT count(*) FROM oauth_gateway.entries)"
                                 " + (SELECT count(*) FROM oauth_gateway.counters)"
                                 " + (SELECT count(*) FROM oauth_gateway.members) AS n")
        return int(counted[0]["n"])

    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database), sweep_interval=0.05)
        for i in range(5):
            await store.put("session", f"old-{i}", {"name": "personal data"}, 0.01)
        await store.incr("ratelimit", "k", 0.01)
        await store.add_member("session-of", "u", "old", 0.01)
        await store.put("session", "kept", {}, TTL)
        await until(lambda: _equals(rows(), 1), "the expired rows swept")  # "kept" alone
        assert await store.get("session", "kept") == {}
        await store.close()
    asyncio.run(scenario())


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def test_replicas_sweeping_at_once_share_the_work(pg_database: str) -> None:
    """Three replicas sweep 3,000 expired rows at the same moment: no error, none waits on
    another's locked rows, and every row is deleted once."""
    async def scenario() -> None:
        stores = [PostgresStore(postgres_url(pg_database), sweep_interval=3600)
                  for _ in range(3)]
        await stores[0].ping()
        await pg_fetch(pg_database, "INSERT INTO oauth_gateway.entries "
                                    "SELECT 'session', 'k' || i, '{}', now() - interval '1 s' "
                                    "FROM generate_series(1, 3000) AS i")
        swept = await asyncio.gather(*(store.sweep() for store in stores))
        assert sum(deleted for deleted, _ in swept) == 3000, swept
        for store in stores:
            await store.close()
    asyncio.run(scenario())
    assert pg_query(pg_database, "SELECT count(*) AS n FROM oauth_gateway.entries")[0]["n"] == 0
    # The trigger kept the namespace's size in step with the sweep.
    sizes = pg_query(pg_database, "SELECT sum(entries) AS n FROM oauth_gateway.namespace_sizes "
                                  "WHERE namespace = 'session'")
    assert sizes[0]["n"] == 0


def test_a_sweep_is_bounded_and_says_when_it_left_rows_behind(
        pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 10, at most 3 a table: 75 expired rows take three sweeps, the first two
    saying that some are left (the background sweeper then comes back in a second)."""
    monkeypatch.setattr(postgres, "SWEEP_BATCH", 10)
    monkeypatch.setattr(postgres, "SWEEP_BATCHES", 3)

    async def scenario() -> list[tuple[int, bool]]:
        store = PostgresStore(postgres_url(pg_database), sweep_interval=3600)
        await store.ping()
        await pg_fetch(pg_database, "INSERT INTO oauth_gateway.entries "
                                    "SELECT 'session', 'k' || i, '{}', now() - interval '1 s' "
                                    "FROM generate_series(1, 75) AS i")
        results = [await store.sweep() for _ in range(3)]
        await store.close()
        return results

    assert asyncio.run(scenario()) == [(30, True), (30, True), (15, False)]


def test_namespace_sizes_follow_puts_takes_deletes_and_replacements(pg_database: str) -> None:
    async def size() -> int:
        rows = await pg_fetch(pg_database, "SELECT coalesce(sum(entries), 0) AS n FROM "
                                           "oauth_gateway.namespace_sizes WHERE namespace = $1",
                              BOUNDED)
        return int(rows[0]["n"])

    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database), namespace_limits={BOUNDED: 100})
        for i in range(40):
            await store.put(BOUNDED, f"tx-{i}", {"i": i}, TTL)
        await store.put(BOUNDED, "tx-0", {"again": True}, TTL)
        assert await size() == 40
        for i in range(10):
            assert await store.take(BOUNDED, f"tx-{i}") is not None
        await store.delete(BOUNDED, "tx-10")
        await store.delete(BOUNDED, "never-there")
        assert await size() == 29
        await store.close()
    asyncio.run(scenario())


def test_a_full_namespace_overshoots_at_most_by_the_puts_in_flight(pg_database: str) -> None:
    """Two hundred puts at once into a namespace with room for fifty, on two replicas: the
    bound holds to within the connections that can be writing at once (10 per store)."""
    async def scenario() -> None:
        stores = [PostgresStore(postgres_url(pg_database), namespace_limits={BOUNDED: 50})
                  for _ in range(2)]

        async def put(i: int) -> bool:
            try:
                await stores[i % 2].put(BOUNDED, f"tx-{i}", {}, TTL)
            except StoreFull:
                return False
            return True

        stored = sum(await asyncio.gather(*(put(i) for i in range(200))))
        assert 50 <= stored <= 50 + 2 * 10, stored
        for store in stores:
            await store.close()
    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# Across processes


def test_take_is_single_use_across_processes(pg_database: str, tmp_path: Path) -> None:
    """Four forked processes, each with its own store, take the same 50 keys at once: every
    key is won exactly once."""
    url = postgres_url(pg_database)
    keys = [f"state-{i}" for i in range(50)]

    async def fill() -> None:
        store = PostgresStore(url, namespace_limits={BOUNDED: 1000})
        for key in keys:
            await store.put(BOUNDED, key, {"key": key}, TTL)
        await store.close()
    asyncio.run(fill())

    start = time.time() + 0.5
    pids = []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:  # the child: takes every key, writes what it won, never returns
            status = 1
            try:
                async def take_all(worker: int = worker) -> list[str]:
                    store = PostgresStore(url, namespace_limits={BOUNDED: 1000})
                    await store.ping()
                    while time.time() < start:
                        await asyncio.sleep(0.001)
                    won = await asyncio.gather(*(store.take(BOUNDED, k) for k in keys))
                    await store.close()
                    return [value["key"] for value in won if value is not None]
                won = asyncio.run(take_all())
                (tmp_path / f"won-{worker}.json").write_text(json.dumps(won))
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    assert [os.waitpid(pid, 0)[1] for pid in pids] == [0] * 4
    winners: list[str] = []
    for worker in range(4):
        winners += json.loads((tmp_path / f"won-{worker}.json").read_text())
    assert sorted(winners) == sorted(keys)  # each key once, none twice


# ---------------------------------------------------------------------------------------------
# Outages: a StoreUnavailable within the timeouts, then recovery with the same store


def operations(store: PostgresStore) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: store.get("session", "k"),
        lambda: store.put("session", "k", {}, TTL),
        lambda: store.put(BOUNDED, "k", {}, TTL),
        lambda: store.take(BOUNDED, "k"),
        lambda: store.delete("session", "k"),
        lambda: store.incr("ratelimit", "k", TTL),
        lambda: store.add_member("session-of", "u", "m", TTL),
        lambda: store.members("session-of", "u"),
    ]


def test_nothing_listening_is_unavailable_at_once() -> None:
    async def scenario() -> None:
        store = PostgresStore("postgresql://postgres@127.0.0.1:1/none?connect_timeout=0.5",
                              namespace_limits={BOUNDED: 10})
        assert await store.ping() is False
        for operation in operations(store):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(operation(), PATIENCE)
        await store.close()
    asyncio.run(scenario())


def test_a_cut_connection_is_unavailable_then_the_same_store_recovers(
        pg_database: str, pg_proxy: TcpProxy) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database, port=pg_proxy.port, connect_timeout=0.5,
                                           command_timeout=0.5),
                              namespace_limits={BOUNDED: 10})
        await store.put("session", "kept", {"sub": "google:1"}, TTL)
        await store.put(BOUNDED, "state", {"v": 1}, TTL)

        pg_proxy.cut()
        assert await store.ping() is False
        for operation in operations(store):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(operation(), PATIENCE)

        pg_proxy.restore()
        polls = await until(store.ping, "the store answering again")
        assert polls >= 1
        assert await store.get("session", "kept") == {"sub": "google:1"}
        assert await store.take(BOUNDED, "state") == {"v": 1}
        await store.close()
    asyncio.run(scenario())


def test_a_stalled_database_times_out_instead_of_hanging(
        pg_database: str, pg_proxy: TcpProxy) -> None:
    """The link goes dead with connections open (bytes vanish, nothing is reset): each
    operation ends with StoreUnavailable after the configured timeouts, never hangs."""
    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database, port=pg_proxy.port, connect_timeout=0.3,
                                           command_timeout=0.3))
        await store.put("session", "kept", {"v": 1}, TTL)
        pg_proxy.stall()
        try:
            assert await asyncio.wait_for(store.ping(), PATIENCE) is False
            for operation in operations(store):
                with pytest.raises(StoreUnavailable):
                    await asyncio.wait_for(operation(), PATIENCE)
        finally:
            pg_proxy.restore()
        await until(store.ping, "the store answering again")
        assert await store.get("session", "kept") == {"v": 1}
        await store.close()
    asyncio.run(scenario())


def test_requests_queued_behind_a_dead_server_at_start_each_wait_one_timeout(
        pg_database: str, pg_proxy: TcpProxy) -> None:
    """A gateway starting while the database link is dead, forty requests at once: each gets
    its StoreUnavailable within about one operation's timeouts, not after every connection
    attempt queued before its own (40 x 0.5 s). Compared with one request alone, measured the
    same way in this test (no wall-clock limit of its own)."""
    pg_proxy.stall()

    async def scenario(requests: int) -> list[float]:
        store = PostgresStore(postgres_url(pg_database, port=pg_proxy.port, connect_timeout=0.5,
                                           command_timeout=0.5))
        started = time.monotonic()

        async def one() -> float:
            with pytest.raises(StoreUnavailable):
                await store.get("session", "k")
            return time.monotonic() - started

        waited = await asyncio.gather(*(one() for _ in range(requests)))
        await store.close()
        return waited

    [alone] = asyncio.run(scenario(1))
    waited = asyncio.run(scenario(40))
    pg_proxy.restore()
    # Queued one behind another, the last would wait about 40 times as long as one alone.
    assert max(waited) < 6 * alone, (alone, sorted(waited))


def test_backends_terminated_by_an_administrator_are_replaced(pg_database: str) -> None:
    """pg_terminate_backend on every connection of the store (as a failover or an
    administrator does): the next operations get new connections and succeed."""
    async def scenario() -> None:
        store = PostgresStore(postgres_url(pg_database))
        await asyncio.gather(*(store.put("session", f"k-{i}", {"i": i}, TTL) for i in range(30)))
        ended = await pg_fetch(pg_database, "SELECT pg_terminate_backend(pid) AS ended "
                                            "FROM pg_stat_activity WHERE datname = $1 AND "
                                            "application_name = 'oauth-gateway'", pg_database)
        assert ended and all(row["ended"] for row in ended)
        got = await asyncio.gather(*(store.get("session", f"k-{i}") for i in range(30)))
        assert got == [{"i": i} for i in range(30)]
        await store.close()
    asyncio.run(scenario())


def test_the_password_never_appears_in_an_error(pg_proxy: TcpProxy) -> None:
    pg_proxy.cut()

    async def scenario() -> None:
        store = PostgresStore(f"postgresql://postgres:pw-canary-77@127.0.0.1:{pg_proxy.port}/x",
                              password="pw-canary-88")
        with pytest.raises(StoreUnavailable) as raised:
            await store.get("session", "k")
        await store.close()
        assert "pw-canary" not in str(raised.value)
    asyncio.run(scenario())
