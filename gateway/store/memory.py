"""In-memory store: one process, lost on restart. Bounded, with lazy expiry."""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable
from typing import Any

from gateway.store import StoreFull

# What a key holds: a value as `_kept` keeps it, or a counter's dict (`incr`).
Stored = str | tuple[tuple[str, Any], ...] | dict[str, Any]

PRUNE_FROM = 64  # members of a set before its expired ones are pruned as it grows


class MemoryStore:
    def __init__(self, *, max_entries: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # A value as `_kept` keeps it (put), or a counter's dict (incr, changed in place).
        self._entries: dict[tuple[str, str], tuple[float, Stored]] = {}
        self._expiry_heap: list[tuple[float, tuple[str, str]]] = []
        self._sets: dict[tuple[str, str], dict[str, float]] = {}  # member -> expiry
        self._max_entries = max_entries
        self.clock = clock

    async def put(self, namespace: str, key: str, value: dict[str, Any], ttl: float) -> None:
        self._put(namespace, key, _kept(value), ttl)

    def _put(self, namespace: str, key: str, stored: Stored, ttl: float) -> None:
        self._sweep()
        if len(self._entries) >= self._max_entries and (namespace, key) not in self._entries:
            raise StoreFull(namespace)
        expires = self.clock() + ttl
        self._entries[(namespace, key)] = (expires, stored)
        heapq.heappush(self._expiry_heap, (expires, (namespace, key)))

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        entry = self._entries.get((namespace, key))
        if entry is None or entry[0] <= self.clock():
            return None
        return _value(entry[1])

    async def take(self, namespace: str, key: str) -> dict[str, Any] | None:
        # No await between the read and the delete: atomic on the event loop.
        entry = self._entries.pop((namespace, key), None)
        if entry is None or entry[0] <= self.clock():
            return None
        return _value(entry[1])

    async def delete(self, namespace: str, key: str) -> None:
        self._entries.pop((namespace, key), None)

    async def incr(self, namespace: str, key: str, ttl: float) -> int:
        entry = self._entries.get((namespace, key))
        if entry is not None and entry[0] > self.clock():
            counter = entry[1]
            if not isinstance(counter, dict):  # put there as a value
                counter = _value(counter)
                self._entries[(namespace, key)] = (entry[0], counter)
            counter["count"] += 1  # no await: atomic on the event loop
            return int(counter["count"])
        self._put(namespace, key, {"count": 1}, ttl)
        return 1

    async def add_member(self, namespace: str, key: str, member: str, ttl: float) -> None:
        members = self._sets.get((namespace, key))
        if members is None:
            if len(self._sets) >= self._max_entries:
                raise StoreFull(namespace)
            members = self._sets[(namespace, key)] = {}
        elif len(members) >= PRUNE_FROM and _power_of_two(len(members)):
            # Expired members go when the set has doubled: amortized O(1) an addition (a user
            # signing in again and again must not cost each login a pass over the whole set).
            members = self._sets[(namespace, key)] = self._live_members(namespace, key)
        members[member] = self.clock() + ttl

    async def members(self, namespace: str, key: str) -> list[str]:
        return list(self._live_members(namespace, key))

    async def remove_member(self, namespace: str, key: str, member: str) -> None:
        members = self._live_members(namespace, key)
        members.pop(member, None)
        if members:
            self._sets[(namespace, key)] = members
        else:
            self._sets.pop((namespace, key), None)

    def _live_members(self, namespace: str, key: str) -> dict[str, float]:
        now = self.clock()
        members = self._sets.get((namespace, key), {})
        return {member: expires for member, expires in members.items() if expires > now}

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._entries.clear()
        self._expiry_heap.clear()
        self._sets.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _sweep(self) -> None:
        now = self.clock()
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires, entry_key = heapq.heappop(heap)
            current = self._entries.get(entry_key)
            if current is not None and current[0] == expires:
                del self._entries[entry_key]


_SCALARS = (str, int, float, bool, type(None))


def _kept(value: dict[str, Any]) -> str | tuple[tuple[str, Any], ...]:
    """Kept so that a caller never shares what we hold, and what SQLite or Redis could not
    store fails here too: a record of plain values (a login's transaction) as its pairs,
    which no one can change; any other as JSON, as the other stores keep it."""
    if all(type(key) is str and type(item) in _SCALARS for key, item in value.items()):
        return tuple(value.items())
    return json.dumps(value)


def _value(stored: Stored) -> dict[str, Any]:
    """A new dict each time, as the other stores give."""
    value: dict[str, Any] = json.loads(stored) if isinstance(stored, str) else dict(stored)
    return value


def _power_of_two(n: int) -> bool:
    return n & (n - 1) == 0
