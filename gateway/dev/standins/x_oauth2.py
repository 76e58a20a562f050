"""X's OAuth 2.0 with PKCE in the stand-in (the gateway's mode "oauth2"), on X's paths:

- `GET /i/oauth2/authorize`: unknown `client_id` or unregistered `redirect_uri` is an error page,
  never a redirect; so is a request without `state` or without an S256 `code_challenge` (X
  requires PKCE). Otherwise an account chooser; the choice redirects with `code` and `state`,
  a cancel with `error=access_denied` and `state`.
- `POST /2/oauth2/token`: form-encoded, the confidential client authenticated by HTTP Basic;
  the code is single use and lives 30 seconds (as X's), bound to `redirect_uri` and the PKCE
  challenge. Answers `token_type`, `expires_in`, `access_token`, `scope`.
- `GET /2/users/me`: the user of a Bearer token, wrapped in `data`, with the `user.fields`
  asked for (`confirmed_email` only with the users.email scope, for a confirmed address).

The steps are `XOAuth2`, a part of `XStandIn` (x.py), which holds their state.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tornado.web
from tornado.httputil import url_concat

from gateway.dev.standins.common import (
    AuthorizationCodes,
    AuthorizationRequest,
    CodeRefusals,
    OAuth2AuthorizeHandler,
    OAuth2ChoiceHandler,
    OAuth2TokenHandler,
    ProtocolError,
    basic_credentials,
    bearer_token,
    secrets_equal,
)
from gateway.dev.standins.x_common import XAccount, XHandler

CODE_LIFETIME = 30  # seconds: "You will have to exchange it with an access token within 30 seconds"
ACCESS_TOKEN_LIFETIME = 7200  # two hours without offline.access
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


# X's words for a code exchange that fails.
CODE_REFUSALS = CodeRefusals(
    code=("invalid_grant", "Value passed for the authorization code was invalid."),
    redirect_uri=("invalid_grant", "Value passed for the redirect uri was invalid."),
    verifier=("invalid_grant", "Value passed for the code verifier was invalid."))


class XOAuth2:
    """The OAuth 2.0 steps, called by the handlers below."""

    base_url: str
    client_id: str
    client_secret: str
    callback_urls: Sequence[str]
    clock: Callable[[], float]

    def _start_oauth2(self) -> None:
        self.codes: AuthorizationCodes[XAccount] = AuthorizationCodes(lambda: self.clock())
        self._bearer_tokens: dict[str, tuple[XAccount, frozenset[str], float]] = {}

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
        return self.codes.issue(secrets.token_urlsafe(48), request, account, CODE_LIFETIME)

    def exchange_code(self, form: dict[str, str | None], authorization: str | None
                      ) -> dict[str, Any]:
        self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise ProtocolError("unsupported_grant_type", "grant_type must be authorization_code.")
        grant = self.codes.redeem(form, CODE_REFUSALS)
        access_token = secrets.token_urlsafe(64)
        self._bearer_tokens[access_token] = (grant.account, frozenset(grant.request.scope),
                                             self.clock() + ACCESS_TOKEN_LIFETIME)
        return {"token_type": "bearer", "expires_in": ACCESS_TOKEN_LIFETIME,
                "access_token": access_token, "scope": " ".join(grant.request.scope)}

    def users_me(self, authorization: str | None, user_fields: str | None) -> dict[str, Any]:
        token = bearer_token(authorization)
        entry = self._bearer_tokens.get(token) if token is not None else None
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


# ---------------------------------------------------------------------------------------------
# Handlers: thin I/O around the protocol steps above


class AuthorizeHandler(XHandler, OAuth2AuthorizeHandler):
    """The authorization endpoint, as common to OAuth 2.0 providers."""


class ChooseAccountHandler(XHandler, OAuth2ChoiceHandler):
    provider: XOAuth2

    def answer_choice(self, request: AuthorizationRequest, account: XAccount | None) -> None:
        params: dict[str, str] = {"state": request.state or ""}  # X requires it
        if account is None:
            params["error"] = "access_denied"
        else:
            params["code"] = self.provider.approve(request, account)
        self.redirect(url_concat(request.redirect_uri, params))


class UsersMeHandler(XHandler):
    provider: XOAuth2
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


ROUTES: tuple[tuple[str, type[tornado.web.RequestHandler]], ...] = (
    (r"/i/oauth2/authorize", AuthorizeHandler),
    (r"/i/oauth2/authorize/choose", ChooseAccountHandler),
    (r"/2/oauth2/token", OAuth2TokenHandler),
    (r"/2/users/me", UsersMeHandler),
)
