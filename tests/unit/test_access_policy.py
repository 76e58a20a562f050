"""The [access] policy's rule (gateway/access.py): who may sign in by verified email domain,
verified email or subject, and the entries refused at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_support import refusal, write_config

from gateway.access import AccessPolicy
from gateway.config import AccessSettings, load_settings

VERIFIED_ADA = {"email": "ada@example.com", "email_verified": True}


# ---------------------------------------------------------------------------------------------
# The rule itself


def test_with_nothing_listed_anyone_may_sign_in() -> None:
    policy = AccessPolicy()
    assert not policy.restricts
    assert policy.allows("twitter:1", {})
    assert policy.allows("google:1", {"email": "x@evil.example", "email_verified": False})


@pytest.mark.parametrize(("claims", "allowed"), [
    (VERIFIED_ADA, True),
    ({"email": "Ada@EXAMPLE.com", "email_verified": True}, True),  # domains have no case
    ({"email": "ada@example.com", "email_verified": False}, False),
    ({"email": "ada@example.com", "email_verified": "true"}, False),  # only a JSON true
    ({"email": "ada@example.com"}, False),
    ({"email": "ada@sub.example.com", "email_verified": True}, False),  # exact domain only
    ({"email": "ada@example.com.evil.org", "email_verified": True}, False),
    ({"email": "ada@evilexample.com", "email_verified": True}, False),
    ({"email": '"ada@example.com"@evil.org', "email_verified": True}, False),
    ({"email": "example.com", "email_verified": True}, False),
    ({"email": "@example.com", "email_verified": True}, False),
    ({"email": ["ada@example.com"], "email_verified": True}, False),
    ({"email_verified": True}, False),
    ({}, False),
])
def test_an_email_domain_admits_only_verified_emails_at_exactly_that_domain(
        claims: dict[str, Any], allowed: bool) -> None:
    policy = AccessPolicy.from_settings(AccessSettings(email_domains=("Example.COM",)))
    assert policy.allows("google:1", claims) is allowed


def test_listed_emails_and_subjects_admit_those_users_only() -> None:
    policy = AccessPolicy.from_settings(AccessSettings(emails=("Grace@example.com",),
                                                       subjects=("twitter:12", "google:34")))
    assert policy.allows("google:1", {"email": "grace@example.com", "email_verified": True})
    assert not policy.allows("google:1", VERIFIED_ADA)  # same domain, not listed
    assert policy.allows("twitter:12", {})  # an X account without an email
    assert not policy.allows("twitter:123", {})
    assert not policy.allows("facebook:12", {})  # the provider is part of the subject


@pytest.mark.parametrize(("key", "value"), [
    ("email_domains", "@example.com"), ("email_domains", "example"),
    ("email_domains", "*.example.com"), ("email_domains", "example.com "),
    ("email_domains", "https://example.com"), ("email_domains", ""),
    ("emails", "ada"), ("emails", "ada@"), ("emails", "@example.com"),
    ("emails", "ada @example.com"), ("emails", "ada@example"),
    ("subjects", "1098"), ("subjects", "myspace:1"), ("subjects", "google:"),
    ("subjects", "google:1 2"), ("subjects", "Google:1"),
])
def test_entries_that_could_never_match_are_refused_at_start(tmp_path: Path, key: str,
                                                             value: str) -> None:
    error = refusal(write_config(tmp_path, {f"access.{key}": [value]}))
    assert error.key == f"access.{key}[0]"


def test_the_policy_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"access.email_domains": ["example.com"]})
    settings = load_settings(path, {"GATEWAY_ACCESS__SUBJECTS": "twitter:12, google:34"})
    assert settings.access == AccessSettings(email_domains=("example.com",),
                                             subjects=("twitter:12", "google:34"))
