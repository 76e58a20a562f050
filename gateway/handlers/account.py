"""The signed-in user's own sessions (the list on the signed-in page, templates/
sessions_list.html): `POST /account/sessions/end` ends one of them, on this device or another;
`POST /account/sessions/end-others` ends all but this browser's. XSRF-protected forms; each
ends what the admin API would (SECURITY P8): the session, its refresh tokens, its access
tokens, and the apps that took part hear of it by back-channel logout (P9)."""

from __future__ import annotations

from gateway.context import GatewayContext
from gateway.errors import NotFound, SignInRequired
from gateway.handlers.base import BaseHandler
from gateway.sessions import Session
from gateway.signout import end_sessions, sign_out

LIST_URL = "/#sessions"


class AccountHandler(BaseHandler):
    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def current_session(self) -> tuple[str, Session]:
        """This browser's live session (its handle, and itself), or a sign-in page."""
        session_id = self.ctx.cookies.read_session_id(self)
        session = await self.ctx.sessions.lookup(session_id) if session_id else None
        if session_id is None or session is None:
            raise SignInRequired()
        return self.ctx.sessions.handle(session_id), session


class EndSessionOfUserHandler(AccountHandler):
    """POST /account/sessions/end, `sid`: end one of the signed-in user's sessions."""

    async def post(self) -> None:
        handle, current = await self.current_session()
        sid = self.single_argument("sid")
        assert sid is not None
        found = await self.ctx.sessions.by_sid(sid)
        if found is None or found[1].sub != current.sub:
            # Another user's session is answered as one that has ended: no oracle.
            raise NotFound("This session has already ended.", retry_url=LIST_URL,
                           log_detail="sid not among the user's live sessions")
        if found[0] == handle:
            await sign_out(self, self.ctx)
            self.redirect("/", status=303)
            return
        await end_sessions(self.ctx, sid=sid)
        self.set_no_store()
        self.redirect(LIST_URL, status=303)


class EndOtherSessionsHandler(AccountHandler):
    """POST /account/sessions/end-others: end every session of the user but this browser's."""

    async def post(self) -> None:
        handle, current = await self.current_session()
        await end_sessions(self.ctx, sub=current.sub, keep=handle)
        self.set_no_store()
        self.redirect(LIST_URL, status=303)
