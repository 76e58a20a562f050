"""Redis and PostgreSQL for the store tests.

Redis: the shared one on 127.0.0.1:6379 (`.ci/run` makes sure it runs), under a key prefix of
the test's own, and private `redis-server` processes that a test may stop and restart.

PostgreSQL: the shared server on 127.0.0.1:5432 (trust authentication for user postgres;
`.ci/run` makes sure it answers), where the tests create databases of their own, with unique
names, and drop them: they never touch another database. A test cannot restart the shared
server, so outages go through a `TcpProxy` on loopback that the test cuts, stalls and restores.

Without either server these tests fail when CI=true and are skipped, saying why, elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Fail in CI, where Redis must be there; skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run should have started it)")
    pytest.skip(reason)


def require_redis(url: str = REDIS_URL) -> str:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        unavailable(f"Redis is not reachable at {url} ({type(e).__name__})")
    finally:
        client.close()
    return url


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Remove every key a test wrote under its prefix."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A `redis-server` of the test's own, on a free port, without persistence, that it can
    stop and start again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            unavailable("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None and self.executable is not None
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        raise AssertionError(
                            f"redis-server exited with {self.process.returncode}") from None
                    if time.monotonic() > deadline:
                        raise AssertionError("redis-server did not answer in time") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(START_TIMEOUT)
            self.process = None


# ---------------------------------------------------------------------------------------------
# PostgreSQL

POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER = "127.0.0.1", 5432, "postgres"
POSTGRES_ADMIN_DATABASE = "postgres"  # where CREATE DATABASE and DROP DATABASE are run
DATABASE_PREFIX = "oauth_gateway_test_"
STORE_TABLES = ("entries", "counters", "members", "namespace_sizes")


def postgres_url(database: str, *, port: int = POSTGRES_PORT, **options: Any) -> str:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return (f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{port}/{database}"
            + (f"?{query}" if query else ""))


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """A coroutine run to its end from plain (not async) test code."""
    return asyncio.run(coro)


async def pg_fetch(database: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one statement in `database`, on a connection of its own."""
    connection = await asyncpg.connect(postgres_url(database), timeout=5)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


def pg_query(database: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    return list(run_async(pg_fetch(database, statement, *args)))


def require_postgres() -> None:
    try:
        pg_query(POSTGRES_ADMIN_DATABASE, "SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_HOST}:{POSTGRES_PORT} as "
                    f"{POSTGRES_USER} ({type(e).__name__}: {e})")


def create_database() -> str:
    """A new, empty database of the test run's own."""
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    pg_query(POSTGRES_ADMIN_DATABASE, f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    assert name.startswith(DATABASE_PREFIX), name  # never anything but our own
    pg_query(POSTGRES_ADMIN_DATABASE, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_store_tables(database: str) -> None:
    """What an earlier test stored, gone; the schema (if migrated) stays."""
    tables = ", ".join(f"oauth_gateway.{table}" for table in STORE_TABLES)
    pg_query(database, f"""DO $$ BEGIN
        IF to_regclass('oauth_gateway.entries') IS NOT NULL THEN TRUNCATE {tables}; END IF;
    END $$""")


class TcpProxy:
    """A TCP proxy on a free loopback port to PostgreSQL, in a thread of its own, that a test
    can `cut` (every connection reset at once, new ones closed as soon as accepted), `stall`
    (connections stay open but nothing passes, as behind a dead network link) and `restore`.
    """

    def __init__(self, target_port: int = POSTGRES_PORT) -> None:
        self.target_port = target_port
        self.mode = "open"
        self.accepted = 0  # connections accepted since the start
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._transports: set[asyncio.BaseTransport] = set()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self.port: int = self._call(self._start())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        ends = {writer.transport, up_writer.transport}
        self._transports |= ends
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)
        for transport in ends:
            transport.abort()
        self._transports -= ends

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()  # a stall holds the bytes here
                if self.mode == "cut":
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def _set_mode(self, mode: str) -> None:
        async def change() -> None:
            assert self._flowing is not None
            self.mode = mode
            if mode == "stall":
                self._flowing.clear()
            else:
                self._flowing.set()
            if mode == "cut":
                for transport in list(self._transports):
                    transport.abort()
        self._call(change())

    def cut(self) -> None:
        self._set_mode("cut")

    def stall(self) -> None:
        self._set_mode("stall")

    def restore(self) -> None:
        self._set_mode("open")

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for transport in list(self._transports):
                transport.abort()
        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
