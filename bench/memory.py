"""What the gateway's state costs in memory: sessions, and verified tokens in /verify's cache.

    .venv/bin/python bench/memory.py [--sessions 1000] [--tokens 10000] [--no-redis]

The gateway's own code on realistic data (Google logins: a 21-digit subject, an email, a name,
a picture URL of about 100 characters):

- sessions, memory store: `Sessions.start` into `MemoryStore` (one process, development mode),
  measured with tracemalloc (what Python allocated and still holds);
- sessions, Redis: the same into `RedisStore`, on a private redis-server this script starts on
  a free loopback port (never the machine's shared one) and stops; measured as the growth of
  Redis' `used_memory` (INFO memory). What a gateway process holds for them: nothing.
- verified tokens: `TokenVerifier.verify_as_json` on distinct RS256 access tokens of such
  logins (each with its `sid`), as /verify does; the cache (tokens.py, bounded by
  tokens.verified_cache_mb; unbounded here) keeps the token string, its claims and their
  JSON: tracemalloc again.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from ports import free_port

from gateway.identity import Identity
from gateway.keys import load_keyset
from gateway.sessions import Sessions
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier

ISSUER = "https://login.example.com"
LIFETIME, IDLE = 86400, 7200  # cookies.session_lifetime, session_idle_timeout defaults


def identity(n: int) -> Identity:
    """A Google login as the gateway maps it (gateway/providers/google.py)."""
    return Identity("google", f"{108_000_000_000_000_000_000 + n}",
                    email=f"user{n:06d}@example.com", email_verified=True,
                    name=f"Ada Lovelace {n}",
                    picture=f"https://lh3.googleusercontent.com/a/ACg8ocK{n:08d}"
                            "Xq9c7Lw3bT1mZpVf2HnR8sJd4KuYe6Gx0aQiWo5=s96-c")


def allocated(work: Callable[[], object]) -> tuple[int, object]:
    """Bytes Python allocated during `work` and still holds after it (and its result)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    result = work()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown, result


def start_sessions(store: Store, count: int, *, close: bool = False) -> list[str]:
    sessions = Sessions(store, lifetime=LIFETIME, idle_timeout=IDLE)

    async def run() -> list[str]:
        ids = [(await sessions.start(identity(n)))[0] for n in range(count)]
        if close:  # in the loop its connections belong to
            await store.close()
        return ids

    return asyncio.run(run())


def memory_store_sessions(count: int) -> int:
    store = MemoryStore(max_entries=10 * count + 1000)
    grown, ids = allocated(lambda: start_sessions(store, count))
    assert isinstance(ids, list) and len(ids) == count
    return grown


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, nothing saved; stopped after."""
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server), "
                         "or run with --no-redis")
    port = free_port()
    process = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port),  # noqa: S603
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def redis_sessions(count: int) -> int:
    with private_redis() as url:
        client = redis.Redis.from_url(url)
        before = int(client.info("memory")["used_memory"])
        store = RedisStore(url, key_prefix="bench-memory")
        start_sessions(store, count, close=True)
        return int(client.info("memory")["used_memory"]) - before


def cached_tokens(count: int) -> tuple[int, int]:
    """Bytes the verified cache holds for `count` tokens, and a token's length."""
    policy = TokenPolicy(ISSUER, (ISSUER,), lifetime=600, leeway=30)
    with tempfile.TemporaryDirectory() as keys_dir:
        keyset = load_keyset(Path(keys_dir), "RS256", generate_if_empty=True)
    issuer = TokenIssuer(keyset, policy)
    # Kept as bytes: each request's token string is made during the measurement, as a
    # request's would be, and is then held by the cache alone.
    tokens = [issuer.issue_access_token(identity(n), ISSUER, sid=f"sid{n:020d}").encode()
              for n in range(count)]
    verifier = TokenVerifier(keyset, policy, cache_bytes=2**40)

    def verify_all() -> TokenVerifier:
        for token in tokens:
            verifier.verify_as_json(token.decode())
        return verifier

    grown, _ = allocated(verify_all)
    return grown, len(tokens[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis figure")
    args = parser.parse_args()
    rows = []
    in_memory = memory_store_sessions(args.sessions)
    rows.append((f"{args.sessions:,} sessions, memory store (in the gateway process)",
                 in_memory, args.sessions))
    if not args.no_redis:
        in_redis = redis_sessions(args.sessions)
        rows.append((f"{args.sessions:,} sessions, Redis (in Redis; the gateway holds none)",
                     in_redis, args.sessions))
    cache, length = cached_tokens(args.tokens)
    rows.append((f"{args.tokens:,} verified tokens in /verify's cache (RS256, {length} "
                 "characters)", cache, args.tokens))
    print("| state | memory | per item |")
    print("|---|---|---|")
    for what, size, count in rows:
        print(f"| {what} | {size / 2**20:.1f} MiB | {size / count / 1024:.2f} KiB |")


if __name__ == "__main__":
    main()
