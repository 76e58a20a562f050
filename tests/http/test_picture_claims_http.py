"""The `picture` claim: whatever a provider sends, our tokens carry an absolute http(s) URL or
no picture at all (downstream apps put it in an <img src>)."""

from __future__ import annotations

import httpx
from conftest import Stack


def test_a_javascript_picture_from_google_never_reaches_the_token(make_stack) -> None:
    stack: Stack = make_stack()
    stack.google.id_token_overrides["picture"] = "javascript:alert(document.cookie)"
    browser = stack.browser()
    assert browser.login().status_code == 302
    claims = httpx.get(f"{stack.url}/verify",
                       headers={"Authorization": f"Bearer {browser.access_token()}"}).json()
    assert claims["name"] == "Ada Lovelace"
    assert "picture" not in claims
