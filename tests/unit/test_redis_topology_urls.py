"""Redis Sentinel and Cluster store URLs, and the settings that go with them: parsed, refused
with one line naming the key, described for logs without their passwords; and the keys a
Cluster store writes (a bounded namespace's entry and index in one hash slot). No socket: the
clients connect lazily. The stores themselves run in tests/http/test_redis_topologies.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from config_support import refusal, write_config, write_secret
from redis.crc import key_slot

from gateway import transactions
from gateway.config import Secret, load_settings
from gateway.oidc import grants
from gateway.store.factory import open_store
from gateway.store.location import parse_store_url
from gateway.store.redis import RedisStore

SENTINEL_URL = ("redis+sentinel://gw:s3cret-canary@10.0.0.1:26379,10.0.0.2,[::1]:26380"
                "/mymaster/2?socket_timeout=0.5&ssl_check_hostname=false")
CLUSTER_URL = "rediss+cluster://:s3cret-canary@redis-a.internal:7000,redis-b.internal:7001"


def test_a_sentinel_url_names_its_sentinels_master_and_database() -> None:
    location = parse_store_url(SENTINEL_URL)
    assert location.kind == "redis" and location.has_password
    topology = location.topology
    assert topology is not None and topology.kind == "sentinel" and not topology.tls
    assert topology.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (topology.service, topology.database) == ("mymaster", 2)
    assert (topology.username, topology.password) == ("gw", "s3cret-canary")
    assert dict(topology.options) == {"socket_timeout": 0.5, "ssl_check_hostname": False}
    assert "s3cret-canary" not in repr(location.topology)
    assert location.describe() == ("redis+sentinel master 'mymaster' db 2 via "
                                   "10.0.0.1:26379,10.0.0.2:26379,[::1]:26380")
    assert parse_store_url("redis+sentinel://h:1/m").topology.database == 0  # type: ignore[union-attr]


def test_a_cluster_url_names_its_nodes() -> None:
    location = parse_store_url(CLUSTER_URL)
    topology = location.topology
    assert topology is not None and topology.kind == "cluster" and topology.tls
    assert topology.nodes == (("redis-a.internal", 7000), ("redis-b.internal", 7001))
    assert location.describe() == "rediss+cluster redis-a.internal:7000,redis-b.internal:7001"
    assert "s3cret" not in location.describe()
    assert parse_store_url("redis+cluster://node").topology.nodes == (("node", 6379),)  # type: ignore[union-attr]


@pytest.mark.parametrize(("url", "words"), [
    ("redis+sentinel://h1:26379,h2:26379", "needs the master's name"),
    ("redis+sentinel://h1:26379,h2:26379/", "needs the master's name"),
    ("redis+sentinel://h1:26379/my master", "bad Sentinel master name"),
    ("redis+sentinel://h1:26379/m/zero", "database must be a number"),
    ("redis+sentinel://h1:0/m", "port must be a number from 1 to 65535"),
    ("redis+sentinel://h1:70000/m", "port must be a number from 1 to 65535"),
    ("redis+sentinel://h1:port/m", "port must be a number from 1 to 65535"),
    ("redis+cluster://h1:7000,h2:-1", "port must be a number from 1 to 65535"),
    ("redis+cluster://h1:7000,,h2:7001", "bad cluster node host"),
    ("redis+cluster://", "needs at least one cluster node"),
    ("redis+sentinel://:pw@/m", "needs at least one sentinel"),
    ("redis+cluster://[::1:7000", "write [IPv6]:port"),
    ("redis+cluster://h1:7000/0", "has no path"),
    ("redis+cluster://h1:7000?db=1", "unknown Redis URL option 'db'"),
    ("redis+sentinel://h1/m?retries=3", "unknown Redis URL option 'retries'"),
    ("redis+sentinel://h1/m?socket_timeout=soon", "must be a number"),
    ("redis+sentinel://h1/m?socket_timeout=0", "must be above 0"),
    ("redis+sentinel://h1/m?ssl_check_hostname=maybe", "must be true or false"),
    ("redis+cluster://h1?ssl_cert_reqs=some", "must be one of none, optional, required"),
    ("redis+cluster://h1#frag", "#fragment"),
])
def test_a_wrong_sentinel_or_cluster_url_is_one_line_naming_the_key(
        tmp_path: Path, url: str, words: str) -> None:
    error = refusal(write_config(tmp_path, {"store.url": url.replace("pw@", "hunter2-canary@")}))
    assert error.key == "store.url"
    assert words in str(error), str(error)
    assert "hunter2-canary" not in str(error)


def test_sentinel_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    sentinel_file = write_secret(tmp_path, "sentinel-password", "sentinel-canary-pw-7Kd")
    redis_file = write_secret(tmp_path, "redis-password", "redis-canary-pw-9Lx")
    settings = load_settings(write_config(tmp_path, {
        "store.url": "redis+sentinel://s1,s2,s3/gw/0", "store.min_replicas_ack": 1,
        "store.password_file": str(redis_file),
        "store.sentinel_password_file": str(sentinel_file)}), {})
    assert settings.store.sentinel_password == Secret("sentinel-canary-pw-7Kd")
    assert settings.store.password == Secret("redis-canary-pw-9Lx")
    assert settings.store.min_replicas_ack == 1
    assert "canary-pw" not in repr(settings)
    from_environment = load_settings(write_config(tmp_path), {
        "GATEWAY_STORE__URL": "redis+sentinel://s1/gw",
        "GATEWAY_STORE__SENTINEL_PASSWORD_FILE": str(sentinel_file),
        "GATEWAY_STORE__MIN_REPLICAS_ACK": "2"})
    assert from_environment.store.sentinel_password == Secret("sentinel-canary-pw-7Kd")
    assert from_environment.store.min_replicas_ack == 2


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"store.url": "redis://r/0", "store.sentinel_password": "x"}, "store.sentinel_password",
     "only for a redis+sentinel://"),
    ({"store.url": "redis+cluster://c1", "store.sentinel_password": "x"},
     "store.sentinel_password", "only for a redis+sentinel://"),
    ({"store.url": "redis+sentinel://:a@s1/m", "store.password": "b"}, "store.password",
     "holds a password already"),
    ({"store.url": "redis+cluster://c1", "store.min_replicas_ack": 1},
     "store.min_replicas_ack", "a Redis Cluster cannot wait for replicas"),
    ({"store.url": "sqlite:///var/lib/gw.db", "store.min_replicas_ack": 1},
     "store.min_replicas_ack", "the sqlite store cannot wait for replicas"),
    ({"store.min_replicas_ack": 1}, "store.min_replicas_ack", "cannot wait for replicas"),
    ({"store.url": "redis://r/0", "store.min_replicas_ack": -1}, "store.min_replicas_ack",
     "between 0 and 16"),
    ({"store.url": "redis+sentinel://s1/m", "store.min_replicas_ack": 17},
     "store.min_replicas_ack", "between 0 and 16"),
])
def test_T7_settings_a_store_cannot_honour_are_refused_at_load(
        tmp_path: Path, changes: dict[str, Any], key: str, words: str) -> None:
    error = refusal(write_config(tmp_path, changes))
    assert error.key == key
    assert words in str(error), str(error)


@pytest.mark.parametrize("url", ["redis://r:6379/0", "rediss://r:6380/1",
                                 "redis+sentinel://s1,s2,s3/gw/0", "rediss+sentinel://s1/gw"])
def test_T7_redis_and_sentinel_stores_accept_min_replicas_ack(tmp_path: Path, url: str) -> None:
    settings = load_settings(write_config(tmp_path, {"store.url": url,
                                                     "store.min_replicas_ack": 2}), {})
    assert settings.store.min_replicas_ack == 2


def test_open_store_builds_redis_stores_for_sentinel_and_cluster_urls(tmp_path: Path) -> None:
    async def scenario() -> None:
        for url in ("redis+sentinel://127.0.0.1:1,127.0.0.1:2/gw/0", "redis+cluster://127.0.0.1:1"):
            settings = load_settings(write_config(tmp_path, {"store.url": url,
                                                             "store.key_prefix": "gw-x"}), {})
            store = open_store(settings)  # connects lazily: the servers may come later
            assert isinstance(store, RedisStore)
            await store.close()
    asyncio.run(scenario())


def test_a_cluster_store_keeps_each_bounded_namespace_in_one_hash_slot() -> None:
    """The bounded namespaces' scripts touch an entry and the namespace's index: on a Cluster
    both must hash to one slot. Other keys keep their plain names and spread."""
    async def scenario() -> None:
        bounded = {transactions.NAMESPACE: 10, grants.REQUESTS: 10}
        cluster = RedisStore("redis+cluster://127.0.0.1:1", key_prefix="gw",
                             namespace_limits=bounded)
        single = RedisStore("redis://127.0.0.1:1/0", key_prefix="gw", namespace_limits=bounded)
        for namespace in bounded:
            index = cluster.index_key(namespace)
            assert index == f"{{gw:{namespace}}}#index"
            for key in ("a", "b", "{other}", "ключ"):
                assert key_slot(cluster.entry_key(namespace, key).encode()) == \
                    key_slot(index.encode())
            # One server or Sentinel: the names the store always had.
            assert single.entry_key(namespace, "a") == f"gw:{namespace}:a"
        assert cluster.entry_key("session", "a") == "gw:session:a"
        slots = {key_slot(cluster.entry_key("session", f"s-{i}").encode()) for i in range(20)}
        assert len(slots) > 10
        await cluster.close()
        await single.close()
    asyncio.run(scenario())
