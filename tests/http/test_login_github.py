"""Sign in with GitHub, end to end over real HTTP against the GitHub stand-in: its own protocol
(the authorization request, the code exchange and its two answer formats, errors as HTTP 200,
the REST API calls) and SECURITY C7's traps. What every provider's login shares is in
test_provider_contract.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Stack, query_of
from provider_support import assert_clear_error, callback_after_consent

from gateway.dev.standins.common import Fault
from gateway.dev.standins.github import DEV_USERS, GitHubAccount, GitHubStandIn
from gateway.transactions import pkce_s256_challenge


def github(stack: Stack) -> GitHubStandIn:
    standin = stack.standin("github")
    assert isinstance(standin, GitHubStandIn)
    return standin


def account(key: str) -> GitHubAccount:
    return next(a for a in DEV_USERS if a.key == key)


def claims_after_login(stack: Stack, user: str) -> dict[str, Any]:
    browser = stack.browser()
    done = browser.login(user=user, provider="github")
    assert done.status_code == 302, done.text
    claims: dict[str, Any] = browser.get(f"{stack.url}/verify").json()
    return claims


# ---------------------------------------------------------------------------------------------
# The protocol


def test_S1_S2_R4_login_redirect_carries_state_pkce_scopes_and_the_fixed_callback(
        stack: Stack) -> None:
    start = stack.browser().start_login(provider="github")
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(github(stack).authorize_url + "?")
    params = {k: v[0] for k, v in query_of(location).items()}
    assert params["client_id"] == github(stack).client_id
    assert params["redirect_uri"] == f"{stack.url}/callback/github"
    assert params["scope"] == "read:user user:email"  # GitHub's are space-delimited
    assert len(params["state"]) >= 22
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert start.headers["Cache-Control"] == "no-store"


def test_S2_the_code_exchange_posts_a_form_with_the_verifier_and_asks_for_json(
        stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="github")
    challenge = query_of(start.headers["location"])["code_challenge"][0]
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    received = github(stack).token_requests[-1]
    assert received.accept == "application/json"
    form = received.form
    assert set(form) == {"client_id", "client_secret", "code", "redirect_uri", "code_verifier"}
    assert form["client_id"] == github(stack).client_id
    assert form["code"] == query_of(back.headers["location"])["code"][0]
    assert form["redirect_uri"] == f"{stack.url}/callback/github"
    assert pkce_s256_challenge(form["code_verifier"]) == challenge


def test_the_api_is_called_as_github_asks(stack: Stack) -> None:
    """Bearer token, GitHub's media type and API version, a User-Agent (GitHub refuses a
    request without one), the emails' largest page."""
    claims_after_login(stack, "ada")
    calls = github(stack).api_requests
    assert [c.path for c in calls] == ["/api/v3/user", "/api/v3/user/emails"]
    for call in calls:
        assert call.authorization_scheme == "Bearer"
        assert call.accept == "application/vnd.github+json"
        assert call.api_version == "2022-11-28"
        assert call.user_agent and call.user_agent.startswith("oauth-gateway/")
    assert calls[1].query == {"per_page": "100"}


def test_a_form_encoded_token_answer_is_read_as_well(make_stack: Callable[..., Stack]) -> None:
    """GitHub answers `access_token=...&scope=...&token_type=bearer` to a client whose Accept
    it did not see: the same login, the same claims."""
    stack = make_stack()
    github(stack).form_answers = True
    claims = claims_after_login(stack, "ada")
    assert claims["sub"] == f"github:{account('ada').id}"
    assert claims["email"] == "ada@example.com" and claims["email_verified"] is True
    assert github(stack).calls["emails"] == 1  # the form's comma-separated scope was read


