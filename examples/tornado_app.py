"""A downstream Tornado app protected by the gateway in a few lines.

    GATEWAY_ISSUER=http://localhost:8080 python examples/tornado_app.py   # then open :8000

Strangers are sent to the gateway's login page and come back here signed in: the gateway's
`login.allowed_return_urls` must include this app's URL (http://localhost:8000/), and the
browser must send the gateway's access cookie here (same host name, or `cookies.domain`).
API clients send `Authorization: Bearer <access token>` instead.
"""

from __future__ import annotations

import asyncio
import os

import tornado.web

from gateway.client import GatewayAuthMixin, GatewayVerifier


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
    issuer = os.environ.get("GATEWAY_ISSUER", "http://localhost:8080")
    make_app(issuer).listen(int(os.environ.get("PORT", "8000")), "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
