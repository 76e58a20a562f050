"""What the OpenID Connect stand-ins (Google, the generic provider, Microsoft, Apple) share:
the ID token's signing key and its JWKS, the id_token's `nonce`, `at_hash` and test overrides,
the access tokens a Bearer header names, and the endpoints serving them. Each stand-in keeps
its own wire details: its paths, codes, claims, error words and headers."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.dev.standins.common import (
    A,
    AccountBook,
    AuthorizationCodes,
    AuthorizationRequest,
    OAuth2AuthorizeHandler,
    OAuth2ChoiceHandler,
    OAuth2ChooserHandler,
    PendingRequests,
    ProtocolError,
    bearer_token,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_private_key(alg: str) -> PrivateKey:
    """A fresh key for `alg`: P-256 for ES256, RSA 2048 for RS256."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def at_hash(access_token: str) -> str:
    """OIDC Core 3.1.3.6 for RS256 and ES256: the left half of SHA-256 of the access token,
    base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


class OpenIdStandIn(AccountBook[A]):
    """An OpenID provider's state and steps as the stand-ins share them. Each stand-in is a
    dataclass holding the attributes below, and calls `start_openid` once made."""

    base_url: str
    clock: Callable[[], float]
    id_token_overrides: dict[str, Any]  # a None value removes the claim
    sign_id_token_with_foreign_key: bool
    signing_alg: str = "RS256"  # or ES256

    brand: ClassVar[str] = ""  # on its pages
    code_lifetime: ClassVar[int] = 300  # seconds
    sends_iss: ClassVar[bool] = False  # RFC 9207's `iss` in the authorization response
    id_token_type: ClassVar[str | None] = "JWT"  # the id_token header's `typ`, if any
    userinfo_challenge: ClassVar[str] = 'Bearer error="invalid_token"'  # a refused userinfo's
    jwks_cache_control: ClassVar[str | None] = None  # None: not cacheable

    def start_openid(self) -> None:
        self.kid = self.new_kid()
        self._keys = {alg: new_private_key(alg) for alg in ("RS256", "ES256")}
        self._foreign_key: PrivateKey | None = None
        self.pending = PendingRequests()
        self.codes: AuthorizationCodes[A] = AuthorizationCodes(lambda: self.clock())
        self._access_tokens: dict[str, tuple[A, float]] = {}

    @property
    def issuer(self) -> str:
        return self.base_url

    def new_kid(self) -> str:
        return secrets.token_urlsafe(12)

    def new_code(self) -> str:
        return secrets.token_urlsafe(32)

    # Protocol steps, called by the handlers.

    def approve(self, request: AuthorizationRequest, account: A) -> str:
        """A code for the request, approved as `account`."""
        return self.codes.issue(self.new_code(), request, account, self.code_lifetime)

    def approved(self, request: AuthorizationRequest, account: A) -> dict[str, str]:
        """The parameters of an approved authorization response, before `state`."""
        return {"code": self.approve(request, account)}

    def authorization_response(self, request: AuthorizationRequest, account: A | None
                               ) -> dict[str, str]:
        """The query the chooser redirects with: the approval, or `access_denied`."""
        params = {"error": "access_denied"} if account is None \
            else self.approved(request, account)
        if request.state is not None:
            params["state"] = request.state
        if self.sends_iss:
            params["iss"] = self.issuer  # RFC 9207
        return params

    def issue_access_token(self, token: str, account: A, lifetime: int) -> str:
        self._access_tokens[token] = (account, self.clock() + lifetime)
        return token

    def bearer_account(self, authorization: str | None, refusal: ProtocolError) -> A:
        """The account of a live access token in a Bearer header, or `refusal`."""
        token = bearer_token(authorization)
        entry = self._access_tokens.get(token) if token is not None else None
        if entry is None or entry[1] < self.clock():
            raise refusal
        return entry[0]

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        """The userinfo endpoint's answer (OIDC Core 5.3), for a stand-in that serves one."""
        raise NotImplementedError

    def signed_id_token(self, claims: dict[str, Any], nonce: str | None) -> str:
        """The id_token of `claims`, the request's `nonce` and the tests' overrides."""
        if nonce is not None:
            claims["nonce"] = nonce
        for name, value in self.id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self.encode_id_token(claims)

    def encode_id_token(self, claims: dict[str, Any]) -> str:
        headers = {"kid": self.kid}
        if self.id_token_type is not None:
            headers["typ"] = self.id_token_type
        return jwt.encode(claims, self.signing_key(), algorithm=self.signing_alg,
                          headers=headers)

    def signing_key(self) -> PrivateKey:
        """The key of the JWKS, or with `sign_id_token_with_foreign_key` one it lacks."""
        if not self.sign_id_token_with_foreign_key:
            return self._keys[self.signing_alg]
        if self._foreign_key is None:
            self._foreign_key = new_private_key(self.signing_alg)
        return self._foreign_key

    def jwks(self) -> dict[str, Any]:
        public = self._keys[self.signing_alg].public_key()
        jwk = ECAlgorithm.to_jwk(public, as_dict=True) \
            if isinstance(public, ec.EllipticCurvePublicKey) \
            else RSAAlgorithm.to_jwk(public, as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": self.signing_alg}]}

    def rotate_signing_key(self) -> None:
        """Sign with a new key under a new kid and publish only that one, as after a rotation."""
        self._keys[self.signing_alg] = new_private_key(self.signing_alg)
        self.kid = self.new_kid()


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class OpenIdHandler(OAuth2ChooserHandler):
    """Base of the OpenID stand-ins' endpoints, in the stand-in's brand."""

    provider: OpenIdStandIn[Any]

    def initialize(self, provider: Any) -> None:
        super().initialize(provider)
        self.brand = provider.brand

    def account_detail(self, account: Any) -> str:
        return str(account.email or "no email")


class AuthorizeHandler(OpenIdHandler, OAuth2AuthorizeHandler):
    """The authorization endpoint, as common to OAuth 2.0 providers."""


class ChooseAccountHandler(OpenIdHandler, OAuth2ChoiceHandler):
    """The account chooser's form: approve as one account, or cancel."""

    def answer_choice(self, request: AuthorizationRequest, account: Any | None) -> None:
        params = self.provider.authorization_response(request, account)
        self.redirect(f"{request.redirect_uri}?{urlencode(params)}")


class UserinfoHandler(OpenIdHandler):
    endpoint = "userinfo"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        try:
            answer = self.provider.userinfo(self.request.headers.get("Authorization"))
        except ProtocolError as e:
            self.set_header("WWW-Authenticate", self.provider.userinfo_challenge)
            self.write_json({"error": e.error, "error_description": e.description}, e.status)
            return
        self.write_json(answer)


class JwksHandler(OpenIdHandler):
    endpoint = "jwks"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        if self.provider.jwks_cache_control is not None:
            self.set_header("Cache-Control", self.provider.jwks_cache_control)
        self.write_json(self.provider.jwks())
