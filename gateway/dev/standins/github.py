"""A local stand-in for GitHub's OAuth apps and REST API, speaking GitHub's wire protocol.

Endpoints on GitHub's paths: the web host's at the root, the API's under `/api/v3`, on one
origin as GitHub Enterprise Server lays them out (github.com's API is at the root of
api.github.com instead; a configuration differs only in its URLs):

- `GET /login/oauth/authorize`: `client_id`, `redirect_uri`, `scope` (space-separated; names
  GitHub does not know are ignored), `state`, and optionally PKCE (`code_challenge` with
  `code_challenge_method=S256`, the only method GitHub accepts; GitHub does not require PKCE).
  An unknown `client_id` is a 404 page. A `redirect_uri` is accepted on the host and port of
  the app's callback URL, with its path or one below it; absent, the callback URL is used; one
  that does not match sends the browser to the registered callback URL with
  `error=redirect_uri_mismatch`, as GitHub does (never to the unverified URL). Otherwise an
  account chooser; the choice redirects with `code` and `state`, a cancel with
  `error=access_denied`, `error_description`, `error_uri` and `state`.
- `POST /login/oauth/access_token`: `client_id`, `client_secret`, `code`, `redirect_uri`
  (optional; when given, the authorization request's) and `code_verifier` (when the request
  had a challenge), form-encoded. The code is single use and lives 10 minutes. The answer is
  JSON when the request's `Accept` asks for `application/json`, else form-encoded
  (`access_token=gho_...&scope=read%3Auser%2Cuser%3Aemail&token_type=bearer`); a refusal is
  HTTP 200 too, with `error`, `error_description` and `error_uri` (`incorrect_client_credentials`,
  `redirect_uri_mismatch`, `bad_verification_code`). GitHub documents no error of its own for
  a wrong `code_verifier`: the stand-in answers `bad_verification_code`.
- `GET /api/v3/user` and `GET /api/v3/user/emails`: a `User-Agent` is required (403, as at
  GitHub), so is the token (`Authorization: Bearer` or `token`; 401 "Bad credentials"); an
  `X-GitHub-Api-Version` GitHub does not know is a 400. `/user/emails` needs the `user:email`
  or `user` scope (404 otherwise) and pages by `per_page` (default 30, at most 100) and `page`.

The test users cover what GitHub's emails can say (SECURITY C7): Ada's primary address is
verified and public; Grace's is verified and private (`/user`'s `email` is null); Alan's only
address, at example.org, is primary but unverified; Margaret's primary is verified at
example.net, and her verified example.org address is neither primary nor anything but public.

Tests steer it through `faults` (keyed "authorize", "token", "user", "emails") and
`form_answers`, and read `token_requests`, `api_requests` and `calls`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import tornado.escape
import tornado.web
from tornado.httputil import url_concat

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
    make_avatar,
    make_standin_app,
    pkce_matches,
    secrets_equal,
)

__all__ = ["DEV_USERS", "Fault", "GitHubAccount", "GitHubEmail", "GitHubStandIn",
           "dev_provider"]

BRAND = "GitHub"
CODE_LIFETIME = 600  # "Exchange this code for an access token ... expires after 10 minutes"
API_PREFIX = "/api/v3"
API_VERSIONS = frozenset(("2022-11-28",))  # what X-GitHub-Api-Version may name
# The OAuth app scopes GitHub knows ("Scopes for OAuth apps"); others are ignored.
KNOWN_SCOPES = frozenset((
    "repo", "repo:status", "repo_deployment", "public_repo", "repo:invite", "security_events",
    "admin:repo_hook", "write:repo_hook", "read:repo_hook", "admin:org", "write:org",
    "read:org", "admin:public_key", "write:public_key", "read:public_key", "admin:org_hook",
    "gist", "notifications", "user", "read:user", "user:email", "user:follow", "project",
    "read:project", "delete_repo", "write:packages", "read:packages", "delete:packages",
    "admin:gpg_key", "write:gpg_key", "read:gpg_key", "codespace", "workflow",
))
EMAIL_SCOPES = frozenset(("user:email", "user"))
DOCS = "https://docs.github.com"
TROUBLESHOOTING = (f"{DOCS}/apps/managing-oauth-apps/"
                   "troubleshooting-oauth-app-access-token-request-errors")
USER_AGENT_REQUIRED = (
    "Request forbidden by administrative rules. Please make sure your request has a User-Agent "
    f"header ({DOCS}/rest/overview/resources-in-the-rest-api#user-agent-required). Check "
    "https://developer.github.com for other possible causes.\n")


@dataclass(frozen=True)
class GitHubEmail:
    """One of an account's addresses, as `/user/emails` lists it."""

    email: str
    primary: bool
    verified: bool
    visibility: str | None = None  # "public" or "private" for the primary address; else null

    def document(self) -> dict[str, Any]:
        return {"email": self.email, "primary": self.primary, "verified": self.verified,
                "visibility": self.visibility}


