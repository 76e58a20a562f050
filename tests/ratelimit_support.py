"""A rate limiter with a test clock and a store that fails, for the H5 tests."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.ratelimits import Limit, RateLimiter
from gateway.store.memory import MemoryStore

WINDOW = 60
START = 1_800_000_000.0  # a window boundary: START % WINDOW == 0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class BrokenStore(MemoryStore):
    """A store whose counters fail the way a backend does."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.calls = 0

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        self.calls += 1
        raise self.error


def limiter(store: Any = None, requests: int = 3, clock: Clock | None = None,
            **kwargs: Any) -> RateLimiter:
    limits = {group: Limit(requests, WINDOW) for group in ("login", "token", "verify")}
    return RateLimiter(store if store is not None else MemoryStore(), limits,
                       clock=clock or Clock(), **kwargs)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def check(rl: RateLimiter, group: str, address: str) -> None:
    """One request, as the gateway counts it: decided now, or by the store's answer."""
    pending = rl.count(group, address)
    if pending is not None:
        await pending


async def count(rl: RateLimiter, group: str, address: str, times: int) -> None:
    for _ in range(times):
        await check(rl, group, address)
