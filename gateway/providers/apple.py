"""Sign in with Apple: OpenID Connect as Apple speaks it, over `tornado.auth.OAuth2Mixin`.

What sets Apple apart, and what this module does about it:

- The client secret is no string from Apple's console: it is an ES256 JWT that we sign with the
  team's key (`ClientSecret`: `kid` the key id, `iss` the team, `sub` our Services ID, `aud`
  Apple, `exp` at most 6 months out). We make one, keep it, and make a new one when half its
  lifetime has passed, so the one sent is never near expiry.
- Asking for the name or the email requires `response_mode=form_post`: the browser comes back
  with a cross-site POST, which the login handlers relay through a same-site page of ours
  (`FormPostConnector`, SECURITY C8). The authorization request carries `state`, a `nonce`
  and PKCE S256, as Google's does.
- The `id_token` (RS256, Apple's JWKS at `/auth/keys`) is the only source of the subject and
  the email. `email_verified` and `is_private_email` come as booleans or as the strings
  "true"/"false"; a private-relay address (@privaterelay.appleid.com) is a real, verified
  address (SECURITY C7).
- The user's name comes only in the form's `user` field, only on the first authorization of
  our Services ID, never again, and unsigned. We take the name from it (never the email) and
  keep it in the gateway's store under the verified subject (`RememberedNames`), so that every
  later login still has it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import APPLE_MAX_CLIENT_SECRET_LIFETIME, AppleSettings, Settings
from gateway.errors import UpstreamError, unverifiable_answer
from gateway.identity import Identity
from gateway.providers import id_tokens
from gateway.providers.base import (
    ArgumentReader,
    CallbackParameters,
    FormPostConnector,
    OAuth2Connector,
)
from gateway.store import Store
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream
from gateway.upstream.provider_keys import UpstreamKeys

log = logging.getLogger("gateway.login")

NAME = "apple"
DISPLAY_NAME = "Apple"
ID_TOKEN_ALGORITHMS = ["RS256"]  # what Apple signs with; anything else is refused
MAX_ID_TOKEN_LENGTH = 8192
# Our client secrets live a day and are replaced after half of it: one that leaked (from a
# proxy's log, say) is soon worthless, and the one sent has hours left whatever Apple's clock.
CLIENT_SECRET_LIFETIME = 86_400
# Apple's error when the user cancels on its page; ours is OAuth's `access_denied`.
APPLE_CANCELLED = "user_cancelled_authorize"
# The `user` form field: Apple's JSON is far shorter; the handler bounds every field (H4).
MAX_NAME_LENGTH = 200
# Where the names Apple sends once are kept (the gateway's store), by Apple subject. Ten years,
# renewed at every login: it must outlive any session, since Apple will not send it again.
NAMES_NAMESPACE = "apple-name"
NAME_KEPT_SECONDS = 10 * 365 * 86_400


class ClientSecret:
    """The client secret Apple's token endpoint wants: an ES256 JWT signed with the team's key,
    made here, kept, and renewed once half of its lifetime has passed."""

    def __init__(self, settings: AppleSettings, *, lifetime: int = CLIENT_SECRET_LIFETIME,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        key = serialization.load_pem_private_key(settings.private_key.reveal().encode(),
                                                 password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):  # configuration checked it
            raise TypeError("the Sign in with Apple key must be an EC P-256 key")
        self._key = key
        self._lifetime = lifetime
        self._clock = clock
        self._secret = ""
        self._renew_at = 0.0

    def current(self) -> str:
        now = self._clock()
        if not self._secret or now >= self._renew_at:
            self._secret = make_client_secret(self._settings, self._key, now=now,
                                              lifetime=self._lifetime)
            self._renew_at = now + self._lifetime / 2
        return self._secret

    def __repr__(self) -> str:
        return "ClientSecret(**********)"


class RememberedNames:
    """The names Apple sent once, kept in the gateway's store by Apple subject."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def remember(self, subject: str, name: str) -> None:
        await self._store.put(NAMES_NAMESPACE, subject, {"name": name}, NAME_KEPT_SECONDS)

    async def recall(self, subject: str) -> str | None:
        """The kept name, its time renewed; None when Apple never sent one."""
        record = await self._store.get(NAMES_NAMESPACE, subject)
        name = record.get("name") if record else None
        if not isinstance(name, str) or not name:
            return None
        await self.remember(subject, name)
        return name


