"""Cookie attributes (SECURITY P1, P5, P6) and open-redirect refusals (R2), as a browser sees
them."""

from __future__ import annotations

from urllib.parse import unquote, urlencode

import httpx
import pytest
import tornado.web
from conftest import TEST_DATA, Stack

# oauth2-proxy's open-redirect payloads: source and license in tests/data/README.md.
CORPUS = TEST_DATA / "openredirects.txt"


def _set_cookies(browser) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in browser.set_cookie_headers}


def test_P1_P5_cookies_are_host_prefixed_httponly_secure_lax(make_stack) -> None:
    stack = make_stack(cookies={"secure": True})
    browser = stack.browser()
    browser.login()
    headers = _set_cookies(browser)
    for name in ("__Host-gw_login", "__Host-gw_session", "__Host-gw_access"):
        header = headers[name].lower()
        assert "httponly" in header and "secure" in header
        assert "samesite=lax" in header and "path=/" in header
        assert "domain=" not in header


def test_P1_access_cookie_carries_the_configured_domain(make_stack) -> None:
    stack = make_stack(cookies={"secure": True, "domain": "127.0.0.1"})
    browser = stack.browser()
    browser.login()
    headers = _set_cookies(browser)
    assert "domain=127.0.0.1" in headers["gw_access"].lower()
    assert "domain=" not in headers["__Host-gw_session"].lower()


def test_P5_login_cookie_stays_lax_when_cookies_are_strict(make_stack) -> None:
    stack = make_stack(cookies={"secure": True, "samesite": "Strict"})
    browser = stack.browser()
    browser.login()
    headers = _set_cookies(browser)
    assert "samesite=lax" in headers["__Host-gw_login"].lower()
    assert "samesite=strict" in headers["__Host-gw_session"].lower()


def test_P6_signed_cookies_hold_no_token_or_personal_data(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    secret = stack.dev.settings.cookies.secret.reveal()
    for name, value in browser.cookies.items():
        assert len(name) + len(value) < 4096
        if name.endswith(("gw_session", "gw_login")):
            payload = tornado.web.decode_signed_value(secret, name, value, max_age_days=1)
            assert payload is not None
            # Words, not "ada": three random base64 characters spell that now and then.
            for text in (value.lower(), payload.decode().lower()):
                assert "ada@example.com" not in text and "lovelace" not in text
                assert "ya29" not in text  # Google's access tokens


def test_K5_signed_cookies_use_hmac_sha256_version_2(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    session = next(v for n, v in browser.cookies.items() if n.endswith("gw_session"))
    assert session.startswith("2|")


def _corpus() -> list[str]:
    if not CORPUS.is_file():
        pytest.fail(f"the open-redirect corpus is missing: {CORPUS} (tests/data/README.md)",
                    pytrace=False)
    return [line.rstrip("\n") for line in CORPUS.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def test_R2_every_open_redirect_payload_is_refused_with_400_and_no_location(make_stack) -> None:
    stack = make_stack(login={"allowed_return_urls": ["https://www.whitelisteddomain.tld/",
                                                      "http://www.whitelisteddomain.tld/"]})
    accepted = []
    with httpx.Client(timeout=10) as client:
        for payload in _corpus():
            for candidate in {unquote(payload), payload}:
                query = urlencode({"return_to": candidate})
                answer = client.get(f"{stack.url}/login/google?{query}")
                if answer.status_code != 400 or "location" in answer.headers:
                    accepted.append((candidate, answer.status_code))
    assert accepted == []
    # The allowlisted destination itself still works.
    ok = httpx.get(f"{stack.url}/login/google",
                   params={"return_to": "https://www.whitelisteddomain.tld/home"})
    assert ok.status_code == 302


ROOT_ENTRY = "https://app.example.test/"
CONSOLE_ENTRY = "https://app.example.test/console/"  # origin + path prefix


@pytest.mark.parametrize(("allowed", "return_to"), [
    *((ROOT_ENTRY, return_to) for return_to in [
        "https://evil.example/", "//evil.example", "\\\\evil.example", "/\\evil.example",
        "https://app.example.test@evil.example/", "HTTPS://app.example.test/",
        "javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
        "https://app.example.test.evil.example/",
        "https://\u0430pp.example.test/",  # a Cyrillic "a": an IDN look-alike
        "https://app.example.test/" + "a" * 3000, "https://app.example.test/%2e%2e/x",
    ]),
    # Outside the path prefix, or climbing out of it.
    *((CONSOLE_ENTRY, return_to) for return_to in [
        "https://app.example.test/console-evil/", "https://app.example.test/admin/",
        "https://app.example.test/console/../admin/",
        "https://app.example.test/console/%2e%2e/admin/",
    ]),
])
def test_R2_open_redirect_forms_are_a_400_page(make_stack, allowed: str, return_to: str) -> None:
    stack = make_stack(login={"allowed_return_urls": [allowed]})
    answer = httpx.get(f"{stack.url}/login/google", params={"return_to": return_to})
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "not allowed" in answer.text


def test_R2_login_accepts_a_return_to_under_the_path_prefix(make_stack) -> None:
    stack = make_stack(login={"allowed_return_urls": [CONSOLE_ENTRY]})
    answer = httpx.get(f"{stack.url}/login/google",
                       params={"return_to": "https://app.example.test/console/users"})
    assert answer.status_code == 302


def test_R2_dev_gateway_sends_a_login_back_to_a_loopback_app_on_any_port(make_stack) -> None:
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


def _xsrf_cookie(answer: httpx.Response, name: str) -> tuple[str, str]:
    """The value and the whole Set-Cookie header of the XSRF cookie `name`."""
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header.split(";", 1)[0].split("=", 1)[1], header
    raise AssertionError(f"no {name} cookie in {answer.headers.get_list('set-cookie')}")


def test_P10_the_xsrf_cookie_is_host_prefixed_and_a_planted_one_is_ignored(make_stack) -> None:
    """A sibling subdomain can set a cookie for its parent domain, never a `__Host-` one: with
    the XSRF cookie host-locked, a token planted from there cannot forge POST /logout."""
    stack = make_stack(cookies={"secure": True})
    browser = stack.browser()
    browser.login()
    page = browser.get(f"{stack.url}/")  # the signed-in page: its sign-out form
    token, header = _xsrf_cookie(page, "__Host-_xsrf")
    attributes = header.lower()
    assert "secure" in attributes and "path=/" in attributes and "domain=" not in attributes
    assert not any(h.startswith("_xsrf=") for h in page.headers.get_list("set-cookie"))

    def logout(cookie_name: str) -> httpx.Response:
        return httpx.post(f"{stack.url}/logout", data={"_xsrf": token},
                          headers={"Cookie": f"{cookie_name}={token}"})

    assert logout("_xsrf").status_code == 403  # planted by a sibling: refused
    assert logout("__Host-_xsrf").status_code == 303  # the gateway's own: accepted


def test_P10_without_secure_cookies_the_xsrf_cookie_keeps_its_plain_name(make_stack) -> None:
    stack = make_stack()  # development mode on http: no __Host- cookie is possible
    browser = stack.browser()
    browser.login()
    _, header = _xsrf_cookie(browser.get(f"{stack.url}/"), "_xsrf")
    assert "path=/" in header.lower()
