"""Structured logs: one JSON object a line, and the request id on every line of a request.

The request id lives in a `ContextVar` set by the base handler (handlers/base.py); Tornado runs
each request in a task of its own, so the value follows the request through every `await`,
its upstream calls included, and no further. `RequestIdFilter` copies it onto each record.
Fields a log call passes in `extra=` (route, status, provider, outcome...) become JSON members.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

import tornado.httputil
import tornado.web

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it is a sane token: it goes into our logs and upstream.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# The `extra=` members that become JSON fields, in this order after the fixed ones.
FIELDS = ("event", "route", "method", "status", "latency_ms", "provider", "outcome",
          "reason", "client_id", "call", "error", "client", "not_logged")

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # then milliseconds and Z: ISO 8601, UTC
# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)

request_id_var: ContextVar[str | None] = ContextVar("gateway_request_id", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id_from(incoming: str | None) -> str:
    """The caller's `X-Request-ID` if it is a sane token, else a new random one."""
    if incoming and REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or "-") on every record passing a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id and
    the structured fields the call gave."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": f"{time.strftime(TIME_FORMAT, time.gmtime(record.created))}."
                    f"{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id and request_id != "-":
            document["request_id"] = request_id
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        return _ENCODER.encode(document)


class TextFormatter(logging.Formatter):
    """The human format of development mode, with the request id."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or "-"
        return super().format(record)


def make_formatter(format_name: str) -> logging.Formatter:
    return JsonFormatter() if format_name == "json" else TextFormatter()


def configure_logging(format_name: str = "json", level: str = "INFO",
                      stream: TextIO | None = None) -> logging.Handler:
    """Route every log record to one stream handler in the chosen format (the CLI's setup)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(format_name))
    handler.addFilter(RequestIdFilter())
    handler.setLevel(level.upper())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class LogBudget:
    """At most `per_second` lines of one kind a second; the lines not written are counted and
    the next line written says how many (its `not_logged` field). For lines an attacker can
    cause at will, such as one per forged token: a flood costs neither the log nor the CPU
    (a line costs about as much as checking a signature)."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_second = per_second
        self._clock = clock
        self._second = -1
        self._written = 0
        self.not_logged = 0

    def allow(self) -> bool:
        """Whether to write this line; if so, `take_not_logged` tells how many were dropped."""
        second = int(self._clock())
        if second != self._second:
            self._second, self._written = second, 0
        if self._written >= self._per_second:
            self.not_logged += 1
            return False
        self._written += 1
        return True

    def take_not_logged(self) -> int | None:
        """The lines dropped since the last one written (None when none were)."""
        dropped, self.not_logged = self.not_logged, 0
        return dropped or None


access_log = logging.getLogger("gateway.access")
# Asked on every request of every app or by every probe: their access lines below 500 are at
# DEBUG unless `logging.check_requests` (counted in /metrics either way; a refusal has its own
# "refused" line with the reason).
CHECK_ROUTES = frozenset({"/verify", "/auth", "/healthz", "/readyz"})


class AccessLog:
    """The access log and the request metrics: one event and one observation per request.

    SECURITY L1: Tornado's default access log prints the full URI, `?code=&state=` included,
    and a path is request input too (a token pasted into a URL). We log and count the route
    pattern only."""

    def __init__(self, metrics: GatewayMetrics | None, routes: dict[type[Any], str], *,
                 log_check_requests: bool = True) -> None:
        self.metrics = metrics
        self.routes = routes
        self.quiet_routes = frozenset() if log_check_requests else CHECK_ROUTES

    def route_of(self, handler: tornado.web.RequestHandler) -> str:
        named = getattr(handler, "route", None)  # handlers/base.py BaseHandler.route
        if isinstance(named, str):
            return named
        route = self.routes.get(type(handler))
        return route if route is not None else type(handler).__name__

    def __call__(self, handler: tornado.web.RequestHandler) -> None:
        self.record(self.route_of(handler), handler.request, handler.get_status(),
                    getattr(handler, "request_id", None))

    def record(self, route: str, request: tornado.httputil.HTTPServerRequest, status: int,
               request_id: str | None) -> None:
        """One answered request: the metrics, and a line unless its level is off."""
        seconds = request.request_time()
        if self.metrics is not None:
            self.metrics.observe_request(route, request.method or "", status, seconds)
        level = logging.INFO if status < 500 else logging.ERROR
        if self.metrics is None or (status < 500 and route in self.quiet_routes):
            level = logging.DEBUG  # scrapes, and by default checks (CHECK_ROUTES)
        if not access_log.isEnabledFor(level):
            return
        latency_ms = round(1000.0 * seconds, 2)
        access_log.log(level, "%s %s %d %.1fms", request.method, route, status, latency_ms,
                       extra={"event": "request", "request_id": request_id,
                              "route": route, "method": request.method, "status": status,
                              "latency_ms": latency_ms})
