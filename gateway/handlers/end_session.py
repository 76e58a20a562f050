"""`GET|POST /logout/oidc`: OpenID Connect RP-Initiated Logout 1.0 (the `end_session_endpoint`).

The browser's gateway session ends, the refresh-token families started in it are revoked, the
cookies are cleared, then the browser goes to the client's registered
`post_logout_redirect_uri` (with `state`) or sees a signed-out page.

Signing out changes state, so a request alone is not enough when the browser has a session
(SECURITY S5): either the `id_token_hint` names this very session (only the app it was issued
to holds it), or the user confirms on our page, a form with an XSRF token.
"""

from __future__ import annotations

import logging

from gateway.context import GatewayContext
from gateway.errors import InvalidRequest, InvalidToken
from gateway.handlers.base import BaseHandler
from gateway.oidc.logout import parse_logout_request
from gateway.signout import sign_out

log = logging.getLogger("gateway.oidc")

FORWARDED = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


class EndSessionHandler(BaseHandler):
    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def check_xsrf_cookie(self) -> None:
        # Apps may POST here from their own pages (RP-Initiated Logout 1.0 section 2); only our
        # confirmation form must carry our XSRF token, checked in post().
        return None

    async def get(self) -> None:
        await self._end_session(confirmed=False)

    async def post(self) -> None:
        confirmed = self.get_body_argument("confirm", None) == "yes"
        if confirmed:
            super().check_xsrf_cookie()
        await self._end_session(confirmed=confirmed)

    async def _end_session(self, *, confirmed: bool) -> None:
        ctx = self.ctx
        params = {name: self.single_argument(name, required=False) for name in FORWARDED}
        hint_claims = None
        if params["id_token_hint"]:
            try:
                hint_claims = ctx.verifier.verify_id_token_hint(params["id_token_hint"])
            except InvalidToken as e:
                raise InvalidRequest("The sign-out request carries an invalid id_token_hint.",
                                     log_detail=e.reason) from None
        request = parse_logout_request(
            hint_claims=hint_claims, client_id=params["client_id"],
            post_logout_redirect_uri=params["post_logout_redirect_uri"], state=params["state"],
            clients=ctx.clients)
        session_id = ctx.cookies.read_session_id(self)
        session = await ctx.sessions.lookup(session_id) if session_id else None
        proven = session is not None and request.hint_sid == session.sid
        if session is not None and not (proven or confirmed):
            self.set_no_store()
            self.render("logout_confirm.html", params=params,
                        app_name=request.client.display_name if request.client else None)
            return
        if request.hint_sid:
            # SECURITY P8: the session the hint names ends, wherever its browser is (this
            # request may come without our cookie), with all it was issued.
            hinted = await ctx.sessions.end_sid(request.hint_sid)
            for sid in hinted.all_sids if hinted else (request.hint_sid,):
                await ctx.grants.end_session(sid)
        await sign_out(self, ctx)
        log.info("signed out by end_session client=%s",
                 request.client.client_id if request.client else "-")
        if request.redirect_to:
            self.redirect(request.redirect_to, status=302)
            return
        self.render("signed_out.html", home_url=f"{ctx.settings.issuer}/")
