"""SECURITY J11: ID tokens in RS256 whatever tokens.algorithm is (OIDC Core 15.1, Discovery 3),
checked as an app sees them: by Authlib/joserfc and by PyJWT against the published JWKS, while
access tokens stay on tokens.algorithm (J1)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from authlib.oidc.core import CodeIDToken
from conftest import Stack
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from oidc_support import (
    CLIENTS,
    CONFIDENTIAL_SECRET,
    LOGOUT_URI,
    PUBLIC,
    REDIRECT_URI,
    bearer,
    discovery,
    exchange,
    get_code,
    oidc_stack,
    refresh,
    tokens_for,
)

from gateway.tokens import ACCESS_TOKEN_TYPE

NON_RS256 = ("EdDSA", "ES256")


def _jwks(stack: Stack) -> dict[str, Any]:
    answer = httpx.get(discovery(stack)["jwks_uri"])
    assert answer.status_code == 200
    jwks: dict[str, Any] = answer.json()
    return jwks


def _authlib_claims(stack: Stack, tokens: dict[str, Any], *, client_id: str,
                    algorithms: list[str]) -> CodeIDToken:
    """The ID token as Authlib's OpenID client checks it: joserfc over our JWKS, then the OIDC
    claims (iss, aud, nonce, at_hash against the access token)."""
    keys = KeySet.import_key_set(_jwks(stack))
    decoded = jose_jwt.decode(tokens["id_token"], keys,
                              registry=JWSRegistry(algorithms=algorithms))
    claims = CodeIDToken(
        decoded.claims, decoded.header,
        options={"iss": {"essential": True, "value": stack.url},
                 "aud": {"essential": True, "value": client_id}},
        params={"nonce": "n-456", "client_id": client_id,
                "access_token": tokens["access_token"]})
    claims.validate(leeway=30)
    return claims


def _pyjwt_claims(stack: Stack, token: str, algorithm: str, audience: str) -> dict[str, Any]:
    """Verified by PyJWT with the JWKS key the header names, and only that algorithm."""
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [k for k in _jwks(stack)["keys"] if k["kid"] == kid]
    assert jwk["alg"] == algorithm
    claims: dict[str, Any] = jwt.decode(token, jwt.PyJWK(jwk), algorithms=[algorithm],
                                        audience=audience, issuer=stack.url)
    return claims


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_code_flow_id_token_is_rs256_and_verifies_against_the_jwks(
        make_stack: Any, algorithm: str) -> None:
    stack = oidc_stack(make_stack, tokens={"algorithm": algorithm})

    tokens = tokens_for(stack)

    assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "RS256"
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == algorithm
    claims = _authlib_claims(stack, tokens, client_id="spa", algorithms=["RS256"])
    assert claims["sub"].startswith("google:") and claims["azp"] == "spa"
    assert _pyjwt_claims(stack, tokens["id_token"], "RS256", "spa")["sub"] == claims["sub"]
    # Both families are published, each key with its alg; the access token still verifies.
    assert {k["alg"] for k in _jwks(stack)["keys"]} == {algorithm, "RS256"}
    assert httpx.get(f"{stack.url}/verify", headers=bearer(tokens["access_token"])
                     ).status_code == 200
    # A refresh brings a new ID token, RS256 as well.
    refreshed = refresh(stack, tokens["refresh_token"]).json()
    assert jwt.get_unverified_header(refreshed["id_token"])["alg"] == "RS256"
    assert _pyjwt_claims(stack, refreshed["id_token"], "RS256", "spa")["sub"] == claims["sub"]


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_discovery_lists_rs256_first_for_id_tokens(make_stack: Any, algorithm: str) -> None:
    stack = oidc_stack(make_stack, tokens={"algorithm": algorithm})

    metadata = discovery(stack)

    assert metadata["id_token_signing_alg_values_supported"] == ["RS256", algorithm]
    assert metadata["access_token_signing_alg_values_supported"] == [algorithm]


def test_J11_discovery_of_an_rs256_gateway_lists_rs256_once(make_stack: Any) -> None:
    stack = oidc_stack(make_stack)

    assert discovery(stack)["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {k["alg"] for k in _jwks(stack)["keys"]} == {"RS256"}


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_J11_a_client_registering_eddsa_gets_eddsa_id_tokens(make_stack: Any) -> None:
    spa = {**PUBLIC, "id_token_signed_response_alg": "EdDSA"}
    stack = oidc_stack(make_stack, [spa, *(c for c in CLIENTS if c is not PUBLIC)],
                       tokens={"algorithm": "EdDSA"})

    tokens = tokens_for(stack)

    assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "EdDSA"
    claims = _pyjwt_claims(stack, tokens["id_token"], "EdDSA", "spa")
    keys = KeySet.import_key_set(_jwks(stack))
    decoded = jose_jwt.decode(tokens["id_token"], keys, registry=JWSRegistry(
        algorithms=["EdDSA"]))
    assert decoded.claims["sub"] == claims["sub"]
    # at_hash (OIDC Core 3.1.3.6) with EdDSA's hash over Ed25519, SHA-512: computed here.
    digest = hashlib.sha512(tokens["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:32]).rstrip(b"=").decode()
    # The other clients keep RS256.
    webapp_code = get_code(stack.browser(), client_id="webapp", redirect_uri=REDIRECT_URI)
    webapp = exchange(stack, webapp_code, redirect_uri=REDIRECT_URI,
                      auth=("webapp", CONFIDENTIAL_SECRET)).json()
    assert jwt.get_unverified_header(webapp["id_token"])["alg"] == "RS256"


def test_J11_an_rs256_access_token_is_refused_at_verify_in_eddsa_mode(
        make_stack: Any) -> None:
    stack = oidc_stack(make_stack, tokens={"algorithm": "EdDSA"})
    claims = jwt.decode(tokens_for(stack)["access_token"], options={"verify_signature": False})
    issuer = stack.ctx.issuer

    # The same claims, signed by each family of the gateway's own keys.
    eddsa = issuer.sign({**claims, "jti": "j11-eddsa"}, ACCESS_TOKEN_TYPE)
    rs256 = issuer.sign({**claims, "jti": "j11-rs256"}, ACCESS_TOKEN_TYPE, "RS256")

    assert jwt.get_unverified_header(rs256)["alg"] == "RS256"
    assert httpx.get(f"{stack.url}/verify", headers=bearer(eddsa)).status_code == 200
    refused = httpx.get(f"{stack.url}/verify", headers=bearer(rs256))
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_rp_initiated_logout_accepts_an_rs256_id_token_hint(
        make_stack: Any, algorithm: str) -> None:
    stack = oidc_stack(make_stack, tokens={"algorithm": algorithm})
    browser = stack.browser()
    code = get_code(browser, client_id="webapp", redirect_uri=REDIRECT_URI)
    tokens = exchange(stack, code, redirect_uri=REDIRECT_URI,
                      auth=("webapp", CONFIDENTIAL_SECRET)).json()
    assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "RS256"

    query = urlencode({"id_token_hint": tokens["id_token"],
                       "post_logout_redirect_uri": LOGOUT_URI, "state": "bye-j11"})
    answer = browser.get(f"{stack.url}/logout/oidc?{query}")

    # Accepted as proof: straight back to the app, no confirmation page (SECURITY S5).
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{LOGOUT_URI}?state=bye-j11"
    assert refresh(stack, tokens["refresh_token"],
                   auth=("webapp", CONFIDENTIAL_SECRET)).json()["error"] == "invalid_grant"
