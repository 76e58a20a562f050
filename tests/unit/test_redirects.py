"""Which `return_to` URLs a login may go back to (gateway/redirects.py, SECURITY R2): the
configured entries, and development mode's loopback rule (any port on localhost, 127.0.0.1 or
[::1]), which production settings never get."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_support import write_config

from gateway import redirects
from gateway.app import build_context
from gateway.config import load_settings
from gateway.keys import load_keyset
from gateway.redirects import DEV_LOOPBACK_RETURNS, is_allowed_return_to, parse_allowlist
from gateway.store.memory import MemoryStore

CONFIGURED = parse_allowlist(["https://app.example.com/console/"])
DEV = parse_allowlist(["https://app.example.com/console/"], dev_loopback=True)


@pytest.mark.parametrize("url", [
    "http://localhost:8000/",
    "http://localhost:3000/dashboard?tab=1",
    "http://localhost/",
    "http://127.0.0.1:8000/",
    "http://127.0.0.1:65535/x/y",
    "http://[::1]:8000/",
    "http://[::1]/",
])
def test_dev_mode_allows_loopback_apps_on_any_port(url: str) -> None:
    assert is_allowed_return_to(url, DEV)
    assert not is_allowed_return_to(url, CONFIGURED)


@pytest.mark.parametrize("url", [
    "http://localhost.evil.com/",  # a look-alike host
    "http://localhost.evil.com:8000/",
    "http://127.0.0.1.evil.com/",
    "http://evil.com/localhost:8000/",
    "http://localhost@evil.com/",  # user info: the host is evil.com
    "http://evil.com@localhost:8000/",  # user info is refused outright
    "http://localhost:8000@evil.com/",
    "http://localhost%2eevil.com/",
    "http://localhost./",
    "https://localhost:8000/",  # http only: what a local dev server speaks
    "HTTP://localhost:8000/",
    "//localhost:8000/",
    "http:/localhost:8000/",
    "http://127.0.0.2:8000/",  # only the exact hosts, not the rest of 127.0.0.0/8
    "http://127.1:8000/",
    "http://2130706433/",  # 127.0.0.1 as a number
    "http://0x7f.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::1",  # an unclosed bracket is refused, not an exception
    "http://localhost:/",
    "http://localhost:08000/",
    "http://localhost:99999/",
    "http://localhost:8000/%2e%2e/x",
    "http://localhost:8000/a/../b",
    "http://localhost:8000\\@evil.com/",
    "http://local\thost:8000/",
])
def test_dev_loopback_rule_keeps_every_evasion_check(url: str) -> None:
    assert not is_allowed_return_to(url, DEV)


def test_dev_loopback_entries_are_exactly_three_hosts_over_http() -> None:
    assert {(e.scheme, e.netloc, e.path_prefix, e.any_port) for e in DEV_LOOPBACK_RETURNS} == {
        ("http", "localhost", "/", True), ("http", "127.0.0.1", "/", True),
        ("http", "[::1]", "/", True)}
    assert not any(e.any_port for e in CONFIGURED)


def test_a_configured_entry_still_means_its_port_and_path_prefix() -> None:
    allowlist = parse_allowlist(["http://localhost:8000/app/"])
    assert is_allowed_return_to("http://localhost:8000/app/page", allowlist)
    assert not is_allowed_return_to("http://localhost:8001/app/page", allowlist)
    assert not is_allowed_return_to("http://localhost:8000/other", allowlist)
    assert not is_allowed_return_to("http://localhost/app/", allowlist)


def test_a_configured_ipv6_entry_matches_its_own_spelling() -> None:
    allowlist = parse_allowlist(["http://[::1]:8000/"])
    assert is_allowed_return_to("http://[::1]:8000/x", allowlist)
    assert not is_allowed_return_to("http://[::1]:8001/x", allowlist)
    assert not is_allowed_return_to("http://[0::1]:8000/x", allowlist)


# ---------------------------------------------------------------------------------------------
# Where the allowlist is built: production never gets the loopback rule


def _production_allowlist(directory: Path, allowed: list[str] | None = None):
    changes = {"tokens.keys_dir": str(directory / "keys"), "tokens.algorithm": "ES256"}
    if allowed is not None:
        changes["login.allowed_return_urls"] = allowed
    settings = load_settings(write_config(directory, changes), {})
    assert not settings.dev_mode
    keyset = load_keyset(directory / "keys", "ES256", generate_if_empty=True)
    return build_context(settings, keyset, store=MemoryStore()).allowed_returns


def test_R2_production_refuses_a_loopback_app_unless_it_is_listed(tmp_path: Path) -> None:
    unlisted = _production_allowlist(tmp_path)
    assert not is_allowed_return_to("http://localhost:8000/", unlisted)
    assert not is_allowed_return_to("http://127.0.0.1:8000/", unlisted)
    assert is_allowed_return_to("https://login.example.com/", unlisted)  # its own origin

    listed = _production_allowlist(tmp_path, ["http://localhost:8000/"])
    assert is_allowed_return_to("http://localhost:8000/", listed)
    assert not is_allowed_return_to("http://localhost:8001/", listed)  # exactly that port
    assert not is_allowed_return_to("http://127.0.0.1:8000/", listed)


def test_R2_an_over_long_return_to_is_refused_before_the_parse_cache() -> None:
    """Forward auth reads return_to from headers of up to 64 KB: such strings must not be
    kept in the cache of parsed addresses (1,024 of them would hold 64 MB)."""
    long_url = "https://app.example.com/console/" + "a" * redirects.MAX_RETURN_TO_LENGTH
    before = redirects._parsed_target.cache_info().currsize
    assert not is_allowed_return_to(long_url, CONFIGURED)
    assert redirects._parsed_target.cache_info().currsize == before
    assert is_allowed_return_to("https://app.example.com/console/x", CONFIGURED)
