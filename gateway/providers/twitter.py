"""Sign in with X: OAuth 2.0 with PKCE over `tornado.auth.OAuth2Mixin` (mode "oauth2", the
default), the identity of an X account in both modes, and the builder that picks the mode.

X is not an OpenID provider: no `id_token`, no `nonce`. Who signed in is what `GET /2/users/me`
answers for the access token. What the mixin lacks we add: `state` and PKCE S256 on the way out
(X requires PKCE), and a code exchange as a confidential client: HTTP Basic client
authentication and no `client_id` in the body (docs.x.com, "OAuth 2.0 Authorization Code Flow
with PKCE": "You don't need client id for confidential clients with a valid Authorization
Header"), with our timeouts, never retried.

Mode "oauth1" (`providers.twitter.mode = "oauth1"`) lives in `twitter_oauth1.py`, the only module
that touches the deprecated `tornado.auth.TwitterMixin`; providers/__init__.py picks the mode.
Both modes give the same `sub` for the same account: `twitter:<X user id>` (v2 `data.id` and
v1.1 `id_str` are the same number).
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from tornado.httputil import url_concat

from gateway.config import Settings, TwitterSettings
from gateway.errors import UpstreamError
from gateway.identity import Identity, checked_picture_url, text_claim
from gateway.providers.base import CallbackParameters, OAuth2Connector
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream

NAME = "twitter"
DISPLAY_NAME = "X"
EMAIL_SCOPE = "users.email"
# GET /2/users/me answers id, name and username by default; the rest must be asked for.
USER_FIELDS = ("name", "username", "profile_image_url")
EMAIL_USER_FIELD = "confirmed_email"  # needs the users.email scope


class TwitterConnector(OAuth2Connector):
    """X's OAuth 2.0 connector: its settings and calls, built once in app.py. Tornado's
    OAuth2Mixin builds the authorization redirect (OAuth2Connector.begin)."""

    name = NAME
    display_name = DISPLAY_NAME

    def __init__(self, settings: TwitterSettings, upstream: Upstream, *,
                 callback_url: str) -> None:
        super().__init__(authorize_url=settings.authorize_url, callback_url=callback_url,
                         client_id=settings.client_id, scopes=settings.scopes)
        self.settings = settings
        self.upstream = upstream

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        return {
            "state": state,
            "code_challenge": tx.code_challenge,
            "code_challenge_method": "S256",  # RFC 7636; X accepts plain too, we never send it
        }

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        assert params.code is not None
        tokens = await self.exchange_code(params.code, tx.code_verifier)
        access_token = bearer_token_of(tokens)
        scope = tokens.get("scope")
        document = await self.me(access_token, scope if isinstance(scope, str) else None)
        return identity_from_x_v2(user_of_x_v2(document))

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        """POST the token endpoint as a confidential client. Never retried: a code is single
        use (and X's live 30 seconds)."""
        settings = self.settings
        body = urllib.parse.urlencode({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.callback_url,
            "code_verifier": code_verifier,
        })
        request = self.upstream.request(
            settings.token_url, method="POST", body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": basic_authorization(settings.client_id,
                                                     settings.client_secret.reveal()),
            },
        )
        return await self.upstream.fetch_json(request, provider=NAME, what="token")

    async def me(self, access_token: str, granted_scope: str | None) -> dict[str, Any]:
        """GET /2/users/me with the fields we map, the confirmed email only where granted."""
        fields = user_fields(granted_scope or " ".join(self.settings.scopes))
        request = self.upstream.request(
            url_concat(self.settings.userinfo_url, {"user.fields": ",".join(fields)}),
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return await self.upstream.fetch_json(request, provider=NAME, what="users/me")


def build(settings: Settings, upstream: Upstream) -> TwitterConnector:
    """X in mode "oauth2" (providers/__init__.py picks the mode)."""
    assert settings.providers.twitter is not None
    return TwitterConnector(settings.providers.twitter, upstream,
                            callback_url=settings.callback_url(NAME))


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`."""
    credentials = f"{urllib.parse.quote(client_id, safe='')}:" \
                  f"{urllib.parse.quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(credentials.encode()).decode("ascii")


def user_fields(granted_scope: str) -> list[str]:
    """The `user.fields` to ask for: `confirmed_email` only with the users.email scope."""
    fields = list(USER_FIELDS)
    if EMAIL_SCOPE in granted_scope.split():
        fields.append(EMAIL_USER_FIELD)
    return fields


def bearer_token_of(tokens: dict[str, Any]) -> str:
    access_token, token_type = tokens.get("access_token"), tokens.get("token_type", "bearer")
    if not isinstance(access_token, str) or not access_token:
        raise unusable("token response lacks access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise unusable("token response is not a bearer token")
    return access_token


def user_of_x_v2(document: dict[str, Any]) -> dict[str, Any]:
    """X API v2 wraps the object in `data`; a refusal comes as `errors` (or a problem document
    with `title`/`type`), which we log by its type only: its `detail` may echo our request."""
    data = document.get("data")
    if isinstance(data, dict):
        return data
    errors = document.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    kind = (first.get("type") if isinstance(first, dict) else None) or document.get("type")
    readable = isinstance(kind, str) and kind.isascii() and kind.isprintable() and len(kind) < 80
    raise UpstreamError("The sign-in provider refused the request.", provider=NAME,
                        log_detail=f"users/me: no data{f' type={kind}' if readable else ''}")


def identity_from_x_v2(user: dict[str, Any]) -> Identity:
    """An X API v2 user object (`GET /2/users/me`) to our identity.

    Email: `confirmed_email` is, as its name says, an address the user confirmed with X; X
    gives it only with the users.email scope (docs.x.com, OAuth 2.0 scopes: "users.email:
    Email from an authenticated user"). No field, no email: never one made up.
    """
    return _x_identity(user, subject="id", email=EMAIL_USER_FIELD, picture="profile_image_url")


def identity_from_x_v1(profile: dict[str, Any]) -> Identity:
    """An X API v1.1 user object (`GET account/verify_credentials` with `include_email=true`).

    Email: X returns it only if verified ("If the user does not have an email address on their
    account, or if the email address is un-verified, null will be returned": GET
    account/verify_credentials, `include_email`, developer.x.com), so a non-empty `email` is
    one X vouches for.
    The subject is `id_str`: `id` is the same number, but JSON numbers above 2**53 are not safe.
    """
    return _x_identity(profile, subject="id_str", email="email",
                       picture="profile_image_url_https")


def _x_identity(user: dict[str, Any], *, subject: str, email: str, picture: str) -> Identity:
    """An X user object of either API version, by the names of its members. An email X gives
    is one it vouches for (see the two callers)."""
    address = text_claim(user.get(email))
    return Identity(
        idp=NAME,
        provider_subject=x_user_id(user.get(subject)),
        email=address,
        email_verified=address is not None,
        name=text_claim(user.get("name")),
        picture=checked_picture_url(user.get(picture)),
    )


def x_user_id(value: Any) -> str:
    """X user ids are decimal strings (64-bit); anything else is not an X answer we trust."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() \
            or len(value) > 20:
        raise unusable("user id is missing or not a decimal string")
    return value


def unusable(detail: str) -> UpstreamError:
    return UpstreamError(
        "The sign-in provider sent an answer we could not use. Please try again.",
        provider=NAME, log_detail=detail,
    )
