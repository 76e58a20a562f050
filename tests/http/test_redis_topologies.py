"""The gateway on Redis with failover (issue 17, SECURITY T7, H9): a master watched by three
sentinels, and a Cluster of three masters, each of real `redis-server` processes of the tests'
own (tests/redis_topology.py, started once for the session). The gateway is the development
stack with `store.url` pointing at them and the passwords in files, as in production.

- Sentinel: the master is SIGKILLed right after a refresh rotation was answered; after the
  failover nothing acknowledged is lost, requests in the gap get 503 (never a 500, never a hang),
  and the gateway recovers by itself.
- T7: with the replicas stopped, a write that must be acknowledged is a 503, never a success.
- Cluster: logins, refreshes, revocation and sign-out with keys spread over the masters (no
  operation touches keys of two slots); a master restarted and the service recovers.

Each test heals what it broke; statuses are counted and compared, never timed.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Browser, Stack
from oidc_support import (
    CLIENTS,
    INTROSPECTOR,
    INTROSPECTOR_AUTH,
    SPA_REDIRECT_URI,
    authorization_params,
    authorize_url,
    bearer,
    refresh,
    tokens_for,
)
from redis.crc import key_slot
from redis_topology import (
    PASSWORD,
    SENTINEL_PASSWORD,
    ClusterTopology,
    SentinelTopology,
)
from store_backends import unique_prefix

from gateway.store import StoreUnavailable
from gateway.store.redis import RedisStore

# A request is answered within this, or it hangs: several store commands of 1 s at most each.
HANG_LIMIT = 10.0
GAP_REQUESTS = 1000  # at most this many requests while the store is away (bounded loop)
GAP_PAUSE = 0.03


@pytest.fixture
def topology_stack(make_stack: Callable[..., Stack], tmp_path: Path
                   ) -> Iterator[Callable[..., tuple[Stack, str]]]:
    """A gateway whose store is the given topology's, under a prefix of its own; the Redis
    passwords in files (store.password_file, store.sentinel_password_file)."""
    password_file = tmp_path / "redis-password"
    password_file.write_text(PASSWORD + "\n")
    sentinel_file = tmp_path / "sentinel-password"
    sentinel_file.write_text(SENTINEL_PASSWORD + "\n")
    opened: list[tuple[Stack, str, Any]] = []

    def start(topology: SentinelTopology | ClusterTopology, **settings: Any) -> tuple[Stack, str]:
        prefix = unique_prefix()
        store: dict[str, Any] = {"url": topology.url(), "key_prefix": prefix,
                                 "password_file": str(password_file), **settings.pop("store", {})}
        if isinstance(topology, SentinelTopology):
            store["sentinel_password_file"] = str(sentinel_file)
        stack = make_stack(clients=[*CLIENTS, INTROSPECTOR], store=store, **settings)
        opened.append((stack, prefix, topology))
        return stack, prefix

    yield start
    for stack, prefix, topology in opened:
        stack.loop.run(stack.ctx.store.close())
        topology.delete_prefix(prefix)


def get(url: str, **kwargs: Any) -> httpx.Response:
    """A request with a deadline: a hang fails the test instead of waiting for ever."""
    return httpx.get(url, timeout=HANG_LIMIT, **kwargs)


def signed_in(browser: Browser) -> bool:
    """Single sign-on: the browser's gateway session gets the app a code without a login."""
    answer = browser.get(authorize_url(browser.stack, **authorization_params()))
    return answer.status_code == 302 and answer.headers["location"].startswith(SPA_REDIRECT_URI)


def sign_out(browser: Browser) -> None:
    home = browser.get(f"{browser.stack.url}/")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None, home.text
    assert browser.post(f"{browser.stack.url}/logout",
                        data={"_xsrf": xsrf.group(1)}).status_code == 303


