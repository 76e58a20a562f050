"""The sessions API on the admin listener: `GET /admin/sessions?sub=S` lists a user's live
sessions, `DELETE /admin/sessions?sub=S` or `?sid=ID` ends them (what `oauth-gateway sessions`
does from a shell). Authenticated by the bearer secret `admin.api_token`; without one the API
is off (404). The admin listener is loopback by default (SECURITY D3)."""

from __future__ import annotations

from gateway.context import GatewayContext
from gateway.errors import InvalidRequest, InvalidToken, MissingToken, NotFound
from gateway.handlers.base import BaseHandler
from gateway.signout import end_sessions
from gateway.textcompare import same_text
from gateway.tokens import bearer_token_from_header


class AdminSessionsHandler(BaseHandler):
    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def prepare(self) -> None:
        expected = self.ctx.settings.admin.api_token.reveal()
        if not expected:
            raise NotFound("The sessions API is off (admin.api_token is not set).")
        token = bearer_token_from_header(self.request.headers.get("Authorization"))
        if token is None:
            raise MissingToken("Send 'Authorization: Bearer <admin.api_token>'.")
        if not same_text(token, expected):
            raise InvalidToken("wrong admin API token")
        self.set_no_store()

    async def get(self) -> None:
        sub = self.single_argument("sub")
        assert sub is not None
        sessions = await self.ctx.sessions.of_sub(sub)
        self.write_json({"sub": sub, "sessions": [
            {"sid": session.sid, "idp": session.idp, "created": int(session.created),
             "last_seen": int(session.last_seen), "device": session.device,
             "address": session.address} for _, session in sessions]})

    async def delete(self) -> None:
        sub = self.single_argument("sub", required=False)
        sid = self.single_argument("sid", required=False)
        if (sub is None) == (sid is None):
            raise InvalidRequest("Name the sessions to end by exactly one of sub or sid.")
        count, sids = await end_sessions(self.ctx, sub=sub, sid=sid)
        self.write_json({"ended_sessions": count, "revoked_sids": sids})