class AppleConnector(FormPostConnector, OAuth2Connector):
    """Apple's connector: its settings and calls, built once in app.py. Tornado's OAuth2Mixin
    builds the authorization redirect (OAuth2Connector.begin)."""

    name = NAME
    display_name = DISPLAY_NAME
    callback_fields = ("state", "code", "error", "user")

    def __init__(self, settings: AppleSettings, upstream: Upstream, keys: UpstreamKeys,
                 names: RememberedNames, *, callback_url: str, leeway: int,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(authorize_url=f"{settings.authority}/auth/authorize",
                         callback_url=callback_url, client_id=settings.client_id,
                         scopes=settings.scopes)
        self.settings = settings
        self.upstream = upstream
        self.keys = keys
        self.names = names
        self.leeway = leeway
        self.clock = clock
        self.client_secret = ClientSecret(settings, clock=clock)

    @property
    def token_url(self) -> str:
        return f"{self.settings.authority}/auth/token"

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        return {
            "state": state,
            "nonce": tx.nonce,
            "code_challenge": tx.code_challenge,
            "code_challenge_method": "S256",
            # Required by Apple as soon as the name or the email is asked for (SECURITY C8).
            "response_mode": "form_post",
        }

    def callback_parameters(self, argument: ArgumentReader) -> CallbackParameters:
        return apple_callback_parameters(argument)

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        assert params.code is not None
        tokens = await self.exchange_code(params.code, tx.code_verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise _unverifiable("token response lacks id_token")
        claims = await self.verified_id_token(id_token, tx.nonce)
        access_token = tokens.get("access_token")
        check_at_hash(claims, access_token if isinstance(access_token, str) else None)
        subject = claims["sub"]
        name = name_from_user_field(params.extra.get("user"))
        if name is not None:
            await self.names.remember(subject, name)  # Apple sends it this once
        else:
            name = await self.names.recall(subject)
        return identity_from_apple(claims, name)

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        """Apple's token endpoint, with our signed client secret and the PKCE verifier.
        Never retried: an authorization code is single use."""
        body = urllib.parse.urlencode({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.callback_url,
            "client_id": self.settings.client_id,
            "client_secret": self.client_secret.current(),
            "code_verifier": code_verifier,
        })
        request = self.upstream.request(
            self.token_url, method="POST", body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return await self.upstream.fetch_json(request, provider=NAME, what="token")

    async def verified_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        return await id_tokens.verified_id_token(
            id_token, self.keys, provider=NAME, issuers=(self.settings.authority,),
            client_id=self.settings.client_id, algorithms=ID_TOKEN_ALGORITHMS, nonce=nonce,
            leeway=self.leeway, now=self.clock(), max_length=MAX_ID_TOKEN_LENGTH)


def build(settings: Settings, upstream: Upstream, store: Store) -> AppleConnector | None:
    apple = settings.providers.apple
    if apple is None:
        return None
    keys = UpstreamKeys(
        upstream, provider=NAME, jwks_url=f"{apple.authority}/auth/keys",
        cache_seconds=settings.upstream.jwks_cache_seconds,
        refresh_cooldown=settings.upstream.jwks_refresh_cooldown,
    )
    return AppleConnector(apple, upstream, keys, RememberedNames(store),
                          callback_url=settings.callback_url(NAME),
                          leeway=settings.tokens.leeway)


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def make_client_secret(settings: AppleSettings, key: ec.EllipticCurvePrivateKey, *,
                       now: float, lifetime: int) -> str:
    """Apple's "Creating a client secret": an ES256 JWS, header `kid` = key id, claims `iss`
    = team id, `iat`, `exp` (at most 15777000 s, 6 months, after `iat`), `aud` = Apple's
    authority, `sub` = the Services ID."""
    if not 0 < lifetime <= APPLE_MAX_CLIENT_SECRET_LIFETIME:
        raise ValueError("Apple refuses a client secret that lives longer than 6 months")
    issued = int(now)
    claims = {"iss": settings.team_id, "iat": issued, "exp": issued + lifetime,
              "aud": settings.authority, "sub": settings.client_id}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": settings.key_id})


def apple_callback_parameters(argument: ArgumentReader) -> CallbackParameters:
    """What Apple's form post carries: `state`, then `code` (and on the first authorization
    `user`) or `error`."""
    state = argument("state")
    assert state is not None
    error = argument("error", required=False)
    if error == APPLE_CANCELLED:
        error = "access_denied"
    user = argument("user", required=False)
    return CallbackParameters(state, argument("code", required=False), error,
                              extra={"user": user} if user is not None else {})


def check_id_token(id_token: str, key: jwt.PyJWK, *, authority: str, client_id: str,
                   nonce: str, leeway: int, now: float) -> dict[str, Any]:
    """OIDC Core 3.1.3.7 as Apple documents it ("Verify the identity token"): the signature by
    a key of Apple's JWKS, `iss` = the authority, `aud` = our Services ID, `exp` and `iat`,
    then our `nonce` (providers/id_tokens.py). `id_token` has passed `unverified_header` and
    names RS256."""
    return id_tokens.check_id_token(id_token, key, provider=NAME, issuers=(authority,),
                                    client_id=client_id, algorithms=ID_TOKEN_ALGORITHMS,
                                    nonce=nonce, leeway=leeway, now=now)


def check_at_hash(claims: dict[str, Any], access_token: str | None) -> None:
    """OIDC Core 3.1.3.8: when the id_token has an `at_hash`, it binds the access token."""
    id_tokens.check_at_hash(claims, access_token, "RS256", NAME)


def apple_boolean(value: Any) -> bool | None:
    """Apple's booleans: JSON `true`/`false`, or the strings "true"/"false" ("A String or
    Boolean value", Apple's id_token reference). Anything else says nothing (None)."""
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    return None


def identity_from_apple(claims: dict[str, Any], name: str | None) -> Identity:
    """The verified id_token's claims, and the name Apple sent once (SECURITY C5, C7). The
    email counts only when `email_verified` says true; a private-relay address is one Apple
    forwards to the user's own, verified like any other."""
    email = claims.get("email")
    return Identity(
        idp=NAME,
        provider_subject=claims["sub"],
        email=email if isinstance(email, str) and email else None,
        email_verified=apple_boolean(claims.get("email_verified")) is True,
        name=name,
    )


def name_from_user_field(value: str | None) -> str | None:
    """The name in Apple's `user` form field (`{"name": {"firstName", "lastName"}, "email"}`),
    or None. Only the name is taken: the field is unsigned, and the email of the id_token is
    the one Apple vouches for."""
    if not value:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        log.info("unreadable user field from provider=%s", NAME)
        return None
    names = document.get("name") if isinstance(document, dict) else None
    if not isinstance(names, dict):
        return None
    parts = [names.get("firstName"), names.get("lastName")]
    text = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    text = "".join(c for c in text if c.isprintable())[:MAX_NAME_LENGTH].strip()
    return text or None


def _unverifiable(detail: str) -> UpstreamError:
    return unverifiable_answer(NAME, detail)
