"""The sign-in page (GET /login) and the signed-in page (GET /) over HTTP: the app's name when
the login belongs to a registered client's authorization request, brand-named buttons with
their logos drawn inline, the provider named as its brand, times as dates. The same pages in a
real browser: tests/http/test_browser.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jwt
from conftest import Stack

from gateway.claims_display import claim_rows


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


def test_the_chooser_draws_the_logos_inline_and_loads_nothing_else(make_stack: Any) -> None:
    """One inline SVG logo per button, no image, script or inline style to load (the CSP is
    unchanged: style-src 'self'), the favicon linked, and the dev-mode banner's sentence on
    which return_to addresses development mode accepts."""
    stack = make_stack()
    page = stack.browser().get(f"{stack.url}/login")
    assert page.status_code == 200
    buttons = re.findall(r'<a class="provider provider-(\w+)" href="[^"]*">(.*?)</a>', page.text)
    assert [name for name, _ in buttons] == ["google", "facebook", "twitter", "github",
                                             "microsoft", "apple", "dev"]
    for _, inner in buttons:
        assert inner.startswith('<svg class="logo" aria-hidden="true"'), inner[:60]
    assert "<img" not in page.text and "<script" not in page.text
    assert " style=" not in page.text and "<style" not in page.text
    assert "style-src 'self'" in page.headers["content-security-policy"]
    assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg?v=' in page.text
    banner = re.search(r'<p class="banner">(.*?)</p>', page.text, re.S)
    assert banner and "<code>http://localhost</code>" in banner.group(1)
    assert "<code>http://127.0.0.1</code>" in banner.group(1)


def test_the_signed_in_page_names_the_brand_and_shows_dates(make_stack: Any) -> None:
    stack = make_stack()
    browser = stack.browser()
    browser.login(provider="twitter")
    page = browser.get(f"{stack.url}/")
    assert "Signed in as Ada Lovelace" in page.text
    assert "via X<" in page.text and "via twitter" not in page.text
    token = jwt.decode(browser.access_token(), options={"verify_signature": False})
    assert token["idp"] == "twitter"  # the claim keeps the provider's id
    for claim in ("exp", "iat", "auth_time"):
        when = datetime.fromtimestamp(token[claim], UTC)
        time = (f'<time datetime="{when.isoformat().replace("+00:00", "Z")}" '
                f'title="{token[claim]} (seconds since 1970-01-01 UTC)">'
                f'{when.strftime("%Y-%m-%d %H:%M:%S UTC")}</time>')
        assert time in page.text, claim
    # One way to sign out (the form's button) and one link to switch account: no buttons.
    assert page.text.count("<button") == 1 and ">Sign out</button>" in page.text
    assert page.text.count(">Switch account</a>") == 1
    assert "Sign in with" not in page.text


def test_claim_rows_show_times_as_dates_and_everything_else_as_text() -> None:
    rows = {row.name: row for row in claim_rows({
        "exp": 1_700_000_000, "iat": 1_700_000_000.5, "nbf": True, "auth_time": "soon",
        "updated_at": 10**20, "amr": ["pwd"], "email_verified": False, "name": "Ada"})}
    assert (rows["exp"].text, rows["exp"].epoch, rows["exp"].iso) == (
        "2023-11-14 22:13:20 UTC", 1_700_000_000, "2023-11-14T22:13:20Z")
    assert rows["iat"].epoch == 1_700_000_000
    # Not a NumericDate (a boolean, a string, out of range): shown as it is, no tooltip.
    for name, text in (("nbf", "true"), ("auth_time", "soon"), ("updated_at", str(10**20))):
        assert (rows[name].text, rows[name].iso) == (text, None), name
    assert rows["amr"].text == '["pwd"]' and rows["email_verified"].text == "false"
    assert rows["name"].text == "Ada"
    assert list(rows) == sorted(rows)
