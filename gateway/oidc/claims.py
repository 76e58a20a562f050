"""Which claims a scope releases, and the claims of our ID tokens (OIDC Core 2, 3.1.3.6, 5.4)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.jose import left_half_hash

# OIDC Core 5.4, limited to the claims our identities carry. `idp` and `sub` always go out.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_verified"),
    "profile": ("name", "picture"),
}
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
                   "sid", "idp")


def released_claims(profile: Mapping[str, Any], scope: Iterable[str]) -> dict[str, Any]:
    """The identity claims `scope` grants: `idp` always, email and profile claims by scope."""
    scope = set(scope)
    released: dict[str, Any] = {"idp": profile["idp"]} if "idp" in profile else {}
    for name, claims in SCOPE_CLAIMS.items():
        if name in scope:
            released.update({claim: profile[claim] for claim in claims if claim in profile})
    return released


def id_token_claims(*, issuer: str, client_id: str, sub: str, profile: Mapping[str, Any],
                    scope: Iterable[str], auth_time: int, sid: str, now: int, lifetime: int,
                    access_token: str, algorithm: str, nonce: str | None) -> dict[str, Any]:
    """OIDC Core 2: `aud` is the client; `azp` names it too; `nonce` echoed (SECURITY S3);
    `at_hash` binds the access token issued with it."""
    claims: dict[str, Any] = {
        **released_claims(profile, scope),
        "iss": issuer,
        "sub": sub,
        "aud": client_id,
        "azp": client_id,
        "iat": now,
        "exp": now + lifetime,
        "auth_time": auth_time,
        "at_hash": left_half_hash(access_token, algorithm),
        "sid": sid,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return claims
