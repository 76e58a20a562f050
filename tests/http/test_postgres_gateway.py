"""Gateway processes on one PostgreSQL database (issue 17): two processes act as one service,
a database outage is a 503 under load and then service again without a restart, sessions and
refresh tokens outlive a restart, and `oauth-gateway store migrate` is safe to run twice and
from two processes at once.

The real PostgreSQL on 127.0.0.1:5432 in a database of this test run's own; outages go through
a TCP proxy the test cuts and restores (tests/store_backends.py), never the shared server.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from config_support import write_config
from oidc_support import (
    INTROSPECTOR_AUTH,
    SPA_REDIRECT_URI,
    authorization_params,
    authorize_url,
    bearer,
    exchange,
    redirect_params,
    refresh,
)
from process_support import (
    HTTP_TIMEOUT,
    SUBPROCESS_TIMEOUT,
    Deployment,
    clean_environ,
    code_flow,
    introspection,
    racing_refreshes_successor,
    run_cli,
    verify_status,
)
from store_backends import (
    TcpProxy,
    free_port,
    pg_query,
    postgres_url,
)

from gateway.oidc.grants import NOT_REVOKED_SECONDS
from gateway.store import postgres_schema as schema

PATIENCE = 30.0  # seconds a test waits for what must happen at all (nothing is timed)


@pytest.mark.slow
def test_T3_two_processes_on_one_database_act_as_one_service(
        deployments: Callable[..., Deployment], pg_database: str) -> None:
    """Authorize on A, redeem the code on B, revoke on A: B refuses the revoked tokens within
    a second of the revocation (the refresh token at once: it is read from the database; an
    access token B found not revoked a moment ago may be answered from memory for up to
    NOT_REVOKED_SECONDS), on /token, /verify and /introspect alike."""
    deployment = deployments(store={"url": postgres_url(pg_database)},
                             tokens={"verify_checks_revocation": True})
    a = deployment.start()  # on the issuer's port: the browser's hops land here
    b = deployment.start(port=free_port())
    browser = deployment.browser()
    tokens = code_flow(browser, b)  # /authorize and the login on A, the code redeemed on B
    assert verify_status(b, tokens["access_token"]) == 200
    assert introspection(a, tokens["access_token"]).json()["active"] is True

    code = redirect_params(browser.get(authorize_url(browser.stack,
                                                     **authorization_params())))["code"]
    assert exchange(b, code).status_code == 200
    replay = exchange(a, code)  # single use across the two processes
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    revoked = httpx.post(f"{a.url}/revoke", timeout=HTTP_TIMEOUT,
                         data={"token": tokens["refresh_token"], "client_id": "spa"})
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()
    assert refresh(b, tokens["refresh_token"]).status_code == 400
    # SECURITY T3: a request sent a second or more after the revocation is refused. Each
    # check is timed from when it was sent: a slow machine delays checks, never fails them.
    checks: list[Callable[[], bool]] = [
        lambda: verify_status(b, tokens["access_token"]) == 401,
        lambda: introspection(b, tokens["access_token"]).json() == {"active": False},
    ]
    for check in checks:
        while True:
            sent_after = time.monotonic() - revoked_at
            if check():
                break
            assert sent_after < NOT_REVOKED_SECONDS, f"accepted {sent_after:.2f} s after"
            time.sleep(0.05)


@pytest.mark.slow
def test_T4_refreshes_racing_on_two_processes_sharing_postgresql_get_one_successor(
        deployments: Callable[..., Deployment], pg_database: str) -> None:
    """Twenty refreshes of one token at once, spread over two processes: one successor for all
    of them, and it rotates on."""
    deployment = deployments(store={"url": postgres_url(pg_database)})
    a = deployment.start()
    b = deployment.start(port=free_port())
    first = code_flow(deployment.browser(), a)
    successor = racing_refreshes_successor(first["refresh_token"], [a, b] * 10)
    assert refresh(b, successor).status_code == 200


@pytest.mark.slow
def test_sessions_and_refresh_tokens_survive_a_gateway_restart(
        deployments: Callable[..., Deployment], pg_database: str) -> None:
    deployment = deployments(store={"url": postgres_url(pg_database)})
    before = deployment.start()
    browser = deployment.browser()
    kept = code_flow(browser, before)
    dropped = code_flow(browser, before)
    assert httpx.post(f"{before.url}/revoke", timeout=HTTP_TIMEOUT, data={
        "token": dropped["refresh_token"], "client_id": "spa"}).status_code == 200
    assert before.stop() == 0, before.output
    logins = len(deployment.google.standin.token_requests)

    after = deployment.start()
    assert after.pid != before.pid
    refreshed = refresh(after, kept["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != kept["refresh_token"]
    assert refresh(after, dropped["refresh_token"]).status_code == 400  # still revoked
    assert introspection(after, dropped["access_token"]).json() == {"active": False}
    # The browser's session signs it in at once: a code, no new upstream login.
    sso = browser.get(authorize_url(browser.stack, **authorization_params()))
    assert sso.headers["location"].startswith(SPA_REDIRECT_URI + "?"), sso.text
    assert exchange(after, redirect_params(sso)["code"]).status_code == 200
    assert len(deployment.google.standin.token_requests) == logins
    assert after.stop() == 0, after.output


@pytest.mark.slow
def test_H9_database_outage_under_load_is_503_then_service_resumes_without_a_restart(
        deployments: Callable[..., Deployment], pg_database: str, pg_proxy: TcpProxy) -> None:
    """Sixteen clients keep calling /introspect and /verify (revocation checked: both read
    the database) while the database link is cut and restored. Every answer is a 200 or a
    503, never a 500 or a hang; the cut brings 503s and /readyz 503; once restored, the same
    process answers 200 again, with the data it had."""
    url = postgres_url(pg_database, port=pg_proxy.port, connect_timeout=1, command_timeout=1)
    deployment = deployments(store={"url": url}, tokens={"verify_checks_revocation": True})
    gateway = deployment.start()
    tokens = code_flow(deployment.browser(), gateway)
    access = tokens["access_token"]

    async def load(until_seen: int, wanted: int) -> Counter[int]:
        """Requests from 16 clients until `until_seen` answers had status `wanted`."""
        statuses: Counter[int] = Counter()
        deadline = time.monotonic() + PATIENCE

        async def client(http: httpx.AsyncClient, n: int) -> None:
            while statuses[wanted] < until_seen:
                assert time.monotonic() < deadline, f"{wanted} never came: {statuses}"
                if n % 2:
                    answer = await http.post(f"{gateway.url}/introspect", data={"token": access},
                                             auth=INTROSPECTOR_AUTH)
                else:
                    answer = await http.get(f"{gateway.url}/verify", headers=bearer(access))
                statuses[answer.status_code] += 1

        async with httpx.AsyncClient(timeout=PATIENCE) as http:
            await asyncio.gather(*(client(http, n) for n in range(16)))
        return statuses

    before = asyncio.run(load(100, 200))
    assert set(before) == {200}, before

    pg_proxy.cut()
    during = asyncio.run(load(100, 503))
    assert set(during) <= {200, 503}, during  # requests already past the store may pass
    assert httpx.get(f"{gateway.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 503

    pg_proxy.restore()
    after = asyncio.run(load(200, 200))
    assert set(after) <= {200, 503}, after
    # Once back, it stays back: the last requests all succeeded.
    assert set(asyncio.run(load(100, 200))) == {200}
    assert httpx.get(f"{gateway.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 200
    assert introspection(gateway, access).json()["active"] is True
    assert refresh(gateway, tokens["refresh_token"]).status_code == 200
    assert gateway.process.poll() is None  # the same process throughout
    assert "Traceback" not in gateway.output


# ---------------------------------------------------------------------------------------------
# oauth-gateway store migrate


def applied_versions(database: str) -> list[int]:
    return [row["version"] for row in
            pg_query(database, "SELECT version FROM oauth_gateway.schema_version ORDER BY 1")]


def test_store_migrate_twice_applies_each_migration_once(fresh_database: str,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path, {"store.url": postgres_url(fresh_database)})
    first = run_cli("store", "migrate", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"schema at version {schema.LATEST_VERSION}, applied 1 (" in first.stdout
    again = run_cli("store", "migrate", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("already up to date")
    assert applied_versions(fresh_database) == [m.version for m in schema.MIGRATIONS]


def test_store_migrate_from_two_processes_at_once(fresh_database: str, tmp_path: Path) -> None:
    """Two deployment steps racing on a new database: both succeed, one applies the
    migrations, the other finds them applied (the advisory lock made it wait)."""
    config = write_config(tmp_path, {"store.url": postgres_url(fresh_database)})
    runs = [subprocess.Popen([sys.executable, "-m", "gateway", "store", "migrate", "--config",
                              str(config)], cwd=tmp_path, env=clean_environ(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=SUBPROCESS_TIMEOUT) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = sorted("applied" if ", applied " in out else "up to date" for out, _ in outputs)
    assert said == ["applied", "up to date"], outputs
    assert applied_versions(fresh_database) == [m.version for m in schema.MIGRATIONS]


def test_store_migrate_of_an_unreachable_database_exits_1_with_one_line(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, {
        "store.url": "postgresql://gw@127.0.0.1:1/gateway?connect_timeout=1",
        "store.password": "pw-canary-migrate"})
    result = run_cli("store", "migrate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("oauth-gateway: store migrate: postgresql connect: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "pw-canary-migrate" not in result.stderr + result.stdout


def test_store_migrate_of_other_stores_says_what_it_did(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"store.url": f"sqlite://{tmp_path}/gw.db"})
    result = run_cli("store", "migrate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sqlite {tmp_path}/gw.db: schema at version 1\n"
    config = write_config(tmp_path, {"store.url": "redis://127.0.0.1:6379/0"})
    result = run_cli("store", "migrate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing to migrate" in result.stdout
