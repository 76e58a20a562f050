"""SECURITY T4: a refresh token has one successor, however many requests race with it, in
every store. Twenty concurrent refreshes of one token used to get twenty successors, all
alive, and a stolen token replayed within the reuse interval got a branch of its own that reuse
detection never saw. Now every racer, the thief included, gets the same successor, and a reuse
after the interval ends the whole family."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Stack
from oidc_support import CLIENTS, bearer, oidc_stack, refresh, tokens_for
from store_backends import REDIS_URL, delete_prefix, require_redis, unique_prefix

RACERS = 20
REUSE_INTERVAL = 5


@pytest.fixture(params=["memory", "sqlite", "redis"])
def race_stack(request: pytest.FixtureRequest, make_stack: Any, tmp_path: Path
               ) -> Iterator[Stack]:
    prefix = None
    store: dict[str, Any] = {}
    if request.param == "sqlite":
        store = {"url": f"sqlite://{tmp_path}/gateway.db"}
    elif request.param == "redis":
        require_redis()
        prefix = unique_prefix()
        store = {"url": REDIS_URL, "key_prefix": prefix}
    stack = oidc_stack(make_stack, clients=CLIENTS, store=store,
                       tokens={"refresh_token_reuse_interval": REUSE_INTERVAL})
    yield stack
    stack.loop.run(stack.ctx.store.close())
    if prefix is not None:
        delete_prefix(prefix)


def race(stack: Stack, refresh_token: str, racers: int = RACERS) -> list[httpx.Response]:
    async def all_at_once() -> list[httpx.Response]:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": "spa"}
        async with httpx.AsyncClient(timeout=30) as http:
            return list(await asyncio.gather(
                *(http.post(f"{stack.url}/token", data=data) for _ in range(racers))))
    return asyncio.run(all_at_once())


def test_T4_twenty_racing_refreshes_of_one_token_get_one_successor(race_stack: Stack) -> None:
    tokens = tokens_for(race_stack)
    answers = race(race_stack, tokens["refresh_token"])
    assert [a.status_code for a in answers] == [200] * RACERS, [a.text for a in answers]
    successors = {a.json()["refresh_token"] for a in answers}
    assert len(successors) == 1
    # Every racer's access token is good, and the one successor rotates on as usual.
    assert all(httpx.get(f"{race_stack.url}/userinfo",
                         headers=bearer(a.json()["access_token"])).status_code == 200
               for a in answers[:3])
    onward = refresh(race_stack, successors.pop())
    assert onward.status_code == 200, onward.text


def test_T4_a_stolen_token_replayed_in_the_interval_gets_no_branch_and_later_ends_it_all(
        race_stack: Stack) -> None:
    tokens = tokens_for(race_stack)
    stolen = tokens["refresh_token"]
    legitimate = refresh(race_stack, stolen).json()["refresh_token"]
    thief = refresh(race_stack, stolen)  # within the interval: the same successor, no branch
    assert thief.status_code == 200 and thief.json()["refresh_token"] == legitimate
    grants = race_stack.ctx.grants
    real_clock = grants._clock
    grants._clock = lambda: real_clock() + REUSE_INTERVAL + 1
    try:
        reuse = refresh(race_stack, stolen)  # after the interval: the whole family ends
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        assert refresh(race_stack, legitimate).json()["error"] == "invalid_grant"
    finally:
        grants._clock = real_clock
