"""Login with Google over real HTTP against the Google stand-in: its own protocol (the
authorization request, PKCE, nonce) and the gateway-wide pages. What every provider's login
shares is in test_provider_contract.py."""

from __future__ import annotations

import os
import time

import httpx
import jwt
from conftest import Stack, query_of


def test_openid_configuration_describes_issuer_and_jwks(stack: Stack) -> None:
    document = httpx.get(f"{stack.url}/.well-known/openid-configuration").json()
    assert document["issuer"] == stack.url
    assert document["jwks_uri"] == f"{stack.url}/.well-known/jwks.json"
    assert httpx.get(document["jwks_uri"]).json()["keys"]


def test_S1_S2_S3_login_redirect_carries_state_pkce_and_nonce(stack: Stack) -> None:
    start = stack.browser().start_login()
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(stack.google.authorize_url + "?")
    params = {k: v[0] for k, v in query_of(location).items()}
    assert len(params["state"]) >= 22  # >= 128 bits of base64url
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["nonce"]) >= 22
    assert params["redirect_uri"] == f"{stack.url}/callback/google"
    assert params["response_type"] == "code"
    assert set(params["scope"].split()) >= {"openid", "email", "profile"}
    assert start.headers["Cache-Control"] == "no-store"


def test_S2_the_code_exchange_sends_the_pkce_verifier(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    challenge = query_of(start.headers["location"])["code_challenge"][0]
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    token_request = stack.google.token_requests[-1]
    from gateway.transactions import pkce_s256_challenge
    assert pkce_s256_challenge(token_request["code_verifier"]) == challenge
    assert token_request["redirect_uri"] == f"{stack.url}/callback/google"


def test_healthz_and_readyz(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok", "pid": os.getpid()}
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"config": True, "keys": True, "store": True}


def test_S5_P7_sign_out_needs_post_and_xsrf_and_clears_cookies(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    assert browser.get(f"{stack.url}/logout").status_code == 405
    page = browser.get(f"{stack.url}/")  # sets the _xsrf cookie
    assert browser.post(f"{stack.url}/logout").status_code == 403
    from conftest import FormParser
    form = FormParser()
    form.feed(page.text)
    out = browser.post(f"{stack.url}/logout", data=form.inputs)
    assert out.status_code == 303
    assert not any(n.endswith(("gw_access", "gw_session")) for n in browser.cookies)
    assert "Sign in with Google" in browser.get(f"{stack.url}/").text


def test_unknown_route_is_a_clean_404(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/nope")
    assert page.status_code == 404 and "Traceback" not in page.text
    api = httpx.get(f"{stack.url}/nope", headers={"Accept": "application/json"})
    assert api.json()["error"] == "not_found"


def test_access_token_lifetime_follows_configuration(make_stack) -> None:
    stack = make_stack(tokens={"access_token_lifetime": 120, "algorithm": "ES256"})
    browser = stack.browser()
    browser.login()
    claims = browser.get(f"{stack.url}/verify").json()
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.get_unverified_header(browser.access_token())["alg"] == "ES256"
    assert abs(claims["iat"] - time.time()) < 60
