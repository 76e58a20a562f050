"""The `[access]` policy: who may sign in (gateway/access.py), checked at the login callback,
on every forward-auth request, when /authorize reuses a session and at every refresh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from config_support import refusal, write_config
from conftest import Stack, query_of
from metrics_support import sample
from oidc_support import (
    SPA_REDIRECT_URI,
    authorization_params,
    authorize_url,
    bearer,
    complete_authorization,
    oidc_stack,
    redirect_params,
    refresh,
    tokens_for,
)
from prometheus_client import generate_latest

from gateway.access import AccessPolicy
from gateway.config import AccessSettings
from gateway.dev.standins.google import DEV_USERS
from gateway.errors import NotPermitted
from gateway.providers.google import check_hosted_domain

ADA = next(u for u in DEV_USERS if u.key == "ada")  # ada@example.com, verified
ALAN = next(u for u in DEV_USERS if u.key == "alan")  # alan@example.org, NOT verified


# ---------------------------------------------------------------------------------------------
# The rule itself


# ---------------------------------------------------------------------------------------------
# Where it is enforced, end to end


def _logins(stack: Stack, outcome: str) -> float:
    text = generate_latest(stack.ctx.metrics.registry).decode()
    return sample(text, "gateway_logins_total", provider="google", outcome=outcome)


def test_a_user_outside_the_policy_gets_a_clear_403_and_no_session(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(access={"email_domains": ["example.org"]})
    browser = stack.browser()
    refused = browser.login(f"{stack.url}/", user="ada")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "not allowed to sign in" in refused.text
    assert 'href="/login/google' in refused.text and "Sign in with another account" in refused.text
    assert not any(name.endswith(("gw_session", "gw_access")) for name in browser.cookies)
    assert httpx.get(f"{stack.url}/auth", cookies=browser.cookies).status_code == 401
    assert _logins(stack, "not_permitted") == 1 and _logins(stack, "success") == 0


def test_C5_an_unverified_email_never_passes_the_domain_rule(
        make_stack: Callable[..., Stack]) -> None:
    """Alan's Google account says alan@example.org without email_verified: not admitted by
    the example.org rule, though the address is there."""
    stack = make_stack(access={"email_domains": ["example.org"]})
    assert ALAN.email == "alan@example.org" and not ALAN.email_verified
    assert stack.browser().login(user="alan").status_code == 403


def test_users_inside_the_policy_sign_in_as_before(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(access={"email_domains": ["example.com"],
                               "subjects": [f"google:{ALAN.sub}"]})
    for user in ("ada", "alan"):  # by verified email domain, and by subject
        browser = stack.browser()
        assert browser.login(f"{stack.url}/", user=user).status_code == 302
        assert httpx.get(f"{stack.url}/auth", cookies=browser.cookies).status_code == 200
    assert _logins(stack, "success") == 2


def test_forward_auth_refuses_a_session_the_narrowed_policy_no_longer_admits(
        make_stack: Callable[..., Stack]) -> None:
    """A policy narrowed after sign-in (a restart with a shared store) applies at once."""
    stack = make_stack()
    browser = stack.browser()
    browser.login(f"{stack.url}/")
    session_only = {k: v for k, v in browser.cookies.items() if k.endswith("gw_session")}
    assert httpx.get(f"{stack.url}/auth", cookies=browser.cookies).status_code == 200
    stack.ctx.access = AccessPolicy.from_settings(AccessSettings(emails=("grace@example.com",)))
    for cookies in (browser.cookies, session_only):  # by access token, and by session
        refused = httpx.get(f"{stack.url}/auth", cookies=cookies,
                            headers={"Accept": "application/json"})
        assert refused.status_code == 403
        assert refused.json()["error"] == "access_denied"
        assert "X-Auth-Request-User" not in refused.headers


def test_forward_auth_takes_an_apps_token_whose_scope_withheld_the_email(
        make_stack: Callable[..., Stack]) -> None:
    """An app's access token for scope "openid profile" carries no email: it was checked at its
    login, so /auth does not refuse it for want of one; with the email scope it is judged."""
    stack = oidc_stack(make_stack, access={"email_domains": ["example.com"]},
                       forward_auth={"audiences": ["https://api.example.test"]})
    without_email = tokens_for(stack, scope="openid profile")["access_token"]
    with_email = tokens_for(stack, scope="openid email")["access_token"]
    for token in (without_email, with_email):
        assert httpx.get(f"{stack.url}/auth", headers=bearer(token)).status_code == 200
    stack.ctx.access = AccessPolicy.from_settings(AccessSettings(email_domains=("example.org",)))
    assert httpx.get(f"{stack.url}/auth", headers=bearer(without_email)).status_code == 200
    assert httpx.get(f"{stack.url}/auth", headers=bearer(with_email)).status_code == 403


def test_oidc_authorize_refuses_back_to_the_app_and_refresh_ends_the_family(
        make_stack: Callable[..., Stack]) -> None:
    stack = oidc_stack(make_stack)
    browser = stack.browser()
    tokens = tokens_for(stack, browser)
    stack.ctx.access = AccessPolicy.from_settings(AccessSettings(email_domains=("example.org",)))
    # Single sign-on with Ada's live session: refused to the app, as RFC 6749 4.1.2.1 says.
    answer = complete_authorization(browser, authorize_url(stack, **authorization_params()))
    params = redirect_params(answer)
    assert params["error"] == "access_denied" and "code" not in params
    assert params["state"] == "st-123" and params["iss"] == stack.url
    # Her refresh token: refused, and the family is revoked (a later, wider policy does not
    # bring it back).
    refused = refresh(stack, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    stack.ctx.access = AccessPolicy()
    assert refresh(stack, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_an_oidc_login_outside_the_policy_goes_back_to_the_app_with_access_denied(
        make_stack: Callable[..., Stack]) -> None:
    """OIDC Core 3.1.2.6: the app learns the outcome at its redirect_uri, with its state."""
    stack = oidc_stack(make_stack, access={"emails": ["grace@example.com"]})
    browser = stack.browser()
    answer = browser.get(authorize_url(stack, **authorization_params()))
    assert answer.status_code == 302
    start = browser.get(f"{stack.url}/login/google?"
                        + httpx.URL(answer.headers["location"]).query.decode())
    back = browser.consent(start.headers["location"], user="ada")
    callback = browser.get(back.headers["location"])
    params = redirect_params(callback)
    assert callback.headers["location"].startswith(SPA_REDIRECT_URI)
    assert params["error"] == "access_denied" and "code" not in params
    assert params["state"] == "st-123" and params["iss"] == stack.url
    assert not any(name.endswith(("gw_session", "gw_access")) for name in browser.cookies)
    assert _logins(stack, "not_permitted") == 1
    # Grace, listed, goes through the same flow to a code.
    answer = complete_authorization(stack.browser(), authorize_url(
        stack, **authorization_params()), user="grace")
    assert "code" in redirect_params(answer)


# ---------------------------------------------------------------------------------------------
# Google's hosted domains: an organization's accounts only (the id_token's `hd` claim)

GRACE = next(u for u in DEV_USERS if u.key == "grace")  # personal account, verified example.com


@pytest.mark.parametrize(("claims", "passes"), [
    ({"hd": "example.com"}, True),
    ({"hd": "EXAMPLE.com"}, True),
    ({"hd": "other.example"}, False),
    ({"hd": "sub.example.com"}, False),
    ({"hd": ["example.com"]}, False),
    ({"email": "ada@example.com", "email_verified": True}, False),  # no hd: a personal account
    ({}, False),
])
def test_hosted_domains_admit_only_the_organizations_accounts(claims: dict[str, Any],
                                                              passes: bool) -> None:
    check = lambda: check_hosted_domain({"sub": "1", **claims}, ("example.com",))  # noqa: E731
    if passes:
        check()
    else:
        with pytest.raises(NotPermitted):
            check()
    check_hosted_domain({"sub": "1", **claims}, ())  # not set: any Google account


def test_a_personal_google_account_with_the_domains_email_is_refused(
        make_stack: Callable[..., Stack]) -> None:
    """Grace's personal Google account has a verified grace@example.com (as one kept by a
    former employee would): [access] email_domains admits her, hosted_domains does not."""
    stack = make_stack(providers={"google": {"hosted_domains": ["example.com"]}})
    assert GRACE.email == "grace@example.com" and GRACE.email_verified
    assert GRACE.hosted_domain is None and ADA.hosted_domain == "example.com"
    browser = stack.browser()
    start = browser.start_login()
    assert query_of(start.headers["location"])["hd"] == ["example.com"]  # the chooser's hint
    back = browser.consent(start.headers["location"], user="grace")
    refused = browser.get(back.headers["location"])
    assert refused.status_code == 403 and "Sign in with another account" in refused.text
    assert _logins(stack, "not_permitted") == 1
    assert stack.browser().login(user="ada").status_code == 302


def test_several_hosted_domains_hint_any_organization_account(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(providers={"google": {"hosted_domains": ["example.com", "example.net"]}})
    start = stack.browser().start_login()
    assert query_of(start.headers["location"])["hd"] == ["*"]


def test_no_hosted_domain_hint_by_default(stack: Stack) -> None:
    assert "hd" not in query_of(stack.browser().start_login().headers["location"])


def test_a_hosted_domain_must_be_a_domain(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"providers.google.hosted_domains": ["@example.com"]})
    assert refusal(path).key == "providers.google.hosted_domains[0]"