@dataclass(frozen=True)
class GitHubAccount:
    """A test account as GitHub describes it: a numeric id, a login, its addresses."""

    key: str
    id: int
    login: str
    name: str | None
    public_email: str | None  # `/user`'s `email`: the profile's public address, or null
    emails: tuple[GitHubEmail, ...]
    avatar: Avatar  # GitHub's are https URLs on avatars.githubusercontent.com

    @property
    def email(self) -> str | None:
        """The primary address, verified or not."""
        return next((e.email for e in self.emails if e.primary), None)

    @property
    def verified_email(self) -> str | None:
        """What GitHub vouches for as the user's address: the primary one, when verified."""
        return next((e.email for e in self.emails if e.primary and e.verified), None)

    def user(self, base_url: str) -> dict[str, Any]:
        """`GET /user` for a token with `read:user`: the public profile (an excerpt)."""
        api = f"{base_url}{API_PREFIX}/users/{self.login}"
        return {
            "login": self.login, "id": self.id, "node_id": f"U_kgDO{self.id:08d}",
            "avatar_url": self.avatar.url(base_url), "gravatar_id": "", "url": api,
            "html_url": f"{base_url}/{self.login}", "type": "User", "user_view_type": "public",
            "site_admin": False, "name": self.name, "company": None, "blog": "",
            "location": None, "email": self.public_email, "hireable": None, "bio": None,
            "twitter_username": None, "notification_email": self.public_email,
            "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
            "created_at": "2011-01-25T18:44:36Z", "updated_at": "2026-01-05T10:00:00Z",
        }


def _account(user: DevUser, colour: str, public_email: str | None,
             *emails: GitHubEmail) -> GitHubAccount:
    digest = hashlib.sha256(b"github:" + user.key.encode()).digest()
    user_id = 1_000_000 + int.from_bytes(digest[:3])  # 7-8 digits, as GitHub's ids
    return GitHubAccount(user.key, user_id, user.username, user.name, public_email, emails,
                         make_avatar("github", user, colour))


_ADA, _GRACE, _ALAN = DEV_ACCOUNTS
MARGARET = DevUser("margaret", "Margaret Hamilton", "Margaret", "Hamilton",
                   "margaret@example.net", True, "margaret")
DEV_USERS: tuple[GitHubAccount, ...] = (
    _account(_ADA, "#24292f", "ada@example.com",
             GitHubEmail("ada@example.com", primary=True, verified=True, visibility="public")),
    _account(_GRACE, "#0969da", None,
             GitHubEmail("grace@example.com", primary=True, verified=True,
                         visibility="private")),
    _account(_ALAN, "#57606a", None,
             GitHubEmail("alan@example.org", primary=True, verified=False,
                         visibility="private")),
    # Her verified non-primary address listed first: GitHub promises no order.
    _account(MARGARET, "#8250df", "margaret@example.org",
             GitHubEmail("margaret@example.org", primary=False, verified=True),
             GitHubEmail("margaret@example.net", primary=True, verified=True,
                         visibility="private")),
)


@dataclass(frozen=True)
class OAuthError(Exception):
    """A refusal of GitHub's OAuth endpoints: `error`, `error_description`, `error_uri`."""

    error: str
    description: str
    uri: str = TROUBLESHOOTING

    def document(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description,
                "error_uri": self.uri}


@dataclass(frozen=True)
class PageError(Exception):
    """An authorization request GitHub answers with a page of its own."""

    status: int
    description: str


