"""Per-client rate limits on the login, token and verify route groups (SECURITY H5).

Fixed windows aligned on the wall clock (`window_index = now // window`), so that every replica
counts into the same window, and `Retry-After` is the time left in it. The login and token
groups count in the store (`Store.incr`: with Redis, one counter shared by every replica). The
verify group counts in this process by default: /verify is the hot path of every downstream
app, and a store round trip per request would cost about half its throughput; with N replicas
behind a load balancer a client may then make up to N times the limit
(`rate_limits.verify_shared = true` counts in the store instead).

When the store cannot count (down, or full of counters from a flood of addresses), the verify
group fails open (/verify is stateless and must keep working without the store) and so does a
full store for every group; a store that is down fails the login and token groups with the usual
503, since those requests need the store anyway.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.errors import RateLimited
from gateway.store import Store, StoreFull, StoreUnavailable

log = logging.getLogger("gateway.ratelimits")

NAMESPACE = "ratelimit"
GROUPS = ("login", "token", "verify")
# Distinct clients the in-process counter tracks per window; past it, new clients pass.
MAX_LOCAL_CLIENTS = 100_000
FAIL_OPEN_LOG_INTERVAL = 60.0  # seconds between two "failing open" log lines
IPV6_CLIENT_PREFIX = 64  # one IPv6 client (a home, a host) holds a whole /64


@dataclass(frozen=True)
class Limit:
    requests: int  # per window and client address; 0 = no limit
    window: int  # seconds


def route_group(path: str) -> str | None:
    """The rate-limited group of a request path, or None."""
    if path in ("/login", "/authorize") or path.startswith("/login/"):
        return "login"
    if path in ("/token", "/revoke", "/introspect"):
        return "token"
    if path in ("/verify", "/userinfo"):
        return "verify"
    return None


def client_key(address: str) -> str:
    """What one client is counted as: its IPv4 address, or its IPv6 /64 (anyone holding an
    IPv6 address can use every address of its /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class RateLimiter:
    """Counts requests per (group, client, window) and raises `RateLimited` past the limit."""

    def __init__(self, store: Store, limits: Mapping[str, Limit], *, verify_shared: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._limits = {g: lim for g, lim in limits.items() if lim.requests > 0}
        self._verify_shared = verify_shared
        self._clock = clock
        self._local_window = -1
        self._local_counts: dict[str, int] = {}
        self._last_fail_open_log = -math.inf

    def limits(self, group: str | None) -> bool:
        return group in self._limits

    def counts_locally(self, group: str) -> bool:
        """Whether `count` decides this group now, in this process (no store round trip)."""
        return group == "verify" and not self._verify_shared

    def count(self, group: str, address: str) -> Awaitable[None] | None:
        """Count one request of `address` to `group` and raise `RateLimited` when over. Counted
        in this process (the verify group, unless shared), that is decided now and None is
        returned; counted in the store, the returned awaitable decides."""
        limit = self._limits.get(group)
        if limit is None:
            return None
        now = self._clock()
        window_index = int(now // limit.window)
        key = f"{group}:{window_index}:{client_key(address)}"
        if self.counts_locally(group):
            self._decide(group, limit, self._count_locally(key, window_index), now)
            return None
        return self._count_in_store(group, limit, key, now)

    async def _count_in_store(self, group: str, limit: Limit, key: str, now: float) -> None:
        try:
            count = await self._store.incr(NAMESPACE, key, limit.window)
        except StoreFull as e:
            self._fail_open(group, e)
            return
        except StoreUnavailable as e:
            if group != "verify":
                raise
            self._fail_open(group, e)
            return
        self._decide(group, limit, count, now)

    @staticmethod
    def _decide(group: str, limit: Limit, count: int, now: float) -> None:
        if count > limit.requests:
            window_index = int(now // limit.window)
            retry_after = max(1, math.ceil((window_index + 1) * limit.window - now))
            raise RateLimited(retry_after, log_detail=f"group={group} count={count} "
                                                      f"limit={limit.requests}/{limit.window}s")

    def _count_locally(self, key: str, window_index: int) -> int:
        if window_index != self._local_window:
            # A new window: the old counts are dead, dropped in O(1).
            self._local_window = window_index
            self._local_counts = {}
        count = self._local_counts.get(key, 0) + 1
        if count == 1 and len(self._local_counts) >= MAX_LOCAL_CLIENTS:
            return count  # bounded memory: a flood of new addresses is not tracked
        self._local_counts[key] = count
        return count

    def _fail_open(self, group: str, error: Exception) -> None:
        now = time.monotonic()
        if now - self._last_fail_open_log >= FAIL_OPEN_LOG_INTERVAL:
            self._last_fail_open_log = now
            log.warning("rate limiting of %s fails open: the store cannot count (%s)", group,
                        type(error).__name__)
