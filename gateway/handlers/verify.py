"""`GET /verify`: the claims of a valid access token, for downstream apps.

/verify sits on every request of every downstream app, and once a token is in the verifier's
cache the answer is already made (its claims' JSON); a forged token costs one signature check.
A RequestHandler around either costs more than the work: a handler object, its default headers,
a coroutine, its flush, an exception through its error path. So a Bearer token's 200 or 401 is
answered below Tornado's RequestHandler by `VerifyRoute`, a Tornado `Router` (tornado.routing,
the documented way to route to something other than a RequestHandler), with exactly what
`VerifyHandler` sends, built from the same functions (handlers/base.py: headers, error body,
refusal line). Every other request goes to `VerifyHandler`: no token or the access cookie,
another method, a body, oversized headers, a store-backed revocation check or rate limit, a
limit exceeded. Tests compare the two answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

import tornado.httputil
import tornado.routing
import tornado.web

from gateway import cookies
from gateway.context import GatewayContext
from gateway.errors import InvalidToken, MissingToken, RateLimited
from gateway.handlers.base import (
    HSTS_HEADERS,
    JSON_HEADERS,
    MAX_HEADER_BYTES,
    NO_EDGE,
    NO_STORE_HEADERS,
    BaseHandler,
    edge_of,
    json_error_body,
    log_refusal,
    request_header_bytes,
    wants_hsts,
)
from gateway.logs import REQUEST_ID_HEADER, AccessLog, request_id_from, request_id_var
from gateway.proxies import client_address, is_trusted
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


ROUTE = "/verify"
VERIFY_GROUP = "verify"
OK = tornado.httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
UNAUTHORIZED = tornado.httputil.ResponseStartLine("HTTP/1.1", 401, "Unauthorized")


class VerifyRoute(tornado.routing.Router):
    """The target of the `/verify` rule; `application` is set once the Application exists."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.application: tornado.web.Application | None = None
        self.access_log: AccessLog | None = None
        self.edge = NO_EDGE
        self._date_second = -1
        self._date = ""

    def attach(self, application: tornado.web.Application, access_log: AccessLog) -> None:
        """Once the Application exists: where other requests go, and the access log."""
        self.application = application
        self.access_log = access_log
        self.edge = edge_of(application)

    def find_handler(self, request: tornado.httputil.HTTPServerRequest,
                     **kwargs: Any) -> tornado.httputil.HTTPMessageDelegate:
        assert self.application is not None, "VerifyRoute.attach is called by make_app"
        token = self._bearer_token(request)
        if token is None or not self._within_rate_limit(request):
            return self.application.get_handler_delegate(
                request, VerifyHandler, target_kwargs={"ctx": self.ctx})
        verifier = self.ctx.verifier
        body = verifier.cached_json(token)
        if body is None:
            try:
                _, body = verifier.verify_as_json(token)
            except InvalidToken as refusal:
                return _Refusal(self, request, refusal)
            except Exception:  # a bug: the handler answers it, as a logged 500
                return self.application.get_handler_delegate(
                    request, VerifyHandler, target_kwargs={"ctx": self.ctx})
        return _Answer(self, request, body)

    def _bearer_token(self, request: tornado.httputil.HTTPServerRequest) -> str | None:
        """The Bearer token of a request this route answers itself, else None."""
        headers = request.headers
        if request.method != "GET" or "Content-Length" in headers \
                or "Transfer-Encoding" in headers:
            return None
        if self.ctx.settings.tokens.verify_checks_revocation:
            return None
        token = bearer_token_from_header(headers.get("Authorization"))
        if token is None or request_header_bytes(request) > MAX_HEADER_BYTES:
            return None
        return token

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

    def date(self) -> str:
        """The Date header (RFC 9110 6.6.1), formatted once a second."""
        now = time.time()
        if int(now) != self._date_second:
            self._date_second = int(now)
            self._date = tornado.httputil.format_timestamp(now)
        return self._date


class _Answer(tornado.httputil.HTTPMessageDelegate):
    """The 200 of one request with a valid token: written once the request has been read."""

    status = OK

    def __init__(self, route: VerifyRoute, request: tornado.httputil.HTTPServerRequest,
                 body: bytes) -> None:
        self.route = route
        self.request = request
        self.body = body

    def finish(self) -> None:
        route, request = self.route, self.request
        assert route.application is not None and route.access_log is not None
        assert request.connection is not None
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        self.answered(request_id)
        headers = tornado.httputil.HTTPHeaders()
        for name, value in (*route.edge.security_headers, *self.headers()):
            headers[name] = value
        if wants_hsts(route.edge, request):
            headers.update(HSTS_HEADERS)
        headers["Date"] = route.date()
        headers[REQUEST_ID_HEADER] = request_id  # a sane token (logs.request_id_from)
        headers["Content-Length"] = str(len(self.body))
        request.connection.write_headers(self.status, headers, self.body)
        request.connection.finish()
        route.access_log.record(ROUTE, request, self.status.code, request_id)
        tracing = route.edge.tracing
        if tracing is not None:
            tracing.record_request(
                "GET", ROUTE, request.headers, self.status.code, start_time=request._start_time,
                from_trusted_proxy=is_trusted(request.remote_ip or "",
                                              route.edge.trusted_proxies))

    def headers(self) -> tuple[tuple[str, str], ...]:
        return VERIFIED_HEADERS

    def answered(self, request_id: str) -> None:
        self.route.ctx.metrics.verified_by_verify.inc()


class _Refusal(_Answer):
    """The 401 of an invalid token: VerifyHandler's error answer (BaseHandler.write_error)."""

    status = UNAUTHORIZED

    def __init__(self, route: VerifyRoute, request: tornado.httputil.HTTPServerRequest,
                 refusal: InvalidToken) -> None:
        super().__init__(route, request, json_error_body(refusal))
        # Kept without its traceback and the exception it replaced (whose traceback is the
        # same stack): their frames lead back to this answer through the connection, a cycle
        # of ~35 objects per refused token left to the cyclic collector, whose pauses were the
        # p99 of a forged-token flood.
        refusal.__traceback__ = refusal.__context__ = refusal.__cause__ = None
        self.refusal = refusal

    def headers(self) -> tuple[tuple[str, str], ...]:
        return (*self.refusal.response_headers(), *NO_STORE_HEADERS, *JSON_HEADERS)

    def answered(self, request_id: str) -> None:
        route = self.route
        assert route.application is not None
        # The refusal line carries the request's id; the variable belongs to the connection's
        # task here (no task per request), so it is put back for the next request.
        previous = request_id_var.set(request_id)
        try:
            log_refusal(self.refusal, "GET", ROUTE, route.edge, route.ctx.metrics)
        finally:
            request_id_var.reset(previous)
