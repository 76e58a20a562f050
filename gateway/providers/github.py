"""Sign in with GitHub: an OAuth app's web application flow over `tornado.auth.OAuth2Mixin`.

GitHub is OAuth 2.0, not OpenID Connect: no `id_token`, no `nonce`. Who signed in is what the
REST API's `GET /user` answers for the access token, and the verified email what
`GET /user/emails` says. What the mixin lacks we add: `state` and PKCE S256 on the way out
(GitHub accepts S256 only, and does not require it; RFC 9700 2.1.1 asks for it), a code
exchange as a form POST with our timeouts, never retried.

GitHub's token endpoint has two habits of its own (docs.github.com, "Authorizing OAuth apps"
and "Troubleshooting OAuth app access token request errors"): it answers form-encoded
(`access_token=...&scope=...&token_type=bearer`) unless the request's `Accept` asks for JSON,
and it answers a refusal (a wrong secret, a used code) with HTTP 200 and an `error` member.
Both are handled here: we ask for JSON and read either, and an `error` is a refusal.

SECURITY C7: the subject is GitHub's numeric user `id`, never the `login`, which its owner can
change and someone else can then take. The email is claimed only as the address that
`/user/emails` marks `primary` and `verified`: `/user`'s `email` is the public profile address,
which GitHub does not say is verified and is often null, and another verified address is not
the one the user chose to be reached at.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from gateway.config import GitHubSettings, Settings
from gateway.errors import UpstreamError, unverifiable_answer
from gateway.identity import Identity, checked_picture_url, text_claim
from gateway.providers.base import CallbackParameters, OAuth2Connector
from gateway.transactions import LoginTransaction
from gateway.upstream.client import USER_AGENT, Upstream

NAME = "github"
DISPLAY_NAME = "GitHub"
# The REST API version we were written against ("X-GitHub-Api-Version"), and its media type.
API_VERSION = "2022-11-28"
API_MEDIA_TYPE = "application/vnd.github+json"
# Scopes that let /user/emails answer (docs.github.com, "Scopes for OAuth apps": `user:email`
# "Grants read access to a user's email addresses", `user` includes it).
EMAIL_SCOPES = frozenset(("user:email", "user"))
EMAILS_PER_PAGE = 100  # GitHub's maximum; the default page is 30 addresses
# RFC 6750 2.1 b64token: what may follow "Bearer " in our Authorization header.
ACCESS_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
MAX_ACCESS_TOKEN_LENGTH = 2048
MAX_USER_ID = 2**53  # GitHub ids are JSON numbers; beyond this one they are not exact


class GitHubConnector(OAuth2Connector):
    """GitHub's connector: its settings and calls, built once in app.py. Tornado's
    OAuth2Mixin builds the authorization redirect (OAuth2Connector.begin)."""

    name = NAME
    display_name = DISPLAY_NAME

    def __init__(self, settings: GitHubSettings, upstream: Upstream, *,
                 callback_url: str) -> None:
        super().__init__(authorize_url=settings.authorize_url, callback_url=callback_url,
                         client_id=settings.client_id, scopes=settings.scopes)
        self.settings = settings
        self.upstream = upstream
        self.api_url = settings.api_url.rstrip("/")

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        return {
            "state": state,
            "code_challenge": tx.code_challenge,
            "code_challenge_method": "S256",  # the only method GitHub accepts
        }

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        """The code exchange, then `/user` and (when granted) `/user/emails`. The upstream
        access token goes no further (SECURITY C2)."""
        assert params.code is not None
        answer = await self.exchange_code(params.code, tx.code_verifier)
        access_token, granted = token_of(answer)
        if granted is None:  # not said: as asked
            granted = frozenset(self.settings.scopes)
        user = await self.api_get("/user", access_token, what="user")
        emails: list[Any] | None = None
        if granted & EMAIL_SCOPES:
            emails = await self.emails(access_token)
        return identity_from_github(user, emails)

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        """POST the token endpoint. Never retried: a code is single use."""
        settings = self.settings
        body = urllib.parse.urlencode({
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.reveal(),
            "code": code,
            "redirect_uri": self.callback_url,
            "code_verifier": code_verifier,
        })
        request = self.upstream.request(
            settings.token_url, method="POST", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     # Without it GitHub answers form-encoded (which we also read).
                     "Accept": "application/json"},
        )
        return await self.upstream.fetch_json_or_form(request, provider=NAME, what="token")

    def api_request_headers(self, access_token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {access_token}",
            "Accept": API_MEDIA_TYPE,
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,  # GitHub refuses API requests without one
        }

    async def api_get(self, path: str, access_token: str, *, what: str) -> dict[str, Any]:
        request = self.upstream.request(f"{self.api_url}{path}",
                                        headers=self.api_request_headers(access_token))
        return await self.upstream.fetch_json(request, provider=NAME, what=what)

    async def emails(self, access_token: str) -> list[Any]:
        """The first page of the user's addresses, as large as GitHub makes it."""
        request = self.upstream.request(
            f"{self.api_url}/user/emails?per_page={EMAILS_PER_PAGE}",
            headers=self.api_request_headers(access_token))
        return await self.upstream.fetch_json_array(request, provider=NAME, what="user/emails")


