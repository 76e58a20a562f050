"""Signing keys: generation, loading from the keys directory, RFC 7638 `kid`s and the JWKS.

A keys directory holds PKCS#8 PEM private keys named `key-<UTC timestamp>.pem` (mode 0600). The
newest file signs; every key of the configured algorithm is published and accepted for
verification, so a new key can be added without logging anyone out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway.errors import ConfigError

log = logging.getLogger("gateway.keys")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

KEY_FILE_PREFIX = "key-"
RSA_KEY_BITS = 2048  # SECURITY K1: RSA >= 2048
# RFC 7638 section 3.2: the required members of each key type.
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                      "OKP": ("crv", "kty", "x")}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: PrivateKey
    created: str  # the timestamp part of the file name, sortable

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        return {**public_jwk_members(self.public_key), "kid": self.kid, "use": "sig",
                "alg": self.algorithm}


@dataclass(frozen=True)
class KeySet:
    """The signing key plus every public key we accept, indexed by `kid`."""

    algorithm: str
    signing: SigningKey
    keys: tuple[SigningKey, ...]

    def by_kid(self) -> dict[str, SigningKey]:
        return {k.kid: k for k in self.keys}

    def jwks(self) -> dict[str, Any]:
        """Public keys only (SECURITY K2)."""
        return {"keys": [k.public_jwk() for k in self.keys]}


def generate_private_key(algorithm: str) -> PrivateKey:
    """A fresh key from the OS CSPRNG at the strength the algorithm calls for."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {algorithm}")


def algorithm_of(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "unsupported"


def public_jwk_members(public_key: PublicKey) -> dict[str, Any]:
    if isinstance(public_key, rsa.RSAPublicKey):
        # PyJWT adds `key_ops` to RSA keys only; we publish `use`, and RFC 7517 4.3 says the two
        # SHOULD NOT be used together.
        members: dict[str, Any] = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        members.pop("key_ops", None)
        return members
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(public_key, as_dict=True)
    return OKPAlgorithm.to_jwk(public_key, as_dict=True)


def thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order."""
    jwk = public_jwk_members(public_key)
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def write_new_key(keys_dir: Path, algorithm: str, now: float | None = None) -> Path:
    """Generate a key and write it as `key-<timestamp>.pem`, readable by the owner only."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    path = keys_dir / f"{KEY_FILE_PREFIX}{stamp}.pem"
    suffix = 1
    while path.exists():
        path = keys_dir / f"{KEY_FILE_PREFIX}{stamp}-{suffix}.pem"
        suffix += 1
    pem = generate_private_key(algorithm).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def load_keyset(keys_dir: Path, algorithm: str, *, generate_if_empty: bool = False) -> KeySet:
    """Load every key of `algorithm` from `keys_dir`; the newest signs."""
    if generate_if_empty and not _key_files(keys_dir):
        try:
            path = write_new_key(keys_dir, algorithm)
        except OSError as e:
            raise ConfigError("tokens.keys_dir",
                              f"cannot create a key in {keys_dir}: {e.strerror}") from None
        log.info("generated a new %s signing key in %s", algorithm, path.parent)
    files = _key_files(keys_dir)
    if not files:
        raise ConfigError(
            "tokens.keys_dir",
            f"no signing key in {keys_dir} (create one with: oauth-gateway keys generate)",
        )
    keys: list[SigningKey] = []
    for path in files:
        private_key = _read_private_key(path)
        key_algorithm = algorithm_of(private_key)
        if key_algorithm != algorithm:
            log.warning("ignoring key %s: it is %s, tokens.algorithm is %s",
                        path.name, key_algorithm, algorithm)
            continue
        created = path.stem[len(KEY_FILE_PREFIX) :]
        keys.append(SigningKey(thumbprint(private_key.public_key()), algorithm, private_key,
                               created))
    if not keys:
        raise ConfigError("tokens.keys_dir", f"no {algorithm} key in {keys_dir}")
    keys.sort(key=lambda k: _creation_order(k.created))
    return KeySet(algorithm=algorithm, signing=keys[-1], keys=tuple(keys))


def _creation_order(created: str) -> tuple[str, int]:
    """`20261125T111200Z-10` after `20261125T111200Z-9`: the suffix counts, not its text."""
    stamp, _, suffix = created.partition("-")
    return stamp, int(suffix) if suffix.isdigit() else 0


def _key_files(keys_dir: Path) -> list[Path]:
    if not keys_dir.is_dir():
        return []
    return sorted(keys_dir.glob(f"{KEY_FILE_PREFIX}*.pem"))


def _read_private_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError("tokens.keys_dir", f"cannot load key {path.name}: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise ConfigError("tokens.keys_dir", f"{path.name} is not an RSA, EC or Ed25519 key")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < RSA_KEY_BITS:
        # RFC 7518 3.3: RS256 keys MUST be 2048 bits or larger (SECURITY K1).
        raise ConfigError("tokens.keys_dir",
                          f"{path.name} is a {key.key_size}-bit RSA key (at least {RSA_KEY_BITS})")
    if path.stat().st_mode & 0o077:
        log.warning("key file %s is readable by others: chmod 600 it", path.name)
    return key
