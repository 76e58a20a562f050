"""SECURITY C3: Google's id_token, checked by our own code after a signature check with
`cryptography` (gateway/providers/google.py `check_id_token`). Each refusal is an UpstreamError
(a 502 page), never another exception; the whole-login versions are in test_upstream_failures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.config import GoogleSettings
from gateway.errors import UpstreamError
from gateway.providers.google import check_at_hash, check_id_token

NOW = 1_900_000_000
LEEWAY = 60
CLIENT_ID = "client-1.apps.googleusercontent.com"
NONCE = "n-0S6_WzA2Mj"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_JWK = jwt.PyJWK({**jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True),
                        "kid": "k1", "alg": "RS256"})


def _settings() -> GoogleSettings:
    return GoogleSettings(client_id=CLIENT_ID)


_DROP = object()  # as a claim's new value: remove the claim


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com", "aud": CLIENT_ID, "azp": CLIENT_ID,
        "sub": "110169484474386276334", "iat": NOW - 5, "exp": NOW + 3595, "nonce": NONCE,
        "email": "ada@example.com", "email_verified": True,
    }
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign_raw(payload: bytes, key: rsa.RSAPrivateKey = KEY) -> str:
    signing_input = _b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode()) \
        + "." + _b64(payload)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _token(claims: dict[str, Any], key: rsa.RSAPrivateKey = KEY) -> str:
    return _sign_raw(json.dumps(claims).encode(), key)


def _check(token: str, key: jwt.PyJWK = PUBLIC_JWK) -> dict[str, Any]:
    return check_id_token(token, key, _settings(), NONCE, LEEWAY, NOW)


def test_C3_a_valid_id_token_gives_its_claims() -> None:
    claims = _check(_token(_claims()))
    assert claims["sub"] == "110169484474386276334"
    assert claims["email"] == "ada@example.com"


@pytest.mark.parametrize("changes", [
    {"aud": [CLIENT_ID, "other.apps.googleusercontent.com"]},
    {"iss": "accounts.google.com"},
    {"azp": _DROP},
    {"exp": NOW - LEEWAY + 1},  # expired, within the leeway
    {"iat": NOW + LEEWAY},  # clocks a little apart
    {"nbf": NOW + LEEWAY},
    {"exp": float(NOW + 100)},
])
def test_C3_id_tokens_google_may_send_are_accepted(changes: dict[str, Any]) -> None:
    assert _check(_token(_claims(**changes)))["sub"]


@pytest.mark.parametrize("changes", [
    {"aud": "other.apps.googleusercontent.com"},
    {"aud": ["other.apps.googleusercontent.com"]},
    {"aud": {CLIENT_ID: True}},
    {"aud": None},
    {"iss": "https://evil.example"},
    {"iss": ["https://accounts.google.com"]},
    {"azp": "other.apps.googleusercontent.com"},
    {"exp": NOW - LEEWAY},
    {"exp": str(NOW + 100)},
    {"exp": True},
    {"exp": 10 ** 400},
    {"iat": NOW + LEEWAY + 1},
    {"iat": "yesterday"},
    {"nbf": NOW + LEEWAY + 1},
    {"nbf": None},
    {"nonce": "another-nonce"},
    {"nonce": NONCE + "é"},  # non-ASCII: a refusal, not compare_digest's TypeError
    {"nonce": None},
    {"sub": ""},
    {"sub": 42},
    *({name: _DROP} for name in ("iss", "aud", "exp", "iat", "sub", "nonce")),
], ids=repr)
def test_C3_id_token_claims_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        _check(_token(_claims(**changes)))


def test_C3_exp_given_as_nan_is_refused() -> None:
    payload = json.dumps(_claims()).replace(str(NOW + 3595), "NaN").encode()
    assert b"NaN" in payload
    with pytest.raises(UpstreamError):
        _check(_sign_raw(payload))


def test_C3_a_signature_by_another_key_is_refused() -> None:
    with pytest.raises(UpstreamError):
        _check(_token(_claims(), key=OTHER_KEY))


def test_C3_a_changed_payload_under_the_original_signature_is_refused() -> None:
    header, _, signature = _token(_claims()).split(".")
    forged = _b64(json.dumps(_claims(sub="someone-else")).encode())
    with pytest.raises(UpstreamError):
        _check(f"{header}.{forged}.{signature}")


def test_C3_a_re_spelled_signature_is_refused() -> None:
    token = _token(_claims())
    assert _check(token)
    # A 256-byte signature is 342 base64url characters: the last one carries 2 unused bits.
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = alphabet[alphabet.index(last) ^ 1]
    with pytest.raises(UpstreamError):
        _check(token[:-1] + respelled)


def test_C3_a_key_of_another_algorithm_is_refused() -> None:
    # A JWKS entry that is an HMAC key, and a token "signed" with it under an RS256 header: the
    # signature is right for that key, but Google signs with RSA only.
    secret = b"k" * 32
    hmac_key = jwt.PyJWK({"kty": "oct", "k": _b64(secret), "kid": "k1"})
    signing_input = _token(_claims()).rsplit(".", 1)[0]
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{_b64(signature)}"
    assert hmac_key.Algorithm.verify(signing_input.encode(), hmac_key.key, signature)
    with pytest.raises(UpstreamError):
        _check(forged, key=hmac_key)


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b"\xff\xfe", b"[" * 100_000])
def test_C3_a_signed_payload_that_is_not_a_json_object_is_refused(payload: bytes) -> None:
    with pytest.raises(UpstreamError):
        _check(_sign_raw(payload))


def test_C3_at_hash_that_is_not_ascii_is_refused_not_a_type_error() -> None:
    with pytest.raises(UpstreamError):
        check_at_hash({"at_hash": "é" * 22}, "ya29.access-token")


def test_C3_an_id_token_for_several_audiences_needs_an_azp() -> None:
    """Issue 15, finding 10 (OIDC Core 3.1.3.7): a list `aud` without `azp` does not say
    which client the token was issued to; with our client as `azp` it does."""
    several = [CLIENT_ID, "other.apps.googleusercontent.com"]
    with pytest.raises(UpstreamError) as refused:
        _check(_token(_claims(aud=several, azp=_DROP)))
    assert "no azp" in refused.value.log_detail
    assert _check(_token(_claims(aud=several)))["azp"] == CLIENT_ID
    assert _check(_token(_claims(aud=[CLIENT_ID], azp=_DROP)))["sub"]  # one audience: none needed

