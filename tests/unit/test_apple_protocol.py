"""Sign in with Apple's protocol as plain functions: the client secret we sign (checked with
joserfc, not the library that signs it), its renewal, Apple's string booleans, the `user` field,
the id_token's claims, and the stand-in's own checks of the client secret."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError as JoserfcError
from joserfc.jwk import ECKey
from jwt.algorithms import RSAAlgorithm

from gateway.config import APPLE_MAX_CLIENT_SECRET_LIFETIME, AppleSettings, Secret
from gateway.dev.standins.apple import AppleStandIn
from gateway.dev.standins.common import ProtocolError
from gateway.errors import UpstreamError
from gateway.providers.apple import (
    CLIENT_SECRET_LIFETIME,
    ClientSecret,
    apple_boolean,
    check_id_token,
    identity_from_apple,
    make_client_secret,
    name_from_user_field,
)

NOW = 1_760_000_000.0
AUTHORITY = "https://appleid.apple.com"
SERVICES_ID = "com.example.web"


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def team_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _settings(key: ec.EllipticCurvePrivateKey) -> AppleSettings:
    return AppleSettings(client_id=SERVICES_ID, team_id="TEAMID1234", key_id="KEYID12345",
                         private_key=Secret(_pem(key)), authority=AUTHORITY)


def _joserfc_claims(token: str, key: ec.EllipticCurvePrivateKey) -> tuple[dict[str, Any],
                                                                          dict[str, Any]]:
    """Header and claims, after joserfc verified the ES256 signature with the public key."""
    public = ECKey.import_key(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    decoded = jose_jwt.decode(token, public, algorithms=["ES256"])
    return dict(decoded.header), dict(decoded.claims)


# ---------------------------------------------------------------------------------------------
# The client secret


def test_apple_client_secret_is_the_es256_jwt_apple_documents(
        team_key: ec.EllipticCurvePrivateKey) -> None:
    token = ClientSecret(_settings(team_key), clock=lambda: NOW).current()
    header, claims = _joserfc_claims(token, team_key)
    assert header["alg"] == "ES256" and header["kid"] == "KEYID12345"
    assert claims["iss"] == "TEAMID1234"
    assert claims["sub"] == SERVICES_ID
    assert claims["aud"] == AUTHORITY
    assert claims["iat"] == int(NOW)
    assert 0 < claims["exp"] - claims["iat"] <= APPLE_MAX_CLIENT_SECRET_LIFETIME
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp"}
    # The raw r || s of JWS (RFC 7518 3.4), not DER: 64 bytes for P-256.
    signature = token.rsplit(".", 1)[1]
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


def test_apple_client_secret_signed_by_another_key_fails_the_independent_check(
        team_key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = ClientSecret(_settings(other), clock=lambda: NOW).current()
    with pytest.raises(JoserfcError):
        _joserfc_claims(token, team_key)


def test_apple_client_secret_is_kept_then_renewed_well_before_it_expires(
        team_key: ec.EllipticCurvePrivateKey) -> None:
    now = [NOW]
    secret = ClientSecret(_settings(team_key), clock=lambda: now[0])
    first = secret.current()
    now[0] += CLIENT_SECRET_LIFETIME / 2 - 1
    assert secret.current() == first  # kept, not signed at every login
    now[0] += 1
    second = secret.current()
    assert second != first
    _, first_claims = _joserfc_claims(first, team_key)
    _, second_claims = _joserfc_claims(second, team_key)
    assert second_claims["iat"] == int(now[0])
    # Whenever a secret is handed out, half of its lifetime at least is left.
    assert first_claims["exp"] - (NOW + CLIENT_SECRET_LIFETIME / 2 - 1) > \
        CLIENT_SECRET_LIFETIME / 2
    assert "**" in repr(secret) and first not in repr(secret)


@pytest.mark.parametrize("lifetime", [0, APPLE_MAX_CLIENT_SECRET_LIFETIME + 1])
def test_apple_client_secret_longer_than_six_months_is_never_made(
        team_key: ec.EllipticCurvePrivateKey, lifetime: int) -> None:
    with pytest.raises(ValueError, match="6 months"):
        make_client_secret(_settings(team_key), team_key, now=NOW, lifetime=lifetime)


def _standin(team_key: ec.EllipticCurvePrivateKey, now: float) -> AppleStandIn:
    return AppleStandIn(AUTHORITY, SERVICES_ID, "TEAMID1234", "KEYID12345",
                        team_key.public_key(), ["https://login.example.com/callback/apple"],
                        clock=lambda: now)


def _forged(key: Any, claims: dict[str, Any], *, algorithm: str = "ES256",
            kid: str = "KEYID12345") -> str:
    base = {"iss": "TEAMID1234", "sub": SERVICES_ID, "aud": AUTHORITY, "iat": int(NOW),
            "exp": int(NOW) + 3600}
    return jwt.encode({**base, **claims}, key, algorithm=algorithm, headers={"kid": kid})


def test_apple_standin_accepts_the_gateways_client_secret_and_refuses_others(
        team_key: ec.EllipticCurvePrivateKey) -> None:
    standin = _standin(team_key, NOW + 60)
    standin.check_client_secret(SERVICES_ID, ClientSecret(_settings(team_key),
                                                          clock=lambda: NOW).current())
    refused = {
        "expired": _forged(team_key, {"exp": int(NOW) - 1}),
        "longer than 6 months": _forged(
            team_key, {"exp": int(NOW) + APPLE_MAX_CLIENT_SECRET_LIFETIME + 1}),
        "issued in the future": _forged(team_key, {"iat": int(NOW) + 3600}),
        "another team": _forged(team_key, {"iss": "OTHERTEAM1"}),
        "another Services ID": _forged(team_key, {"sub": "com.example.other"}),
        "another audience": _forged(team_key, {"aud": "https://example.com"}),
        "another key id": _forged(team_key, {}, kid="OTHERKEY99"),
        "another key": _forged(ec.generate_private_key(ec.SECP256R1()), {}),
        "HMAC": _forged("a shared secret that is not the key", {}, algorithm="HS256"),
        "not a JWT": "client-secret",
    }
    for what, token in refused.items():
        with pytest.raises(ProtocolError) as caught:
            standin.check_client_secret(SERVICES_ID, token)
        assert caught.value.error == "invalid_client", what
    with pytest.raises(ProtocolError):
        standin.check_client_secret("com.example.other",
                                    _forged(team_key, {"sub": "com.example.other"}))


def test_apple_standin_refuses_a_client_secret_once_expired(
        team_key: ec.EllipticCurvePrivateKey) -> None:
    token = ClientSecret(_settings(team_key), clock=lambda: NOW).current()
    _standin(team_key, NOW + CLIENT_SECRET_LIFETIME - 1).check_client_secret(SERVICES_ID, token)
    with pytest.raises(ProtocolError):
        _standin(team_key, NOW + CLIENT_SECRET_LIFETIME).check_client_secret(SERVICES_ID, token)


# ---------------------------------------------------------------------------------------------
# What Apple sends about the user


@pytest.mark.parametrize(("value", "meaning"), [
    (True, True), ("true", True), (False, False), ("false", False),
    ("True", None), ("1", None), (1, None), (0, None), ("yes", None), (None, None), ("", None),
])
def test_C7_apple_booleans_are_json_booleans_or_the_strings_true_and_false(
        value: Any, meaning: bool | None) -> None:
    assert apple_boolean(value) is meaning


@pytest.mark.parametrize(("email_verified", "claimed"), [
    ("true", True), (True, True), ("false", False), (False, False), ("TRUE", False),
    (None, False),
])
def test_C7_apple_email_counts_only_when_apple_says_it_is_verified(
        email_verified: Any, claimed: bool) -> None:
    claims = {"sub": "001234.abc.0001", "email": "ada@example.com"}
    if email_verified is not None:
        claims["email_verified"] = email_verified
    profile = identity_from_apple(claims, "Ada Lovelace").profile_claims()
    assert ("email" in profile) is claimed
    assert profile["name"] == "Ada Lovelace" and "picture" not in profile


def test_C7_apple_private_relay_address_is_a_verified_email() -> None:
    identity = identity_from_apple({"sub": "001234.abc.0001",
                                    "email": "x7k2q9v4mt@privaterelay.appleid.com",
                                    "email_verified": "true", "is_private_email": "true"}, None)
    assert identity.profile_claims()["email"] == "x7k2q9v4mt@privaterelay.appleid.com"
    assert identity.sub == "apple:001234.abc.0001"


@pytest.mark.parametrize(("field", "name"), [
    ('{"name":{"firstName":"Ada","lastName":"Lovelace"},"email":"ada@example.com"}',
     "Ada Lovelace"),
    ('{"name":{"firstName":"Ada"}}', "Ada"),
    ('{"name":{"firstName":" Ada\\u0000 ","lastName":"Lovelace\\n"}}', "Ada Lovelace"),
    ('{"email":"ada@example.com"}', None),
    ('{"name":"Ada Lovelace"}', None),
    ('{"name":{"firstName":5}}', None),
    ("[1, 2]", None), ("not json", None), ("", None), (None, None),
])
def test_C7_apple_user_field_gives_a_name_and_nothing_else(field: str | None,
                                                           name: str | None) -> None:
    assert name_from_user_field(field) == name


def test_C7_apple_user_field_name_is_bounded() -> None:
    long = json.dumps({"name": {"firstName": "A" * 5000, "lastName": "B"}})
    assert len(name_from_user_field(long) or "") == 200


# ---------------------------------------------------------------------------------------------
# The id_token


@pytest.fixture(scope="module")
def apple_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _id_token(key: rsa.RSAPrivateKey, **changes: Any) -> str:
    claims = {"iss": AUTHORITY, "aud": SERVICES_ID, "sub": "001234.abc.0001",
              "iat": int(NOW), "exp": int(NOW) + 600, "nonce": "n-0123456789"}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key,
                      algorithm="RS256", headers={"kid": "W6WcOKB"})


def _jwk(key: rsa.RSAPrivateKey) -> jwt.PyJWK:
    return jwt.PyJWK({**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "alg": "RS256"})


def _check(token: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return check_id_token(token, _jwk(key), authority=AUTHORITY, client_id=SERVICES_ID,
                          nonce="n-0123456789", leeway=30, now=NOW)


def test_C3_apple_id_token_with_apples_claims_passes(apple_key: rsa.RSAPrivateKey) -> None:
    assert _check(_id_token(apple_key), apple_key)["sub"] == "001234.abc.0001"


@pytest.mark.parametrize("changes", [
    {"iss": "https://accounts.google.com"}, {"aud": "com.example.other"},
    {"exp": int(NOW) - 31}, {"iat": int(NOW) + 31}, {"nonce": "another"}, {"nonce": None},
    {"sub": None}, {"sub": 12}, {"aud": ["com.example.web", "com.example.other"]},
], ids=["iss", "aud", "exp", "iat", "nonce", "no-nonce", "no-sub", "sub-type", "audiences"])
def test_C3_apple_id_token_claims_are_refused(apple_key: rsa.RSAPrivateKey,
                                              changes: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        _check(_id_token(apple_key, **changes), apple_key)


def test_C3_apple_id_token_signed_by_another_key_is_refused(
        apple_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UpstreamError):
        _check(_id_token(other), apple_key)
