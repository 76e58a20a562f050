"""A downstream Tornado app protected by the gateway in a few lines.

Next to the development gateway it needs no setting at all:

    oauth-gateway serve --dev            # the gateway on http://localhost:8080
    python examples/tornado_app.py       # this app; open http://localhost:8000/

A browser without a session is sent to the gateway's login page and comes back here signed in:
development mode allows return URLs on http://localhost, http://127.0.0.1 and http://[::1] on
any port. Open the app as http://localhost:8000/ (the gateway's host name), because the
gateway's access cookie belongs to that host name, and browsers send it to every port of it.

API clients send `Authorization: Bearer <access token>` instead; without a valid one they get
a 401 with `WWW-Authenticate: Bearer ...` and a JSON body, not the redirect.

Against another gateway: `GATEWAY_ISSUER=https://login.example.com PORT=8000`, with this app's
URL in the gateway's `login.allowed_return_urls` and the app on a host that receives the
gateway's access cookie (the same host, or a subdomain of `cookies.domain`).
"""

from __future__ import annotations

import asyncio
import os

import tornado.web

from gateway.client import GatewayAuthMixin, GatewayVerifier

DEFAULT_ISSUER = "http://localhost:8080"  # where `oauth-gateway serve --dev` listens
DEFAULT_PORT = 8000


class HomeHandler(GatewayAuthMixin, tornado.web.RequestHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        claims = self.current_user  # verified: signature, iss, aud, exp, typ
        self.write({"hello": claims.get("name") or claims["sub"], "sub": claims["sub"],
                    "email": claims.get("email")})


def make_app(issuer: str, audience: str | None = None) -> tornado.web.Application:
    verifier = GatewayVerifier(issuer, audience or issuer)  # aud: the gateway's cookie login
    return tornado.web.Application([(r"/", HomeHandler)], gateway_verifier=verifier)


async def main() -> None:
    issuer = os.environ.get("GATEWAY_ISSUER", DEFAULT_ISSUER)
    port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
    # "localhost": every loopback address it names (127.0.0.1 and ::1), as a browser may try
    # either; never a public interface.
    make_app(issuer).listen(port, "localhost")
    print(f"example app: open http://localhost:{port}/ (gateway {issuer})", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
