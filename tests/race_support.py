"""A write racing a read of the store: the read has its answer, the write happens, and only
then does the read go on, with what it read before (tests of what must not be remembered)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from gateway.store.memory import MemoryStore

T = TypeVar("T")


async def racing_a_read(store: MemoryStore, reader: Coroutine[Any, Any, T],
                        meanwhile: Callable[[], Awaitable[object]]) -> T:
    """Run `reader`; once a `store.get` it started has read, run `meanwhile` (the store as
    usual), then let the held reads return. Returns what `reader` returned."""
    read, written = asyncio.Event(), asyncio.Event()
    real_get = store.get

    async def held_get(namespace: str, key: str) -> dict[str, Any] | None:
        record = await real_get(namespace, key)
        read.set()
        await written.wait()
        return record
    store.get = held_get  # type: ignore[method-assign]
    task = asyncio.ensure_future(reader)
    try:
        await read.wait()
    finally:
        store.get = real_get  # type: ignore[method-assign]
    await meanwhile()
    written.set()
    return await task
