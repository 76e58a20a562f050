"""Redirect-based login: `/login/<provider>` sends the browser upstream, `/callback/<provider>`
brings it back, issues our tokens and returns it to the app.

These handlers know no provider: each route is given its connector (providers/base.py), which
says where the browser goes, what the callback carries and who signed in.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from urllib.parse import urlencode

from gateway import cookies, pending, transactions
from gateway.context import GatewayContext
from gateway.devices import describe_device
from gateway.errors import (
    AccessDenied,
    GatewayError,
    InvalidRequest,
    NotPermitted,
    RequestTooLarge,
    Unavailable,
    UpstreamError,
    login_outcome,
)
from gateway.handlers.base import BaseHandler, constant_headers
from gateway.identity import Identity
from gateway.oidc.resume import refusal_to_app
from gateway.providers.base import Connector, FormPostConnector
from gateway.redirects import is_allowed_return_to
from gateway.store import StoreFull
from gateway.transactions import LoginTransaction

log = logging.getLogger("gateway.login")

# SECURITY S8: tokens must never arrive on the front channel.
FRONT_CHANNEL_TOKENS = ("access_token", "id_token", "token")
# SECURITY C8/H4: a provider's form post holds a code, a state and a little JSON (Apple's
# `user`, well under 1 KB); each field is bounded by single_argument as well.
MAX_FORM_POST_BYTES = 8 * 1024
# The field our relay page adds: its post is the same-site one, to be finished (C8).
RELAYED_FIELD = "gateway_relayed"


class ProviderHandler(BaseHandler):
    """What the login and callback handlers share: the context and the provider's connector."""

    ctx: GatewayContext
    connector: Connector
    route_prefix = ""

    def initialize(self, ctx: GatewayContext, connector: Connector) -> None:
        self.ctx = ctx
        self.connector = connector

    @property
    def route(self) -> str:
        """Each provider's route has its own name in logs and metrics."""
        return f"{self.route_prefix}/{self.connector.name}"

    def login_url(self, return_to: str | None) -> str:
        path = f"/login/{self.connector.name}"
        return f"{path}?{urlencode({'return_to': return_to})}" if return_to else path


class LoginHandler(ProviderHandler):
    """GET /login/<provider>?return_to=URL"""

    route_prefix = "/login"

    async def get(self) -> None:
        settings = self.ctx.settings
        return_to = self.single_argument("return_to", required=False) or self.ctx.default_return_to
        if not is_allowed_return_to(return_to, self.ctx.allowed_returns):
            # SECURITY R2: a refusal is a page, never a redirect.
            raise InvalidRequest(
                "The address to return to after sign-in is not allowed by this gateway.",
                log_detail="return_to not in allowlist",
            )
        if self.ctx.pending_caps is not None:
            # SECURITY H10: before any work (a provider call, a stored transaction).
            await self.ctx.pending_caps.admit(pending.LOGINS, self.client_address)
        lifetime = settings.login.transaction_lifetime
        browser_id = (self.ctx.cookies.read_signed(self, cookies.LOGIN, lifetime)
                      or transactions.new_browser_id())
        tx = transactions.new_transaction(self.connector.name, browser_id, return_to,
                                          self.ctx.clock())
        try:
            start = await self.connector.begin(tx)
        except GatewayError as e:
            e.retry_url = self.login_url(return_to)
            raise
        try:
            await self.ctx.store.put(transactions.NAMESPACE, _transaction_key(start.key),
                                     tx.to_record(), lifetime)
        except StoreFull:
            self.ctx.metrics.store_error("full")
            raise Unavailable("Too many sign-ins are in progress. Please try again in a minute.",
                              retry_url=self.login_url(return_to)) from None
        self.ctx.cookies.set(self, cookies.LOGIN, browser_id, max_age=lifetime, signed=True)
        binding_cookie = self.connector.binding_cookie
        if binding_cookie is not None and start.browser_binding is not None:
            self.ctx.cookies.set(self, binding_cookie, start.browser_binding, max_age=lifetime,
                                 signed=True)
        self.set_no_store()
        self.redirect(start.redirect_url)


