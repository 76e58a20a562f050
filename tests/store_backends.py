"""Redis for the store tests: the shared one on 127.0.0.1:6379 (`.ci/run` makes sure it runs),
and private `redis-server` processes that a test may stop and restart.

Without Redis these tests fail when CI=true and are skipped, saying why, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Fail in CI, where Redis must be there; skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run should have started it)")
    pytest.skip(reason)


def require_redis(url: str = REDIS_URL) -> str:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        unavailable(f"Redis is not reachable at {url} ({type(e).__name__})")
    finally:
        client.close()
    return url


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Remove every key a test wrote under its prefix."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A `redis-server` of the test's own, on a free port, without persistence, that it can
    stop and start again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            unavailable("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None and self.executable is not None
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        raise AssertionError(
                            f"redis-server exited with {self.process.returncode}") from None
                    if time.monotonic() > deadline:
                        raise AssertionError("redis-server did not answer in time") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(START_TIMEOUT)
            self.process = None
