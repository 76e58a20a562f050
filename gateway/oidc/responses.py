"""The token endpoint's successful answer (RFC 6749 5.1, OIDC Core 3.1.3.3)."""

from __future__ import annotations

from typing import Any

from gateway.oidc.claims import id_token_claims, released_claims
from gateway.oidc.grants import Family
from gateway.tokens import ID_TOKEN_TYPE, TokenIssuer


def token_response(tokens: TokenIssuer, family: Family, scope: tuple[str, ...], *,
                   refresh_token: str | None, nonce: str | None,
                   id_token_algorithm: str) -> dict[str, Any]:
    """An access token (the same `at+jwt` as the cookie flow, `aud` = the client's audience,
    with `client_id`, `scope`, `sid` and the family id `fid` for revocation), an ID token
    (`typ: JWT`, never accepted as an access token: SECURITY J5) signed with the client's
    `id_token_signed_response_alg` (RS256 unless it chose tokens.algorithm: SECURITY J11) and
    the refresh token."""
    access_token = tokens.issue(
        family.sub, family.audience,
        {**released_claims(family.claims, scope), "client_id": family.client_id,
         "scope": " ".join(scope), "sid": family.sid, "fid": family.family_id},
        auth_time=family.auth_time)
    lifetime = tokens.policy.lifetime
    id_token = tokens.sign(id_token_claims(
        issuer=tokens.policy.issuer, client_id=family.client_id, sub=family.sub,
        profile=family.claims, scope=scope, auth_time=family.auth_time, sid=family.sid,
        now=int(tokens.clock()), lifetime=lifetime, access_token=access_token,
        algorithm=id_token_algorithm, nonce=nonce), ID_TOKEN_TYPE, id_token_algorithm)
    answer: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "id_token": id_token,
        "scope": " ".join(scope),
    }
    if refresh_token is not None:
        answer["refresh_token"] = refresh_token
    return answer
