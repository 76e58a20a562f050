"""Redis topologies of the tests' own, as production runs them: a master with two replicas
watched by three sentinels, and a Cluster of three masters. Every node is a `redis-server`
process on a free loopback port, in a temporary directory, with a password (the sentinels
with one of their own); never the shared Redis on 6379.

Starting them takes a few seconds (the sentinels must find each other, the cluster must agree
on its slots), so a test module starts each once and its tests share it; a test that breaks
one (kills the master, stops the replicas) heals it before it ends. Every wait is a bounded
loop. Without `redis-server` or `redis-cli` the tests fail under CI=true and are skipped
elsewhere (tests/store_backends.py).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis
from log_canaries import SCAN
from redis.crc import key_slot
from store_backends import free_port, unavailable

PASSWORD = "Rq7-data-nodes-Vx2mK9pL4sT8wZ3"  # the Redis servers' (store.password_file)
SENTINEL_PASSWORD = "Sn4-sentinels-Hb6jD1fG5kM0qW8"  # the sentinels' (store.sentinel_password_file)
SCAN.register(PASSWORD, "Redis password", everywhere=True)
SCAN.register(SENTINEL_PASSWORD, "Sentinel password", everywhere=True)

MASTER_NAME = "gw-master"
DOWN_AFTER_MS = 1500  # a sentinel calls the master down after this silence; shorter, a busy
# 2-core machine saw a spurious failover between two tests
FAILOVER_TIMEOUT_MS = 2000
CLUSTER_NODE_TIMEOUT_MS = 1000
CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000
WAIT_DEADLINE = 30.0  # seconds any topology change may take on a busy 2-core machine
POLL = 0.05
T = TypeVar("T", "SentinelTopology", "ClusterTopology")


def executables() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable("redis-server and redis-cli are not installed")
    assert server is not None and cli is not None
    return server, cli


def until(condition: Callable[[], bool], what: str, deadline: float = WAIT_DEADLINE) -> None:
    """Poll `condition` until it holds; fail saying `what` did not happen in time."""
    end = time.monotonic() + deadline
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:.0f} s")
        time.sleep(POLL)


def free_cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (10000 above it) is free too."""
    for _ in range(100):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + CLUSTER_BUS_OFFSET):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of ports for a cluster node")


