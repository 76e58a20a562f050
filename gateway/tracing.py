"""OpenTelemetry tracing, off by default: with `[tracing] otlp_endpoint`, a span for every
request (SERVER) and for every call to a provider (CLIENT, a child of its request's span),
exported over OTLP/HTTP in batches from a background thread (the event loop never waits on the
collector).

What a span says: the method, the route pattern, the status, the provider and which of its
calls; never a URL's path or query, a header, a token, a code or anything about the user
(SECURITY L1): spans leave the machine. A W3C `traceparent` is believed from trusted proxies
only (SECURITY H3: anyone else could stitch our requests into their traces) and is sent to
providers, so that a provider's support can follow one login through.

Only imported when tracing is configured: the `tracing` extra (`pip install
'oauth-gateway[tracing]'`) is not needed otherwise.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from tornado.httpclient import HTTPRequest

from gateway.config import TracingSettings

EXPORT_TIMEOUT = 5.0  # seconds per batch sent to the collector


class Tracing:
    """One gateway's tracer provider (never the process-global one: tests run several)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("oauth-gateway")
        self._propagator = TraceContextTextMapPropagator()

    def start_request(self, method: str, route: str, headers: Mapping[str, str], *,
                      from_trusted_proxy: bool, start_time: float | None = None) -> Span:
        """The SERVER span of a request: in the trace of its `traceparent` when a trusted
        proxy sent it, else a new trace."""
        parent = (self._propagator.extract(carrier=headers) if from_trusted_proxy
                  else otel_context.Context())
        return self._tracer.start_span(
            f"{method} {route}", context=parent, kind=SpanKind.SERVER,
            start_time=None if start_time is None else int(start_time * 1e9),
            attributes={"http.request.method": method, "http.route": route})

    @staticmethod
    def attach(span: Span) -> Token[otel_context.Context]:
        """Make `span` the parent of what this request does next (its provider calls). Called
        in the request's own task: the context goes with the task, never to another request.
        The token of `otel_context.detach`, for callers outside a request's task."""
        return otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def end_request(span: Span, status: int) -> None:
        if not span.is_recording():
            return
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def record_request(self, method: str, route: str, headers: Mapping[str, str], status: int,
                       *, from_trusted_proxy: bool, start_time: float) -> None:
        """A span for a request answered without a handler (the /verify fast path)."""
        span = self.start_request(method, route, headers, from_trusted_proxy=from_trusted_proxy,
                                  start_time=start_time)
        self.end_request(span, status)

    def start_provider_call(self, provider: str, what: str, request: HTTPRequest) -> Span:
        """The CLIENT span of a call to a provider, child of the current request's span; its
        `traceparent` goes with the request."""
        url = urllib.parse.urlsplit(request.url)
        span = self._tracer.start_span(
            f"{provider} {what}", kind=SpanKind.CLIENT,
            attributes={"gateway.provider": provider, "gateway.provider.call": what,
                        "http.request.method": request.method or "GET",
                        "server.address": url.hostname or "",
                        "server.port": url.port or (443 if url.scheme == "https" else 80)})
        self._propagator.inject(request.headers, context=trace.set_span_in_context(span))
        return span

    @staticmethod
    def end_provider_call(span: Span, status: int | None) -> None:
        """`status`: the provider's HTTP status, None when it gave no answer."""
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if status is None or status >= 400:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def flush(self, timeout: float = EXPORT_TIMEOUT) -> bool:
        """Send what is batched now (a graceful stop; tests)."""
        return bool(self.provider.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        self.provider.shutdown()


def open_tracing(settings: TracingSettings) -> Tracing:
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=EXPORT_TIMEOUT)))
    return Tracing(provider)
