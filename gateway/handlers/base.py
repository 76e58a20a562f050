"""The base of every handler: the one place errors become HTTP, and the headers every
response gets."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from http.client import responses as HTTP_REASONS
from typing import TYPE_CHECKING, Any, overload

import tornado.httputil
import tornado.web

from gateway.errors import (
    AuthorizationRedirect,
    GatewayError,
    InvalidRequest,
    InvalidToken,
    RequestTooLarge,
    StoreError,
    StoreFull,
    public_error,
)
from gateway.inflight import InFlightRequests
from gateway.logs import REQUEST_ID_HEADER, LogBudget, request_id_from, request_id_var
from gateway.metrics import GatewayMetrics
from gateway.proxies import IPNetwork, client_address, forwarded_proto, is_trusted
from gateway.ratelimits import RateLimiter, route_group

if TYPE_CHECKING:  # the `tracing` extra: imported only when tracing is configured
    from opentelemetry.trace import Span

    from gateway.tracing import Tracing

log = logging.getLogger("gateway.http")

def page_csp(image_origins: Sequence[str] = ()) -> str:
    """Pages load only their own style sheet; pictures come from https (the providers' profile
    pictures) or, in development mode, from the stand-ins' origins (config dev.image_origins)."""
    image_sources = " ".join(("'self'", "https:", *image_origins))
    return (f"default-src 'none'; style-src 'self'; img-src {image_sources}; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


MAX_ARGUMENT_LENGTH = 4096
# SECURITY H2: two years, subdomains included (RFC 6797 6.1), on every response of an https
# issuer, unless a trusted proxy says this request came over plain http (RFC 6797 7.2).
HSTS = "max-age=63072000; includeSubDomains"
REFUSAL_LINES_PER_SECOND = 50
# SECURITY H4/H7: what a login, a verification or a token request can need. The HTTP server's
# own limits sit higher (server.py), so that these are answered with a clear 413/431 instead of
# a connection reset while the client is still sending.
MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


def constant_headers(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Response headers whose values never change: checked here once, so that handlers can put
    them in place without Tornado's per-call check (a regex per value, on the hot path)."""
    for name, value in pairs:
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"not a safe header: {name}: {value!r}")
    return pairs


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def security_headers(image_origins: Sequence[str] = ()) -> tuple[tuple[str, str], ...]:
    """On every answer, pages and APIs alike (OWASP REST Security: APIs send them too)."""
    return constant_headers(
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),  # SECURITY R6/H2: codes never leak
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", page_csp(image_origins)),
    )


# The application's (app.py builds them once), or these where a handler has no application's.
SECURITY_HEADERS = security_headers()
NO_STORE_HEADERS = constant_headers(("Cache-Control", "no-store"), ("Pragma", "no-cache"))
JSON_HEADERS = constant_headers(("Content-Type", "application/json; charset=utf-8"))
HSTS_HEADERS = constant_headers(("Strict-Transport-Security", HSTS))


@dataclass
class Edge:
    """What every handler needs about the edge, whether or not it has a ctx; built once by
    app.py and kept as the one entry EDGE_SETTING of the Tornado application's settings."""

    # Handler class -> the route pattern it serves: logs and metrics name the route, never the
    # path (request input: a token pasted into a URL must not reach a log line, SECURITY L1).
    routes: dict[type[Any], str] = field(default_factory=dict)
    trusted_proxies: tuple[IPNetwork, ...] = ()  # SECURITY H3
    hsts: bool = False  # SECURITY H2: the issuer is https
    rate_limiter: RateLimiter | None = None  # SECURITY H5
    refusal_log: LogBudget | None = None  # bounds the "refused" lines of invalid tokens
    security_headers: tuple[tuple[str, str], ...] = SECURITY_HEADERS  # with the pages' CSP
    inflight: InFlightRequests | None = None  # what a graceful stop waits for
    tracing: Tracing | None = None  # a span per request when [tracing] is configured


EDGE_SETTING = "gateway_edge"  # app.py passes it by this keyword
NO_EDGE = Edge()


def edge_of(application: tornado.web.Application) -> Edge:
    edge: Edge = application.settings.get(EDGE_SETTING, NO_EDGE)
    return edge


