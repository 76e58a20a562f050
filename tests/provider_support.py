"""What the login tests of every provider share: going through a provider's consent page, and
what a failed login must look like (a clear page with a way to retry, never a 500)."""

from __future__ import annotations

import httpx
from conftest import Stack

from gateway.dev.standins.x import DEV_USERS as X_USERS
from gateway.dev.standins.x import XAccount, XStandIn


def callback_after_consent(stack: Stack, provider: str = "google", user: str = "ada",
                           accept: str = "text/html") -> httpx.Response:
    """The gateway's answer to the callback after `user` said yes at the provider."""
    browser = stack.browser()
    start = browser.start_login(provider=provider)
    back = browser.consent(start.headers["location"], user=user)
    return browser.get(back.headers["location"], headers={"Accept": accept})


def assert_clear_error(answer: httpx.Response, provider: str, status: int | tuple[int, ...],
                       words: str) -> None:
    """A page (not a redirect) that says `words`, offers to retry the login at `provider`,
    shows no traceback nor what the provider said (tests plant "canary" there), and signs
    nobody in."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in statuses, answer.text
    assert "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/html")
    assert words in answer.text
    assert "Try again" in answer.text and f'href="/login/{provider}' in answer.text
    assert "Traceback" not in answer.text and "canary" not in answer.text
    assert not any(n.endswith("gw_access") for n in answer.cookies)


def x_standin(stack: Stack) -> XStandIn:
    """The X stand-in of a stack (either protocol)."""
    standin = stack.standin("twitter")
    assert isinstance(standin, XStandIn)
    return standin


def x_account(key: str) -> XAccount:
    return next(a for a in X_USERS if a.key == key)

