"""Issue and verify the gateway's access JWTs: plain functions over a `KeySet` and claims.

The whole verification policy lives here (SECURITY J1-J9): one algorithm, `kid` looked up in our
own key set only, a strict header, `typ` checked (PyJWT never checks it), every time claim and
`iss`/`aud` required, bounded leeway; each by its named check in gateway/jose.py, the signature
once. ID tokens may also be RS256 (SECURITY J11: the key set's RS256 family); access tokens
never. Every refusal raises `InvalidToken` with the reason for our log only (this module is
where JOSE failures become `InvalidToken`); the client always sees the same answer.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from gateway import jose
from gateway.errors import InvalidToken
from gateway.identity import Identity
from gateway.jose import COMPACT_JWS, JoseError
from gateway.keys import KeySet
from gateway.signing import compact_jws

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 section 2.1
# OIDC Core 2 and RFC 8725 3.11: ID tokens say "JWT", so one is never taken for an access token.
ID_TOKEN_TYPE = "JWT"
MAX_TOKEN_LENGTH = 8192  # SECURITY J7: refuse huge tokens before any parsing
ALLOWED_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})  # SECURITY J3: no jku, x5u, jwk, crit
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti")
# Verified tokens remembered per process, bounded by their estimated memory
# (`tokens.verified_cache_mb`): the token string, its claims (a dict), their JSON and the
# entry. tracemalloc puts the claims, JSON and entry at about ENTRY_BYTES plus 1.5 bytes per
# character of the payload segment (bench/verified_cache.py prints both; docs/benchmarks.md).
VERIFIED_CACHE_BYTES = 64 * 2**20
ENTRY_BYTES = 1800
STR_BYTES = 49  # a str object's own header
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
                           auth_time: int | None = None, *, sid: str | None = None) -> str:
        """An access token of the cookie login; `sid` names the session it was issued in, so
        that ending that session revokes it (SECURITY P8, T6)."""
        claims = identity.profile_claims()
        if sid:
            claims["sid"] = sid
        return self.issue(identity.sub, audience, claims, auth_time=auth_time)

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

    def sign(self, claims: dict[str, Any], typ: str, algorithm: str | None = None) -> str:
        """Sign `claims` as they are, with header `typ` (ID tokens: ID_TOKEN_TYPE), the
        signature in its one canonical form (SECURITY J10). `algorithm`: one of the key set's
        (ID tokens: RS256 or tokens.algorithm, SECURITY J11); default tokens.algorithm."""
        key = self.keyset.family(algorithm or self.keyset.algorithm).signing
        header = {"alg": key.algorithm, "kid": key.kid, "typ": typ}
        return compact_jws(claims, header, key.sign)


@dataclass
class _Verified:
    """A verified token in the cache: valid until `expires`, its claims, their JSON."""

    expires: float
    claims: dict[str, Any]
    kid: str
    size: int  # estimated bytes held by this entry and its key
    json: bytes  # the claims as /verify answers them


def json_answer(payload: bytes) -> bytes:
    """The claims' JSON as /verify sends it: the payload as we signed it (compact JSON, ASCII
    only), with "</" escaped as Tornado's json_encode does, so that no answer holds a closing
    HTML tag."""
    return payload.replace(b"</", b"<\\/")


class TokenVerifier:
    """Verifies access tokens against our own key set and the configured policy.

    Tokens that verified are remembered (bounded by memory, and by count when `cache_size` is
    given; least recently used first out), keyed by the whole token string: a token differing
    in any byte, a tampered one included, is a miss and gets the full check. A hit is still
    refused once past `exp` (plus leeway).
    """

    def __init__(self, keyset: KeySet, policy: TokenPolicy,
                 clock: Callable[[], float] = time.time,
                 cache_bytes: int = VERIFIED_CACHE_BYTES,
                 cache_size: int | None = None) -> None:
        self._algorithm = keyset.algorithm
        # Access tokens: the keys of tokens.algorithm only (J1). ID tokens: every family (J11).
        self._keys = {kid: jwt.PyJWK(key.public_jwk()) for kid, key in keyset.by_kid().items()}
        self._id_keys = self._id_token_keys(keyset, self._keys)
        self._id_algorithms = keyset.id_token_algorithms
        self._policy = policy
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cache_size = cache_size
        self.cached_bytes = 0  # the estimated memory of what is cached now
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
        self._id_keys = self._id_token_keys(keyset, self._keys)
        self._id_algorithms = keyset.id_token_algorithms
        self._headers = {}
        for token, entry in list(self._verified.items()):
            if entry.kid not in self._keys:
                self._forget(token)

    @staticmethod
    def _id_token_keys(keyset: KeySet, access_keys: dict[str, jwt.PyJWK]
                       ) -> dict[str, jwt.PyJWK]:
        return {**access_keys, **{key.kid: jwt.PyJWK(key.public_jwk())
                                  for family in keyset.families[1:] for key in family.keys}}

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise `InvalidToken`."""
        return dict(self._verified_entry(token).claims)

    def verify_as_json(self, token: str) -> tuple[dict[str, Any], bytes]:
        """`verify`, plus the claims as JSON: what /verify answers on every request of every
        downstream app, kept with the token (the payload as we signed it)."""
        entry = self._verified_entry(token)
        return dict(entry.claims), entry.json

    def cached_json(self, token: str) -> bytes | None:
        """The claims' JSON of a token verified before and still valid, else None (not a
        refusal: a miss, to be verified in full by `verify_as_json`)."""
        entry = self._verified.get(token)
        if entry is None or self._clock() >= entry.expires:
            return None
        self._verified.move_to_end(token)
        return entry.json

    def _verified_entry(self, token: str) -> _Verified:
        entry = self._verified.get(token)
        if entry is not None:
            if self._clock() < entry.expires:
                self._verified.move_to_end(token)
                return entry
            self._forget(token)
            raise InvalidToken("expired")
        claims, kid, raw = self._verify_uncached(token)
        entry = _Verified(claims["exp"] + self._policy.leeway, claims, kid, entry_size(token),
                          json_answer(raw))
        if entry.size <= self._cache_bytes and self._cache_size != 0:
            self._verified[token] = entry
            self.cached_bytes += entry.size
            while self.cached_bytes > self._cache_bytes or (
                    self._cache_size is not None and len(self._verified) > self._cache_size):
                self.cached_bytes -= self._verified.popitem(last=False)[1].size
        return entry

    def _forget(self, token: str) -> None:
        self.cached_bytes -= self._verified.pop(token).size

    def verify_id_token_hint(self, token: str) -> dict[str, Any]:
        """The claims of an ID token we issued, expired or not (OIDC RP-Initiated Logout 1.0
        section 2: an expired `id_token_hint` is still a hint). Signature, algorithm, `kid`,
        `typ` and `iss` are checked; the audience is the caller's to check."""
        _, key = self._key_for(token, ID_TOKEN_TYPE)
        try:
            jose.check_signature(token, key)
            claims = jose.unverified_payload(token)
            jose.check_required(claims, ("iss", "sub", "aud"))
            jose.check_iss(claims, (self._policy.issuer,))
        except JoseError as e:
            raise InvalidToken(f"id_token_hint refused: {e}") from None
        return claims

    def _verify_uncached(self, token: str) -> tuple[dict[str, Any], str, bytes]:
        """SECURITY J1-J9: the header (checked in `_key_for`), the signature once, then every
        claim we require, each by its named check (gateway/jose.py)."""
        kid, key = self._key_for(token, ACCESS_TOKEN_TYPE)
        policy = self._policy
        try:
            # A flood of forged tokens costs one signature check each, nothing more.
            jose.check_signature(token, key)
            try:
                claims, raw = jose.signed_payload(token)
            except JoseError as e:
                raise JoseError(f"malformed: {e}") from None
            jose.check_required(claims, REQUIRED_CLAIMS)
            jose.check_iss(claims, (policy.issuer,))
            jose.check_aud(claims, policy.audiences)
            jose.check_text(claims, "sub")
            jose.check_text(claims, "jti")
            # Against our clock (PyJWT would read the wall clock), with a bounded leeway. A
            # token living longer than our policy allows was not made by us as configured.
            now = self._clock()
            exp = jose.check_exp(claims, now=now, leeway=policy.leeway)
            jose.check_nbf(claims, now=now, leeway=policy.leeway)
            iat = jose.check_iat(claims, now=now, leeway=policy.leeway)
            if exp - iat > policy.lifetime + policy.leeway:
                raise JoseError("lifetime longer than policy")
        except JoseError as e:
            raise InvalidToken(str(e)) from None
        return claims, kid, raw

    def _key_for(self, token: str, typ: str) -> tuple[str, jwt.PyJWK]:
        """Our public key named by the token's header, after the header's checks (J1-J3, J7,
        J8); headers naming one of our keys are remembered checked. An access token's key is
        one of tokens.algorithm's; an ID token's may also be an RS256 one (J11)."""
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
        key = (self._id_keys if typ == ID_TOKEN_TYPE else self._keys).get(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        if key.algorithm_name != header["alg"]:
            raise InvalidToken("alg is not the algorithm of the kid's key")
        if len(self._headers) < HEADER_CACHE_SIZE:  # bounded: a header can be spelled many ways
            self._headers[cache_key] = header
        return kid, key

    def _checked_header(self, segment: str, typ: str) -> dict[str, Any]:
        """The header of a token already matched by COMPACT_JWS, from its first segment."""
        try:
            header = jose.parse_header_segment(segment)
        except JoseError as e:
            raise InvalidToken(f"malformed header: {e}") from None
        try:
            algorithms = self._id_algorithms if typ == ID_TOKEN_TYPE else (self._algorithm,)
            jose.check_header(header, algorithms=algorithms, typ=typ,
                              allowed_members=ALLOWED_HEADER_MEMBERS)
        except JoseError as e:
            raise InvalidToken(str(e)) from None
        return header


def entry_size(token: str) -> int:
    """The estimated memory of a verified token's cache entry: the token string itself, and
    the claims, their JSON and the entry, which grow with the payload segment."""
    first_dot = token.find(".")
    payload = token.find(".", first_dot + 1) - first_dot - 1
    return STR_BYTES + len(token) + ENTRY_BYTES + (3 * payload) // 2


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
