"""The Google stand-in enforces Google's protocol, so a gateway that skipped a step would fail.

These talk to the stand-in directly, as a misbehaving client would.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jwt
import pytest
from conftest import FormParser, Stack, query_of

from gateway.transactions import pkce_s256_challenge

VERIFIER = "v" * 20 + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


def _authorize(stack: Stack, **overrides: str) -> httpx.Response:
    google = stack.google
    params = {
        "client_id": google.client_id,
        "redirect_uri": google.redirect_uris[0],
        "response_type": "code",
        "scope": "openid email profile",
        "state": "s" * 43,
        "nonce": "n" * 32,
        "code_challenge": pkce_s256_challenge(VERIFIER),
        "code_challenge_method": "S256",
        **overrides,
    }
    return httpx.get(google.authorize_url, params=params)


def _code(stack: Stack, user: str = "ada") -> str:
    page = _authorize(stack)
    form = FormParser()
    form.feed(page.text)
    back = httpx.post(httpx.URL(stack.google.authorize_url).join(form.action or ""),
                      data={**form.inputs, "user": user})
    assert back.status_code == 302
    return query_of(back.headers["location"])["code"][0]


def _exchange(stack: Stack, code: str, **overrides: Any) -> httpx.Response:
    google = stack.google
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": google.redirect_uris[0], "client_id": google.client_id,
            "client_secret": google.client_secret, "code_verifier": VERIFIER}
    form.update(overrides)
    return httpx.post(google.token_url, data={k: v for k, v in form.items() if v is not None})


def test_a_correct_exchange_returns_a_signed_id_token_with_nonce_and_at_hash(
        stack: Stack) -> None:
    answer = _exchange(stack, _code(stack))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["access_token"].startswith("ya29.")
    jwks = httpx.get(stack.google.jwks_url).json()
    claims = jwt.decode(body["id_token"], jwt.PyJWK(jwks["keys"][0]), algorithms=["RS256"],
                        audience=stack.google.client_id, issuer=stack.google.issuer)
    assert claims["nonce"] == "n" * 32 and claims["azp"] == stack.google.client_id
    assert claims["at_hash"]


def test_S2_the_stand_in_refuses_a_wrong_pkce_verifier(stack: Stack) -> None:
    answer = _exchange(stack, _code(stack), code_verifier="w" * 64)
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description":
                             "Invalid code verifier."}


def test_S2_the_stand_in_refuses_a_missing_pkce_verifier(stack: Stack) -> None:
    answer = _exchange(stack, _code(stack), code_verifier=None)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_the_stand_in_codes_are_single_use(stack: Stack) -> None:
    code = _code(stack)
    assert _exchange(stack, code).status_code == 200
    replay = _exchange(stack, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_the_stand_in_checks_the_redirect_uri_of_the_exchange(stack: Stack) -> None:
    answer = _exchange(stack, _code(stack), redirect_uri="http://127.0.0.1:1/elsewhere")
    assert answer.status_code == 400 and answer.json()["error"] == "redirect_uri_mismatch"


def test_the_stand_in_checks_the_client_secret(stack: Stack) -> None:
    answer = _exchange(stack, _code(stack), client_secret="GOCSPX-wrong")
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_the_stand_in_accepts_client_secret_basic(stack: Stack) -> None:
    google = stack.google
    basic = base64.b64encode(f"{google.client_id}:{google.client_secret}".encode()).decode()
    answer = httpx.post(google.token_url, headers={"Authorization": f"Basic {basic}"}, data={
        "grant_type": "authorization_code", "code": _code(stack),
        "redirect_uri": google.redirect_uris[0], "code_verifier": VERIFIER})
    assert answer.status_code == 200, answer.text


def test_the_stand_in_token_endpoint_wants_a_form(stack: Stack) -> None:
    answer = httpx.post(stack.google.token_url, json={"grant_type": "authorization_code"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


@pytest.mark.parametrize("overrides", [
    {"client_id": "unknown.apps.googleusercontent.com"},
    {"redirect_uri": "https://evil.example/callback"},
])
def test_R3_unknown_client_or_redirect_uri_is_a_page_never_a_redirect(
        stack: Stack, overrides: dict[str, str]) -> None:
    page = _authorize(stack, **overrides)
    assert page.status_code in (400, 401)
    assert "location" not in page.headers
    assert "Access blocked" in page.text


def test_the_stand_in_userinfo_needs_a_valid_bearer_token(stack: Stack) -> None:
    token = _exchange(stack, _code(stack, user="grace")).json()["access_token"]
    userinfo = httpx.get(stack.google.userinfo_url, headers={"Authorization": f"Bearer {token}"})
    assert userinfo.json()["name"] == "Grace Hopper"
    refused = httpx.get(stack.google.userinfo_url, headers={"Authorization": "Bearer ya29.x"})
    assert refused.status_code == 401 and "invalid_token" in refused.headers["WWW-Authenticate"]


def test_the_stand_in_serves_the_users_picture_at_an_opaque_url(stack: Stack) -> None:
    """As Google's (~100 characters on lh3.googleusercontent.com, no user name in it), not a
    data: URL: the picture claim rides in every access token the gateway issues."""
    token = _exchange(stack, _code(stack, user="grace")).json()["access_token"]
    userinfo = httpx.get(stack.google.userinfo_url, headers={"Authorization": f"Bearer {token}"})
    url = userinfo.json()["picture"]
    assert url.startswith(f"{stack.google.base_url}/avatars/") and "grace" not in url
    assert len(url) <= 100
    picture = httpx.get(url)
    assert picture.status_code == 200
    assert picture.headers["Content-Type"] == "image/svg+xml"
    assert picture.headers["X-Content-Type-Options"] == "nosniff"
    assert picture.text.startswith("<svg ") and ">GH</text>" in picture.text
    assert httpx.get(f"{stack.google.base_url}/avatars/unknown").status_code == 404
