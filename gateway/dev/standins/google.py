"""A local stand-in for Google's OpenID Connect provider, speaking Google's wire protocol.

Endpoints, as Google's (paths kept so that a configuration differs only in the host):
- `GET /o/oauth2/v2/auth`: the authorization endpoint. Unknown `client_id` or a `redirect_uri`
  that is not registered is an error page (never a redirect), as at Google. Otherwise an
  account chooser; the choice redirects to `redirect_uri` with `code`, `state`, `scope`.
- `POST /token`: form-encoded, client authenticated by `client_secret_post` or
  `client_secret_basic`; checks the code (single use, expiry, client, `redirect_uri`) and the
  PKCE verifier; answers `access_token`, `expires_in`, `scope`, `token_type`, `id_token`
  (RS256, with `nonce`, `at_hash`, `azp`). Errors use Google's `{"error", "error_description"}`.
- `GET /v1/userinfo`: the OIDC userinfo for a Bearer access token.
- `GET /oauth2/v3/certs`: the JWKS.

Tests steer it through `faults` (per endpoint), `id_token_overrides` and
`sign_id_token_with_foreign_key`, and read `token_requests` to see what the gateway sent.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
    OpenIdStandIn,
    UserinfoHandler,
    at_hash,
)

__all__ = ["DEV_USERS", "Fault", "GoogleAccount", "GoogleStandIn", "dev_provider"]

CODE_LIFETIME = 300  # seconds; Google's codes live a few minutes
ACCESS_TOKEN_LIFETIME = 3599
ID_TOKEN_LIFETIME = 3600
SUPPORTED_SCOPES = ("openid", "email", "profile")


@dataclass(frozen=True)
class GoogleAccount:
    """A test account as Google describes it: a numeric subject and a picture."""

    key: str
    sub: str
    name: str
    given_name: str
    family_name: str
    email: str | None
    email_verified: bool
    avatar: Avatar
    # The Google Workspace organization's domain (the `hd` claim); None for a personal account.
    hosted_domain: str | None = None


def _account(user: DevUser, colour: str, hosted_domain: str | None) -> GoogleAccount:
    digits = str(int.from_bytes(hashlib.sha256(b"google:" + user.key.encode()).digest()[:9]))
    sub = ("1" + digits + "0" * 20)[:21]  # Google's subjects are 21-digit strings
    return GoogleAccount(user.key, sub, user.name, user.given_name, user.family_name,
                         user.email, user.email_verified, make_avatar("google", user, colour),
                         hosted_domain)


# Ada's account belongs to the example.com Workspace organization; Grace's is a personal
# Google account with her verified example.com address; Alan's is personal, his email unverified.
DEV_USERS: tuple[GoogleAccount, ...] = tuple(
    _account(user, colour, hosted_domain)
    for user, colour, hosted_domain in zip(DEV_ACCOUNTS, ("#1a73e8", "#188038", "#b06000"),
                                           ("example.com", None, None), strict=True)
)


# Google's words for a code exchange that fails.
CODE_REFUSALS = CodeRefusals(code=("invalid_grant", "Bad Request"),
                             redirect_uri=("redirect_uri_mismatch", "Bad Request"),
                             verifier=("invalid_grant", "Invalid code verifier."),
                             missing_verifier=("invalid_grant", "Missing code verifier."))


@dataclass
class GoogleStandIn(OpenIdStandIn[GoogleAccount]):
    base_url: str
    client_id: str
    client_secret: str
    redirect_uris: Sequence[str]
    accounts: Sequence[GoogleAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls.
    faults: dict[str, Fault] = field(default_factory=dict)
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    sign_id_token_with_foreign_key: bool = False
    token_requests: list[dict[str, str]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    brand: ClassVar[str] = "Google"
    code_lifetime: ClassVar[int] = CODE_LIFETIME
    userinfo_challenge: ClassVar[str] = ('Bearer realm="https://accounts.google.com/", '
                                         'error="invalid_token"')
    jwks_cache_control: ClassVar[str | None] = "public, max-age=21600"

    def __post_init__(self) -> None:
        self.start_openid()

    def new_kid(self) -> str:
        return secrets.token_hex(20)  # Google's kids are 40 hex digits

    def new_code(self) -> str:
        return "4/0A" + secrets.token_urlsafe(32)

    # Endpoints, as the gateway's configuration names them.
    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def userinfo_url(self) -> str:
        return f"{self.base_url}/v1/userinfo"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/oauth2/v3/certs"

    def make_app(self) -> tornado.web.Application:
        return make_standin_app(self, [
            (r"/o/oauth2/v2/auth", AuthorizeHandler),
            (r"/o/oauth2/v2/auth/choose", ChooseAccountHandler),
            (r"/token", OAuth2TokenHandler),
            (r"/v1/userinfo", UserinfoHandler),
            (r"/oauth2/v3/certs", JwksHandler),
        ])

    # Protocol steps, called by the handlers.

    def check_authorization_request(self, params: dict[str, str | None]
                                    ) -> AuthorizationRequest:
        if params.get("client_id") != self.client_id:
            raise ProtocolError("invalid_client", "The OAuth client was not found.", 401)
        redirect_uri = params.get("redirect_uri")
        if redirect_uri not in self.redirect_uris:
            raise ProtocolError("redirect_uri_mismatch",
                                "The redirect URI in the request does not match the ones "
                                "authorized for the OAuth client.")
        if params.get("response_type") != "code":
            raise ProtocolError("unsupported_response_type", "Invalid response_type.")
        scope = tuple((params.get("scope") or "").split())
        if not scope or any(s not in SUPPORTED_SCOPES for s in scope):
            raise ProtocolError("invalid_scope", "Some requested scopes were invalid.")
        method = params.get("code_challenge_method") or "plain"
        challenge = params.get("code_challenge")
        if challenge is not None and method not in ("S256", "plain"):
            raise ProtocolError("invalid_request", "Invalid code_challenge_method.")
        assert redirect_uri is not None
        return AuthorizationRequest(self.client_id, redirect_uri, scope, params.get("state"),
                                    challenge, method, params.get("nonce"))

    def approved(self, request: AuthorizationRequest, account: GoogleAccount
                 ) -> dict[str, str]:
        return {"code": self.approve(request, account), "scope": " ".join(request.scope),
                "authuser": "0", "prompt": "consent"}

    def exchange_code(self, form: dict[str, str | None], authorization: str | None
                      ) -> dict[str, Any]:
        self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise ProtocolError("unsupported_grant_type",
                                f"Invalid grant_type: {form.get('grant_type') or ''}")
        grant = self.codes.redeem(form, CODE_REFUSALS)
        access_token = self.issue_access_token("ya29." + secrets.token_urlsafe(64),
                                               grant.account, ACCESS_TOKEN_LIFETIME)
        answer: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "scope": " ".join(grant.request.scope),
            "token_type": "Bearer",
        }
        if "openid" in grant.request.scope:
            answer["id_token"] = self.id_token(grant, access_token)
        return answer

    def id_token(self, grant: Grant[GoogleAccount], access_token: str) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "azp": grant.request.client_id,
            "aud": grant.request.client_id,
            "sub": grant.account.sub,
            "at_hash": at_hash(access_token),
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
            **profile_claims(grant.account, grant.request.scope, self.base_url),
        }
        return self.signed_id_token(claims, grant.request.nonce)

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        account = self.bearer_account(
            authorization, ProtocolError("invalid_request", "Invalid Credentials", 401))
        return {"sub": account.sub, **profile_claims(account, SUPPORTED_SCOPES, self.base_url)}

    def _authenticate_client(self, form: dict[str, str | None],
                             authorization: str | None) -> None:
        basic = basic_credentials(authorization)
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if client_id != self.client_id or not secrets_equal(client_secret, self.client_secret):
            raise ProtocolError("invalid_client", "Unauthorized", 401)


def profile_claims(account: GoogleAccount, scope: Sequence[str], base_url: str
                   ) -> dict[str, Any]:
    """The claims Google adds for the `email` and `profile` scopes."""
    claims: dict[str, Any] = {}
    if "email" in scope and account.email:
        claims["email"] = account.email
        claims["email_verified"] = account.email_verified
    if "profile" in scope:
        claims.update(name=account.name, picture=account.avatar.url(base_url),
                      given_name=account.given_name, family_name=account.family_name)
    if account.hosted_domain is not None:
        claims["hd"] = account.hosted_domain  # with any scope, for an organization's account
    return claims


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[GoogleStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and the gateway's `providers.google` section for it."""
    client_id = f"dev-{secrets.token_hex(8)}.apps.googleusercontent.com"
    client_secret = "GOCSPX-" + secrets.token_urlsafe(24)
    standin = GoogleStandIn(base_url, client_id, client_secret,
                            [f"{gateway_issuer}/callback/google"])
    section = {
        "client_id": client_id,
        "client_secret": client_secret,
        "authorize_url": standin.authorize_url,
        "token_url": standin.token_url,
        "userinfo_url": standin.userinfo_url,
        "jwks_url": standin.jwks_url,
        "issuers": [standin.issuer],
    }
    return standin, section
