"""SECURITY P8: the sessions API on the admin listener lists a user's live sessions and ends
them, with the admin bearer secret only; without one configured it is off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import Stack

from gateway.server import start_admin

API_TOKEN = "Adm1nT0ken-canary-Zq7rV2mXc9LwT4bN8yHs1Kd"


@pytest.fixture
def admin(make_stack: Callable[..., Stack]) -> Iterator[Callable[..., tuple[Stack, str]]]:
    stops: list[Callable[[], Any]] = []

    def start(**admin_settings: Any) -> tuple[Stack, str]:
        stack = make_stack(admin={"port": 0, **admin_settings})
        started = stack.loop.call(lambda: start_admin(stack.dev.settings, stack.ctx))
        assert started is not None
        server, port = started
        stops.append(lambda: stack.loop.call(server.stop))
        return stack, f"http://127.0.0.1:{port}/admin/sessions"

    yield start
    for stop in stops:
        stop()


def _bearer(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_P8_the_sessions_api_lists_and_ends_a_users_sessions(admin) -> None:
    stack, api = admin(api_token=API_TOKEN)
    laptop, phone = stack.browser(), stack.browser()
    for browser in (laptop, phone):
        assert browser.login().status_code == 302
    sub = laptop.get(f"{stack.url}/verify").json()["sub"]

    listed = httpx.get(api, params={"sub": sub}, headers=_bearer())
    assert listed.status_code == 200, listed.text
    assert listed.headers["Cache-Control"] == "no-store"
    sessions = listed.json()["sessions"]
    assert len(sessions) == 2 and {s["idp"] for s in sessions} == {"google"}
    assert {(s["device"], s["address"]) for s in sessions} == {("Python", "127.0.0.1")}

    one = httpx.delete(api, params={"sid": sessions[0]["sid"]}, headers=_bearer())
    assert one.status_code == 200 and one.json()["ended_sessions"] == 1
    assert len(httpx.get(api, params={"sub": sub}, headers=_bearer()).json()["sessions"]) == 1

    everything = httpx.delete(api, params={"sub": sub}, headers=_bearer())
    assert everything.status_code == 200 and everything.json()["ended_sessions"] == 1
    for browser in (laptop, phone):
        for name in [n for n in browser.cookies if n.endswith("gw_access")]:
            del browser.cookies[name]  # the session alone decides now
        assert browser.get(f"{stack.url}/auth").status_code == 401


def test_P8_the_sessions_api_needs_its_bearer_secret(admin) -> None:
    _, api = admin(api_token=API_TOKEN)
    assert httpx.get(api, params={"sub": "google:1"}).status_code == 401
    wrong = httpx.get(api, params={"sub": "google:1"}, headers=_bearer("x" * 40))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_token"
    both = httpx.delete(api, params={"sub": "google:1", "sid": "s"}, headers=_bearer())
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"


def test_P8_without_a_token_the_sessions_api_is_off(admin) -> None:
    _, api = admin()
    assert httpx.get(api, params={"sub": "google:1"}, headers=_bearer()).status_code == 404
