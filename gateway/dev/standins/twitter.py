"""A local stand-in for X, speaking both of X's sign-in protocols on X's paths.

OAuth 2.0 with PKCE (the gateway's mode "oauth2"):
- `GET /i/oauth2/authorize`: unknown `client_id` or unregistered `redirect_uri` is an error page,
  never a redirect; so is a request without `state` or without an S256 `code_challenge` (X
  requires PKCE). Otherwise an account chooser; the choice redirects with `code` and `state`,
  a cancel with `error=access_denied` and `state`.
- `POST /2/oauth2/token`: form-encoded, the confidential client authenticated by HTTP Basic;
  the code is single use and lives 30 seconds (as X's), bound to `redirect_uri` and the PKCE
  challenge. Answers `token_type`, `expires_in`, `access_token`, `scope`.
- `GET /2/users/me`: the user of a Bearer token, wrapped in `data`, with the `user.fields`
  asked for (`confirmed_email` only with the users.email scope, for a confirmed address).

OAuth 1.0a (mode "oauth1"): every request's HMAC-SHA1 signature, timestamp and nonce are
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

Tests steer it through `faults` (per endpoint: "authorize", "token", "me", "request_token",
"authenticate", "access_token", "verify_credentials"), its `clock`, and read `token_requests`
(OAuth 2.0 token requests), `oauth1_requests` (every OAuth 1.0a request as received) and `calls`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import tornado.web
from tornado.httputil import url_concat

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
from gateway.dev.standins.rfc5849 import (
    OAuthRefusal,
    RequestVerifier,
    SignedRequest,
    parse_request,
)

__all__ = ["DEV_USERS", "Fault", "XAccount", "XStandIn", "dev_provider"]

BRAND = "X"
CODE_LIFETIME = 30  # seconds: "You will have to exchange it with an access token within 30 seconds"
ACCESS_TOKEN_LIFETIME = 7200  # two hours without offline.access
REQUEST_TOKEN_LIFETIME = 600
SUPPORTED_SCOPES = frozenset((
    "tweet.read", "tweet.write", "tweet.moderate.write", "users.email", "users.read",
    "follows.read", "follows.write", "offline.access", "space.read", "mute.read", "mute.write",
    "like.read", "like.write", "list.read", "list.write", "block.read", "block.write",
    "bookmark.read", "bookmark.write", "dm.read", "dm.write", "media.write",
))
ME_SCOPES = frozenset(("tweet.read", "users.read"))  # what GET /2/users/me requires
# The `user.fields` X knows (its OpenAPI enum); the stand-in fills the ones it has.
USER_FIELDS = frozenset((
    "affiliation", "confirmed_email", "connection_status", "created_at", "description",
    "entities", "id", "is_identity_verified", "location", "most_recent_tweet_id", "name",
    "parody", "pinned_tweet_id", "profile_banner_url", "profile_image_url", "protected",
    "public_metrics", "receives_your_dm", "subscription", "subscription_type", "url",
    "username", "verified", "verified_followers_count", "verified_type", "withheld",
))
CREATED_AT = "2010-06-01T12:00:00.000Z"


@dataclass(frozen=True)
class XAccount:
    """A test account as X describes it: a numeric id, the same in API v2 and v1.1."""

    key: str
    id: str
    name: str
    username: str
    email: str | None
    email_confirmed: bool
    avatar: Avatar  # X's profile images are https URLs on pbs.twimg.com

    def v2(self, fields: set[str], scope: frozenset[str], base_url: str) -> dict[str, Any]:
        """The API v2 user object with the requested `user.fields`."""
        user: dict[str, Any] = {"id": self.id, "name": self.name, "username": self.username}
        extra: dict[str, Any] = {"profile_image_url": self.avatar.url(base_url),
                                 "created_at": CREATED_AT, "description": "", "protected": False,
                                 "verified": False, "url": ""}
        if "users.email" in scope and self.email and self.email_confirmed:
            extra["confirmed_email"] = self.email
        user.update((name, value) for name, value in extra.items() if name in fields)
        return user

    def v1(self, include_email: bool, base_url: str) -> dict[str, Any]:
        """The API v1.1 user object (GET account/verify_credentials)."""
        profile: dict[str, Any] = {
            "id": int(self.id), "id_str": self.id, "name": self.name,
            "screen_name": self.username, "location": "", "description": "", "url": None,
            "protected": False, "verified": False, "followers_count": 0, "friends_count": 0,
            "created_at": "Tue Jun 01 12:00:00 +0000 2010",
            "profile_image_url": self.avatar.url(base_url),
            "profile_image_url_https": self.avatar.url(base_url),
            "default_profile_image": False,
        }
        if include_email:
            # "If the user does not have an email address on their account, or if the email
            # address is un-verified, null will be returned."
            profile["email"] = self.email if self.email and self.email_confirmed else None
        return profile


def _account(user: DevUser, colour: str) -> XAccount:
    digest = hashlib.sha256(b"x:" + user.key.encode()).digest()
    user_id = str(10**17 + int.from_bytes(digest[:7]))  # 18 digits, as recent X ids
    return XAccount(user.key, user_id, user.name, user.username, user.email, user.email_verified,
                    make_avatar("x", user, colour))


DEV_USERS: tuple[XAccount, ...] = tuple(
    _account(user, colour)
    for user, colour in zip(DEV_ACCOUNTS, ("#0f1419", "#1d9bf0", "#536471"), strict=True)
)



@dataclass(frozen=True)
class Problem(Exception):
    """An X API v2 error answer (a problem document)."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    errors: tuple[dict[str, Any], ...] = ()

    def document(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"title": self.title, "detail": self.detail, "type": self.type,
                                  "status": self.status}
        if self.errors:
            answer["errors"] = list(self.errors)
        return answer


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str
    code_challenge: str


