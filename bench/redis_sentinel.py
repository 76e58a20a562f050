"""A Redis Sentinel topology of the benchmark's own: a master, its replicas and three sentinels,
each a `redis-server` (`--sentinel`) process on a free loopback port, in a temporary directory,
without persistence; the shared Redis on 6379 is never touched.

    with sentinel_topology() as url:   # redis+sentinel://127.0.0.1:p1,.../bench-master/0
        ...

The tests have a fuller one (tests/redis_topology.py: passwords, failovers, a Cluster); this is
what a benchmark needs: start, wait until the sentinels agree on the master and the replicas
acknowledge writes, stop. Every wait is bounded.
"""

# ruff: noqa: S603 - it runs redis-server by name, as a person would

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from ports import free_port

MASTER_NAME = "bench-master"
SENTINELS = 3
QUORUM = 2
START_DEADLINE = 30.0  # seconds; the sentinels must find each other on a busy machine
POLL = 0.05


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (Redis errors count as not yet) until it holds, or give up."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        time.sleep(POLL)
    raise RuntimeError(f"{what}: not within {START_DEADLINE:.0f} s")


def start_node(directory: Path, name: str, port: int, lines: list[str], *,
               sentinel: bool = False) -> subprocess.Popen[bytes]:
    """One `redis-server` from a configuration file of its own (sentinels rewrite theirs)."""
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("the Sentinel benchmark needs redis-server (Debian package redis-server)")
    home = directory / name
    home.mkdir()
    config = home / "redis.conf"
    config.write_text("\n".join([f"port {port}", "bind 127.0.0.1", f"dir {home}",
                                 f"logfile {home / 'redis.log'}", *lines]) + "\n")
    command = [server, str(config), *(["--sentinel"] if sentinel else [])]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def data_node_lines(master_port: int | None) -> list[str]:
    lines = ['save ""', "appendonly no", "repl-diskless-sync yes", "repl-diskless-sync-delay 0"]
    return lines + ([f"replicaof 127.0.0.1 {master_port}"] if master_port is not None else [])


def sentinel_lines(master_port: int) -> list[str]:
    return [f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER_NAME} 5000"]


def wait_ready(master_port: int, sentinel_ports: list[int], replicas: int) -> None:
    """Until every sentinel names the master and knows the other sentinels, and the replicas
    acknowledge a write on the master."""
    def sentinels_agree() -> bool:
        for port in sentinel_ports:
            with redis.Redis(port=port, socket_timeout=1) as client:
                state = client.execute_command("SENTINEL", "MASTER", MASTER_NAME)
                if int(state[b"port"]) != master_port or \
                        int(state[b"num-other-sentinels"]) != len(sentinel_ports) - 1:
                    return False
        return True

    def replicated() -> bool:
        with redis.Redis(port=master_port, socket_timeout=1) as client:
            probe = client.pipeline(transaction=False)  # WAIT counts this connection's write
            probe.set("bench-sentinel:probe", "1")
            probe.wait(replicas, 500)
            return bool(probe.execute()[1] == replicas)

    until(replicated, f"{replicas} replica(s) acknowledging the master's writes")
    until(sentinels_agree, f"{len(sentinel_ports)} sentinels agreeing on the master")


@contextlib.contextmanager
def sentinel_topology(replicas: int = 1, database: int = 0) -> Iterator[str]:
    """A master, `replicas` replicas and three sentinels, ready: yields the `store.url`."""
    with tempfile.TemporaryDirectory(prefix="bench-sentinel-") as tmp:
        directory, processes = Path(tmp), []
        try:
            master = free_port()
            processes.append(start_node(directory, "master", master, data_node_lines(None)))
            for i in range(replicas):
                processes.append(start_node(directory, f"replica-{i}", free_port(),
                                            data_node_lines(master)))
            sentinels = [free_port() for _ in range(SENTINELS)]
            for i, port in enumerate(sentinels):
                processes.append(start_node(directory, f"sentinel-{i}", port,
                                            sentinel_lines(master), sentinel=True))
            wait_ready(master, sentinels, replicas)
            hosts = ",".join(f"127.0.0.1:{port}" for port in sentinels)
            yield f"redis+sentinel://{hosts}/{MASTER_NAME}/{database}"
        finally:
            for process in processes:
                process.kill()
                process.wait()
