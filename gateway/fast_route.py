"""Answers below Tornado's RequestHandler, for the two routes every downstream request hits.

`/verify` and `/auth` are asked on every request of every app behind the gateway, and in their
common case (a token verified before) the answer is already known. A RequestHandler around it
costs more than the work: a handler object, its default headers, a coroutine, its flush. So
their routes are Tornado `Router`s (tornado.routing, the documented way to route to something
other than a RequestHandler) that answer the common case with a `FastAnswer` and hand every
other request to the route's handler. A fast answer carries exactly the headers the handler
would send (built from the same functions, handlers/base.py); tests compare the two.
"""

from __future__ import annotations

from typing import Any

import tornado.httputil
import tornado.routing
import tornado.web

from gateway.context import GatewayContext
from gateway.handlers.base import (
    HSTS_HEADERS,
    MAX_HEADER_BYTES,
    NO_EDGE,
    edge_of,
    http_date,
    request_header_bytes,
    wants_hsts,
)
from gateway.logs import REQUEST_ID_HEADER, AccessLog, request_id_from
from gateway.proxies import is_trusted

OK = tornado.httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
# RequestHandler.clear()'s default, which a handler's own Content-Type replaces in place.
HANDLER_CONTENT_TYPE = "text/html; charset=UTF-8"
FAST_ROUTES_SETTING = "gateway_fast_routes"  # app.py keeps the routers here: path -> router


def fast_routes(application: tornado.web.Application) -> dict[str, FastRoute]:
    """The application's routers of this kind, by path (the data plane serves these)."""
    routes: dict[str, FastRoute] = application.settings.get(FAST_ROUTES_SETTING, {})
    return routes


class FastRoute(tornado.routing.Router):
    """A route's Router: `application` and the access log are set by `attach` once the
    Application exists; `to_handler` sends a request on to the route's RequestHandler."""

    route = ""  # the route's name in logs and metrics
    handler_class: type[tornado.web.RequestHandler]

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.application: tornado.web.Application | None = None
        self.access_log: AccessLog | None = None
        self.edge = NO_EDGE

    def attach(self, application: tornado.web.Application, access_log: AccessLog) -> None:
        self.application = application
        self.access_log = access_log
        self.edge = edge_of(application)

    def find_handler(self, request: tornado.httputil.HTTPServerRequest,
                     **kwargs: Any) -> tornado.httputil.HTTPMessageDelegate:
        """A fast answer, or `to_handler`: never None (every request of the route is taken)."""
        raise NotImplementedError

    def to_handler(self, request: tornado.httputil.HTTPServerRequest
                   ) -> tornado.httputil.HTTPMessageDelegate:
        assert self.application is not None, "attach is called by make_app"
        return self.application.get_handler_delegate(
            request, self.handler_class, target_kwargs={"ctx": self.ctx})

    @staticmethod
    def without_body(request: tornado.httputil.HTTPServerRequest,
                     methods: tuple[str, ...] = ("GET",)) -> bool:
        """Whether a request is one of `methods`, has no body and headers within the limit
        (anything else gets the handler's checks and answers)."""
        headers = request.headers
        return (request.method in methods and "Content-Length" not in headers
                and "Transfer-Encoding" not in headers
                and request_header_bytes(request) <= MAX_HEADER_BYTES)


class DirectConnection(tornado.httputil.HTTPConnection):
    """A connection that takes a fast answer whole (the data plane's, gateway/data_plane.py):
    its fields as they are, without a round through Tornado's HTTPHeaders."""

    def write_answer(self, start_line: tornado.httputil.ResponseStartLine,
                     fields: dict[str, str], body: bytes | None) -> None:
        """Write the status line, `fields` (names as Tornado's HTTPHeaders spells them) and
        `body`, and finish the answer."""
        raise NotImplementedError


class FastAnswer(tornado.httputil.HTTPMessageDelegate):
    """One request's answer, written once the request has been read: the edge's security
    headers, `headers`, `body`, then the access log line, metrics and span of the handler."""

    status = OK

    def __init__(self, route: FastRoute, request: tornado.httputil.HTTPServerRequest,
                 headers: tuple[tuple[str, str], ...], body: bytes = b"") -> None:
        self.route = route
        self.request = request
        self.headers = headers
        self.body = body

    def finish(self) -> None:
        route, request = self.route, self.request
        assert route.access_log is not None and request.connection is not None
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        self.answered(request_id)
        # In the handler's order (RequestHandler.clear, then BaseHandler's defaults, then the
        # handler's own; a later value replaces an earlier one in its place, as in Tornado's
        # HTTPHeaders), so that the two answers are the same bytes.
        fields = {"Content-Type": HANDLER_CONTENT_TYPE, "Date": http_date()}
        fields.update(route.edge.security_headers)
        if wants_hsts(route.edge, request):
            fields.update(HSTS_HEADERS)
        fields[REQUEST_ID_HEADER] = request_id  # a sane token (logs.request_id_from)
        fields.update(self.headers)
        fields["Content-Length"] = str(len(self.body))
        # A HEAD's answer has the GET's headers and no body.
        body = self.body if request.method != "HEAD" else None
        connection = request.connection
        if isinstance(connection, DirectConnection):
            connection.write_answer(self.status, fields, body)
        else:
            connection.write_headers(self.status, tornado.httputil.HTTPHeaders(fields), body)
            connection.finish()
        method = request.method or "GET"
        route.access_log.record(route.route, request, self.status.code, request_id)
        tracing = route.edge.tracing
        if tracing is not None:
            tracing.record_request(
                method, route.route, request.headers, self.status.code,
                start_time=request._start_time,
                from_trusted_proxy=is_trusted(request.remote_ip or "",
                                              route.edge.trusted_proxies))

    def answered(self, request_id: str) -> None:
        """What the handler would count or log for this answer (nothing by default)."""

    def __repr__(self) -> str:  # for a debugger: which route answered
        return f"<{type(self).__name__} {self.route.route} {self.status.code}>"

