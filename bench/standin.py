"""The Google stand-in in a process of its own, so that its CPU is not counted in the gateway's.

    python bench/standin.py PORT GATEWAY_ISSUER SECTION_JSON [--stall SECONDS]

Writes the gateway's `providers.google` section (fresh client credentials) as JSON to
SECTION_JSON once it listens. With `--stall`, every code exchange waits that long and then
answers normally (`Fault.stall`): a slow provider. With `--hold`, after `POST /bench/hold`
every code exchange waits until `POST /bench/release` (then, with `--stall`, that long
again), so that the benchmark can measure while all are parked and time the release from one
moment. `GET /bench/stats` answers
how many code exchanges arrived and how many are being held.

The benchmark's users are returning ones: signed in at Google and consented before, so the
authorization request is answered with the redirect back at once (as Google does), not with the
account chooser. The request is checked and the code issued as for the chooser: the gateway sees
the same redirect, and the load core is not spent rendering a page the gateway never sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from urllib.parse import urlencode

import tornado.httpserver
import tornado.routing
import tornado.web

from gateway.dev.standins.common import Fault, OAuth2TokenHandler
from gateway.dev.standins.google import GoogleStandIn, dev_provider
from gateway.dev.standins.oidc_common import AuthorizeHandler

SIGNED_IN_ACCOUNT = "ada"


class _Counters:
    arrived = 0
    held = 0
    gate: asyncio.Event | None = None  # with --hold: closed by /bench/hold until /bench/release


class CountingTokenHandler(OAuth2TokenHandler):
    """The stand-in's token endpoint, counting the exchanges it holds."""

    async def post(self) -> None:
        _Counters.arrived += 1
        _Counters.held += 1
        try:
            if _Counters.gate is not None:
                await _Counters.gate.wait()
            await super().post()
        finally:
            _Counters.held -= 1


class SignedInAuthorizeHandler(AuthorizeHandler):
    """The authorization endpoint for a user signed in at Google who consented before."""

    async def get(self) -> None:
        request = self.checked_request()
        if request is None:
            return
        account = self.provider.account(SIGNED_IN_ACCOUNT)
        assert account is not None
        params = {"code": self.provider.approve(request, account),
                  "scope": " ".join(request.scope), "authuser": "0", "prompt": "none"}
        if request.state is not None:
            params["state"] = request.state
        self.redirect(f"{request.redirect_uri}?{urlencode(params)}")


class ReleaseHandler(tornado.web.RequestHandler):
    def check_xsrf_cookie(self) -> None:
        """Called by the benchmark only."""

    def post(self, action: str) -> None:
        assert _Counters.gate is not None
        if action == "hold":
            _Counters.gate.clear()
        else:
            _Counters.gate.set()
        self.write({"held": _Counters.held})


class StatsHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"arrived": _Counters.arrived, "held": _Counters.held})


def make_app(standin: GoogleStandIn) -> tornado.web.Application:
    app = standin.make_app()
    kwargs = {"provider": standin}
    # Our routes first: Tornado takes the first match.
    app.default_router.rules.insert(0, tornado.routing.Rule(
        tornado.routing.PathMatches(r"/token"), CountingTokenHandler, kwargs))
    app.default_router.rules.insert(0, tornado.routing.Rule(
        tornado.routing.PathMatches(r"/o/oauth2/v2/auth"), SignedInAuthorizeHandler, kwargs))
    app.default_router.rules.insert(0, tornado.routing.Rule(
        tornado.routing.PathMatches(r"/bench/stats"), StatsHandler))
    app.default_router.rules.insert(0, tornado.routing.Rule(
        tornado.routing.PathMatches(r"/bench/(hold|release)"), ReleaseHandler))
    return app


async def serve(port: int, issuer: str, section_path: Path, stall: float, hold: bool) -> None:
    standin, section = dev_provider(f"http://127.0.0.1:{port}", issuer)
    if hold:
        _Counters.gate = asyncio.Event()
        _Counters.gate.set()  # open until the benchmark asks to hold
    if stall:
        standin.faults["token"] = Fault.stall(stall)
    server = tornado.httpserver.HTTPServer(make_app(standin), idle_connection_timeout=600)
    section_path.write_text(json.dumps(section))  # before it listens: ready means both
    server.listen(port, address="127.0.0.1", backlog=16384)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("issuer")
    parser.add_argument("section", type=Path)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.issuer, args.section, args.stall, args.hold))


if __name__ == "__main__":
    main()
