"""Our own compact JWS signing (gateway/signing.py) against PyJWT's: the same bytes where the
algorithm is deterministic, a token PyJWT verifies where it is not."""

from __future__ import annotations

import base64
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway import jose, signing

CLAIMS: dict[str, Any] = {"iss": "https://gw.example", "sub": "google:1", "aud": "apps",
                          "iat": 1, "exp": 2, "name": "Zoë </script>", "sid": "s1"}
HEADER = {"typ": "at+jwt", "kid": "k1"}


def _private_key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_deterministic_signatures_are_byte_for_byte_pyjwts(algorithm: str) -> None:
    key = _private_key(algorithm)
    ours = signing.compact_jws(CLAIMS, {"alg": algorithm, **HEADER},
                               signing.signer_for(key, algorithm))
    assert ours == jwt.encode(CLAIMS, key, algorithm=algorithm, headers=HEADER)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_pyjwt_verifies_our_tokens_and_the_header_is_sorted(algorithm: str) -> None:
    key = _private_key(algorithm)
    token = signing.compact_jws(CLAIMS, {"typ": "at+jwt", "alg": algorithm, "kid": "k1"},
                                signing.signer_for(key, algorithm))
    assert jwt.decode(token, key.public_key(), algorithms=[algorithm], audience="apps",
                      options={"verify_exp": False}) == CLAIMS
    assert token.split(".")[0] == base64.urlsafe_b64encode(
        f'{{"alg":"{algorithm}","kid":"k1","typ":"at+jwt"}}'.encode()).rstrip(b"=").decode()


def test_J10_es256_signatures_leave_in_their_low_s_form() -> None:
    key = _private_key("ES256")
    sign = signing.signer_for(key, "ES256")
    for _ in range(40):  # OpenSSL picks the high twin about half the time
        token = signing.compact_jws(CLAIMS, {"alg": "ES256"}, sign)
        raw = base64.urlsafe_b64decode(token.rpartition(".")[2] + "==")
        assert len(raw) == 64
        assert jose.is_canonical_signature("ES256", raw)


def test_a_key_of_another_algorithm_has_no_signer() -> None:
    with pytest.raises(ValueError):
        signing.signer_for(_private_key("EdDSA"), "RS256")
