"""The OpenID Connect code flow as a downstream app sees it, driven by a real third-party client
library (Authlib): discovery, PKCE S256, code exchange, refresh, and ID token validation with
Authlib's own JOSE and OIDC checks against our JWKS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from conftest import Stack
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from oidc_support import (
    CONFIDENTIAL_SECRET,
    LOGOUT_URI,
    REDIRECT_URI,
    SPA_REDIRECT_URI,
    complete_authorization,
    discovery,
    oidc_stack,
)


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return oidc_stack(make_stack)


def validated_id_token(stack: Stack, token: dict[str, Any], *, client_id: str,
                       nonce: str) -> CodeIDToken:
    """The ID token checked as Authlib's OpenID client checks it, with our discovery + JWKS."""
    metadata = discovery(stack)
    keys = KeySet.import_key_set(httpx.get(metadata["jwks_uri"]).json())
    decoded = jose_jwt.decode(token["id_token"], keys, registry=JWSRegistry(
        algorithms=metadata["id_token_signing_alg_values_supported"]))
    claims = CodeIDToken(
        decoded.claims, decoded.header,
        options={"iss": {"essential": True, "value": metadata["issuer"]},
                 "aud": {"essential": True, "value": client_id}},
        params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]})
    claims.validate(leeway=30)
    return claims


def test_discovery_document_passes_authlibs_validation(stack: Stack) -> None:
    metadata = OpenIDProviderMetadata(discovery(stack))
    metadata.validate()
    assert metadata["issuer"] == stack.url
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "revocation_endpoint", "introspection_endpoint", "end_session_endpoint"):
        assert metadata[name].startswith(stack.url + "/"), name
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert set(metadata["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        metadata["token_endpoint_auth_methods_supported"])


def test_authlib_public_client_completes_the_code_flow_with_pkce_and_refreshes(
        stack: Stack) -> None:
    metadata = discovery(stack)
    app = OAuth2Client("spa", scope="openid email profile offline_access",
                       redirect_uri=SPA_REDIRECT_URI, code_challenge_method="S256",
                       token_endpoint_auth_method="none")
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = app.create_authorization_url(metadata["authorization_endpoint"],
                                              code_verifier=verifier, nonce=nonce)
    browser = stack.browser()
    back = complete_authorization(browser, url)
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith(SPA_REDIRECT_URI + "?")
    token = app.fetch_token(metadata["token_endpoint"], authorization_response=location,
                            state=state, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer"
    assert token["refresh_token"] and token["expires_in"] > 0
    claims = validated_id_token(stack, token, client_id="spa", nonce=nonce)
    assert claims["sub"].startswith("google:")
    assert claims["azp"] == "spa" and claims["idp"] == "google"
    assert "email" in claims and "name" in claims

    userinfo = app.get(metadata["userinfo_endpoint"])
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == claims["sub"]

    refreshed = app.refresh_token(metadata["token_endpoint"])
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    access = httpx.get(f"{stack.url}/verify",
                       headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert access.status_code == 200
    assert access.json()["aud"] == "https://api.example.test"
    assert access.json()["client_id"] == "spa"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_confidential_client_authenticates_with(stack: Stack, method: str) -> None:
    metadata = discovery(stack)
    app = OAuth2Client("webapp", CONFIDENTIAL_SECRET, scope="openid email",
                       redirect_uri=REDIRECT_URI, code_challenge_method="S256",
                       token_endpoint_auth_method=method)
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = app.create_authorization_url(metadata["authorization_endpoint"],
                                              code_verifier=verifier, nonce=nonce)
    back = complete_authorization(stack.browser(), url)
    token = app.fetch_token(metadata["token_endpoint"], authorization_response=back.headers[
        "location"], state=state, code_verifier=verifier)
    claims = validated_id_token(stack, token, client_id="webapp", nonce=nonce)
    assert "name" not in claims  # no profile scope, no profile claims
    assert "refresh_token" not in token  # no offline_access, no refresh token


def test_dev_mode_demo_app_runs_the_code_flow_end_to_end(make_stack: Any) -> None:
    stack = make_stack()  # development mode registers the public client "demo-app"
    browser = stack.browser()
    start = browser.get(f"{stack.url}/demo/oidc")
    assert start.headers["location"].startswith(f"{stack.url}/authorize?")
    done = complete_authorization(browser, start.headers["location"])
    assert done.headers["location"].startswith(f"{stack.url}/demo/callback?")
    page = browser.get(done.headers["location"])
    assert page.status_code == 200, page.text
    assert "ID token claims" in page.text and "its nonce matches" in page.text
    again = browser.get(f"{stack.url}/demo/callback?code=x&state=forged")
    assert again.status_code == 400
    # A started flow, and a state with non-ASCII characters (compare_digest's TypeError on str
    # was a 500).
    assert browser.get(f"{stack.url}/demo/oidc").status_code == 302
    accented = browser.get(f"{stack.url}/demo/callback?code=x&state=%C3%A9t%C3%A9")
    assert accented.status_code == 400


def test_P7_P8_authlib_client_logs_in_refreshes_and_logs_the_user_out(stack: Stack) -> None:
    """A relying party nobody here wrote drives the whole life of a session: Authlib's client
    signs in, refreshes, then sends the browser to end_session_endpoint with its ID token as
    the hint (RP-Initiated Logout 1.0); after that its refresh token and the browser's session
    are dead for every endpoint, and the browser lands on the app's registered URI."""
    metadata = discovery(stack)
    app = OAuth2Client("webapp", CONFIDENTIAL_SECRET, scope="openid email offline_access",
                       redirect_uri=REDIRECT_URI)
    nonce = generate_token(20)
    url, state = app.create_authorization_url(metadata["authorization_endpoint"], nonce=nonce)
    browser = stack.browser()
    token = app.fetch_token(metadata["token_endpoint"], state=state,
                            authorization_response=complete_authorization(
                                browser, url).headers["location"])
    validated_id_token(stack, token, client_id="webapp", nonce=nonce)
    refreshed = app.refresh_token(metadata["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]

    hint = refreshed.get("id_token") or token["id_token"]
    back = browser.get(metadata["end_session_endpoint"], params={
        "id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_URI, "state": "bye"})
    assert back.status_code == 302
    assert back.headers["location"] == f"{LOGOUT_URI}?state=bye"
    with pytest.raises(OAuthError) as refused:
        app.refresh_token(metadata["token_endpoint"])
    assert refused.value.error == "invalid_grant"
    assert browser.get(f"{stack.url}/auth").status_code == 401