class Node:
    """One `redis-server` (or sentinel) process with its configuration file and directory."""

    def __init__(self, directory: Path, name: str, lines: list[str], *,
                 sentinel: bool = False, cluster: bool = False,
                 password: str = PASSWORD) -> None:
        self.server, _ = executables()
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_cluster_port() if cluster else free_port()
        self.sentinel = sentinel
        self.password = password
        self.config = self.directory / "redis.conf"
        self.config.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.directory}",
            f"requirepass {password}", f"logfile {self.directory / 'redis.log'}", *lines,
        ]) + "\n")
        self.config.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=timeout,
                           socket_connect_timeout=timeout)

    def start(self) -> None:
        assert self.process is None
        # The configuration file as the only argument: sentinels rewrite it as they learn.
        command = [self.server, str(self.config)] + (["--sentinel"] if self.sentinel else [])
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}: "
                                     + self.log_tail())
            with self.client(timeout=0.5) as client:
                return bool(client.ping())
        until(answers, f"{self.name} answering on {self.address}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing saved, connections reset."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(WAIT_DEADLINE)
            self.process = None

    def stop(self) -> None:
        """SIGTERM: Redis saves what it persists and exits."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(WAIT_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT_DEADLINE)
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as client:
            return dict(client.info(section))

    def log_tail(self, lines: int = 15) -> str:
        log = self.directory / "redis.log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""


class SentinelTopology:
    """A master, two replicas, three sentinels (quorum 2) with short failure timeouts."""

    def __init__(self, directory: Path) -> None:
        executables()
        self.directory = directory
        self.master = self._data_node("node-0", replica_of=None)
        self.replicas = [self._data_node(f"node-{i}", replica_of=self.master)
                         for i in (1, 2)]
        self.data_nodes = [self.master, *self.replicas]
        self.sentinels = [Node(directory, f"sentinel-{i}", [
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 2",
        ], sentinel=True, password=SENTINEL_PASSWORD) for i in range(3)]

    def _data_node(self, name: str, replica_of: Node | None) -> Node:
        lines = ["save \"\"", "appendonly no", f"masterauth {PASSWORD}",
                 "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
                 "repl-ping-replica-period 1"]
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of.port}")
        return Node(self.directory, name, lines)

    def url(self, *, database: int = 0, query: str = "") -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/{database}" + (f"?{query}" if query else "")

    def start(self) -> None:
        for node in [*self.data_nodes, *self.sentinels]:
            node.start()
        self.wait_healthy()

    def node_at(self, port: int) -> Node:
        return next(node for node in self.data_nodes if node.port == port)

    def master_port(self, sentinel: Node) -> int:
        with sentinel.client() as client:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                 MASTER_NAME)
        return int(port)

    def current_master(self) -> Node:
        return self.node_at(self.master_port(self.sentinels[0]))

    def wait_replicating(self) -> Node:
        """Until every sentinel names one master, and both replicas acknowledge a write on it
        (what the store needs: the master found, writes acknowledged). Returns the master."""
        def replicating() -> bool:
            ports = {self.master_port(sentinel) for sentinel in self.sentinels}
            if len(ports) != 1:
                return False
            with self.node_at(ports.pop()).client() as client:
                if client.info("replication").get("role") != "master":
                    return False
                probe = client.pipeline(transaction=False)  # WAIT counts this connection's write
                probe.set("redis-topology:probe", "1")
                probe.wait(len(self.replicas), 500)
                _, acknowledged = probe.execute()
            return bool(acknowledged == len(self.replicas))
        until(replicating, "one master, named by every sentinel, both replicas acknowledging")
        return self.current_master()

    def wait_healthy(self) -> None:
        """Replicating, and every sentinel sees the master, its two replicas and the two other
        sentinels without a fault: ready for a failover. (After one, the sentinels take up to
        their 10 s INFO period to settle again.)"""
        self.wait_replicating()

        def ready() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.execute_command("SENTINEL", "MASTER", MASTER_NAME)
                    replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                if (state[b"flags"] != b"master" or state[b"num-slaves"] != b"2"
                        or state[b"num-other-sentinels"] != b"2"):
                    return False
                if any(replica[b"flags"] != b"slave" for replica in replicas):
                    return False
            return True
        until(ready, "the sentinels ready for a failover (3 sentinels, 1 master, 2 replicas)")

    def wait_failover(self, old: Node) -> Node:
        """Until every sentinel names a new master that says it is one."""
        def promoted() -> bool:
            ports = {self.master_port(sentinel) for sentinel in self.sentinels}
            if len(ports) != 1 or old.port in ports:
                return False
            return self.node_at(next(iter(ports))).info("replication")["role"] == "master"
        until(promoted, "a replica promoted by the sentinels")
        return self.current_master()

    def heal(self) -> None:
        """Restart what a test killed (a former master comes back as a replica) and resume
        what it froze, then wait until the master has both replicas again."""
        master = self.current_master()
        for node in self.data_nodes:
            if node.running:
                node.signal(signal.SIGCONT)
            else:
                # Straight back as the new master's replica: the sentinels would convert it,
                # but only after their next look at it (up to 10 s).
                with node.config.open("a") as config:
                    config.write(f"replicaof 127.0.0.1 {master.port}\n")
                node.process = None
                node.start()
        self.wait_replicating()

    def delete_prefix(self, prefix: str) -> None:
        delete_keys(self.current_master(), prefix)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            if node.running:
                node.signal(signal.SIGCONT)
            node.kill()


class ClusterTopology:
    """Three masters sharing the 16384 slots, no replicas, append-only files on disk (a
    master stopped with SIGTERM and started again keeps its keys)."""

    def __init__(self, directory: Path) -> None:
        _, self.cli = executables()
        self.masters = [Node(directory, f"cluster-{i}", [
            "cluster-enabled yes", "cluster-config-file nodes.conf",
            f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}", f"masterauth {PASSWORD}",
            "appendonly yes", "save \"\"",
        ], cluster=True) for i in range(3)]

    def url(self, *, query: str = "") -> str:
        hosts = ",".join(node.address for node in self.masters)
        return f"redis+cluster://{hosts}" + (f"?{query}" if query else "")

    def start(self) -> None:
        for node in self.masters:
            node.start()
        # The password by environment, never on a command line.
        created = subprocess.run(
            [self.cli, "--cluster", "create", *(node.address for node in self.masters),
             "--cluster-replicas", "0", "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": PASSWORD}, capture_output=True, text=True,
            timeout=WAIT_DEADLINE, check=False)
        assert created.returncode == 0, created.stdout + created.stderr
        self.wait_healthy()

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            for node in self.masters:
                info = node.info("cluster")
                with node.client() as client:
                    state = client.execute_command("CLUSTER", "INFO")
                text = state.decode() if isinstance(state, bytes) else str(state)
                if "cluster_state:ok" not in text or "cluster_known_nodes:3" not in text:
                    return False
                if info.get("cluster_enabled") != 1:
                    return False
            return True
        until(healthy, "the Cluster's three masters agreeing it is ok")

    def keys_by_node(self, prefix: str) -> dict[str, int]:
        """How many keys under `prefix` (hash-tagged ones too) each master holds."""
        counts = {}
        for node in self.masters:
            with node.client() as client:
                counts[node.name] = sum(1 for pattern in (f"{prefix}:*", f"{{{prefix}:*")
                                        for _ in client.scan_iter(match=pattern, count=1000))
        return counts

    def node_for(self, key: str) -> Node:
        """The master serving `key`'s hash slot."""
        slot = key_slot(key.encode())
        with self.masters[0].client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        for start, end, (_host, port, *_), *_replicas in ranges:
            if start <= slot <= end:
                return next(node for node in self.masters if node.port == int(port))
        raise AssertionError(f"no master serves slot {slot}")

    def restart(self, node: Node) -> None:
        """SIGTERM (Redis writes its append-only file and exits), then the same node again:
        same port, configuration and data directory."""
        node.stop()
        node.start()
        self.wait_healthy()

    def delete_prefix(self, prefix: str) -> None:
        for node in self.masters:
            delete_keys(node, prefix)

    def stop(self) -> None:
        for node in self.masters:
            node.kill()


def delete_keys(node: Node, prefix: str) -> None:
    """Remove the keys a test wrote under its prefix from one server, one at a time (a
    cluster node refuses a DEL of keys in several slots); hash-tagged keys start with `{`."""
    with node.client(timeout=5) as client:
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            for key in list(client.scan_iter(match=pattern, count=1000)):
                client.delete(key)


@contextmanager
def running(topology: T) -> Iterator[T]:
    """Start a topology for a fixture, and always tear it down."""
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
