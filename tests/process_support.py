"""Real gateway processes for the multi-process tests: `python -m gateway serve --config <toml>`
with a key made by `oauth-gateway keys generate`, a random cookie secret, and the Google stand-in
served in the test's event-loop thread (as gateway/dev/mode.py serves it), the gateway's
configuration pointing at it.

A `Deployment` is what replicas behind a load balancer share: one public issuer, one keys
directory, one cookie secret, one configuration file; each process differs only in its port
(`GATEWAY_LISTEN__PORT`). Every wait is bounded and every process is killed at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import tornado.httpserver
from conftest import Browser, LoopThread
from log_canaries import SCAN
from oidc_support import (
    INTROSPECTOR,
    INTROSPECTOR_AUTH,
    PUBLIC,
    authorization_params,
    authorize_url,
    bearer,
    complete_authorization,
    exchange,
    redirect_params,
)
from store_backends import free_port

from gateway.dev.standins import google
from gateway.server import bind, bound_port

START_TIMEOUT = 30.0  # seconds for a gateway process to answer /readyz
STOP_TIMEOUT = 15.0  # seconds for a gateway process to drain and exit after SIGTERM
READER_TIMEOUT = 5.0
POLL_INTERVAL = 0.02
HTTP_TIMEOUT = 10.0
ERROR_PREFIX = "oauth-gateway: configuration error: "
SUBPROCESS_TIMEOUT = 60


def clean_environ() -> dict[str, str]:
    """The test process's environment without any GATEWAY_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def run_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd,
                          env={**clean_environ(), **(env or {})}, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, check=False)


def assert_one_line_config_error(stderr: str, key: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(ERROR_PREFIX + key), stderr
    assert "Traceback" not in stderr


def toml_lines(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Enough TOML for a gateway configuration: values, [tables] and [[arrays of tables]]."""
    def is_table(value: Any) -> bool:
        return isinstance(value, Mapping)

    def is_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(map(is_table, value))

    lines = [f"{key} = {toml_value(value)}" for key, value in tree.items()
             if not is_table(value) and not is_tables(value)]
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if is_table(value):
            lines += ["", f"[{name}]", *toml_lines(value, name + ".")]
        elif is_tables(value):
            for item in value:
                lines += ["", f"[[{name}]]", *toml_lines(item, name + ".")]
    return lines


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string for the plain text used here


# ---------------------------------------------------------------------------------------------
# The upstream provider, in the test process


@dataclass
class GoogleUpstream:
    standin: google.GoogleStandIn
    section: dict[str, Any]  # the gateway's [providers.google]
    server: tornado.httpserver.HTTPServer


def start_google(loop: LoopThread, issuer: str, tls: ssl.SSLContext | None = None
                 ) -> GoogleUpstream:
    """The Google stand-in on loopback; over HTTPS with `tls` (a server context)."""
    sockets = bind("127.0.0.1", 0)
    scheme = "https" if tls else "http"
    standin, section = google.dev_provider(f"{scheme}://127.0.0.1:{bound_port(sockets)}", issuer)

    def serve() -> tornado.httpserver.HTTPServer:
        server = tornado.httpserver.HTTPServer(standin.make_app(), ssl_options=tls)
        server.add_sockets(sockets)
        return server

    return GoogleUpstream(standin, section, loop.call(serve))


# ---------------------------------------------------------------------------------------------
# Gateway processes


class GatewayProcess:
    """One `python -m gateway serve` process; its stderr is read by a thread (the pipe never
    fills) and kept for failure messages and the log scan (SECURITY L1)."""

    def __init__(self, config: Path, port: int, *, cwd: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), *args],
            cwd=cwd, env={**clean_environ(), "GATEWAY_LISTEN__PORT": str(port), **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
        self.lines.append("")  # end of output

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def assert_logged(self, text: str, timeout: float = 5.0) -> None:
        """`text` is in the log, once the reader thread has caught up with the pipe (a line
        written just before an answer may still be in flight when the answer arrives)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout:.0f}s:\n"
                                     f"{self.output}")
            time.sleep(POLL_INTERVAL)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until /readyz answers 200; fails at once, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n"
                                     f"{self.output}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(POLL_INTERVAL)
        raise AssertionError(f"gateway not ready within {timeout:.0f}s:\n{self.output}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit status (the process is killed if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"gateway did not stop within {timeout:.0f}s:\n"
                                 f"{self.output}") from None

    def close(self) -> None:
        """Stopped for good: SIGTERM, SIGKILL if it lingers. Its log joins the run's log scan
        (SECURITY L1, conftest.py)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self._reader.join(READER_TIMEOUT)  # workers may hold the pipe a moment longer
        SCAN.lines.extend(line.rstrip("\n") for line in self.lines if line)


@dataclass
class Deployment:
    """One gateway's shared configuration, and the processes started with it."""

    directory: Path
    issuer: str
    config: Path
    cookie_secret: str
    google: GoogleUpstream
    processes: list[GatewayProcess] = field(default_factory=list)

    def start(self, port: int | None = None, *, args: Sequence[str] = (),
              env: Mapping[str, str] | None = None, ready: bool = True) -> GatewayProcess:
        """A process of this deployment (on the issuer's port unless told otherwise)."""
        port = port or int(urlsplit(self.issuer).port or 0)
        process = GatewayProcess(self.config, port, cwd=self.directory, args=args, env=env)
        self.processes.append(process)
        if ready:
            process.wait_ready()
        return process

    def browser(self) -> Browser:
        return Browser(PublicAddress(self.issuer))

    def close(self, loop: LoopThread) -> None:
        for process in self.processes:
            process.close()
        loop.call(self.google.server.stop)


