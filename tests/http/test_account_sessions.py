"""SECURITY P8: the signed-in page lists its user's sessions (device, provider, when and from
where), and its forms end one of them, or every one but this browser's, as the admin API does:
sessions, refresh tokens and access tokens."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from conftest import Browser, Stack

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/131.0.0.0 Safari/537.36")


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack(tokens={"verify_checks_revocation": True})


def _signed_in(stack: Stack, user_agent: str, user: str = "ada") -> Browser:
    browser = stack.browser()
    browser.http.headers["User-Agent"] = user_agent
    assert browser.login(user=user).status_code == 302
    return browser


def _home(stack: Stack, browser: Browser) -> str:
    page = browser.get(f"{stack.url}/")
    assert page.status_code == 200
    return page.text


def _xsrf(page: str) -> str:
    found = re.search(r'name="_xsrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def _listed_sids(page: str) -> list[str]:
    return re.findall(r'name="sid" value="([^"]+)"', page)


def _still_signed_in(stack: Stack, browser: Browser) -> bool:
    """Its session (no access cookie: the session alone decides) and its access token."""
    token = browser.access_token()
    by_session = httpx.get(f"{stack.url}/auth", headers={"Cookie": "; ".join(
        f"{k}={v}" for k, v in browser.cookies.items() if not k.endswith("gw_access"))})
    by_token = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert (by_session.status_code == 200) == (by_token.status_code == 200), (
        by_session.status_code, by_token.status_code)
    return by_session.status_code == 200


def test_P8_the_signed_in_page_lists_the_users_own_sessions(stack: Stack) -> None:
    laptop = _signed_in(stack, FIREFOX_LINUX)
    _signed_in(stack, SAFARI_IPHONE)
    _signed_in(stack, CHROME_WINDOWS, user="grace")  # someone else
    page = _home(stack, laptop)
    listed = page[page.index('id="sessions"'):]
    assert "Firefox on Linux</p>" not in listed  # marked as this device
    assert "Firefox on Linux <span class=\"current\">(this device)</span>" in listed
    assert "Safari on iPhone" in listed
    assert "Chrome on Windows" not in listed  # grace's
    assert listed.count("With Google from 127.0.0.1") == 2
    assert len(_listed_sids(page)) == 1  # the other device's; this one has the sign-out button
    assert "Sign out everywhere else" in listed


def test_P8_signing_out_another_device_ends_its_session_and_tokens(stack: Stack) -> None:
    laptop = _signed_in(stack, FIREFOX_LINUX)
    phone = _signed_in(stack, SAFARI_IPHONE)
    page = _home(stack, laptop)
    [phone_sid] = _listed_sids(page)
    ended = laptop.post(f"{stack.url}/account/sessions/end",
                        data={"_xsrf": _xsrf(page), "sid": phone_sid})
    assert ended.status_code == 303 and ended.headers["location"] == "/#sessions"
    assert not _still_signed_in(stack, phone)
    assert _still_signed_in(stack, laptop)
    after = _home(stack, laptop)
    assert "Safari on iPhone" not in after and _listed_sids(after) == []
    assert "Sign out everywhere else" not in after


def test_P8_sign_out_everywhere_else_keeps_this_browser_only(stack: Stack) -> None:
    laptop = _signed_in(stack, FIREFOX_LINUX)
    others = [_signed_in(stack, SAFARI_IPHONE), _signed_in(stack, CHROME_WINDOWS)]
    grace = _signed_in(stack, CHROME_WINDOWS, user="grace")
    page = _home(stack, laptop)
    assert len(_listed_sids(page)) == 2
    ended = laptop.post(f"{stack.url}/account/sessions/end-others",
                        data={"_xsrf": _xsrf(page)})
    assert ended.status_code == 303
    assert [_still_signed_in(stack, browser) for browser in others] == [False, False]
    assert _still_signed_in(stack, laptop)
    assert _still_signed_in(stack, grace)  # another user's sessions are not touched


def test_P8_another_users_session_cannot_be_ended_from_the_list(stack: Stack) -> None:
    laptop = _signed_in(stack, FIREFOX_LINUX)
    grace = _signed_in(stack, CHROME_WINDOWS, user="grace")
    grace_sid = _listed_sids(_home(stack, _signed_in(stack, SAFARI_IPHONE, user="grace")))[0]
    page = _home(stack, laptop)
    refused = laptop.post(f"{stack.url}/account/sessions/end",
                          data={"_xsrf": _xsrf(page), "sid": grace_sid},
                          headers={"Accept": "text/html"})
    assert refused.status_code == 404
    assert "This session has already ended." in refused.text  # the same as an ended one
    assert _still_signed_in(stack, grace)


def test_P8_ending_this_browsers_own_session_signs_it_out(stack: Stack) -> None:
    laptop = _signed_in(stack, FIREFOX_LINUX)
    phone = _signed_in(stack, SAFARI_IPHONE)
    [laptop_sid] = _listed_sids(_home(stack, phone))
    token = laptop.access_token()
    page = _home(stack, laptop)
    ended = laptop.post(f"{stack.url}/account/sessions/end",
                        data={"_xsrf": _xsrf(page), "sid": laptop_sid})
    assert ended.status_code == 303 and ended.headers["location"] == "/"
    assert not any(name.endswith(("gw_session", "gw_access")) for name in laptop.cookies)
    revoked = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401
    assert _still_signed_in(stack, phone)


def test_P8_the_session_forms_need_xsrf_and_a_session(stack: Stack) -> None:
    laptop = _signed_in(stack, FIREFOX_LINUX)
    phone = _signed_in(stack, SAFARI_IPHONE)
    [phone_sid] = _listed_sids(_home(stack, laptop))
    forged = laptop.post(f"{stack.url}/account/sessions/end", data={"sid": phone_sid})
    assert forged.status_code == 403
    assert _still_signed_in(stack, phone)

    signed_out = _signed_in(stack, CHROME_WINDOWS)
    xsrf = _xsrf(_home(stack, signed_out))
    assert signed_out.post(f"{stack.url}/logout", data={"_xsrf": xsrf}).status_code == 303
    for path, data in (("end", {"sid": phone_sid}), ("end-others", {})):
        answer = signed_out.post(f"{stack.url}/account/sessions/{path}",
                                 data={"_xsrf": xsrf, **data}, headers={"Accept": "text/html"})
        assert answer.status_code == 401, answer.status_code
        assert "Sign-in required" in answer.text and 'href="/login"' in answer.text
    assert _still_signed_in(stack, phone)

    missing = laptop.post(f"{stack.url}/account/sessions/end",
                          data={"_xsrf": _xsrf(_home(stack, laptop))},
                          headers={"Accept": "application/json"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
