"""Redirect-based login: `/login/<provider>` sends the browser upstream, `/callback/<provider>`
brings it back, issues our tokens and returns it to the app.

These handlers are generic; app.py mixes each provider's login class (which carries the
`tornado.auth` mixin) into them, providing `start_upstream_login` and `finish_upstream_login`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from gateway import cookies, transactions
from gateway.context import GatewayContext
from gateway.errors import (
    AccessDenied,
    GatewayError,
    InvalidRequest,
    NotPermitted,
    Unavailable,
    UpstreamError,
    login_outcome,
)
from gateway.handlers.base import BaseHandler
from gateway.identity import Identity
from gateway.oidc.resume import refusal_to_app
from gateway.redirects import is_allowed_return_to
from gateway.store import StoreFull
from gateway.transactions import LoginTransaction

log = logging.getLogger("gateway.login")

# SECURITY S8: tokens must never arrive on the front channel.
FRONT_CHANNEL_TOKENS = ("access_token", "id_token", "token")


@dataclass(frozen=True)
class CallbackParameters:
    """What a provider's redirect back carries, in the provider's own parameter names."""

    transaction_key: str  # OAuth 2.0: `state`; OAuth 1.0a: the request token
    code: str | None  # OAuth 2.0: `code`; OAuth 1.0a: `oauth_verifier`
    error: str | None  # the provider's error code, e.g. access_denied


class ProviderHandler(BaseHandler):
    """What the login and callback handlers share: the context and the provider.

    The defaults here are OAuth 2.0's (`state`, `code`, `error`); a provider's login mixin
    overrides what its protocol does differently (OAuth 1.0a keys the login by request token).
    """

    ctx: GatewayContext
    provider: Any  # the provider object the mixin reads (e.g. GoogleProvider)

    def initialize(self, ctx: GatewayContext, provider: Any) -> None:
        self.ctx = ctx
        self.provider = provider

    def login_url(self, return_to: str | None) -> str:
        path = f"/login/{self.provider.name}"
        return f"{path}?{urlencode({'return_to': return_to})}" if return_to else path

    async def begin_upstream_login(self, tx: LoginTransaction) -> str:
        """The key the transaction is stored under (and that comes back on the callback)."""
        return transactions.new_state()

    def start_upstream_login(self, tx: LoginTransaction, key: str) -> None:
        raise NotImplementedError  # provided by the provider's login mixin: the redirect

    def callback_parameters(self) -> CallbackParameters:
        state = self.single_argument("state")
        assert state is not None
        return CallbackParameters(state, self.single_argument("code", required=False),
                                  self.single_argument("error", required=False))

    async def finish_upstream_login(self, code: str, tx: LoginTransaction) -> Identity:
        raise NotImplementedError  # provided by the provider's login mixin


class LoginHandler(ProviderHandler):
    """GET /login/<provider>?return_to=URL"""

    async def get(self) -> None:
        settings = self.ctx.settings
        return_to = self.single_argument("return_to", required=False) or self.ctx.default_return_to
        if not is_allowed_return_to(return_to, self.ctx.allowed_returns):
            # SECURITY R2: a refusal is a page, never a redirect.
            raise InvalidRequest(
                "The address to return to after sign-in is not allowed by this gateway.",
                log_detail="return_to not in allowlist",
            )
        lifetime = settings.login.transaction_lifetime
        browser_id = (self.ctx.cookies.read_signed(self, cookies.LOGIN, lifetime)
                      or transactions.new_browser_id())
        tx = transactions.new_transaction(self.provider.name, browser_id, return_to,
                                          self.ctx.clock())
        try:
            key = await self.begin_upstream_login(tx)
        except GatewayError as e:
            e.retry_url = self.login_url(return_to)
            raise
        try:
            await self.ctx.store.put(transactions.NAMESPACE, _transaction_key(key),
                                     tx.to_record(), lifetime)
        except StoreFull:
            self.ctx.metrics.store_error("full")
            raise Unavailable("Too many sign-ins are in progress. Please try again in a minute.",
                              retry_url=self.login_url(return_to)) from None
        self.ctx.cookies.set(self, cookies.LOGIN, browser_id, max_age=lifetime, signed=True)
        self.set_no_store()
        self.start_upstream_login(tx, key)


class CallbackHandler(ProviderHandler):
    """GET /callback/<provider>?code=...&state=... (or ?error=...&state=...)"""

    async def get(self) -> None:
        provider = self.provider.name
        try:
            return_to = await self._finish_login()
        except Exception as e:
            # SECURITY L3: every failed login, by provider and outcome (the cause is logged by
            # the base handler or upstream/client.py; the request id ties the lines together).
            outcome = login_outcome(e)
            self.ctx.metrics.login(provider, outcome)
            log.warning("login failed provider=%s outcome=%s", provider, outcome,
                        extra={"event": "login", "provider": provider, "outcome": outcome})
            raise
        self.ctx.metrics.login(provider, "success")
        log.info("login succeeded provider=%s", provider,
                 extra={"event": "login", "provider": provider, "outcome": "success"})
        # SECURITY R6: a clean redirect (no code or state in it) with Referrer-Policy no-referrer.
        self.redirect(return_to, status=302)

    async def _finish_login(self) -> str:
        """Check the callback, finish the upstream login, sign in; the URL to return to."""
        for name in FRONT_CHANNEL_TOKENS:
            if self.get_arguments(name):
                raise InvalidRequest("Tokens are not accepted in the callback URL.",
                                     log_detail=f"front-channel {name} refused")
        params = self.callback_parameters()
        tx = await self._take_transaction(params.transaction_key)
        retry_url = self.login_url(tx.return_to)
        not_permitted: NotPermitted | None = None
        try:
            if params.error is not None:
                raise _provider_error(params.error, self.provider.name)
            if params.code is None:
                raise InvalidRequest("The provider sent no authorization code.")
            identity = await self.finish_upstream_login(params.code, tx)
        except NotPermitted as e:  # the provider's own rule (Google's hosted domains)
            not_permitted = e
        except GatewayError as e:
            e.retry_url = retry_url
            raise
        else:
            if not self.ctx.access.allows(identity.sub, identity.profile_claims()):
                not_permitted = NotPermitted(identity.sub)  # the [access] policy
        if not_permitted is not None:  # no session, no token
            not_permitted.retry_url = retry_url
            raise await self._refusal(not_permitted, tx)
        await self._sign_in(identity)
        return tx.return_to

    async def _refusal(self, not_permitted: NotPermitted, tx: LoginTransaction
                       ) -> GatewayError:
        """A page, or, when this login was for an app's authorization request,
        `error=access_denied` back to that app (OIDC Core 3.1.2.6)."""
        to_app = await refusal_to_app(self.ctx, tx.return_to, not_permitted.error,
                                      not_permitted.description,
                                      log_detail=not_permitted.log_detail)
        if to_app is None:
            return not_permitted
        to_app.__cause__ = not_permitted  # counted and logged as what it is (metrics.py)
        return to_app

    async def _take_transaction(self, key: str) -> LoginTransaction:
        lifetime = self.ctx.settings.login.transaction_lifetime
        record = await self.ctx.store.take(transactions.NAMESPACE, _transaction_key(key))
        tx = LoginTransaction.from_record(record) if record else None
        browser_id = self.ctx.cookies.read_signed(self, cookies.LOGIN, lifetime)
        try:
            return transactions.check_transaction(tx, provider=self.provider.name,
                                                  browser_id=browser_id)
        except GatewayError as e:
            e.retry_url = self.login_url(None)
            raise

    async def _sign_in(self, identity: Identity) -> None:
        ctx = self.ctx
        session_cookie_age = ctx.settings.cookies.session_lifetime
        old_session = ctx.cookies.read_signed(self, cookies.SESSION, session_cookie_age)
        session_id = await ctx.sessions.start(identity, replacing=old_session)
        token = ctx.issuer.issue_access_token(identity, ctx.settings.audience)
        ctx.metrics.issued["access"].inc()
        ctx.cookies.set(self, cookies.SESSION, session_id, max_age=session_cookie_age,
                        signed=True)
        ctx.cookies.set(self, cookies.ACCESS, token,
                        max_age=ctx.settings.tokens.access_token_lifetime, shared=True)
        self.set_no_store()


def _transaction_key(key: str) -> str:
    # Stored under a hash: a dump of the store holds no usable state.
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _provider_error(error: str, provider: str) -> GatewayError:
    """The provider's `error=` as our error. Its `error_description` is never shown (S8)."""
    code = error if error.isascii() and len(error) <= 64 else "unreadable"
    if error == "access_denied":
        return AccessDenied("You cancelled the sign-in, or the provider did not allow it.",
                            log_detail=f"provider={provider} error=access_denied")
    return UpstreamError("The sign-in provider reported an error.", provider=provider,
                         log_detail=f"authorization error={code!r}")
