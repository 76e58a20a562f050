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
from typing import Any, ClassVar

import tornado.web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.dev.standins.common import (
    DEV_ACCOUNTS,
    AuthorizationRequest,
    CodeRefusals,
    DevUser,
    Fault,
    Grant,
    OAuth2ChoiceHandler,
    OAuth2TokenHandler,
    ProtocolError,
    make_standin_app,
)
from gateway.dev.standins.oidc_common import (
    AuthorizeHandler,
    JwksHandler,
    OpenIdHandler,
    OpenIdStandIn,
    at_hash,
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


# Apple's words for a code exchange that fails.
CODE_REFUSALS = CodeRefusals(
    code=("invalid_grant", "The code has expired or has been revoked."),
    redirect_uri=("invalid_grant", ""), verifier=("invalid_grant", ""))


@dataclass
class AppleStandIn(OpenIdStandIn[AppleAccount]):
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

    brand: ClassVar[str] = "Apple"
    code_lifetime: ClassVar[int] = CODE_LIFETIME
    id_token_type: ClassVar[str | None] = None  # Apple's id_token header has no `typ`
    jwks_cache_control: ClassVar[str | None] = "public, max-age=86400"

    def __post_init__(self) -> None:
        self.start_openid()
        self._refresh_tokens: list[str] = []
        self._authorized: set[tuple[str, str]] = set()  # (Services ID, account) seen before

    def new_kid(self) -> str:
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(7))

    def new_code(self) -> str:
        return "c" + secrets.token_hex(16) + ".0.mrty." + secrets.token_urlsafe(16)

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
        return make_standin_app(self, [
            (r"/auth/authorize", AuthorizeHandler),
            (r"/auth/authorize/choose", ChooseAccountHandler),
            (r"/auth/token", OAuth2TokenHandler),
            (r"/auth/keys", JwksHandler),
        ], avatars=False)

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
                                    challenge, method, params.get("nonce"))

    def form_post_fields(self, request: AuthorizationRequest, account: AppleAccount
                         ) -> list[tuple[str, str]]:
        """The fields Apple posts back: the code, and on a first authorization the user."""
        fields = [("code", self.approve(request, account))]
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
        grant = self.codes.redeem(form, CODE_REFUSALS)
        access_token = self.issue_access_token(
            "a" + secrets.token_hex(16) + ".0.mrty." + secrets.token_urlsafe(16),
            grant.account, ACCESS_TOKEN_LIFETIME)
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

    def id_token(self, grant: Grant[AppleAccount], access_token: str) -> str:
        now = int(self.clock())
        account = grant.account
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.request.client_id,
            "exp": now + ID_TOKEN_LIFETIME,
            "iat": now,
            "sub": account.sub,
            "at_hash": at_hash(access_token),
            "auth_time": now,
            "nonce_supported": True,
        }
        if "email" in grant.request.scope:
            claims.update(email=account.email, email_verified=account.email_verified,
                          is_private_email=account.is_private_email)
        return self.signed_id_token(claims, grant.request.nonce)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


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


class ChooseAccountHandler(OpenIdHandler, OAuth2ChoiceHandler):
    """The chooser's form: approve as one account, or cancel; then Apple's form post."""

    provider: AppleStandIn

    def answer_choice(self, request: AuthorizationRequest, account: AppleAccount | None
                      ) -> None:
        if account is None:
            fields = [("error", "user_cancelled_authorize")]
            if request.state is not None:
                fields.append(("state", request.state))
        else:
            fields = self.provider.form_post_fields(request, account)
        self.render_page("form_post.html", brand="Apple", action=request.redirect_uri,
                         fields=fields)
