"""The GitHub stand-in speaks GitHub's wire protocol, so that what the connector is tested
against is GitHub's behaviour: the token endpoint's two answer formats and its errors as HTTP
200, PKCE, the redirect URI rules, and the REST API's demands (a token, a User-Agent, the
emails scope)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx
import pytest
from conftest import Stack, query_of

from gateway.dev.standins.github import GitHubStandIn, redirect_uri_matches


def github(stack: Stack) -> GitHubStandIn:
    standin = stack.standin("github")
    assert isinstance(standin, GitHubStandIn)
    return standin


def fresh_code(stack: Stack, user: str = "ada") -> tuple[str, str]:
    """A code GitHub issued for the gateway (taken before the gateway used it) and the
    authorization request's URL."""
    browser = stack.browser()
    start = browser.start_login(provider="github")
    back = browser.consent(start.headers["location"], user=user)
    return query_of(back.headers["location"])["code"][0], start.headers["location"]


def token_after_login(stack: Stack) -> str:
    assert stack.browser().login(provider="github").status_code == 302
    return next(iter(github(stack)._access_tokens))


def exchange(stack: Stack, issued: str, accept: str | None, **changes: str) -> httpx.Response:
    g = github(stack)
    form = {"client_id": g.client_id, "client_secret": g.client_secret, "code": issued,
            **changes}
    headers = {"Accept": accept} if accept else {}
    return httpx.post(g.token_url, data=form, headers=headers)


def test_the_token_endpoint_answers_json_only_when_asked(stack: Stack) -> None:
    g = github(stack)
    # A request without PKCE (GitHub does not require it), approved as the chooser would.
    request = g.check_authorization_request({"client_id": g.client_id,
                                             "scope": "read:user user:email"})
    account = g.account("ada")
    assert account is not None
    as_json = exchange(stack, g.approve(request, account), "application/json")
    assert as_json.status_code == 200
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json()["token_type"] == "bearer"
    assert as_json.json()["scope"] == "read:user,user:email"
    as_form = exchange(stack, g.approve(request, account), None)
    assert as_form.status_code == 200
    assert as_form.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = dict(parse_qsl(as_form.text, strict_parsing=True))
    assert set(form) == {"access_token", "token_type", "scope"}
    assert form["access_token"].startswith("gho_") and form["scope"] == "read:user,user:email"
    assert "%2C" in as_form.text  # the comma is encoded, as GitHub's


@pytest.mark.parametrize("accept", ["application/json", None])
@pytest.mark.parametrize(("change", "error"), [
    ({"client_secret": "wrong"}, "incorrect_client_credentials"),
    ({"client_id": "Ov23liSomeoneElse000"}, "incorrect_client_credentials"),
    ({"code": "0" * 20}, "bad_verification_code"),
    ({"code_verifier": "v" * 43}, "bad_verification_code"),
    ({}, "bad_verification_code"),  # the request had a challenge: the verifier is required
    ({"redirect_uri": "http://127.0.0.1:1/callback/github"}, "redirect_uri_mismatch"),
])
def test_refusals_are_http_200_with_an_error(stack: Stack, accept: str | None,
                                             change: dict[str, str], error: str) -> None:
    code, _ = fresh_code(stack)
    answer = exchange(stack, code, accept, **change)
    assert answer.status_code == 200
    body = answer.json() if accept else dict(parse_qsl(answer.text))
    assert body["error"] == error
    assert body["error_uri"].startswith("https://docs.github.com/")
    assert "access_token" not in body


def test_the_right_verifier_gets_a_token_once(stack: Stack) -> None:
    """The gateway's own exchange, replayed: the code is spent."""
    browser = stack.browser()
    assert browser.login(provider="github").status_code == 302
    sent = github(stack).token_requests[-1].form
    replay = exchange(stack, sent["code"], "application/json",
                      code_verifier=sent["code_verifier"], redirect_uri=sent["redirect_uri"])
    assert replay.json()["error"] == "bad_verification_code"


