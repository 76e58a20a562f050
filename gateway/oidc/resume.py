"""The saved authorization request that an upstream login resumes (`/authorize/resume`).

An app's authorization request that needs a login is kept server-side under a random id while
the browser signs in upstream; the login's `return_to` is our resume URL naming that id. Both
the resume step and a refused login take the request from here: single use, and only while its
client still registers its `redirect_uri` (SECURITY R3).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from gateway.config import ClientSettings
from gateway.context import GatewayContext
from gateway.errors import AuthorizationRedirect
from gateway.oidc.authorization import AuthorizationRequest, refusal

RESUME_PATH = "/authorize/resume"


async def take_known_request(ctx: GatewayContext, request_id: str
                             ) -> tuple[AuthorizationRequest, ClientSettings] | None:
    """The saved authorization request (taken: single use) and its client, while the client
    still registers its redirect_uri; else None, and nothing may be redirected to (R3)."""
    request = await ctx.grants.take_request(request_id)
    client = ctx.clients.get(request.client_id) if request else None
    if request is None or client is None or request.redirect_uri not in client.redirect_uris:
        return None
    return request, client


async def refusal_to_app(ctx: GatewayContext, return_to: str, error: str, description: str,
                         *, log_detail: str) -> AuthorizationRedirect | None:
    """For a login made for an app's authorization request (its return_to is our resume URL),
    the refusal that goes back to that app's redirect_uri; None for any other login."""
    parts = urlsplit(return_to)
    if f"{parts.scheme}://{parts.netloc}{parts.path}" != f"{ctx.settings.issuer}{RESUME_PATH}":
        return None
    request_id = parse_qs(parts.query).get("request", [""])[0]
    known = await take_known_request(ctx, request_id) if request_id else None
    if known is None:
        return None
    return refusal(known[0], error, description, issuer=ctx.settings.issuer,
                   log_detail=log_detail)
