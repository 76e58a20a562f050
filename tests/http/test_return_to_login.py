"""SECURITY R2 over HTTP: the login endpoint refuses a return_to outside the allowed path prefix
with its 400 page, and follows one under it; in development mode, one to a loopback app on any
port."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conftest import Stack


@pytest.mark.parametrize("return_to", [
    "https://app.example.test/console-evil/",
    "https://app.example.test/admin/",
    "https://app.example.test/console/../admin/",
    "https://app.example.test/console/%2e%2e/admin/",
])
def test_R2_login_refuses_a_return_to_outside_the_path_prefix(make_stack, return_to: str) -> None:
    stack = make_stack(login={"allowed_return_urls": ["https://app.example.test/console/"]})
    answer = httpx.get(f"{stack.url}/login/google", params={"return_to": return_to})
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "not allowed" in answer.text


def test_R2_login_accepts_a_return_to_under_the_path_prefix(make_stack) -> None:
    stack = make_stack(login={"allowed_return_urls": ["https://app.example.test/console/"]})
    answer = httpx.get(f"{stack.url}/login/google",
                       params={"return_to": "https://app.example.test/console/users"})
    assert answer.status_code == 302


def test_dev_gateway_sends_a_login_back_to_a_loopback_app_on_any_port(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()  # development mode, no login.allowed_return_urls
    assert stack.dev.settings.login.allowed_return_urls == (f"{stack.url}/",)
    for return_to in ("http://localhost:8000/", "http://127.0.0.1:5173/app"):
        browser = stack.browser()
        done = browser.login(return_to=return_to)
        assert done.status_code == 302
        assert done.headers["location"] == return_to
    refused = httpx.get(f"{stack.url}/login/google",
                        params={"return_to": "http://localhost.evil.com:8000/"})
    assert refused.status_code == 400
    assert "location" not in refused.headers
