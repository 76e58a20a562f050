"""End to end in a real browser: Debian's Chromium (/usr/bin/chromium), driven by Playwright's
sync API, against the gateway and its provider stand-ins on loopback (conftest's `make_stack`).

A person's flows: each provider's login from the chooser (its branded button), the cookies'
attributes as Chromium stored them, single sign-on into the demo OIDC app without a new provider
round trip and its RP-initiated logout, sign-out with the form, switching accounts, a declined
consent, and a whole sign-in with JavaScript off; Sign in with Apple from another site (its
form post really without the SameSite=Lax login cookie, then relayed) and its button as
Apple's guidelines draw it. Every page (the gateway's and the stand-ins')
passes axe-core's accessibility check (no serious or critical violation) in light and dark mode,
and is photographed at 1280 and 390 px wide, light and dark, into test-artifacts/pages/
(git-ignored); other screenshots go to test-artifacts/.

Without Chromium or Playwright these tests skip locally, and fail under CI=true (.ci/run
installs Debian's chromium; Playwright never downloads a browser here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
from conftest import REPO_ROOT, Stack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# What works on this machine's closed network (no background fetches, no first-run dialogs).
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
VIEWPORT = {"width": 800, "height": 600}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
# The provider id (URLs, claims, configuration) and the brand a person reads.
BRANDS = {"google": "Google", "facebook": "Facebook", "twitter": "X", "github": "GitHub",
          "microsoft": "Microsoft", "apple": "Apple", "dev": "Dev SSO"}
NO_PICTURE = {"microsoft", "apple"}  # their ID tokens have none
BUTTON_LABELS = {name: f"Sign in with {brand}" for name, brand in BRANDS.items()}
# The button colours of each provider's published branding (background, text), light and dark.
BRAND_COLOURS = {
    ("google", "light"): ("rgb(255, 255, 255)", "rgb(31, 31, 31)"),
    ("google", "dark"): ("rgb(19, 19, 20)", "rgb(227, 227, 227)"),
    ("facebook", "light"): ("rgb(8, 102, 255)", "rgb(255, 255, 255)"),
    ("facebook", "dark"): ("rgb(8, 102, 255)", "rgb(255, 255, 255)"),
    ("twitter", "light"): ("rgb(0, 0, 0)", "rgb(255, 255, 255)"),
    ("twitter", "dark"): ("rgb(0, 0, 0)", "rgb(255, 255, 255)"),
    ("github", "light"): ("rgb(36, 41, 47)", "rgb(255, 255, 255)"),
    ("github", "dark"): ("rgb(36, 41, 47)", "rgb(255, 255, 255)"),
    ("microsoft", "light"): ("rgb(255, 255, 255)", "rgb(94, 94, 94)"),
    ("microsoft", "dark"): ("rgb(47, 47, 47)", "rgb(255, 255, 255)"),
    ("apple", "light"): ("rgb(0, 0, 0)", "rgb(255, 255, 255)"),
    ("apple", "dark"): ("rgb(255, 255, 255)", "rgb(0, 0, 0)"),
    # A generic OpenID provider (development mode's "Dev SSO"): the page's primary colour.
    ("dev", "light"): ("rgb(29, 78, 216)", "rgb(255, 255, 255)"),
    ("dev", "dark"): ("rgb(37, 99, 235)", "rgb(255, 255, 255)"),
}
# axe-core's impact levels that fail a page.
BLOCKING_IMPACTS = ("serious", "critical")


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


@pytest.fixture(scope="module")
def axe() -> Any:
    """axe-core (the axe.min.js that the axe-playwright-python package bundles), run inside
    the page by Playwright (DevTools evaluation: the pages' CSP stays as it is)."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        _unavailable("axe-playwright-python is not installed (pip install -e '.[test]')")
    return Axe()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int] = VIEWPORT, **options: Any) -> Any:
        context = chromium.new_context(viewport=viewport, **options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def record_traffic(page: Any) -> list[Any]:
    """Every response the page's context receives from now on (documents, sheets, icons)."""
    responses: list[Any] = []
    page.context.on("response", lambda response: responses.append(response))
    return responses


def chooser_url(stack: Stack) -> str:
    return f"{stack.url}/login?{urlencode({'return_to': f'{stack.url}/'})}"


def home(stack: Stack) -> re.Pattern[str]:
    """The gateway's home page; Facebook's redirect adds a `#_=_` fragment, as the real one."""
    return re.compile(re.escape(f"{stack.url}/") + r"(#.*)?")


def sign_in(page: Any, stack: Stack, provider: str, *, shot: str | None = None,
            user: str = "Ada Lovelace") -> None:
    """From the chooser, through the stand-in's account chooser, back to the home page."""
    page.goto(chooser_url(stack))
    if shot:
        screenshot(page, shot)
    page.get_by_role("link", name=BUTTON_LABELS[provider]).click()
    page.wait_for_url(re.compile(re.escape(stack.standin(provider).base_url) + ".*"))
    page.get_by_role("button", name=re.compile(user)).click()
    page.wait_for_url(home(stack))
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"Signed in as {user}"


def claim_cell(page: Any, claim: str) -> Any:
    """The value cell of one row of the claims table."""
    return page.locator(f'xpath=//table[@class="claims"]/tbody/tr/th[normalize-space()="{claim}"]'
                        '/following-sibling::td')


def gateway_cookies(page: Any, stack: Stack) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in page.context.cookies(stack.url)}


