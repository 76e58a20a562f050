"""Signing a browser out: its gateway session ends, the refresh-token families started in it are
revoked, and every cookie the gateway set is cleared. Shared by the sign-out form and
RP-initiated logout (handlers/pages.py, handlers/end_session.py)."""

from __future__ import annotations

import contextlib

from gateway import cookies
from gateway.context import GatewayContext
from gateway.errors import InvalidToken
from gateway.handlers.base import BaseHandler


async def sign_out(handler: BaseHandler, ctx: GatewayContext) -> None:
    """End this browser's gateway session, revoke the refresh-token families started in it
    (SECURITY P2, P7) and the access token in its cookie (T6: a copy taken before is refused
    wherever revocation is checked), and clear every cookie we set, with the attributes they
    were set with."""
    access_token = ctx.cookies.read(handler, cookies.ACCESS, shared=True)
    if access_token:
        with contextlib.suppress(InvalidToken):  # expired or not ours: nothing to revoke
            await ctx.grants.revoke_access_token(ctx.verifier.verify(access_token))
    session_id = ctx.cookies.read_session_id(handler)
    if session_id:
        session = await ctx.sessions.end(session_id)
        for sid in session.all_sids if session else ():
            await ctx.grants.end_session(sid)
    ctx.cookies.clear(handler, cookies.SESSION)
    ctx.cookies.clear(handler, cookies.ACCESS, shared=True)
    handler.set_no_store()


async def end_sessions(ctx: GatewayContext, *, sub: str | None = None, sid: str | None = None,
                       keep: str | None = None) -> tuple[int, list[str]]:
    """End every session of a user (but the one whose handle is `keep`), or the one session of
    a sid, wherever their browsers are (SECURITY P8): the sessions, their refresh-token
    families, the access tokens issued in them and, through grants, a back-channel logout to
    the apps that took part. The number of sessions ended and the sids whose tokens were
    revoked."""
    if sub is not None:
        ended = [await ctx.sessions.end_by_handle(handle)
                 for handle, _ in await ctx.sessions.of_sub(sub) if handle != keep]
    else:
        assert sid is not None
        ended = [await ctx.sessions.end_sid(sid)]
    sids = [each for session in ended if session for each in session.all_sids]
    if sid is not None and not sids:
        sids = [sid]  # its families and tokens end even once the session itself is gone
    for each in sids:
        await ctx.grants.end_session(each)
    return sum(1 for session in ended if session), sids

