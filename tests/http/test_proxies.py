"""Trusted proxies (SECURITY H3) and HSTS (SECURITY H2): `X-Forwarded-For` and
`X-Forwarded-Proto` are believed only from the configured proxies; HSTS on every response of an
https issuer, never on an http one."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conftest import Stack

from gateway.handlers.base import HSTS
from gateway.proxies import client_address, forwarded_proto, parse_trusted

PROXIES = parse_trusted(["127.0.0.1/32", "10.0.0.0/8"])


def xff(value: str) -> dict[str, str]:
    return {"X-Forwarded-For": value}


# ---------------------------------------------------------------------------------------------
# client_address: a plain function


def test_H3_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("127.0.0.1", xff("203.0.113.9"), ()) == "127.0.0.1"


def test_H3_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_address("198.51.100.7", xff("203.0.113.9"), PROXIES) == "198.51.100.7"


def test_H3_trusted_peer_forwards_the_client_address() -> None:
    assert client_address("10.1.2.3", xff("203.0.113.9"), PROXIES) == "203.0.113.9"


def test_H3_addresses_the_client_wrote_itself_are_not_believed() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; our proxy appended the address it saw.
    assert client_address("10.1.2.3", xff("1.2.3.4, 203.0.113.9"), PROXIES) == "203.0.113.9"


def test_H3_a_chain_of_trusted_proxies_is_walked_right_to_left() -> None:
    headers = xff("1.2.3.4, 203.0.113.9, 10.9.9.9, 127.0.0.1")
    assert client_address("10.1.2.3", headers, PROXIES) == "203.0.113.9"


def test_H3_all_hops_trusted_gives_the_leftmost() -> None:
    assert client_address("10.1.2.3", xff("10.0.0.5, 10.0.0.6"), PROXIES) == "10.0.0.5"


def test_H3_garbage_in_the_trusted_part_stops_the_walk() -> None:
    assert client_address("10.1.2.3", xff("203.0.113.9, not-an-ip"), PROXIES) == "10.1.2.3"


def test_H3_trusted_peer_without_the_header_is_the_client() -> None:
    assert client_address("10.1.2.3", {}, PROXIES) == "10.1.2.3"


@pytest.mark.parametrize(("hop", "expected"), [
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("203.0.113.9:51234", "203.0.113.9"),
    ("2001:db8::2", "2001:db8::2"),
])
def test_H3_forwarded_addresses_with_ports_or_brackets_are_understood(hop: str,
                                                                      expected: str) -> None:
    assert client_address("10.1.2.3", xff(hop), PROXIES) == expected


def test_H3_ipv4_mapped_peer_of_a_dual_stack_socket_is_trusted() -> None:
    assert client_address("::ffff:10.1.2.3", xff("203.0.113.9"), PROXIES) == "203.0.113.9"


def test_H3_forwarded_proto_only_from_a_trusted_peer() -> None:
    assert forwarded_proto("10.1.2.3", {"X-Forwarded-Proto": "https"}, PROXIES) == "https"
    assert forwarded_proto("198.51.100.7", {"X-Forwarded-Proto": "https"}, PROXIES) is None
    assert forwarded_proto("10.1.2.3", {"X-Forwarded-Proto": "gopher"}, PROXIES) is None
    # The nearest proxy's value is the last one.
    assert forwarded_proto("10.1.2.3", {"X-Forwarded-Proto": "https, http"}, PROXIES) == "http"


def test_H3_malformed_proxy_entries_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_trusted(["10.0.0.1/8"])


# ---------------------------------------------------------------------------------------------
# Over HTTP: the address that is rate limited


def _limited_login(make_stack: Callable[..., Stack], trusted: list[str]) -> Stack:
    return make_stack(proxy={"trusted": trusted},
                      rate_limits={"login_requests": 1, "enforce_in_dev_mode": True})


def test_H3_untrusted_forwarded_for_does_not_escape_the_rate_limit(
        make_stack: Callable[..., Stack]) -> None:
    stack = _limited_login(make_stack, [])
    first = httpx.get(f"{stack.url}/login", headers=xff("203.0.113.1"))
    second = httpx.get(f"{stack.url}/login", headers=xff("203.0.113.2"))
    assert first.status_code == 200
    assert second.status_code == 429  # both are 127.0.0.1: the header was not believed


def test_H3_trusted_proxy_gives_each_client_its_own_limit(
        make_stack: Callable[..., Stack]) -> None:
    stack = _limited_login(make_stack, ["127.0.0.1/32"])
    assert httpx.get(f"{stack.url}/login", headers=xff("203.0.113.1")).status_code == 200
    assert httpx.get(f"{stack.url}/login", headers=xff("203.0.113.2")).status_code == 200
    assert httpx.get(f"{stack.url}/login", headers=xff("203.0.113.1")).status_code == 429


def test_R5_forwarded_host_never_builds_a_url_even_from_a_trusted_proxy(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(proxy={"trusted": ["127.0.0.1/32"]})
    answer = httpx.get(f"{stack.url}/login/google",
                       headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    location = httpx.URL(answer.headers["location"])
    assert location.params["redirect_uri"] == f"{stack.url}/callback/google"


# ---------------------------------------------------------------------------------------------
# HSTS


def _https_issuer_stack(make_stack: Callable[..., Stack], **overrides: object) -> str:
    """A gateway whose issuer is https (as behind a TLS proxy); returns its plain local URL."""
    stack = make_stack(issuer="https://login.example.test", **overrides)
    port = stack.dev.gateway_sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("path", ["/healthz", "/login", "/.well-known/jwks.json", "/nowhere"])
def test_H2_hsts_on_every_response_of_an_https_issuer(make_stack: Callable[..., Stack],
                                                      path: str) -> None:
    base = _https_issuer_stack(make_stack)
    answer = httpx.get(f"{base}{path}")
    assert answer.headers["Strict-Transport-Security"] == HSTS
    assert "max-age=63072000" in HSTS and "includeSubDomains" in HSTS


def test_H2_no_hsts_on_an_http_development_issuer(stack: Stack) -> None:
    for path in ("/healthz", "/login", "/nowhere"):
        assert "Strict-Transport-Security" not in httpx.get(f"{stack.url}{path}").headers


def test_H2_no_hsts_when_a_trusted_proxy_says_the_request_was_plain_http(
        make_stack: Callable[..., Stack]) -> None:
    base = _https_issuer_stack(make_stack, proxy={"trusted": ["127.0.0.1/32"]})
    plain = httpx.get(f"{base}/healthz", headers={"X-Forwarded-Proto": "http"})
    tls = httpx.get(f"{base}/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in plain.headers  # RFC 6797 7.2
    assert tls.headers["Strict-Transport-Security"] == HSTS


def test_H3_untrusted_forwarded_proto_cannot_remove_hsts(make_stack: Callable[..., Stack]) -> None:
    base = _https_issuer_stack(make_stack)
    answer = httpx.get(f"{base}/healthz", headers={"X-Forwarded-Proto": "http"})
    assert answer.headers["Strict-Transport-Security"] == HSTS
