"""A local stand-in for a generic OpenID provider (OpenID Connect Core and Discovery 1.0), for
the `[providers.oidc.<name>]` connector.

Endpoints, at the stand-in's issuer (its base URL):
- `GET /.well-known/openid-configuration`: the discovery document.
- `GET /authorize`: the authorization endpoint. An unknown `client_id` or a `redirect_uri` that
  is not registered is an error page (never a redirect). PKCE S256 is required, as a careful
  provider requires it. Otherwise an account chooser; the choice redirects to `redirect_uri`
  with `code`, `state` and `iss` (RFC 9207).
- `POST /token`: the client authenticated by `client_secret_basic` or `client_secret_post`
  (whichever discovery lists: `token_endpoint_auth_methods`); code single use, bound to its
  client and `redirect_uri`, PKCE checked; answers `access_token`, `token_type`, `expires_in`,
  `id_token` (RS256 by default, or `signing_alg` ES256; `nonce`, `at_hash`, `azp`).
- `GET /userinfo`: the standard claims for a Bearer access token.
- `GET /jwks`: the JWKS.

Test accounts: Ada (verified email, every claim in the id_token), Grace (her `email_verified`
the string "true", as some providers send it), Alan (`email_verified` the string "false"), and
one account per trap (SECURITY C9): Mallory's userinfo names another `sub`; Oscar's id_token
is for two audiences without `azp`. `discovery_issuer` makes the discovery document name
another issuer. Tests also steer it through `faults` (keyed "discovery", "authorize", "token",
"userinfo", "jwks"), `id_token_overrides`, `sign_id_token_with_foreign_key`, `signing_alg`,
`claims_in_id_token`, `forged_alg`, `endpoint_overrides`, and read `token_requests` and `calls`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jwt
import tornado.web

from gateway.dev.standins.common import (
    DEV_ACCOUNTS,
    AuthorizationRequest,
    Avatar,
    CodeRefusals,
    DevUser,
    Fault,
    Grant,
    OAuth2TokenHandler,
    ProtocolError,
    basic_credentials,
    make_avatar,
    make_standin_app,
    secrets_equal,
)
from gateway.dev.standins.oidc_common import (
    AuthorizeHandler,
    ChooseAccountHandler,
    JwksHandler,
    OpenIdHandler,
    OpenIdStandIn,
    UserinfoHandler,
    at_hash,
)

__all__ = ["DEV_USERS", "Fault", "OidcAccount", "OidcStandIn", "dev_provider"]

CODE_LIFETIME = 120
ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 600
SUPPORTED_SCOPES = ("openid", "email", "profile")
DEV_NAME = "dev"  # the provider's name in development mode: /login/dev
DEV_DISPLAY_NAME = "Dev SSO"
# The traps of SECURITY C9 an account can spring.
USERINFO_OTHER_SUB = "userinfo_other_sub"
AUDIENCES_WITHOUT_AZP = "audiences_without_azp"


@dataclass(frozen=True)
class OidcAccount:
    key: str
    sub: str
    name: str
    given_name: str
    family_name: str
    email: str | None
    email_verified: bool | str  # some providers send "true" / "false"
    avatar: Avatar
    trap: str | None = None


def _account(user: DevUser, colour: str, email_verified: bool | str,
             trap: str | None = None) -> OidcAccount:
    sub = hashlib.sha256(b"oidc:" + user.key.encode()).hexdigest()[:24]  # opaque, as most are
    return OidcAccount(user.key, sub, user.name, user.given_name, user.family_name,
                       user.email, email_verified, make_avatar("oidc", user, colour), trap)


_ada, _grace, _alan = DEV_ACCOUNTS
DEV_USERS: tuple[OidcAccount, ...] = (
    _account(_ada, "#4338ca", True),
    _account(_grace, "#0f766e", "true"),
    _account(_alan, "#9a3412", "false"),
    _account(DevUser("mallory", "Mallory (userinfo names another user)", "Mallory", "Userinfo",
                     "mallory@example.com", True, "mallory"), "#6b21a8", True,
             USERINFO_OTHER_SUB),
    _account(DevUser("oscar", "Oscar (token for two apps, no azp)", "Oscar", "Audiences",
                     "oscar@example.com", True, "oscar"), "#854d0e", True,
             AUDIENCES_WITHOUT_AZP),
)


CODE_REFUSALS = CodeRefusals(code=("invalid_grant", "The code is invalid or expired."),
                             redirect_uri=("invalid_grant", "redirect_uri does not match."),
                             verifier=("invalid_grant", "PKCE verification failed."))


@dataclass
class OidcStandIn(OpenIdStandIn[OidcAccount]):
    base_url: str
    client_id: str
    client_secret: str
    redirect_uris: Sequence[str]
    accounts: Sequence[OidcAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls.
    faults: dict[str, Fault] = field(default_factory=dict)
    discovery_issuer: str | None = None  # the trap: a document naming another issuer
    endpoint_overrides: dict[str, str] = field(default_factory=dict)  # discovery's URLs
    token_endpoint_auth_methods: tuple[str, ...] = ("client_secret_basic",
                                                    "client_secret_post")
    signing_alg: str = "RS256"  # or ES256
    advertised_algs: tuple[str, ...] | None = None  # what discovery lists; signing_alg if None
    claims_in_id_token: bool = True  # False: only sub and the protocol claims, profile in userinfo
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    sign_id_token_with_foreign_key: bool = False
    # "HS256": the id_token signed with HMAC keyed by our client secret; "none": unsigned.
    forged_alg: str | None = None
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_authorizations: list[str | None] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    brand: ClassVar[str] = DEV_DISPLAY_NAME  # on its pages
    code_lifetime: ClassVar[int] = CODE_LIFETIME
    sends_iss: ClassVar[bool] = True  # RFC 9207's `iss` in the authorization response

    def __post_init__(self) -> None:
        self.start_openid()

    def make_app(self) -> tornado.web.Application:
        return make_standin_app(self, [
            (r"/\.well-known/openid-configuration", DiscoveryHandler),
            (r"/authorize", AuthorizeHandler),
            (r"/authorize/choose", ChooseAccountHandler),
            (r"/token", OAuth2TokenHandler),
            (r"/userinfo", UserinfoHandler),
            (r"/jwks", JwksHandler),
        ])

    # Protocol steps, called by the handlers.

    def discovery(self) -> dict[str, Any]:
        base = self.base_url
        return {**self._discovery(base), **self.endpoint_overrides}

    def _discovery(self, base: str) -> dict[str, Any]:
        return {
            "issuer": self.discovery_issuer or self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "scopes_supported": list(SUPPORTED_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(self.advertised_algs
                                                          or (self.signing_alg,)),
            "token_endpoint_auth_methods_supported": list(self.token_endpoint_auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "azp", "at_hash",
                                 "email", "email_verified", "name", "given_name",
                                 "family_name", "picture"],
            "authorization_response_iss_parameter_supported": True,
        }

    def check_authorization_request(self, params: dict[str, str | None]
                                    ) -> AuthorizationRequest:
        if params.get("client_id") != self.client_id:
            raise ProtocolError("invalid_client", "Unknown client.", 401)
        redirect_uri = params.get("redirect_uri")
        if redirect_uri not in self.redirect_uris:
            raise ProtocolError("invalid_redirect_uri", "The redirect_uri is not registered.")
        if params.get("response_type") != "code":
            raise ProtocolError("unsupported_response_type", "Only code is supported.")
        scope = tuple((params.get("scope") or "").split())
        if "openid" not in scope or any(s not in SUPPORTED_SCOPES for s in scope):
            raise ProtocolError("invalid_scope", "openid is required; unknown scope.")
        challenge = params.get("code_challenge")
        if not challenge or params.get("code_challenge_method") != "S256":
            raise ProtocolError("invalid_request", "PKCE with S256 is required.")
        assert redirect_uri is not None
        return AuthorizationRequest(self.client_id, redirect_uri, scope, params.get("state"),
                                    challenge, "S256", params.get("nonce"))

    def exchange_code(self, form: dict[str, str | None], authorization: str | None
                      ) -> dict[str, Any]:
        self.token_authorizations.append(authorization)
        self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise ProtocolError("unsupported_grant_type", "Only authorization_code.")
        grant = self.codes.redeem(form, CODE_REFUSALS)
        access_token = self.issue_access_token(secrets.token_urlsafe(32), grant.account,
                                               ACCESS_TOKEN_LIFETIME)
        return {"access_token": access_token, "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_LIFETIME, "scope": " ".join(grant.request.scope),
                "id_token": self.id_token(grant, access_token)}

    def id_token(self, grant: Grant[OidcAccount], access_token: str) -> str:
        now = int(self.clock())
        account = grant.account
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": account.sub, "aud": grant.request.client_id,
            "azp": grant.request.client_id, "iat": now, "exp": now + ID_TOKEN_LIFETIME,
            "at_hash": at_hash(access_token),
        }
        if account.trap == AUDIENCES_WITHOUT_AZP:
            claims["aud"] = [grant.request.client_id, "another-app"]
            del claims["azp"]
        if self.claims_in_id_token and account.trap != USERINFO_OTHER_SUB:
            # Mallory's claims are only in userinfo: the gateway must ask it.
            claims.update(profile_claims(account, grant.request.scope, self.base_url))
        return self.signed_id_token(claims, grant.request.nonce)

    def encode_id_token(self, claims: dict[str, Any]) -> str:
        """As the provider signs it, or as a forger would (`forged_alg`)."""
        if self.forged_alg == "HS256":
            return jwt.encode(claims, self.client_secret, algorithm="HS256",
                              headers={"kid": self.kid, "typ": "JWT"})
        if self.forged_alg == "none":
            return jwt.encode(claims, "", algorithm="none",
                              headers={"kid": self.kid, "typ": "JWT"})
        return super().encode_id_token(claims)

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        account = self.bearer_account(
            authorization, ProtocolError("invalid_token", "The access token is invalid.", 401))
        sub = account.sub
        if account.trap == USERINFO_OTHER_SUB:
            sub = DEV_USERS[0].sub  # Ada's: a userinfo that would sign Mallory in as Ada
        return {"sub": sub, **profile_claims(account, SUPPORTED_SCOPES, self.base_url)}

    def _authenticate_client(self, form: dict[str, str | None],
                             authorization: str | None) -> None:
        basic = basic_credentials(authorization)
        client_id: str | None
        client_secret: str | None
        if basic is not None and "client_secret_basic" in self.token_endpoint_auth_methods:
            client_id, client_secret = basic
        elif basic is None and "client_secret_post" in self.token_endpoint_auth_methods:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        else:
            raise ProtocolError("invalid_client", "Client authentication method not allowed.",
                                401)
        if client_id != self.client_id or not secrets_equal(client_secret, self.client_secret):
            raise ProtocolError("invalid_client", "Client authentication failed.", 401)


def profile_claims(account: OidcAccount, scope: Sequence[str], base_url: str
                   ) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "email" in scope and account.email:
        claims.update(email=account.email, email_verified=account.email_verified)
    if "profile" in scope:
        claims.update(name=account.name, given_name=account.given_name,
                      family_name=account.family_name, picture=account.avatar.url(base_url))
    return claims


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[OidcStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and its `providers.oidc.dev` section."""
    client_id = f"gateway-{secrets.token_hex(6)}"
    client_secret = secrets.token_urlsafe(32)
    standin = OidcStandIn(base_url, client_id, client_secret,
                          [f"{gateway_issuer}/callback/{DEV_NAME}"])
    section = {"display_name": DEV_DISPLAY_NAME, "issuer": standin.issuer,
               "client_id": client_id, "client_secret": client_secret}
    return standin, section


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above (the others in oidc_common.py)


class DiscoveryHandler(OpenIdHandler):
    provider: OidcStandIn
    endpoint = "discovery"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        self.set_header("Cache-Control", "public, max-age=3600")
        self.write_json(self.provider.discovery())
