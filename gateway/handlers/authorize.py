"""`GET|POST /authorize` (OIDC Core 3.1.2) and `GET /authorize/resume`, where the browser comes
back after the upstream login: the code flow's front channel.

An acceptable request either completes at once (single sign-on: a live gateway session whose
provider the client accepts, and no `prompt=login`), or is kept server-side under a random id
while the browser signs in upstream through `/login/<provider>?return_to=<issuer>/authorize/
resume?request=<id>`. Either way it ends with a redirect to the client's registered
`redirect_uri` carrying `code`, `state` and `iss` (RFC 9207).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from gateway import pending
from gateway.config import ClientSettings
from gateway.context import GatewayContext
from gateway.errors import InvalidRequest, NotPermitted
from gateway.handlers.base import BaseHandler
from gateway.oidc.authorization import (
    AuthorizationRequest,
    CodeGrant,
    allowed_providers,
    parse_authorization_request,
    refusal,
    success_location,
)
from gateway.oidc.grants import new_family_id
from gateway.oidc.resume import RESUME_PATH, take_known_request
from gateway.sessions import Session

log = logging.getLogger("gateway.oidc")

# A session counts as fresh for prompt=login when it began after the request (clock slack).
FRESH_LOGIN_SLACK = 1.0


class AuthorizationHandler(BaseHandler):
    """What the authorization endpoint and its resume step share."""

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def live_session(self) -> Session | None:
        ctx = self.ctx
        session_id = ctx.cookies.read_session_id(self)
        return await ctx.sessions.lookup(session_id) if session_id else None

    def provider_accepted(self, request: AuthorizationRequest, client: ClientSettings,
                          session: Session) -> bool:
        """The session's provider is one this client (and this request) accepts."""
        if session.idp not in allowed_providers(client, list(self.ctx.providers)):
            return False
        return request.provider is None or session.idp == request.provider

    def recent_enough(self, request: AuthorizationRequest, session: Session) -> bool:
        """OIDC Core 3.1.2.1 `max_age`: the user signed in at most that long ago."""
        return request.max_age is None or \
            self.ctx.clock() - session.created <= request.max_age

    async def redirect_with_code(self, request: AuthorizationRequest,
                                 session: Session) -> None:
        ctx = self.ctx
        if not ctx.access.allows(session.sub, session.claims):
            # A session from before the policy was narrowed (new logins are refused upstream).
            raise refusal(request, "access_denied", NotPermitted.PUBLIC_DESCRIPTION,
                          issuer=ctx.settings.issuer,
                          log_detail=f"access policy refused sub={session.sub}")
        grant = CodeGrant(
            client_id=request.client_id, redirect_uri=request.redirect_uri, scope=request.scope,
            nonce=request.nonce, code_challenge=request.code_challenge, sub=session.sub,
            claims=session.claims, auth_time=int(session.created), sid=session.sid,
            family_id=new_family_id(), issued_at=ctx.clock())
        code = await ctx.grants.issue_code(grant)
        log.info("authorization code issued client=%s idp=%s", request.client_id, session.idp)
        self.set_no_store()
        self.redirect(success_location(request, code, issuer=ctx.settings.issuer), status=302)


class AuthorizeHandler(AuthorizationHandler):
    """GET|POST /authorize"""

    def check_xsrf_cookie(self) -> None:
        # OIDC Core 3.1.2.1: POST is a form post from the client's page, never ours.
        return None

    async def get(self) -> None:
        await self._authorize({name: self.get_query_arguments(name, strip=False)
                               for name in self.request.query_arguments})

    async def post(self) -> None:
        await self._authorize({name: self.get_body_arguments(name, strip=False)
                               for name in self.request.body_arguments})

    async def _authorize(self, params: dict[str, list[str]]) -> None:
        ctx = self.ctx
        settings = ctx.settings
        client, request = parse_authorization_request(
            params, ctx.clients, issuer=settings.issuer, enabled_providers=list(ctx.providers),
            now=ctx.clock())
        session = await self.live_session()
        if session is not None and not request.forces_login \
                and self.provider_accepted(request, client, session) \
                and self.recent_enough(request, session):
            await self.redirect_with_code(request, session)  # single sign-on
            return
        if "none" in request.prompt:
            raise refusal(request, "login_required", "The user is not signed in.",
                          issuer=settings.issuer, log_detail="prompt=none without session")
        if ctx.pending_caps is not None:  # SECURITY H10
            await ctx.pending_caps.admit(pending.AUTHORIZATION_REQUESTS, self.client_address)
        request_id = await ctx.grants.save_request(request, settings.login.transaction_lifetime)
        resume = f"{settings.issuer}{RESUME_PATH}?{urlencode({'request': request_id})}"
        providers = allowed_providers(client, list(ctx.providers))
        provider = request.provider or (providers[0] if len(providers) == 1 else None)
        login = f"/login/{provider}" if provider else "/login"
        self.set_no_store()
        self.redirect(f"{settings.issuer}{login}?{urlencode({'return_to': resume})}",
                      status=302)


class AuthorizeResumeHandler(AuthorizationHandler):
    """GET /authorize/resume?request=<id>: back from the upstream login."""

    async def get(self) -> None:
        ctx = self.ctx
        issuer = ctx.settings.issuer
        request_id = self.single_argument("request")
        assert request_id is not None
        known = await take_known_request(ctx, request_id)
        if known is None:
            # Nothing known good to redirect to: a page (SECURITY R3).
            raise InvalidRequest("This sign-in request has expired or was already used. "
                                 "Please go back to the app and sign in again.",
                                 log_detail="unknown, used or expired authorization request")
        request, client = known
        session = await self.live_session()
        if session is None:
            raise refusal(request, "login_required", "The sign-in did not complete.",
                          issuer=issuer, log_detail="resume without a session")
        fresh = session.created >= request.created - FRESH_LOGIN_SLACK
        if not fresh and (request.forces_login or not self.recent_enough(request, session)):
            raise refusal(request, "login_required", "The user did not sign in again.",
                          issuer=issuer, log_detail="prompt=login or max_age, session older")
        if not self.provider_accepted(request, client, session):
            raise refusal(request, "access_denied",
                          "This app does not accept that sign-in provider.", issuer=issuer,
                          log_detail=f"session idp={session.idp} not allowed")
        await self.redirect_with_code(request, session)
