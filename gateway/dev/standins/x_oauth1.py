"""X's OAuth 1.0a in the stand-in (the gateway's mode "oauth1"), on X's paths.

Every request's HMAC-SHA1 signature, timestamp and nonce are
verified by `rfc5849` (oauthlib, not the gateway's signing code); refusals are X's
`{"errors": [{"code": 32, "message": "Could not authenticate you."}]}`.
- `POST /oauth/request_token`: for a registered `oauth_callback`; answers form-encoded
  `oauth_token`, `oauth_token_secret`, `oauth_callback_confirmed=true`.
- `GET /oauth/authenticate?oauth_token=`: the account chooser; the choice redirects to the
  callback with `oauth_token` and `oauth_verifier`, a cancel with `denied=<request token>`.
- `POST /oauth/access_token`: request token + verifier (single use) for the access token,
  answered with `user_id` and `screen_name`.
- `GET /1.1/account/verify_credentials.json`: the v1.1 user object, `email` with
  `include_email=true` (null for an address that is not verified), no `status` with
  `skip_status=true`.

The steps are `XOAuth1`, a part of `XStandIn` (x.py), which holds their state.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import tornado.web
from tornado.httputil import url_concat

from gateway.dev.standins.common import ProtocolError, secrets_equal
from gateway.dev.standins.rfc5849 import (
    OAuthRefusal,
    RequestVerifier,
    SignedRequest,
    parse_request,
)
from gateway.dev.standins.x_common import XAccount, XHandler

REQUEST_TOKEN_LIFETIME = 600


@dataclass
class RequestTokenRecord:
    """OAuth 1.0a temporary credentials, and the user's decision once made."""

    secret: str
    callback: str
    expires: float
    account: XAccount | None = None
    verifier: str | None = None


@dataclass(frozen=True)
class ReceivedRequest:
    """An OAuth 1.0a request as the stand-in received it, for tests to replay or alter."""

    method: str
    url: str
    authorization: str
    body: str


