"""Issue and verify the gateway's access JWTs: plain functions over a `KeySet` and claims.

The whole verification policy lives here (SECURITY J1-J9): one algorithm, `kid` looked up in our
own key set only, a strict header, `typ` checked by us (PyJWT never checks it), every time claim
and `iss`/`aud` required, bounded leeway. Every refusal raises `InvalidToken` with the reason for
our log only; the client always sees the same answer.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from tornado.escape import json_encode

from gateway.errors import InvalidToken
from gateway.identity import Identity
from gateway.keys import KeySet

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 section 2.1
# OIDC Core 2 and RFC 8725 3.11: ID tokens say "JWT", so one is never taken for an access token.
ID_TOKEN_TYPE = "JWT"
MAX_TOKEN_LENGTH = 8192  # SECURITY J7: refuse huge tokens before any parsing
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # SECURITY J8
# SECURITY J7: three base64url segments without padding, as we issue them. Checked with one
# regex before anything else (PyJWT checks each character in Python: ~35 us a token).
COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
ALLOWED_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})  # SECURITY J3: no jku, x5u, jwk, crit
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti")
# Verified tokens remembered per process: about 1 KB each, so 10 MB at most.
VERIFIED_CACHE_SIZE = 10_000
HEADER_CACHE_SIZE = 64


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audiences: tuple[str, ...]
    lifetime: int
    leeway: int


@dataclass
class TokenIssuer:
    """Signs access tokens with the key set's current signing key."""

    keyset: KeySet
    policy: TokenPolicy
    clock: Callable[[], float] = time.time
    new_jti: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(16))

    def issue_access_token(self, identity: Identity, audience: str,
                           auth_time: int | None = None) -> str:
        return self.issue(identity.sub, audience, identity.profile_claims(), auth_time=auth_time)

    def issue(self, sub: str, audience: str, extra_claims: dict[str, Any], *,
              auth_time: int | None = None) -> str:
        """An access token for `sub`; `extra_claims` (profile, `client_id`, `scope`...) never
        override the registered claims."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.policy.issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.policy.lifetime,
            "jti": self.new_jti(),
            "auth_time": auth_time if auth_time is not None else now,
        }
        claims.update({k: v for k, v in extra_claims.items() if k not in claims})
        return self.sign(claims, ACCESS_TOKEN_TYPE)

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """Sign `claims` as they are, with header `typ` (ID tokens: ID_TOKEN_TYPE)."""
        signing = self.keyset.signing
        return jwt.encode(
            claims,
            signing.private_key,
            algorithm=signing.algorithm,
            headers={"kid": signing.kid, "typ": typ},
        )


@dataclass
class _Verified:
    """A verified token in the cache: valid until `expires`, its claims, their JSON."""

    expires: float
    claims: dict[str, Any]
    kid: str
    json: bytes | None = None


class TokenVerifier:
    """Verifies access tokens against our own key set and the configured policy.

    Tokens that verified are remembered (bounded, least recently used first out), keyed by the
    whole token string: a token differing in any byte, a tampered one included, is a miss and
    gets the full check. A hit is still refused once past `exp` (plus leeway).
    """

    def __init__(self, keyset: KeySet, policy: TokenPolicy,
                 clock: Callable[[], float] = time.time,
                 cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        self._algorithm = keyset.algorithm
        self._keys = {kid: jwt.PyJWK(key.public_jwk()) for kid, key in keyset.by_kid().items()}
        self._policy = policy
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_size = cache_size
        # (header segment, typ) -> the checked header, for headers naming one of our keys: a
        # handful of distinct segments, since every token of a key has the same header.
        self._headers: dict[tuple[str, str], dict[str, Any]] = {}

    def use_keyset(self, keyset: KeySet) -> None:
        """Verify with a reloaded key set (SECURITY K3). Tokens already verified stay cached
        while their key is still published; those of a removed key are forgotten."""
        if keyset.algorithm != self._algorithm:
            raise ValueError("a key set of another algorithm")
        known = {kid: self._keys.get(kid) for kid in keyset.by_kid()}
        self._keys = {kid: jwk or jwt.PyJWK(keyset.by_kid()[kid].public_jwk())
                      for kid, jwk in known.items()}
        self._headers = {}
        for token, entry in list(self._verified.items()):
            if entry.kid not in self._keys:
                del self._verified[token]

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise `InvalidToken`."""
        return dict(self._verified_entry(token).claims)

    def verify_as_json(self, token: str) -> tuple[dict[str, Any], bytes]:
        """`verify`, plus the claims as JSON: encoded once per token, since /verify answers
        with exactly that on every request of every downstream app."""
        entry = self._verified_entry(token)
        if entry.json is None:
            entry.json = json_encode(entry.claims).encode()
        return dict(entry.claims), entry.json

    def cached_json(self, token: str) -> bytes | None:
        """The claims' JSON of a token verified before and still valid, else None (not a
        refusal: a miss, to be verified in full by `verify_as_json`)."""
        entry = self._verified.get(token)
        if entry is None or entry.json is None or self._clock() >= entry.expires:
            return None
        self._verified.move_to_end(token)
        return entry.json

    def _verified_entry(self, token: str) -> _Verified:
        entry = self._verified.get(token)
        if entry is not None:
            if self._clock() < entry.expires:
                self._verified.move_to_end(token)
                return entry
            del self._verified[token]
            raise InvalidToken("expired")
        claims, kid = self._verify_uncached(token)
        entry = _Verified(claims["exp"] + self._policy.leeway, claims, kid)
        if self._cache_size:
            self._verified[token] = entry
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return entry

    def verify_id_token_hint(self, token: str) -> dict[str, Any]:
        """The claims of an ID token we issued, expired or not (OIDC RP-Initiated Logout 1.0
        section 2: an expired `id_token_hint` is still a hint). Signature, algorithm, `kid`,
        `typ` and `iss` are checked; the audience is the caller's to check."""
        _, key = self._key_for(token, ID_TOKEN_TYPE)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[self._algorithm], issuer=self._policy.issuer,
                options={"require": ["iss", "sub", "aud"], "verify_aud": False,
                         "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except (jwt.InvalidTokenError, ValueError, TypeError) as e:
            raise InvalidToken(f"id_token_hint refused: {type(e).__name__}") from None
        return claims

    def _verify_uncached(self, token: str) -> tuple[dict[str, Any], str]:
        kid, key = self._key_for(token, ACCESS_TOKEN_TYPE)
        self._check_signature(token, key)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=list(self._policy.audiences),
                issuer=self._policy.issuer,
                # PyJWT reads the wall clock, not ours: the time claims are checked below.
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.MissingRequiredClaimError as e:
            raise InvalidToken(f"missing claim {e.claim}") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except (jwt.InvalidTokenError, ValueError, TypeError) as e:
            raise InvalidToken(f"malformed: {type(e).__name__}") from None
        self._check_times(claims)
        return claims, kid

    def _key_for(self, token: str, typ: str) -> tuple[str, jwt.PyJWK]:
        """Our public key named by the token's header, after the header's checks (J1-J3, J7,
        J8); headers naming one of our keys are remembered checked."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("empty or oversized token")
        compact = COMPACT_JWS.fullmatch(token)
        if compact is None:
            raise InvalidToken("not a JWS compact serialization")
        cache_key = (compact.group(1), typ)
        header = self._headers.get(cache_key)
        if header is None:
            header = self._checked_header(compact.group(1), typ)
        kid: str = header["kid"]
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        if len(self._headers) < HEADER_CACHE_SIZE:  # bounded: a header can be spelled many ways
            self._headers[cache_key] = header
        return kid, key

    @staticmethod
    def _check_signature(token: str, key: jwt.PyJWK) -> None:
        """Refuse a bad signature before PyJWT's whole decode: a flood of forged tokens costs
        one signature check each (~25 us), not a full decode (~110 us)."""
        try:
            check_signature(token, key)
        except ValueError as e:
            raise InvalidToken(str(e)) from None

    def _checked_header(self, segment: str, typ: str) -> dict[str, Any]:
        """The header of a token already matched by COMPACT_JWS, from its first segment."""
        try:
            header = _parse_header_segment(segment)
        except ValueError as e:
            raise InvalidToken(f"malformed header: {type(e).__name__}") from None
        extra = set(header) - ALLOWED_HEADER_MEMBERS
        if extra:
            raise InvalidToken(f"forbidden header members {sorted(extra)}")
        if header.get("alg") != self._algorithm:
            raise InvalidToken(f"algorithm {header.get('alg')!r} not accepted")
        if header.get("typ") != typ:
            raise InvalidToken(f"typ {header.get('typ')!r} is not {typ}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise InvalidToken("missing or malformed kid")
        return header

    def _check_times(self, claims: dict[str, Any]) -> None:
        # SECURITY J4, against our clock with a bounded leeway (RFC 7519 4.1.4, 4.1.5). A token
        # "issued" in the future or living longer than our policy allows was not made by us as
        # configured.
        now = self._clock()
        leeway = self._policy.leeway
        exp, nbf, iat = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
        if exp <= now - leeway:
            raise InvalidToken("expired")
        if nbf > now + leeway:
            raise InvalidToken("not yet valid")
        if iat > now + leeway:
            raise InvalidToken("issued in the future")
        if exp - iat > self._policy.lifetime + leeway:
            raise InvalidToken("lifetime longer than policy")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise InvalidToken("bad jti")


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, parsed strictly and nothing verified: three base64url
    segments without padding, the header a JSON object. ValueError otherwise. (PyJWT's
    get_unverified_header checks every character of all three segments in Python: ~35 us for
    a 1 KB token, before its decode does it again.)"""
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("oversized token")
    compact = COMPACT_JWS.fullmatch(token)
    if compact is None:
        raise ValueError("not a JWS compact serialization")
    return _parse_header_segment(compact.group(1))


def check_signature(token: str, key: jwt.PyJWK) -> None:
    """ValueError unless a compact JWS (already matched by COMPACT_JWS) is signed by `key`,
    with the key's own algorithm. A signature not in its one canonical encoding is refused."""
    signing_input, _, encoded = token.rpartition(".")
    try:
        signature = _base64url_decode_canonical(encoded)
    except ValueError:
        raise ValueError("malformed signature") from None
    if not key.Algorithm.verify(signing_input.encode(), key.key, signature):
        raise ValueError("bad signature")


def unverified_payload(token: str) -> dict[str, Any]:
    """The payload of a compact JWS (already matched by COMPACT_JWS) as a JSON object, nothing
    verified; ValueError otherwise. For use after `check_signature`."""
    return _parse_json_object(token.split(".", 2)[1], "payload")


def _parse_header_segment(segment: str) -> dict[str, Any]:
    return _parse_json_object(segment, "header")


def _parse_json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_base64url_decode_canonical(segment))
    except RecursionError:  # "[[[[...": Python's parser recurses per level
        raise ValueError(f"the {what} nests too deep") from None
    except ValueError:  # the parser's message quotes the bytes: not for our log
        raise ValueError(f"the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"the {what} is not a JSON object")
    return value


def _base64url_decode_canonical(segment: str) -> bytes:
    """base64url without padding (alphabet checked by COMPACT_JWS); only the one canonical
    encoding of the bytes, so that a signature cannot be re-spelled (binascii.Error is a
    ValueError)."""
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode():
        raise ValueError("not the canonical encoding")
    return decoded


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


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    seconds = numeric_date(claims[name])
    if seconds is None:
        raise InvalidToken(f"{name} is not a NumericDate")
    return seconds


def bearer_token_from_header(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (RFC 6750 2.1), else None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def audiences(default: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    return tuple(dict.fromkeys([default, *extra]))
