"""Token verification for downstream apps: `GET /verify` and RFC 7662 `POST /introspect`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from gateway import cookies
from gateway.context import GatewayContext
from gateway.errors import InvalidToken, MissingToken
from gateway.handlers.base import JSON_HEADERS, NO_STORE_HEADERS, BaseHandler
from gateway.handlers.token import ClientHandler
from gateway.tokens import bearer_token_from_header

log = logging.getLogger("gateway.verify")
VERIFIED_HEADERS = (*NO_STORE_HEADERS, *JSON_HEADERS)


class VerifyHandler(BaseHandler):
    """GET /verify: the claims of a valid access token (Bearer header or the access cookie).

    Stateless by default: a revoked token is refused only once it expires. With
    `tokens.verify_checks_revocation` the store is asked too (one lookup per request); if it
    cannot answer, the answer is a 503, never a 200 (SECURITY H9)."""

    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def get(self) -> Awaitable[None] | None:
        # Not a coroutine unless the store is asked: the hot path of every downstream app.
        token = bearer_token_from_header(self.request.headers.get("Authorization"))
        if token is None:
            token = self.ctx.cookies.read(self, cookies.ACCESS, shared=True)
        if not token:
            raise MissingToken("No access token: send 'Authorization: Bearer <token>'.")
        claims, body = self.ctx.verifier.verify_as_json(token)
        if self.ctx.settings.tokens.verify_checks_revocation:
            return self._answer_unless_revoked(claims, body)
        self._answer(body)
        return None

    async def _answer_unless_revoked(self, claims: dict[str, Any], body: bytes) -> None:
        if await self.ctx.grants.access_token_revoked(claims):
            raise InvalidToken("revoked")
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        self.ctx.metrics.verified_by_verify.inc()
        self.put_headers(VERIFIED_HEADERS)
        self.finish(body)


class IntrospectHandler(ClientHandler):
    """POST /introspect (RFC 7662): `{"active": true, ...claims}` or just `{"active": false}`.

    Only confidential clients may ask (SECURITY T2). An access token is active for the caller
    when it was issued to the caller, or is meant for it: its `aud` is the caller's `audience`
    (an API registers as a confidential client with the audience of its tokens). Any other
    client's token is `active: false` (RFC 7662 4: the server decides whether the caller may
    use the token; SECURITY T5). Tokens of the cookie login, issued to no client, are shared by
    every app behind the gateway and answered to any authenticated client. A refresh token is
    active only for its own client. Revoked tokens are inactive; a store that cannot answer
    gives a 503, never `active: true` (H9).
    """

    async def post(self) -> None:
        ctx = self.ctx
        client = self.authenticate_client(allow_public=False)
        token = self.form("token", required=True)
        assert token is not None
        self.form("token_type_hint")
        try:
            claims = ctx.verifier.verify(token)
        except InvalidToken as e:
            log.debug("introspection: not an access token (%s)", e.reason)
            ctx.metrics.token_refused(e.reason)
            claims = None
        if claims is not None:
            owner = claims.get("client_id")
            if owner is not None and owner != client.client_id \
                    and claims.get("aud") != client.token_audience:
                log.info("introspection: token of %s asked by %s", owner, client.client_id)
            elif await ctx.grants.access_token_revoked(claims):
                log.info("introspection: revoked access token")
            else:
                ctx.metrics.verified_by_introspect.inc()
                self.write_json({"active": True, "token_type": "Bearer", **claims})
                return
        else:
            info = await ctx.grants.refresh_token_info(token)
            if info is not None and info.active and info.client_id == client.client_id:
                family = info.family
                answer: dict[str, Any] = {
                    "active": True, "client_id": info.client_id, "scope": " ".join(family.scope),
                    "sub": family.sub, "aud": family.audience, "iss": ctx.settings.issuer,
                    "exp": int(info.expires_at)}
                self.write_json(answer)
                return
        self.write_json({"active": False})