def introspect(stack: Stack, token: str) -> dict[str, Any]:
    answer = httpx.post(f"{stack.url}/introspect", data={"token": token},
                        auth=INTROSPECTOR_AUTH, timeout=HANG_LIMIT)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_unavailable(answer: httpx.Response) -> None:
    """H9: the store's absence is a clear 503 that says nothing of the cause: a JSON error for
    an API client, a page for a browser."""
    assert answer.status_code == 503, answer.text
    if answer.headers["content-type"].startswith("application/json"):
        assert answer.json()["error"] == "temporarily_unavailable"
    else:
        assert "storage is unavailable" in answer.text
    assert "redis" not in answer.text.lower()


# ---------------------------------------------------------------------------------------------
# Sentinel


def test_T7_the_master_killed_after_a_rotation_fails_over_and_nothing_acknowledged_is_lost(
        sentinel_topology: SentinelTopology,
        topology_stack: Callable[..., tuple[Stack, str]]) -> None:
    topology = sentinel_topology
    topology.wait_healthy()  # ready for a failover: every sentinel knows the two others
    stack, _ = topology_stack(topology, store={"min_replicas_ack": 1},
                              tokens={"refresh_token_reuse_interval": 0})
    browser = stack.browser()
    first = tokens_for(stack, browser)
    rotated = refresh(stack, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()
    old_master = topology.current_master()
    old_master.kill()  # SIGKILL: the rotation's writes were acknowledged by a replica

    # The gap: the sentinels still name the dead master, then promote a replica, then point
    # the other replica at it. The signed-in browser asks for a code (its session read, the
    # code written and acknowledged): every answer is a 503 until it works, and none hangs (the
    # client's deadline).
    statuses = []
    for _ in range(GAP_REQUESTS):
        answer = browser.get(authorize_url(stack, **authorization_params()))
        statuses.append(answer.status_code)
        if answer.status_code != 503:
            break
        assert_unavailable(answer)
        asyncio.run(asyncio.sleep(GAP_PAUSE))
    assert statuses[0] == 503 and statuses[-1] == 302, statuses
    # The session written at the login survived: single sign-on, straight back to the app.
    assert answer.headers["location"].startswith(SPA_REDIRECT_URI), answer.headers
    new_master = topology.wait_failover(old_master)
    assert new_master is not old_master
    assert get(f"{stack.url}/userinfo", headers=bearer(successor["access_token"])
               ).status_code == 200

    # Nothing acknowledged was lost: the successor works (and rotates on), the rotated token
    # is refused (it was used: with no reuse interval, presenting it again ends the family).
    onward = refresh(stack, successor["refresh_token"])
    assert onward.status_code == 200, onward.text
    reused = refresh(stack, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # New logins work on the new master, and their writes are acknowledged there.
    other = stack.browser()
    assert tokens_for(stack, other)["access_token"]
    assert signed_in(other)
    topology.heal()  # the old master back, as a replica of the new one


def test_T7_with_the_replicas_stopped_a_write_is_a_503_never_a_success(
        sentinel_topology: SentinelTopology,
        topology_stack: Callable[..., tuple[Stack, str]]) -> None:
    topology = sentinel_topology
    topology.wait_healthy()  # no failover still settling from an earlier test
    stack, prefix = topology_stack(topology, store={"min_replicas_ack": 1})
    browser = stack.browser()
    tokens, other_family = tokens_for(stack, browser), tokens_for(stack, browser)
    replicas = [node for node in topology.data_nodes if node is not topology.current_master()]
    for replica in replicas:
        replica.signal(signal.SIGSTOP)  # frozen: connected, but acknowledging nothing
    try:
        # The store: the write reached the master, the answer is no success.
        async def write() -> None:
            store = RedisStore(topology.url(), password=PASSWORD,
                               sentinel_password=SENTINEL_PASSWORD, key_prefix=prefix,
                               min_replicas_ack=1)
            try:
                assert await store.get("session", "nothing") is None  # reads still served
                with pytest.raises(StoreUnavailable, match="0 of 1 replicas acknowledged"):
                    await store.put("session", "s", {"v": 1}, 60)
            finally:
                await store.close()
        asyncio.run(write())
        # The gateway: a refresh (rotation), a new login (its transaction) and a revocation
        # are 503s; what only reads (the revocation markers at /userinfo) still works.
        assert_unavailable(refresh(stack, tokens["refresh_token"]))
        assert_unavailable(stack.browser().start_login())
        revoke = httpx.post(f"{stack.url}/revoke", timeout=HANG_LIMIT,
                            data={"token": other_family["refresh_token"], "client_id": "spa"})
        assert_unavailable(revoke)
        assert get(f"{stack.url}/userinfo",
                   headers=bearer(tokens["access_token"])).status_code == 200
    finally:
        for replica in replicas:
            replica.signal(signal.SIGCONT)
    topology.heal()
    # The refresh tried again once the replicas answer: the same rotation, now acknowledged.
    again = refresh(stack, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert refresh(stack, again.json()["refresh_token"]).status_code == 200
    # A 503 undoes nothing: the revocation's marker was on the master, unacknowledged, and is
    # in force now (the client that got the 503 revokes again, which changes nothing).
    assert refresh(stack, other_family["refresh_token"]).json()["error"] == "invalid_grant"


def test_T7_without_min_replicas_ack_the_sentinel_store_never_waits(
        sentinel_topology: SentinelTopology) -> None:
    """The default (0): writes are answered by the master alone, even with every replica
    frozen (the contract suite runs the Sentinel store with 1)."""
    topology = sentinel_topology
    topology.wait_healthy()  # no failover still settling from an earlier test
    prefix = unique_prefix()
    replicas = [node for node in topology.data_nodes if node is not topology.current_master()]
    for replica in replicas:
        replica.signal(signal.SIGSTOP)
    try:
        async def write() -> None:
            store = RedisStore(topology.url(), password=PASSWORD,
                               sentinel_password=SENTINEL_PASSWORD, key_prefix=prefix)
            try:
                await store.put("session", "s", {"v": 1}, 60)
                assert await store.take("session", "s") == {"v": 1}
            finally:
                await store.close()
        asyncio.run(write())
    finally:
        for replica in replicas:
            replica.signal(signal.SIGCONT)
    topology.heal()
    topology.delete_prefix(prefix)


# ---------------------------------------------------------------------------------------------
# Cluster


def record_commands(stack: Stack) -> list[tuple[Any, ...]]:
    """Every command the gateway's Cluster client sends from now on, with its arguments."""
    client = stack.ctx.store._redis  # the store's RedisCluster
    sent: list[tuple[Any, ...]] = []
    send = client.execute_command

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        sent.append(args)
        return await send(*args, **kwargs)

    client.execute_command = recorded
    return sent


def keys_of(command: tuple[Any, ...]) -> list[str]:
    """The keys a store command touches: a script's KEYS, else the one after the name."""
    name = str(command[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return [str(key) for key in command[3:3 + int(command[2])]]
    if name in ("PING", "SCRIPT LOAD", "SCRIPT EXISTS"):
        return []
    return [str(command[1])]


def test_a_cluster_spreads_logins_refreshes_revocations_and_sign_outs_over_its_masters(
        cluster_topology: ClusterTopology,
        topology_stack: Callable[..., tuple[Stack, str]]) -> None:
    topology = cluster_topology
    stack, prefix = topology_stack(topology, tokens={"verify_checks_revocation": True})
    sent = record_commands(stack)
    browsers = [stack.browser() for _ in range(4)]
    issued = [tokens_for(stack, browser) for browser in browsers]
    rotated = []
    for tokens in issued:
        answer = refresh(stack, tokens["refresh_token"])
        assert answer.status_code == 200, answer.text
        rotated.append(answer.json())
    per_master = topology.keys_by_node(prefix)  # e.g. {'cluster-0': 13, 'cluster-1': 9, ...}
    assert sum(1 for count in per_master.values() if count) >= 2, per_master

    # Revocation (RFC 7009) of one family: its refresh and access tokens are dead, the others'
    # are not.
    revoked = httpx.post(f"{stack.url}/revoke", timeout=HANG_LIMIT,
                         data={"token": rotated[0]["refresh_token"], "client_id": "spa"})
    assert revoked.status_code == 200, revoked.text
    assert refresh(stack, rotated[0]["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(stack, rotated[0]["access_token"]) == {"active": False}
    assert get(f"{stack.url}/verify", headers=bearer(rotated[0]["access_token"])
               ).status_code == 401
    assert introspect(stack, rotated[1]["access_token"])["active"] is True

    # Sign-out ends the session (its indexes by sid and by user) and its families.
    assert signed_in(browsers[1])
    sign_out(browsers[1])
    assert not signed_in(browsers[1])
    assert refresh(stack, rotated[1]["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(stack, rotated[1]["access_token"]) == {"active": False}
    # The others are untouched.
    assert signed_in(browsers[2])
    assert refresh(stack, rotated[2]["refresh_token"]).status_code == 200

    # No command touched keys of two slots (a Cluster would refuse it): every one names one
    # key but the bounded namespaces' scripts, whose entry and index share a hash tag.
    touched = [keys_of(command) for command in sent]
    assert len(touched) > 100
    assert all(len({key_slot(key.encode()) for key in keys}) <= 1 for keys in touched)
    several = {key.split("}")[0] + "}" for keys in touched if len(keys) > 1 for key in keys}
    assert several == {f"{{{prefix}:login-tx}}", f"{{{prefix}:oidc-request}}"}, several


def test_a_cluster_master_restarted_and_the_service_recovers(
        cluster_topology: ClusterTopology,
        topology_stack: Callable[..., tuple[Stack, str]]) -> None:
    topology = cluster_topology
    stack, prefix = topology_stack(topology)
    browser = stack.browser()
    tokens = tokens_for(stack, browser)
    # The master of the login transactions' slot (the bounded namespace is one hash slot).
    victim = topology.node_for(f"{{{prefix}:login-tx}}#index")
    victim.stop()  # SIGTERM: it writes its append-only file and exits
    try:
        answers = [stack.browser().start_login(),
                   get(f"{stack.url}/userinfo", headers=bearer(tokens["access_token"])),
                   refresh(stack, tokens["refresh_token"])]
        assert_unavailable(answers[0])  # its transaction's slot is on the stopped master
        for answer in answers[1:]:
            assert answer.status_code in (200, 503), answer.text
    finally:
        victim.start()  # same port, configuration and data directory
    topology.wait_healthy()

    statuses = []
    for _ in range(GAP_REQUESTS):  # the gateway's client finds the node again by itself
        answer = stack.browser().start_login()
        statuses.append(answer.status_code)
        if answer.status_code == 302:
            break
        assert_unavailable(answer)
        asyncio.run(asyncio.sleep(GAP_PAUSE))
    assert statuses[-1] == 302, statuses
    assert signed_in(browser)  # the session outlived the restart
    onward = refresh(stack, tokens["refresh_token"])
    assert onward.status_code == 200, onward.text
    assert refresh(stack, onward.json()["refresh_token"]).status_code == 200
    assert tokens_for(stack, stack.browser())["access_token"]  # a new login


def test_a_burst_beyond_the_cluster_pools_waits_instead_of_failing(
        cluster_topology: ClusterTopology) -> None:
    """redis-py's Cluster pools refuse a connection beyond their size instead of waiting: the
    store keeps its operations in flight below it, so 1000 logins at once are all served."""
    prefix = unique_prefix()

    async def burst() -> None:
        store = RedisStore(cluster_topology.url(), password=PASSWORD, key_prefix=prefix,
                           namespace_limits={"login-tx": 5000})
        try:
            await asyncio.gather(*(store.put("login-tx", f"s-{i}", {"i": i}, 60)
                                   for i in range(1000)))
            taken = await asyncio.gather(*(store.take("login-tx", f"s-{i}") for i in range(1000)))
            assert taken == [{"i": i} for i in range(1000)]
        finally:
            await store.close()
    try:
        asyncio.run(burst())
    finally:
        cluster_topology.delete_prefix(prefix)