@pytest.mark.parametrize("form_answers", [False, True], ids=["json", "form"])
def test_a_refusal_in_a_200_answer_is_a_refusal(make_stack: Callable[..., Stack], logs: Any,
                                                form_answers: bool) -> None:
    """GitHub answers a wrong client secret with HTTP 200 and `error`: a clear 502 page that
    says the provider refused, the error code in the log, no API call, no sign-in."""
    stack = make_stack(providers={"github": {"client_secret": "not-the-apps-secret-0123"}})
    github(stack).form_answers = form_answers
    answer = callback_after_consent(stack, "github")
    assert_clear_error(answer, "github", 502, "refused the request")
    assert "error=incorrect_client_credentials" in "\n".join(logs.lines)
    assert github(stack).calls["user"] == 0


def test_the_stand_in_spends_a_code_even_on_a_failed_exchange(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="github")
    code = query_of(browser.consent(start.headers["location"]).headers["location"])["code"][0]
    g = github(stack)
    form = {"client_id": g.client_id, "client_secret": g.client_secret, "code": code}
    first = httpx.post(g.token_url, data=form, headers={"Accept": "application/json"})
    assert first.status_code == 200 and first.json()["error"] == "bad_verification_code"
    # The first use failed its PKCE check, and the code is gone all the same.
    second = httpx.post(g.token_url, data=form, headers={"Accept": "application/json"})
    assert second.json()["error"] == "bad_verification_code"


# Every way GitHub's answers can be unusable ends in a clear page, never a 500.

UNUSABLE_TOKEN = "could not be verified"


