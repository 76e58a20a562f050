"""GET /metrics: Prometheus' text format on the admin listener, never on the public one unless
configured; each counter moves once per event, with bounded labels (SECURITY D3, L1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import Stack
from metrics_support import sample
from prometheus_client.parser import text_string_to_metric_families

from gateway.server import start_admin

ADMIN = {"port": 0}


@pytest.fixture
def admin_stack(make_stack: Callable[..., Stack]) -> Iterator[tuple[Stack, str]]:
    """A gateway with its admin listener on a free port: (stack, admin base URL)."""
    stack = make_stack(admin=ADMIN)
    started = stack.loop.call(lambda: start_admin(stack.dev.settings, stack.ctx))
    assert started is not None
    server, port = started
    yield stack, f"http://127.0.0.1:{port}"
    stack.loop.call(server.stop)


def metrics_of(admin_url: str) -> str:
    answer = httpx.get(f"{admin_url}/metrics")
    assert answer.status_code == 200, answer.text
    return answer.text


def label_values(text: str, label: str) -> set[str]:
    return {s.labels[label] for family in text_string_to_metric_families(text)
            for s in family.samples if label in s.labels}


def test_admin_listener_serves_metrics_in_prometheus_format(
        admin_stack: tuple[Stack, str]) -> None:
    _, admin = admin_stack
    answer = httpx.get(f"{admin}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")  # classic
    names = {family.name for family in text_string_to_metric_families(answer.text)}
    assert {"gateway_http_requests", "gateway_http_request_duration_seconds", "gateway_logins",
            "gateway_upstream_request_duration_seconds", "gateway_upstream_errors",
            "gateway_tokens_issued", "gateway_tokens_verified", "gateway_tokens_refused",
            "gateway_store_errors"} <= names
    assert httpx.get(f"{admin}/verify").status_code == 404  # the admin port serves metrics only


def test_D3_public_listener_does_not_serve_metrics(admin_stack: tuple[Stack, str]) -> None:
    stack, _ = admin_stack
    answer = httpx.get(f"{stack.url}/metrics")
    assert answer.status_code == 404
    assert "gateway_http_requests" not in answer.text


def test_metrics_on_the_public_listener_only_when_configured(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(admin={"expose_on_public": True, "enabled": False})
    answer = httpx.get(f"{stack.url}/metrics")
    assert answer.status_code == 200
    assert "gateway_http_requests_total" in answer.text
    assert stack.loop.call(lambda: start_admin(stack.dev.settings, stack.ctx)) is None


def test_a_login_and_verifications_move_the_counters_by_the_right_amounts(
        admin_stack: tuple[Stack, str]) -> None:
    stack, admin = admin_stack
    browser = stack.browser()
    assert browser.login().status_code == 302
    token = browser.access_token()
    for _ in range(3):
        assert httpx.get(f"{stack.url}/verify",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    for _ in range(2):
        assert httpx.get(f"{stack.url}/verify",
                         headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    text = metrics_of(admin)
    assert sample(text, "gateway_logins_total", provider="google", outcome="success") == 1
    assert sample(text, "gateway_tokens_issued_total", kind="access") == 1
    assert sample(text, "gateway_tokens_verified_total", endpoint="verify") == 3
    assert sample(text, "gateway_tokens_refused_total", reason="malformed") == 2
    assert sample(text, "gateway_http_requests_total", route="/verify", method="GET",
                  status="200") == 3
    assert sample(text, "gateway_http_requests_total", route="/verify", method="GET",
                  status="401") == 2
    assert sample(text, "gateway_http_request_duration_seconds_count", route="/verify") == 5
    assert sample(text, "gateway_http_requests_total", route="/callback/google",
                  status="302") == 1
    assert sample(text, "gateway_upstream_request_duration_seconds_count", provider="google",
                  call="token") == 1
    assert sample(text, "gateway_upstream_errors_total", provider="google") == 0


def test_a_denied_login_is_counted_by_provider_and_outcome(
        admin_stack: tuple[Stack, str]) -> None:
    stack, admin = admin_stack
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"], decision="deny")
    assert browser.get(back.headers["location"]).status_code >= 400
    replay = browser.get(back.headers["location"])  # the state was used: invalid_state
    assert replay.status_code >= 400
    text = metrics_of(admin)
    assert sample(text, "gateway_logins_total", provider="google", outcome="denied") == 1
    assert sample(text, "gateway_logins_total", provider="google", outcome="invalid_state") == 1
    assert sample(text, "gateway_logins_total", provider="google", outcome="success") == 0


def test_an_oidc_code_flow_counts_access_id_and_refresh_tokens(
        make_stack: Callable[..., Stack]) -> None:
    from oidc_support import oidc_stack, tokens_for

    stack = oidc_stack(make_stack)
    tokens_for(stack, scope="openid offline_access")
    text = stack.loop.call(lambda: stack.ctx.metrics.exposition().decode())
    # The gateway's own session cookie's access token at the upstream login, then /token's.
    assert sample(text, "gateway_tokens_issued_total", kind="access") == 2
    assert sample(text, "gateway_tokens_issued_total", kind="id") == 1
    assert sample(text, "gateway_tokens_issued_total", kind="refresh") == 1


def test_route_labels_are_patterns_never_raw_paths_or_tokens(
        admin_stack: tuple[Stack, str]) -> None:
    stack, admin = admin_stack
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    probes = [f"/verify?access_token={token}", f"/no/such/{token}", "/login/not-a-provider",
              f"/callback/{token[:40]}", "/login/google?return_to=https://evil.example/"]
    for path in probes:
        httpx.get(f"{stack.url}{path}")
    text = metrics_of(admin)
    assert token not in text and token[:40] not in text
    routes = label_values(text, "route")
    assert {"unmatched", "/(?:login|callback)/[^/]*", "/verify", "/login/google",
            "/callback/google"} <= routes
    for route in routes - {"unmatched"}:
        assert route.startswith("/"), route
        assert not any(raw in route for raw in ("=", "evil", "no/such", "not-a-provider")), route


def test_each_gateway_has_its_own_registry(make_stack: Callable[..., Stack]) -> None:
    first, second = make_stack(), make_stack()
    first.browser().login()
    first.loop.call(lambda: None)  # the server thread is done with the last request
    one = first.ctx.metrics.exposition().decode()
    other = second.ctx.metrics.exposition().decode()
    assert sample(one, "gateway_logins_total", provider="google", outcome="success") == 1
    assert sample(other, "gateway_logins_total", provider="google", outcome="success") == 0
