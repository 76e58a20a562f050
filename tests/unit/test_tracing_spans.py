"""gateway/tracing.py without a collector: spans kept in memory by the SDK's own exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_support import assert_refused, write_config
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tornado.httpclient import HTTPRequest

from gateway.config import load_settings
from gateway.tracing import Tracing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def test_a_provider_call_sends_its_own_span_as_traceparent(spans: Any) -> None:
    tracing, exporter = spans
    request_span = tracing.start_request("GET", "/callback/google", {},
                                         from_trusted_proxy=False)
    attached = tracing.attach(request_span)
    request = HTTPRequest("https://oauth2.googleapis.com/token?x=1", method="POST", body="")
    call = tracing.start_provider_call("google", "token exchange", request)
    tracing.end_provider_call(call, 200)
    tracing.end_request(request_span, 302)
    otel_context.detach(attached)
    [finished_call, finished_request] = exporter.get_finished_spans()
    context = finished_call.context
    assert request.headers["traceparent"].startswith(  # then the flags: sampled
        f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert finished_call.parent.span_id == finished_request.context.span_id
    assert finished_call.kind == SpanKind.CLIENT
    assert dict(finished_call.attributes) == {
        "gateway.provider": "google", "gateway.provider.call": "token exchange",
        "http.request.method": "POST", "server.address": "oauth2.googleapis.com",
        "server.port": 443, "http.response.status_code": 200}


@pytest.mark.parametrize(("status", "error"), [(200, False), (404, True), (None, True)])
def test_a_provider_call_that_failed_is_an_error(spans: Any, status: int | None,
                                                error: bool) -> None:
    tracing, exporter = spans
    call = tracing.start_provider_call("x", "user", HTTPRequest("http://127.0.0.1:1/2/users/me"))
    tracing.end_provider_call(call, status)
    [finished] = exporter.get_finished_spans()
    assert (finished.status.status_code == StatusCode.ERROR) is error


@pytest.mark.parametrize(("status", "error"), [(200, False), (401, False), (503, True)])
def test_H3_a_request_span_believes_traceparent_from_trusted_proxies_only(
        spans: Any, status: int, error: bool) -> None:
    tracing, exporter = spans
    for trusted in (True, False):
        span = tracing.start_request("GET", "/auth", {"traceparent": TRACEPARENT},
                                     from_trusted_proxy=trusted)
        tracing.end_request(span, status)
    believed, ignored = exporter.get_finished_spans()
    assert f"{believed.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert f"{ignored.context.trace_id:032x}" != TRACEPARENT.split("-")[1]
    assert ignored.parent is None
    assert (believed.status.status_code == StatusCode.ERROR) is error


@pytest.mark.parametrize(("changes", "key"), [
    ({"tracing.otlp_endpoint": "collector:4318"}, "tracing.otlp_endpoint"),
    ({"tracing.otlp_endpoint": "ftp://collector/v1/traces"}, "tracing.otlp_endpoint"),
    ({"tracing.otlp_endpoint": "https://user:pw@collector/v1/traces"}, "tracing.otlp_endpoint"),
    ({"tracing.sample_ratio": 1.5}, "tracing.sample_ratio"),
    ({"tracing.service_name": " "}, "tracing.service_name"),
])
def test_tracing_settings_are_checked(tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    assert_refused(tmp_path, changes, key)


def test_tracing_is_off_by_default_and_takes_an_otlp_http_endpoint(tmp_path: Path) -> None:
    assert load_settings(write_config(tmp_path), {}).tracing.otlp_endpoint == ""
    settings = load_settings(write_config(tmp_path, {
        "tracing.otlp_endpoint": "http://127.0.0.1:4318/v1/traces", "tracing.sample_ratio": 0.25}),
        {})
    assert settings.tracing.sample_ratio == 0.25
