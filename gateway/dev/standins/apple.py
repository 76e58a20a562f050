"""A local stand-in for Sign in with Apple, speaking Apple's wire protocol.

Endpoints, as Apple's under https://appleid.apple.com (paths kept, so that a configuration
differs only in `authority`):
- `GET /auth/authorize`: the authorization page. An unknown `client_id` (Services ID) or a
  `redirect_uri` that is not registered is an error page, never a redirect. Asking for `name`
  or `email` requires `response_mode=form_post`, as at Apple. The choice ends on a page that
  posts, by itself (or with its button), to the `redirect_uri`: `state` and `code`, and on the
  first authorization of this Services ID by this account the `user` JSON
  (`{"name": {"firstName", "lastName"}, "email"}`), never again; or `error` and `state`.
- `POST /auth/token`: form-encoded. The client secret must be the ES256 JWT Apple asks for:
  signed by the team's key (checked here with `cryptography` directly, not with the library
  the gateway signs with), `kid` our key id, `iss` the team, `sub` the Services ID, `aud` the
  authority, not expired, `exp` at most 6 months after `iat`. Then the code (single use, its
  client and `redirect_uri`) and the PKCE verifier. Answers `access_token`, `token_type`,
  `expires_in`, `refresh_token` and an RS256 `id_token` (`nonce`, `at_hash`, `email`,
  `email_verified`, `is_private_email`). Errors are Apple's `{"error": ...}`.
- `GET /auth/keys`: the JWKS.

Test users: Ada's id_token has Apple's string booleans ("true"/"false"); Grace hid her email
behind a private-relay address (JSON booleans); Alan's email is not verified ("false").

Tests steer it through `faults`, `id_token_overrides` and `sign_id_token_with_foreign_key`,
read `token_requests`, `client_secrets` and `calls`, and `forget_authorizations()` as a user
who removed the app at appleid.apple.com.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import tornado.web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import RSAAlgorithm

from gateway.dev.standins.common import (
    DEV_ACCOUNTS,
    AccountChooserHandler,
    DevUser,
    Fault,
    OAuth2TokenHandler,
    PendingRequests,
    ProtocolError,
    make_standin_app,
    pkce_matches,
)

__all__ = ["DEV_USERS", "AppleAccount", "AppleStandIn", "Fault", "dev_provider"]

CODE_LIFETIME = 300  # Apple's codes live five minutes
ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 600
SUPPORTED_SCOPES = ("name", "email")
MAX_CLIENT_SECRET_LIFETIME = 15_777_000  # Apple: at most 6 months
CLOCK_SKEW = 60  # seconds an `iat` may be ahead of this clock


@dataclass(frozen=True)
class AppleAccount:
    """A test account as Apple describes it. `email_verified` and `is_private_email` hold what
    the id_token carries: a JSON boolean or one of Apple's strings "true"/"false"."""

    key: str
    sub: str
    name: str
    given_name: str
    family_name: str
    email: str
    email_verified: bool | str
    is_private_email: bool | str


def _account(user: DevUser, email: str, string_booleans: bool) -> AppleAccount:
    digest = hashlib.sha256(b"apple:" + user.key.encode()).hexdigest()
    # Apple's subjects look like 001234.0123456789abcdef0123456789abcdef.1234.
    team_part, user_part = int(digest[:6], 16) % 1_000_000, int(digest[38:42], 16) % 10_000
    sub = f"{team_part:06d}.{digest[6:38]}.{user_part:04d}"
    private = email.endswith("@privaterelay.appleid.com")

    def boolean(value: bool) -> bool | str:
        return ("true" if value else "false") if string_booleans else value

    return AppleAccount(user.key, sub, user.name, user.given_name, user.family_name, email,
                        boolean(user.email_verified), boolean(private))


