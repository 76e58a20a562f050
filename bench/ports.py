"""Loopback ports for the benchmarks' servers: a free one, and waiting until one listens."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A port nothing listens on now (the server started next binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30, *,
                  still_starting: Callable[[], None] | None = None) -> None:
    """Return once something accepts on `port`; `still_starting` raises if the server gave up
    (its process exited), so that a failed start is told at once, with its reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if still_starting is not None:
            still_starting()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")
