"""GitHub's protocol logic as plain functions (the token answer, the user id, the primary
verified address, the identity) and the `[providers.github]` configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_support import refusal, write_config, write_secret

from gateway.config import load_settings
from gateway.errors import UpstreamError
from gateway.providers.github import (
    github_user_id,
    identity_from_github,
    primary_verified_email,
    token_of,
)

AVATAR = "https://avatars.githubusercontent.com/u/583231?v=4"
USER: dict[str, Any] = {"login": "octocat", "id": 583231, "name": "The Octocat",
                        "email": "octocat@github.com", "avatar_url": AVATAR}
PRIMARY = {"email": "octocat@github.com", "primary": True, "verified": True,
           "visibility": "public"}
OTHER = {"email": "octo@example.org", "primary": False, "verified": True, "visibility": None}


# ---------------------------------------------------------------------------------------------
# The token answer


def test_a_json_answer_gives_the_token_and_the_granted_scopes() -> None:
    token, scopes = token_of({"access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                              "scope": "read:user,user:email", "token_type": "bearer"})
    assert token == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    assert scopes == {"read:user", "user:email"}


def test_a_form_answer_decoded_reads_the_same() -> None:
    """`access_token=gho_...&scope=repo%2Cgist&token_type=bearer`, as parse_qsl gives it."""
    assert token_of({"access_token": "gho_abc", "scope": "repo,gist",
                     "token_type": "bearer"}) == ("gho_abc", {"repo", "gist"})


def test_a_user_may_grant_less_or_nothing_and_an_unsaid_scope_is_none() -> None:
    assert token_of({"access_token": "gho_a", "scope": ""}) == ("gho_a", frozenset())
    assert token_of({"access_token": "gho_a", "scope": "read:user"})[1] == {"read:user"}
    assert token_of({"access_token": "gho_a"})[1] is None


@pytest.mark.parametrize("answer", [
    {"error": "bad_verification_code", "error_description": "The code passed is incorrect."},
    {"error": "incorrect_client_credentials", "access_token": "gho_a"},
    {"error": ""},
    {"error": {"nested": True}},
])
def test_an_error_member_is_a_refusal_whatever_else_is_there(answer: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as refused:
        token_of(answer)
    assert refused.value.provider == "github" and refused.value.upstream_status == 200
    assert "refused" in refused.value.description
    assert "passed" not in refused.value.log_detail  # the description is never logged


def test_the_error_code_is_logged_only_when_it_is_a_plain_word() -> None:
    with pytest.raises(UpstreamError) as plain:
        token_of({"error": "bad_verification_code"})
    assert plain.value.log_detail == "token: HTTP 200 error=bad_verification_code"
    with pytest.raises(UpstreamError) as odd:
        token_of({"error": "x\r\nforged: line"})
    assert odd.value.log_detail == "token: HTTP 200 error=unreadable"


@pytest.mark.parametrize("answer", [
    {}, {"access_token": ""}, {"access_token": None}, {"access_token": 42},
    {"access_token": "gho a"}, {"access_token": "gho_a\r\nX-Evil: 1"},
    {"access_token": "gho_" + "a" * 2048}, {"access_token": "gho_a", "token_type": "mac"},
    {"access_token": "gho_a", "token_type": None}, {"access_token": "gho_a", "scope": ["user"]},
])
def test_an_answer_without_a_usable_bearer_token_is_refused(answer: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        token_of(answer)


# ---------------------------------------------------------------------------------------------
# SECURITY C7: the subject and the email


@pytest.mark.parametrize("value", [None, "583231", 0, -1, 1.0, True, 2**53, [1], "octocat"])
def test_C7_github_only_a_positive_integer_id_is_a_subject(value: Any) -> None:
    with pytest.raises(UpstreamError):
        github_user_id(value)
    assert github_user_id(583231) == "583231"


def test_C7_github_the_subject_is_the_id_never_the_login() -> None:
    identity = identity_from_github(USER, [PRIMARY])
    assert identity.sub == "github:583231"
    assert identity_from_github({**USER, "login": "renamed"}, [PRIMARY]).sub == identity.sub


def test_C7_github_only_the_primary_verified_address_counts() -> None:
    assert primary_verified_email([OTHER, PRIMARY]) == "octocat@github.com"
    # An unverified primary address: no email, even with another verified one.
    assert primary_verified_email([{**PRIMARY, "verified": False}, OTHER]) is None
    # A verified address that is not primary: no email.
    assert primary_verified_email([OTHER]) is None


@pytest.mark.parametrize("emails", [
    None,  # the emails scope was not granted
    [],
    [{**PRIMARY, "verified": "true"}],
    [{**PRIMARY, "primary": "true"}],
    [{**PRIMARY, "verified": 1}],
    [PRIMARY, {**OTHER, "primary": True}],  # two primaries: which one?
    [{**PRIMARY, "email": ""}],
    [{**PRIMARY, "email": None}],
    [{**PRIMARY, "email": "not-an-address"}],
    ["octocat@github.com", None, 42],
], ids=repr)
def test_C7_github_anything_else_is_no_email(emails: list[Any] | None) -> None:
    assert primary_verified_email(emails) is None


def test_C7_github_the_public_profile_email_is_never_claimed() -> None:
    """`/user`'s `email` is the public profile address, which GitHub does not vouch for."""
    assert USER["email"] == "octocat@github.com"
    for emails in (None, [], [{**PRIMARY, "verified": False}]):
        identity = identity_from_github(USER, emails)
        assert identity.email is None and identity.email_verified is False
        assert "email" not in identity.profile_claims()


