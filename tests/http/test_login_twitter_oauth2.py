"""Sign in with X over OAuth 2.0 with PKCE (mode "oauth2", the default), end to end over real
HTTP against the X stand-in: its own protocol. What every provider's login shares is in
test_provider_contract.py."""

from __future__ import annotations

import httpx
import pytest
from conftest import Stack, query_of
from provider_support import assert_clear_error, callback_after_consent, x_account, x_standin

from gateway.config import load_settings
from gateway.dev.standins.common import Fault
from gateway.errors import ConfigError
from gateway.providers.twitter import identity_from_x_v2
from gateway.transactions import pkce_s256_challenge


def test_S1_S2_R4_login_redirect_carries_state_pkce_and_the_fixed_callback(stack: Stack) -> None:
    start = stack.browser().start_login(provider="twitter")
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(x_standin(stack).authorize_url + "?")
    params = {k: v[0] for k, v in query_of(location).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == x_standin(stack).client_id
    assert params["redirect_uri"] == f"{stack.url}/callback/twitter"
    assert params["scope"] == "users.read tweet.read users.email"
    assert len(params["state"]) >= 22
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert start.headers["Cache-Control"] == "no-store"


def test_S2_code_exchange_is_a_confidential_client_sending_the_pkce_verifier(
        stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="twitter")
    challenge = query_of(start.headers["location"])["code_challenge"][0]
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    form = x_standin(stack).token_requests[-1]
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == f"{stack.url}/callback/twitter"
    assert pkce_s256_challenge(form["code_verifier"]) == challenge
    # Client authentication is HTTP Basic only (the stand-in refuses the exchange without it).
    assert "client_secret" not in form and "client_id" not in form


def _code_from_consent(stack: Stack) -> str:
    """A code X issued for the gateway, taken before the gateway could use it."""
    browser = stack.browser()
    start = browser.start_login(provider="twitter")
    back = browser.consent(start.headers["location"])
    return query_of(back.headers["location"])["code"][0]


@pytest.mark.parametrize("verifier", ["x" * 64, None])
def test_S2_the_stand_in_refuses_a_code_without_the_right_verifier(stack: Stack,
                                                                   verifier: str | None) -> None:
    x = x_standin(stack)
    code = _code_from_consent(stack)
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": f"{stack.url}/callback/twitter"}
    if verifier is not None:
        form["code_verifier"] = verifier
    refused = httpx.post(x.token_url, data=form, auth=(x.client_id, x.client_secret))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_the_stand_in_refuses_a_token_request_without_basic_client_authentication(
        stack: Stack) -> None:
    x = x_standin(stack)
    code = _code_from_consent(stack)
    refused = httpx.post(x.token_url, data={
        "grant_type": "authorization_code", "code": code, "client_id": x.client_id,
        "client_secret": x.client_secret, "redirect_uri": f"{stack.url}/callback/twitter"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized_client"


def test_S2_R3_the_stand_in_requires_s256_and_never_redirects_to_an_unknown_uri(
        stack: Stack) -> None:
    x = x_standin(stack)
    location = stack.browser().start_login(provider="twitter").headers["location"]
    params = {k: v[0] for k, v in query_of(location).items()}
    for change in ({"code_challenge_method": "plain"}, {"redirect_uri": "https://evil.test/cb"},
                   {"client_id": "someone-else"}):
        page = httpx.get(x.authorize_url, params={**params, **change})
        assert page.status_code in (400, 401), change
        assert "location" not in page.headers


def test_C5_no_email_without_the_users_email_scope(make_stack) -> None:
    stack = make_stack(providers={"twitter": {"scopes": ["users.read", "tweet.read"]}})
    browser = stack.browser()
    browser.login(provider="twitter")
    claims = browser.get(f"{stack.url}/verify").json()
    assert claims["sub"] == f"twitter:{x_account('ada').id}"
    assert "email" not in claims


def test_C5_identity_from_x_v2_claims_an_email_only_when_x_confirms_one() -> None:
    confirmed = identity_from_x_v2({"id": "12", "name": "A", "confirmed_email": "a@x.test"})
    assert confirmed.profile_claims()["email"] == "a@x.test"
    assert confirmed.sub == "twitter:12"
    unconfirmed = identity_from_x_v2({"id": "12", "name": "A", "email": "a@x.test"})
    assert "email" not in unconfirmed.profile_claims()


# Every way X can fail ends in a clear page with a way to retry, never a 500.


X_OAUTH_ERROR = '{"error": "invalid_request", "error_description": "Value passed was invalid."}'
X_PROBLEM = '{"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "no"}'


@pytest.mark.parametrize(("endpoint", "fault", "status", "words"), [
    ("token", Fault(status=400, body=X_OAUTH_ERROR), 502, "refused the request"),
    ("token", Fault(status=200, body="{not json"), 502, "could not read"),
    ("token", Fault(status=200, body='{"token_type": "bearer"}'), 502, "could not use"),
    ("me", Fault(status=401, body=X_PROBLEM), 502, "refused the request"),
    ("me", Fault(status=200, body='{"errors": [{"type": "about:blank", "title": "x"}]}'), 502,
     "refused the request"),
    ("me", Fault(status=200, body='{"data": {"id": "not-a-number"}}'), 502, "could not use"),
    ("me", Fault(status=200, body="[]"), 502, "could not read"),
])
def test_x_failures_end_in_a_clear_page(make_stack, endpoint: str, fault: Fault, status: int,
                                        words: str) -> None:
    stack = make_stack()
    x_standin(stack).faults[endpoint] = fault
    answer = callback_after_consent(stack, "twitter")
    assert_clear_error(answer, "twitter", status, words)


def test_the_stand_in_answers_a_x_problem_for_an_unknown_user_field(stack: Stack) -> None:
    done = callback_after_consent(stack, "twitter")
    assert done.status_code == 302
    token = next(iter(x_standin(stack)._bearer_tokens))
    answer = httpx.get(x_standin(stack).userinfo_url, params={"user.fields": "name,shoe_size"},
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["parameters"] == {"user.fields": ["shoe_size"]}


def test_oauth2_mode_needs_the_scopes_that_read_the_user() -> None:
    base = {"issuer": "https://login.example.test", "tokens": {"keys_dir": "/tmp/k"},
            "cookies": {"secret": "k2Vq9xLmP4tR7wZs1YbN6cHd3FgJ8uTe5"},
            "providers": {"twitter": {"client_id": "c", "client_secret": "s",
                                      "scopes": ["users.email"]}}}
    with pytest.raises(ConfigError, match=r"providers\.twitter\.scopes"):
        load_settings(None, {}, base=base)


