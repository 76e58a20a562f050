"""End to end in a real browser: Debian's Chromium (/usr/bin/chromium), driven by Playwright's
sync API, against the gateway and its provider stand-ins on loopback (conftest's `make_stack`).

A person's flows: each provider's login from the chooser, the cookies' attributes as Chromium
stored them, single sign-on into the demo OIDC app without a new provider round trip, sign-out
with the form, and a declined consent. Screenshots go to test-artifacts/ (git-ignored).

Without Chromium or Playwright these tests skip locally, and fail under CI=true (.ci/run
installs Debian's chromium; Playwright never downloads a browser here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import REPO_ROOT, Stack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# What works on this machine's closed network (no background fetches, no first-run dialogs).
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
VIEWPORT = {"width": 800, "height": 600}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
BUTTON_LABELS = {"google": "Sign in with Google", "facebook": "Sign in with Facebook",
                 "twitter": "Sign in with X"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true; .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module; each test opens its own context (cookie jar)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int] = VIEWPORT) -> Any:
        context = chromium.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def chooser_url(stack: Stack) -> str:
    return f"{stack.url}/login?{urlencode({'return_to': f'{stack.url}/'})}"


def home(stack: Stack) -> re.Pattern[str]:
    """The gateway's home page; Facebook's redirect adds a `#_=_` fragment, as the real one."""
    return re.compile(re.escape(f"{stack.url}/") + r"(#.*)?")


def sign_in(page: Any, stack: Stack, provider: str, *, shot: str | None = None) -> None:
    """From the chooser, through the stand-in's account chooser, back to the home page."""
    page.goto(chooser_url(stack))
    if shot:
        screenshot(page, shot)
    page.get_by_role("link", name=BUTTON_LABELS[provider]).click()
    page.wait_for_url(re.compile(re.escape(stack.standin(provider).base_url) + ".*"))
    page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
    page.wait_for_url(home(stack))
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "Signed in as Ada Lovelace"


def gateway_cookies(page: Any, stack: Stack) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in page.context.cookies(stack.url)}


@pytest.mark.parametrize("provider", ["google", "facebook", "twitter"])
def test_login_from_the_chooser(make_stack: Callable[..., Stack], new_page: Callable[..., Any],
                                provider: str) -> None:
    stack = make_stack()
    page = new_page()
    shots = {"chooser": None, "home": None}
    if provider == "google":
        shots = {"chooser": "chooser.png", "home": "signed-in-home.png"}
    sign_in(page, stack, provider, shot=shots["chooser"])
    assert f"via {provider}" in page.inner_text("main")
    # The stand-in's picture (on its own origin) is drawn: allowed by the CSP, and well formed.
    assert page.eval_on_selector("main img", "img => img.complete && img.naturalWidth") > 0
    if shots["home"]:
        screenshot(page, shots["home"])
    jar = gateway_cookies(page, stack)
    assert {"gw_session", "gw_access"} <= set(jar), jar
    for name in ("gw_session", "gw_access"):
        cookie = jar[name]
        assert cookie["httpOnly"] is True, cookie
        assert cookie["sameSite"] == "Lax", cookie
        assert cookie["secure"] is False, cookie  # cookies.secure = false (dev, loopback)
    # HttpOnly: the page's scripts never see the session or the token.
    assert "gw_" not in page.evaluate("document.cookie")


def test_secure_cookies_on_loopback(make_stack: Callable[..., Stack],
                                    new_page: Callable[..., Any]) -> None:
    """cookies.secure = true on http://127.0.0.1: Chromium counts loopback as potentially
    trustworthy, so it stores Secure (and __Host-) cookies there and sends them back."""
    stack = make_stack(cookies={"secure": True})
    page = new_page()
    sign_in(page, stack, "google")
    jar = gateway_cookies(page, stack)
    assert {"__Host-gw_session", "__Host-gw_access"} <= set(jar), jar
    for cookie in (jar["__Host-gw_session"], jar["__Host-gw_access"]):
        assert cookie["secure"] is True, cookie
        assert cookie["httpOnly"] is True, cookie
        assert cookie["sameSite"] == "Lax", cookie
        assert cookie["path"] == "/" and cookie["domain"] == "127.0.0.1", cookie