def build(settings: Settings, upstream: Upstream) -> GitHubConnector | None:
    github = settings.providers.github
    if github is None:
        return None
    return GitHubConnector(github, upstream, callback_url=settings.callback_url(NAME))


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def token_of(answer: dict[str, Any]) -> tuple[str, frozenset[str] | None]:
    """The access token of a token endpoint answer (JSON or form-encoded, the same members)
    and the scopes granted (GitHub lists them comma-separated; a user can grant fewer than
    asked), None when the answer does not say. An `error` member is GitHub refusing, whatever
    the HTTP status said."""
    error = answer.get("error")
    if error is not None:
        code = error if isinstance(error, str) and re.fullmatch(r"[a-z_]{1,64}", error) \
            else "unreadable"
        raise UpstreamError("The sign-in provider refused the request.", provider=NAME,
                            upstream_status=200, log_detail=f"token: HTTP 200 error={code}")
    token, token_type = answer.get("access_token"), answer.get("token_type", "bearer")
    if not (isinstance(token, str) and len(token) <= MAX_ACCESS_TOKEN_LENGTH
            and ACCESS_TOKEN.fullmatch(token)):
        raise _unverifiable("token response lacks a usable access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise _unverifiable("token response is not a bearer token")
    scope = answer.get("scope")
    if scope is None:
        return token, None
    if not isinstance(scope, str):
        raise _unverifiable("token response scope is not a string")
    return token, frozenset(s for s in re.split(r"[,\s]+", scope) if s)


def github_user_id(value: Any) -> str:
    """GitHub's user id: a positive JSON integer (never the `login`, which can change)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < MAX_USER_ID:
        raise _unverifiable("user id is missing or not a positive integer")
    return str(value)


def primary_verified_email(emails: list[Any] | None) -> str | None:
    """The address `/user/emails` marks both `primary` and `verified`, or None: when the
    primary address is unverified, when only another address is verified, when the list
    names more than one primary, or when the emails scope was not granted (`emails` None)."""
    if emails is None:
        return None
    primaries = [entry for entry in emails if isinstance(entry, dict) and entry.get("primary")]
    if len(primaries) != 1:
        return None
    entry = primaries[0]
    address = text_claim(entry.get("email"))
    if entry.get("primary") is True and entry.get("verified") is True and address \
            and "@" in address:
        return address
    return None


def identity_from_github(user: dict[str, Any], emails: list[Any] | None) -> Identity:
    """`GET /user` and `GET /user/emails` as our identity (SECURITY C7).

    The subject is the numeric `id`; the email only the primary verified address (`/user`'s
    `email` is never read); the name is `name`, or the `login` when the user set none.
    """
    email = primary_verified_email(emails)
    return Identity(
        idp=NAME,
        provider_subject=github_user_id(user.get("id")),
        email=email,
        email_verified=email is not None,
        name=text_claim(user.get("name")) or text_claim(user.get("login")),
        picture=checked_picture_url(user.get("avatar_url")),
    )


def _unverifiable(detail: str) -> UpstreamError:
    return unverifiable_answer(NAME, detail)
