"""What `store.min_replicas_ack` costs a write: the Redis store's `put` with and without a WAIT
for one replica, against a master and one replica of the benchmark's own on loopback.

    .venv/bin/python bench/store_ack.py [--puts 2000] [--concurrency 50] [--runs 5]

Two loads, each measured without and with `min_replicas_ack = 1` in every round (the ratio is
the median of the rounds'): one put at a time (the latency a login's write adds) and
`--concurrency` puts at once (what a busy gateway process sees). Both servers are
`redis-server` processes on free ports in a temporary directory (no persistence); the shared
Redis on 6379 is not touched. On loopback the replica acknowledges within its next event loop
turn; across a network, add the round trip to the replica to every write.
"""

# ruff: noqa: S603 - it runs redis-server by name, as a person would

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from ports import free_port

from gateway.store.redis import RedisStore

START_DEADLINE = 10.0


@contextmanager
def master_and_replica() -> Iterator[int]:
    """A master and its replica, in sync; yields the master's port."""
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("bench/store_ack.py needs redis-server (Debian package redis-server)")
    processes = []
    with tempfile.TemporaryDirectory() as directory:
        master, replica = free_port(), free_port()
        try:
            for port, extra in ((master, []), (replica, ["--replicaof", "127.0.0.1", str(master)])):
                processes.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", directory,
                     "--repl-diskless-sync-delay", "0", *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            client = redis.Redis(port=master, socket_timeout=1, socket_connect_timeout=1)
            deadline = time.monotonic() + START_DEADLINE
            while True:
                try:
                    replica_state = client.info("replication").get("slave0", {})
                    if replica_state.get("state") == "online":
                        break
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the replica did not connect in time")
                time.sleep(0.05)
            client.close()
            yield master
        finally:
            for process in processes:
                process.kill()
                process.wait()


async def puts_per_second(url: str, acks: int, puts: int, concurrency: int) -> float:
    store = RedisStore(url, key_prefix="bench-ack", min_replicas_ack=acks)
    value = {"sub": "google:1234567890", "name": "Ada Lovelace", "email": "ada@example.com"}
    semaphore = asyncio.Semaphore(concurrency)

    async def put(i: int) -> None:
        async with semaphore:
            await store.put("session", f"k-{i % 1000}", value, 60)

    await put(-1)  # connected
    started = time.perf_counter()
    await asyncio.gather(*(put(i) for i in range(puts)))
    elapsed = time.perf_counter() - started
    await store.close()
    return puts / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    with master_and_replica() as port:
        url = f"redis://127.0.0.1:{port}/0"
        print("| load | puts/s, no wait | puts/s, WAIT 1 | ratio (spread) |")
        print("| --- | --- | --- | --- |")
        for concurrency in (1, options.concurrency):
            plain, waited, ratios = [], [], []
            for _ in range(options.runs):
                without = asyncio.run(puts_per_second(url, 0, options.puts, concurrency))
                with_ack = asyncio.run(puts_per_second(url, 1, options.puts, concurrency))
                plain.append(without)
                waited.append(with_ack)
                ratios.append(with_ack / without)
            print(f"| {concurrency} at a time | {statistics.median(plain):,.0f} | "
                  f"{statistics.median(waited):,.0f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
