"""What every response carries and what every request may be (SECURITY H1, H2, H4, H6, H7, R4)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from config_support import write_config
from conftest import Stack
from oidc_support import INTROSPECTOR, INTROSPECTOR_AUTH

from gateway.app import build_context, make_app
from gateway.config import load_settings
from gateway.handlers.base import edge_of
from gateway.keys import load_keyset
from gateway.store.memory import MemoryStore


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


def _directive(csp: str, name: str) -> list[str]:
    for directive in csp.split(";"):
        words = directive.split()
        if words and words[0] == name:
            return words[1:]
    raise AssertionError(f"no {name} in {csp!r}")


def test_H2_pages_show_pictures_from_https_and_the_dev_stand_ins_only(stack: Stack) -> None:
    """The profile picture on the gateway's page: real providers serve https URLs; the dev
    stand-ins serve theirs on their own http origins, allowed in development mode only."""
    csp = httpx.get(f"{stack.url}/").headers["Content-Security-Policy"]
    standins = [provider.standin.base_url for provider in stack.dev.providers.values()]
    assert {stack.standin(name).base_url for name in ("github", "microsoft", "dev", "apple")} \
        <= set(standins)  # every stand-in, in their order
    assert _directive(csp, "img-src") == ["'self'", "https:", *standins]
    assert "data:" not in csp and "http:" not in csp.split()


def test_H2_outside_dev_mode_pictures_come_over_https_only(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"dev.image_origins": ["http://127.0.0.1:8081"]})
    settings = load_settings(config, {})
    assert settings.dev.image_origins == ("http://127.0.0.1:8081",)  # read, and not used
    keyset = load_keyset(tmp_path / "keys", "ES256", generate_if_empty=True)
    app = make_app(build_context(settings, keyset, store=MemoryStore()))
    csp = dict(edge_of(app).security_headers)["Content-Security-Policy"]
    assert _directive(csp, "img-src") == ["'self'", "https:"]


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