class CallbackHandler(ProviderHandler):
    """GET /callback/<provider>?code=...&state=... (or ?error=...&state=...)"""

    route_prefix = "/callback"
    # A provider comes back with a redirect; a POST here is no callback (Apple's form post has
    # its own handler, FormPostCallbackHandler).
    SUPPORTED_METHODS = ("GET",)

    async def get(self) -> None:
        await self.complete_login()

    async def complete_login(self) -> None:
        """Finish the login the callback's parameters name, and return to where it began."""
        provider = self.connector.name
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
        browser_binding = self._take_browser_binding()
        params = self.connector.callback_parameters(self.single_argument)
        tx = await self._take_transaction(params.transaction_key)
        not_permitted: NotPermitted | None = None
        try:
            if params.error is not None:
                raise _provider_error(params.error, self.connector.name)
            if params.code is None:
                raise InvalidRequest("The provider sent no authorization code.")
            identity = await self.connector.finish(params, tx, browser_binding)
        except NotPermitted as e:  # the provider's own rule (Google's hosted domains)
            not_permitted = e
        except GatewayError as e:
            e.retry_url = self.login_url(tx.return_to)
            raise
        else:
            if not self.ctx.access.allows(identity.sub, identity.profile_claims()):
                not_permitted = NotPermitted(identity.sub)  # the [access] policy
        if not_permitted is not None:  # no session, no token
            not_permitted.retry_url = self.login_url(tx.return_to)
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
            return transactions.check_transaction(tx, provider=self.connector.name,
                                                  browser_id=browser_id)
        except GatewayError as e:
            e.retry_url = self.login_url(None)
            raise

    def _take_browser_binding(self) -> str | None:
        """What the login left in this browser's signed cookie for its connector (SECURITY
        S4). Single use: cleared on every callback."""
        name = self.connector.binding_cookie
        if name is None:
            return None
        policy = self.ctx.cookies
        value = policy.read_signed(self, name, self.ctx.settings.login.transaction_lifetime)
        if policy.read(self, name) is not None:
            policy.clear(self, name)
        return value

    async def _sign_in(self, identity: Identity) -> None:
        ctx = self.ctx
        session_cookie_age = ctx.settings.cookies.session_lifetime
        old_session = ctx.cookies.read_session_id(self)
        session_id, session = await ctx.sessions.start(
            identity, replacing=old_session, address=self.client_address,
            device=describe_device(self.request.headers.get("User-Agent")))
        token = ctx.issuer.issue_access_token(identity, ctx.settings.audience, sid=session.sid)
        ctx.metrics.issued["access"].inc()
        ctx.cookies.set(self, cookies.SESSION, session_id, max_age=session_cookie_age,
                        signed=True)
        ctx.cookies.set(self, cookies.ACCESS, token,
                        max_age=ctx.settings.tokens.access_token_lifetime, shared=True)
        self.set_no_store()


class FormPostCallbackHandler(CallbackHandler):
    """POST /callback/<provider> for a provider that answers with `response_mode=form_post`
    (Sign in with Apple).

    SECURITY C8: that POST comes from the provider's page, cross-site, so the browser withholds
    our SameSite=Lax login cookie and the login cannot be tied to this browser yet. We answer
    it with a page of our own whose form posts the same fields back here, same-site, marked as
    relayed: that second request carries the login cookie, and only it is finished, with every
    check of S1, S6, S7 and S8. The first post is only read and relayed (nothing is taken from
    the store, nothing is sent upstream), so a callback replayed into another browser is still
    refused there for want of that browser's cookie.
    """

    SUPPORTED_METHODS = ("POST",)

    def check_xsrf_cookie(self) -> None:
        """Neither the provider's cross-site post nor our relay of it can carry Tornado's XSRF
        token; the state and the login cookie bind this login to its browser instead (S1, C8).
        Only this route is exempt."""

    async def post(self) -> None:
        _check_form_post(self)
        if self.single_argument(RELAYED_FIELD, required=False) is not None:
            await self.complete_login()
        else:
            self._relay()

    def _relay(self) -> None:
        """The page that posts the provider's fields back here from our own origin: by itself
        (a script allowed by this answer's nonce alone) or with its button."""
        for name in FRONT_CHANNEL_TOKENS:
            if self.get_arguments(name):
                raise InvalidRequest("Tokens are not accepted in the callback.",
                                     log_detail=f"front-channel {name} refused")
        self.connector.callback_parameters(self.single_argument)  # S7, and a state is there
        connector = self.connector
        names = connector.callback_fields if isinstance(connector, FormPostConnector) else ()
        fields = [(name, value) for name in names
                  if (value := self.single_argument(name, required=False)) is not None]
        nonce = secrets.token_urlsafe(18)
        self.put_headers(constant_headers(("Content-Security-Policy", relay_page_csp(nonce))))
        self.set_no_store()
        self.render("form_post_relay.html", action=f"/callback/{connector.name}",
                    fields=[*fields, (RELAYED_FIELD, "1")], nonce=nonce)


def relay_page_csp(nonce: str) -> str:
    """The relay page runs one script, its own, by nonce. It has no `form-action`: its form
    goes to our callback, but the answer to it redirects to the app's `return_to`, another
    origin, which browsers check against `form-action` too. The page shows nothing a user or
    provider wrote but escaped attribute values."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; "
            "img-src 'self'; frame-ancestors 'none'; base-uri 'none'")


def _check_form_post(handler: BaseHandler) -> None:
    """A provider's form post (C8): form-encoded fields in the body only, within H4's limits."""
    request = handler.request
    if len(request.body) > MAX_FORM_POST_BYTES:
        raise RequestTooLarge("The sign-in provider's answer is too large.",
                              log_detail=f"form post of {len(request.body)} bytes")
    content_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("The sign-in provider's answer must be a form post.",
                             log_detail=f"form post callback with content type "
                                        f"{content_type[:64]!r}")
    if request.query:
        raise InvalidRequest("The sign-in provider's answer must be in the form's body only.",
                             log_detail="form post callback with a query string")


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
