"""Per-client caps on what a client can leave pending in the store (SECURITY H10).

A started login (a transaction) and a saved /authorize request each wait in the store until the
browser comes back or their lifetime ends. A total bound alone (the store's namespace limit) is a
lock-out: whoever fills it, from a few dozen addresses, makes every sign-in a 503. So each
client (an IPv4 address, or an IPv6 /64: `ratelimits.client_key`) may only start
`login.max_pending_per_client` of each kind per window of one item lifetime; past it, that
client alone gets a 429. The total bound stays, far above, as a bound on memory.

What is counted is what was *started* in the current window (`Store.incr`: one counter per
kind, client and window, shared by replicas, gone with the window), not decremented when the
callback takes the item: no store round trip on the way back, and never an undercount. Windows
are aligned on the wall clock, so an item started at the end of one window may still be pending
during the next: a client holds at most twice its cap.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from gateway.errors import RateLimited
from gateway.ratelimits import client_key
from gateway.store import Store, StoreFull

log = logging.getLogger("gateway.pending")

NAMESPACE = "pending"
LOGINS = "login"  # login transactions (gateway/transactions.py)
AUTHORIZATION_REQUESTS = "authorize"  # saved /authorize requests (gateway/oidc/grants.py)
KINDS = (LOGINS, AUTHORIZATION_REQUESTS)
TOO_MANY_PENDING = ("Too many sign-ins were started from your network and not finished. "
                    "Please finish one, or try again in a few minutes.")


class PendingCaps:
    """Counts the items each client starts and refuses the one past `per_client`."""

    def __init__(self, store: Store, *, per_client: int, lifetime: int,
                 clock: Callable[[], float] = time.time) -> None:
        if per_client < 1 or lifetime < 1:
            raise ValueError("per_client and lifetime must be positive")
        self._store = store
        self.per_client = per_client
        self._lifetime = lifetime
        self._clock = clock

    async def admit(self, kind: str, address: str) -> None:
        """Count one new pending item of `kind` for the client at `address`; `RateLimited`
        (that client's 429) when it is over its cap. Call it before any work is done for the
        item. `StoreUnavailable` goes up (the item could not be stored either)."""
        now = self._clock()
        window_index = int(now // self._lifetime)
        key = f"{kind}:{window_index}:{client_key(address)}"
        try:
            count = await self._store.incr(NAMESPACE, key, self._lifetime)
        except StoreFull:
            # The store is full of counters (a memory store): the item's own put meets the
            # total bound next, so nothing grows without a bound.
            log.warning("pending %s cap not counted: the store is full", kind)
            return
        if count > self.per_client:
            retry_after = max(1, math.ceil((window_index + 1) * self._lifetime - now))
            raise RateLimited(retry_after, description=TOO_MANY_PENDING,
                              log_detail=f"pending {kind} cap: count={count} "
                                         f"cap={self.per_client}")
