"""Signing keys: generation, files on disk, loading and rotation, RFC 7638 kids and the JWKS
(SECURITY K1-K3)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from gateway.errors import ConfigError
from gateway.identity import Identity
from gateway.keys import (
    generate_private_key,
    load_keyset,
    thumbprint,
    write_new_key,
)
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier

# Spelled in two parts so that no file of the repository looks like it holds a key.
PKCS8_PEM_HEADER = b"-----BEGIN " + b"PRIVATE KEY-----"

ALGORITHMS = ("EdDSA", "ES256", "RS256")
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
PUBLIC_MEMBERS = {"RSA": {"kty", "n", "e"}, "EC": {"kty", "crv", "x", "y"},
                  "OKP": {"kty", "crv", "x"}}
# 2023-11-14T22:13:20Z and an hour later: key file names carry the time they were made.
EARLIER = 1_700_000_000
LATER = EARLIER + 3600

# RFC 7638 section 3.1: the worked example.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4"
    "lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
# RFC 8037 appendix A.3: the Ed25519 example.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask of 0, so that file modes come from the code, not from the test environment."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _pem(key: Any, encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   encryption or serialization.NoEncryption()))


def _independent_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 section 3, written out again: the required members, sorted, no whitespace."""
    members = {name: jwk[name] for name in sorted(PUBLIC_MEMBERS[jwk["kty"]])}
    canonical = json.dumps(members, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _policy() -> TokenPolicy:
    return TokenPolicy("https://login.example.com", ("https://login.example.com",), 600, 30)


# ---------------------------------------------------------------------------------------------
# K1: strength, file modes, no key material in the logs


def test_K1_generated_rsa_key_has_at_least_2048_bits(tmp_path: Path) -> None:
    key = load_keyset(tmp_path, "RS256", generate_if_empty=True).signing.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size >= 2048
    assert key.private_numbers().public_numbers.e == 65537


def test_K1_generated_ec_key_is_on_p256(tmp_path: Path) -> None:
    key = load_keyset(tmp_path, "ES256", generate_if_empty=True).signing.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_K1_generated_eddsa_key_is_ed25519(tmp_path: Path) -> None:
    key = load_keyset(tmp_path, "EdDSA", generate_if_empty=True).signing.private_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)


