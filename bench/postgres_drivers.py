"""Which asyncio PostgreSQL driver for the store: asyncpg against psycopg 3 (with psycopg_pool),
each running the store's own hot statements (gateway/store/postgres_schema.py) on the local
PostgreSQL, through a pool of the store's size, with many operations in flight at once.

    .venv/bin/pip install -e '.[bench]'   # psycopg 3 and psycopg_pool; asyncpg is the store's own
    .venv/bin/python bench/postgres_drivers.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
                                               [--rounds 5] [--seconds 2] [--concurrency 32]

It creates a database of its own (a unique name), applies the store's migrations, measures
`get` (a live key), `put` (a session, replaced), `take` (of keys put beforehand) and `incr`
(one rate-limit counter per client address), each driver in turn within every round, and drops
the database. A figure is operations a second; the ratio is asyncpg over psycopg per round,
the median of the rounds with their spread, so that the noise of a shared host cancels out;
and the CPU this process spent per operation, the cost the gateway's own core would bear.
Client and server share the host's cores: the ratios are what matter, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
import psycopg_pool

from gateway.store import postgres_schema as sql
from gateway.store.postgres import MAX_CONNECTIONS, reset_connection

POOL_SIZE = MAX_CONNECTIONS  # the store's pool
SESSION = {"sub": "google:1098", "name": "Ada Lovelace", "email": "ada@example.com",
           "idp": "google", "created": 1_700_000_000.0, "last_seen": 1_700_000_000.0,
           "sid": "3q2-7wEAAAAA"}
TTL = 3600.0
OPERATIONS = ("get", "put", "take", "incr")


class Driver(Protocol):
    name: str

    async def open(self, dsn: str) -> None: ...
    async def execute(self, statement: str, *args: Any) -> None: ...
    async def fetchval(self, statement: str, *args: Any) -> Any: ...
    async def close(self) -> None: ...


class Asyncpg:
    """asyncpg as the store opens it: a pool whose reset between two uses is a local check
    (asyncpg's default reset costs a round trip on every release)."""

    name = "asyncpg"

    async def open(self, dsn: str) -> None:
        self.pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE,
                                              reset=reset_connection)

    async def execute(self, statement: str, *args: Any) -> None:
        await self.pool.execute(statement, *args)

    async def fetchval(self, statement: str, *args: Any) -> Any:
        return await self.pool.fetchval(statement, *args)

    async def close(self) -> None:
        await self.pool.close()


class Psycopg:
    """psycopg 3 as its documentation advises for asyncio: an AsyncConnectionPool, autocommit
    connections, server-side prepared statements (after `prepare_threshold` uses, 5)."""

    name = "psycopg"

    async def open(self, dsn: str) -> None:
        self.pool = psycopg_pool.AsyncConnectionPool(
            dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False,
            kwargs={"autocommit": True})
        await self.pool.open(wait=True)
        self._named: dict[str, str] = {}

    def _statement(self, statement: str) -> str:
        named = self._named.get(statement)
        if named is None:
            named = self._named[statement] = sql.numbered_to_named(statement)
        return named

    async def execute(self, statement: str, *args: Any) -> None:
        async with self.pool.connection() as connection:
            await connection.execute(self._statement(statement),
                                     {f"p{i}": a for i, a in enumerate(args, 1)})

    async def fetchval(self, statement: str, *args: Any) -> Any:
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                self._statement(statement),
                {f"p{i}": a for i, a in enumerate(args, 1)})
            row = await cursor.fetchone()
            return None if row is None else row[0]

    async def close(self) -> None:
        await self.pool.close()


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def migrate(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql.CREATE_SCHEMA)
        for migration in sql.MIGRATIONS:
            await connection.execute(migration.sql)
    finally:
        await connection.close()


async def measure(driver: Driver, operation: str, seconds: float, concurrency: int,
                  round_: int) -> tuple[float, float]:
    """Operations a second of `concurrency` tasks repeating `operation` for `seconds`, and the
    microseconds of this process's CPU per operation (what the gateway itself would pay)."""
    value = json.dumps(SESSION, separators=(",", ":"))
    prefix = f"{driver.name}-{round_}"
    take_keys: list[str] = []
    if operation == "take":  # as many keys as the other operations could do, put beforehand
        take_keys = [f"{prefix}-t{i}" for i in range(20_000)]
        await asyncio.gather(*(driver.execute(sql.PUT, "login-tx", k, value, TTL)
                               for k in take_keys))
    elif operation == "get":
        await driver.execute(sql.PUT, "session", f"{prefix}-g", value, TTL)
    steps: dict[str, Callable[[int], Awaitable[Any]]] = {
        "get": lambda i: driver.fetchval(sql.GET, "session", f"{prefix}-g"),
        "put": lambda i: driver.execute(sql.PUT, "session", f"{prefix}-p{i % 1000}", value,
                                        TTL),
        "take": lambda i: driver.fetchval(sql.TAKE, "login-tx", take_keys.pop()),
        "incr": lambda i: driver.fetchval(sql.INCR, "ratelimit", f"{prefix}-{i % 500}", 60.0),
    }
    step = steps[operation]
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline and (operation != "take" or take_keys):
            await step(done)
            done += 1

    started, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started), (time.process_time() - cpu) / done * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a database where this user may CREATE DATABASE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    database = f"bench_drivers_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = with_database(args.dsn, database)
    try:
        await migrate(dsn)
        drivers: list[Driver] = [Asyncpg(), Psycopg()]
        for driver in drivers:
            await driver.open(dsn)
        figures: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for operation in OPERATIONS:
                # Alternate which driver goes first, so that neither always meets a warmer
                # (or more bloated) table.
                order = drivers if round_ % 2 == 0 else drivers[::-1]
                for driver in order:
                    rate, micros = await measure(driver, operation, args.seconds,
                                                 args.concurrency, round_)
                    figures.setdefault((driver.name, operation), []).append(rate)
                    cpu.setdefault((driver.name, operation), []).append(micros)
        for driver in drivers:
            await driver.close()
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()

    print(f"# PostgreSQL {await server_version(args.dsn)}, asyncpg {asyncpg.__version__}, "
          f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), pool {POOL_SIZE}, "
          f"{args.concurrency} in flight, {args.rounds} x {args.seconds:g} s per figure")
    print()
    print("| operation | asyncpg ops/s | psycopg ops/s | ops/s, asyncpg / psycopg "
          "| asyncpg client CPU us/op | psycopg client CPU us/op | CPU, psycopg / asyncpg |")
    print("|---|---|---|---|---|---|---|")
    for operation in OPERATIONS:
        mine, theirs = figures[("asyncpg", operation)], figures[("psycopg", operation)]
        my_cpu, their_cpu = cpu[("asyncpg", operation)], cpu[("psycopg", operation)]
        print(f"| {operation} | {_spread(mine, '.0f')} | {_spread(theirs, '.0f')} "
              f"| {_spread([a / b for a, b in zip(mine, theirs, strict=True)])} "
              f"| {_spread(my_cpu, '.0f')} | {_spread(their_cpu, '.0f')} "
              f"| {_spread([b / a for a, b in zip(my_cpu, their_cpu, strict=True)])} |")


def _spread(values: list[float], form: str = ".2f") -> str:
    """The median, with the spread (min-max) of the rounds."""
    return (f"{statistics.median(values):{form}} "
            f"({min(values):{form}}-{max(values):{form}})")


async def server_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
