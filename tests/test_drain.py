"""A graceful stop: no new connections, every request in flight still gets its answer."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import Stack

from gateway.devproviders.common import Fault
from gateway.server import drain


def test_a_stop_lets_the_login_in_flight_finish_and_refuses_new_connections(
        stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    stack.google.faults["token"] = Fault.stall(1.0, times=1)
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(
        browser.get(back.headers["location"])))
    in_flight.start()
    deadline = time.monotonic() + 5
    while stack.google.calls["token"] < 1:  # the callback is now waiting on the provider
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    stack.loop.run(drain([stack.server], stack.ctx, timeout=5))
    drained_after = time.monotonic() - started
    in_flight.join(5)
    assert answers and answers[0].status_code == 302  # the login completed during the drain
    assert 0.5 < drained_after < 5  # the drain waited for it, and no longer
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.url}/healthz", timeout=2)


def test_a_stop_with_nothing_in_flight_is_immediate(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").status_code == 200
    started = time.monotonic()
    stack.loop.run(drain([stack.server], stack.ctx, timeout=5))
    assert time.monotonic() - started < 1
