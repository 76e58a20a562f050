"""Signing out (SECURITY P2, P7): OpenID Connect RP-Initiated Logout at `/logout/oidc` and the
gateway's own `POST /logout` end the session, revoke the refresh-token families started in it,
clear the cookies, and return only to a registered `post_logout_redirect_uri`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from conftest import FormParser, Stack
from oidc_support import (
    CLIENTS,
    CONFIDENTIAL_SECRET,
    INTROSPECTOR,
    INTROSPECTOR_AUTH,
    LOGOUT_URI,
    REDIRECT_URI,
    authorization_params,
    exchange,
    get_code,
    oidc_stack,
    refresh,
    tokens_for,
)


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return oidc_stack(make_stack)


def _signed_in_webapp(stack: Stack) -> tuple[Any, dict[str, Any]]:
    browser = stack.browser()
    code = get_code(browser, client_id="webapp", redirect_uri=REDIRECT_URI)
    tokens = exchange(stack, code, redirect_uri=REDIRECT_URI,
                      auth=("webapp", CONFIDENTIAL_SECRET)).json()
    return browser, tokens


def _refresh_webapp(stack: Stack, tokens: dict[str, Any]) -> httpx.Response:
    return refresh(stack, tokens["refresh_token"], auth=("webapp", CONFIDENTIAL_SECRET))


def _session_cleared(browser: Any) -> None:
    cleared = [h for h in browser.set_cookie_headers[-4:] if "gw_session=" in h]
    assert cleared and 'gw_session=""' in cleared[-1]
    assert not any(name.endswith(("gw_session", "gw_access")) for name in browser.cookies)


def test_P7_end_session_with_id_token_hint_signs_out_revokes_and_redirects(
        stack: Stack) -> None:
    browser, tokens = _signed_in_webapp(stack)
    spa_tokens = tokens_for(stack, browser)  # another app, same browser session
    query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI,
                       "state": "bye-1"})
    answer = browser.get(f"{stack.url}/logout/oidc?{query}")
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{LOGOUT_URI}?state=bye-1"
    _session_cleared(browser)
    assert _refresh_webapp(stack, tokens).json()["error"] == "invalid_grant"
    assert refresh(stack, spa_tokens["refresh_token"]).json()["error"] == "invalid_grant"
    # The next authorization needs a new upstream sign-in.
    again = browser.get(f"{stack.url}/authorize?" + urlencode({
        "client_id": "webapp", "redirect_uri": REDIRECT_URI, "response_type": "code",
        "scope": "openid", "prompt": "none"}))
    assert "error=login_required" in again.headers["location"]


def test_S5_end_session_without_proof_asks_the_user_first(stack: Stack) -> None:
    browser, tokens = _signed_in_webapp(stack)
    query = urlencode({"client_id": "webapp", "post_logout_redirect_uri": LOGOUT_URI,
                       "state": "s"})
    page = browser.get(f"{stack.url}/logout/oidc?{query}")
    assert page.status_code == 200 and "Sign out?" in page.text
    assert _refresh_webapp(stack, tokens).status_code == 200  # nothing happened yet
    form = FormParser()
    form.feed(page.text)
    assert form.action == "/logout/oidc" and "_xsrf" in form.inputs
    forged = browser.post(f"{stack.url}/logout/oidc", data={
        **{k: v for k, v in form.inputs.items() if k != "_xsrf"}})
    assert forged.status_code == 403
    done = browser.post(f"{stack.url}/logout/oidc", data=form.inputs)
    assert done.status_code == 302 and done.headers["location"] == f"{LOGOUT_URI}?state=s"
    _session_cleared(browser)


def test_end_session_without_a_session_just_shows_the_signed_out_page(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/logout/oidc")
    assert page.status_code == 200 and "signed out" in page.text


@pytest.mark.parametrize("params", [
    {"client_id": "webapp", "post_logout_redirect_uri": "https://evil.example/"},
    {"client_id": "webapp", "post_logout_redirect_uri": LOGOUT_URI + "/"},
    {"post_logout_redirect_uri": LOGOUT_URI},  # which client's list? refused
    {"client_id": "spa", "post_logout_redirect_uri": LOGOUT_URI},  # webapp's, not spa's
    {"client_id": "nobody"},
    {"id_token_hint": "a.b.c"},
])
def test_R1_end_session_never_redirects_to_an_unregistered_uri(stack: Stack,
                                                               params: dict[str, str]) -> None:
    answer = httpx.get(f"{stack.url}/logout/oidc?{urlencode(params)}")
    assert answer.status_code == 400 and "location" not in answer.headers


def test_end_session_refuses_an_id_token_hint_of_another_client(stack: Stack) -> None:
    _browser, tokens = _signed_in_webapp(stack)
    answer = httpx.get(f"{stack.url}/logout/oidc?" + urlencode({
        "id_token_hint": tokens["id_token"], "client_id": "spa"}))
    assert answer.status_code == 400


def test_P7_the_sign_out_form_revokes_the_sessions_families_too(stack: Stack) -> None:
    browser, tokens = _signed_in_webapp(stack)
    home = browser.get(f"{stack.url}/")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None
    done = browser.post(f"{stack.url}/logout", data={"_xsrf": xsrf.group(1)})
    assert done.status_code == 303
    assert _refresh_webapp(stack, tokens).json()["error"] == "invalid_grant"


def test_discovery_of_end_session(make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=CLIENTS)
    metadata = httpx.get(f"{stack.url}/.well-known/openid-configuration").json()
    assert httpx.get(metadata["end_session_endpoint"]).status_code == 200


def test_T6_sign_out_revokes_the_access_token_it_clears(make_stack: Any) -> None:
    """Issue 15, finding 4: a copy of the access JWT taken before POST /logout stayed
    `active: true` at /introspect and valid at /verify and /auth for its whole lifetime."""
    stack = oidc_stack(make_stack, clients=[*CLIENTS, INTROSPECTOR],
                       tokens={"verify_checks_revocation": True})
    browser = stack.browser()
    browser.login()
    copy = browser.access_token()

    def introspected() -> dict[str, Any]:
        return httpx.post(f"{stack.url}/introspect", data={"token": copy},
                          auth=INTROSPECTOR_AUTH).json()

    assert introspected()["active"] is True
    home = browser.get(f"{stack.url}/")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None
    assert browser.post(f"{stack.url}/logout", data={"_xsrf": xsrf.group(1)}).status_code == 303
    assert introspected() == {"active": False}
    for check in ("/verify", "/auth"):
        answer = httpx.get(f"{stack.url}{check}", headers={"Authorization": f"Bearer {copy}"})
        assert answer.status_code == 401, check


def test_P8_a_logout_by_id_token_hint_without_the_cookie_ends_the_session_everywhere(
        make_stack: Any) -> None:
    """Issue 15, finding 2: a logout with a valid id_token_hint but no cookie (a cross-site
    form post, or anyone holding one of the user's ID tokens) marked the sid ended while the
    session lived on: /auth still 200, /authorize still issued single sign-on codes whose every
    exchange failed, and a new login kept the ended sid. Now the session the hint names ends
    for every endpoint, and a new login starts cleanly under a new sid."""
    stack = oidc_stack(make_stack, clients=[*CLIENTS, INTROSPECTOR],
                       tokens={"verify_checks_revocation": True})
    browser, tokens = _signed_in_webapp(stack)
    access_cookie = browser.access_token()
    assert browser.get(f"{stack.url}/auth").status_code == 200

    # No cookie at all: only the hint names the session.
    assert httpx.get(f"{stack.url}/logout/oidc",
                     params={"id_token_hint": tokens["id_token"]}).status_code == 200

    assert browser.get(f"{stack.url}/auth").status_code == 401  # access cookie: its sid ended
    for name in [n for n in browser.cookies if n.endswith("gw_access")]:
        del browser.cookies[name]
    assert browser.get(f"{stack.url}/auth").status_code == 401  # session cookie: gone
    sso = browser.get(f"{stack.url}/authorize", params=authorization_params(
        client_id="webapp", redirect_uri=REDIRECT_URI))
    assert not sso.headers.get("location", "").startswith(REDIRECT_URI)  # no code: a login
    assert _refresh_webapp(stack, tokens).json()["error"] == "invalid_grant"
    inactive = httpx.post(f"{stack.url}/introspect", data={"token": access_cookie},
                          auth=INTROSPECTOR_AUTH).json()
    assert inactive == {"active": False}

    # Signing in again in the same browser: a new sid, and the code flow works end to end.
    code = get_code(browser, client_id="webapp", redirect_uri=REDIRECT_URI)
    fresh = exchange(stack, code, redirect_uri=REDIRECT_URI,
                     auth=("webapp", CONFIDENTIAL_SECRET)).json()
    assert _refresh_webapp(stack, fresh).status_code == 200
    assert browser.get(f"{stack.url}/auth").status_code == 200
    assert jwt.decode(fresh["id_token"], options={"verify_signature": False})["sid"] != \
        jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
