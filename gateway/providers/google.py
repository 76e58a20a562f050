"""Sign in with Google: the OpenID Connect connector (providers/oidc.py) plus Google's own
rules, with `tornado.auth.GoogleOAuth2Mixin` building the authorization redirect.

Google's rules: its endpoints come from the configuration (its real ones by default: no
discovery fetch), its id_tokens are RS256 from either of its two issuer spellings, `hd` is
checked against `hosted_domains`, userinfo is asked per `fetch_userinfo`. The rest is the
generic connector's: `state`, PKCE S256 and `nonce` on the way out (RFC 9700 2.1.1, OIDC Core
3.1.2.1), the `code_verifier` on the code exchange, and the id_token's checks (SECURITY C3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jwt
import tornado.auth

from gateway.config import GoogleSettings, Settings
from gateway.errors import NotPermitted, UpstreamError, unverifiable_answer
from gateway.identity import Identity, checked_picture_url, text_claim
from gateway.providers import id_tokens
from gateway.providers.base import LoginStart, OAuth2Connector
from gateway.providers.oidc import OidcConnector
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream
from gateway.upstream.discovery import ProviderMetadata, StaticMetadata

NAME = "google"
DISPLAY_NAME = "Google"
ID_TOKEN_ALGORITHMS = ["RS256"]  # what Google signs with; anything else is refused


class GoogleConnector(OidcConnector):
    """Google's connector: the OpenID Connect connector (providers/oidc.py) with Google's
    endpoints from the configuration, its two issuer spellings, its `hd` rule and its userinfo
    policy; Tornado's GoogleOAuth2Mixin builds the authorization redirect."""

    def __init__(self, settings: GoogleSettings, upstream: Upstream, *, callback_url: str,
                 leeway: int, jwks_cache_seconds: float, jwks_refresh_cooldown: float,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(
            name=NAME, display_name=DISPLAY_NAME, issuer=settings.issuers[0],
            client_id=settings.client_id, client_secret=settings.client_secret,
            scopes=settings.scopes, upstream=upstream,
            discovery=StaticMetadata(google_metadata(settings)), callback_url=callback_url,
            leeway=leeway, jwks_cache_seconds=jwks_cache_seconds,
            jwks_refresh_cooldown=jwks_refresh_cooldown, clock=clock)
        self.settings = settings
        self._redirect = _GoogleRedirect(self, authorize_url=settings.authorize_url,
                                         callback_url=callback_url,
                                         client_id=settings.client_id, scopes=settings.scopes)

    async def begin(self, tx: LoginTransaction) -> LoginStart:
        return await self._redirect.begin(tx)

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        params = {
            "state": state,
            "nonce": tx.nonce,
            "code_challenge": tx.code_challenge,
            "code_challenge_method": "S256",
            "access_type": "online",  # we never need Google's refresh token
            "include_granted_scopes": "false",
        }
        domains = self.settings.hosted_domains
        if domains:
            # A hint for Google's account chooser only ("*": any Workspace account); the id
            # token's `hd` claim is what is checked (check_hosted_domain).
            params["hd"] = domains[0] if len(domains) == 1 else "*"
        return params

    def check_id_claims(self, id_claims: dict[str, Any]) -> None:
        check_hosted_domain(id_claims, self.settings.hosted_domains)

    def issuers(self, claims: dict[str, Any]) -> Collection[str]:
        return self.settings.issuers

    def needs_userinfo(self, id_claims: dict[str, Any]) -> bool:
        mode = self.settings.fetch_userinfo
        return mode == "always" or (mode == "auto" and not (
            id_claims.get("name") and id_claims.get("picture")))

    def identity(self, id_claims: dict[str, Any], userinfo: dict[str, Any]) -> Identity:
        return identity_from_google(id_claims, userinfo)


class _GoogleRedirect(OAuth2Connector, tornado.auth.GoogleOAuth2Mixin):
    """The authorization redirect, as Tornado's Google mixin builds it, with the connector's
    parameters (state, nonce, PKCE, hd)."""

    def __init__(self, connector: GoogleConnector, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._connector = connector

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        return self._connector.authorization_params(tx, state)


def build(settings: Settings, upstream: Upstream) -> GoogleConnector | None:
    google = settings.providers.google
    if google is None:
        return None
    return GoogleConnector(google, upstream, callback_url=settings.callback_url(NAME),
                           leeway=settings.tokens.leeway,
                           jwks_cache_seconds=settings.upstream.jwks_cache_seconds,
                           jwks_refresh_cooldown=settings.upstream.jwks_refresh_cooldown)


def google_metadata(settings: GoogleSettings) -> ProviderMetadata:
    """What Google's discovery document says (accounts.google.com/.well-known/
    openid-configuration), from the configured endpoints: RS256 id_tokens, and the client
    secret in the form (client_secret_post)."""
    return ProviderMetadata(
        issuer=settings.issuers[0], authorization_endpoint=settings.authorize_url,
        token_endpoint=settings.token_url, jwks_uri=settings.jwks_url,
        userinfo_endpoint=settings.userinfo_url,
        id_token_signing_algs=tuple(ID_TOKEN_ALGORITHMS),
        token_endpoint_auth_method="client_secret_post")


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def check_id_token(id_token: str, key: jwt.PyJWK, settings: GoogleSettings, nonce: str,
                   leeway: int, now: float) -> dict[str, Any]:
    """OIDC Core 3.1.3.7 with Google's issuers and RS256 (providers/id_tokens.py)."""
    return id_tokens.check_id_token(id_token, key, provider=NAME, issuers=settings.issuers,
                                    client_id=settings.client_id,
                                    algorithms=ID_TOKEN_ALGORITHMS, nonce=nonce,
                                    leeway=leeway, now=now)


def check_hosted_domain(id_claims: dict[str, Any], hosted_domains: Sequence[str]) -> None:
    """With `hosted_domains` set, only accounts of those Google Workspace (Cloud Identity)
    organizations pass: the signed id_token's `hd` claim says so, which a personal Google
    account never has, even with a verified address at that domain (one kept by a former
    employee, say). Google: "validate that the returned ID token has an hd claim value that
    matches what you expect"; the `hd` request parameter is only a hint."""
    if not hosted_domains:
        return
    hd = id_claims.get("hd")
    if not (isinstance(hd, str) and hd.lower() in (d.lower() for d in hosted_domains)):
        raise NotPermitted(f"google:{id_claims.get('sub')}")


def check_at_hash(id_claims: dict[str, Any], access_token: str) -> None:
    """OIDC Core 3.1.3.8: when present, at_hash binds the access token to the id_token."""
    id_tokens.check_at_hash(id_claims, access_token, "RS256", NAME)


def identity_from_google(id_claims: dict[str, Any], userinfo: dict[str, Any]) -> Identity:
    """Google's claims to our identity. Userinfo only fills gaps, and must be the same user."""
    sub = id_claims["sub"]
    if userinfo and userinfo.get("sub") != sub:
        raise _unverifiable("userinfo sub differs from id_token sub")  # OIDC Core 5.3.4
    merged = {**userinfo, **{k: v for k, v in id_claims.items() if v not in (None, "")}}
    email = merged.get("email")
    return Identity(
        idp=NAME,
        provider_subject=sub,
        email=email if isinstance(email, str) and email else None,
        email_verified=id_tokens.claimed_true(merged.get("email_verified")),
        name=text_claim(merged.get("name")),
        picture=checked_picture_url(merged.get("picture")),
    )


def _unverifiable(detail: str) -> UpstreamError:
    return unverifiable_answer(NAME, detail)
