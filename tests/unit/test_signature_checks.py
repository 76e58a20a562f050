"""Signature checks that bypass PyJWT's (gateway/jose.py): EdDSA with libsodium
(gateway/ed25519.py), ES256 with cryptography directly. Each must accept exactly the signatures
PyJWT's check (OpenSSL through cryptography) accepts, and refuse what it refuses."""

from __future__ import annotations

import os

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import ed25519, jose


def _openssl_verifies(key: Ed25519PrivateKey, message: bytes, signature: bytes) -> bool:
    try:
        key.public_key().verify(signature, message)
    except Exception:
        return False
    return True


def test_libsodium_and_openssl_agree_on_valid_altered_and_foreign_signatures() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = ed25519.public_bytes(key.public_key())
    checked = 0
    for n in range(50):
        message = os.urandom(20 + n * 17)
        good = key.sign(message)
        flipped = bytes([good[0] ^ 1]) + good[1:]
        cases = [(message, good), (message + b"x", good), (message, flipped),
                 (message, other.sign(message)), (message, os.urandom(64)), (message, good[:63])]
        for signed, signature in cases:
            assert ed25519.verifies(public, signed, signature) == _openssl_verifies(
                key, signed, signature), (n, signature.hex())
            checked += 1
    assert checked == 300


def _token(key: Ed25519PrivateKey) -> str:
    return jwt.encode({"sub": "ada"}, key, algorithm="EdDSA", headers={"kid": "k1"})


def _jwk(key: Ed25519PrivateKey) -> jwt.PyJWK:
    return jwt.PyJWK.from_json(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))


def test_jose_checks_an_eddsa_token_with_libsodium(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    token, jwk = _token(key), _jwk(key)
    seen: list[bytes] = []
    original = ed25519.verifies

    def recording(public: bytes, message: bytes, signature: bytes) -> bool:
        seen.append(message)
        return original(public, message, signature)
    monkeypatch.setattr(ed25519, "verifies", recording)
    jose.check_signature(token, jwk)
    assert seen == [token.rsplit(".", 1)[0].encode()]
    with pytest.raises(jose.JoseError, match="bad signature"):
        jose.check_signature(token, _jwk(Ed25519PrivateKey.generate()))


def test_the_raw_public_key_is_remembered_per_key_object() -> None:
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    token, jwk = _token(first), _jwk(first)
    jose.check_signature(token, jwk)
    jose.check_signature(token, jwk)  # the remembered bytes, still the right key
    with pytest.raises(jose.JoseError):
        jose.check_signature(token, _jwk(second))
    jose.check_signature(_token(second), _jwk(second))


def test_es256_checked_directly_agrees_with_pyjwt() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.PyJWK.from_json(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    algorithm = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
    checked = 0
    for n in range(40):
        message = os.urandom(30 + n * 13)
        good = algorithm.sign(message, key)
        cases = [(message, good), (message + b"x", good), (message, good[:-1] + b"\x00"),
                 (message, algorithm.sign(message, other)), (message, os.urandom(64)),
                 (message, good[:63]), (message, b"\x00" * 64)]
        for signed, signature in cases:
            assert jose._verifies(jwk, signed, signature) == algorithm.verify(
                signed, key.public_key(), signature), (n, signature.hex())
            checked += 1
    assert checked == 280
