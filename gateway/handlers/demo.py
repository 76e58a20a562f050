"""Development mode's demo app: a public OpenID Connect client living on the gateway's own
origin, so that `serve --dev` shows the code flow end to end: `GET /demo/oidc` starts it
(state, nonce and PKCE verifier in a signed cookie), `GET /demo/callback` exchanges the code at
`/token` over HTTP, as any app would, and shows what the app received, with the app's sign-out
button: RP-Initiated Logout, a form posting its ID token (`id_token_hint`) and its registered
`post_logout_redirect_uri` to the gateway's `end_session_endpoint`."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

import jwt
import tornado.httpclient

from gateway import cookies
from gateway.claims_display import claim_rows
from gateway.context import GatewayContext
from gateway.errors import InvalidRequest
from gateway.handlers.base import BaseHandler
from gateway.textcompare import same_text
from gateway.transactions import pkce_s256_challenge

DEMO_CLIENT_ID = "demo-app"
DEMO_CALLBACK_PATH = "/demo/callback"
DEMO_COOKIE_AGE = 600


class DemoHandler(BaseHandler):
    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    @property
    def redirect_uri(self) -> str:
        return f"{self.ctx.settings.issuer}{DEMO_CALLBACK_PATH}"


class DemoStartHandler(DemoHandler):
    """GET /demo/oidc: what an app's "Sign in" button does."""

    def get(self) -> None:
        flow = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
                "code_verifier": secrets.token_urlsafe(48)}
        self.ctx.cookies.set(self, cookies.DEMO, json.dumps(flow), max_age=DEMO_COOKIE_AGE,
                             signed=True)
        query = urlencode({
            "client_id": DEMO_CLIENT_ID, "redirect_uri": self.redirect_uri,
            "response_type": "code", "scope": "openid email profile offline_access",
            "state": flow["state"], "nonce": flow["nonce"],
            "code_challenge": pkce_s256_challenge(flow["code_verifier"]),
            "code_challenge_method": "S256"})
        self.set_no_store()
        self.redirect(f"{self.ctx.settings.issuer}/authorize?{query}", status=302)


class DemoCallbackHandler(DemoHandler):
    """GET /demo/callback?code=...&state=...: what the app's callback does."""

    async def get(self) -> None:
        raw = self.ctx.cookies.read_signed(self, cookies.DEMO, DEMO_COOKIE_AGE)
        flow: dict[str, str] = json.loads(raw) if raw else {}
        state = self.single_argument("state", required=False) or ""
        if not flow or not same_text(flow["state"], state):
            raise InvalidRequest("This demo sign-in was not started here, or has expired.",
                                 retry_url="/demo/oidc")
        self.ctx.cookies.clear(self, cookies.DEMO)
        error = self.single_argument("error", required=False)
        if error:
            raise InvalidRequest(f"The gateway refused the demo app: {error}.",
                                 retry_url="/demo/oidc")
        code = self.single_argument("code")
        assert code is not None
        answer = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"{self.ctx.settings.issuer}/token", method="POST", raise_error=False,
            body=urlencode({"grant_type": "authorization_code", "code": code,
                            "redirect_uri": self.redirect_uri, "client_id": DEMO_CLIENT_ID,
                            "code_verifier": flow["code_verifier"]}))
        response: dict[str, Any] = json.loads(answer.body or b"{}")
        if answer.code != 200:
            raise InvalidRequest("The token request failed: "
                                 f"{response.get('error', answer.code)}.", retry_url="/demo/oidc")
        # The demo shows the claims; a real app validates the ID token (signature, iss, aud,
        # nonce) with its OIDC library before trusting any of them.
        id_claims = jwt.decode(response["id_token"], options={"verify_signature": False})
        client = self.ctx.clients.get(DEMO_CLIENT_ID)
        self.set_no_store()
        self.render("demo.html", claim_rows=claim_rows(id_claims),
                    nonce_ok=id_claims.get("nonce") == flow["nonce"],
                    # POSTed, so that the ID token stays out of URLs (and access logs).
                    end_session_endpoint=f"{self.ctx.settings.issuer}/logout/oidc",
                    id_token=response["id_token"],
                    post_logout_redirect_uri=(client.post_logout_redirect_uris[0]
                                              if client and client.post_logout_redirect_uris
                                              else None),
                    response=json.dumps({k: v for k, v in response.items()
                                         if k not in ("access_token", "id_token",
                                                      "refresh_token")}, indent=2))
