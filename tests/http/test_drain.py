"""A graceful stop: no new connections, every request in flight still gets its answer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
from conftest import Stack

from gateway.dev.standins.common import Fault
from gateway.server import drain

DRAIN_TIMEOUT = 40.0  # far beyond what either test needs: reaching it is the failure


def test_a_stop_lets_the_login_in_flight_finish_and_refuses_new_connections(
        stack: Stack) -> None:
    """Google holds the code exchange until the test lets it go: the drain must still be
    waiting for that login then (no clock decides it), and end once it has its answer."""
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    gate = asyncio.Event()
    stack.google.faults["token"] = Fault.hold(gate, times=1)
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(
        browser.get(back.headers["location"])))
    in_flight.start()
    _wait_until(lambda: stack.google.calls["token"] >= 1)  # the callback waits on Google
    draining = asyncio.run_coroutine_threadsafe(
        drain([stack.server], stack.ctx, timeout=DRAIN_TIMEOUT), stack.loop.loop)
    try:
        _wait_until(_refuses_connections(stack.url))  # the drain has begun
        assert not draining.done(), "the drain did not wait for the login in flight"
        assert not answers
    finally:
        stack.loop.call(gate.set)
    draining.result(DRAIN_TIMEOUT)
    in_flight.join(10)
    assert answers and answers[0].status_code == 302  # the login completed during the drain
    assert stack.google.calls["token"] == 1


def test_a_stop_with_nothing_in_flight_does_not_wait_for_its_timeout(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").status_code == 200
    started = time.monotonic()
    stack.loop.run(drain([stack.server], stack.ctx, timeout=DRAIN_TIMEOUT),
                   timeout=DRAIN_TIMEOUT + 10)
    # Nothing to wait for ends at once; a drain that waited would take the whole timeout.
    assert time.monotonic() - started < DRAIN_TIMEOUT / 4
    assert _refuses_connections(stack.url)()


def _refuses_connections(url: str) -> Callable[[], bool]:
    def refused() -> bool:
        try:
            httpx.get(f"{url}/healthz", timeout=2)
        except httpx.ConnectError:
            return True
        return False
    return refused


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
