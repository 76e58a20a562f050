"""The code flow's back channel: `POST /token` (RFC 6749 3.2, OIDC Core 3.1.3), `POST /revoke`
(RFC 7009) and `GET|POST /userinfo` (OIDC Core 5.3).

Every answer carries `Cache-Control: no-store` and `Pragma: no-cache` (SECURITY H1); errors are
RFC 6749 5.2 JSON through the one error mapping of `BaseHandler`.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.config import ClientSettings
from gateway.context import GatewayContext
from gateway.errors import (
    InvalidGrant,
    InvalidToken,
    MissingToken,
    UnsupportedGrantType,
)
from gateway.handlers.base import BaseHandler, one_value
from gateway.oidc.authorization import check_code_redemption
from gateway.oidc.claims import released_claims
from gateway.oidc.clients import client_credentials
from gateway.oidc.responses import token_response
from gateway.tokens import bearer_token_from_header

log = logging.getLogger("gateway.oidc")

CORS_MAX_AGE = 600


class AppApiHandler(BaseHandler):
    """An endpoint apps call, from their servers or from their pages: no XSRF, JSON errors,
    never cached (SECURITY H1), and CORS for the registered apps' origins only (H8): the
    Origin is echoed only when it is one of them, never `*`, never with credentials."""

    api = True
    cors_methods = "POST"

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if hasattr(self, "ctx"):  # also after clear(), so that errors are readable too
            self._allow_origin()

    async def prepare(self) -> None:
        await self.await_prepared()
        self._allow_origin()
        self.set_no_store()

    def options(self) -> None:
        """A CORS preflight."""
        if self._allow_origin():
            self.set_header("Access-Control-Allow-Methods", self.cors_methods)
            self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.set_header("Access-Control-Max-Age", str(CORS_MAX_AGE))
        self.set_status(204)
        self.finish()

    def _allow_origin(self) -> bool:
        self.set_header("Vary", "Origin")
        origin = self.request.headers.get("Origin")
        if origin is None or origin not in self.ctx.clients.cors_origins:
            return False
        self.set_header("Access-Control-Allow-Origin", origin)
        return True


class ClientHandler(AppApiHandler):
    """A back-channel endpoint: form parameters from the body only, client authentication."""

    def form(self, name: str, *, required: bool = False) -> str | None:
        """A body parameter given at most once (SECURITY S7), bounded (H4); never the query,
        which could carry a secret into logs and histories."""
        return one_value(name, self.get_body_arguments(name, strip=False), required=required)

    def authenticate_client(self, *, allow_public: bool) -> ClientSettings:
        credentials = client_credentials(self.request.headers.get("Authorization"),
                                         self.form("client_id"), self.form("client_secret"))
        return self.ctx.clients.authenticate(credentials, allow_public=allow_public)


class TokenHandler(ClientHandler):
    """POST /token: grant_type=authorization_code or refresh_token."""

    async def post(self) -> None:
        client = self.authenticate_client(allow_public=True)
        grant_type = self.form("grant_type", required=True)
        if grant_type == "authorization_code":
            answer = await self._authorization_code(client)
        elif grant_type == "refresh_token":
            answer = await self._refresh_token(client)
        else:
            raise UnsupportedGrantType("Only authorization_code and refresh_token are supported.")
        for kind in ("access", "id", "refresh"):
            if f"{kind}_token" in answer:
                self.ctx.metrics.issued[kind].inc()
        self.write_json(answer)

    async def _authorization_code(self, client: ClientSettings) -> dict[str, Any]:
        ctx = self.ctx
        code = self.form("code", required=True)
        assert code is not None
        grant = await ctx.grants.redeem_code(code)
        check_code_redemption(grant, client_id=client.client_id,
                              redirect_uri=self.form("redirect_uri"),
                              code_verifier=self.form("code_verifier"))
        if client.is_public and grant.code_challenge is None:
            raise InvalidGrant("public client code without PKCE")  # /authorize refuses these
        family = await ctx.grants.start_family(grant, client.token_audience)
        refresh_token = None
        if "offline_access" in grant.scope:
            refresh_token = await ctx.grants.issue_refresh_token(family)
        log.info("tokens issued client=%s grant=authorization_code refresh=%s",
                 client.client_id, refresh_token is not None)
        return token_response(ctx.issuer, family, grant.scope, refresh_token=refresh_token,
                              nonce=grant.nonce,
                              id_token_algorithm=client.id_token_signed_response_alg)

    async def _refresh_token(self, client: ClientSettings) -> dict[str, Any]:
        ctx = self.ctx
        refresh_token = self.form("refresh_token", required=True)
        assert refresh_token is not None
        requested = self.form("scope")
        family, scope, successor = await ctx.grants.rotate(refresh_token, client,
                                                           requested_scope=requested)
        if not ctx.access.allows(family.sub, family.claims):
            # Narrowed since this app's login: the family ends here, successor included.
            await ctx.grants.revoke_family(family.family_id, reason="access policy")
            raise InvalidGrant(f"access policy refused sub={family.sub}")
        log.info("tokens issued client=%s grant=refresh_token", client.client_id)
        # OIDC Core 12.2: a new ID token, without nonce.
        return token_response(ctx.issuer, family, scope, refresh_token=successor, nonce=None,
                              id_token_algorithm=client.id_token_signed_response_alg)


class RevokeHandler(ClientHandler):
    """POST /revoke (RFC 7009): a refresh token revokes its family; an access token is
    remembered as revoked until it expires. Unknown tokens: 200 all the same (2.2). A token of
    another client is refused (2.1) and left alone (SECURITY T5)."""

    async def post(self) -> None:
        ctx = self.ctx
        client = self.authenticate_client(allow_public=True)
        token = self.form("token", required=True)
        assert token is not None
        self.form("token_type_hint")  # we tell the types apart ourselves (RFC 7009 2.1)
        try:
            claims = ctx.verifier.verify(token)
        except InvalidToken:
            claims = None
        if claims is not None:
            owner = claims.get("client_id")
            if owner is not None and owner != client.client_id:
                raise InvalidGrant(f"{client.client_id} tried to revoke a token of {owner}",
                                   "The token was issued to another client.")
            await ctx.grants.revoke_access_token(claims)
            log.info("access token revoked by client=%s", client.client_id)
        else:
            info = await ctx.grants.refresh_token_info(token)
            if info is not None:
                if info.client_id != client.client_id:
                    raise InvalidGrant(f"{client.client_id} tried to revoke a refresh token of "
                                       f"{info.client_id}",
                                       "The token was issued to another client.")
                await ctx.grants.revoke_family(info.family.family_id,
                                               reason=f"revoked by client {client.client_id}")
        self.set_status(200)
        self.finish()


class UserinfoHandler(AppApiHandler):
    """GET|POST /userinfo: the claims an access token's scope releases (OIDC Core 5.3)."""

    cors_methods = "GET, POST"

    async def get(self) -> None:
        ctx = self.ctx
        token = bearer_token_from_header(self.request.headers.get("Authorization"))
        if token is None:
            raise MissingToken("No access token: send 'Authorization: Bearer <token>'.")
        claims = ctx.verifier.verify(token)
        scope = str(claims.get("scope", "")).split()
        if "openid" not in scope:
            raise InvalidToken("not an OpenID Connect access token (no openid scope)")
        if await ctx.grants.access_token_revoked(claims):
            raise InvalidToken("revoked")
        self.write_json({"sub": claims["sub"], **released_claims(claims, scope)})

    post = get


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
