"""State survives a restart with the SQLite store (issue 4): a gateway process is stopped with
SIGTERM and a new one started on the same configuration; the refresh tokens, the browser's
session (single sign-on) and the revocations made before are all still there."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from oidc_support import (
    SPA_REDIRECT_URI,
    authorization_params,
    authorize_url,
    bearer,
    exchange,
    redirect_params,
    refresh,
)
from process_support import HTTP_TIMEOUT, Deployment, code_flow, introspected


@pytest.mark.slow
def test_sqlite_state_survives_a_restart_of_the_gateway_process(
        deployments: Callable[..., Deployment]) -> None:
    deployment = deployments(store={"url": "sqlite://{directory}/gateway.db"})
    before = deployment.start()
    browser = deployment.browser()
    kept = code_flow(browser, before)
    dropped = code_flow(browser, before)  # a second grant of the same session, then revoked
    revoked = httpx.post(f"{before.url}/revoke", timeout=HTTP_TIMEOUT,
                         data={"token": dropped["refresh_token"], "client_id": "spa"})
    assert revoked.status_code == 200, revoked.text
    assert before.stop() == 0, before.output
    logins = len(deployment.google.standin.token_requests)

    after = deployment.start()  # same configuration, same port, same database file
    assert after.pid != before.pid
    # The access token issued before still verifies (same keys, issuer), and is still active.
    assert httpx.get(f"{after.url}/verify", headers=bearer(kept["access_token"]),
                     timeout=HTTP_TIMEOUT).status_code == 200
    assert introspected(after, kept["access_token"])["active"] is True
    # The refresh token works, and rotates, on the new process.
    refreshed = refresh(after, kept["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != kept["refresh_token"]
    userinfo = httpx.get(f"{after.url}/userinfo", headers=bearer(refreshed.json()["access_token"]),
                         timeout=HTTP_TIMEOUT)
    assert userinfo.status_code == 200 and userinfo.json()["sub"].startswith("google:")
    # What was revoked before the restart stays revoked.
    again = refresh(after, dropped["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert introspected(after, dropped["access_token"]) == {"active": False}

    # The session cookie still signs the browser in: a code at once, no upstream login.
    sso = browser.get(authorize_url(browser.stack, **authorization_params()))
    assert sso.status_code == 302, sso.text
    assert sso.headers["location"].startswith(SPA_REDIRECT_URI + "?")
    tokens = exchange(after, redirect_params(sso)["code"])
    assert tokens.status_code == 200, tokens.text
    assert len(deployment.google.standin.token_requests) == logins
    assert after.stop() == 0, after.output
