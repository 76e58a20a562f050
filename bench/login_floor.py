"""The floor under a login: Tornado doing a login's HTTP and nothing else.

    python bench/login_floor.py gateway PROVIDER_PORT PORT   # the gateway's part
    python bench/login_floor.py provider GATEWAY_PORT PORT   # the provider's part

The same exchanges as a real login, with answers of the same shape and size, driven by the same
bench/logins.py: GET /login/google answers a redirect with the gateway's headers and a cookie;
the provider's authorization endpoint redirects back; GET /callback/google posts a form to the
provider's token endpoint through the gateway's upstream client (upstream/pool.py, kept-alive
connections), reads its JSON, and answers a redirect with two cookies. No state, no signature,
no check: what is left of a login's cost when all of the gateway's own work is taken out
(`bench/run.py --only floor` prints it against a hello-world; docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys

import tornado.web
from tornado.httpclient import HTTPRequest

from gateway.upstream.pool import KeepAliveHTTPClient

# The headers every gateway answer carries (handlers/base.py), in size.
HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' https:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
)
ID_TOKEN_BYTES = 900  # an RS256 ID token with a profile


class _Answer(tornado.web.RequestHandler):
    def prepare(self) -> None:
        for name, value in HEADERS:
            self.set_header(name, value)
        self.set_header("X-Request-Id", secrets.token_hex(16))


class LoginStart(_Answer):
    def get(self) -> None:
        self.set_cookie("gw_login", secrets.token_urlsafe(64), httponly=True, max_age=600)
        self.redirect(f"/o/oauth2/v2/auth?state={secrets.token_urlsafe(32)}"
                      f"&nonce={secrets.token_urlsafe(24)}&client_id=floor")


class Callback(_Answer):
    def initialize(self, http: KeepAliveHTTPClient, token_url: str) -> None:
        self.http, self.token_url = http, token_url

    async def get(self) -> None:
        response = await self.http.call(HTTPRequest(
            self.token_url, method="POST", body=f"code={self.get_argument('code')}"
            "&grant_type=authorization_code&client_id=floor&client_secret=floor",
            headers={"Accept": "application/json"}, follow_redirects=False))
        answer = json.loads(response.body)
        self.set_cookie("gw_session", answer["access_token"], httponly=True, max_age=86400)
        self.set_cookie("gw_access", answer["id_token"][:400], httponly=True, max_age=3600)
        self.redirect("/")


class Authorize(tornado.web.RequestHandler):
    def initialize(self, gateway: str) -> None:
        self.gateway = gateway

    def get(self) -> None:
        self.redirect(f"{self.gateway}/callback/google?code={secrets.token_urlsafe(32)}"
                      f"&state={self.get_argument('state')}")


class Token(tornado.web.RequestHandler):
    def check_xsrf_cookie(self) -> None:
        pass

    def post(self) -> None:
        self.write({"access_token": secrets.token_urlsafe(48), "token_type": "Bearer",
                    "expires_in": 3599, "scope": "openid email profile",
                    "id_token": "x" * ID_TOKEN_BYTES})


async def serve(role: str, other_port: int, port: int) -> None:
    def quiet(handler: tornado.web.RequestHandler) -> None:
        del handler  # no access log

    if role == "gateway":
        http = KeepAliveHTTPClient(force_instance=True, max_clients=1000)
        app = tornado.web.Application([
            (r"/login/google", LoginStart),
            (r"/callback/google", Callback,
             {"http": http, "token_url": f"http://127.0.0.1:{other_port}/token"}),
        ], log_function=quiet)
    else:
        app = tornado.web.Application([
            (r"/o/oauth2/v2/auth", Authorize, {"gateway": f"http://127.0.0.1:{other_port}"}),
            (r"/token", Token),
        ], log_function=quiet)
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
