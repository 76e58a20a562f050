"""Signing keys: generation, loading from the keys directory, RFC 7638 `kid`s and the JWKS.

A keys directory holds PKCS#8 PEM private keys named `key-<UTC timestamp>.pem` (mode 0600).
Every key of the configured algorithm is published and accepted for verification. SECURITY K3,
rotation without logging anyone out:

- a new key (`oauth-gateway keys rotate`) is published at once but signs only once
  `tokens.key_activation_delay` seconds have passed since the time in its name, so that every
  JWKS cache and every replica has it before the first token it signs (`select_signing_key`);
- a key that stopped signing stays published until every token it signed has expired;
  `keys prune` then removes it (`prunable_keys`);
- a running gateway re-reads the directory when it changes (`KeyDirectory.refresh`).

SECURITY J11: OpenID Connect requires ID tokens in RS256 (Core 15.1), so with another
`tokens.algorithm` the directory holds a second family of keys, RS256, for ID tokens only
(`KeySet.rs256`): generated, rotated, published and pruned like the first, each family choosing
its own signing key.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway import jose
from gateway.errors import ConfigError
from gateway.signing import Signer, signer_for

log = logging.getLogger("gateway.keys")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

KEY_FILE_PREFIX = "key-"
KEY_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
RSA_KEY_BITS = 2048  # SECURITY K1: RSA >= 2048
# OIDC Core 15.1 and Discovery 3: every provider can sign ID tokens in RS256 (SECURITY J11).
ID_TOKEN_ALGORITHM = "RS256"
# RFC 7638 section 3.2: the required members of each key type.
THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                      "OKP": ("crv", "kty", "x")}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: PrivateKey
    created: str  # the timestamp part of the file name, sortable
    created_at: float = 0.0  # Unix time: the name's timestamp, else the file's mtime

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    @functools.cached_property
    def sign(self) -> Signer:
        """This key's JWS signing function (gateway/signing.py), made on first use."""
        return signer_for(self.private_key, self.algorithm)

    def public_jwk(self) -> dict[str, Any]:
        return {**public_jwk_members(self.public_key), "kid": self.kid, "use": "sig",
                "alg": self.algorithm}


@dataclass(frozen=True)
class KeySet:
    """The signing key plus every public key we accept, indexed by `kid`."""

    algorithm: str
    signing: SigningKey
    keys: tuple[SigningKey, ...]  # oldest first
    activation_delay: float = 0.0
    # With `algorithm` other than RS256: the RS256 keys that sign ID tokens (SECURITY J11).
    rs256: KeySet | None = None

    def reselect(self, now: float) -> KeySet:
        """This key set with the keys that sign at `now` (itself when unchanged)."""
        signing = select_signing_key(self.keys, now, self.activation_delay)
        rs256 = self.rs256.reselect(now) if self.rs256 is not None else None
        if signing is self.signing and rs256 is self.rs256:
            return self
        return replace(self, signing=signing, rs256=rs256)

    @property
    def families(self) -> tuple[KeySet, ...]:
        """This key set's own family (access tokens), then the RS256 one if any."""
        return (self,) if self.rs256 is None else (self, self.rs256)

    def family(self, algorithm: str) -> KeySet:
        """The keys that sign with `algorithm`: ValueError when we hold none."""
        for family in self.families:
            if family.algorithm == algorithm:
                return family
        raise ValueError(f"no {algorithm} signing key")

    @property
    def id_token_algorithms(self) -> tuple[str, ...]:
        """The algorithms ID tokens can be signed with, RS256 first when we can."""
        return tuple(dict.fromkeys(f.algorithm for f in reversed(self.families)))

    def by_kid(self) -> dict[str, SigningKey]:
        """This family's keys only: those access tokens may be signed with."""
        return {k.kid: k for k in self.keys}

    def all_keys(self) -> tuple[SigningKey, ...]:
        """Every published key, of every family."""
        return tuple(k for family in self.families for k in family.keys)

    def jwks(self) -> dict[str, Any]:
        """Public keys only (SECURITY K2), each with its `alg`, of every family."""
        return {"keys": [k.public_jwk() for k in self.all_keys()]}


def select_signing_key(keys: Sequence[SigningKey], now: float,
                       activation_delay: float) -> SigningKey:
    """The newest key (of `keys`, oldest first) whose activation time has passed; when none
    has, the oldest: on a fresh install the one key signs at once, and a key rotated in before
    the first one's delay ran out still waits for its own."""
    active = [k for k in keys if k.created_at + activation_delay <= now]
    return active[-1] if active else keys[0]


