"""Load generator for full logins (bench/run.py starts it pinned to the load core).

Each login is a browser of its own (its own cookie jar): GET /login/google at the gateway, the
stand-in's authorization endpoint (a returning user: it redirects back at once), then GET
/callback/google at the gateway, which must answer a redirect that sets the access cookie.
HTTP/1.1 over raw asyncio streams: an HTTP client library would cost more CPU than the gateway
and measure itself.

    python bench/logins.py callback GATEWAY STANDIN --logins N --clients C
    python bench/logins.py c10k GATEWAY STANDIN --parked K --stall D --wrk-seconds W
    python bench/logins.py token GATEWAY STANDIN   # one login: its access token and cookies

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

CONNECT_AT_ONCE = 100  # the gateway listens with Tornado's backlog of 128


class LoginFailed(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class Connection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for Tornado's answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, target: str, *, cookies: dict[str, str] | None = None,
                      body: bytes = b"", content_type: str = "") -> Response:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = []
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status_line.split()[1]), headers, b"")
        length = response.header("content-length")
        if length is not None:
            response.body = await self.reader.readexactly(int(length))
        elif response.header("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            response.body = b"".join(c[:-2] for c in chunks)
        return response

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _store_cookies(jar: dict[str, str], response: Response) -> None:
    for name, value in response.headers:
        if name == "set-cookie":
            pair = value.split(";", 1)[0]
            key, _, val = pair.partition("=")
            jar[key.strip()] = val.strip()


def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Login:
    """One browser's login, split where the C10K scenario parks it (before the callback)."""

    gateway: Connection
    standin: Connection
    jar: dict[str, str] = field(default_factory=dict)
    callback: str = ""

    async def start_and_authorize(self) -> None:
        start = await self.gateway.request("GET", "/login/google")
        if start.status != 302:
            raise LoginFailed(f"login start {start.status}")
        _store_cookies(self.jar, start)
        # A returning user: the stand-in answers the authorization request with the redirect
        # back (bench/standin.py).
        back = await self.standin.request("GET", _target(start.header("location") or ""))
        if back.status != 302:
            raise LoginFailed(f"authorization {back.status}")
        self.callback = _target(back.header("location") or "")

    async def finish(self) -> None:
        done = await self.gateway.request("GET", self.callback, cookies=self.jar)
        _store_cookies(self.jar, done)
        if done.status != 302 or not any(k.endswith("gw_access") for k in self.jar):
            raise LoginFailed(f"callback {done.status}")


