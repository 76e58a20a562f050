"""SECURITY R2: a `return_to` must lie under an allowed entry's path prefix, not only at its
origin. The prefix is a whole path segment ("/console/" does not admit "/console-evil/"), and
no spelling of ".." climbs out of it."""

from __future__ import annotations

import pytest

from gateway.redirects import is_allowed_return_to, parse_allowlist

CONSOLE = parse_allowlist(["https://app.example.test/console/"])
# Written without the trailing slash, the entry means the same directory.
CONSOLE_NO_SLASH = parse_allowlist(["https://app.example.test/console"])

INSIDE = [
    "https://app.example.test/console/",
    "https://app.example.test/console",
    "https://app.example.test/console/users/42",
    "https://app.example.test/console/search?q=a&page=2#results",
    "https://app.example.test/console/a..b/",  # dots inside a segment are not a dot segment
]

OUTSIDE = [
    "https://app.example.test/",
    "https://app.example.test/admin/",
    "https://app.example.test/consol",
    "https://app.example.test/consolex",
    "https://app.example.test/console-evil/",
    "https://app.example.test/console-evil",
    "https://app.example.test/console.evil/",
    "https://app.example.test/CONSOLE/",  # paths are case-sensitive
    "https://app.example.test//console/",
    "https://app.example.test/x/console/",
    # ".." and its encoded forms, which a browser or the app may resolve after we checked.
    "https://app.example.test/console/../admin/",
    "https://app.example.test/console/..",
    "https://app.example.test/console/./../admin/",
    "https://app.example.test/console/%2e%2e/admin/",
    "https://app.example.test/console/%2E%2E/admin/",
    "https://app.example.test/console/.%2e/admin/",
    "https://app.example.test/console/%2e./admin/",
    "https://app.example.test/console/..%2fadmin",
    "https://app.example.test/console/..%2Fadmin",
    "https://app.example.test/console/%252e%252e/admin/",
    "https://app.example.test/console/..%5cadmin",
    "https://app.example.test/console/..\\admin",
    "https://app.example.test/console\\..\\admin",
    "https://app.example.test/console/%2e%2e%2fadmin",
    # The right path at the wrong origin.
    "http://app.example.test/console/",
    "https://app.example.test:8443/console/",
    "https://evil.example/console/",
    "https://app.example.test.evil.example/console/",
    "https://app.example.test@evil.example/console/",
]


@pytest.mark.parametrize("candidate", INSIDE)
def test_R2_return_to_under_the_path_prefix_is_allowed(candidate: str) -> None:
    assert is_allowed_return_to(candidate, CONSOLE)
    assert is_allowed_return_to(candidate, CONSOLE_NO_SLASH)


@pytest.mark.parametrize("candidate", OUTSIDE)
def test_R2_return_to_outside_the_path_prefix_is_refused(candidate: str) -> None:
    assert not is_allowed_return_to(candidate, CONSOLE)
    assert not is_allowed_return_to(candidate, CONSOLE_NO_SLASH)


def test_R2_a_root_entry_admits_every_path_of_its_origin_only() -> None:
    root = parse_allowlist(["https://app.example.test/"])
    assert is_allowed_return_to("https://app.example.test/console-evil/", root)
    assert not is_allowed_return_to("https://app.example.test/console/../../x", root)
    assert not is_allowed_return_to("https://other.example.test/", root)


def test_R2_each_entry_keeps_its_own_prefix() -> None:
    two = parse_allowlist(["https://app.example.test/console/", "https://docs.example.test/"])
    assert is_allowed_return_to("https://docs.example.test/console-evil/", two)
    assert not is_allowed_return_to("https://app.example.test/console-evil/", two)
    assert not is_allowed_return_to("https://docs.example.test:444/", two)


