"""Sign in with X over OAuth 1.0a (mode "oauth1", RFC 5849), through `tornado.auth.TwitterMixin`.

`TwitterMixin` is deprecated since Tornado 6.3: it targets X's v1.1 API and "will no longer be
updated". This module is the only one that touches it, and takes from it only its OAuth 1.0a
signing (HMAC-SHA1, RFC 5849 3.4: `_oauth_request_parameters`, `_oauth_consumer_token`). None of
its HTTP: its fetches use Tornado's shared client without our timeouts, and it keeps the request
token secret in an unsigned `_oauth_request_token` cookie. Every request here goes through
`Upstream`, its protocol parameters in an `Authorization: OAuth` header (RFC 5849 3.5.1), with
the methods X documents (docs.x.com, OAuth API reference): POST oauth/request_token, GET
oauth/authenticate (the browser), POST oauth/access_token, GET account/verify_credentials.

SECURITY S4: the request-token secret lives only in a signed cookie bound to this browser
(HttpOnly, SameSite=Lax, as long-lived as a login transaction); a callback whose `oauth_token`
does not match it is refused before any token request. It is readable by the user (P6): harmless,
as it signs nothing without our consumer secret. SECURITY C2: the access token and its secret sign
one request (verify_credentials) and are dropped: never in a cookie, a page, our tokens or a log.
"""

from __future__ import annotations

import hmac
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, NoReturn

import tornado.auth
from tornado.httputil import url_concat

from gateway import cookies
from gateway.config import Settings, TwitterSettings
from gateway.errors import LoginFailed
from gateway.identity import Identity
from gateway.providers.base import ArgumentReader, CallbackParameters, LoginStart
from gateway.providers.twitter import DISPLAY_NAME, NAME, identity_from_x_v1, unusable
from gateway.textcompare import same_text
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream

MAX_TOKEN_LENGTH = 256  # X's tokens are ~50 characters; the cookie must stay small (P6)
# GET account/verify_credentials: the email where X has a verified one, no last post.
VERIFY_CREDENTIALS_QUERY = {"include_email": "true", "skip_status": "true"}


@dataclass(frozen=True)
class Token:
    """An OAuth 1.0a token and its shared secret (RFC 5849 1.1): temporary or token credentials.

    `repr` hides both: a token in a traceback is a token in a log line (SECURITY C2, L1).
    """

    key: str = field(repr=False)
    secret: str = field(repr=False)

    def to_cookie(self) -> str:
        return urllib.parse.urlencode({"oauth_token": self.key, "oauth_token_secret": self.secret})

    @classmethod
    def from_cookie(cls, value: str | None) -> Token | None:
        if not value:
            return None
        try:
            pairs = dict(urllib.parse.parse_qsl(value, strict_parsing=True))
        except ValueError:
            return None
        key, secret = pairs.get("oauth_token"), pairs.get("oauth_token_secret")
        return cls(key, secret) if key and secret else None


@dataclass(frozen=True)
class AccessToken(Token):
    user_id: str = ""  # whom X issued it for; verify_credentials must be the same account


