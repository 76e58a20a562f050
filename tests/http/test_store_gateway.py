"""The store in the gateway: chosen by `store.url` (README, "Storage"), validated with one line
naming the key, and used end to end: a login completes with SQLite, Redis and PostgreSQL, a
session outlives a restart with SQLite, and an unreachable Redis is a clear 503, never a 500 or
a login (SECURITY H9)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import tornado.escape
import tornado.web
from config_support import refusal, write_config, write_secret
from conftest import Stack
from process_support import assert_one_line_config_error, run_cli
from store_backends import (
    REDIS_URL,
    delete_prefix,
    pg_query,
    postgres_url,
    require_redis,
    unique_prefix,
)

from gateway import cookies
from gateway.app import build_context
from gateway.config import Secret, load_settings
from gateway.identity import Identity
from gateway.keys import load_keyset
from gateway.store import StoreFull, StoreUnavailable
from gateway.store.factory import open_store
from gateway.store.location import PRODUCTION_URL, parse_store_url, store_url
from gateway.store.memory import MemoryStore
from gateway.store.postgres import PostgresStore
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore

UNAVAILABLE_TEXT = "The gateway's storage is unavailable. Please try again shortly."


# ---------------------------------------------------------------------------------------------
# Configuration


def test_default_store_is_memory_in_development_and_sqlite_in_production(tmp_path: Path) -> None:
    production = load_settings(write_config(tmp_path), {})
    assert store_url(production.store.url, dev_mode=production.dev_mode) == PRODUCTION_URL == "sqlite:///var/lib/oauth-gateway/gateway.db"
    assert parse_store_url(PRODUCTION_URL).path == "/var/lib/oauth-gateway/gateway.db"
    development = load_settings(write_config(tmp_path), {}, dev_mode=True)
    assert store_url(development.store.url, dev_mode=development.dev_mode) == "memory://"


@pytest.mark.parametrize(("url", "kind", "where"), [
    ("memory://", "memory", ""),
    ("sqlite:///var/lib/oauth-gateway/gateway.db", "sqlite", "/var/lib/oauth-gateway/gateway.db"),
    ("sqlite:gateway.db", "sqlite", "gateway.db"),
    ("sqlite:state/my%20gateway.db", "sqlite", "state/my gateway.db"),
    ("redis://127.0.0.1:6379/0", "redis", "redis://127.0.0.1:6379/0"),
    ("rediss://user:pw@redis.internal:6380/2?socket_timeout=2", "redis",
     "rediss://user:pw@redis.internal:6380/2?socket_timeout=2"),
    ("redis://redis.internal", "redis", "redis://redis.internal"),
    ("postgresql://gateway@db.internal:5432/gateway", "postgres",
     "postgresql://gateway@db.internal:5432/gateway"),
    ("postgres://gateway:pw@db.internal/gw?sslmode=verify-full&connect_timeout=3"
     "&command_timeout=0.5&max_connections=20", "postgres",
     "postgres://gateway:pw@db.internal/gw?sslmode=verify-full&connect_timeout=3"
     "&command_timeout=0.5&max_connections=20"),
])
def test_store_urls_name_their_backend(url: str, kind: str, where: str) -> None:
    location = parse_store_url(url)
    assert location.kind == kind
    assert (location.path or location.url) == where


@pytest.mark.parametrize(("url", "words"), [
    ("mysql://db/gateway", "must be memory://"),
    ("postgres://db/gateway", "needs a user"),
    ("postgresql://gateway@/gateway", "needs a host"),
    ("postgresql://gateway@db:5432", "needs one database name"),
    ("postgresql://gateway@db:5432/a/b", "needs one database name"),
    ("postgresql://gateway@db:notaport/gw", "port must be a number"),
    ("postgresql://gateway@db/gw?search_path=x", "unknown PostgreSQL URL option 'search_path'"),
    ("postgresql://gateway@db/gw?sslmode=maybe", "sslmode must be one of"),
    ("postgresql://gateway@db/gw?command_timeout=0", "must be above 0"),
    ("postgresql://gateway@db/gw?connect_timeout=nan", "must be above 0"),
    ("postgresql://gateway@db/gw?max_connections=ten", "must be a number"),
    ("postgresql://gateway@db/gw?max_connections=2&max_connections=3", "given twice"),
    ("memory:", "must be memory://"),
    ("memory://somewhere", "takes nothing"),
    ("sqlite://", "needs a file path"),
    ("sqlite://host/gateway.db", "has no host"),
    ("sqlite:///var/lib/", "needs a file path"),
    ("sqlite:///x.db?mode=ro", "no ?options"),
    ("redis://", "needs a host"),
    ("redis://redis:notaport/0", "port must be a number"),
    ("redis://redis:6379/zero", "database must be a number"),
    ("redis://redis:6379/0?prefix=x", "unknown Redis URL option 'prefix'"),
    ("redis://redis:6379/0?socket_timeout=soon", "must be a number"),
    ("http://redis:6379", "must be memory://"),
])
def test_wrong_store_url_is_refused_naming_the_key(tmp_path: Path, url: str, words: str) -> None:
    error = refusal(write_config(tmp_path, {"store.url": url}))
    assert error.key == "store.url"
    assert words in str(error)


def test_store_url_password_is_not_echoed_in_the_error_or_the_log_line(tmp_path: Path) -> None:
    error = refusal(write_config(tmp_path, {"store.url": "mysql://u:hunter2-canary@db/x"}))
    assert "hunter2-canary" not in str(error)
    location = parse_store_url("rediss://u:hunter2-canary@redis.internal:6380/2")
    assert location.describe() == "rediss redis.internal:6380/2"
    location = parse_store_url("postgresql://gw:hunter2-canary@db.internal/gateway")
    assert location.describe() == "postgresql db.internal:5432/gateway"


def test_store_url_and_password_file_from_the_environment(tmp_path: Path) -> None:
    password_file = write_secret(tmp_path, "redis-password", "r3dis-canary-pw")
    settings = load_settings(write_config(tmp_path), {
        "GATEWAY_STORE__URL": "redis://redis.internal:6379/1",
        "GATEWAY_STORE__PASSWORD_FILE": str(password_file),
        "GATEWAY_STORE__KEY_PREFIX": "gw-blue",
    })
    assert settings.store.url == "redis://redis.internal:6379/1"
    assert settings.store.password == Secret("r3dis-canary-pw")
    assert "r3dis-canary-pw" not in repr(settings)
    assert settings.store.key_prefix == "gw-blue"


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"store.url": "redis://:pw@redis/0", "store.password": "other"}, "store.password",
     "holds a password already"),
    ({"store.url": "sqlite:///x.db", "store.password": "pw"}, "store.password", "only for"),
    ({"store.url": "postgresql://gw:pw@db/gateway", "store.password": "other"},
     "store.password", "holds a password already"),
    ({"store.key_prefix": ""}, "store.key_prefix", "1 to 100"),
    ({"store.key_prefix": "has space"}, "store.key_prefix", "1 to 100"),
    ({"store.unknown": "x"}, "store.unknown", "unknown setting"),
])
def test_wrong_store_settings_are_refused_naming_the_key(
        tmp_path: Path, changes: dict[str, Any], key: str, words: str) -> None:
    error = refusal(write_config(tmp_path, changes))
    assert error.key == key
    assert words in str(error)


def test_open_store_builds_the_backend_the_url_names(tmp_path: Path) -> None:
    def settings(url: str, **store: Any) -> Any:
        return load_settings(write_config(tmp_path, {"store.url": url, **{
            f"store.{k}": v for k, v in store.items()}}), {})

    async def scenario() -> None:
        memory = open_store(settings("memory://"))
        assert isinstance(memory, MemoryStore)
        sqlite_store = open_store(settings(f"sqlite://{tmp_path}/gw.db"))
        assert isinstance(sqlite_store, SqliteStore)
        assert sqlite_store.path == tmp_path / "gw.db"
        redis_store = open_store(settings("redis://127.0.0.1:1/0", key_prefix="gw-green"))
        assert isinstance(redis_store, RedisStore)  # connects lazily: Redis may come later
        assert redis_store.entry_key("session", "k") == "gw-green:session:k"
        postgres_store = open_store(settings("postgresql://gw@127.0.0.1:1/gateway"
                                             "?command_timeout=0.5", password="pw"))
        assert isinstance(postgres_store, PostgresStore)  # connects lazily too
        assert postgres_store.command_timeout == 0.5
        for store in (memory, sqlite_store, redis_store, postgres_store):
            await store.close()
    asyncio.run(scenario())


def test_unusable_sqlite_path_is_a_config_error_at_start(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, {
        "store.url": f"sqlite://{tmp_path}/no-such-dir/gw.db"}), {})
    with pytest.raises(Exception) as caught:
        open_store(settings)
    assert str(caught.value).startswith("store.url: cannot open SQLite database ")
    assert "No such file or directory" in str(caught.value)


def test_serve_with_an_unusable_sqlite_path_exits_2_with_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert run_cli("keys", "generate", "--dir", str(keys), "--algorithm", "ES256",
                       cwd=tmp_path).returncode == 0
    config = write_config(tmp_path, {"tokens.keys_dir": str(keys), "tokens.algorithm": "ES256",
                                     "listen.port": 0,
                                     "store.url": f"sqlite://{tmp_path}/missing/gw.db"})
    result = run_cli("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert_one_line_config_error("\n".join(errors), "store.url")
    assert "Traceback" not in result.stderr


def test_build_context_keeps_a_store_passed_in(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path), {})
    keyset = load_keyset(tmp_path / "keys", "ES256", generate_if_empty=True)
    store = MemoryStore()  # empty, hence falsy: it must still be the one used
    assert build_context(settings, keyset, store=store).store is store


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.fixture
def store_stack(make_stack: Callable[..., Stack]) -> Iterator[Callable[..., Stack]]:
    """make_stack(store={...}, ...) whose stores are closed at the end."""
    stacks: list[Stack] = []

    def start(**overrides: Any) -> Stack:
        stack = make_stack(**overrides)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.loop.run(stack.ctx.store.close())


def _log_in(stack: Stack) -> Any:
    browser = stack.browser()
    done = browser.login()
    assert done.status_code == 302, done.text
    assert done.headers["location"] == f"{stack.url}/"
    verified = browser.get(f"{stack.url}/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["sub"].startswith("google:")
    return browser


def _session_id(stack: Stack, browser: Any) -> str:
    name = stack.ctx.cookies.name(cookies.SESSION)
    value = tornado.web.decode_signed_value(
        cookies.versioned_secrets(stack.dev.settings.cookies)[0], name, browser.cookies[name],
        min_version=2)
    assert value is not None
    return value.decode()


def test_login_completes_with_the_sqlite_store(store_stack: Callable[..., Stack],
                                               tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    stack = store_stack(store={"url": f"sqlite://{path}"})
    assert isinstance(stack.ctx.store, SqliteStore)
    _log_in(stack)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM entries WHERE namespace = 'session'"
                          ).fetchone()[0] == 1
        # the transaction was taken: its state cannot be used again
        assert db.execute("SELECT COUNT(*) FROM entries WHERE namespace = 'login-tx'"
                          ).fetchone()[0] == 0
    ready = httpx_get(f"{stack.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] is True


def test_sqlite_session_outlives_a_gateway_restart(store_stack: Callable[..., Stack],
                                                   tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/gateway.db"
    secret = "restart-test-cookie-secret-0123456789abcdef"
    # The same cookie secret on both sides, as a restarted gateway would have.
    first = store_stack(store={"url": url}, cookies={"secret": secret})
    browser = _log_in(first)
    session_id = _session_id(first, browser)
    first.loop.run(first.ctx.store.close())  # the first gateway stops

    second = store_stack(store={"url": url}, cookies={"secret": secret})
    session = second.loop.run(second.ctx.sessions.lookup(session_id))
    assert session is not None and session.sub.startswith("google:")


def test_login_completes_with_the_redis_store(store_stack: Callable[..., Stack]) -> None:
    require_redis()
    prefix = unique_prefix()
    try:
        stack = store_stack(store={"url": REDIS_URL, "key_prefix": prefix})
        assert isinstance(stack.ctx.store, RedisStore)
        browser = _log_in(stack)
        client = redis.Redis.from_url(REDIS_URL)
        try:
            sessions = list(client.scan_iter(match=f"{prefix}:session:*"))
            assert len(sessions) == 1
            idle_timeout_ms = stack.dev.settings.cookies.session_idle_timeout * 1000
            assert 0 < client.pttl(sessions[0]) <= idle_timeout_ms
            assert not list(client.scan_iter(match=f"{prefix}:login-tx:*"))
        finally:
            client.close()
        assert stack.loop.run(stack.ctx.sessions.lookup(_session_id(stack, browser))) is not None
    finally:
        delete_prefix(prefix)


def test_login_completes_with_the_postgres_store(store_stack: Callable[..., Stack],
                                                 pg_database: str) -> None:
    stack = store_stack(store={"url": postgres_url(pg_database)})
    assert isinstance(stack.ctx.store, PostgresStore)
    browser = _log_in(stack)
    rows = pg_query(pg_database, "SELECT namespace, count(*) AS n FROM oauth_gateway.entries "
                                 "WHERE namespace IN ('session', 'login-tx') GROUP BY 1")
    assert {row["namespace"]: row["n"] for row in rows} == {"session": 1}  # the state taken
    assert stack.loop.run(stack.ctx.sessions.lookup(_session_id(stack, browser))) is not None
    ready = httpx_get(f"{stack.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] is True


def test_two_gateways_sharing_redis_share_sessions(store_stack: Callable[..., Stack]) -> None:
    require_redis()
    prefix = unique_prefix()
    secret = "replica-test-cookie-secret-0123456789abcdef"
    try:
        one, two = (store_stack(store={"url": REDIS_URL, "key_prefix": prefix},
                                cookies={"secret": secret}) for _ in range(2))
        session_id = _session_id(one, _log_in(one))
        session = two.loop.run(two.ctx.sessions.lookup(session_id))
        assert session is not None and session.sub.startswith("google:")
        one.loop.run(one.ctx.sessions.end(session_id))  # signed out on one replica...
        assert two.loop.run(two.ctx.sessions.lookup(session_id)) is None  # ...gone on the other
    finally:
        delete_prefix(prefix)


def test_H9_unreachable_redis_is_a_clear_503_and_never_a_login(
        store_stack: Callable[..., Stack]) -> None:
    stack = store_stack(store={"url": "redis://127.0.0.1:1/0"})
    started = time.monotonic()
    ready = httpx_get(f"{stack.url}/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready",
                            "checks": {"config": True, "keys": True, "store": False}}

    browser = stack.browser()
    as_json = browser.get(f"{stack.url}/login/google", headers={"Accept": "application/json"})
    assert as_json.status_code == 503, as_json.text
    assert as_json.json() == {"error": "temporarily_unavailable",
                              "error_description": UNAVAILABLE_TEXT}
    assert as_json.headers["Cache-Control"] == "no-store"
    assert "location" not in as_json.headers

    page = browser.get(f"{stack.url}/login/google", headers={"Accept": "text/html"})
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert tornado.escape.xhtml_escape(UNAVAILABLE_TEXT) in page.text
    assert "Traceback" not in page.text and "ConnectionError" not in page.text
    assert not any(name.endswith("gw_access") for name in browser.cookies)
    assert time.monotonic() - started < 5.0


def test_store_unavailable_is_logged_as_one_line_without_a_stack_trace(
        store_stack: Callable[..., Stack], caplog: pytest.LogCaptureFixture) -> None:
    stack = store_stack(store={"url": "redis://127.0.0.1:1/0"})
    with caplog.at_level("INFO"):
        answer = stack.browser().get(f"{stack.url}/login/google")
    assert answer.status_code == 503
    records = [r for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert "/login/google" in records[0].getMessage()


def test_store_unavailable_raised_anywhere_maps_to_503() -> None:
    """The mapping lives in write_error, not in one handler."""
    from gateway.handlers.base import _as_gateway_error

    error = _as_gateway_error(500, (StoreUnavailable, StoreUnavailable("redis get: down"), None))
    assert error.status == 503
    assert error.error == "temporarily_unavailable"
    assert error.description == UNAVAILABLE_TEXT
    assert "down" not in error.description


def httpx_get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def test_store_full_raised_anywhere_maps_to_503() -> None:
    from gateway.handlers.base import _as_gateway_error

    error = _as_gateway_error(500, (StoreFull, StoreFull("login-tx"), None))
    assert error.status == 503
    assert error.error == "temporarily_unavailable"


def test_H9_stateless_verify_keeps_working_while_redis_is_down(
        store_stack: Callable[..., Stack]) -> None:
    """The documented trade-off: a valid JWT verifies without the store (README, "Storage")."""
    stack = store_stack(store={"url": "redis://127.0.0.1:1/0"})
    token = stack.ctx.issuer.issue_access_token(Identity("google", "1234"),
                                                stack.dev.settings.audience)
    answer = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"},
                       timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sub"] == "google:1234"