def test_a_full_answer_becomes_an_identity() -> None:
    identity = identity_from_github(USER, [OTHER, PRIMARY])
    assert identity.profile_claims() == {
        "idp": "github", "email": "octocat@github.com", "email_verified": True,
        "name": "The Octocat", "picture": AVATAR}


@pytest.mark.parametrize("name", [None, "", 42])
def test_without_a_name_the_login_is_the_name(name: Any) -> None:
    assert identity_from_github({**USER, "name": name}, None).name == "octocat"
    assert identity_from_github({"id": 1, "name": name}, None).name is None


# ---------------------------------------------------------------------------------------------
# Configuration


GITHUB = "providers.github"


def test_the_defaults_are_githubs_endpoints_and_the_least_scopes(tmp_path: Path) -> None:
    secret = write_secret(tmp_path, "github-secret", "github-secret-canary-8Jt3Wq")
    settings = load_settings(write_config(tmp_path, {
        f"{GITHUB}.client_id": "Ov23liAbCdEfGh123456",
        f"{GITHUB}.client_secret_file": str(secret)}), {})
    github = settings.providers.github
    assert github is not None
    assert github.client_secret.reveal() == "github-secret-canary-8Jt3Wq"
    assert github.authorize_url == "https://github.com/login/oauth/authorize"
    assert github.token_url == "https://github.com/login/oauth/access_token"
    assert github.api_url == "https://api.github.com"
    assert github.scopes == ("read:user", "user:email")


@pytest.mark.parametrize(("changes", "key"), [
    ({"client_secret": "s"}, f"{GITHUB}.client_id"),
    ({"client_id": "c"}, f"{GITHUB}.client_secret"),
    ({"client_id": "c", "client_secret": "s", "api_url": "https://api.github.com/?x=1"},
     f"{GITHUB}.api_url"),
    ({"client_id": "c", "client_secret": "s", "api_url": "http://api.github.com"},
     f"{GITHUB}.api_url"),
    ({"client_id": "c", "client_secret": "s", "scopes": ["read:user user:email"]},
     f"{GITHUB}.scopes[0]"),
    ({"client_id": "c", "client_secret": "s", "scopes": ["read:user,user:email"]},
     f"{GITHUB}.scopes[0]"),
    ({"client_id": "c", "client_secret": "s", "userinfo_url": "https://api.github.com/user"},
     f"{GITHUB}.userinfo_url"),
])
def test_a_wrong_github_section_is_refused_naming_the_key(tmp_path: Path,
                                                           changes: dict[str, Any],
                                                           key: str) -> None:
    error = refusal(write_config(tmp_path, {f"{GITHUB}.{k}": v for k, v in changes.items()}))
    assert error.key == key