def test_single_sign_on_into_the_demo_app(make_stack: Callable[..., Stack],
                                          new_page: Callable[..., Any]) -> None:
    """The demo app (a registered OIDC client) signs the user in through the chooser, which
    names the app; a second login (the gateway's own page) then needs no provider at all, nor
    does the demo app's next one."""
    stack = make_stack()
    google = stack.standin("google")
    page = new_page()
    page.goto(f"{stack.url}/demo/oidc")
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/login?") + ".*"))
    assert "to continue to Demo app" in page.inner_text("main")
    assert page.title() == "Sign in to Demo app"
    screenshot(page, "chooser-demo-app.png")
    page.get_by_role("link", name="Sign in with Google").click()
    page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/demo/callback?") + ".*"))
    assert page.get_by_role("heading", level=1).inner_text() == "The demo app received tokens"
    assert '"name": "Ada Lovelace"' in page.inner_text("main")
    screenshot(page, "demo-app.png")
    upstream_logins = google.calls["authorize"]  # the account chooser's page and the choice
    assert upstream_logins >= 1

    page.goto(f"{stack.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Ada Lovelace"
    page.goto(f"{stack.url}/demo/oidc")  # the demo app signs in again: straight through
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/demo/callback?") + ".*"))
    assert page.get_by_role("heading", level=1).inner_text() == "The demo app received tokens"
    assert google.calls["authorize"] == upstream_logins, "single sign-on went to the provider"


def test_sign_out_with_the_form(make_stack: Callable[..., Stack],
                                new_page: Callable[..., Any]) -> None:
    stack = make_stack()
    page = new_page()
    sign_in(page, stack, "facebook")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(home(stack))
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert not {"gw_session", "gw_access"} & set(gateway_cookies(page, stack))
    # Signed out for the apps too: the demo app's login goes back to the chooser.
    page.goto(f"{stack.url}/demo/oidc")
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/login?") + ".*"))


def test_declined_consent_shows_the_error_page(make_stack: Callable[..., Stack],
                                               new_page: Callable[..., Any]) -> None:
    stack = make_stack()
    page = new_page()
    page.goto(chooser_url(stack))
    page.get_by_role("link", name="Sign in with Google").click()
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/callback/google") + ".*"))
    assert page.get_by_role("heading", level=1).inner_text() == "Sign-in was cancelled"
    screenshot(page, "error-declined.png")
    # "Try again" starts the same login over: back at the provider's account chooser.
    retry_from_the_error_page(page, stack, "Try again", "Ada Lovelace")


def retry_from_the_error_page(page: Any, stack: Stack, link: str, user: str) -> None:
    """The failed login left no gateway cookie; the error page's link leads back to Google's
    account chooser, and choosing `user` there ends signed in on the gateway's page."""
    assert not {"gw_session", "gw_access"} & set(gateway_cookies(page, stack))
    page.get_by_role("link", name=link).click()
    page.wait_for_url(re.compile(re.escape(stack.standin("google").base_url) + ".*"))
    page.get_by_role("button", name=re.compile(user)).click()
    page.wait_for_url(home(stack))
    assert page.get_by_role("heading", level=1).inner_text() == f"Signed in as {user}"


def test_an_account_outside_the_access_policy_sees_why_and_can_try_another(
        make_stack: Callable[..., Stack], new_page: Callable[..., Any]) -> None:
    stack = make_stack(access={"emails": ["grace@example.com"]})
    page = new_page()
    page.goto(chooser_url(stack))
    page.get_by_role("link", name="Sign in with Google").click()
    page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/callback/google") + ".*"))
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading == "This account may not sign in here"
    assert "another account" in page.inner_text("main")
    screenshot(page, "error-not-permitted.png")
    retry_from_the_error_page(page, stack, "Sign in with another account", "Grace Hopper")


def test_chooser_on_a_phone_and_by_keyboard(make_stack: Callable[..., Stack],
                                            new_page: Callable[..., Any]) -> None:
    """Readable on a 390x844 phone (no sideways scrolling, every button in view) and usable
    with the keyboard alone (Tab reaches each button, with a visible focus ring)."""
    stack = make_stack()
    page = new_page(viewport=PHONE)
    page.goto(chooser_url(stack))
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for label in BUTTON_LABELS.values():
        box = page.get_by_role("link", name=label).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["height"] >= 40, f"{label}: too small a touch target ({box})"
    screenshot(page, "chooser-phone.png")
    focused = []
    for _ in BUTTON_LABELS:
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent"))
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid", "no visible focus ring"
    assert focused == list(BUTTON_LABELS.values())

