"""Sign in with Google: OpenID Connect over `tornado.auth.GoogleOAuth2Mixin`.

The mixin builds the authorization redirect. What it lacks we add: `state`, PKCE S256 and
`nonce` on the way out (RFC 9700 2.1.1, OIDC Core 3.1.2.1), the `code_verifier` and our timeouts
on the code exchange, and verification of the returned `id_token` (SECURITY C3).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import jwt
import tornado.auth

from gateway.config import GoogleSettings, Settings
from gateway.errors import NotPermitted, UpstreamError, unverifiable_answer
from gateway.identity import Identity, checked_picture_url, text_claim
from gateway.providers import id_tokens
from gateway.providers.base import CallbackParameters, OAuth2Connector
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream
from gateway.upstream.provider_keys import UpstreamKeys

NAME = "google"
DISPLAY_NAME = "Google"
ID_TOKEN_ALGORITHMS = ["RS256"]  # what Google signs with; anything else is refused


class GoogleConnector(OAuth2Connector, tornado.auth.GoogleOAuth2Mixin):
    """Google's connector: its settings and calls, built once in app.py. The mixin builds the
    authorization redirect (OAuth2Connector.begin); the code exchange is ours (with PKCE)."""

    name = NAME
    display_name = DISPLAY_NAME

    def __init__(self, settings: GoogleSettings, upstream: Upstream, keys: UpstreamKeys,
                 *, callback_url: str, leeway: int,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(authorize_url=settings.authorize_url, callback_url=callback_url,
                         client_id=settings.client_id, scopes=settings.scopes)
        self.settings = settings
        self.upstream = upstream
        self.keys = keys
        self.leeway = leeway
        self.clock = clock

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

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        assert params.code is not None
        tokens = await self.exchange_code(params.code, tx.code_verifier)
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise _unverifiable("token response lacks id_token or access_token")
        id_claims = await self.verified_id_token(id_token, tx.nonce)
        check_at_hash(id_claims, access_token)
        check_hosted_domain(id_claims, self.settings.hosted_domains)
        userinfo: dict[str, Any] = {}
        if self.needs_userinfo(id_claims):
            userinfo = await self.userinfo(access_token)
        return identity_from_google(id_claims, userinfo)

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        """The mixin's code exchange, plus the PKCE `code_verifier`, our timeouts and errors.

        Never retried: an authorization code is single use.
        """
        settings = self.settings
        body = urllib.parse.urlencode({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.callback_url,
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.reveal(),
            "code_verifier": code_verifier,
        })
        request = self.upstream.request(
            settings.token_url, method="POST", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return await self.upstream.fetch_json(request, provider=NAME, what="token")

    async def verified_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        return await id_tokens.verified_id_token(
            id_token, self.keys, provider=NAME, issuers=self.settings.issuers,
            client_id=self.settings.client_id, algorithms=ID_TOKEN_ALGORITHMS, nonce=nonce,
            leeway=self.leeway, now=self.clock())

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        request = self.upstream.request(
            self.settings.userinfo_url, headers={"Authorization": f"Bearer {access_token}"}
        )
        return await self.upstream.fetch_json(request, provider=NAME, what="userinfo")

    def needs_userinfo(self, id_claims: dict[str, Any]) -> bool:
        mode = self.settings.fetch_userinfo
        return mode == "always" or (mode == "auto" and not (
            id_claims.get("name") and id_claims.get("picture")))


def build(settings: Settings, upstream: Upstream) -> GoogleConnector | None:
    google = settings.providers.google
    if google is None:
        return None
    keys = UpstreamKeys(
        upstream, provider=NAME, jwks_url=google.jwks_url,
        cache_seconds=settings.upstream.jwks_cache_seconds,
        refresh_cooldown=settings.upstream.jwks_refresh_cooldown,
    )
    return GoogleConnector(google, upstream, keys, callback_url=settings.callback_url(NAME),
                           leeway=settings.tokens.leeway)


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
