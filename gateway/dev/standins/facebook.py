"""A local stand-in for Facebook Login and the Graph API, speaking Facebook's wire protocol.

Endpoints, as Facebook's (paths kept, every one under a `vNN.N` version segment, so that a
configuration differs only in the hosts; the real dialog and Graph API live on two hosts, the
stand-in serves both):
- `GET /<version>/dialog/oauth`: the Login dialog. An unknown `client_id` or a `redirect_uri`
  that is not registered is an error page (never a redirect), as at Facebook. Otherwise an
  account chooser; the choice redirects to `redirect_uri` with `code` and `state`, a cancel with
  Facebook's denial parameters (`error=access_denied&error_code=200&error_description=
  Permissions+error&error_reason=user_denied`). `scope` is comma- or space-separated; PKCE
  (`code_challenge`, `code_challenge_method` S256 or plain) is optional, as at Facebook.
- `GET|POST /<version>/oauth/access_token`: `client_id`, `client_secret`, `redirect_uri`, `code`
  (and `code_verifier` when the dialog had a challenge), in the query or a form body. Checks the
  secret, the code (single use, expiry, client), the `redirect_uri` (identical to the dialog's)
  and PKCE; answers `{"access_token", "token_type": "bearer", "expires_in"}`.
- `GET /<version>/me`: the User of an access token (`Authorization: Bearer|OAuth` or
  `access_token`), with `appsecret_proof` required (the app setting "Require App Secret" on),
  answering only the requested `fields` (`id`, `name`, `first_name`, `last_name`, `email`,
  `picture` with `type(...)`, `width(...)`, `height(...)`); `email` only when granted.
Errors are Graph API errors: HTTP 400 and `{"error": {"message", "type", "code", "fbtrace_id"}}`.

Tests steer it through `faults` (keyed "authorize", "token", "me") and read `token_requests`,
`me_requests` and `graph_calls` (which endpoint, method and API version was called).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import tornado.web

from gateway.dev.standins.common import (
    DEV_ACCOUNTS,
    AccountBook,
    AccountChooserHandler,
    AuthorizationRequest,
    Avatar,
    DevUser,
    Fault,
    Grant,
    PendingRequests,
    bearer_token,
    make_avatar,
    make_standin_app,
    pkce_matches,
    secrets_equal,
)

__all__ = ["DEV_USERS", "FacebookAccount", "FacebookStandIn", "Fault", "GraphCall",
           "dev_provider"]

VERSION = r"(v\d{1,3}\.\d{1,2})"  # the path segment every endpoint starts with
CODE_LIFETIME = 600  # seconds; Facebook's codes expire after about ten minutes
ACCESS_TOKEN_LIFETIME = 5_183_944  # a long-lived user token, about 60 days
SUPPORTED_SCOPES = ("public_profile", "email")
USER_FIELDS = ("id", "name", "first_name", "last_name", "email", "picture")
DEFAULT_FIELDS = ("id", "name")  # what /me answers without `fields`
PICTURE_SIZES = {"small": 50, "normal": 100, "album": 50, "large": 200, "square": 50}


@dataclass(frozen=True)
class FacebookAccount:
    """A test account as this app sees it: an app-scoped numeric id and a picture."""

    key: str
    id: str  # app-scoped user id (ASID): numeric, stable per app
    name: str
    first_name: str
    last_name: str
    email: str | None  # None: this user does not share an email with the app
    avatar: Avatar


def _account(user: DevUser, colour: str) -> FacebookAccount:
    digits = str(int.from_bytes(hashlib.sha256(b"facebook:" + user.key.encode()).digest()[:8]))
    asid = ("10" + digits + "0" * 16)[:16]  # ASIDs are 15-17 digit strings
    # Alan signs in without granting the email permission: Facebook then returns no `email`.
    email = None if user.key == "alan" else user.email
    return FacebookAccount(user.key, asid, user.name, user.given_name, user.family_name,
                           email, make_avatar("facebook", user, colour))


DEV_USERS: tuple[FacebookAccount, ...] = tuple(
    _account(user, colour)
    for user, colour in zip(DEV_ACCOUNTS, ("#1877f2", "#42b72a", "#f02849"), strict=True)
)


@dataclass(frozen=True)
class GraphCall:
    """One request the stand-in received: which endpoint, how, at which API version."""

    endpoint: str  # "authorize", "token", "me"
    method: str
    version: str
    query_names: tuple[str, ...]  # names of the URL's query parameters (values not kept)


@dataclass(frozen=True)
class AccessGrant:
    """What an access token stands for."""

    account: FacebookAccount
    scope: tuple[str, ...]
    expires: float


@dataclass(frozen=True)
class GraphError(Exception):
    """A Graph API error answer, as Facebook words it."""

    message: str
    type: str = "OAuthException"
    code: int = 100
    subcode: int | None = None
    status: int = 400

    def document(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = secrets.token_urlsafe(8)
        return {"error": error}


@dataclass
class FacebookStandIn(AccountBook[FacebookAccount]):
    base_url: str
    client_id: str  # the App ID
    client_secret: str  # the App Secret
    redirect_uris: Sequence[str]  # "Valid OAuth Redirect URIs"
    accounts: Sequence[FacebookAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls and records.
    faults: dict[str, Fault] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    me_requests: list[dict[str, str]] = field(default_factory=list)
    graph_calls: list[GraphCall] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    def __post_init__(self) -> None:
        self.pending = PendingRequests()
        self._codes: dict[str, Grant[FacebookAccount]] = {}
        self._used_codes: set[str] = set()
        self._access_tokens: dict[str, AccessGrant] = {}

    # Endpoints, as the gateway's configuration names them (version-less bases).
    @property
    def dialog_url(self) -> str:
        return self.base_url

    @property
    def graph_url(self) -> str:
        return self.base_url

    @property
    def versions_called(self) -> set[str]:
        return {call.version for call in self.graph_calls}

    def make_app(self) -> tornado.web.Application:
        return make_standin_app(self, [
            (rf"/{VERSION}/dialog/oauth", AuthorizeHandler),
            (rf"/{VERSION}/dialog/oauth/choose", ChooseAccountHandler),
            (rf"/{VERSION}/oauth/access_token", AccessTokenHandler),
            (rf"/{VERSION}/me", MeHandler),
        ])

    # Protocol steps, called by the handlers.

    def check_dialog_request(self, params: dict[str, str | None]) -> AuthorizationRequest:
        if params.get("client_id") != self.client_id:
            raise GraphError("Invalid App ID: The provided app ID does not look like a valid "
                             "app ID.", code=101)
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None or redirect_uri not in self.redirect_uris:
            raise GraphError("URL blocked: This redirect failed because the redirect URI is not "
                             "whitelisted in the app's Client OAuth Settings.", code=191)
        if (params.get("response_type") or "code") != "code":
            raise GraphError("Unsupported response_type.", code=100)
        scope = tuple(s for s in re.split(r"[,\s]+", params.get("scope") or "") if s)
        unknown = [s for s in scope if s not in SUPPORTED_SCOPES]
        if unknown:
            raise GraphError(f"Invalid Scopes: {', '.join(unknown)}.", code=100)
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method") or "plain"
        if challenge is not None and method not in ("S256", "plain"):
            raise GraphError("Invalid code_challenge_method.", code=100)
        # public_profile is always granted, whether asked for or not.
        granted = tuple(dict.fromkeys(("public_profile", *scope)))
        return AuthorizationRequest(self.client_id, redirect_uri, granted, params.get("state"),
                                    challenge, method)

    def approve(self, request: AuthorizationRequest, account: FacebookAccount) -> str:
        code = "AQ" + secrets.token_urlsafe(96)
        self._codes[code] = Grant(request, account, self.clock() + CODE_LIFETIME)
        return code

    def exchange_code(self, params: dict[str, str | None]) -> dict[str, Any]:
        if params.get("client_id") != self.client_id:
            raise GraphError("Error validating application. Invalid application ID.", code=101)
        if not secrets_equal(params.get("client_secret"), self.client_secret):
            raise GraphError("Error validating client secret.", code=1)
        code = params.get("code")
        if not code:
            raise GraphError("Missing authorization code.", code=1)
        grant = self._codes.pop(code, None)  # single use, whatever comes next
        if grant is None:
            if code in self._used_codes:
                raise GraphError("This authorization code has been used.", subcode=36009)
            raise GraphError("Invalid verification code format.")
        self._used_codes.add(code)
        if grant.expires < self.clock():
            raise GraphError("This authorization code has expired.", subcode=36007)
        if params.get("redirect_uri") != grant.request.redirect_uri:
            raise GraphError("Error validating verification code. Please make sure your "
                             "redirect_uri is identical to the one you used in the OAuth dialog "
                             "request", subcode=36008)
        if grant.request.code_challenge is not None:
            verifier = params.get("code_verifier")
            if not verifier or not pkce_matches(grant.request.code_challenge,
                                                grant.request.code_challenge_method, verifier):
                raise GraphError("Invalid code verifier.")
        alphabet = string.ascii_letters + string.digits
        access_token = "EAA" + "".join(secrets.choice(alphabet) for _ in range(180))
        self._access_tokens[access_token] = AccessGrant(
            grant.account, grant.request.scope, self.clock() + ACCESS_TOKEN_LIFETIME)
        return {"access_token": access_token, "token_type": "bearer",
                "expires_in": ACCESS_TOKEN_LIFETIME}

    def me(self, access_token: str | None, proof: str | None,
           fields: str | None) -> dict[str, Any]:
        if not access_token:
            raise GraphError("An active access token must be used to query information about "
                             "the current user.", code=2500)
        grant = self._access_tokens.get(access_token)
        if grant is None:
            raise GraphError("Invalid OAuth access token - Cannot parse access token", code=190)
        if grant.expires < self.clock():
            raise GraphError("Error validating access token: Session has expired.", code=190,
                             subcode=463)
        if not proof:
            raise GraphError("API calls from the server require an appsecret_proof argument",
                             type="GraphMethodException")
        expected = appsecret_proof(self.client_secret, access_token)
        if not hmac.compare_digest(proof.encode(), expected.encode()):
            raise GraphError("Invalid appsecret_proof provided in the API argument",
                             type="GraphMethodException")
        return user_fields(grant, parse_fields(fields), self.base_url)


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """What Facebook expects: hex HMAC-SHA256 of the access token keyed by the App Secret."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