@dataclass(frozen=True)
class Grant:
    request: AuthorizationRequest
    account: XAccount
    expires: float


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


@dataclass
class XStandIn:
    base_url: str
    client_id: str
    client_secret: str
    consumer_key: str
    consumer_secret: str
    callback_urls: Sequence[str]  # the app's registered callback URLs (both protocols)
    accounts: Sequence[XAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls.
    faults: dict[str, Fault] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    oauth1_requests: list[ReceivedRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    def __post_init__(self) -> None:
        self.pending = PendingRequests()
        self.verifier = RequestVerifier(self.consumer_key, self.consumer_secret,
                                        clock=lambda: self.clock())
        self._codes: dict[str, Grant] = {}
        self._bearer_tokens: dict[str, tuple[XAccount, frozenset[str], float]] = {}
        self._request_tokens: dict[str, RequestTokenRecord] = {}
        self._access_tokens: dict[str, tuple[str, XAccount]] = {}  # token -> (secret, account)

    # Endpoints, as the gateway's configuration names them.
    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/i/oauth2/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/2/oauth2/token"

    @property
    def userinfo_url(self) -> str:
        return f"{self.base_url}/2/users/me"

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

    def make_app(self) -> tornado.web.Application:
        kwargs = {"provider": self}
        return make_standin_app([
            (r"/i/oauth2/authorize", AuthorizeHandler, kwargs),
            (r"/i/oauth2/authorize/choose", ChooseAccountHandler, kwargs),
            (r"/2/oauth2/token", TokenHandler, kwargs),
            (r"/2/users/me", UsersMeHandler, kwargs),
            (r"/oauth/request_token", RequestTokenHandler, kwargs),
            (r"/oauth/authenticate", AuthenticateHandler, kwargs),
            (r"/oauth/authenticate/choose", AuthenticateChooseHandler, kwargs),
            (r"/oauth/access_token", AccessTokenHandler, kwargs),
            (r"/1\.1/account/verify_credentials\.json", VerifyCredentialsHandler, kwargs),
            (AVATAR_ROUTE, AvatarHandler, kwargs),
        ])

    def account(self, key: str | None) -> XAccount | None:
        return next((a for a in self.accounts if a.key == key), None)

    # OAuth 2.0 steps, called by the handlers.

    def check_authorization_request(self, params: dict[str, str | None]
                                    ) -> AuthorizationRequest:
        if params.get("client_id") != self.client_id:
            raise ProtocolError("invalid_client", "This app is not registered with X.", 400)
        redirect_uri = params.get("redirect_uri")
        if redirect_uri not in self.callback_urls:
            raise ProtocolError("invalid_request",
                                "The redirect_uri is not a callback URL of this app.")
        if params.get("response_type") != "code":
            raise ProtocolError("unsupported_response_type", "response_type must be code.")
        scope = tuple((params.get("scope") or "").split())
        if not scope or any(s not in SUPPORTED_SCOPES for s in scope):
            raise ProtocolError("invalid_scope", "Some requested scopes were invalid.")
        state = params.get("state")
        if not state or len(state) > 500:
            raise ProtocolError("invalid_request", "state is required (at most 500 characters).")
        challenge = params.get("code_challenge")
        if not challenge or params.get("code_challenge_method") != "S256":
            raise ProtocolError("invalid_request", "A code_challenge with S256 is required.")
        assert redirect_uri is not None
        return AuthorizationRequest(self.client_id, redirect_uri, scope, state, challenge)

    def approve(self, request: AuthorizationRequest, account: XAccount) -> str:
        code = secrets.token_urlsafe(48)
        self._codes[code] = Grant(request, account, self.clock() + CODE_LIFETIME)
        return code

    def exchange_code(self, form: dict[str, str | None], authorization: str | None
                      ) -> dict[str, Any]:
        self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise ProtocolError("unsupported_grant_type", "grant_type must be authorization_code.")
        code = form.get("code")
        grant = self._codes.pop(code, None) if code else None  # single use
        if grant is None or grant.expires < self.clock():
            raise ProtocolError("invalid_grant",
                                "Value passed for the authorization code was invalid.")
        if form.get("redirect_uri") != grant.request.redirect_uri:
            raise ProtocolError("invalid_grant", "Value passed for the redirect uri was invalid.")
        verifier = form.get("code_verifier")
        if not verifier or not pkce_matches(grant.request.code_challenge, "S256", verifier):
            raise ProtocolError("invalid_grant", "Value passed for the code verifier was invalid.")
        access_token = secrets.token_urlsafe(64)
        self._bearer_tokens[access_token] = (grant.account, frozenset(grant.request.scope),
                                             self.clock() + ACCESS_TOKEN_LIFETIME)
        return {"token_type": "bearer", "expires_in": ACCESS_TOKEN_LIFETIME,
                "access_token": access_token, "scope": " ".join(grant.request.scope)}

    def users_me(self, authorization: str | None, user_fields: str | None) -> dict[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        entry = self._bearer_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or entry[2] < self.clock():
            raise Problem(401, "Unauthorized", "Unauthorized")
        account, scope, _ = entry
        if not scope >= ME_SCOPES:
            raise Problem(403, "Forbidden", "Missing scopes: tweet.read users.read")
        fields = set((user_fields or "").split(",")) - {""}
        unknown = sorted(fields - USER_FIELDS)
        if unknown:
            raise Problem(
                400, "Invalid Request", "One or more parameters to your request was invalid.",
                type="https://api.twitter.com/2/problems/invalid-request",
                errors=({"parameters": {"user.fields": unknown},
                         "message": f"The `user.fields` query parameter value {unknown} is not "
                                    f"one of the known fields"},))
        return {"data": account.v2(fields, scope, self.base_url)}

    def _authenticate_client(self, form: dict[str, str | None],
                             authorization: str | None) -> None:
        """X: a confidential client authenticates with HTTP Basic, nothing else (RFC 6749
        2.3: never two methods in one request)."""
        basic = basic_credentials(authorization)
        if basic is None:
            raise ProtocolError("unauthorized_client", "Missing valid authorization header", 401)
        client_id, client_secret = basic
        if form.get("client_secret") is not None:
            raise ProtocolError("invalid_request", "Use one client authentication method.")
        if client_id != self.client_id or not secrets_equal(client_secret, self.client_secret) \
                or form.get("client_id") not in (None, self.client_id):
            raise ProtocolError("unauthorized_client", "Unauthorized", 401)

    # OAuth 1.0a steps: each gets the verified request.

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


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[XStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and the gateway's `providers.twitter` section for it.

    The mode is left to the gateway's default: `GATEWAY_PROVIDERS__TWITTER__MODE=oauth1`
    switches to OAuth 1.0a."""
    standin = XStandIn(
        base_url,
        client_id=secrets.token_urlsafe(24),  # X's OAuth 2.0 Client ID
        client_secret=secrets.token_urlsafe(38),
        consumer_key=secrets.token_urlsafe(18),  # X's API Key (25 characters)
        consumer_secret=secrets.token_urlsafe(37),
        callback_urls=[f"{gateway_issuer}/callback/twitter"],
    )
    section = {
        "client_id": standin.client_id,
        "client_secret": standin.client_secret,
        "consumer_key": standin.consumer_key,
        "consumer_secret": standin.consumer_secret,
        "authorize_url": standin.authorize_url,
        "token_url": standin.token_url,
        "userinfo_url": standin.userinfo_url,
        "request_token_url": standin.request_token_url,
        "authenticate_url": standin.authenticate_url,
        "access_token_url": standin.access_token_url,
        "verify_credentials_url": standin.verify_credentials_url,
    }
    return standin, section


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class XHandler(AccountChooserHandler):
    provider: XStandIn
    brand = BRAND

    def error_page(self, error: ProtocolError) -> None:
        self.set_status(error.status)
        self.render_page("provider_error.html", brand=BRAND, error=error.error,
                         description=error.description)

    def account_detail(self, account: XAccount) -> str:
        return account.email if account.email and account.email_confirmed \
            else "@" + account.username


class AuthorizeHandler(XHandler):
    endpoint = "authorize"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        names = ("client_id", "redirect_uri", "response_type", "scope", "state",
                 "code_challenge", "code_challenge_method")
        try:
            request = self.provider.check_authorization_request(
                {name: self.query_argument(name) for name in names})
        except ProtocolError as e:
            self.error_page(e)  # never redirect to an unverified redirect_uri
            return
        self.show_chooser(request, app=request.client_id, action="/i/oauth2/authorize/choose")


class ChooseAccountHandler(XHandler):
    endpoint = "authorize"

    def post(self) -> None:
        request = self.take_pending()
        if not isinstance(request, AuthorizationRequest):
            self.error_page(ProtocolError("invalid_request",
                                          "This sign-in page has expired. Start again."))
            return
        account = self.chosen_account()
        params: dict[str, str] = {"state": request.state}
        if account is None:
            params["error"] = "access_denied"
        else:
            params["code"] = self.provider.approve(request, account)
        self.redirect(url_concat(request.redirect_uri, params))


class TokenHandler(XHandler, OAuth2TokenHandler):
    """The token endpoint, as common to OAuth 2.0 providers."""


class UsersMeHandler(XHandler):
    endpoint = "me"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        try:
            answer = self.provider.users_me(self.request.headers.get("Authorization"),
                                            self.query_argument("user.fields"))
        except Problem as e:
            self.write_json(e.document(), e.status)
            return
        self.write_json(answer)


class OAuth1Handler(XHandler):
    """An OAuth 1.0a endpoint: the request parsed (and kept for tests), refusals as X's."""

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
        self.show_chooser(("oauth1", token), app=self.provider.consumer_key,
                          action="/oauth/authenticate/choose")


class AuthenticateChooseHandler(XHandler):
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