@pytest.mark.parametrize("algorithm", ["HS256", "none", "ES384", "rs256", ""])
def test_K1_unsupported_algorithm_gets_no_key(algorithm: str) -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        generate_private_key(algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K1_two_generated_keys_differ(algorithm: str) -> None:
    first, second = generate_private_key(algorithm), generate_private_key(algorithm)
    assert thumbprint(first.public_key()) != thumbprint(second.public_key())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K1_key_file_is_readable_by_its_owner_only(tmp_path: Path, algorithm: str,
                                                   permissive_umask: None) -> None:
    path = write_new_key(tmp_path / "keys", algorithm)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_K1_key_file_is_unencrypted_pkcs8_pem(tmp_path: Path) -> None:
    path = write_new_key(tmp_path, "ES256")
    assert path.name.startswith("key-") and path.suffix == ".pem"
    assert path.read_bytes().startswith(PKCS8_PEM_HEADER + b"\n")


def test_K1_key_file_readable_by_others_is_reported(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = write_new_key(tmp_path, "EdDSA")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        load_keyset(tmp_path, "EdDSA")
    assert any(path.name in r.getMessage() and "chmod 600" in r.getMessage()
               for r in caplog.records)


def test_K1_key_file_readable_by_the_processs_own_group_is_not_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As a Kubernetes Secret volume mounts it for a non-root pod: root:<fsGroup> 0440, the
    fsGroup being the gateway's own group."""
    path = write_new_key(tmp_path, "EdDSA")
    os.chown(path, -1, os.getegid())
    path.chmod(0o440)
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        load_keyset(tmp_path, "EdDSA")
    assert not [r for r in caplog.records if path.name in r.getMessage()]


def test_K1_key_file_readable_by_another_group_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_new_key(tmp_path, "EdDSA")
    path.chmod(0o640)
    other = next(gid for gid in range(1, 65534) if gid != os.getegid())
    try:
        os.chown(path, -1, other)
    except PermissionError:
        pytest.skip("changing a file's group to another needs root")
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        load_keyset(tmp_path, "EdDSA")
    assert any(path.name in r.getMessage() and "chmod 600" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K1_key_material_is_never_logged(tmp_path: Path, algorithm: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        keyset = load_keyset(tmp_path, algorithm, generate_if_empty=True)
    pem_body = b"".join(_pem(keyset.signing.private_key).splitlines()[1:-1]).decode()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the generation is logged...
    assert all(line not in logged for line in pem_body.splitlines() if line)  # ...not the key
    assert pem_body[:40] not in logged


def test_K1_rsa_key_under_2048_bits_is_refused(tmp_path: Path) -> None:
    # RFC 7518 3.3: a key of size 2048 bits or larger MUST be used with RS256.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "key-20231114T221320Z.pem").write_bytes(_pem(weak))
    with pytest.raises(ConfigError) as refused:
        load_keyset(tmp_path, "RS256")
    assert refused.value.key == "tokens.keys_dir"
    assert "1024-bit" in str(refused.value)


@pytest.mark.parametrize("exists", [True, False], ids=["empty dir", "missing dir"])
def test_K1_no_key_without_generation_is_a_config_error_naming_tokens_keys_dir(
        tmp_path: Path, exists: bool) -> None:
    keys_dir = tmp_path / "keys"
    if exists:
        keys_dir.mkdir()
    with pytest.raises(ConfigError) as refused:
        load_keyset(keys_dir, "RS256")
    assert refused.value.key == "tokens.keys_dir"
    assert str(refused.value).startswith("tokens.keys_dir: ")
    assert not keys_dir.exists() or not any(keys_dir.iterdir())  # nothing generated


def _unusable_key_files() -> dict[str, bytes]:
    ed = ed25519.Ed25519PrivateKey.generate()
    return {
        "garbage": b"this is not a key\n",
        "empty": b"",
        "truncated pem": (PKCS8_PEM_HEADER + b"\nMC4CAQAwBQYDK2Vw\n"
                          b"-----END PRIVATE KEY-----\n"),
        "public key": ed.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "encrypted": _pem(ed, serialization.BestAvailableEncryption(b"passphrase")),
        "x25519 (not a signing key)": _pem(x25519.X25519PrivateKey.generate()),
        "binary": bytes(range(256)),
    }


UNUSABLE_KEY_FILES = _unusable_key_files()


@pytest.mark.parametrize("content", UNUSABLE_KEY_FILES.values(), ids=UNUSABLE_KEY_FILES.keys())
def test_K1_unusable_key_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "key-20231114T221320Z.pem").write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        load_keyset(tmp_path, "EdDSA", generate_if_empty=True)
    assert refused.value.key == "tokens.keys_dir"
    assert "key-20231114T221320Z.pem" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_K1_keys_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "keys"
    not_a_dir.write_text("oops")
    with pytest.raises(ConfigError) as refused:
        load_keyset(not_a_dir, "EdDSA", generate_if_empty=True)
    assert refused.value.key == "tokens.keys_dir"


def test_K1_directory_with_keys_of_another_algorithm_only_is_a_config_error(
        tmp_path: Path) -> None:
    write_new_key(tmp_path, "ES256")
    with pytest.raises(ConfigError) as refused:
        load_keyset(tmp_path, "EdDSA", generate_if_empty=True)
    assert refused.value.key == "tokens.keys_dir"
    assert "no EdDSA key" in str(refused.value)


# ---------------------------------------------------------------------------------------------
# K2: the JWKS publishes public keys only, with RFC 7638 kids


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K2_jwks_has_no_private_members(tmp_path: Path, algorithm: str) -> None:
    jwks = load_keyset(tmp_path, algorithm, generate_if_empty=True).jwks()
    for entry in jwks["keys"]:
        assert not set(entry) & PRIVATE_MEMBERS
        assert set(entry) == PUBLIC_MEMBERS[entry["kty"]] | {"kid", "use", "alg"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K2_jwks_entries_have_kid_use_sig_and_alg(tmp_path: Path, algorithm: str) -> None:
    keyset = load_keyset(tmp_path, algorithm, generate_if_empty=True)
    (entry,) = json.loads(json.dumps(keyset.jwks()))["keys"]
    assert entry["kid"] == keyset.signing.kid
    assert entry["use"] == "sig"
    assert entry["alg"] == algorithm


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K2_kid_is_the_rfc7638_thumbprint_of_the_published_key(tmp_path: Path,
                                                               algorithm: str) -> None:
    keyset = load_keyset(tmp_path, algorithm, generate_if_empty=True)
    (entry,) = keyset.jwks()["keys"]
    assert entry["kid"] == _independent_thumbprint(entry)
    assert entry["kid"] == thumbprint(keyset.signing.public_key)


def test_K2_thumbprint_matches_the_rfc7638_example() -> None:
    public_key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB",
                                        "alg": "RS256", "kid": "2011-04-29"})
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert thumbprint(public_key) == RFC7638_THUMBPRINT


def test_K2_thumbprint_matches_the_rfc8037_ed25519_example() -> None:
    public_key = OKPAlgorithm.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    assert thumbprint(public_key) == RFC8037_THUMBPRINT


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_K2_an_app_holding_only_the_jwks_verifies_our_token(tmp_path: Path,
                                                            algorithm: str) -> None:
    keyset = load_keyset(tmp_path, algorithm, generate_if_empty=True)
    token = TokenIssuer(keyset, _policy()).issue_access_token(Identity("google", "1"),
                                                              "https://login.example.com")
    published = jwt.PyJWKSet.from_dict(json.loads(json.dumps(keyset.jwks())))
    key = published[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key, algorithms=[algorithm], audience="https://login.example.com",
                        issuer="https://login.example.com")
    assert claims["sub"] == "google:1"


# ---------------------------------------------------------------------------------------------
# K3: the newest key signs, the older ones still verify


def test_K3_newest_key_signs(tmp_path: Path) -> None:
    write_new_key(tmp_path, "ES256", now=EARLIER)
    newest = write_new_key(tmp_path, "ES256", now=LATER)
    keyset = load_keyset(tmp_path, "ES256")
    assert keyset.signing.created == "20231114T231320Z"
    assert keyset.signing.kid == _kid_of(newest)


def test_K3_newest_is_chosen_by_the_time_in_the_name_not_by_write_order(tmp_path: Path) -> None:
    write_new_key(tmp_path, "ES256", now=LATER)
    write_new_key(tmp_path, "ES256", now=EARLIER)
    assert load_keyset(tmp_path, "ES256").signing.created == "20231114T231320Z"


def test_K3_last_key_written_in_the_same_second_signs(tmp_path: Path) -> None:
    paths = [write_new_key(tmp_path, "EdDSA", now=EARLIER) for _ in range(3)]
    assert len(set(paths)) == 3  # never overwritten
    keyset = load_keyset(tmp_path, "EdDSA")
    assert {k.kid for k in keyset.keys} == {_kid_of(path) for path in paths}
    assert keyset.signing.kid == _kid_of(paths[-1])


def test_K3_twelfth_key_of_the_same_second_signs_not_the_tenth(tmp_path: Path) -> None:
    paths = [write_new_key(tmp_path, "EdDSA", now=EARLIER) for _ in range(12)]
    keyset = load_keyset(tmp_path, "EdDSA")
    assert paths[-1].stem.endswith("-11")
    assert keyset.signing.kid == _kid_of(paths[-1])


def test_K3_older_keys_stay_published(tmp_path: Path) -> None:
    write_new_key(tmp_path, "RS256", now=EARLIER)
    old = load_keyset(tmp_path, "RS256")
    write_new_key(tmp_path, "RS256", now=LATER)
    new = load_keyset(tmp_path, "RS256")
    assert new.signing.kid != old.signing.kid
    assert {k["kid"] for k in new.jwks()["keys"]} == {old.signing.kid, new.signing.kid}


def test_K3_rotation_logs_no_one_out(tmp_path: Path) -> None:
    now = float(LATER)
    write_new_key(tmp_path, "ES256", now=EARLIER)
    old = load_keyset(tmp_path, "ES256")
    token = TokenIssuer(old, _policy(), clock=lambda: now).issue_access_token(
        Identity("google", "1"), "https://login.example.com")
    write_new_key(tmp_path, "ES256", now=LATER)
    rotated = load_keyset(tmp_path, "ES256")
    assert rotated.signing.kid != old.signing.kid
    assert TokenVerifier(rotated, _policy(), clock=lambda: now).verify(token)["sub"] == "google:1"


def test_K3_keys_of_another_algorithm_are_ignored(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    write_new_key(tmp_path, "EdDSA", now=EARLIER)
    foreign = write_new_key(tmp_path, "ES256", now=LATER)  # newer, but not ours to sign with
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        keyset = load_keyset(tmp_path, "EdDSA")
    assert [k.algorithm for k in keyset.keys] == ["EdDSA"]
    assert keyset.signing.created == "20231114T221320Z"
    assert [k["alg"] for k in keyset.jwks()["keys"]] == ["EdDSA"]
    assert any(foreign.name in r.getMessage() for r in caplog.records)


def _kid_of(path: Path) -> str:
    private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey)
    return thumbprint(private_key.public_key())