_FIELD = re.compile(r"([a-z_]+)((?:\.[a-z_]+\([a-z0-9_]*\))*)")
_MODIFIER = re.compile(r"\.([a-z_]+)\(([a-z0-9_]*)\)")


def parse_fields(fields: str | None) -> dict[str, dict[str, str]]:
    """`id,name,picture.type(large)` -> {"id": {}, "name": {}, "picture": {"type": "large"}}."""
    if fields is None:
        return {name: {} for name in DEFAULT_FIELDS}
    parsed: dict[str, dict[str, str]] = {}
    for item in (part.strip() for part in fields.split(",")):
        match = _FIELD.fullmatch(item)
        if match is None:
            raise GraphError("Syntax error in the fields parameter.", code=2500)
        name = match.group(1)
        if name not in USER_FIELDS:
            raise GraphError(f"(#100) Tried accessing nonexisting field ({name}) on node type "
                             "(User)")
        modifiers = dict(_MODIFIER.findall(match.group(2)))
        if modifiers and name != "picture":
            raise GraphError(f"(#100) Unknown fields: {name}.")
        parsed[name] = modifiers
    return parsed


def user_fields(grant: AccessGrant, fields: dict[str, dict[str, str]], base_url: str
                ) -> dict[str, Any]:
    account = grant.account
    values: dict[str, Any] = {"id": account.id, "name": account.name,
                              "first_name": account.first_name, "last_name": account.last_name}
    if account.email is not None and "email" in grant.scope:
        values["email"] = account.email
    answer: dict[str, Any] = {}
    for name, modifiers in fields.items():
        if name == "picture":
            answer["picture"] = picture(account, modifiers, base_url)
        elif name in values:
            answer[name] = values[name]
    return answer


