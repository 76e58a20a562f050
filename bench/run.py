"""The benchmark: starts the gateway as a user would, loads it with wrk on loopback, and prints
figures as ratios against a bare Tornado hello-world measured in the same run.

    .venv/bin/python bench/run.py            # every scenario, 3 runs of 5 s each
    .venv/bin/python bench/run.py --quick    # 1 run of 2 s each, to check it works

Needs `wrk` (Debian package `wrk`) and `taskset`. Each server is pinned to core 0 and wrk to
core 1, so the two do not fight over one core; the machine is shared and noisy, so every figure
is the median of several runs, with the spread (min-max) beside it.
"""

# ruff: noqa: S603, S607 - it runs wrk, taskset and the gateway by name, as a person would

from __future__ import annotations

import argparse
import contextlib
import html.parser
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

BENCH_DIR = Path(__file__).resolve().parent
SERVER_CORE, LOAD_CORE = "0", "1"
CONNECTIONS = 100
UNIQUE_BAD_SIGNATURE_LUA = """
-- A new, well-formed token with a random signature on every request: refusals cannot be cached.
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local prefix = os.getenv("TOKEN_PREFIX")
local siglen = tonumber(os.getenv("SIG_LENGTH"))
request = function()
  local sig = {}
  for i = 1, siglen do
    local n = math.random(1, 64)
    sig[i] = alphabet:sub(n, n)
  end
  local token = prefix .. table.concat(sig)
  return wrk.format("GET", "/verify", {["Authorization"] = "Bearer " .. token})
end
"""


@dataclass(frozen=True)
class Figure:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True)
class Row:
    scenario: str
    runs: list[Figure]

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(run, attribute) for run in self.runs))

    def spread(self, attribute: str) -> str:
        values = [getattr(run, attribute) for run in self.runs]
        return f"{min(values):.0f}-{max(values):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per figure")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    runs, seconds = (1, 2) if args.quick else (args.runs, args.seconds)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench: `{tool}` is missing (apt-get install wrk util-linux)", file=sys.stderr)
            return 2
    print(f"# oauth-gateway benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
          f"wrk -c{CONNECTIONS}, {runs} x {seconds}s per figure, fd limit "
          f"{_fd_limit()}")
    rows: list[Row] = []
    with _server([sys.executable, str(BENCH_DIR / "hello.py")]) as port:
        rows.append(_measure("hello world (bare Tornado)", f"http://127.0.0.1:{port}/", runs,
                             seconds))
    for algorithm in ("RS256", "ES256", "EdDSA"):
        with _gateway(algorithm) as (base, token):
            rows.append(_measure(f"/verify valid token, {algorithm}", f"{base}/verify", runs,
                                 seconds, headers={"Authorization": f"Bearer {token}"}))
            if algorithm == "RS256":
                head, payload, signature = token.split(".")
                rows.append(_measure(
                    "/verify unique bad signatures, RS256", f"{base}/verify", runs, seconds,
                    lua=UNIQUE_BAD_SIGNATURE_LUA,
                    env={"TOKEN_PREFIX": f"{head}.{payload}.",
                         "SIG_LENGTH": str(len(signature))},
                    expect_status=401))
    _print_table(rows)
    return 0


def _measure(name: str, url: str, runs: int, seconds: int, *, headers: dict[str, str] | None
             = None, lua: str | None = None, env: dict[str, str] | None = None,
             expect_status: int = 200) -> Row:
    figures = []
    for _ in range(runs):
        figures.append(_wrk(url, seconds, headers or {}, lua, env or {}, expect_status))
    print(f"  measured {name}: {statistics.median(f.requests_per_second for f in figures):.0f}"
          " req/s", file=sys.stderr)
    return Row(name, figures)


def _wrk(url: str, seconds: int, headers: dict[str, str], lua: str | None,
         env: dict[str, str], expect_status: int) -> Figure:
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
               "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua or "")
    if lua:
        command += ["-s", script.name]
    try:
        output = subprocess.run([*command, url], capture_output=True, text=True, check=True,
                                env={**os.environ, **env}, timeout=seconds + 30).stdout
    finally:
        os.unlink(script.name)
    return _parse_wrk(output, expect_status)


def _parse_wrk(output: str, expect_status: int) -> Figure:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latencies = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    if expect_status < 300 and non_2xx:
        errors += int(non_2xx.group(1))
    return Figure(rps, _ms(latencies["50"]), _ms(latencies["99"]), errors)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[str(unit)]


def _print_table(rows: list[Row]) -> None:
    baseline = rows[0]
    base_rps, base_p99 = baseline.median("requests_per_second"), baseline.median("p99_ms")
    print()
    print("| scenario | req/s (median, spread) | x hello | p50 ms | p99 ms | p99 x hello "
          "| errors |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        rps = row.median("requests_per_second")
        p99 = row.median("p99_ms")
        print(f"| {row.scenario} | {rps:.0f} ({row.spread('requests_per_second')}) "
              f"| {rps / base_rps:.2f} | {row.median('p50_ms'):.2f} | {p99:.2f} "
              f"| {p99 / base_p99:.2f} | {sum(r.errors for r in row.runs)} |")


@contextlib.contextmanager
def _server(command: list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    port = _free_port()
    process = subprocess.Popen(["taskset", "-c", SERVER_CORE, *command, str(port)],
                               env={**os.environ, **(env or {})})
    try:
        _wait_for_port(port)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)


@contextlib.contextmanager
def _gateway(algorithm: str) -> Iterator[tuple[str, str]]:
    """`oauth-gateway serve --dev` as a user starts it, and an access token from a real login."""
    with tempfile.TemporaryDirectory() as state:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_LISTEN__PORT=str(port), GATEWAY_DEV__PROVIDER_PORT="0",
                   GATEWAY_ADMIN__PORT="0", GATEWAY_DEV__STATE_DIR=state,
                   GATEWAY_TOKENS__ALGORITHM=algorithm)
        process = subprocess.Popen(["taskset", "-c", SERVER_CORE, sys.executable, "-m",
                                    "gateway", "serve", "--dev"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            base = f"http://localhost:{port}"
            yield base, _login(base)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(20)


def _login(base: str) -> str:
    with httpx.Client(timeout=10) as client:
        start = client.get(f"{base}/login/google", follow_redirects=False)
        consent = client.get(start.headers["location"])
        form = _Form()
        form.feed(consent.text)
        back = client.post(urljoin(start.headers["location"], form.action),
                           data={**form.inputs, "user": "ada"}, follow_redirects=False)
        client.get(back.headers["location"], follow_redirects=False)
        return next(v for k, v in client.cookies.items() if k.endswith("gw_access"))


class _Form(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.inputs[a["name"]] = a.get("value", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _fd_limit() -> str:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}/{hard}"


if __name__ == "__main__":
    sys.exit(main())