@dataclass
class PublicAddress:
    """What conftest.Browser and oidc_support need of a stack: its URL."""

    url: str


def write_deployment(directory: Path, loop: LoopThread, *, store: Mapping[str, Any],
                     issuer: str | None = None, tokens: Mapping[str, Any] | None = None,
                     upstream: Mapping[str, Any] | None = None,
                     provider_tls: ssl.SSLContext | None = None) -> Deployment:
    """Keys, a cookie secret, the Google stand-in (over HTTPS with `provider_tls`) and the
    configuration file; no process yet. `{directory}` in the store's URL is this deployment's
    directory (processes run in it)."""
    issuer = issuer or f"http://127.0.0.1:{free_port()}"
    keys = directory / "keys"
    generated = run_cli("keys", "generate", "--dir", str(keys), "--algorithm", "ES256",
                        cwd=directory)
    assert generated.returncode == 0, generated.stderr
    cookie_secret = secrets.token_urlsafe(36)  # 48 characters
    SCAN.register(cookie_secret, "cookie secret")
    google_upstream = start_google(loop, issuer, provider_tls)
    SCAN.register(google_upstream.section["client_secret"], "google client_secret")
    tree: dict[str, Any] = {
        "issuer": issuer,
        "listen": {"address": "127.0.0.1", "port": int(urlsplit(issuer).port or 0)},
        "tokens": {"keys_dir": str(keys), "algorithm": "ES256", **(tokens or {})},
        "cookies": {"secret": cookie_secret, "secure": False},  # http:// on loopback
        "store": {key: value.format(directory=directory) if isinstance(value, str) else value
                  for key, value in store.items()},
        "admin": {"enabled": False},  # no fixed admin port shared by several processes
        "upstream": dict(upstream or {}),
        "providers": {"google": google_upstream.section},
        "clients": [PUBLIC, INTROSPECTOR],
    }
    config = directory / "gateway.toml"
    config.write_text("\n".join(toml_lines(tree)) + "\n", encoding="utf-8")
    return Deployment(directory, issuer, config, cookie_secret, google_upstream)


def deployment_factory(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[Callable[..., Deployment]]:
    """For a test module's fixture: `make(store={...}, tokens={...})`; at the end, whatever
    happened, every process is stopped (killed if need be) and the stand-in too."""
    made: list[Deployment] = []

    def make(**kwargs: Any) -> Deployment:
        deployment = write_deployment(tmp_path_factory.mktemp("deployment"), loop, **kwargs)
        made.append(deployment)
        return deployment

    try:
        yield make
    finally:
        for deployment in made:
            deployment.close(loop)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until true; the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(POLL_INTERVAL)
    return time.monotonic() - started


def process_running(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not reaped yet, is not running)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def parent_of(pid: int) -> int | None:
    """The parent pid of a running process (Linux /proc), None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# What a test asks of gateway processes (through the OpenID Connect endpoints)


def code_flow(browser: Browser, gateway: GatewayProcess) -> dict[str, Any]:
    """The whole code flow through the issuer's process (an upstream login unless the session
    signs the user in), the code exchanged on `gateway`: its tokens."""
    answer = complete_authorization(browser, authorize_url(browser.stack,
                                                           **authorization_params()))
    tokens = exchange(gateway, redirect_params(answer)["code"])
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def introspection(gateway: GatewayProcess, token: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/introspect", data={"token": token},
                      auth=INTROSPECTOR_AUTH, timeout=HTTP_TIMEOUT)


def introspected(gateway: GatewayProcess, token: str) -> dict[str, Any]:
    """The introspection of `token`, answered with a 200."""
    answer = introspection(gateway, token)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def verify_status(gateway: GatewayProcess, access_token: str) -> int:
    return httpx.get(f"{gateway.url}/verify", headers=bearer(access_token),
                     timeout=HTTP_TIMEOUT).status_code


def racing_refreshes_successor(refresh_token: str, gateways: Sequence[GatewayProcess]) -> str:
    """Refresh `refresh_token` on all of `gateways` at once: every answer is a 200, all with
    one successor, which is returned (SECURITY T4)."""
    async def race() -> list[httpx.Response]:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": "spa"}
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            return list(await asyncio.gather(
                *(http.post(f"{gateway.url}/token", data=data) for gateway in gateways)))

    answers = asyncio.run(race())
    assert [answer.status_code for answer in answers] == [200] * len(gateways), \
        [a.text for a in answers]
    successors = {answer.json()["refresh_token"] for answer in answers}
    assert len(successors) == 1
    return successors.pop()
