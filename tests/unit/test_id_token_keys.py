"""SECURITY J11: with tokens.algorithm ES256 or EdDSA, the keys directory holds an RS256 family
too, for ID tokens only: loaded, generated, rotated, published and pruned with the first; the
verifier accepts it for ID tokens (`id_token_hint`) and never for access tokens (J1)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jwt
import pytest
from config_support import write_config
from jwt.algorithms import RSAAlgorithm

from gateway.config import load_settings
from gateway.errors import ConfigError, InvalidToken
from gateway.keys import KeyDirectory, KeySet, load_keyset, prunable_keys, write_new_key
from gateway.tokens import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    TokenIssuer,
    TokenPolicy,
    TokenVerifier,
)

T0 = 1_700_000_000
DELAY = 3600
LIFETIME = 600
POLICY = TokenPolicy(issuer="https://login.example.test", audiences=("app",), lifetime=LIFETIME,
                     leeway=30)
NON_RS256 = ("EdDSA", "ES256")


def _two_families(keys_dir: Path, algorithm: str, now: float = T0) -> None:
    write_new_key(keys_dir, algorithm, now)
    write_new_key(keys_dir, "RS256", now)


def _claims(now: float = T0 + 10, **changes: Any) -> dict[str, Any]:
    claims = {"iss": POLICY.issuer, "sub": "google:1", "aud": "app", "iat": int(now),
              "nbf": int(now), "exp": int(now) + LIFETIME, "jti": "j-1"}
    claims.update(changes)
    return claims


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_load_keyset_holds_an_rs256_family_beside_the_access_algorithm(
        tmp_path: Path, algorithm: str) -> None:
    _two_families(tmp_path, algorithm)

    keyset = load_keyset(tmp_path, algorithm, require_rs256=True, now=T0 + 1)

    assert keyset.algorithm == algorithm and keyset.signing.algorithm == algorithm
    assert keyset.rs256 is not None and keyset.rs256.signing.algorithm == "RS256"
    assert keyset.id_token_algorithms == ("RS256", algorithm)
    # Access tokens: only the first family's keys.
    assert {k.algorithm for k in keyset.by_kid().values()} == {algorithm}
    published = {(k["kid"], k["alg"]) for k in keyset.jwks()["keys"]}
    assert published == {(keyset.signing.kid, algorithm), (keyset.rs256.signing.kid, "RS256")}


def test_J11_an_rs256_gateway_has_one_family(tmp_path: Path) -> None:
    write_new_key(tmp_path, "RS256", T0)

    keyset = load_keyset(tmp_path, "RS256", require_rs256=True, now=T0 + 1)

    assert keyset.rs256 is None and keyset.id_token_algorithms == ("RS256",)
    assert len(keyset.jwks()["keys"]) == 1


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_a_missing_rs256_key_is_a_config_error_naming_the_command(
        tmp_path: Path, algorithm: str) -> None:
    write_new_key(tmp_path, algorithm, T0)

    with pytest.raises(ConfigError) as caught:
        load_keyset(tmp_path, algorithm, require_rs256=True)

    assert caught.value.key == "tokens.keys_dir"
    assert "oauth-gateway keys generate --algorithm RS256" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_development_mode_generates_the_rs256_family_too(
        tmp_path: Path, algorithm: str) -> None:
    # A fresh directory, and one kept from before the RS256 family existed.
    fresh = load_keyset(tmp_path / "fresh", algorithm, generate_if_empty=True,
                        require_rs256=True)
    write_new_key(tmp_path / "old", algorithm, T0)
    upgraded = load_keyset(tmp_path / "old", algorithm, generate_if_empty=True,
                           require_rs256=True)

    for keyset in (fresh, upgraded):
        assert keyset.signing.algorithm == algorithm
        assert keyset.rs256 is not None and len(keyset.rs256.keys) == 1
    assert len(list((tmp_path / "old").glob("key-*.pem"))) == 2


@pytest.mark.parametrize("algorithm", NON_RS256)
def test_J11_key_rotation_keeps_both_families_each_with_its_delay(
        tmp_path: Path, algorithm: str) -> None:
    _two_families(tmp_path, algorithm, T0)
    _two_families(tmp_path, algorithm, T0 + 86400)  # `keys rotate`: one new key of each
    rotated = T0 + 86400

    before = load_keyset(tmp_path, algorithm, activation_delay=DELAY, now=rotated + DELAY - 1,
                         require_rs256=True)
    after = before.reselect(rotated + DELAY)

    assert before.rs256 is not None and after.rs256 is not None
    assert len(before.all_keys()) == 4 and len(before.jwks()["keys"]) == 4
    for family in before.families:  # the old keys still sign, the new ones are published
        assert family.signing is family.keys[0]
    for family in after.families:
        assert family.signing is family.keys[1]
    # Once every token of the old keys has expired, `keys prune` removes one of each family.
    later = rotated + DELAY + LIFETIME + 31
    pruned = [k for family in after.families
              for k in prunable_keys(family, later, LIFETIME, 30)]
    assert sorted(k.algorithm for k in pruned) == sorted([algorithm, "RS256"])
    assert {k.kid for k in pruned} == {before.keys[0].kid, before.rs256.keys[0].kid}


def test_J11_a_running_gateway_picks_up_a_rotated_rs256_key(tmp_path: Path) -> None:
    _two_families(tmp_path, "EdDSA", T0)
    now = [T0 + 10.0]
    directory = KeyDirectory(tmp_path, "EdDSA", DELAY, clock=lambda: now[0], require_rs256=True)
    current = directory.load()
    assert current.rs256 is not None

    write_new_key(tmp_path, "RS256", T0 + 100)
    reloaded = directory.refresh(current)
    now[0] = T0 + 100 + DELAY
    activated = directory.refresh(reloaded)

    assert reloaded is not current and reloaded.rs256 is not None
    assert len(reloaded.rs256.keys) == 2
    assert reloaded.rs256.signing.kid == current.rs256.signing.kid  # not yet its time
    assert activated.rs256 is not None
    assert activated.rs256.signing.kid == reloaded.rs256.keys[1].kid
    assert activated.signing.kid == current.signing.kid  # the EdDSA family unchanged


def test_J11_keys_of_a_third_algorithm_are_still_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _two_families(tmp_path, "EdDSA", T0)
    write_new_key(tmp_path, "ES256", T0)

    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        keyset = load_keyset(tmp_path, "EdDSA", require_rs256=True)

    assert {k.algorithm for k in keyset.all_keys()} == {"EdDSA", "RS256"}
    assert "it is ES256, tokens.algorithm is EdDSA" in caplog.text


# -- signing and verifying ------------------------------------------------------------------


@pytest.fixture(params=NON_RS256)
def keyset(request: pytest.FixtureRequest, tmp_path: Path) -> KeySet:
    _two_families(tmp_path, request.param)
    return load_keyset(tmp_path, request.param, require_rs256=True)


def _issuer(keyset: KeySet) -> TokenIssuer:
    return TokenIssuer(keyset, POLICY, clock=lambda: T0 + 10)


def _verifier(keyset: KeySet) -> TokenVerifier:
    return TokenVerifier(keyset, POLICY, clock=lambda: T0 + 10)


def test_J11_id_tokens_sign_with_the_family_asked_for(keyset: KeySet) -> None:
    issuer = _issuer(keyset)
    assert keyset.rs256 is not None

    rs256 = issuer.sign(_claims(), ID_TOKEN_TYPE, "RS256")
    own = issuer.sign(_claims(), ID_TOKEN_TYPE, keyset.algorithm)

    header = jwt.get_unverified_header(rs256)
    assert header["alg"] == "RS256" and header["kid"] == keyset.rs256.signing.kid
    assert jwt.get_unverified_header(own)["alg"] == keyset.algorithm
    # Checked with PyJWT against the published RSA key alone.
    (jwk,) = [k for k in keyset.jwks()["keys"] if k["alg"] == "RS256"]
    assert jwt.decode(rs256, jwt.PyJWK(jwk), algorithms=["RS256"], audience="app",
                      options={"verify_exp": False, "verify_iat": False,
                               "verify_nbf": False})["sub"] == "google:1"
    # Access tokens stay on tokens.algorithm.
    assert jwt.get_unverified_header(issuer.sign(_claims(), ACCESS_TOKEN_TYPE))["alg"] == \
        keyset.algorithm


def test_J11_the_id_token_hint_may_be_rs256_or_the_access_algorithm(keyset: KeySet) -> None:
    issuer, verifier = _issuer(keyset), _verifier(keyset)

    for algorithm in ("RS256", keyset.algorithm):
        claims = verifier.verify_id_token_hint(issuer.sign(_claims(), ID_TOKEN_TYPE, algorithm))
        assert claims["sub"] == "google:1"


def test_J11_an_rs256_access_token_is_refused(keyset: KeySet) -> None:
    """J1 holds: the RS256 family signs ID tokens only."""
    issuer, verifier = _issuer(keyset), _verifier(keyset)
    assert verifier.verify(issuer.sign(_claims(), ACCESS_TOKEN_TYPE))["sub"] == "google:1"

    forged = issuer.sign(_claims(jti="j-2"), ACCESS_TOKEN_TYPE, "RS256")

    with pytest.raises(InvalidToken):
        verifier.verify(forged)


def test_J11_an_id_token_naming_another_alg_than_its_keys_is_refused(keyset: KeySet) -> None:
    assert keyset.rs256 is not None
    # Signed by the RS256 key, its header claiming tokens.algorithm with the RSA key's kid.
    token = jwt.encode(_claims(), keyset.rs256.signing.private_key, algorithm="RS256",
                       headers={"kid": keyset.rs256.signing.kid, "typ": ID_TOKEN_TYPE})
    payload = token.split(".")[1]
    forged_header = jwt.utils.base64url_encode(json.dumps(
        {"alg": keyset.algorithm, "kid": keyset.rs256.signing.kid, "typ": ID_TOKEN_TYPE},
        separators=(",", ":")).encode()).decode()
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(
        f"{forged_header}.{payload}".encode(), keyset.rs256.signing.private_key)
    forged = f"{forged_header}.{payload}.{jwt.utils.base64url_encode(signature).decode()}"

    with pytest.raises(InvalidToken):
        _verifier(keyset).verify_id_token_hint(forged)
    assert _verifier(keyset).verify_id_token_hint(token)["sub"] == "google:1"


# -- configuration --------------------------------------------------------------------------


def _client(**changes: Any) -> dict[str, Any]:
    return {"client_id": "app", "redirect_uris": ["https://app.example.com/cb"], **changes}


def _settings(tmp_path: Path, algorithm: str, client: dict[str, Any]) -> Any:
    return load_settings(write_config(tmp_path, {"tokens.algorithm": algorithm}), {},
                         overrides={"clients": [client]})


def test_J11_clients_get_rs256_id_tokens_unless_they_ask_for_the_access_algorithm(
        tmp_path: Path) -> None:
    default = _settings(tmp_path, "EdDSA", _client())
    eddsa = _settings(tmp_path, "EdDSA", _client(id_token_signed_response_alg="EdDSA"))

    assert default.clients[0].id_token_signed_response_alg == "RS256"
    assert eddsa.clients[0].id_token_signed_response_alg == "EdDSA"


@pytest.mark.parametrize(("algorithm", "asked"), [("EdDSA", "ES256"), ("EdDSA", "HS256"),
                                                  ("RS256", "EdDSA"), ("ES256", "none")])
def test_J11_an_id_token_algorithm_we_cannot_sign_with_is_refused(
        tmp_path: Path, algorithm: str, asked: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, algorithm, _client(id_token_signed_response_alg=asked))

    assert caught.value.key == "clients[0].id_token_signed_response_alg"
    assert "RS256" in str(caught.value)