def picture(account: FacebookAccount, modifiers: dict[str, str], base_url: str
            ) -> dict[str, Any]:
    """The `picture` field as Facebook wraps it (Facebook's URLs are on
    platform-lookaside.fbsbx.com; ours on the stand-in)."""
    unknown = set(modifiers) - {"type", "width", "height"}
    if unknown or modifiers.get("type", "small") not in PICTURE_SIZES:
        raise GraphError("(#100) Invalid picture parameters.")
    size = PICTURE_SIZES[modifiers.get("type", "small")]
    width = int(modifiers["width"]) if modifiers.get("width", "").isdigit() else size
    height = int(modifiers["height"]) if modifiers.get("height", "").isdigit() else width
    return {"data": {"height": height, "width": width, "is_silhouette": False,
                     "url": account.avatar.url(base_url)}}


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[FacebookStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and the gateway's `providers.facebook` section."""
    client_id = str(10**15 + secrets.randbelow(9 * 10**15))  # App IDs are 15-16 digits
    client_secret = secrets.token_hex(16)  # App Secrets are 32 hex digits
    standin = FacebookStandIn(base_url, client_id, client_secret,
                              [f"{gateway_issuer}/callback/facebook"])
    section = {
        "client_id": client_id,
        "client_secret": client_secret,
        "dialog_url": standin.dialog_url,
        "graph_url": standin.graph_url,
    }
    return standin, section


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class FacebookHandler(AccountChooserHandler):
    provider: FacebookStandIn
    brand = "Facebook"

    def account_detail(self, account: FacebookAccount) -> str:
        return account.email or "does not share an email address"

    def record(self, version: str) -> None:
        self.provider.graph_calls.append(GraphCall(
            self.endpoint, self.request.method or "GET", version,
            tuple(self.request.query_arguments)))

    def error_page(self, error: GraphError) -> None:
        self.set_status(400)
        self.render_page("provider_error.html", brand="Facebook", error=error.code,
                         description=error.message)

    def graph_error(self, error: GraphError) -> None:
        if error.code == 190:
            self.set_header("WWW-Authenticate", 'OAuth "Facebook Platform" "invalid_token" '
                            f'"{error.message}"')
        self.write_json(error.document(), error.status)


class AuthorizeHandler(FacebookHandler):
    endpoint = "authorize"

    async def get(self, version: str) -> None:
        self.record(version)
        if await self.answer_fault():
            return
        try:
            request = self.provider.check_dialog_request(self.query_arguments_once())
        except GraphError as e:
            self.error_page(e)  # never redirect to an unverified redirect_uri
            return
        self.show_chooser(request, app=request.client_id)


class ChooseAccountHandler(FacebookHandler):
    """The account chooser's form: continue as one account, or cancel."""

    endpoint = "authorize"

    def post(self, version: str) -> None:
        request = self.take_pending()
        if not isinstance(request, AuthorizationRequest):
            self.error_page(GraphError("This login page has expired. Start again."))
            return
        account = self.chosen_account()
        if account is None:
            params = {"error": "access_denied", "error_code": "200",
                      "error_description": "Permissions error", "error_reason": "user_denied"}
        else:
            params = {"code": self.provider.approve(request, account)}
        if request.state is not None:
            params["state"] = request.state
        # Facebook appends this fragment to every redirect back.
        self.redirect(f"{request.redirect_uri}?{urlencode(params)}#_=_")


class AccessTokenHandler(FacebookHandler):
    endpoint = "token"

    async def get(self, version: str) -> None:
        await self.exchange(version)

    async def post(self, version: str) -> None:
        await self.exchange(version)

    async def exchange(self, version: str) -> None:
        self.record(version)
        query = self.query_arguments_once()
        body = ({name: self.form_argument(name) for name in self.request.body_arguments}
                if self.is_form_encoded() else {})
        params = {**query, **body}
        # Recorded even when a fault answers, so a test sees what the gateway sent.
        self.provider.token_requests.append({k: v for k, v in params.items() if v is not None})
        if await self.answer_fault():
            return
        try:
            if set(query) & set(body):
                raise GraphError("A parameter was given in both the URL and the body.")
            answer = self.provider.exchange_code(params)
        except GraphError as e:
            self.graph_error(e)
            return
        self.write_json(answer)


class MeHandler(FacebookHandler):
    endpoint = "me"

    async def get(self, version: str) -> None:
        self.record(version)
        query = self.query_arguments_once()
        self.provider.me_requests.append({k: v for k, v in query.items() if v is not None})
        if await self.answer_fault():
            return
        token = bearer_token(self.request.headers.get("Authorization"), ("bearer", "oauth"))
        if token is None:
            token = query.get("access_token")
        try:
            answer = self.provider.me(token, query.get("appsecret_proof"), query.get("fields"))
        except GraphError as e:
            self.graph_error(e)
            return
        self.write_json(answer)