@dataclass(frozen=True)
class ApiError(Exception):
    """A REST API refusal: `{"message", "documentation_url", "status"}`."""

    status: int
    message: str

    def document(self) -> dict[str, str]:
        return {"message": self.message, "documentation_url": f"{DOCS}/rest",
                "status": str(self.status)}


@dataclass(frozen=True)
class AccessGrant:
    """An OAuth app's user token: it does not expire; it lasts until revoked."""

    account: GitHubAccount
    scope: frozenset[str]


@dataclass(frozen=True)
class TokenRequest:
    """A request to the token endpoint as received: its form and its Accept header."""

    form: dict[str, str]
    accept: str


@dataclass(frozen=True)
class ApiRequest:
    """A REST API request as received (the token itself left out)."""

    path: str
    query: dict[str, str]
    accept: str | None
    api_version: str | None
    user_agent: str | None
    authorization_scheme: str | None


@dataclass
class GitHubStandIn(AccountBook[GitHubAccount]):
    """GitHub for one OAuth app, whose one authorization callback URL is `callback_url`."""

    base_url: str
    client_id: str
    client_secret: str
    callback_url: str
    app_name: str = "OAuth gateway (dev)"
    accounts: Sequence[GitHubAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls.
    faults: dict[str, Fault] = field(default_factory=dict)
    # Answer the token endpoint form-encoded whatever the request's Accept (what GitHub does
    # when a client's Accept is lost or ignored on the way).
    form_answers: bool = False
    token_requests: list[TokenRequest] = field(default_factory=list)
    api_requests: list[ApiRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    def __post_init__(self) -> None:
        self.pending = PendingRequests()
        self._codes: dict[str, Grant[GitHubAccount]] = {}
        self._access_tokens: dict[str, AccessGrant] = {}

    # Endpoints, as the gateway's configuration names them.
    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/login/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/login/oauth/access_token"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    def make_app(self) -> tornado.web.Application:
        return make_standin_app(self, [
            (r"/login/oauth/authorize", AuthorizeHandler),
            (r"/login/oauth/authorize/choose", ChooseAccountHandler),
            (r"/login/oauth/access_token", AccessTokenHandler),
            (rf"{API_PREFIX}/user", UserHandler),
            (rf"{API_PREFIX}/user/emails", EmailsHandler),
        ])

    # Protocol steps, called by the handlers.

    def check_authorization_request(self, params: dict[str, str | None]
                                    ) -> AuthorizationRequest:
        """The request, or PageError (a page at GitHub), or OAuthError (sent to the
        registered callback URL)."""
        if params.get("client_id") != self.client_id:
            raise PageError(404, "This application could not be found.")
        redirect_uri = params.get("redirect_uri") or self.callback_url
        if not redirect_uri_matches(self.callback_url, redirect_uri):
            raise OAuthError("redirect_uri_mismatch", "The redirect_uri MUST match the "
                             "registered callback URL for this application.",
                             f"{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-"
                             "request-errors/#redirect-uri-mismatch")
        challenge = params.get("code_challenge")
        if challenge is not None and params.get("code_challenge_method") != "S256":
            raise PageError(400, "Only the S256 code_challenge_method is supported.")
        asked = re.split(r"[\s,]+", params.get("scope") or "")
        scope = tuple(dict.fromkeys(s for s in asked if s in KNOWN_SCOPES))
        return AuthorizationRequest(self.client_id, redirect_uri, scope, params.get("state"),
                                    challenge)

    def approve(self, request: AuthorizationRequest, account: GitHubAccount) -> str:
        code = secrets.token_hex(10)  # GitHub's codes: 20 hex digits
        self._codes[code] = Grant(request, account, self.clock() + CODE_LIFETIME)
        return code

    def exchange_code(self, form: dict[str, str]) -> dict[str, str]:
        if form.get("client_id") != self.client_id \
                or not secrets_equal(form.get("client_secret"), self.client_secret):
            raise OAuthError("incorrect_client_credentials",
                             "The client_id and/or client_secret passed are incorrect.",
                             f"{TROUBLESHOOTING}/#incorrect-client-credentials")
        code = form.get("code")
        grant = self._codes.pop(code, None) if code else None  # single use
        if grant is None or grant.expires < self.clock():
            raise _bad_verification_code("The code passed is incorrect or expired.")
        redirect_uri = form.get("redirect_uri")
        if redirect_uri is not None and redirect_uri != grant.request.redirect_uri:
            raise OAuthError("redirect_uri_mismatch", "The redirect_uri MUST match the "
                             "registered callback URL for this application.",
                             f"{TROUBLESHOOTING}/#redirect-uri-mismatch")
        challenge = grant.request.code_challenge
        if challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier or not pkce_matches(challenge, "S256", verifier):
                raise _bad_verification_code("The code_verifier does not match the "
                                             "code_challenge.")
        alphabet = string.ascii_letters + string.digits
        token = "gho_" + "".join(secrets.choice(alphabet) for _ in range(36))
        self._access_tokens[token] = AccessGrant(grant.account, frozenset(grant.request.scope))
        return {"access_token": token, "token_type": "bearer",
                "scope": ",".join(grant.request.scope)}

    def authorized(self, authorization: str | None) -> AccessGrant:
        scheme, _, token = (authorization or "").partition(" ")
        if not token:
            raise ApiError(401, "Requires authentication")
        grant = self._access_tokens.get(token.strip()) \
            if scheme.lower() in ("bearer", "token") else None
        if grant is None:
            raise ApiError(401, "Bad credentials")
        return grant

    def emails_page(self, grant: AccessGrant, per_page: str | None, page: str | None
                    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the addresses, and the number of the next one, if any."""
        if not grant.scope & EMAIL_SCOPES:
            raise ApiError(404, "Not Found")
        size = min(int(per_page), 100) if per_page and per_page.isdigit() and int(per_page) \
            else 30
        number = int(page) if page and page.isdigit() and int(page) else 1
        emails = [e.document() for e in grant.account.emails]
        start = (number - 1) * size
        return emails[start:start + size], number + 1 if len(emails) > start + size else None


def _bad_verification_code(description: str) -> OAuthError:
    return OAuthError("bad_verification_code", description,
                      f"{TROUBLESHOOTING}/#bad-verification-code")


def redirect_uri_matches(callback_url: str, redirect_uri: str) -> bool:
    """GitHub: the redirect URL's host and port must be the callback URL's, its path the
    callback URL's or a subdirectory of it."""
    registered, given = urlsplit(callback_url), urlsplit(redirect_uri)
    base = registered.path.rstrip("/")
    return (given.scheme, given.netloc) == (registered.scheme, registered.netloc) \
        and (given.path == registered.path or given.path.startswith(base + "/")) \
        and "/../" not in given.path + "/"


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[GitHubStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and the gateway's `providers.github` section."""
    standin = GitHubStandIn(
        base_url,
        client_id="Ov23li" + secrets.token_hex(7),  # an OAuth app's Client ID: 20 characters
        client_secret=secrets.token_hex(20),  # 40 hex digits, as GitHub's
        callback_url=f"{gateway_issuer}/callback/github",
    )
    section = {
        "client_id": standin.client_id,
        "client_secret": standin.client_secret,
        "authorize_url": standin.authorize_url,
        "token_url": standin.token_url,
        "api_url": standin.api_url,
    }
    return standin, section


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class GitHubHandler(AccountChooserHandler):
    provider: GitHubStandIn
    brand = BRAND

    def account_detail(self, account: GitHubAccount) -> str:
        """The login, the primary address (marked when unverified), other addresses."""
        parts = [f"@{account.login}"]
        for entry in sorted(account.emails, key=lambda e: not e.primary):
            parts.append(("" if entry.primary else "also ") + entry.email
                         + ("" if entry.verified else " (unverified)"))
        return " · ".join(parts)

    def error_page(self, error: PageError) -> None:
        self.set_status(error.status)
        self.render_page("provider_error.html", brand=BRAND, error=str(error.status),
                         description=error.description)


class AuthorizeHandler(GitHubHandler):
    endpoint = "authorize"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        params = self.query_arguments_once()
        try:
            request = self.provider.check_authorization_request(params)
        except PageError as e:
            self.error_page(e)
            return
        except OAuthError as e:
            answer = e.document()
            state = params.get("state")
            if state is not None:
                answer["state"] = state
            self.redirect(url_concat(self.provider.callback_url, answer))
            return
        self.show_chooser(request, app=self.provider.app_name)


class ChooseAccountHandler(GitHubHandler):
    """The chooser's form: authorize as one account, or cancel."""

    endpoint = "authorize"

    def post(self) -> None:
        request = self.take_pending()
        if not isinstance(request, AuthorizationRequest):
            self.error_page(PageError(400, "This page has expired. Start again."))
            return
        account = self.chosen_account()
        if account is None:
            params = OAuthError(
                "access_denied", "The user has denied your application access.",
                f"{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors"
                "/#access-denied").document()
        else:
            params = {"code": self.provider.approve(request, account)}
        if request.state is not None:
            params["state"] = request.state
        self.redirect(url_concat(request.redirect_uri, params))


class AccessTokenHandler(GitHubHandler):
    endpoint = "token"

    async def post(self) -> None:
        accept = self.request.headers.get("Accept", "")
        form = {name: value for name in self.request.body_arguments
                if (value := self.form_argument(name)) is not None} \
            if self.is_form_encoded() else {}
        # Recorded even when a fault answers, so a test sees what the gateway sent.
        self.provider.token_requests.append(TokenRequest(form, accept))
        if await self.answer_fault():
            return
        try:
            answer = self.provider.exchange_code(form)
        except OAuthError as e:
            answer = e.document()  # GitHub's refusals are HTTP 200 too
        self.set_status(200)
        if "application/json" in accept.lower() and not self.provider.form_answers:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(tornado.escape.json_encode(answer))
        else:
            self.set_header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
            self.finish(urlencode(answer))


class ApiHandler(GitHubHandler):
    """A REST API endpoint: the request recorded, then GitHub's checks in its order."""

    async def answer_api(self) -> AccessGrant | None:
        """The token's grant, or None when the request has been answered already."""
        headers = self.request.headers
        authorization = headers.get("Authorization")
        self.provider.api_requests.append(ApiRequest(
            self.request.path,
            {name: value for name in self.request.query_arguments
             if (value := self.query_argument(name)) is not None},
            headers.get("Accept"), headers.get("X-GitHub-Api-Version"),
            headers.get("User-Agent"),
            authorization.partition(" ")[0] if authorization else None))
        if await self.answer_fault():
            return None
        if not headers.get("User-Agent"):
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(USER_AGENT_REQUIRED)
            return None
        version = headers.get("X-GitHub-Api-Version")
        try:
            if version is not None and version not in API_VERSIONS:
                raise ApiError(400, f"API version {version} is not supported.")
            grant = self.provider.authorized(authorization)
        except ApiError as e:
            self.api_error(e)
            return None
        self.set_header("X-OAuth-Scopes", ", ".join(sorted(grant.scope)))
        self.set_header("X-GitHub-Api-Version-Selected", version or "2022-11-28")
        self.set_header("X-GitHub-Media-Type", "github.v3; format=json")
        return grant

    def api_error(self, error: ApiError) -> None:
        if error.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="GitHub"')
        self.write_api(error.document(), error.status)

    def write_api(self, document: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(tornado.escape.json_encode(document))


class UserHandler(ApiHandler):
    endpoint = "user"

    async def get(self) -> None:
        grant = await self.answer_api()
        if grant is not None:
            self.set_header("X-Accepted-OAuth-Scopes", "")
            self.write_api(grant.account.user(self.provider.base_url))


class EmailsHandler(ApiHandler):
    endpoint = "emails"

    async def get(self) -> None:
        grant = await self.answer_api()
        if grant is None:
            return
        self.set_header("X-Accepted-OAuth-Scopes", "user, user:email")
        try:
            emails, next_page = self.provider.emails_page(
                grant, self.query_argument("per_page"), self.query_argument("page"))
        except ApiError as e:
            self.api_error(e)
            return
        if next_page is not None:
            self.set_header("Link", f'<{self.provider.api_url}/user/emails?page={next_page}>; '
                            'rel="next"')
        self.write_api(emails)