@pytest.mark.parametrize("provider", ["google", "facebook", "twitter", "github", "microsoft",
                                      "dev"])
def test_login_from_the_chooser(make_stack: Callable[..., Stack], new_page: Callable[..., Any],
                                provider: str) -> None:
    stack = make_stack()
    page = new_page()
    shots = {"chooser": None, "home": None}
    if provider == "google":
        shots = {"chooser": "chooser.png", "home": "signed-in-home.png"}
    sign_in(page, stack, provider, shot=shots["chooser"])
    # The brand a person knows ("via X"); the internal id stays in the claims ("idp").
    assert f"via {BRANDS[provider]}" in page.inner_text(".who")
    assert claim_cell(page, "idp").inner_text() == provider
    # The stand-in's picture (on its own origin) is drawn: allowed by the CSP, and well formed.
    if provider not in NO_PICTURE:
        assert page.eval_on_selector("main img",
                                     "img => img.complete && img.naturalWidth") > 0
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
    # Times as readable UTC dates, the number itself in the tooltip: those of the token the
    # browser holds.
    token = jwt.decode(jar["gw_access"]["value"], options={"verify_signature": False})
    for claim in ("exp", "iat"):
        time = claim_cell(page, claim).locator("time")
        shown = datetime.fromtimestamp(token[claim], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert time.inner_text() == shown
        assert time.get_attribute("title").startswith(f"{token[claim]} ")
        assert str(token[claim]) not in page.inner_text("main")


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
    assert claim_cell(page, "name").inner_text() == "Ada Lovelace"
    assert claim_cell(page, "aud").inner_text() == "demo-app"
    screenshot(page, "demo-app.png")
    upstream_logins = google.calls["authorize"]  # the account chooser's page and the choice
    assert upstream_logins >= 1

    page.goto(f"{stack.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Ada Lovelace"
    page.goto(f"{stack.url}/demo/oidc")  # the demo app signs in again: straight through
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/demo/callback?") + ".*"))
    assert page.get_by_role("heading", level=1).inner_text() == "The demo app received tokens"
    assert google.calls["authorize"] == upstream_logins, "single sign-on went to the provider"


def test_the_demo_app_signs_out_with_rp_initiated_logout(make_stack: Callable[..., Stack],
                                                          new_page: Callable[..., Any]) -> None:
    """The demo app's sign-out button posts its ID token and its registered
    post_logout_redirect_uri to the end_session_endpoint: the hint names this very session,
    so no confirmation is asked; the browser lands on that URI, signed out everywhere."""
    stack = make_stack()
    page = new_page()
    sign_in(page, stack, "google")
    page.goto(f"{stack.url}/demo/oidc")
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/demo/callback?") + ".*"))
    form = page.locator(f'form[action="{stack.url}/logout/oidc"]')
    assert form.locator('input[name="id_token_hint"]').get_attribute("value")
    assert form.locator('input[name="post_logout_redirect_uri"]').get_attribute(
        "value") == f"{stack.url}/"
    page.get_by_role("button", name="Sign out of the demo app").click()
    page.wait_for_url(f"{stack.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert not {"gw_session", "gw_access"} & set(gateway_cookies(page, stack))
    page.goto(f"{stack.url}/demo/oidc")  # the app's next login needs the provider again
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/login?") + ".*"))


def test_signed_in_page_offers_sign_out_first_and_one_switch_account_link(
        make_stack: Callable[..., Stack], new_page: Callable[..., Any]) -> None:
    """Sign-out is the page's one filled button; switching accounts is a single plain link to
    the chooser (no row of provider buttons), and it works: signed in as another user."""
    stack = make_stack()
    page = new_page()
    sign_in(page, stack, "google")
    main = page.locator("main")
    assert main.get_by_role("button").all_inner_texts() == ["Sign out"]
    assert "primary" in (page.get_by_role("button", name="Sign out").get_attribute("class")
                         or "")
    assert main.get_by_role("link", name=re.compile("^Sign in with")).count() == 0
    switch = main.get_by_role("link", name="Switch account")
    assert switch.count() == 1 and "button" not in (switch.get_attribute("class") or "")
    switch.click()
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/login?") + ".*"))
    page.get_by_role("link", name="Sign in with X").click()
    page.get_by_role("button", name=re.compile("Grace Hopper")).click()
    page.wait_for_url(home(stack))
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Grace Hopper"
    assert "via X" in page.inner_text(".who")


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


def test_sign_out_another_device_and_everywhere_else_from_the_list(
        make_stack: Callable[..., Stack], new_page: Callable[..., Any]) -> None:
    """SECURITY P8: the signed-in page lists this user's sessions; a click signs one device
    out, another every device but this one, and this browser stays signed in."""
    stack = make_stack()
    page = new_page()
    sign_in(page, stack, "google")
    phone, tablet = stack.browser(), stack.browser()
    phone.http.headers["User-Agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)"
    tablet.http.headers["User-Agent"] = "Mozilla/5.0 (Linux; Android 14; SM-X710) Firefox/133.0"
    for device in (phone, tablet):
        assert device.login().status_code == 302
    page.reload()
    sessions = page.locator(".sessions li")
    assert sessions.count() == 3
    assert sessions.first.inner_text().startswith("Chrome on Linux (this device)")
    page.locator(".sessions li", has_text="iPhone").get_by_role(
        "button", name=re.compile("^Sign out iPhone")).click()
    page.wait_for_url(f"{stack.url}/#sessions")
    assert page.locator(".sessions li").count() == 2
    assert "iPhone" not in page.inner_text(".sessions")
    page.get_by_role("button", name="Sign out everywhere else").click()
    page.wait_for_url(f"{stack.url}/#sessions")
    assert page.locator(".sessions li").count() == 1
    assert page.get_by_role("button", name="Sign out everywhere else").count() == 0
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Ada Lovelace"
    for device in (phone, tablet):
        del device.cookies[next(n for n in device.cookies if n.endswith("gw_access"))]
        assert device.get(f"{stack.url}/auth").status_code == 401


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


def content_width(page: Any, selector: str) -> float:
    """The width inside an element's padding (what a child of width 100% gets)."""
    return float(page.eval_on_selector(selector, """e => {
        const s = getComputedStyle(e);
        return e.getBoundingClientRect().width - parseFloat(s.paddingLeft)
            - parseFloat(s.paddingRight) - parseFloat(s.borderLeftWidth)
            - parseFloat(s.borderRightWidth); }"""))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_provider_buttons_follow_each_brand(make_stack: Callable[..., Stack],
                                            new_page: Callable[..., Any], scheme: str) -> None:
    """Each button: its provider's colours (Google's white or #131314 with the #747775 border,
    Facebook's blue, X's black, GitHub's dark grey), its logo drawn inline on the left, and
    the card's full width; the page asks for nothing beyond the gateway's own origin."""
    stack = make_stack()
    page = new_page(viewport=DESKTOP, color_scheme=scheme)
    traffic = record_traffic(page)
    page.goto(chooser_url(stack))
    card = content_width(page, "main")
    for name, label in BUTTON_LABELS.items():
        button = page.get_by_role("link", name=label, exact=True)
        background, colour = BRAND_COLOURS[(name, scheme)]
        style = button.evaluate("e => [getComputedStyle(e).backgroundColor, "
                                "getComputedStyle(e).color]")
        assert style == [background, colour], (name, scheme, style)
        box, logo = button.bounding_box(), button.locator("svg.logo").bounding_box()
        assert box is not None and logo is not None, name
        assert abs(box["width"] - card) < 1, (name, box["width"], card)
        assert logo["x"] - box["x"] < 24 and logo["width"] >= 16, (name, box, logo)
        assert button.get_attribute("href").startswith(f"/login/{name}?return_to=")
    google = page.get_by_role("link", name=BUTTON_LABELS["google"])
    border = google.evaluate("e => getComputedStyle(e).borderTopColor + ' ' + "
                             "getComputedStyle(e).borderTopWidth")
    assert border == ("rgb(116, 119, 117) 1px" if scheme == "light" else "rgb(142, 145, 143) 1px")
    assert {urlsplit(r.url).netloc for r in traffic} == {urlsplit(stack.url).netloc}
    assert all(r.status < 400 for r in traffic), [(r.url, r.status) for r in traffic]


def test_favicon_is_served_and_linked_from_every_page(make_stack: Callable[..., Stack],
                                                      new_page: Callable[..., Any]) -> None:
    stack = make_stack()
    page = new_page()
    for path in ("/", "/login", "/logout/oidc", "/no-such-page"):
        page.goto(f"{stack.url}{path}")
        href = page.get_attribute('link[rel="icon"]', "href")
        assert href and href.startswith("/static/"), (path, href)
        icon = page.request.get(f"{stack.url}{href}")
        assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"
        assert icon.body().startswith(b"<svg ")


def test_sign_in_and_out_with_javascript_off(make_stack: Callable[..., Stack],
                                             new_page: Callable[..., Any]) -> None:
    """No page needs JavaScript: the chooser, the stand-in's account chooser, the signed-in
    page and its sign-out form are plain links and forms."""
    stack = make_stack()
    page = new_page(java_script_enabled=False)
    sign_in(page, stack, "twitter")
    assert "via X" in page.inner_text(".who")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(home(stack))
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert not {"gw_session", "gw_access"} & set(gateway_cookies(page, stack))


class PageAudit:
    """axe-core on a page in light and dark mode, and its four screenshots (1280 and 390 px
    wide, light and dark) in test-artifacts/pages/. Failures are gathered, so that one run
    names every page's violations."""

    def __init__(self, page: Any, axe: Any) -> None:
        self.page = page
        self.axe = axe
        self.failures: list[str] = []
        self.shots: list[Path] = []

    def __call__(self, name: str) -> None:
        page = self.page
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size(DESKTOP)
            violations = self.axe.run(page).response["violations"]
            self.failures += [
                f"{name} ({scheme}): {v['id']} [{v['impact']}] "
                f"{', '.join(str(n['target']) for n in v['nodes'][:3])}"
                for v in violations if v["impact"] in BLOCKING_IMPACTS]
            self.shots.append(screenshot(page, f"pages/{name}-desktop-{scheme}.png",
                                         full_page=True))
            page.set_viewport_size(PHONE)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                self.failures.append(f"{name} ({scheme}): {width} px wide on a 390 px phone")
            self.shots.append(screenshot(page, f"pages/{name}-phone-{scheme}.png",
                                         full_page=True))
        page.emulate_media(color_scheme="light")
        page.set_viewport_size(DESKTOP)


def test_every_page_passes_axe_and_is_photographed(make_stack: Callable[..., Stack],
                                                   new_page: Callable[..., Any],
                                                   axe: Any) -> None:
    """Each page a person can meet, in the order they meet it: no serious or critical axe-core
    violation, no sideways scrolling on a phone, no failed request (a favicon 404 included)."""
    stack = make_stack()
    google = stack.standin("google")
    page = new_page(viewport=DESKTOP)
    # The checker finds what it should: an image without a text alternative is critical.
    page.set_content("<!doctype html><html lang=en><title>t</title><main><img src='data:,'>")
    assert "image-alt" in {v["id"] for v in axe.run(page).response["violations"]
                           if v["impact"] in BLOCKING_IMPACTS}
    traffic = record_traffic(page)
    audit = PageAudit(page, axe)

    page.goto(f"{stack.url}/demo/oidc")  # the chooser, naming the app (the README's picture)
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/login?") + ".*"))
    audit("chooser")
    for provider in ("facebook", "twitter", "github", "google"):  # each stand-in's chooser
        page.get_by_role("link", name=BUTTON_LABELS[provider]).click()
        page.wait_for_url(re.compile(re.escape(stack.standin(provider).base_url) + ".*"))
        audit(f"standin-{provider}-chooser")
        if provider != "google":
            page.go_back()
            page.wait_for_url(re.compile(re.escape(f"{stack.url}/login?") + ".*"))
    page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/demo/callback?") + ".*"))
    audit("demo-app")
    assert stack.browser().login().status_code == 302  # another device: the list has a form
    page.goto(f"{stack.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Ada Lovelace"
    assert page.get_by_role("button", name="Sign out everywhere else").count() == 1
    audit("home-signed-in")
    page.goto(f"{stack.url}/logout/oidc")  # no id_token_hint: the user confirms
    assert page.get_by_role("heading", level=1).inner_text() == "Sign out?"
    audit("sign-out-confirm")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{stack.url}/logout/oidc")
    assert page.get_by_role("heading", level=1).inner_text() == "You are signed out"
    audit("signed-out")
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{stack.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    audit("home-signed-out")
    page.get_by_role("link", name=BUTTON_LABELS["google"]).click()
    page.get_by_role("button", name="Cancel").click()  # declined at the provider
    page.wait_for_url(re.compile(re.escape(f"{stack.url}/callback/google") + ".*"))
    assert page.get_by_role("heading", level=1).inner_text() == "Sign-in was cancelled"
    audit("error")
    page.goto(f"{google.base_url}/o/oauth2/v2/auth?client_id=unknown")
    audit("standin-google-error")

    failed = [(r.url, r.status) for r in traffic
              if r.status >= 400 and r.request.resource_type != "document"]
    assert not failed, failed
    assert not audit.failures, "\n".join(["axe-core / layout:", *audit.failures])
    assert len(audit.shots) == 4 * 12 and all(p.stat().st_size > 0 for p in audit.shots)


# ---------------------------------------------------------------------------------------------
# Sign in with Apple: its form post comes from another site


# The gateway on `localhost`, Apple's stand-in on `127.0.0.1`: two sites, as the gateway and
# appleid.apple.com are, so Chromium really withholds SameSite=Lax cookies from the form post.
APPLE_ON_ANOTHER_SITE = {"host": "localhost", "standin_hosts": {"apple": "127.0.0.1"}}
APPLE_LABEL = "Sign in with Apple"  # the exact title of Apple's Human Interface Guidelines


def callback_posts(page: Any) -> list[Any]:
    """Every POST to the gateway's /callback/apple from now on, in order."""
    posts: list[Any] = []
    page.context.on("request", lambda request: posts.append(request)
                    if request.method == "POST" and "/callback/apple" in request.url else None)
    return posts


def test_apple_login_across_sites_relays_the_form_post_with_the_login_cookie(
        make_stack: Callable[..., Stack], new_page: Callable[..., Any]) -> None:
    """SECURITY C8 in a real browser: Apple's page posts to the gateway from another site, so
    Chromium sends no SameSite=Lax cookie; the gateway's relay page posts the same fields from
    the gateway's own origin, with the login cookie, and the user lands signed in on an app of
    another origin (nothing in the relay page's CSP stops that redirect)."""
    stack = make_stack(**APPLE_ON_ANOTHER_SITE)
    apple = stack.standin("apple")
    assert urlsplit(stack.url).hostname == "localhost"
    assert urlsplit(apple.base_url).hostname == "127.0.0.1"
    app = f"{apple.base_url}/auth/keys"  # any page of another origin, allowed in dev mode
    page = new_page()
    posts = callback_posts(page)
    page.goto(f"{stack.url}/login?{urlencode({'return_to': app})}")
    page.get_by_role("link", name=APPLE_LABEL, exact=True).click()
    page.wait_for_url(re.compile(re.escape(apple.base_url) + "/auth/authorize.*"))
    page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
    page.wait_for_url(app)
    assert len(posts) == 2, [p.url for p in posts]
    cross_site, relayed = (p.all_headers() for p in posts)
    assert cross_site["origin"] == apple.base_url
    assert "gw_login" not in cross_site.get("cookie", "")  # withheld: another site's POST
    # From the gateway's own page (its Origin is "null": Referrer-Policy no-referrer).
    assert relayed["origin"] in (stack.url, "null")
    assert "gw_login" in relayed.get("cookie", "")  # same-site: the login cookie is back
    page.goto(f"{stack.url}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Ada Lovelace"
    assert "via Apple" in page.inner_text(".who")
    assert claim_cell(page, "idp").inner_text() == "apple"
    assert claim_cell(page, "email").inner_text() == "ada@example.com"  # "true", a string
    jar = gateway_cookies(page, stack)
    assert jar["gw_session"]["sameSite"] == "Lax" and jar["gw_access"]["sameSite"] == "Lax"


def test_apple_login_with_javascript_off(make_stack: Callable[..., Stack],
                                        new_page: Callable[..., Any]) -> None:
    """Without JavaScript, Apple's form post page and the gateway's relay page each offer a
    button that does what their script would."""
    stack = make_stack(**APPLE_ON_ANOTHER_SITE)
    apple = stack.standin("apple")
    page = new_page(java_script_enabled=False)
    page.goto(chooser_url(stack))
    page.get_by_role("link", name=APPLE_LABEL, exact=True).click()
    page.wait_for_url(re.compile(re.escape(apple.base_url) + ".*"))
    page.get_by_role("button", name=re.compile("Grace Hopper")).click()
    assert page.get_by_role("heading", level=1).inner_text() == "Signing in…"
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{stack.url}/callback/apple")
    assert page.get_by_role("heading", level=1).inner_text() == "Signing you in…"
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(home(stack))
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Grace Hopper"
    assert claim_cell(page, "email").inner_text() == "x7k2q9v4mt@privaterelay.appleid.com"


def test_apple_pages_pass_axe(make_stack: Callable[..., Stack], new_page: Callable[..., Any],
                              axe: Any) -> None:
    """The chooser with Apple's button, the stand-in's pages and the gateway's relay page pass
    axe-core in light and dark mode. The form posts are held back (aborted, the page stays)
    just long enough to look at the page that sends each."""
    stack = make_stack(**APPLE_ON_ANOTHER_SITE)
    apple = stack.standin("apple")
    page = new_page(viewport=DESKTOP)
    audit = PageAudit(page, axe)
    page.goto(chooser_url(stack))
    audit("apple-chooser")
    page.get_by_role("link", name=APPLE_LABEL, exact=True).click()
    page.wait_for_url(re.compile(re.escape(apple.base_url) + ".*"))
    audit("standin-apple-chooser")
    callback = f"{stack.url}/callback/apple"

    def hold(relayed: bool) -> Callable[[Any], None]:
        def handle(route: Any) -> None:
            is_relay = b"gateway_relayed" in (route.request.post_data_buffer or b"")
            if is_relay == relayed:
                route.abort("aborted")
            else:
                route.continue_()
        return handle

    page.route(callback, hold(relayed=False))
    page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
    page.get_by_role("heading", name="Signing in…").wait_for()
    audit("standin-apple-form-post")
    page.unroute(callback)
    page.route(callback, hold(relayed=True))
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Signing you in…").wait_for()
    assert page.url == callback
    audit("apple-relay")
    page.unroute(callback)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(home(stack))
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in as Ada Lovelace"
    assert not audit.failures, "\n".join(["axe-core / layout:", *audit.failures])


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_apple_button_follows_apples_guidelines(make_stack: Callable[..., Stack],
                                                new_page: Callable[..., Any],
                                                scheme: str) -> None:
    """Apple's Human Interface Guidelines for "Sign in with Apple": the exact title, black on a
    light page and white on a dark one, the Apple logo in the title's colour on the left, at
    least 140 x 30 px, rounded corners; as wide as its neighbours, reached by Tab."""
    stack = make_stack()
    page = new_page(viewport=DESKTOP, color_scheme=scheme)
    page.goto(chooser_url(stack))
    button = page.get_by_role("link", name=APPLE_LABEL, exact=True)
    assert button.inner_text().strip() == APPLE_LABEL
    style = button.evaluate("""e => { const s = getComputedStyle(e);
        return [s.backgroundColor, s.color, s.borderTopLeftRadius, s.fontFamily]; }""")
    colours = {"light": ["rgb(0, 0, 0)", "rgb(255, 255, 255)"],
               "dark": ["rgb(255, 255, 255)", "rgb(0, 0, 0)"]}[scheme]
    assert style[:2] == colours, style
    assert float(style[2].removesuffix("px")) > 0
    assert "-apple-system" in style[3] or "system-ui" in style[3]
    logo = button.locator("svg.logo")
    assert logo.evaluate("e => getComputedStyle(e.querySelector('path')).fill") == colours[1]
    box, logo_box = button.bounding_box(), logo.bounding_box()
    assert box is not None and logo_box is not None
    assert box["width"] >= 140 and box["height"] >= 30, box
    assert logo_box["x"] - box["x"] < 24 and logo_box["width"] >= 16, (box, logo_box)
    google = page.get_by_role("link", name=BUTTON_LABELS["google"]).bounding_box()
    assert google is not None and abs(google["width"] - box["width"]) < 1
    for _ in range(list(BUTTON_LABELS).index("apple") + 1):  # the buttons in their order
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == APPLE_LABEL
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    screenshot(page, f"apple-button-{scheme}.png")
