"""OpenTelemetry tracing ([tracing] otlp_endpoint): spans received by a real OTLP/HTTP
receiver on loopback (the protobuf messages of opentelemetry-proto, decoded here), checked for
what they say and for what they must never say (SECURITY L1), and for whose `traceparent` is
believed (H3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import LoopThread, Stack
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclass
class Received:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    error: bool
    service: str


@dataclass
class Collector:
    """What an OpenTelemetry collector would have received: every span, and every raw body."""

    url: str
    spans: list[Received] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def named(self, name: str) -> list[Received]:
        return [span for span in self.spans if span.name == name]


class OtlpHandler(tornado.web.RequestHandler):
    def initialize(self, collector: Collector) -> None:
        self.collector = collector

    def post(self) -> None:
        assert self.request.headers["Content-Type"] == "application/x-protobuf"
        self.collector.bodies.append(self.request.body)
        export = ExportTraceServiceRequest.FromString(self.request.body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value
                       for a in resource_spans.resource.attributes}.get("service.name", "")
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.collector.spans.append(Received(
                        span.name, span.kind, span.trace_id.hex(), span.span_id.hex(),
                        span.parent_span_id.hex(),
                        {a.key: _value(a.value) for a in span.attributes},
                        span.status.code == 2, service))
        self.set_header("Content-Type", "application/x-protobuf")
        self.finish(ExportTraceServiceResponse().SerializeToString())


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector(loop_thread: LoopThread) -> Iterator[Collector]:
    def start() -> tuple[Collector, tornado.httpserver.HTTPServer]:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        found = Collector(f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1/traces")
        server = tornado.httpserver.HTTPServer(tornado.web.Application(
            [(r"/v1/traces", OtlpHandler, {"collector": found})]))
        server.add_sockets(sockets)
        return found, server

    found, server = loop_thread.call(start)
    yield found
    loop_thread.call(server.stop)


@pytest.fixture
def traced(collector: Collector, make_stack: Callable[..., Stack]) -> Callable[..., Stack]:
    def start(**overrides: Any) -> Stack:
        return make_stack(tracing={"otlp_endpoint": collector.url,
                                   "service_name": "gateway-under-test"}, **overrides)
    return start


def _flush(stack: Stack) -> None:
    """Export what the gateway has ended. A span ends just after its answer is written: the
    loop's turn is waited for first (the client may have read the answer before it ended)."""
    assert stack.ctx.tracing is not None
    stack.loop.call(lambda: None)
    assert stack.ctx.tracing.flush()


def test_L1_a_login_is_one_trace_per_request_with_its_provider_calls_and_no_secret(
        traced: Callable[..., Stack], collector: Collector) -> None:
    stack = traced()
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    callback = browser.get(back.headers["location"])
    assert callback.status_code == 302
    token = browser.access_token()
    _flush(stack)

    [login] = collector.named("GET /login/google")
    [answered] = collector.named("GET /callback/google")
    assert login.kind == ProtoSpan.SPAN_KIND_SERVER == answered.kind
    assert answered.attributes == {"http.request.method": "GET", "http.route": "/callback/google",
                                   "http.response.status_code": 302}
    assert login.service == "gateway-under-test"
    assert login.trace_id != answered.trace_id  # two requests, two traces (no proxy's parent)
    calls = [span for span in collector.spans if span.kind == ProtoSpan.SPAN_KIND_CLIENT]
    assert calls, "no span for the calls to the provider"
    for call in calls:  # the code exchange and the keys: children of the callback's span
        assert call.trace_id == answered.trace_id and call.parent_span_id == answered.span_id
        assert call.attributes["gateway.provider"] == "google"
        assert call.attributes["server.address"] == "127.0.0.1"
        assert call.attributes["http.response.status_code"] == 200 and not call.error
    assert any("token" in call.name for call in calls)

    # Nothing that identifies the user or could be replayed left the machine.
    code = re.search(r"[?&]code=([^&]+)", back.headers["location"])
    state = re.search(r"[?&]state=([^&]+)", back.headers["location"])
    assert code and state
    secrets = [code.group(1), state.group(1), token, *browser.cookies.values(),
               "ada@example.com", "Ada Lovelace", stack.dev.settings.cookies.secret.reveal()]
    exported = b"".join(collector.bodies)
    assert exported
    for secret in secrets:
        assert secret.encode() not in exported, secret[:12]
    texts = [text for span in collector.spans for text in (span.name, *span.attributes.values())
             if isinstance(text, str)]
    assert not [text for text in texts if "?" in text]  # no URL with a query, anywhere


def test_H3_a_traceparent_is_believed_from_a_trusted_proxy_only(
        traced: Callable[..., Stack], collector: Collector) -> None:
    trusting = traced(proxy={"trusted": ["127.0.0.1/32"]})
    stranger = traced()
    for stack in (trusting, stranger):
        assert httpx.get(f"{stack.url}/healthz",
                         headers={"traceparent": TRACEPARENT}).status_code == 200
        _flush(stack)
    first, second = collector.named("GET /healthz")
    assert (first.trace_id, first.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert second.trace_id != TRACE_ID and second.parent_span_id == ""


def test_L1_the_verify_fast_path_has_its_span_and_refusals_are_errors_only_for_us(
        traced: Callable[..., Stack], collector: Collector) -> None:
    stack = traced(proxy={"trusted": ["127.0.0.1/32"]})
    browser = stack.browser()
    assert browser.login().status_code == 302
    token = browser.access_token()
    for bearer in (token, token[:-4] + "AAAA"):
        httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {bearer}",
                                                 "traceparent": TRACEPARENT})
    _flush(stack)
    spans = collector.named("GET /verify")
    assert [span.attributes["http.response.status_code"] for span in spans] == [200, 401]
    assert all(span.trace_id == TRACE_ID and not span.error for span in spans)
    assert token.encode() not in b"".join(collector.bodies)


def test_tracing_is_off_unless_an_endpoint_is_configured(make_stack: Callable[..., Stack]
                                                         ) -> None:
    assert make_stack().ctx.tracing is None