@pytest.mark.parametrize(("endpoint", "fault", "words"), [
    ("token", Fault(status=200, body="{}"), UNUSABLE_TOKEN),
    ("token", Fault(status=200, body='{"access_token": "", "token_type": "bearer"}'),
     UNUSABLE_TOKEN),
    ("token", Fault(status=200, body='{"access_token": "gho_a\\r\\nX-Evil: 1"}'),
     UNUSABLE_TOKEN),
    ("token", Fault(status=200, body='{"access_token": "gho_a", "token_type": "mac"}'),
     UNUSABLE_TOKEN),
    ("token", Fault(status=200, body='{"access_token": "gho_a", "scope": ["user"]}'),
     UNUSABLE_TOKEN),
    ("token", Fault(status=200, body='{"error": "<b>canary</b>"}'), "refused the request"),
    ("token", Fault(status=200, body="error=bad_verification_code&error_description=canary",
                    content_type="application/x-www-form-urlencoded"), "refused the request"),
    ("token", Fault(status=200, body="access_token=a&access_token=b",
                    content_type="application/x-www-form-urlencoded"), "could not read"),
    ("token", Fault(status=200, body="<html>canary</html>", content_type="text/html"),
     "could not read"),
    ("user", Fault(status=200, body='{"login": "ada"}'), UNUSABLE_TOKEN),
    ("user", Fault(status=200, body='{"id": "583231", "login": "ada"}'), UNUSABLE_TOKEN),
    ("user", Fault(status=200, body='{"id": true}'), UNUSABLE_TOKEN),
    ("user", Fault(status=200, body='{"id": -1}'), UNUSABLE_TOKEN),
    ("user", Fault(status=200, body='{"id": 1.5}'), UNUSABLE_TOKEN),
    ("user", Fault(status=200, body="[]"), "could not read"),
    ("user", Fault(status=401, body='{"message": "Bad credentials canary"}'),
     "refused the request"),
    ("emails", Fault(status=200, body='{"message": "canary"}'), "could not read"),
    ("emails", Fault(status=404, body='{"message": "Not Found"}'), "refused the request"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unusable_github_answers_end_in_a_clear_page(make_stack: Callable[..., Stack],
                                                     endpoint: str, fault: Fault,
                                                     words: str) -> None:
    stack = make_stack()
    github(stack).faults[endpoint] = fault
    answer = callback_after_consent(stack, "github")
    assert_clear_error(answer, "github", 502, words)


def test_odd_email_lists_give_no_email_but_a_login(make_stack: Callable[..., Stack]) -> None:
    """Entries that are not objects, or not `true` but "true": no verified address."""
    stack = make_stack()
    github(stack).faults["emails"] = Fault(status=200, body=(
        '["ada@example.com", {"email": "ada@example.com", "primary": "true", '
        '"verified": "true"}, null]'))
    claims = claims_after_login(stack, "ada")
    assert claims["sub"] == f"github:{account('ada').id}"
    assert "email" not in claims


# ---------------------------------------------------------------------------------------------
# SECURITY C7: GitHub's verified email and stable id


def test_C7_github_a_primary_verified_address_is_the_email_and_admitted(
        make_stack: Callable[..., Stack]) -> None:
    """The rule's positive side: Ada's primary, verified address passes an email_domains
    policy; Grace's too, though her profile shows no public email (`/user` says null)."""
    stack = make_stack(access={"email_domains": ["example.com"]})
    assert account("grace").public_email is None
    for user in ("ada", "grace"):
        claims = claims_after_login(stack, user)
        assert claims["email"] == f"{user}@example.com" and claims["email_verified"] is True


def test_C7_github_an_unverified_primary_address_is_not_admitted(
        make_stack: Callable[..., Stack]) -> None:
    """Alan's only address, alan@example.org, is his primary one but GitHub has not verified
    it: the example.org policy refuses him, and without a policy he has no email claim."""
    alan = account("alan")
    assert [(e.email, e.primary, e.verified) for e in alan.emails] == [
        ("alan@example.org", True, False)]
    refused = make_stack(access={"email_domains": ["example.org"]}).browser().login(
        user="alan", provider="github")
    assert refused.status_code == 403 and "not allowed to sign in" in refused.text
    claims = claims_after_login(make_stack(), "alan")
    assert claims["sub"] == f"github:{alan.id}" and "email" not in claims


def test_C7_github_a_verified_address_that_is_not_primary_is_not_admitted(
        make_stack: Callable[..., Stack]) -> None:
    """Margaret's example.org address is verified, listed first, and her public profile
    email; but her primary address is at example.net. The example.org policy refuses her;
    the example.net one admits her, with the primary address as her email."""
    margaret = account("margaret")
    assert margaret.public_email == "margaret@example.org"
    assert margaret.emails[0].email == "margaret@example.org"
    assert margaret.emails[0].verified and not margaret.emails[0].primary
    refused = make_stack(access={"email_domains": ["example.org"]}).browser().login(
        user="margaret", provider="github")
    assert refused.status_code == 403
    claims = claims_after_login(make_stack(access={"email_domains": ["example.net"]}),
                                "margaret")
    assert claims["email"] == "margaret@example.net"


def test_C7_github_the_public_profile_email_is_never_taken_as_verified(
        make_stack: Callable[..., Stack]) -> None:
    """Without the user:email scope the gateway cannot see which address is verified: Ada's
    public `/user` email (ada@example.com) is not claimed, and the example.com policy does
    not admit her; /user/emails is not even asked."""
    stack = make_stack(providers={"github": {"scopes": ["read:user"]}},
                       access={"email_domains": ["example.com"]})
    assert account("ada").public_email == "ada@example.com"
    refused = stack.browser().login(user="ada", provider="github")
    assert refused.status_code == 403
    assert github(stack).calls["user"] == 1 and github(stack).calls["emails"] == 0
    claims = claims_after_login(make_stack(providers={"github": {"scopes": ["read:user"]}}),
                                "ada")
    assert claims["name"] == "Ada Lovelace" and "email" not in claims


def test_C7_github_the_subject_is_the_numeric_id_and_survives_a_renamed_login(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    ada = account("ada")
    before = claims_after_login(stack, "ada")
    assert before["sub"] == f"github:{ada.id}"
    renamed = dataclasses.replace(ada, login="ada-lovelace-1815")
    github(stack).accounts = [renamed if a.key == "ada" else a for a in DEV_USERS]
    after = claims_after_login(stack, "ada")
    assert after["sub"] == before["sub"]
    assert "ada" not in after["sub"]


def test_a_github_user_without_a_name_is_named_by_login(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    github(stack).accounts = [dataclasses.replace(a, name=None) for a in DEV_USERS]
    claims = claims_after_login(stack, "grace")
    assert claims["name"] == "grace"