def test_the_api_needs_a_user_agent_a_token_and_a_known_version(stack: Stack) -> None:
    token = token_after_login(stack)
    user_url = f"{github(stack).api_url}/user"
    bearer = {"Authorization": f"Bearer {token}"}
    no_agent = httpx.get(user_url, headers={**bearer, "User-Agent": ""})
    assert no_agent.status_code == 403 and "User-Agent" in no_agent.text
    assert httpx.get(user_url).status_code == 401
    wrong = httpx.get(user_url, headers={"Authorization": "Bearer gho_" + "x" * 36})
    assert wrong.status_code == 401 and wrong.json()["message"] == "Bad credentials"
    old = httpx.get(user_url, headers={**bearer, "X-GitHub-Api-Version": "2019-01-01"})
    assert old.status_code == 400
    for scheme in ("Bearer", "token"):
        ok = httpx.get(user_url, headers={"Authorization": f"{scheme} {token}",
                                          "X-GitHub-Api-Version": "2022-11-28"})
        assert ok.status_code == 200 and isinstance(ok.json()["id"], int)
        assert ok.headers["X-OAuth-Scopes"] == "read:user, user:email"


def test_the_emails_need_the_scope_and_come_in_pages(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    token = token_after_login(stack)
    emails_url = f"{github(stack).api_url}/user/emails"
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(emails_url, headers=headers).json() == [
        {"email": "ada@example.com", "primary": True, "verified": True, "visibility": "public"}]
    stack = make_stack(providers={"github": {"scopes": ["read:user"]}})
    margaret = stack.browser().login(user="margaret", provider="github")
    assert margaret.status_code == 302
    token = next(iter(github(stack)._access_tokens))
    headers = {"Authorization": f"Bearer {token}"}
    emails_url = f"{github(stack).api_url}/user/emails"
    assert httpx.get(emails_url, headers=headers).status_code == 404
    grants = github(stack)._access_tokens
    grants[token] = dataclasses.replace(grants[token], scope=frozenset({"user"}))
    first = httpx.get(emails_url, params={"per_page": "1"}, headers=headers)
    assert len(first.json()) == 1
    assert first.headers["Link"] == f'<{emails_url}?page=2>; rel="next"'
    second = httpx.get(emails_url, params={"per_page": "1", "page": "2"}, headers=headers)
    assert len(second.json()) == 1 and "Link" not in second.headers
    assert first.json() != second.json()


def test_R3_the_github_stand_in_never_redirects_to_an_unregistered_uri(
        stack: Stack) -> None:
    g = github(stack)
    _, location = fresh_code(stack)
    params = {k: v[0] for k, v in query_of(location).items()}
    unknown = httpx.get(g.authorize_url, params={**params, "client_id": "Ov23liUnknown0000000"})
    assert unknown.status_code == 404 and "location" not in unknown.headers
    plain = httpx.get(g.authorize_url, params={**params, "code_challenge_method": "plain"})
    assert plain.status_code == 400 and "location" not in plain.headers
    elsewhere = httpx.get(g.authorize_url,
                          params={**params, "redirect_uri": "https://evil.test/callback/github"})
    assert elsewhere.status_code == 302
    back = elsewhere.headers["location"]
    assert back.startswith(g.callback_url + "?")  # the registered URL, with GitHub's error
    assert query_of(back)["error"] == ["redirect_uri_mismatch"]
    assert query_of(back)["state"] == [params["state"]]


@pytest.mark.parametrize(("given", "matches"), [
    ("https://login.example.test/callback/github", True),
    ("https://login.example.test/callback/github/deeper", True),
    ("https://login.example.test/callback/githubx", False),
    ("https://login.example.test/callback", False),
    ("https://login.example.test/callback/github/../../admin", False),
    ("https://login.example.test:8443/callback/github", False),
    ("http://login.example.test/callback/github", False),
    ("https://evil.login.example.test/callback/github", False),
])
def test_githubs_redirect_uri_rule(given: str, matches: bool) -> None:
    """The host and port of the callback URL, its path or a subdirectory of it."""
    assert redirect_uri_matches("https://login.example.test/callback/github", given) is matches
