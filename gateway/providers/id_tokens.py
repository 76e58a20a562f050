"""A provider's OpenID Connect ID token, verified by our own checks (OIDC Core 3.1.3.7).

Shared by every OpenID Connect connector (Google, the generic one, Microsoft, Apple): the header
parsed strictly, an algorithm the connector accepts (asymmetric only: never `none` nor HMAC,
whose "key" would be our client secret), the key from the provider's JWKS by `kid`, then the
signature, then each claim. Each connector gives its own issuers, client id and algorithms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import Any

import jwt

from gateway import jose
from gateway.errors import unverifiable_answer
from gateway.jose import JoseError
from gateway.textcompare import same_text
from gateway.upstream.provider_keys import UpstreamKeys

# The JWS algorithms an ID token may be signed with here (RFC 7518 3.1, RFC 8037): public-key
# signatures only. HS256 and friends would be keyed by our client secret, `none` by nothing.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA")
MAX_ID_TOKEN_LENGTH = 16384

# Where the issuers come from: a fixed list, or a function of the (signed) claims, for a
# provider whose issuer names the tenant the token is for (Microsoft's `{tenantid}`).
Issuers = Collection[str] | Callable[[dict[str, Any]], Collection[str]]


async def verified_id_token(id_token: str, keys: UpstreamKeys, *, provider: str,
                            issuers: Issuers, client_id: str, algorithms: Collection[str],
                            nonce: str, leeway: int, now: float,
                            max_length: int = MAX_ID_TOKEN_LENGTH) -> dict[str, Any]:
    """The claims of an ID token that passed every check, or an UpstreamError (502)."""
    try:
        header = jose.unverified_header(id_token, max_length=max_length)
    except JoseError:
        raise unverifiable_answer(provider, "id_token header is malformed") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or header.get("alg") not in algorithms:
        raise unverifiable_answer(provider, "id_token header lacks kid or uses another alg")
    key = await keys.key_for(kid)
    return check_id_token(id_token, key, provider=provider, issuers=issuers,
                          client_id=client_id, algorithms=algorithms, nonce=nonce,
                          leeway=leeway, now=now)


def check_id_token(id_token: str, key: jwt.PyJWK, *, provider: str, issuers: Issuers,
                   client_id: str, algorithms: Collection[str], nonce: str, leeway: int,
                   now: float) -> dict[str, Any]:
    """OIDC Core 3.1.3.7: signature, `iss`, `aud`, `azp`, `exp`, `iat`, then our `nonce`.

    `id_token` has passed `unverified_header`. The signature is checked first, with the key's
    own algorithm (which must be one of `algorithms`) and with `cryptography` directly
    (PyJWT's decode checks each base64 character in Python: ~55 us of a login); every claim
    check after it is ours, here.
    """
    accepted = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS]
    if key.algorithm_name not in accepted:
        raise unverifiable_answer(provider, "the provider's key is for another alg")
    try:
        jose.check_signature(id_token, key, low_s_only=False)
        claims = jose.unverified_payload(id_token)
        jose.check_required(claims, ("iss", "aud", "exp", "iat", "sub"))
        jose.check_iss(claims, issuers(claims) if callable(issuers) else issuers)
        jose.check_aud(claims, (client_id,))
        jose.check_azp(claims, client_id)
        # RFC 7519 4.1.4-4.1.6 with bounded leeway; a date that is not a number is refused.
        jose.check_exp(claims, now=now, leeway=leeway)
        jose.check_iat(claims, now=now, leeway=leeway)
        jose.check_nbf(claims, now=now, leeway=leeway)
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not same_text(token_nonce, nonce):
            raise JoseError("nonce does not match the login transaction")
        jose.check_text(claims, "sub")
    except JoseError as e:
        raise unverifiable_answer(provider, f"id_token refused: {e}") from None
    return claims


def check_at_hash(id_claims: dict[str, Any], access_token: str | None, algorithm: str,
                  provider: str) -> None:
    """OIDC Core 3.1.3.8: when present, at_hash binds the access token to the id_token (and
    without an access token, as Apple's answer may lack one, no at_hash passes)."""
    at_hash = id_claims.get("at_hash")
    if at_hash is None:
        return
    if access_token is None or not isinstance(at_hash, str) or not same_text(
            at_hash, left_half_hash(access_token, algorithm)):
        raise unverifiable_answer(provider, "id_token at_hash does not match the access token")


def left_half_hash(value: str, algorithm: str) -> str:
    """`at_hash` for any of ASYMMETRIC_ALGORITHMS: the hash its number names (SHA-512 for
    EdDSA with Ed25519), left half, base64url (jose.left_half_hash has the two we sign with)."""
    if algorithm.endswith(("384", "512")):
        digest = (hashlib.sha384 if algorithm.endswith("384") else hashlib.sha512)(
            value.encode()).digest()
        return jose.base64url(digest[: len(digest) // 2])
    return jose.left_half_hash(value, algorithm)


def claimed_true(value: Any) -> bool:
    """A boolean claim such as `email_verified`: JSON true, or the string "true" that some
    providers send (Apple, older Azure AD, some Keycloak mappers). Anything else is false."""
    return value is True or (isinstance(value, str) and value.lower() == "true")
