"""The gateway's own pages: who is signed in (the demo page in development mode), sign-out."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from gateway import cookies
from gateway.claims_display import claim_rows
from gateway.context import GatewayContext
from gateway.errors import InvalidRequest, InvalidToken, NotFound
from gateway.handlers.base import BaseHandler
from gateway.redirects import is_allowed_return_to
from gateway.session_list import session_rows
from gateway.signout import sign_out


class HomeHandler(BaseHandler):
    """GET /: the signed-in user and their token's claims, or the sign-in buttons."""

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def get(self) -> None:
        ctx = self.ctx
        token = ctx.cookies.read(self, cookies.ACCESS, shared=True)
        claims = None
        if token:
            try:
                claims = ctx.verifier.verify(token)
            except InvalidToken:
                token = None
        session_id = ctx.cookies.read_session_id(self)
        session = await ctx.sessions.lookup(session_id) if session_id else None
        rows = []
        if session_id and session and (claims is None or claims.get("sub") == session.sub):
            rows = session_rows(await ctx.sessions.of_sub(session.sub),
                                current_handle=ctx.sessions.handle(session_id),
                                provider_names=self.provider_names())
        home_url = f"{ctx.settings.issuer}/"
        query = urlencode({"return_to": home_url})
        idp = claims.get("idp") if claims else None
        provider = ctx.providers.get(idp) if isinstance(idp, str) else None
        self.set_no_store()
        self.render(
            "home.html",
            dev_mode=ctx.settings.dev_mode,
            claims=claims,
            claim_rows=claim_rows(claims or {}),
            # The brand a person knows ("X"), never the internal id ("twitter").
            provider_name=provider.display_name if provider else idp,
            token=token,
            sessions=rows,
            issuer=ctx.settings.issuer,
            chooser_url=f"/login?{query}",
            providers=[(p.display_name, f"/login/{name}?{query}", name)
                       for name, p in ctx.providers.items()],
        )

    def provider_names(self) -> dict[str, str]:
        return {name: p.display_name for name, p in self.ctx.providers.items()}


class ChooserHandler(BaseHandler):
    """GET /login?return_to=URL: one button per enabled provider (JSON for API clients)."""

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def get(self) -> None:
        ctx = self.ctx
        return_to = self.single_argument("return_to", required=False)
        if return_to is not None and not is_allowed_return_to(return_to, ctx.allowed_returns):
            raise InvalidRequest(
                "The address to return to after sign-in is not allowed by this gateway.",
                log_detail="return_to not in allowlist")
        app_name = await self.app_name(return_to)
        query = f"?{urlencode({'return_to': return_to})}" if return_to else ""
        providers = [(p.display_name, f"/login/{name}{query}", name)
                     for name, p in ctx.providers.items()]
        if self.wants_json():
            self.write_json({"providers": [
                {"name": name, "display_name": label, "login_url": url}
                for label, url, name in providers]})
            return
        self.render("login.html", providers=providers, dev_mode=ctx.settings.dev_mode,
                    app_name=app_name)

    async def app_name(self, return_to: str | None) -> str | None:
        """The registered client's name when this login belongs to its authorization request
        (`return_to` is our own `/authorize/resume?request=<id>`)."""
        resume = f"{self.ctx.settings.issuer}/authorize/resume"
        if not return_to or urlsplit(return_to)._replace(query="").geturl() != resume:
            return None
        request_ids = parse_qs(urlsplit(return_to).query).get("request", [])
        if len(request_ids) != 1:
            return None
        request = await self.ctx.grants.peek_request(request_ids[0])
        client = self.ctx.clients.get(request.client_id) if request else None
        return (client.name or client.client_id) if client else None


class UnknownProviderHandler(BaseHandler):
    """/login/<name> and /callback/<name> for a provider that is not enabled: a clear 404."""

    async def prepare(self) -> None:
        await self.await_prepared()
        raise NotFound("This sign-in provider is not enabled on this gateway.",
                       retry_url="/login", log_detail="unknown or disabled provider")


class LogoutHandler(BaseHandler):
    """POST /logout (XSRF-protected form): end the session, clear every cookie we set."""

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def post(self) -> None:
        ctx = self.ctx
        return_to = self.single_argument("return_to", required=False) or ctx.default_return_to
        if not is_allowed_return_to(return_to, ctx.allowed_returns):
            raise InvalidRequest("The address to return to is not allowed by this gateway.")
        await sign_out(self, ctx)
        self.redirect(return_to, status=303)
