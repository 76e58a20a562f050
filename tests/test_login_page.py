"""The sign-in page (GET /login) over HTTP: the app's name when the login belongs to a
registered client's authorization request, brand-named buttons. The same page in a real
browser: tests/test_browser.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from conftest import Stack


def chooser_for_demo_app(stack: Stack, browser: Any) -> str:
    start = browser.get(f"{stack.url}/demo/oidc")
    authorize = browser.get(start.headers["location"])
    assert authorize.status_code == 302
    location: str = authorize.headers["location"]
    assert location.startswith(f"{stack.url}/login?"), location
    return location


def test_the_chooser_names_the_app_of_an_authorization_request(make_stack: Any) -> None:
    stack = make_stack()
    browser = stack.browser()
    page = browser.get(chooser_for_demo_app(stack, browser))
    assert page.status_code == 200
    assert "to continue to <strong class=\"app-name\">Demo app</strong>" in page.text
    assert "<title>Sign in to Demo app</title>" in page.text
    for label in ("Google", "Facebook", "X"):
        assert f">Sign in with {label}</a>" in page.text


def test_the_plain_chooser_and_an_unknown_request_name_no_app(make_stack: Any) -> None:
    stack = make_stack()
    browser = stack.browser()
    plain = browser.get(f"{stack.url}/login?{urlencode({'return_to': f'{stack.url}/'})}")
    unknown = browser.get(f"{stack.url}/login?" + urlencode(
        {"return_to": f"{stack.url}/authorize/resume?request=nothing-saved-here"}))
    for page in (plain, unknown):
        assert page.status_code == 200
        assert "to continue to" not in page.text
        assert "<title>Sign in</title>" in page.text