def http_date() -> str:
    """The Date header's value now (RFC 9110 5.6.7: to the second)."""
    global _last_date
    second = int(time.time())
    if second != _last_date[0]:
        _last_date = (second, tornado.httputil.format_timestamp(second))
    return _last_date[1]


_last_date: tuple[int, str] = (0, "")  # the second last formatted, and its text


class BaseHandler(tornado.web.RequestHandler):
    """Errors, content negotiation and security headers; subclasses only do their job."""

    # Whether errors of this route are JSON always (APIs) or negotiated (browser routes).
    api = False
    _request_id: str | None = None
    _request_cookies: dict[str, str] | None = None
    _tracing: Tracing | None = None
    _span: Span | None = None

    @property
    def request_id(self) -> str:
        """The caller's sane `X-Request-ID`, or a new random one: on every log line of this
        request, in the response's `X-Request-ID`, and sent upstream (gateway/logs.py)."""
        if self._request_id is None:
            self._request_id = request_id_from(self.request.headers.get(REQUEST_ID_HEADER))
        return self._request_id

    @property
    def route(self) -> str:
        """The route pattern this handler serves ("unmatched" for the 404 handler)."""
        return edge_of(self.application).routes.get(type(self), type(self).__name__)

    def clear(self) -> None:
        """Tornado's `clear`, less the Server header it adds for set_default_headers to take
        away again, with the Date made once a second instead of once a request (two
        requests a login: docs/benchmarks.md)."""
        headers = tornado.httputil.HTTPHeaders()
        headers["Content-Type"] = "text/html; charset=UTF-8"
        headers["Date"] = http_date()
        self._headers = headers
        self.set_default_headers()
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"
        # Here rather than in set_default_headers: also after an error's clear(), whatever a
        # subclass's default headers are. The id is a sane token (logs.request_id_from).
        self.put_headers(((REQUEST_ID_HEADER, self.request_id),))

    @overload
    def get_cookie(self, name: str, default: str) -> str: ...

    @overload
    def get_cookie(self, name: str, default: None = None) -> str | None: ...

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        """Tornado's, read from `parse_cookie`'s dict: Tornado's `request.cookies` makes a
        Morsel of each cookie the request carries, quoting its value again, to read one."""
        cookies = self._request_cookies
        if cookies is None:
            header = self.request.headers.get("Cookie")
            try:
                cookies = tornado.httputil.parse_cookie(header) if header else {}
            except Exception:  # as Tornado: an unreadable Cookie header is no cookie
                cookies = {}
            self._request_cookies = cookies
        return cookies.get(name, default)

    def put_headers(self, pairs: tuple[tuple[str, str], ...]) -> None:
        """Set response headers already known to be safe (`constant_headers`, or values made
        of a checked alphabet), without Tornado's per-call check of each value."""
        headers = self._headers  # Tornado's response headers; set_header would check again
        for name, value in pairs:
            headers[name] = value

    def __init__(self, application: tornado.web.Application,
                 request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> None:
        # Counted from here until the answer is sent or the client hangs up, so that a
        # graceful stop waits for this request (server.drain).
        edge = edge_of(application)
        self._inflight: InFlightRequests | None = edge.inflight
        if self._inflight is not None:
            self._inflight.started()
        super().__init__(application, request, **kwargs)
        if edge.tracing is not None:
            self._tracing = edge.tracing
            self._span = edge.tracing.start_request(
                request.method or "", self.route, request.headers,
                from_trusted_proxy=is_trusted(request.remote_ip or "", edge.trusted_proxies))

    def on_finish(self) -> None:
        self._end_inflight()
        self._end_span()

    def on_connection_close(self) -> None:
        self._end_inflight()
        self._end_span()
        super().on_connection_close()

    def _end_span(self) -> None:
        span, self._span = self._span, None
        if span is not None and self._tracing is not None:
            self._tracing.end_request(span, self.get_status())

    def _end_inflight(self) -> None:
        if self._inflight is not None:
            self._inflight.ended()
            self._inflight = None

    def set_default_headers(self) -> None:
        edge = edge_of(self.application)
        self.put_headers(edge.security_headers)
        self.clear_header("Server")
        if wants_hsts(edge, self.request):
            self.put_headers(HSTS_HEADERS)

    @property
    def client_address(self) -> str:
        """The client's address: the peer, or what a trusted proxy says it is (SECURITY H3).
        For rate limits and logs only, never for a decision about who the user is."""
        address: str | None = getattr(self, "_client_address", None)
        if address is None:
            address = client_address(self.request.remote_ip or "", self.request.headers,
                                     self._trusted_proxies())
            self._client_address = address
        return address

    def _trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return edge_of(self.application).trusted_proxies

    def rate_limit(self) -> Awaitable[None] | None:
        """SECURITY H5: count this request against its route group's limit, if any. Counted
        in this process, it is decided now; counted in the store, the awaitable decides."""
        limiter = edge_of(self.application).rate_limiter
        if limiter is None:
            return None
        group = route_group(self.request.path)
        if group is None or not limiter.limits(group):
            return None
        return limiter.count(group, self.client_address)

    def prepare(self) -> Awaitable[None] | None:
        # Not a coroutine: most requests have nothing to wait for here (Tornado awaits what
        # this returns). Subclasses that await it use `await_prepared`.
        # Tornado runs each request in a task of its own: the id follows it and no further.
        request_id_var.set(self.request_id)
        if self._span is not None and self._tracing is not None:
            self._tracing.attach(self._span)
        check_request_size(self.request)
        return self.rate_limit()

    async def await_prepared(self) -> None:
        """`prepare` of this base, awaited: for subclasses whose own prepare is a coroutine."""
        pending = BaseHandler.prepare(self)
        if pending is not None:
            await pending

    def check_xsrf_cookie(self) -> None:
        # APIs authenticate with bearer tokens or client credentials, never with an ambient
        # cookie on a state-changing request; browser routes keep Tornado's check (S5).
        if not self.api:
            super().check_xsrf_cookie()

    def compute_etag(self) -> str | None:
        # Our answers carry tokens or change per request; hashing each body buys nothing.
        return None

    def set_no_store(self) -> None:
        """For every response that carries a token or a cookie holding one (SECURITY H1)."""
        self.put_headers(NO_STORE_HEADERS)

    def wants_json(self) -> bool:
        if self.api:
            return True
        accept = self.request.headers.get("Accept", "")
        return "application/json" in accept and "text/html" not in accept

    def single_argument(self, name: str, *, required: bool = True) -> str | None:
        """A query or form argument given at most once (SECURITY S7: Tornado silently takes the
        last of duplicates), with a bounded length (SECURITY H4)."""
        return one_value(name, self.get_arguments(name), required=required)

    def write_json(self, document: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.put_headers(JSON_HEADERS)
        self.finish(tornado.escape.json_encode(document))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Also when Tornado refused the request before prepare() (a 405): its id is logged too.
        request_id_var.set(self.request_id)
        if isinstance(value, GatewayError):
            self._log_gateway_error(value)
        elif isinstance(value, tornado.web.HTTPError):
            log.info("%s %s -> %d", self.request.method, self.route, value.status_code)
        elif isinstance(value, StoreError):
            # An outage or a flood, not a bug: one line, no stack trace.
            state = "full" if isinstance(value, StoreFull) else "unavailable"
            self._metrics_store_error(state)
            log.error("store %s on %s %s: %s", state, self.request.method, self.route,
                      value)
        else:
            log.error("unexpected error on %s %s", self.request.method, self.route,
                      exc_info=(typ, value, tb))

    def _log_gateway_error(self, error: GatewayError) -> None:
        log_refusal(error, self.request.method or "", self.route, edge_of(self.application),
                    self._metrics())

    def _metrics(self) -> GatewayMetrics | None:
        ctx = getattr(self, "ctx", None)
        return getattr(ctx, "metrics", None)

    def _metrics_store_error(self, kind: str) -> None:
        metrics = self._metrics()
        if metrics is not None:
            metrics.store_error(kind)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one mapping from exceptions to HTTP: JSON for APIs, a page for browsers."""
        error = _as_gateway_error(status_code, kwargs.get("exc_info"))
        self.clear_header("Location")
        self.set_status(error.status)
        if isinstance(error, AuthorizationRedirect):
            # Back to the client's registered redirect_uri with error, state and iss.
            self.set_no_store()
            self.set_header("Location", error.location)
            self.finish()
            return
        self.put_headers(error.response_headers())
        self.set_no_store()
        if self.wants_json():
            self.put_headers(JSON_HEADERS)
            self.finish(json_error_body(error))
        else:
            self.render("error.html", error=error, status=error.status)


def json_error_body(error: GatewayError) -> bytes:
    """An error for API clients: RFC 6749 5.2 / RFC 6750 3 members, and where to try again."""
    body: dict[str, Any] = {"error": error.error, "error_description": error.description}
    if error.retry_url:
        body["retry_url"] = error.retry_url
    return tornado.escape.json_encode(body).encode()


def log_refusal(error: GatewayError, method: str, route: str, edge: Edge,
                metrics: GatewayMetrics | None) -> None:
    """The line of a refused request, with its reason (tokens: also counted by reason)."""
    provider = error.provider
    reason = None
    not_logged = None
    if isinstance(error, InvalidToken):
        # SECURITY J9: the reason only here, in our log and metrics, never on the wire.
        reason = error.reason
        if metrics is not None:
            metrics.token_refused(reason)
        # Anyone can send forged tokens at will: their lines are bounded (the metrics count
        # every request and every reason).
        budget = edge.refusal_log
        if budget is not None:
            if not budget.allow():
                return
            not_logged = budget.take_not_logged()
    log.warning("refused %s %s status=%d error=%s%s %s%s", method, route, error.status,
                error.error, f" provider={provider}" if provider else "", error.log_detail,
                f" ({not_logged} more token refusals not logged)" if not_logged else "",
                extra={"event": "refused", "status": error.status, "error": error.error,
                       "provider": provider, "reason": reason, "not_logged": not_logged})


def wants_hsts(edge: Edge, request: tornado.httputil.HTTPServerRequest) -> bool:
    """SECURITY H2: HSTS on an https issuer, unless a trusted proxy says this request came over
    plain http."""
    return edge.hsts and forwarded_proto(
        request.remote_ip or "", request.headers, edge.trusted_proxies) != "http"


def one_value(name: str, values: list[str], *, required: bool) -> str | None:
    """The one value of a parameter: given at most once (SECURITY S7), bounded (H4)."""
    if len(values) > 1:
        raise InvalidRequest(f"The parameter {name!r} was given more than once.")
    if not values or values[0] == "":
        if required:
            raise InvalidRequest(f"The parameter {name!r} is missing.")
        return None
    if len(values[0]) > MAX_ARGUMENT_LENGTH:
        raise InvalidRequest(f"The parameter {name!r} is too long.")
    return values[0]


def request_header_bytes(request: tornado.httputil.HTTPServerRequest) -> int:
    return sum(len(k) + len(v) + 4 for k, v in request.headers.get_all())


def check_request_size(request: tornado.httputil.HTTPServerRequest) -> None:
    header_bytes = request_header_bytes(request)
    if header_bytes > MAX_HEADER_BYTES:
        raise RequestTooLarge("The request headers are too large.", status=431,
                              log_detail=f"{header_bytes} header bytes")
    if len(request.body) > MAX_BODY_BYTES:
        raise RequestTooLarge("The request body is too large.",
                              log_detail=f"{len(request.body)} body bytes")


def _as_gateway_error(status_code: int, exc_info: Any) -> GatewayError:
    exception = exc_info[1] if exc_info else None
    public = public_error(exception) if exception is not None else None
    if public is not None:
        return public
    if isinstance(exception, tornado.web.HTTPError) and exception.status_code < 500:
        # Tornado's own refusals (405, a missing argument, XSRF...): never its stack trace.
        reason = HTTP_REASONS.get(exception.status_code, "Bad request")
        return GatewayError(reason, status=exception.status_code,
                            error=_error_code(exception.status_code))
    return GatewayError(
        "The gateway failed to process this request. Please try again later.",
        status=500 if status_code < 500 else status_code, error="server_error",
    )


def _error_code(status: int) -> str:
    return {401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "request_too_large"}.get(status, "invalid_request")


class NotFoundHandler(BaseHandler):
    """Every unknown route: a clean 404 in the negotiated form."""

    async def prepare(self) -> None:
        await self.await_prepared()
        raise tornado.web.HTTPError(404)
