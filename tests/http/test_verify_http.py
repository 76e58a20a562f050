"""/verify and /introspect over HTTP: answers and refusals as downstream apps see them."""

from __future__ import annotations

import httpx
import jwt
import pytest
from conftest import Stack
from oidc_support import INTROSPECTOR, INTROSPECTOR_AUTH


@pytest.fixture
def stack(make_stack) -> Stack:
    # A registered client, for /introspect (client authentication required, SECURITY T2).
    return make_stack(clients=[INTROSPECTOR])


@pytest.fixture
def signed_in(stack: Stack) -> tuple[Stack, str]:
    browser = stack.browser()
    browser.login()
    return stack, browser.access_token()


def test_verify_without_token_is_401_with_bearer_challenge(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/verify")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.json()["error"] == "invalid_request"


@pytest.mark.parametrize("token", [
    "garbage", "a.b.c", "a.b", "a.b.c.d", "eyJhbGciOiJub25lIn0.e30.", "x" * 20_000,
])
def test_J7_malformed_tokens_get_401_never_500(stack: Stack, token: str) -> None:
    answer = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code in (401, 431)
    if answer.status_code == 401:
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert answer.json()["error"] == "invalid_token"


def test_J9_every_refusal_looks_the_same(signed_in: tuple[Stack, str]) -> None:
    stack, token = signed_in
    header, _payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"sub":"google:1"}').decode()
    bodies = set()
    for bad in (token[:-4] + "AAAA", f"{header}.{forged_payload}.{signature}", "a.b.c"):
        answer = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401
        bodies.add(answer.text)
    assert len(bodies) == 1


def test_J2_hs256_token_signed_with_the_public_jwk_is_refused(
        signed_in: tuple[Stack, str]) -> None:
    stack, token = signed_in
    claims = jwt.decode(token, options={"verify_signature": False})
    jwks = httpx.get(f"{stack.url}/.well-known/jwks.json").json()
    secret = str(jwks["keys"][0]).encode()
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt",
                           "kid": jwks["keys"][0]["kid"]}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    answer = httpx.get(f"{stack.url}/verify",
                       headers={"Authorization": f"Bearer {head}.{body}.{sig}"})
    assert answer.status_code == 401


def test_introspect_answers_in_rfc7662_form(signed_in: tuple[Stack, str]) -> None:
    stack, token = signed_in
    active = httpx.post(f"{stack.url}/introspect", data={"token": token}, auth=INTROSPECTOR_AUTH)
    assert active.status_code == 200
    body = active.json()
    assert body["active"] is True
    assert body["sub"].startswith("google:") and body["iss"] == stack.url
    assert active.headers["Cache-Control"] == "no-store"
    inactive = httpx.post(f"{stack.url}/introspect", data={"token": token[:-4] + "AAAA"},
                          auth=INTROSPECTOR_AUTH)
    assert inactive.json() == {"active": False}


def test_introspect_without_token_is_a_400_json(stack: Stack) -> None:
    answer = httpx.post(f"{stack.url}/introspect", data={}, auth=INTROSPECTOR_AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_T2_introspect_without_client_authentication_is_a_401(
        signed_in: tuple[Stack, str]) -> None:
    stack, token = signed_in
    for auth in (None, ("introspector", "wrong-secret"), ("nobody", "x")):
        answer = httpx.post(f"{stack.url}/introspect", data={"token": token}, auth=auth)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert answer.headers["Cache-Control"] == "no-store"


def test_H7_oversized_body_is_refused(stack: Stack) -> None:
    answer = httpx.post(f"{stack.url}/introspect", data={"token": "x" * 200_000})
    assert answer.status_code in (400, 413) or answer.is_error
