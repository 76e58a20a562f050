"""Requests between their start and their answer, so that a stop can wait for them (a drain)."""

from __future__ import annotations

import asyncio
import time

POLL_SECONDS = 0.02


class InFlightRequests:
    """A counter the base handler moves; one per application."""

    def __init__(self) -> None:
        self.count = 0

    def started(self) -> None:
        self.count += 1

    def ended(self) -> None:
        self.count -= 1

    async def wait_until_idle(self, timeout: float) -> bool:
        """True once no request is in flight; False when `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        while self.count > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True