def prunable_keys(keyset: KeySet, now: float, token_lifetime: float,
                  leeway: float) -> list[SigningKey]:
    """Keys that stopped signing longer ago than any token they signed can live: a key stops
    when its successor activates, and its last token expires `token_lifetime` (+ leeway) later.
    The signing key and newer ones are never prunable."""
    keys = keyset.keys
    signing_index = keys.index(keyset.reselect(now).signing)
    prunable = []
    for key, successor in itertools.pairwise(keys[: signing_index + 1]):
        retired_at = successor.created_at + keyset.activation_delay
        if retired_at + token_lifetime + leeway < now:
            prunable.append(key)
    return prunable


def key_path(keys_dir: Path, key: SigningKey) -> Path:
    return keys_dir / f"{KEY_FILE_PREFIX}{key.created}.pem"


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
    return jose.base64url(digest)


def write_new_key(keys_dir: Path, algorithm: str, now: float | None = None) -> Path:
    """Generate a key and write it as `key-<timestamp>.pem`, readable by the owner only."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime(KEY_STAMP_FORMAT, time.gmtime(now if now is not None else time.time()))
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
    # Written under a name the loader ignores, then linked in: a gateway reloading the
    # directory never reads half a key, and an existing key is never replaced.
    partial = keys_dir / f".{path.name}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.link(partial, path)
    finally:
        partial.unlink()
    return path


def key_algorithms(algorithm: str) -> tuple[str, ...]:
    """The key families a gateway signing access tokens with `algorithm` holds: that one, and
    RS256 for ID tokens (SECURITY J11)."""
    return tuple(dict.fromkeys((algorithm, ID_TOKEN_ALGORITHM)))


def load_keyset(keys_dir: Path, algorithm: str, *, generate_if_empty: bool = False,
                activation_delay: float = 0.0, now: float | None = None,
                require_rs256: bool = False) -> KeySet:
    """Load every key of `algorithm` from `keys_dir`, and with another algorithm than RS256
    the RS256 keys for ID tokens too; in each family the newest active key signs
    (`select_signing_key`; with no delay, the newest). `require_rs256`: a missing RS256
    family is an error (or, with `generate_if_empty`, generated), as a serving gateway needs
    it (SECURITY J11)."""
    if generate_if_empty and not _key_files(keys_dir):
        _generate(keys_dir, algorithm)
    files = _key_files(keys_dir)
    if not files:
        raise ConfigError(
            "tokens.keys_dir",
            f"no signing key in {keys_dir} (create one with: oauth-gateway keys generate)",
        )
    families = _families(files, key_algorithms(algorithm), algorithm)
    if not families[algorithm]:
        raise ConfigError("tokens.keys_dir", f"no {algorithm} key in {keys_dir}")
    if algorithm != ID_TOKEN_ALGORITHM and not families[ID_TOKEN_ALGORITHM] and require_rs256:
        if not generate_if_empty:
            raise ConfigError(
                "tokens.keys_dir",
                f"no {ID_TOKEN_ALGORITHM} key in {keys_dir}: OpenID Connect ID tokens need one "
                f"whatever tokens.algorithm ({algorithm}) is (create it with: oauth-gateway "
                f"keys generate --algorithm {ID_TOKEN_ALGORITHM})")
        families[ID_TOKEN_ALGORITHM].append(_load_key(_generate(keys_dir, ID_TOKEN_ALGORITHM)))
    now = time.time() if now is None else now
    keysets = [_family_keyset(a, keys, activation_delay, now)
               for a, keys in families.items() if keys]
    if len(keysets) == 1:
        return keysets[0]
    return replace(keysets[0], rs256=keysets[1])


def _families(files: Sequence[Path], wanted: Sequence[str], algorithm: str
              ) -> dict[str, list[SigningKey]]:
    """The keys of `files`, by algorithm, of the `wanted` ones; others are ignored (logged)."""
    families: dict[str, list[SigningKey]] = {a: [] for a in wanted}
    for path in files:
        key = _load_key(path)
        if key.algorithm not in families:
            log.warning("ignoring key %s: it is %s, tokens.algorithm is %s",
                        path.name, key.algorithm, algorithm)
            continue
        families[key.algorithm].append(key)
    return families


def _family_keyset(algorithm: str, keys: list[SigningKey], activation_delay: float,
                   now: float) -> KeySet:
    keys = sorted(keys, key=lambda k: _creation_order(k.created))
    return KeySet(algorithm=algorithm, signing=select_signing_key(keys, now, activation_delay),
                  keys=tuple(keys), activation_delay=activation_delay)


def _generate(keys_dir: Path, algorithm: str) -> Path:
    try:
        path = write_new_key(keys_dir, algorithm)
    except OSError as e:
        raise ConfigError("tokens.keys_dir",
                          f"cannot create a key in {keys_dir}: {e.strerror}") from None
    log.info("generated a new %s signing key in %s", algorithm, path.parent)
    return path


def _load_key(path: Path) -> SigningKey:
    private_key = _read_private_key(path)
    created = path.stem[len(KEY_FILE_PREFIX) :]
    return SigningKey(thumbprint(private_key.public_key()), algorithm_of(private_key),
                      private_key, created, _created_at(path, created))


def families_present(keys_dir: Path) -> set[str]:
    """The algorithms of the keys in `keys_dir` (for `keys generate`: is this key the first
    of its family?)."""
    return {_load_key(path).algorithm for path in _key_files(keys_dir)}


class KeyDirectory:
    """The keys directory of a running gateway: loaded once, then `refresh`ed periodically.
    The directory is listed again only when its mtime changed (a key written or removed);
    otherwise only the choice of the signing key is re-made (a new key's time has come)."""

    def __init__(self, keys_dir: Path, algorithm: str, activation_delay: float,
                 clock: Callable[[], float] = time.time, *, require_rs256: bool = False) -> None:
        self.keys_dir = keys_dir
        self.algorithm = algorithm
        self.activation_delay = activation_delay
        self.clock = clock
        self.require_rs256 = require_rs256
        self._mtime_ns: int | None = None

    def load(self, *, generate_if_empty: bool = False) -> KeySet:
        mtime_ns = self._dir_mtime_ns()  # before listing: a change during it is seen next time
        keyset = load_keyset(self.keys_dir, self.algorithm, generate_if_empty=generate_if_empty,
                             activation_delay=self.activation_delay, now=self.clock(),
                             require_rs256=self.require_rs256)
        self._mtime_ns = mtime_ns if mtime_ns == self._dir_mtime_ns() else None
        return keyset

    def refresh(self, current: KeySet) -> KeySet:
        """The key set to use now: `current` itself when nothing changed. A directory that
        cannot be read (or holds no usable key) keeps `current`, with a warning."""
        mtime_ns = self._dir_mtime_ns()
        if mtime_ns is None or mtime_ns == self._mtime_ns:
            return current.reselect(self.clock())
        try:
            keyset = self.load()
        except ConfigError as e:
            log.warning("keeping the current signing keys: %s", e)
            return current.reselect(self.clock())
        if _kids(keyset.all_keys()) == _kids(current.all_keys()) and \
                _signing_kids(keyset) == _signing_kids(current):
            return current
        log.info("signing keys reloaded: %d published, %s sign%s", len(keyset.all_keys()),
                 ", ".join(_signing_kids(keyset)), "" if keyset.rs256 else "s")
        return keyset

    def _dir_mtime_ns(self) -> int | None:
        try:
            return self.keys_dir.stat().st_mtime_ns
        except OSError:
            return None


def _kids(keys: Sequence[SigningKey]) -> list[str]:
    return [k.kid for k in keys]


def _signing_kids(keyset: KeySet) -> list[str]:
    return [family.signing.kid for family in keyset.families]


def _created_at(path: Path, created: str) -> float:
    """Unix time of a key: the UTC timestamp in its name (the same on every replica, whatever
    a volume mount does to mtimes), else the file's mtime."""
    try:
        return float(calendar.timegm(time.strptime(created.partition("-")[0],
                                                   KEY_STAMP_FORMAT)))
    except ValueError:
        return path.stat().st_mtime


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
    if _readable_by_others(path.stat()):
        log.warning("key file %s is readable by others: chmod 600 it", path.name)
    return key


def _readable_by_others(stat: os.stat_result) -> bool:
    """World-readable, or group-readable by a group that is not the process's own. A Secret
    volume in Kubernetes gives a non-root pod its files as root:<fsGroup> 0440 (the only way
    it can read them): the pod's own group, in a container where it alone runs."""
    return bool(stat.st_mode & 0o007) or bool(stat.st_mode & 0o070
                                               and stat.st_gid != os.getegid())


def purpose_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for one purpose, derived from a configured secret with HKDF-SHA256 (RFC
    5869) under the purpose's name (SECURITY K4: no two purposes share a key, and no derived
    key tells anything of the secret or of another purpose's key)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"oauth-gateway {purpose}".encode()).derive(secret.encode())
