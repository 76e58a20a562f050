"""Refresh, revocation, introspection and userinfo over real HTTP (SECURITY T1-T5, H9):
rotation on every use, reuse detection, the race of two tabs, no widening, revocation seen by
introspection, /userinfo and (when configured) /verify, and failing closed on a store outage."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from conftest import Stack
from log_canaries import LogScan
from oidc_support import (
    CLIENTS,
    CONFIDENTIAL_SECRET,
    INTROSPECTOR,
    INTROSPECTOR_AUTH,
    OTHER_SECRET,
    REDIRECT_URI,
    bearer,
    exchange,
    get_code,
    oidc_stack,
    refresh,
    tokens_for,
)

from gateway.store import StoreUnavailable

ALL_CLIENTS = [*CLIENTS, INTROSPECTOR]


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return oidc_stack(make_stack, clients=ALL_CLIENTS)


def introspect(stack: Stack, token: str, auth: tuple[str, str] = INTROSPECTOR_AUTH
               ) -> dict[str, Any]:
    answer = httpx.post(f"{stack.url}/introspect", data={"token": token}, auth=auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def userinfo(stack: Stack, access_token: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/userinfo", headers=bearer(access_token))


def revoke(stack: Stack, token: str, *, client_id: str = "spa",
           auth: tuple[str, str] | None = None) -> httpx.Response:
    data = {"token": token}
    if auth is None:
        data["client_id"] = client_id
    return httpx.post(f"{stack.url}/revoke", data=data, auth=auth)


def webapp_tokens(stack: Stack) -> dict[str, Any]:
    code = get_code(stack.browser(), client_id="webapp", redirect_uri=REDIRECT_URI)
    answer = exchange(stack, code, redirect_uri=REDIRECT_URI, auth=("webapp", CONFIDENTIAL_SECRET))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# -- rotation (T1, T4) --------------------------------------------------------------------------


def test_T1_every_refresh_rotates_the_refresh_token(stack: Stack) -> None:
    tokens = tokens_for(stack)
    first = refresh(stack, tokens["refresh_token"])
    assert first.status_code == 200
    body = first.json()
    assert body["refresh_token"] != tokens["refresh_token"]
    assert body["access_token"] != tokens["access_token"]
    second = refresh(stack, body["refresh_token"])
    assert second.status_code == 200
    assert userinfo(stack, second.json()["access_token"]).status_code == 200


def test_T1_reuse_of_a_rotated_token_after_the_interval_revokes_the_family(
        make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=ALL_CLIENTS,
                       tokens={"refresh_token_reuse_interval": 0})
    tokens = tokens_for(stack)
    rotated = refresh(stack, tokens["refresh_token"]).json()
    reuse = refresh(stack, tokens["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # The whole family is gone: the successor, and the access tokens it issued.
    assert refresh(stack, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(stack, rotated["access_token"]) == {"active": False}
    assert userinfo(stack, rotated["access_token"]).status_code == 401


def test_T4_two_tabs_refreshing_at_once_are_not_logged_out(stack: Stack) -> None:
    tokens = tokens_for(stack)

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient() as http:
            data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                    "client_id": "spa"}
            return list(await asyncio.gather(
                *(http.post(f"{stack.url}/token", data=data) for _ in range(2))))

    answers = asyncio.run(both())
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    successors = {a.json()["refresh_token"] for a in answers}
    assert len(successors) == 1  # the same successor for both: the family does not fork
    assert refresh(stack, successors.pop()).status_code == 200


def test_T4_a_repeated_refresh_within_the_interval_still_works(stack: Stack) -> None:
    tokens = tokens_for(stack)
    assert refresh(stack, tokens["refresh_token"]).status_code == 200
    again = refresh(stack, tokens["refresh_token"])  # default interval: 5 s
    assert again.status_code == 200
    assert refresh(stack, again.json()["refresh_token"]).status_code == 200


# -- T5: no widening, no other client -----------------------------------------------------------


def test_T5_a_refresh_cannot_widen_the_scope(make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=ALL_CLIENTS)
    tokens = tokens_for(stack, scope="openid email offline_access")
    wider = refresh(stack, tokens["refresh_token"], scope="openid email profile offline_access")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = refresh(stack, tokens["refresh_token"], scope="openid")  # not spent above
    assert narrower.status_code == 200
    assert narrower.json()["scope"] == "openid"
    info = userinfo(stack, narrower.json()["access_token"]).json()
    assert "email" not in info and info["sub"]
    # The family keeps what was granted: the next refresh may ask for email again.
    back = refresh(stack, narrower.json()["refresh_token"], scope="openid email")
    assert back.status_code == 200 and "email" in userinfo(
        stack, back.json()["access_token"]).json()


def test_T5_a_client_cannot_refresh_another_clients_token(stack: Stack) -> None:
    tokens = tokens_for(stack)
    stolen = refresh(stack, tokens["refresh_token"], auth=("other", OTHER_SECRET))
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert refresh(stack, tokens["refresh_token"]).status_code == 200


def test_T5_the_audience_never_changes_on_refresh(stack: Stack) -> None:
    tokens = tokens_for(stack)
    refreshed = refresh(stack, tokens["refresh_token"]).json()
    assert introspect(stack, refreshed["access_token"])["aud"] == "https://api.example.test"


def test_no_refresh_token_without_offline_access(stack: Stack) -> None:
    tokens = tokens_for(stack, scope="openid email")
    assert "refresh_token" not in tokens


# -- revocation (T2) and introspection ----------------------------------------------------------


def test_T2_revoking_a_refresh_token_revokes_its_family(stack: Stack) -> None:
    tokens = tokens_for(stack)
    assert introspect(stack, tokens["access_token"])["active"] is True
    answer = revoke(stack, tokens["refresh_token"])
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert refresh(stack, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(stack, tokens["access_token"]) == {"active": False}
    assert userinfo(stack, tokens["access_token"]).status_code == 401


def test_T2_revoking_an_access_token(stack: Stack) -> None:
    tokens = webapp_tokens(stack)
    auth = ("webapp", CONFIDENTIAL_SECRET)
    assert introspect(stack, tokens["access_token"], auth)["active"] is True
    assert revoke(stack, tokens["access_token"], auth=auth).status_code == 200
    assert introspect(stack, tokens["access_token"], auth) == {"active": False}
    assert userinfo(stack, tokens["access_token"]).status_code == 401
    # Stateless /verify (the default) still accepts it until it expires: the documented trade.
    assert httpx.get(f"{stack.url}/verify",
                     headers=bearer(tokens["access_token"])).status_code == 200


def test_T2_verify_refuses_revoked_tokens_when_configured(make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=ALL_CLIENTS,
                       tokens={"verify_checks_revocation": True})
    tokens = tokens_for(stack)
    assert httpx.get(f"{stack.url}/verify", headers=bearer(tokens["access_token"])
                     ).status_code == 200
    assert revoke(stack, tokens["access_token"]).status_code == 200
    refused = httpx.get(f"{stack.url}/verify", headers=bearer(tokens["access_token"]))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_T2_revoke_needs_client_authentication(stack: Stack) -> None:
    tokens = webapp_tokens(stack)
    for auth in (None, ("webapp", "wrong")):
        data = {"token": tokens["access_token"]}
        answer = httpx.post(f"{stack.url}/revoke", data=data, auth=auth)
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert introspect(stack, tokens["access_token"], ("webapp", CONFIDENTIAL_SECRET))["active"]


def test_T5_a_client_cannot_revoke_another_clients_tokens(stack: Stack) -> None:
    tokens = tokens_for(stack)
    for token in (tokens["refresh_token"], tokens["access_token"]):
        answer = revoke(stack, token, auth=("other", OTHER_SECRET))
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert refresh(stack, tokens["refresh_token"]).status_code == 200


def test_T2_revoking_an_unknown_token_is_200(stack: Stack) -> None:
    assert revoke(stack, "not-a-token").status_code == 200


def test_T5_introspection_of_another_clients_token_is_inactive(stack: Stack) -> None:
    tokens = tokens_for(stack)
    assert introspect(stack, tokens["access_token"], ("other", OTHER_SECRET)) == {
        "active": False}
    assert introspect(stack, tokens["refresh_token"], ("other", OTHER_SECRET)) == {
        "active": False}


def test_T2_introspection_of_a_refresh_token(stack: Stack) -> None:
    tokens = tokens_for(stack)
    answer = httpx.post(f"{stack.url}/introspect", data={"token": tokens["refresh_token"]},
                        auth=INTROSPECTOR_AUTH)
    assert answer.json() == {"active": False}  # not the introspector's token


def test_T2_public_clients_cannot_introspect(stack: Stack) -> None:
    tokens = tokens_for(stack)
    answer = httpx.post(f"{stack.url}/introspect",
                        data={"token": tokens["access_token"], "client_id": "spa"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_T2_a_confidential_client_introspects_its_own_refresh_token(stack: Stack) -> None:
    code = get_code(stack.browser(), client_id="webapp", redirect_uri=REDIRECT_URI)
    tokens = exchange(stack, code, redirect_uri=REDIRECT_URI,
                      auth=("webapp", CONFIDENTIAL_SECRET)).json()
    assert "refresh_token" in tokens
    info = introspect(stack, tokens["refresh_token"], ("webapp", CONFIDENTIAL_SECRET))
    assert info["active"] is True and info["client_id"] == "webapp"
    assert info["scope"] == tokens["scope"]


# -- userinfo -----------------------------------------------------------------------------------


def test_userinfo_answers_the_claims_of_the_scope(stack: Stack) -> None:
    tokens = tokens_for(stack)
    answer = userinfo(stack, tokens["access_token"])
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    info = answer.json()
    assert info["sub"].startswith("google:") and info["email_verified"] is True
    assert info["name"] and info["idp"] == "google"
    post = httpx.post(f"{stack.url}/userinfo", headers=bearer(tokens["access_token"]))
    assert post.json() == info


def test_userinfo_refuses_missing_invalid_and_cookie_tokens(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/userinfo").status_code == 401
    bad = userinfo(stack, "a.b.c")
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    browser = stack.browser()
    browser.login()
    assert userinfo(stack, browser.access_token()).status_code == 401  # no openid scope


# -- H9: a store outage never yields an active token -------------------------------------------


def _break_store(stack: Stack) -> None:
    async def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("test: store down")
    for name in ("get", "put", "take", "delete"):
        setattr(stack.ctx.store, name, unavailable)


def test_H9_a_store_outage_fails_closed(make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=ALL_CLIENTS,
                       tokens={"verify_checks_revocation": True})
    tokens = tokens_for(stack)
    _break_store(stack)
    verify = httpx.get(f"{stack.url}/verify", headers=bearer(tokens["access_token"]))
    assert verify.status_code == 503
    answer = httpx.post(f"{stack.url}/introspect", data={"token": tokens["access_token"]},
                        auth=INTROSPECTOR_AUTH)
    assert answer.status_code == 503 and "active" not in answer.json()
    assert userinfo(stack, tokens["access_token"]).status_code == 503
    assert refresh(stack, tokens["refresh_token"]).status_code == 503


def test_H9_stateless_verify_keeps_working_without_the_store(stack: Stack) -> None:
    tokens = tokens_for(stack)
    _break_store(stack)
    assert httpx.get(f"{stack.url}/verify", headers=bearer(tokens["access_token"])
                     ).status_code == 200


def test_T5_an_api_introspects_only_the_tokens_meant_for_it(stack: Stack) -> None:
    assert introspect(stack, tokens_for(stack)["access_token"])["active"] is True  # aud = API
    assert introspect(stack, webapp_tokens(stack)["access_token"]) == {"active": False}


def test_L3_a_clients_own_revocation_is_info_and_reuse_detection_a_warning(
        make_stack: Any, logs: LogScan) -> None:
    """Issue 15, finding 9: a routine RP logout (the client revokes its refresh token) logged
    a WARNING, and operators learn to ignore warnings. Only a reuse that suggests a stolen
    token is one."""
    stack = oidc_stack(make_stack, clients=ALL_CLIENTS, tokens={"refresh_token_reuse_interval": 0})

    def family_revoked() -> list[dict[str, Any]]:
        stack.loop.call(lambda: None)  # the server thread has written its lines
        lines = [json.loads(line) for line in logs.lines]
        return [line for line in lines if line.get("event") == "family_revoked"]

    assert revoke(stack, tokens_for(stack)["refresh_token"]).status_code == 200
    routine = family_revoked()
    assert [line["level"] for line in routine] == ["INFO"]

    stolen = tokens_for(stack)
    refresh(stack, stolen["refresh_token"])
    assert refresh(stack, stolen["refresh_token"]).status_code == 400  # the rotated one again
    reuse = family_revoked()[len(routine):]
    assert [line["level"] for line in reuse] == ["WARNING"]
    assert reuse[0]["reason"] == "refresh token reuse"