DEV_USERS: tuple[AppleAccount, ...] = (
    _account(DEV_ACCOUNTS[0], "ada@example.com", string_booleans=True),
    _account(DEV_ACCOUNTS[1], "x7k2q9v4mt@privaterelay.appleid.com", string_booleans=False),
    _account(DEV_ACCOUNTS[2], "alan@example.org", string_booleans=True),
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
    request: AuthorizationRequest
    account: AppleAccount
    expires: float


@dataclass
class AppleStandIn:
    base_url: str
    client_id: str  # the Services ID
    team_id: str
    key_id: str
    team_public_key: ec.EllipticCurvePublicKey  # of the key the gateway signs secrets with
    redirect_uris: Sequence[str]
    accounts: Sequence[AppleAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls.
    faults: dict[str, Fault] = field(default_factory=dict)
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    sign_id_token_with_foreign_key: bool = False
    token_requests: list[dict[str, str]] = field(default_factory=list)
    client_secrets: list[str] = field(default_factory=list)  # every one the gateway sent
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._foreign_key: rsa.RSAPrivateKey | None = None
        self.kid = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(7))
        self.pending = PendingRequests()
        self._codes: dict[str, Grant] = {}
        self._access_tokens: dict[str, AppleAccount] = {}
        self._refresh_tokens: list[str] = []
        self._authorized: set[tuple[str, str]] = set()  # (Services ID, account) seen before

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/auth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/auth/keys"

    def make_app(self) -> tornado.web.Application:
        kwargs = {"provider": self}
        return make_standin_app([
            (r"/auth/authorize", AuthorizeHandler, kwargs),
            (r"/auth/authorize/choose", ChooseAccountHandler, kwargs),
            (r"/auth/token", TokenHandler, kwargs),
            (r"/auth/keys", JwksHandler, kwargs),
        ])

    def forget_authorizations(self) -> None:
        """As if every user removed the app at appleid.apple.com: the next login of each is a
        first authorization again, with the `user` field."""
        self._authorized.clear()

    # Protocol steps, called by the handlers.

    def check_authorization_request(self, params: dict[str, str | None]
                                    ) -> AuthorizationRequest:
        if params.get("client_id") != self.client_id:
            raise ProtocolError("invalid_client", "Invalid client id or web redirect url.")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri not in self.redirect_uris:
            raise ProtocolError("invalid_request", "Invalid web redirect url.")
        if params.get("response_type") not in ("code", "code id_token"):
            raise ProtocolError("unsupported_response_type", "Invalid response_type.")
        scope = tuple((params.get("scope") or "").split())
        if any(s not in SUPPORTED_SCOPES for s in scope):
            raise ProtocolError("invalid_scope", "Invalid scope.")
        if scope and params.get("response_mode") != "form_post":
            raise ProtocolError("invalid_request",
                                "response_mode must be form_post when name or email scope "
                                "is requested.")
        method = params.get("code_challenge_method") or "plain"
        challenge = params.get("code_challenge")
        if challenge is not None and method != "S256":
            raise ProtocolError("invalid_request", "Invalid code_challenge_method.")
        assert redirect_uri is not None
        return AuthorizationRequest(self.client_id, redirect_uri, scope, params.get("state"),
                                    params.get("nonce"), challenge, method)

    def approve(self, request: AuthorizationRequest, account: AppleAccount
                ) -> list[tuple[str, str]]:
        """The fields Apple posts back: the code, and on a first authorization the user."""
        code = "c" + secrets.token_hex(16) + ".0.mrty." + secrets.token_urlsafe(16)
        self._codes[code] = Grant(request, account, self.clock() + CODE_LIFETIME)
        fields = [("code", code)]
        if request.state is not None:
            fields.insert(0, ("state", request.state))
        first = (request.client_id, account.key) not in self._authorized
        self._authorized.add((request.client_id, account.key))
        if first and request.scope:
            user: dict[str, Any] = {}
            if "name" in request.scope:
                user["name"] = {"firstName": account.given_name,
                                "lastName": account.family_name}
            if "email" in request.scope:
                user["email"] = account.email
            fields.append(("user", json.dumps(user)))
        return fields

    def exchange_code(self, form: dict[str, str | None], authorization: str | None
                      ) -> dict[str, Any]:
        self.check_client_secret(form.get("client_id"), form.get("client_secret"))
        if form.get("grant_type") != "authorization_code":
            raise ProtocolError("unsupported_grant_type", "")
        code = form.get("code")
        grant = self._codes.pop(code, None) if code else None  # single use
        if grant is None or grant.expires < self.clock():
            raise ProtocolError("invalid_grant", "The code has expired or has been revoked.")
        if form.get("redirect_uri") != grant.request.redirect_uri:
            raise ProtocolError("invalid_grant", "")
        if grant.request.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier or not pkce_matches(grant.request.code_challenge,
                                                grant.request.code_challenge_method, verifier):
                raise ProtocolError("invalid_grant", "")
        access_token = "a" + secrets.token_hex(16) + ".0.mrty." + secrets.token_urlsafe(16)
        self._access_tokens[access_token] = grant.account
        refresh_token = "r" + secrets.token_hex(16) + ".0.mrty." + secrets.token_urlsafe(16)
        self._refresh_tokens.append(refresh_token)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "refresh_token": refresh_token,
            "id_token": self.id_token(grant, access_token),
        }

    def check_client_secret(self, client_id: str | None, client_secret: str | None) -> None:
        """Apple's checks of the client secret JWT, with `cryptography` directly."""
        if client_secret:
            self.client_secrets.append(client_secret)
        try:
            head, payload, signature = (client_secret or "").split(".")
            header = json.loads(_b64decode(head))
            claims = json.loads(_b64decode(payload))
            raw = _b64decode(signature)
        except (ValueError, binascii.Error):
            raise ProtocolError("invalid_client", "") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ProtocolError("invalid_client", "")
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id or len(raw) != 64:
            raise ProtocolError("invalid_client", "")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                   int.from_bytes(raw[32:], "big"))
        try:
            self.team_public_key.verify(der, f"{head}.{payload}".encode(),
                                        ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ProtocolError("invalid_client", "") from None
        now = self.clock()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not (claims.get("iss") == self.team_id and claims.get("sub") == self.client_id
                and client_id == self.client_id and claims.get("aud") == self.issuer
                and isinstance(iat, int) and isinstance(exp, int)
                and iat <= now + CLOCK_SKEW and exp > now
                and 0 < exp - iat <= MAX_CLIENT_SECRET_LIFETIME):
            raise ProtocolError("invalid_client", "")

    def id_token(self, grant: Grant, access_token: str) -> str:
        now = int(self.clock())
        account = grant.account
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.request.client_id,
            "exp": now + ID_TOKEN_LIFETIME,
            "iat": now,
            "sub": account.sub,
            "at_hash": _at_hash(access_token),
            "auth_time": now,
            "nonce_supported": True,
        }
        if grant.request.nonce is not None:
            claims["nonce"] = grant.request.nonce
        if "email" in grant.request.scope:
            claims.update(email=account.email, email_verified=account.email_verified,
                          is_private_email=account.is_private_email)
        for name, value in self.id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self._signing_key(), algorithm="RS256",
                          headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def account(self, key: str | None) -> AppleAccount | None:
        return next((a for a in self.accounts if a.key == key), None)

    def _signing_key(self) -> rsa.RSAPrivateKey:
        if not self.sign_id_token_with_foreign_key:
            return self._key
        if self._foreign_key is None:
            self._foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._foreign_key


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def _apple_id() -> str:
    """A team or key id as Apple makes them: ten upper-case letters and digits."""
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(10))


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[AppleStandIn, dict[str, Any]]:
    """A stand-in and the gateway's `providers.apple` section for it. The team's key is made
    here, at every start, and lives only in memory: the stand-in holds its public half, the
    section its private half (never written anywhere, never committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    section = {**_section(key), "authority": base_url}
    standin = AppleStandIn(base_url, section["client_id"], section["team_id"],
                           section["key_id"], key.public_key(),
                           [f"{gateway_issuer}/callback/apple"])
    return standin, section


def placeholder_section() -> dict[str, str]:
    """A valid `providers.apple` section with a throwaway key, for a first look at settings."""
    return _section(ec.generate_private_key(ec.SECP256R1()))


def _section(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    return {
        "client_id": "com.example.gateway.dev",
        "team_id": _apple_id(),
        "key_id": _apple_id(),
        "private_key": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
    }


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class AppleHandler(AccountChooserHandler):
    provider: AppleStandIn
    brand = "Apple"

    def account_detail(self, account: AppleAccount) -> str:
        return account.email

    def error_page(self, error: ProtocolError) -> None:
        self.set_status(error.status)
        self.render_page("provider_error.html", brand="Apple", error=error.error,
                         description=error.description)


class AuthorizeHandler(AppleHandler):
    endpoint = "authorize"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        names = ("client_id", "redirect_uri", "response_type", "response_mode", "scope",
                 "state", "nonce", "code_challenge", "code_challenge_method")
        try:
            request = self.provider.check_authorization_request(
                {name: self.query_argument(name) for name in names})
        except ProtocolError as e:
            self.error_page(e)  # never redirect to an unverified redirect_uri
            return
        self.show_chooser(request, app=request.client_id, action="/auth/authorize/choose")


class ChooseAccountHandler(AppleHandler):
    """The chooser's form: approve as one account, or cancel; then Apple's form post."""

    endpoint = "authorize"

    def post(self) -> None:
        request = self.take_pending()
        if not isinstance(request, AuthorizationRequest):
            self.error_page(ProtocolError("invalid_request",
                                          "This sign-in page has expired. Start again."))
            return
        account = self.chosen_account()
        if account is None:
            fields = [("error", "user_cancelled_authorize")]
            if request.state is not None:
                fields.append(("state", request.state))
        else:
            fields = self.provider.approve(request, account)
        self.render_page("form_post.html", brand="Apple", action=request.redirect_uri,
                         fields=fields)


class TokenHandler(AppleHandler, OAuth2TokenHandler):
    """The token endpoint, as common to OAuth 2.0 providers."""


class JwksHandler(AppleHandler):
    endpoint = "jwks"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        self.set_header("Cache-Control", "public, max-age=86400")
        self.write_json(self.provider.jwks())