def _hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def callback_scenario(gateway: str, standin: str, logins: int,
                            clients: int) -> dict[str, Any]:
    """Scenario 3: `logins` full logins by `clients` concurrent browsers, as fast as it goes."""
    remaining = logins
    errors: dict[str, int] = {}
    latencies: list[float] = []

    async def browser() -> None:
        nonlocal remaining
        # Keep-alive to both, a fresh cookie jar for each login.
        connection = Connection(*_hostport(gateway))
        provider = Connection(*_hostport(standin))
        try:
            while remaining > 0:
                remaining -= 1
                login = Login(connection, provider)
                begun = time.perf_counter()
                try:
                    await login.start_and_authorize()
                    await login.finish()
                    latencies.append(time.perf_counter() - begun)
                except (LoginFailed, OSError, asyncio.IncompleteReadError) as e:
                    errors[str(e) or type(e).__name__] = errors.get(
                        str(e) or type(e).__name__, 0) + 1
                    connection.close()
                    provider.close()
        finally:
            connection.close()
            provider.close()

    started = time.perf_counter()
    await asyncio.gather(*(browser() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    ok = len(latencies)
    return {"logins": ok, "seconds": elapsed, "logins_per_second": ok / elapsed,
            "p50_ms": 1000 * latencies[ok // 2] if ok else 0.0,
            "p99_ms": 1000 * latencies[min(ok - 1, ok * 99 // 100)] if ok else 0.0,
            "errors": sum(errors.values()), "error_kinds": errors}


async def _stats(standin: str) -> dict[str, Any]:
    connection = Connection(*_hostport(standin))
    try:
        return dict(json.loads((await connection.request("GET", "/bench/stats")).body))
    finally:
        connection.close()


async def _control(standin: str, action: str) -> None:
    connection = Connection(*_hostport(standin))
    try:
        await connection.request("POST", f"/bench/{action}")
    finally:
        connection.close()


async def _idle_connection(gateway: str, limit: asyncio.Semaphore) -> Connection:
    """A keep-alive connection that made one request and then stays open, saying nothing."""
    connection = Connection(*_hostport(gateway))
    async with limit:
        response = await connection.request("GET", "/healthz")
    if response.status >= 500:
        raise LoginFailed(f"healthz {response.status}")
    return connection


async def c10k_scenario(gateway: str, standin: str, parked: int, stall: float,
                        wrk_seconds: float, wrk_runs: int, token: str, core: str) -> dict[str, Any]:
    """Scenario 2: `parked` logins held by the provider plus as many idle connections, while
    wrk measures /verify; then the time until every parked login finished."""
    verify = f"{gateway}/verify"
    result: dict[str, Any] = {"parked": parked, "stall": stall}
    # The idle baseline, just before.
    result["wrk_idle"] = [await _wrk_with_token(verify, wrk_seconds, token, core)
                          for _ in range(wrk_runs)]
    limit = asyncio.Semaphore(CONNECT_AT_ONCE)
    started = time.perf_counter()
    idle = await asyncio.gather(*(_idle_connection(gateway, limit) for _ in range(parked)),
                                return_exceptions=True)
    result["idle_open"] = sum(isinstance(c, Connection) for c in idle)
    logins = [Login(Connection(*_hostport(gateway)), Connection(*_hostport(standin)))
              for _ in range(parked)]

    async def prepare(login: Login) -> BaseException | None:
        async with limit:
            try:
                await login.start_and_authorize()
            except (LoginFailed, OSError, asyncio.IncompleteReadError) as e:
                return e
            finally:
                login.standin.close()  # the parked logins hold gateway connections only
        return None

    prepared = await asyncio.gather(*(prepare(login) for login in logins))
    ready = [login for login, e in zip(logins, prepared, strict=True) if e is None]
    result["prepare_errors"] = parked - len(ready)
    result["prepare_seconds"] = time.perf_counter() - started
    before = (await _stats(standin))["arrived"]
    await _control(standin, "hold")
    finished: list[float] = []
    errors: dict[str, int] = {}

    async def finish(login: Login) -> None:
        try:
            await login.finish()
            finished.append(time.perf_counter())
        except (LoginFailed, OSError, asyncio.IncompleteReadError) as e:
            errors[str(e) or type(e).__name__] = errors.get(str(e) or type(e).__name__, 0) + 1

    fired = time.perf_counter()
    tasks = [asyncio.create_task(finish(login)) for login in ready]
    # Parked: wait until the stand-in holds every code exchange, and at least `stall` seconds;
    # measure /verify while it holds them; then release them all at one moment.
    while True:
        stats = await _stats(standin)
        if stats["arrived"] - before >= len(ready) or time.perf_counter() - fired > 120:
            break
        await asyncio.sleep(0.05)
    result["park_seconds"] = time.perf_counter() - fired
    result["parked_held"] = stats["held"]
    await asyncio.sleep(max(0.0, fired + stall - wrk_runs * wrk_seconds - time.perf_counter()))
    result["wrk_parked_seconds"] = max(1, round(wrk_seconds))
    result["wrk_parked"] = [await _wrk_with_token(verify, wrk_seconds, token, core)
                            for _ in range(wrk_runs)]
    result["held_at_release"] = (await _stats(standin))["held"]
    released = time.perf_counter()
    await _control(standin, "release")
    await asyncio.gather(*tasks)
    done = time.perf_counter()
    last = max(finished) if finished else done
    result["hold_seconds"] = released - fired
    result["release_seconds"] = last - released
    result["total_seconds"] = last - fired
    result["finished"] = len(finished)
    result["errors"] = sum(errors.values()) + result["prepare_errors"] + (
        parked - result["idle_open"])
    result["error_kinds"] = errors
    for c in idle:
        if isinstance(c, Connection):
            c.close()
    for login in logins:
        login.gateway.close()
    return result


async def _wrk_with_token(url: str, seconds: float, token: str, core: str) -> str:
    # wrk's -H comes before the URL; rebuild the command with the header.
    command = ["wrk", "-t1", "-c100", f"-d{max(1, round(seconds))}s", "--latency",
               "-H", f"Authorization: Bearer {token}", url]
    if core:
        command = ["taskset", "-c", core, *command]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    return out.decode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["callback", "c10k", "token"])
    parser.add_argument("gateway")
    parser.add_argument("standin")
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--parked", type=int, default=5000)
    parser.add_argument("--stall", type=float, default=5.0)
    parser.add_argument("--wrk-seconds", type=float, default=3.0)
    parser.add_argument("--wrk-runs", type=int, default=3)
    parser.add_argument("--token", default="")
    parser.add_argument("--wrk-core", default="")
    args = parser.parse_args()
    if args.scenario == "callback":
        result = asyncio.run(callback_scenario(args.gateway, args.standin, args.logins,
                                               args.clients))
    elif args.scenario == "token":
        result = asyncio.run(_one_token(args.gateway, args.standin))
    else:
        result = asyncio.run(c10k_scenario(args.gateway, args.standin, args.parked, args.stall,
                                           args.wrk_seconds, args.wrk_runs, args.token,
                                           args.wrk_core))
    json.dump(result, sys.stdout)


async def _one_token(gateway: str, standin: str) -> dict[str, Any]:
    login = Login(Connection(*_hostport(gateway)), Connection(*_hostport(standin)))
    with contextlib.closing(login.gateway), contextlib.closing(login.standin):
        await login.start_and_authorize()
        await login.finish()
    # The browser's cookies after the login, as it sends them (a cleared one is gone).
    cookies = {name: value for name, value in login.jar.items() if value}
    return {"token": next(v for k, v in cookies.items() if k.endswith("gw_access")),
            "cookies": cookies}


if __name__ == "__main__":
    main()
