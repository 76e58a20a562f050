"""How upstream host names become addresses, without a thread per request.

Tornado's default resolver hands every lookup to a thread (the event loop's getaddrinfo), even
for an IP literal, once per upstream request: a thread round trip on each code exchange. Here an
IP literal is its own answer, and a name's answer is kept for `ttl` seconds (what the JVM does
by default; containers rarely run a caching DNS daemon).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any

from tornado.netutil import DefaultLoopResolver, Resolver

DEFAULT_TTL = 30.0
MAX_NAMES = 256  # upstream hosts come from configuration: a handful


class CachingResolver(Resolver):
    """IP literals at once; names through the event loop's resolver, kept `ttl` seconds."""

    def initialize(self, ttl: float = DEFAULT_TTL,
                   inner: Resolver | None = None,
                   clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._inner = inner or DefaultLoopResolver()
        self._clock = clock
        self._answers: dict[tuple[str, int, int], tuple[float, list[tuple[int, Any]]]] = {}

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> list[tuple[int, Any]]:
        literal = ip_literal_address(host, port, family)
        if literal is not None:
            return [literal]
        key = (host, port, int(family))
        cached = self._answers.get(key)
        now = self._clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = await self._inner.resolve(host, port, family)
        if len(self._answers) >= MAX_NAMES:
            self._answers.clear()
        self._answers[key] = (now + self._ttl, answer)
        return answer

    def close(self) -> None:
        self._inner.close()


def ip_literal_address(host: str, port: int, family: int = socket.AF_UNSPEC
                       ) -> tuple[int, Any] | None:
    """(family, sockaddr) for an IPv4 or IPv6 literal of the wanted family, else None."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.version == 4 and family in (socket.AF_UNSPEC, socket.AF_INET):
        return socket.AF_INET, (str(ip), port)
    if ip.version == 6 and family in (socket.AF_UNSPEC, socket.AF_INET6):
        return socket.AF_INET6, (str(ip), port, 0, 0)
    return None
