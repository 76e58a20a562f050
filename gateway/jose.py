"""JWT checks, each named for what it checks, as PyJWT's `api_jwt.py` has them.

The gateway's own tokens (gateway/tokens.py), the providers' ID tokens (providers/google.py)
and the SDK for apps (gateway/client.py) compose these. Every check raises `JoseError`, whose
message names what failed in words for our logs (metrics.REFUSAL_REASONS labels them); each
caller maps it to its own error in one place: `InvalidToken` for ours, `UpstreamError` for a
provider's, `TokenRejected` in the SDK. Nothing here does I/O or reads the clock: `now` is
given.

A compact JWS is parsed strictly here (SECURITY J7): three base64url segments without padding,
each in its one canonical encoding, the header and payload JSON objects. The signature is
checked with the key's own algorithm (Ed25519's with libsodium, gateway/ed25519.py), once,
before any claim is read; a payload read after that check (`signed_payload`) is the signer's
own spelling, since the signature covers it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Collection, Iterable
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from gateway import ed25519

# Three base64url segments without padding, as we issue them. Checked with one regex before
# anything else (PyJWT checks each character in Python: ~35 us a token).
COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


class JoseError(ValueError):
    """A JWT failed one check; the message says which, for our logs only."""


# -- the compact serialization --------------------------------------------------------------


def unverified_header(token: str, *, max_length: int) -> dict[str, Any]:
    """The JOSE header of a compact JWS, parsed strictly and nothing verified."""
    if len(token) > max_length:
        raise JoseError("oversized token")
    compact = COMPACT_JWS.fullmatch(token)
    if compact is None:
        raise JoseError("not a JWS compact serialization")
    return parse_header_segment(compact.group(1))


def parse_header_segment(segment: str) -> dict[str, Any]:
    return _parse_json_object(segment, "header")


def check_signature(token: str, key: jwt.PyJWK, *, low_s_only: bool = True) -> None:
    """The compact JWS (already matched by COMPACT_JWS) is signed by `key`, with the key's own
    algorithm. A signature not in its one canonical form is refused (SECURITY J10): the one
    base64url encoding of its bytes, and for ECDSA the low-S twin of (r, s) and (r, n - s),
    for EdDSA an S below the group order, so that a token has one spelling only.

    `low_s_only=False` for a provider's ID token: its signer (OpenSSL's ECDSA) picks either
    twin, and nothing of ours is keyed by its spelling; it is checked once, at the callback."""
    signing_input, _, encoded = token.rpartition(".")
    try:
        signature = _base64url_decode_canonical(encoded)
    except ValueError:
        raise JoseError("malformed signature") from None
    if low_s_only and not is_canonical_signature(key.algorithm_name, signature):
        raise JoseError("signature not in its canonical form")
    if not _verifies(key, signing_input.encode(), signature):
        raise JoseError("bad signature")


def _verifies(key: jwt.PyJWK, message: bytes, signature: bytes) -> bool:
    """The key's algorithm's check: PyJWT's (cryptography's), but Ed25519's with libsodium and
    ES256's with cryptography directly (PyJWT converts r || s to DER in Python)."""
    public = key.key
    if isinstance(public, Ed25519PublicKey):
        return ed25519.verifies(_ed25519_public_bytes(public), message, signature)
    if isinstance(public, EllipticCurvePublicKey) and key.algorithm_name == "ES256" \
            and public.curve.name == "secp256r1" and len(signature) == 64:
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                   int.from_bytes(signature[32:], "big"))
        try:
            public.verify(der, message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True
    return bool(key.Algorithm.verify(message, public, signature))


_ECDSA_SHA256 = ECDSA(SHA256())


_ED25519_PUBLIC_BYTES: dict[int, tuple[Ed25519PublicKey, bytes]] = {}


def _ed25519_public_bytes(key: Ed25519PublicKey) -> bytes:
    """The key's raw bytes, remembered for the few keys in use (the key object is kept with
    them, so its id is not reused while remembered)."""
    known = _ED25519_PUBLIC_BYTES.get(id(key))
    if known is not None and known[0] is key:
        return known[1]
    if len(_ED25519_PUBLIC_BYTES) >= 64:
        _ED25519_PUBLIC_BYTES.clear()
    raw = ed25519.public_bytes(key)
    _ED25519_PUBLIC_BYTES[id(key)] = (key, raw)
    return raw


# ECDSA: the order n of each curve's group (FIPS 186-4 D.1.2); RFC 7518 3.4 signatures are
# r || s, each as long as n. EdDSA: Ed25519's group order L (RFC 8032 5.1.7: S < L).
_ECDSA_ORDERS = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                 "581A0DB248B0A77AECEC196ACCC52973", 16),
    "ES512": int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                 "FFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
                 16),
}
_ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def is_canonical_signature(algorithm: str, signature: bytes) -> bool:
    """False for the twin spellings of a signature: ECDSA's high S, EdDSA's S >= L."""
    order = _ECDSA_ORDERS.get(algorithm)
    if order is not None:
        return int.from_bytes(signature[len(signature) // 2:], "big") <= order // 2
    if algorithm == "EdDSA" and len(signature) == 64:
        return int.from_bytes(signature[32:], "little") < _ED25519_ORDER
    return True


def canonical_signature(algorithm: str, signature: bytes) -> bytes:
    """The low-S twin of an ECDSA signature (r, s): (r, n - s) when s > n / 2. A signer's
    ECDSA (OpenSSL's) picks either; verifiers here accept only the low one."""
    order = _ECDSA_ORDERS.get(algorithm)
    if order is None:
        return signature
    half = len(signature) // 2
    s = int.from_bytes(signature[half:], "big")
    if s <= order // 2:
        return signature
    return signature[:half] + (order - s).to_bytes(half, "big")


def unverified_payload(token: str) -> dict[str, Any]:
    """The payload of a compact JWS (already matched by COMPACT_JWS) as a JSON object, nothing
    verified. For use after `check_signature`."""
    return _parse_json_object(token.split(".", 2)[1], "payload")


def signed_payload(token: str) -> tuple[dict[str, Any], bytes]:
    """The payload of a compact JWS whose signature `check_signature` accepted: the claims, and
    their JSON as signed. Its base64url spelling is not checked again: the signature covers the
    segment as spelled, so only the signer chose it."""
    segment = token.split(".", 2)[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError:
        raise JoseError("the payload is not base64url JSON") from None
    return _json_object(raw, "payload"), raw


def _parse_json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = _base64url_decode_canonical(segment)
    except ValueError:
        raise JoseError(f"the {what} is not base64url JSON") from None
    return _json_object(raw, what)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except RecursionError:  # "[[[[...": Python's parser recurses per level
        raise JoseError(f"the {what} nests too deep") from None
    except ValueError:  # the parser's message quotes the bytes: not for our log
        raise JoseError(f"the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise JoseError(f"the {what} is not a JSON object")
    return value


def _base64url_decode_canonical(segment: str) -> bytes:
    """base64url without padding (alphabet checked by COMPACT_JWS); only the one canonical
    encoding of the bytes, so that a signature cannot be re-spelled (binascii.Error is a
    ValueError)."""
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode():
        raise ValueError("not the canonical encoding")
    return decoded


# -- the header -----------------------------------------------------------------------------


def check_header(header: dict[str, Any], *, algorithms: Collection[str], typ: str,
                 allowed_members: Collection[str]) -> str:
    """SECURITY J1, J3, J5, J8: only the allowed members (no `jku`, `x5u`, `jwk`, `crit`), an
    accepted `alg`, the expected `typ`, a well-formed `kid`. Returns the `kid`."""
    extra = set(header) - set(allowed_members)
    if extra:
        raise JoseError(f"forbidden header members {sorted(extra)}")
    if header.get("alg") not in algorithms:
        raise JoseError(f"algorithm {header.get('alg')!r} not accepted")
    if header.get("typ") != typ:
        raise JoseError(f"typ {header.get('typ')!r} is not {typ}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise JoseError("missing or malformed kid")
    return kid


# -- the claims ------------------------------------------------------------------------------


def numeric_date(value: Any) -> float | None:
    """A JWT NumericDate (RFC 7519 2) as seconds, or None when the value is not one. bool is an
    int in Python, and Python's JSON parser accepts NaN, Infinity and 400-digit ints."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            return None
        if math.isfinite(seconds):
            return seconds
    return None


def claim_date(claims: dict[str, Any], name: str) -> float:
    seconds = numeric_date(claims.get(name))
    if seconds is None:
        raise JoseError(f"{name} is not a NumericDate")
    return seconds


def check_required(claims: dict[str, Any], names: Iterable[str]) -> None:
    for name in names:
        if name not in claims:
            raise JoseError(f"missing claim {name}")


def check_exp(claims: dict[str, Any], *, now: float, leeway: float) -> float:
    """RFC 7519 4.1.4, with a bounded leeway (SECURITY J4). Returns `exp`."""
    exp = claim_date(claims, "exp")
    if exp <= now - leeway:
        raise JoseError("expired")
    return exp


def check_nbf(claims: dict[str, Any], *, now: float, leeway: float) -> None:
    """RFC 7519 4.1.5; a token without `nbf` passes (require it with `check_required`)."""
    if "nbf" in claims and claim_date(claims, "nbf") > now + leeway:
        raise JoseError("not yet valid")


def check_iat(claims: dict[str, Any], *, now: float, leeway: float) -> float:
    """RFC 7519 4.1.6: a token "issued" in the future was not issued as its issuer says."""
    iat = claim_date(claims, "iat")
    if iat > now + leeway:
        raise JoseError("issued in the future")
    return iat


def check_iss(claims: dict[str, Any], issuers: Collection[str]) -> None:
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in issuers:
        raise JoseError("wrong issuer")


def check_aud(claims: dict[str, Any], audiences: Collection[str]) -> None:
    """RFC 7519 4.1.3: `aud` is a string or a list of strings, one of them ours."""
    aud = claims.get("aud")
    listed = [aud] if isinstance(aud, str) else aud
    if not isinstance(listed, list) or not any(
            isinstance(a, str) and a in audiences for a in listed):
        raise JoseError("wrong audience")


def check_azp(claims: dict[str, Any], client_id: str) -> None:
    """OIDC Core 3.1.3.7 (4, 5): an ID token for several audiences must say which of them it
    was issued to (`azp`), and an `azp` present must name us."""
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and "azp" not in claims:
        raise JoseError("several audiences and no azp")
    if "azp" in claims and claims["azp"] != client_id:
        raise JoseError("azp is another client")


def check_text(claims: dict[str, Any], name: str) -> str:
    """A claim that must be a non-empty string (`sub`, `jti`)."""
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise JoseError(f"bad {name}")
    return value


def base64url(raw: bytes) -> str:
    """RFC 7515 2: base64url without padding, the one spelling of JOSE, PKCE and thumbprints."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def left_half_hash(value: str, algorithm: str) -> str:
    """`at_hash` (OIDC Core 3.1.3.6): base64url of the left half of the hash that the token's
    algorithm uses: SHA-256 for RS256 and ES256, SHA-512 for EdDSA with Ed25519."""
    digest = (hashlib.sha512 if algorithm == "EdDSA" else hashlib.sha256)(value.encode()).digest()
    return base64url(digest[: len(digest) // 2])
