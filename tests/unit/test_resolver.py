"""Upstream name resolution (gateway/upstream/resolver.py): no thread for an IP literal, a
name's answer kept for its TTL and then asked again."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tornado.netutil import Resolver

from gateway.upstream.resolver import CachingResolver, ip_literal_address


class CountingResolver(Resolver):
    """Stands for the event loop's resolver (a thread per lookup): counts what reaches it."""

    def initialize(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> list[tuple[int, Any]]:
        self.asked.append(host)
        return [(socket.AF_INET, ("192.0.2.7", port))]


def test_an_ip_literal_is_its_own_answer() -> None:
    inner = CountingResolver()
    resolver = CachingResolver(inner=inner)
    assert asyncio.run(resolver.resolve("127.0.0.1", 8081)) == [
        (socket.AF_INET, ("127.0.0.1", 8081))]
    assert asyncio.run(resolver.resolve("[::1]", 443)) == [(socket.AF_INET6, ("::1", 443, 0, 0))]
    assert inner.asked == []


def test_a_literal_of_the_other_family_is_no_answer() -> None:
    assert ip_literal_address("127.0.0.1", 80, socket.AF_INET6) is None
    assert ip_literal_address("oauth2.googleapis.com", 443) is None


def test_a_name_is_asked_once_per_ttl() -> None:
    now = [1000.0]
    inner = CountingResolver()
    resolver = CachingResolver(ttl=30, inner=inner, clock=lambda: now[0])
    for _ in range(3):
        assert asyncio.run(resolver.resolve("oauth2.googleapis.com", 443))[0][1] == (
            "192.0.2.7", 443)
    assert inner.asked == ["oauth2.googleapis.com"]
    now[0] += 31
    asyncio.run(resolver.resolve("oauth2.googleapis.com", 443))
    assert inner.asked == ["oauth2.googleapis.com"] * 2


def test_the_real_resolver_still_resolves_names() -> None:
    answer = asyncio.run(CachingResolver().resolve("localhost", 80))
    assert answer and all(port == 80 for _, (_host, port, *_) in answer)
