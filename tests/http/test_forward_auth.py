"""`GET /auth`, the reverse proxies' forward authentication, over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from conftest import Stack, query_of
from oidc_support import bearer, oidc_stack

APP = "https://app.example.test"
SETTINGS = {"allowed_return_urls": [f"{APP}/"]}
TRAEFIK = {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https",
           "X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/reports?year=2026&q=a%20b"}


@pytest.fixture
def app_stack(make_stack) -> Stack:
    return make_stack(login=SETTINGS)


def _session_only(browser) -> None:
    """Drop the access cookie: only the gateway session is left."""
    for name in [n for n in browser.cookies if n.endswith("gw_access")]:
        del browser.cookies[name]


def test_signed_in_browser_gets_200_with_the_user_headers(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login()
    answer = browser.get(f"{app_stack.url}/auth")
    assert answer.status_code == 200
    assert answer.headers["X-Auth-Request-User"].startswith("google:")
    assert answer.headers["X-Auth-Request-Email"] == "ada@example.com"
    assert answer.headers["X-Auth-Request-Preferred-Username"] == "Ada Lovelace"
    assert "Authorization" not in answer.headers  # pass_token is off by default
    assert answer.headers["Cache-Control"] == "no-store"


def test_bearer_token_is_enough(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login()
    answer = httpx.get(f"{app_stack.url}/auth",
                       headers={"Authorization": f"Bearer {browser.access_token()}"})
    assert answer.status_code == 200
    assert answer.headers["X-Auth-Request-User"].startswith("google:")


def test_a_valid_jwt_needs_no_store_access(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login()
    store = app_stack.ctx.store
    calls: list[str] = []
    original_get = store.get

    async def counting_get(*args, **kwargs):
        calls.append("get")
        return await original_get(*args, **kwargs)

    store.get = counting_get  # type: ignore[method-assign]
    try:
        assert browser.get(f"{app_stack.url}/auth").status_code == 200
    finally:
        store.get = original_get  # type: ignore[method-assign]
    assert calls == []


def test_live_session_without_access_cookie_is_signed_in(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login()
    _session_only(browser)
    answer = browser.get(f"{app_stack.url}/auth")
    assert answer.status_code == 200
    assert answer.headers["X-Auth-Request-User"].startswith("google:")
    assert "Authorization" not in answer.headers


def test_pass_token_hands_the_jwt_or_a_fresh_one_for_the_session(make_stack) -> None:
    stack = make_stack(login=SETTINGS, forward_auth={"pass_token": True})
    browser = stack.browser()
    browser.login()
    answer = browser.get(f"{stack.url}/auth")
    assert answer.headers["Authorization"] == f"Bearer {browser.access_token()}"
    _session_only(browser)
    minted = browser.get(f"{stack.url}/auth")
    assert minted.status_code == 200
    token = minted.headers["Authorization"].removeprefix("Bearer ")
    claims = stack.ctx.verifier.verify(token)
    assert claims["sub"] == minted.headers["X-Auth-Request-User"]
    assert claims["aud"] == stack.url and claims["email_verified"] is True


def test_unverified_email_is_not_passed_on(app_stack: Stack) -> None:
    from gateway.dev.standins.google import DEV_USERS
    unverified = next(u for u in DEV_USERS if not u.email_verified)
    browser = app_stack.browser()
    browser.login(user=unverified.key)
    answer = browser.get(f"{app_stack.url}/auth")
    assert answer.status_code == 200
    assert "X-Auth-Request-Email" not in answer.headers


def test_nginx_style_request_without_login_gets_401_and_the_login_url(app_stack: Stack) -> None:
    original = f"{APP}/reports?year=2026"
    answer = httpx.get(f"{app_stack.url}/auth", headers={"X-Original-URL": original})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    login = answer.headers["X-Auth-Request-Redirect"]
    assert login.startswith(f"{app_stack.url}/login?")
    assert query_of(login)["return_to"] == [original]


def test_invalid_or_expired_tokens_get_the_same_401(app_stack: Stack) -> None:
    for headers in ({"Authorization": "Bearer not.a.jwt"}, {"Cookie": "gw_access=x.y.z"}, {}):
        answer = httpx.get(f"{app_stack.url}/auth", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_request"


def test_ended_session_is_refused(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login()
    _session_only(browser)
    session_cookie = next(n for n in browser.cookies if n.endswith("gw_session"))
    browser.cookies[session_cookie] = browser.cookies[session_cookie][:-2] + "xx"
    assert browser.get(f"{app_stack.url}/auth").status_code == 401


def test_token_of_another_audience_is_refused(app_stack: Stack) -> None:
    ctx = app_stack.ctx
    token = ctx.issuer.issue("google:1", "https://api.other.example", {"idp": "google"})
    answer = httpx.get(f"{app_stack.url}/auth", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401


def test_traefik_style_request_is_redirected_to_login_with_the_original_url(
        app_stack: Stack) -> None:
    answer = httpx.get(f"{app_stack.url}/auth", headers=TRAEFIK)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(f"{app_stack.url}/login?return_to=")
    assert query_of(location)["return_to"] == [f"{APP}/reports?year=2026&q=a%20b"]


def test_mode_parameter_overrides_the_detection(app_stack: Stack) -> None:
    status = httpx.get(f"{app_stack.url}/auth?mode=status", headers=TRAEFIK)
    assert status.status_code == 401
    original = {"X-Original-URL": f"{APP}/x"}
    redirect = httpx.get(f"{app_stack.url}/auth?mode=redirect", headers=original)
    assert redirect.status_code == 302
    assert httpx.get(f"{app_stack.url}/auth?mode=other").status_code == 400


def test_a_forwarded_post_is_not_redirected(app_stack: Stack) -> None:
    answer = httpx.get(f"{app_stack.url}/auth", headers={**TRAEFIK, "X-Forwarded-Method": "POST"})
    assert answer.status_code == 401


@pytest.mark.parametrize("host, uri", [
    ("evil.example", "/"),
    ("app.example.test@evil.example", "/"),
    ("app.example.test", "/\\evil.example"),
    ("app.example.test, evil.example", "/"),
    ("app.example.test", "/%2e%2e/admin"),
    ("app.example.test", "reports"),
])
def test_R2_forwarded_headers_never_make_an_open_redirect(app_stack: Stack, host: str,
                                                          uri: str) -> None:
    headers = {**TRAEFIK, "X-Forwarded-Host": host, "X-Forwarded-Uri": uri}
    answer = httpx.get(f"{app_stack.url}/auth", headers=headers)
    assert answer.status_code == 401
    assert "location" not in answer.headers
    assert "return_to" not in answer.headers.get("X-Auth-Request-Redirect", "return_to")


def test_R2_x_original_url_outside_the_allowlist_is_not_a_return_to(app_stack: Stack) -> None:
    for bad in ("https://evil.example/", "javascript:alert(1)", "//evil.example/",
                "HTTPS://app.example.test/"):
        answer = httpx.get(f"{app_stack.url}/auth?mode=redirect",
                           headers={"X-Original-URL": bad})
        assert answer.status_code == 401
        assert answer.headers["X-Auth-Request-Redirect"] == f"{app_stack.url}/login"


def test_R5_login_url_is_built_from_the_issuer_not_the_host_header(app_stack: Stack) -> None:
    answer = httpx.get(f"{app_stack.url}/auth",
                       headers={**TRAEFIK, "Host": "evil.example"})
    assert answer.headers["location"].startswith(f"{app_stack.url}/login?")


def test_header_values_are_printable_ascii() -> None:
    from gateway.handlers.forward_auth import header_value
    assert header_value("Ada Lovelace") == "Ada Lovelace"
    assert header_value("Zoë\r\nX: 1") == "Zo%C3%AB%0D%0AX: 1"
    assert header_value("100%") == "100%25"


@pytest.mark.parametrize("sample", ["nginx.conf", "traefik.yml", "Caddyfile"])
def test_every_sample_proxy_config_passes_the_user_headers_on(sample: str) -> None:
    from conftest import REPO_ROOT

    from gateway.handlers.forward_auth import EMAIL_HEADER, NAME_HEADER, USER_HEADER
    text = (REPO_ROOT / "config" / sample).read_text().lower()
    for header in (USER_HEADER, EMAIL_HEADER, NAME_HEADER):
        assert header.lower() in text or header.lower().replace("-", "_") in text, header
    assert "/auth" in text


def test_T6_auth_refuses_a_revoked_token_when_revocation_is_checked(make_stack) -> None:
    """Issue 15, finding 3: /verify and /introspect refused a revoked token while /auth let
    it through until its exp, even with tokens.verify_checks_revocation on."""
    stack = oidc_stack(make_stack, login=SETTINGS, tokens={"verify_checks_revocation": True})
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    assert httpx.get(f"{stack.url}/auth", headers=bearer(token)).status_code == 200
    revoked = httpx.post(f"{stack.url}/revoke", data={"token": token, "client_id": "spa"})
    assert revoked.status_code == 200
    assert httpx.get(f"{stack.url}/auth", headers=bearer(token)).status_code == 401
    assert httpx.get(f"{stack.url}/verify", headers=bearer(token)).status_code == 401


def test_T6_without_the_revocation_check_auth_stays_stateless(make_stack) -> None:
    """The documented trade-off, as for /verify: without verify_checks_revocation a valid JWT
    costs no store access, and a revoked one is refused only once it expires."""
    stack = oidc_stack(make_stack, login=SETTINGS)
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    assert httpx.post(f"{stack.url}/revoke",
                      data={"token": token, "client_id": "spa"}).status_code == 200
    assert httpx.get(f"{stack.url}/auth", headers=bearer(token)).status_code == 200
