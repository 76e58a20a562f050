"""Sign in with Facebook: Facebook Login's code flow over `tornado.auth.FacebookGraphMixin`.

The mixin builds the Login dialog redirect. What it lacks, or does in a way we cannot keep, we
replace: `state` and PKCE S256 on the way out (RFC 9700 2.1.1; Facebook Login accepts
`code_challenge` on its dialog and `code_verifier` on the code exchange), a code exchange that
POSTs the App Secret in a form body instead of a URL (RFC 6749 2.3.1) through our timed client,
and the profile read from `/me` with explicit `fields` and an `appsecret_proof`.

Facebook issues no `id_token` in this flow: who signed in is what `/me` answers for the access
token that our App Secret obtained from a single-use code.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from typing import Any

import tornado.auth

from gateway.config import FacebookSettings, Settings
from gateway.errors import UpstreamError, unverifiable_answer
from gateway.identity import Identity, checked_picture_url, text_claim
from gateway.providers.base import CallbackParameters, OAuth2Connector
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream

NAME = "facebook"
DISPLAY_NAME = "Facebook"
# The User fields we read, and nothing more (Graph API answers only `id` and `name` unless
# `fields` names others). `picture.type(large)` asks for the 200x200 rendition.
PROFILE_FIELDS = ("id", "name", "email", "picture.type(large)")
MAX_SUBJECT_LENGTH = 64
# SECURITY C5. Facebook sends no `email_verified`; it returns `email` only for a confirmed
# address. The Graph API User reference on `email`: "This field will not be returned if no valid
# email address is available" (developers.facebook.com/docs/graph-api/reference/user, as quoted
# in github.com/hybridauth/hybridauth/issues/1110), and a Facebook engineer on the SDK tracker:
# "Facebook Platform doesn't return the email by design when the email isn't reachable or when
# the user doesn't have a confirmed email" (github.com/facebookarchive/php-graph-sdk/issues/932).
# So a returned email counts as verified; none (declined permission, phone-only account) is no
# email claim at all. Set this to False to never claim Facebook emails (django-allauth's
# cautious default, for want of an explicit flag).
FACEBOOK_EMAILS_ARE_VERIFIED = True


class FacebookConnector(OAuth2Connector, tornado.auth.FacebookGraphMixin):
    """Facebook's connector: its settings and Graph API calls, built once in app.py. The mixin
    builds the Login dialog redirect (OAuth2Connector.begin); the code exchange and the
    profile read are ours."""

    name = NAME
    display_name = DISPLAY_NAME

    def __init__(self, settings: FacebookSettings, upstream: Upstream, *, callback_url: str
                 ) -> None:
        # The dialog's URL is versioned (providers.facebook.graph_version); the scope goes in
        # `authorization_params`, comma-separated.
        super().__init__(authorize_url=_dialog_url(settings), callback_url=callback_url,
                         client_id=settings.client_id, scopes=None)
        self.settings = settings
        self.upstream = upstream

    @property
    def token_url(self) -> str:
        return f"{self.settings.graph_url}/{self.settings.graph_api_version}/oauth/access_token"

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        params = {
            "state": state,
            # Facebook documents `scope` as comma-separated (space-separated is accepted too).
            "scope": ",".join(self.settings.scopes),
        }
        if self.settings.pkce:
            params.update(code_challenge=tx.code_challenge, code_challenge_method="S256")
        return params

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        """The code exchange, then `/me` with `appsecret_proof`. The upstream access token goes
        no further (SECURITY C2)."""
        assert params.code is not None
        access_token = await self.exchange_code(params.code, tx.code_verifier)
        return identity_from_facebook(await self.profile(access_token))

    async def exchange_code(self, code: str, code_verifier: str) -> str:
        """The code for an access token. Never retried: an authorization code is single use."""
        settings = self.settings
        form = {
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.reveal(),
            "redirect_uri": self.callback_url,
            "code": code,
        }
        if settings.pkce:
            form["code_verifier"] = code_verifier
        body = urllib.parse.urlencode(form)
        # Facebook's guide shows a GET with the secret in the query string (as Tornado's mixin
        # sends it); the endpoint takes the same parameters as a form POST, which keeps the
        # secret out of every URL and URL log on the way (RFC 6749 2.3.1).
        request = self.upstream.request(
            self.token_url, method="POST", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = await self.upstream.fetch_json(request, provider=NAME, what="token")
        return access_token_of(answer)

    async def graph_get(self, path: str, access_token: str, **args: str) -> dict[str, Any]:
        """A Graph API read as this app: token in the header, `appsecret_proof` in the query."""
        query = urllib.parse.urlencode({
            **args, "appsecret_proof": appsecret_proof(self.settings.client_secret.reveal(),
                                                       access_token)})
        url = f"{self.settings.graph_url}/{self.settings.graph_api_version}{path}?{query}"
        request = self.upstream.request(url, headers={"Authorization": f"Bearer {access_token}"})
        return await self.upstream.fetch_json(request, provider=NAME, what=path.strip("/"))

    async def profile(self, access_token: str) -> dict[str, Any]:
        return await self.graph_get("/me", access_token, fields=",".join(PROFILE_FIELDS))


def _dialog_url(settings: FacebookSettings) -> str:
    # Versioned endpoints: the version is the first path segment at both hosts.
    return f"{settings.dialog_url}/{settings.graph_api_version}/dialog/oauth"


def build(settings: Settings, upstream: Upstream) -> FacebookConnector | None:
    facebook = settings.providers.facebook
    if facebook is None:
        return None
    return FacebookConnector(facebook, upstream, callback_url=settings.callback_url(NAME))


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """Graph API `appsecret_proof`: hex HMAC-SHA256 of the access token, keyed by the secret."""
    return hmac.new(app_secret.encode("utf-8"), access_token.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def access_token_of(answer: dict[str, Any]) -> str:
    """The access token of a code-exchange answer (`access_token`, `token_type`, `expires_in`)."""
    token = answer.get("access_token")
    token_type = answer.get("token_type", "bearer")
    if not isinstance(token, str) or not token:
        raise _unverifiable("token response lacks access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise _unverifiable("token response is not a bearer token")
    return token


def identity_from_facebook(profile: dict[str, Any]) -> Identity:
    """A Graph API User (`id`, `name`, `email`, `picture`) as our identity.

    The subject is the app-scoped user id: stable for this app, never the email (SECURITY C5).
    The email is claimed only when Facebook returns one (see FACEBOOK_EMAILS_ARE_VERIFIED).
    """
    subject = profile.get("id")
    if not (isinstance(subject, str) and subject.isascii() and subject.isdigit()
            and len(subject) <= MAX_SUBJECT_LENGTH):
        raise _unverifiable("profile id is missing or not an app-scoped user id")
    email = text_claim(profile.get("email"))
    return Identity(
        idp=NAME,
        provider_subject=subject,
        email=email,
        email_verified=email is not None and FACEBOOK_EMAILS_ARE_VERIFIED,
        name=text_claim(profile.get("name")),
        picture=picture_url(profile.get("picture")),
    )


def picture_url(picture: Any) -> str | None:
    """`picture.data.url` when it is an http(s) URL (the dev stand-in's are http)."""
    data = picture.get("data") if isinstance(picture, dict) else None
    return checked_picture_url(data.get("url") if isinstance(data, dict) else None)


def _unverifiable(detail: str) -> UpstreamError:
    return unverifiable_answer(NAME, detail)