class XOAuth1:
    """The OAuth 1.0a steps, called by the handlers below: each gets the verified request."""

    base_url: str
    consumer_key: str
    consumer_secret: str
    callback_urls: Sequence[str]
    clock: Callable[[], float]
    oauth1_requests: list[ReceivedRequest]

    def _start_oauth1(self) -> None:
        self.verifier = RequestVerifier(self.consumer_key, self.consumer_secret,
                                        clock=lambda: self.clock())
        self._request_tokens: dict[str, RequestTokenRecord] = {}
        self._access_tokens: dict[str, tuple[str, XAccount]] = {}  # token -> (secret, account)

    # Endpoints, as the gateway's configuration names them.
    @property
    def request_token_url(self) -> str:
        return f"{self.base_url}/oauth/request_token"

    @property
    def authenticate_url(self) -> str:
        return f"{self.base_url}/oauth/authenticate"

    @property
    def access_token_url(self) -> str:
        return f"{self.base_url}/oauth/access_token"

    @property
    def verify_credentials_url(self) -> str:
        return f"{self.base_url}/1.1/account/verify_credentials.json"

    def verify(self, request: SignedRequest, token_secret: str | None) -> None:
        self.verifier.verify(request, token_secret)

    def issue_request_token(self, request: SignedRequest) -> dict[str, str]:
        self.verify(request, None)
        callback = request.oauth.get("oauth_callback", "")
        if callback not in self.callback_urls:
            raise OAuthRefusal(403, 415, "Callback URL not approved for this client application. "
                               "Approved callback URLs can be adjusted in your application "
                               "settings")
        token, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(30)
        self._request_tokens[token] = RequestTokenRecord(secret, callback,
                                                         self.clock() + REQUEST_TOKEN_LIFETIME)
        return {"oauth_token": token, "oauth_token_secret": secret,
                "oauth_callback_confirmed": "true"}

    def request_token(self, token: str | None) -> RequestTokenRecord | None:
        record = self._request_tokens.get(token or "")
        return record if record is not None and record.expires >= self.clock() else None

    def decide(self, token: str, account: XAccount | None) -> str:
        """The user's answer on the chooser; the URL to send the browser back to."""
        record = self._request_tokens[token]
        if account is None:
            del self._request_tokens[token]
            return url_concat(record.callback, {"denied": token})
        record.account, record.verifier = account, secrets.token_urlsafe(24)
        return url_concat(record.callback, {"oauth_token": token,
                                            "oauth_verifier": record.verifier})

    def exchange_request_token(self, request: SignedRequest) -> dict[str, str]:
        record = self.request_token(request.token)
        if record is None:
            raise OAuthRefusal(401, 89, "Invalid or expired token.")
        self.verify(request, record.secret)
        verifier = request.oauth.get("oauth_verifier", "")
        if record.account is None or record.verifier is None \
                or not secrets_equal(verifier, record.verifier):
            raise OAuthRefusal(401, 32, "Could not authenticate you.")
        assert request.token is not None
        del self._request_tokens[request.token]  # single use
        token = f"{record.account.id}-{secrets.token_urlsafe(30)}"
        secret = secrets.token_urlsafe(33)
        self._access_tokens[token] = (secret, record.account)
        return {"oauth_token": token, "oauth_token_secret": secret,
                "user_id": record.account.id, "screen_name": record.account.username}

    def verify_credentials(self, request: SignedRequest) -> dict[str, Any]:
        entry = self._access_tokens.get(request.token or "")
        if entry is None:
            raise OAuthRefusal(401, 89, "Invalid or expired token.")
        self.verify(request, entry[0])
        params = dict(request.params)
        return entry[1].v1(include_email=params.get("include_email") in ("true", "t", "1"),
                           base_url=self.base_url)


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class OAuth1Handler(XHandler):
    """An OAuth 1.0a endpoint: the request parsed (and kept for tests), refusals as X's."""

    provider: XOAuth1

    def signed_request(self) -> SignedRequest:
        request = self.request
        body = request.body.decode("utf-8", "replace") if self.is_form_encoded() else ""
        self.provider.oauth1_requests.append(ReceivedRequest(
            request.method or "GET", request.full_url(),
            request.headers.get("Authorization", ""), body))
        return parse_request(request.method or "GET", f"{request.protocol}://{request.host}"
                             f"{request.path}", request.query, request.headers, body)

    def write_refusal(self, refusal: OAuthRefusal) -> None:
        self.write_json({"errors": [{"code": refusal.code, "message": refusal.message}]},
                        refusal.status)

    def write_form(self, answer: dict[str, str]) -> None:
        # RFC 5849 2.1/2.3: token answers are application/x-www-form-urlencoded.
        self.set_header("Content-Type", "application/x-www-form-urlencoded")
        self.finish(urlencode(answer))

    async def answer(self, step: Callable[[SignedRequest], dict[str, str]]) -> None:
        if await self.answer_fault():
            return
        try:
            self.write_form(step(self.signed_request()))
        except OAuthRefusal as e:
            self.write_refusal(e)


class RequestTokenHandler(OAuth1Handler):
    endpoint = "request_token"

    async def post(self) -> None:
        await self.answer(self.provider.issue_request_token)


class AuthenticateHandler(XHandler):
    provider: XOAuth1
    endpoint = "authenticate"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        token = self.query_argument("oauth_token")
        if self.provider.request_token(token) is None:
            self.error_page(ProtocolError("invalid_request", "This page is no longer valid. "
                                          "It looks like someone already used the token "
                                          "information you provided."))
            return
        self.show_chooser(("oauth1", token), app=self.provider.consumer_key)


class AuthenticateChooseHandler(XHandler):
    provider: XOAuth1
    endpoint = "authenticate"

    def post(self) -> None:
        pending = self.take_pending()
        token = pending[1] if isinstance(pending, tuple) and pending[0] == "oauth1" else None
        if token is None or self.provider.request_token(token) is None:
            self.error_page(ProtocolError("invalid_request",
                                          "This sign-in page has expired. Start again."))
            return
        self.redirect(self.provider.decide(token, self.chosen_account()))


class AccessTokenHandler(OAuth1Handler):
    endpoint = "access_token"

    async def post(self) -> None:
        await self.answer(self.provider.exchange_request_token)


class VerifyCredentialsHandler(OAuth1Handler):
    endpoint = "verify_credentials"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        try:
            self.write_json(self.provider.verify_credentials(self.signed_request()))
        except OAuthRefusal as e:
            self.write_refusal(e)


ROUTES: tuple[tuple[str, type[tornado.web.RequestHandler]], ...] = (
    (r"/oauth/request_token", RequestTokenHandler),
    (r"/oauth/authenticate", AuthenticateHandler),
    (r"/oauth/authenticate/choose", AuthenticateChooseHandler),
    (r"/oauth/access_token", AccessTokenHandler),
    (r"/1\.1/account/verify_credentials\.json", VerifyCredentialsHandler),
)
