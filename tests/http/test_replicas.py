"""Several replicas behind a load balancer behave as one service (issue 4, SECURITY T3, C1): three
gateway processes on three ports share one Redis, one keys directory, one cookie secret and one
public issuer. The test plays the load balancer: it sends each hop of a browser's login, and
each API call, to the replica it chooses.

Redis is the real one on 127.0.0.1:6379 (`.ci/run` starts it), under a prefix of this test's;
without it the test fails under CI=true and is skipped elsewhere (tests/store_backends.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Browser
from oidc_support import (
    SPA_REDIRECT_URI,
    authorization_params,
    exchange,
    redirect_params,
    refresh,
)
from process_support import (
    HTTP_TIMEOUT,
    POLL_INTERVAL,
    Deployment,
    GatewayProcess,
    introspected,
    racing_refreshes_successor,
    verify_status,
)
from store_backends import REDIS_URL, free_port

REVOCATION_DEADLINE = 1.0  # SECURITY T3: seconds for a revocation to reach every replica


@pytest.fixture
def replicas(deployments: Callable[..., Deployment], redis_prefix: str
             ) -> tuple[Deployment, list[GatewayProcess]]:
    """Three processes of one deployment, each on its own port; the public issuer is a fourth
    address that only the load balancer (the test) answers."""
    deployment = deployments(store={"url": REDIS_URL, "key_prefix": redis_prefix},
                             tokens={"verify_checks_revocation": True})
    processes = [deployment.start(free_port(), ready=False) for _ in range(3)]
    for process in processes:
        process.wait_ready()
    return deployment, processes


def on(replica: GatewayProcess, url: str, deployment: Deployment) -> str:
    """The load balancer: a URL of the public issuer, sent to one replica."""
    assert url.startswith(deployment.issuer + "/"), url
    return replica.url + url[len(deployment.issuer):]


def login_across_replicas(deployment: Deployment, browser: Browser,
                          a: GatewayProcess, b: GatewayProcess, c: GatewayProcess) -> str:
    """The OIDC code flow with every hop on another replica: /authorize on A, the upstream
    login started on B, Google's callback on C, the resume on A. Returns the app's code."""
    authorize = browser.get(f"{a.url}/authorize", params=authorization_params(provider="google"))
    assert authorize.status_code == 302, authorize.text
    start = browser.get(on(b, authorize.headers["location"], deployment))  # /login/google
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(deployment.google.standin.base_url)
    back = browser.consent(start.headers["location"])
    assert back.status_code == 302, back.text
    # B stored the login transaction and signed the browser's cookie; C checks both.
    callback = browser.get(on(c, back.headers["location"], deployment))
    assert callback.status_code == 302, callback.text
    resume = callback.headers["location"]
    assert urlsplit(resume).path == "/authorize/resume", resume
    # A saved the authorization request; the session C created signs the browser in on A.
    done = browser.get(on(a, resume, deployment))
    params = redirect_params(done)
    assert done.headers["location"].startswith(SPA_REDIRECT_URI + "?")
    assert params["iss"] == deployment.issuer and params["state"] == "st-123"
    return params["code"]


def sso_code(browser: Browser, replica: GatewayProcess) -> str:
    """Single sign-on: the browser's session (made on another replica) gets a code at once."""
    answer = browser.get(f"{replica.url}/authorize", params=authorization_params())
    assert answer.headers.get("location", "").startswith(SPA_REDIRECT_URI + "?"), answer.text
    return redirect_params(answer)["code"]


def tokens_from(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.slow
def test_T3_replicas_sharing_redis_log_in_refresh_and_revoke_as_one_service(
        replicas: tuple[Deployment, list[GatewayProcess]]) -> None:
    deployment, (a, b, c) = replicas
    browser = deployment.browser()
    code = login_across_replicas(deployment, browser, a, b, c)
    first = tokens_from(exchange(a, code))
    assert first["refresh_token"]

    # Every replica verifies what A issued: the same keys, issuer and store.
    for replica in (a, b, c):
        assert verify_status(replica, first["access_token"]) == 200
        assert introspected(replica, first["access_token"])["active"] is True

    refreshed = tokens_from(refresh(b, first["refresh_token"]))  # rotated on B
    assert refreshed["refresh_token"] != first["refresh_token"]
    revoked = httpx.post(f"{c.url}/revoke", timeout=HTTP_TIMEOUT,
                         data={"token": refreshed["refresh_token"], "client_id": "spa"})
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()

    # T3 says: a request that reaches a replica a second or more after the revocation is
    # refused. Each check is timed from when it was sent, so a slow machine only delays the
    # checks; it cannot turn an early "still accepted" into a failure.
    # The whole family goes: the rotated refresh token and both access tokens.
    checks: list[Callable[[GatewayProcess], bool]] = [
        lambda replica: refresh(replica, refreshed["refresh_token"]).status_code == 400,
        lambda replica: verify_status(replica, refreshed["access_token"]) == 401,
        lambda replica: introspected(replica, refreshed["access_token"]) == {"active": False},
        lambda replica: verify_status(replica, first["access_token"]) == 401,
        lambda replica: introspected(replica, first["access_token"]) == {"active": False},
    ]
    pending = [(replica, check) for replica in (a, b, c) for check in checks]
    while pending:
        still_accepted = []
        for replica, check in pending:
            sent_after = time.monotonic() - revoked_at
            if not check(replica):
                assert sent_after < REVOCATION_DEADLINE, \
                    f"{replica.url} still accepts the revoked tokens {sent_after:.2f}s after"
                still_accepted.append((replica, check))
        pending = still_accepted
        time.sleep(POLL_INTERVAL if pending else 0)
    # The first refresh token too (it was rotated, and its family is revoked).
    for replica in (a, b, c):
        answer = refresh(replica, first["refresh_token"])
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.slow
def test_C1_a_code_redeemed_on_one_replica_cannot_be_replayed_on_another(
        replicas: tuple[Deployment, list[GatewayProcess]]) -> None:
    deployment, (a, b, c) = replicas
    browser = deployment.browser()
    first = tokens_from(exchange(a, login_across_replicas(deployment, browser, a, b, c)))

    code = sso_code(browser, a)  # issued on A, to the session made on C
    issued = tokens_from(exchange(a, code))
    replay = exchange(b, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The replay revoked what the code's first use issued, on every replica (RFC 6749 4.1.2);
    # the other login's tokens are untouched.
    for replica in (a, b, c):
        assert introspected(replica, issued["access_token"]) == {"active": False}
        assert verify_status(replica, issued["access_token"]) == 401
    assert refresh(c, issued["refresh_token"]).status_code == 400
    assert refresh(c, first["refresh_token"]).status_code == 200

    # A code redeemed first on B is single use on A too.
    other = sso_code(browser, c)
    assert exchange(b, other).status_code == 200
    assert exchange(a, other).json()["error"] == "invalid_grant"


@pytest.mark.slow
def test_T4_refreshes_racing_on_two_replicas_get_one_successor(
        replicas: tuple[Deployment, list[GatewayProcess]]) -> None:
    """Twenty refreshes of one token at once, spread over two processes sharing Redis: one
    successor for all of them (the successor is derived from the token under a key every
    replica derives alike), and it rotates on, on the third."""
    deployment, (a, b, c) = replicas
    browser = deployment.browser()
    first = tokens_from(exchange(a, login_across_replicas(deployment, browser, a, b, c)))
    successor = racing_refreshes_successor(first["refresh_token"], [a, b] * 10)
    assert refresh(c, successor).status_code == 200
