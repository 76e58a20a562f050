"""`GET /verify`: the claims of a valid access token, for downstream apps.

/verify sits on every request of every downstream app, and once a token is in the verifier's
cache the answer is already made (its claims' JSON); a forged token costs one signature check.
So a Bearer token's 200 or 401 is answered below Tornado's RequestHandler by `VerifyRoute`
(gateway/fast_route.py), with exactly what `VerifyHandler` sends, built from the same
functions (handlers/base.py: headers, error body, refusal line). Every other request goes to
`VerifyHandler`: no token or the access cookie, another method, a body, oversized headers, a
revocation check the store must answer (`tokens.verify_checks_revocation`, unless this replica
had the answer less than a second ago: Grants.recently_not_revoked), a rate limit counted in
the store, a limit exceeded. Tests compare the two answers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import tornado.httputil

from gateway import cookies
from gateway.context import GatewayContext
from gateway.errors import InvalidToken, MissingToken, RateLimited
from gateway.fast_route import FastAnswer, FastRoute
from gateway.handlers.base import (
    JSON_HEADERS,
    NO_STORE_HEADERS,
    BaseHandler,
    json_error_body,
    log_refusal,
)
from gateway.logs import request_id_var
from gateway.proxies import client_address
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


VERIFY_GROUP = "verify"
UNAUTHORIZED = tornado.httputil.ResponseStartLine("HTTP/1.1", 401, "Unauthorized")


class VerifyRoute(FastRoute):
    """The target of the `/verify` rule: a Bearer token's 200 or 401 (gateway/fast_route.py)."""

    route = "/verify"
    handler_class = VerifyHandler

    def find_handler(self, request: tornado.httputil.HTTPServerRequest,
                     **kwargs: Any) -> tornado.httputil.HTTPMessageDelegate:
        token = self._bearer_token(request)
        if token is None or not self._within_rate_limit(request):
            return self.to_handler(request)
        verifier = self.ctx.verifier
        checks_revocation = self.ctx.settings.tokens.verify_checks_revocation
        body = None if checks_revocation else verifier.cached_json(token)
        if body is None:
            try:
                claims, body = verifier.verify_as_json(token)
            except InvalidToken as refusal:
                return _Refusal(self, request, refusal)
            except Exception:  # a bug: the handler answers it, as a logged 500
                return self.to_handler(request)
            # The store is the handler's to ask; this replica may know its answer already.
            if checks_revocation and not self.ctx.grants.recently_not_revoked(claims):
                return self.to_handler(request)
        return _Answer(self, request, VERIFIED_HEADERS, body)

    def _bearer_token(self, request: tornado.httputil.HTTPServerRequest) -> str | None:
        """The Bearer token of a request this route answers itself, else None."""
        if not self.without_body(request):
            return None
        return bearer_token_from_header(request.headers.get("Authorization"))

    def _within_rate_limit(self, request: tornado.httputil.HTTPServerRequest) -> bool:
        """Count the request (SECURITY H5) when that is decided in this process; a limit
        counted in the store, or one exceeded, is VerifyHandler's to answer."""
        limiter = self.edge.rate_limiter
        if limiter is None or not limiter.limits(VERIFY_GROUP):
            return True
        if not limiter.counts_locally(VERIFY_GROUP):
            return False
        address = client_address(request.remote_ip or "", request.headers,
                                 self.edge.trusted_proxies)
        try:
            limiter.count(VERIFY_GROUP, address)
        except RateLimited:
            return False  # counted twice from here on: over the limit either way
        return True


class _Answer(FastAnswer):
    """The 200 of one request with a valid token."""

    def answered(self, request_id: str) -> None:
        self.route.ctx.metrics.verified_by_verify.inc()


class _Refusal(FastAnswer):
    """The 401 of an invalid token: VerifyHandler's error answer (BaseHandler.write_error)."""

    status = UNAUTHORIZED

    def __init__(self, route: VerifyRoute, request: tornado.httputil.HTTPServerRequest,
                 refusal: InvalidToken) -> None:
        super().__init__(route, request,
                         (*refusal.response_headers(), *NO_STORE_HEADERS, *JSON_HEADERS),
                         json_error_body(refusal))
        # Kept without its traceback and the exception it replaced (whose traceback is the
        # same stack): their frames lead back to this answer through the connection, a cycle
        # of ~35 objects per refused token left to the cyclic collector, whose pauses were the
        # p99 of a forged-token flood.
        refusal.__traceback__ = refusal.__context__ = refusal.__cause__ = None
        self.refusal = refusal

    def answered(self, request_id: str) -> None:
        route = self.route
        # The refusal line carries the request's id; the variable belongs to the connection's
        # task here (no task per request), so it is put back for the next request.
        previous = request_id_var.set(request_id)
        try:
            log_refusal(self.refusal, "GET", route.route, route.edge, route.ctx.metrics)
        finally:
            request_id_var.reset(previous)
