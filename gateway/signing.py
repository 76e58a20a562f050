"""Compact JWS signing of the gateway's own tokens (access and ID tokens).

The same bytes PyJWT's `jwt.encode` makes (its header with sorted members, its compact JSON,
ASCII only), made directly: every login signs one token, and PyJWT's layers around the
signature cost about as much as an Ed25519 signature itself. Ed25519 signs with libsodium
(gateway/ed25519.py), ECDSA signatures leave here in their low-S form (SECURITY J10).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import ed25519 as ed25519_keys
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from gateway import ed25519, jose

Signer = Callable[[bytes], bytes]

_PKCS1V15 = padding.PKCS1v15()
_ECDSA_SHA256 = ec.ECDSA(SHA256())


def signer_for(private_key: Any, algorithm: str) -> Signer:
    """The function that signs a JWS signing input with `private_key` under `algorithm`,
    giving the signature as RFC 7518 spells it."""
    if algorithm == "RS256" and isinstance(private_key, rsa.RSAPrivateKey):
        sha256 = SHA256()
        return lambda message: private_key.sign(message, _PKCS1V15, sha256)
    if algorithm == "ES256" and isinstance(private_key, ec.EllipticCurvePrivateKey):
        def sign_es256(message: bytes) -> bytes:
            r, s = decode_dss_signature(private_key.sign(message, _ECDSA_SHA256))
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            return jose.canonical_signature("ES256", raw)
        return sign_es256
    if algorithm == "EdDSA" and isinstance(private_key, ed25519_keys.Ed25519PrivateKey):
        return ed25519.signer(private_key)
    raise ValueError(f"no signer for {algorithm} with a {type(private_key).__name__}")


def compact_jws(claims: dict[str, Any], header: dict[str, str], sign: Signer) -> str:
    """`claims` signed under `header` (which names the algorithm `sign` uses)."""
    signing_input = (_header_segment(tuple(header.items())) + b"."
                     + _segment(json.dumps(claims, separators=(",", ":"))))
    return (signing_input + b"." + _b64(sign(signing_input))).decode("ascii")


@functools.lru_cache(maxsize=64)
def _header_segment(header: tuple[tuple[str, str], ...]) -> bytes:
    """A header's segment: the same few (one per key and token type) for every token."""
    return _segment(json.dumps(dict(header), separators=(",", ":"), sort_keys=True))


def _segment(text: str) -> bytes:
    return _b64(text.encode("ascii"))  # json.dumps escapes every non-ASCII character


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")
