"""Tornado's promise: a login waiting on a slow provider blocks nobody else."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from conftest import Stack

from gateway.dev.standins.google import Fault


def test_a_stalled_code_exchange_blocks_neither_other_logins_nor_verify(stack: Stack) -> None:
    """The slow user's code exchange is held at Google until the others are done: if waiting
    on it blocked the gateway, the other login would never complete (no clock decides it)."""
    slow, fast = stack.browser(), stack.browser()
    start = slow.start_login()
    back = slow.consent(start.headers["location"])
    gate = asyncio.Event()
    stack.google.faults["token"] = Fault.hold(gate, times=1)  # only the slow user's exchange
    slow_answer: list[httpx.Response] = []
    slow_thread = threading.Thread(target=lambda: slow_answer.append(
        slow.get(back.headers["location"])))
    slow_thread.start()
    try:
        _wait_until(lambda: stack.google.calls["token"] == 1)
        assert fast.login(user="grace").status_code == 302
        for _ in range(20):
            assert fast.get(f"{stack.url}/verify").status_code == 200
        assert slow_thread.is_alive() and not slow_answer, "the slow exchange was not held"
    finally:
        stack.loop.call(gate.set)
        slow_thread.join(10)
    assert slow_answer[0].status_code == 302  # and the slow login still completes


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_start_up_objects_are_kept_out_of_the_collectors_scans() -> None:
    """server.settle_heap: a full collection under load scans what requests left, not the
    modules, app and keys of start-up (its pauses were the p99 of a forged-token flood)."""
    import gc

    from gateway.server import settle_heap

    before, thresholds = gc.get_freeze_count(), gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > max(before, 10_000)
        # Young collections spaced out: the objects of requests in flight die before one.
        assert gc.get_threshold()[0] >= 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
