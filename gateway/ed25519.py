"""Ed25519 signatures and their checks with libsodium (PyNaCl), for EdDSA tokens.

A token seen for the first time costs one signature check, and for EdDSA that check is most of
it: libsodium's takes about half the time of OpenSSL's, which cryptography (and so PyJWT) uses
(bench/cold_verify.py, docs/benchmarks.md). libsodium is also the stricter of the two (it
refuses small-order points and non-canonical encodings OpenSSL lets through); a signature made
by any correct signer passes both.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError


def public_bytes(key: Ed25519PublicKey) -> bytes:
    """The key's 32 bytes (RFC 8032 5.1.5), as libsodium takes it."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verifies(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is `public`'s Ed25519 signature of `message`."""
    if len(signature) != crypto_sign_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, public)
    except BadSignatureError:
        return False
    return True


def signer(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    """A function giving `key`'s Ed25519 signature of a message, made by libsodium."""
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    _, secret = crypto_sign_seed_keypair(seed)
    return lambda message: crypto_sign(message, secret)[:crypto_sign_BYTES]