class TwitterOAuth1Connector(tornado.auth.TwitterMixin):
    """X's OAuth 1.0a connector: its settings, the flow's HTTP and its signing, built once in
    app.py. The login transaction is keyed by the request token instead of a `state`."""

    name = NAME
    display_name = DISPLAY_NAME
    binding_cookie = cookies.X_REQUEST_TOKEN  # the request token and its secret (S4)

    def __init__(self, settings: TwitterSettings, upstream: Upstream, *,
                 callback_url: str) -> None:
        self.settings = settings
        self.upstream = upstream
        self.callback_url = callback_url

    async def begin(self, tx: LoginTransaction) -> LoginStart:
        """Obtain a request token for our fixed callback (RFC 5849 2.1), to keep in this
        browser's signed cookie, and key the login transaction by it."""
        url = self.settings.request_token_url
        authorization = self._authorization(
            "POST", url, None, protocol={"oauth_callback": self.callback_url})
        answer = await self.post_for_token(url, authorization, what="request_token")
        request_token = request_token_of(answer)
        return LoginStart(
            request_token.key,
            url_concat(self.settings.authenticate_url, {"oauth_token": request_token.key}),
            browser_binding=request_token.to_cookie())

    def callback_parameters(self, argument: ArgumentReader) -> CallbackParameters:
        """`?oauth_token=&oauth_verifier=` after consent; `?denied=<request token>` when the
        user cancels at X (then the same page as a refusal at any provider)."""
        denied = argument("denied", required=False)
        if denied is not None:
            return CallbackParameters(denied, None, "access_denied")
        oauth_token = argument("oauth_token")
        assert oauth_token is not None
        return CallbackParameters(oauth_token, argument("oauth_verifier", required=False), None)

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        assert params.code is not None
        request_token = check_request_token(Token.from_cookie(browser_binding),
                                            params.transaction_key)
        access_token = await self._access_token(request_token, oauth_verifier=params.code)
        authorization = self._authorization("GET", self.settings.verify_credentials_url,
                                            access_token, query=VERIFY_CREDENTIALS_QUERY)
        profile = await self.verify_credentials(authorization)
        identity = identity_from_x_v1(profile)
        if not same_text(identity.provider_subject, access_token.user_id):
            raise unusable("verify_credentials answered for another user than the access token")
        return identity

    async def _access_token(self, request_token: Token, *, oauth_verifier: str) -> AccessToken:
        """RFC 5849 2.3: the request token and the verifier for token credentials."""
        url = self.settings.access_token_url
        authorization = self._authorization("POST", url, request_token,
                                            protocol={"oauth_verifier": oauth_verifier})
        return access_token_of(
            await self.post_for_token(url, authorization, what="access_token"))

    async def post_for_token(self, url: str, authorization: str, *, what: str) -> dict[str, str]:
        """POST a token endpoint; its answer is form-encoded (RFC 5849 2.1, 2.3). Never retried:
        a request token and a verifier are single use."""
        request = self.upstream.request(
            url, method="POST", body="",
            headers={"Authorization": authorization,
                     "Content-Type": "application/x-www-form-urlencoded"},
        )
        return await self.upstream.fetch_form(request, provider=NAME, what=what)

    async def verify_credentials(self, authorization: str) -> dict[str, Any]:
        request = self.upstream.request(
            url_concat(self.settings.verify_credentials_url, VERIFY_CREDENTIALS_QUERY),
            headers={"Authorization": authorization},
        )
        return await self.upstream.fetch_json(request, provider=NAME, what="verify_credentials")

    # Signing: the mixin's HMAC-SHA1, our HTTP.

    def _authorization(self, method: str, url: str, token: Token | None, *,
                       protocol: dict[str, str] | None = None,
                       query: dict[str, str] | None = None) -> str:
        """The `Authorization: OAuth` header of one request. The signature covers the protocol
        parameters and the query (RFC 5849 3.4.1.3); `url` is the URL without its query."""
        protocol = protocol or {}
        signed_over = {**protocol, **(query or {})}
        if token is None:
            oauth = self._token_less_parameters(method, url, signed_over)
        else:
            oauth = self._oauth_request_parameters(
                url, {"key": token.key, "secret": token.secret}, signed_over, method=method)
        return authorization_header({**protocol, **oauth})

    def _token_less_parameters(self, method: str, url: str,
                               parameters: dict[str, str]) -> dict[str, str]:
        """The request-token step has no token yet. The mixin's signer for it,
        `_oauth_request_token_url`, signs GET only, while X documents POST: the same parameters
        and the same HMAC-SHA1 function (`tornado.auth._oauth10a_signature`), for POST."""
        consumer = self._oauth_consumer_token()
        args = {
            "oauth_consumer_key": consumer["key"],
            "oauth_signature_method": "HMAC-SHA1",
            "oauth_timestamp": str(int(time.time())),
            "oauth_nonce": secrets.token_hex(16),
            "oauth_version": "1.0",
            **parameters,
        }
        signature = tornado.auth._oauth10a_signature(consumer, method, url, args)
        args["oauth_signature"] = signature.decode("ascii")
        return {name: value for name, value in args.items() if name.startswith("oauth_")}

    def _oauth_consumer_token(self) -> dict[str, Any]:
        # The mixin reads application settings; ours come from configuration.
        return {"key": self.settings.consumer_key,
                "secret": self.settings.consumer_secret.reveal()}

    def get_auth_http_client(self) -> NoReturn:
        """The mixin's own fetches (untimed, with an unsigned cookie) must never run."""
        raise NotImplementedError("X is called through gateway.upstream only")


def build(settings: Settings, upstream: Upstream) -> TwitterOAuth1Connector:
    """X in mode "oauth1" (providers/__init__.py picks the mode)."""
    assert settings.providers.twitter is not None
    return TwitterOAuth1Connector(settings.providers.twitter, upstream,
                                  callback_url=settings.callback_url(NAME))


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def authorization_header(params: dict[str, str]) -> str:
    """RFC 5849 3.5.1: `OAuth name="value", ...`, each name and value percent-encoded (3.6)."""
    return "OAuth " + ", ".join(f'{_percent_encode(name)}="{_percent_encode(value)}"'
                                for name, value in sorted(params.items()))


def _percent_encode(value: str) -> str:
    return urllib.parse.quote(value, safe="~")  # RFC 5849 3.6: all but unreserved characters


def request_token_of(answer: dict[str, str]) -> Token:
    """RFC 5849 2.1: temporary credentials, for the callback we sent (OAuth 1.0a)."""
    if answer.get("oauth_callback_confirmed") != "true":
        raise unusable("request_token: oauth_callback_confirmed is not true")
    return _token_of(answer, "request_token")


def access_token_of(answer: dict[str, str]) -> AccessToken:
    """RFC 5849 2.3: token credentials; X adds `user_id` and `screen_name`."""
    token = _token_of(answer, "access_token")
    user_id = answer.get("user_id", "")
    if not (user_id.isascii() and user_id.isdigit()):
        raise unusable("access_token: user_id is missing or not a decimal string")
    return AccessToken(token.key, token.secret, user_id)


def _token_of(answer: dict[str, str], what: str) -> Token:
    key, secret = answer.get("oauth_token", ""), answer.get("oauth_token_secret", "")
    if not (0 < len(key) <= MAX_TOKEN_LENGTH and 0 < len(secret) <= MAX_TOKEN_LENGTH):
        raise unusable(f"{what}: oauth_token or oauth_token_secret missing or oversized")
    return Token(key, secret)


def check_request_token(cookie_token: Token | None, callback_token: str) -> Token:
    """SECURITY S4: the callback's `oauth_token` must be the request token this browser holds in
    its signed cookie (compared in constant time)."""
    if cookie_token is None:
        raise LoginFailed(
            "This sign-in was started in another browser, or your cookies were cleared. "
            "Please start again.",
            log_detail="request-token cookie missing, unsigned, tampered with or expired",
        )
    if not hmac.compare_digest(cookie_token.key.encode(), callback_token.encode()):
        raise LoginFailed(
            "This sign-in does not match the one started in this browser. Please start again.",
            log_detail="oauth_token does not match the request-token cookie",
        )
    return cookie_token
