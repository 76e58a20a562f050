"""What every response carries and what every request may be (SECURITY H1, H2, H4, H6, H7, R4)."""

from __future__ import annotations

import httpx
import pytest
from conftest import Stack
from oidc_support import INTROSPECTOR, INTROSPECTOR_AUTH


@pytest.mark.parametrize("path", ["/", "/login/google?return_to=https://evil.example/", "/nope"])
def test_H2_pages_send_the_security_headers(stack: Stack, path: str) -> None:
    page = httpx.get(f"{stack.url}{path}")
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no script at all is allowed on our pages
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "Server" not in page.headers


def test_H1_answers_carrying_tokens_are_never_cached(stack: Stack) -> None:
    browser = stack.browser()
    done = browser.login()
    assert done.headers["Cache-Control"] == "no-store" and done.headers["Pragma"] == "no-cache"
    for answer in (browser.get(f"{stack.url}/verify"), browser.get(f"{stack.url}/"),
                   httpx.post(f"{stack.url}/introspect", data={"token": browser.access_token()})):
        assert answer.headers["Cache-Control"] == "no-store"


def test_H4_oversized_headers_get_a_431_json_answer(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/verify", headers={"X-Padding": "a" * 20_000})
    assert answer.status_code == 431
    assert answer.json()["error"] == "request_too_large"


def test_H4_H7_oversized_bodies_get_a_413(stack: Stack) -> None:
    answer = httpx.post(f"{stack.url}/introspect", data={"token": "x" * 200_000})
    assert answer.status_code == 413
    assert answer.json()["error"] == "request_too_large"


def test_H4_overlong_parameters_are_a_400(make_stack) -> None:
    # /introspect authenticates its caller first (SECURITY T2): a registered client asks.
    stack = make_stack(clients=[INTROSPECTOR])
    answer = httpx.post(f"{stack.url}/introspect", data={"token": "x" * 5000},
                        auth=INTROSPECTOR_AUTH)
    assert answer.status_code == 400
    assert "too long" in answer.json()["error_description"]


def test_H6_a_method_the_route_does_not_have_is_a_clean_405(stack: Stack) -> None:
    answer = httpx.delete(f"{stack.url}/verify")
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    assert "Traceback" not in answer.text


def test_R4_the_upstream_redirect_uri_comes_from_the_issuer_only(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/login/google?redirect_uri=https://evil.example/cb",
                       headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                                "Forwarded": "host=evil.example;proto=https"})
    location = httpx.URL(answer.headers["location"])
    assert location.params["redirect_uri"] == f"{stack.url}/callback/google"
