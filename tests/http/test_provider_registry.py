"""The provider registry as users see it: GET /login lists the enabled providers; any other
provider name is a clear 404."""

from __future__ import annotations

import httpx
import pytest
from conftest import Stack


def test_login_without_provider_lists_every_enabled_provider(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/login", params={"return_to": f"{stack.url}/"})
    assert page.status_code == 200
    for name, provider in stack.ctx.providers.items():
        assert f"Sign in with {provider.display_name}" in page.text
        assert f'href="/login/{name}?return_to=' in page.text


def test_login_chooser_answers_json_to_api_clients(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/login", headers={"Accept": "application/json"})
    names = [p["name"] for p in answer.json()["providers"]]
    assert names == list(stack.ctx.providers)
    assert "google" in names


def test_R2_login_chooser_refuses_a_foreign_return_to(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/login", params={"return_to": "https://evil.example/"})
    assert answer.status_code == 400 and "location" not in answer.headers


@pytest.mark.parametrize("path", ["/login/myspace", "/callback/myspace", "/login/",
                                  "/login/%3Cscript%3E"])
def test_unknown_provider_is_a_clear_404(stack: Stack, path: str) -> None:
    page = httpx.get(f"{stack.url}{path}")
    assert page.status_code == 404
    assert "not enabled on this gateway" in page.text
    assert "<script>" not in page.text
    api = httpx.get(f"{stack.url}{path}", headers={"Accept": "application/json"})
    assert api.json()["error"] == "not_found"
    assert api.json()["retry_url"] == "/login"
