"""Token verification for downstream apps: `GET /verify` and RFC 7662 `POST /introspect`."""

from __future__ import annotations

import logging
from typing import Any

from gateway import cookies
from gateway.context import GatewayContext
from gateway.errors import InvalidToken, MissingToken
from gateway.handlers.base import BaseHandler
from gateway.tokens import bearer_token_from_header

log = logging.getLogger("gateway.verify")


class VerifyHandler(BaseHandler):
    """GET /verify: the claims of a valid access token (Bearer header or the access cookie)."""

    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        token = bearer_token_from_header(self.request.headers.get("Authorization"))
        if token is None:
            token = self.ctx.cookies.read(self, cookies.ACCESS, shared=True)
        if not token:
            raise MissingToken("No access token: send 'Authorization: Bearer <token>'.")
        claims = self.ctx.verifier.verify(token)
        self.set_no_store()
        self.write_json(claims)


class IntrospectHandler(BaseHandler):
    """POST /introspect (RFC 7662): `{"active": true, ...claims}` or just `{"active": false}`.

    Our tokens are self-contained JWTs, so introspection reveals nothing the token's holder
    cannot already read; client authentication arrives with registered clients.
    """

    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def post(self) -> None:
        token = self.single_argument("token")
        assert token is not None
        self.single_argument("token_type_hint", required=False)
        self.set_no_store()
        try:
            claims = self.ctx.verifier.verify(token)
        except InvalidToken as e:
            log.info("introspection: inactive token (%s)", e.reason)
            self.write_json({"active": False})
            return
        answer: dict[str, Any] = {"active": True, "token_type": "Bearer", **claims}
        self.write_json(answer)
