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

import base64
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import tornado.web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.dev.standins.common import (
    AVATAR_ROUTE,
    DEV_ACCOUNTS,
    AccountChooserHandler,
    Avatar,
    AvatarHandler,
    DevUser,
    Fault,
    OAuth2TokenHandler,
    PendingRequests,
    ProtocolError,
    basic_credentials,
    make_avatar,
    make_standin_app,
    pkce_matches,
    secrets_equal,
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


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for."""

    request: AuthorizationRequest
    account: GoogleAccount
    expires: float



@dataclass
class GoogleStandIn:
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

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._foreign_key: rsa.RSAPrivateKey | None = None
        self.kid = secrets.token_hex(20)  # Google's kids are 40 hex digits
        self.pending = PendingRequests()
        self._codes: dict[str, Grant] = {}
        self._access_tokens: dict[str, tuple[GoogleAccount, float]] = {}

    # Endpoints, as the gateway's configuration names them.
    @property
    def issuer(self) -> str:
        return self.base_url

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
        kwargs = {"provider": self}
        return make_standin_app([
            (r"/o/oauth2/v2/auth", AuthorizeHandler, kwargs),
            (r"/o/oauth2/v2/auth/choose", ChooseAccountHandler, kwargs),
            (r"/token", TokenHandler, kwargs),
            (r"/v1/userinfo", UserinfoHandler, kwargs),
            (r"/oauth2/v3/certs", JwksHandler, kwargs),
            (AVATAR_ROUTE, AvatarHandler, kwargs),
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
                                    params.get("nonce"), challenge, method)

    def approve(self, request: AuthorizationRequest, account: GoogleAccount) -> str:
        code = "4/0A" + secrets.token_urlsafe(32)
        self._codes[code] = Grant(request, account, self.clock() + CODE_LIFETIME)
        return code

    def exchange_code(self, form: dict[str, str | None], authorization: str | None
                      ) -> dict[str, Any]:
        self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise ProtocolError("unsupported_grant_type",
                                f"Invalid grant_type: {form.get('grant_type') or ''}")
        code = form.get("code")
        grant = self._codes.pop(code, None) if code else None  # single use
        if grant is None or grant.expires < self.clock():
            raise ProtocolError("invalid_grant", "Bad Request")
        if form.get("redirect_uri") != grant.request.redirect_uri:
            raise ProtocolError("redirect_uri_mismatch", "Bad Request")
        if grant.request.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                raise ProtocolError("invalid_grant", "Missing code verifier.")
            if not pkce_matches(grant.request.code_challenge,
                                grant.request.code_challenge_method, verifier):
                raise ProtocolError("invalid_grant", "Invalid code verifier.")
        access_token = "ya29." + secrets.token_urlsafe(64)
        self._access_tokens[access_token] = (grant.account,
                                             self.clock() + ACCESS_TOKEN_LIFETIME)
        answer: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "scope": " ".join(grant.request.scope),
            "token_type": "Bearer",
        }
        if "openid" in grant.request.scope:
            answer["id_token"] = self.id_token(grant, access_token)
        return answer

    def id_token(self, grant: Grant, access_token: str) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "azp": grant.request.client_id,
            "aud": grant.request.client_id,
            "sub": grant.account.sub,
            "at_hash": at_hash(access_token),
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
        }
        if grant.request.nonce is not None:
            claims["nonce"] = grant.request.nonce
        claims.update(profile_claims(grant.account, grant.request.scope, self.base_url))
        for name, value in self.id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = self._signing_key()
        return jwt.encode(claims, key, algorithm="RS256",
                          headers={"kid": self.kid, "typ": "JWT"})

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        entry = self._access_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or entry[1] < self.clock():
            raise ProtocolError("invalid_request", "Invalid Credentials", 401)
        account = entry[0]
        return {"sub": account.sub, **profile_claims(account, SUPPORTED_SCOPES, self.base_url)}

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def rotate_signing_key(self) -> None:
        """Sign with a new key under a new kid and publish only that one, as after a rotation."""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(20)

    def account(self, key: str | None) -> GoogleAccount | None:
        return next((a for a in self.accounts if a.key == key), None)

    def _authenticate_client(self, form: dict[str, str | None],
                             authorization: str | None) -> None:
        basic = basic_credentials(authorization)
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if client_id != self.client_id or not secrets_equal(client_secret, self.client_secret):
            raise ProtocolError("invalid_client", "Unauthorized", 401)

    def _signing_key(self) -> rsa.RSAPrivateKey:
        if not self.sign_id_token_with_foreign_key:
            return self._key
        if self._foreign_key is None:
            self._foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._foreign_key


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


def at_hash(access_token: str) -> str:
    """OIDC Core 3.1.3.6: the left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


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


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class GoogleHandler(AccountChooserHandler):
    provider: GoogleStandIn
    brand = "Google"

    def account_detail(self, account: GoogleAccount) -> str:
        return account.email or "no email"

    def error_page(self, error: ProtocolError) -> None:
        self.set_status(error.status)
        self.render_page("provider_error.html", brand="Google", error=error.error,
                         description=error.description)


class AuthorizeHandler(GoogleHandler):
    endpoint = "authorize"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        request = self.checked_request()
        if request is None:
            return
        self.show_chooser(request, app=request.client_id, action="/o/oauth2/v2/auth/choose")

    def checked_request(self) -> AuthorizationRequest | None:
        """The authorization request of the query, or None once an error page is written."""
        names = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
                 "code_challenge", "code_challenge_method")
        try:
            return self.provider.check_authorization_request(
                {name: self.query_argument(name) for name in names})
        except ProtocolError as e:
            self.error_page(e)  # never redirect to an unverified redirect_uri
            return None


class ChooseAccountHandler(GoogleHandler):
    """The account chooser's form: approve as one account, or cancel."""

    endpoint = "authorize"

    def post(self) -> None:
        request = self.take_pending()
        if not isinstance(request, AuthorizationRequest):
            self.error_page(ProtocolError("invalid_request",
                                          "This sign-in page has expired. Start again."))
            return
        params: dict[str, str] = {}
        account = self.chosen_account()
        if account is None:
            params["error"] = "access_denied"
        else:
            params["code"] = self.provider.approve(request, account)
            params.update(scope=" ".join(request.scope), authuser="0", prompt="consent")
        if request.state is not None:
            params["state"] = request.state
        self.redirect(f"{request.redirect_uri}?{urlencode(params)}")


class TokenHandler(GoogleHandler, OAuth2TokenHandler):
    """The token endpoint, as common to OAuth 2.0 providers."""


class UserinfoHandler(GoogleHandler):
    endpoint = "userinfo"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        try:
            answer = self.provider.userinfo(self.request.headers.get("Authorization"))
        except ProtocolError as e:
            self.set_header("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", '
                            'error="invalid_token"')
            self.write_json({"error": e.error, "error_description": e.description}, e.status)
            return
        self.write_json(answer)


class JwksHandler(GoogleHandler):
    endpoint = "jwks"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        self.set_header("Cache-Control", "public, max-age=21600")
        self.write_json(self.provider.jwks())
