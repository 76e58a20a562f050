"""SECURITY L1 over the whole test run: every record of the gateway's and Tornado's loggers,
formatted as production formats it (JSON, gateway/logs.py), is kept, and after each test searched
for the secret values that test used: cookie secrets and client secrets of the stacks it started,
every cookie value, code and state the browser saw, and the tokens it was given (canaries).

conftest.py installs `SCAN` for the session and checks it after every test; helpers and tests
register what they handle with `SCAN.register(value, what)`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from gateway.logs import JsonFormatter, RequestIdFilter

WATCHED_LOGGERS = ("gateway", "tornado")
# Shorter values could appear in a log line by chance (a status, a word); every secret the
# gateway or a stand-in makes is far longer.
MIN_CANARY_LENGTH = 12
SECRET_PARAMETERS = ("code", "state", "oauth_token", "oauth_verifier", "access_token",
                     "id_token", "refresh_token", "client_secret")
TOKEN_MEMBERS = ("access_token", "id_token", "refresh_token")


@dataclass(frozen=True)
class Mark:
    line: int
    canary: int


class LogScan(logging.Handler):
    """Keeps every watched record as its JSON line, and the canaries tests registered."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []
        self.canaries: list[tuple[str, str]] = []  # (value, what it is), in registration order
        self.global_canaries: list[tuple[str, str]] = []  # checked after every test
        self._previous_levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def install(self) -> None:
        for name in WATCHED_LOGGERS:
            logger = logging.getLogger(name)
            self._previous_levels[name] = logger.level
            logger.setLevel(logging.DEBUG)  # everything is written somewhere in production
            logger.addHandler(self)

    def uninstall(self) -> None:
        for name, level in self._previous_levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(level)

    def register(self, value: Any, what: str, *, everywhere: bool = False) -> None:
        if isinstance(value, str) and len(value) >= MIN_CANARY_LENGTH:
            (self.global_canaries if everywhere else self.canaries).append((value, what))

    def register_response(self, response: httpx.Response) -> None:
        """Cookie values, and codes, states and tokens in a Location or a JSON token answer."""
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.register(rest.partition(";")[0].strip('"'), f"cookie {name}")
        location = response.headers.get("location")
        if location:
            self.register_url(location)
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                body = response.json()
            except ValueError:
                return
            if isinstance(body, dict):
                for member in TOKEN_MEMBERS:
                    self.register(body.get(member), member)

    def register_url(self, url: str) -> None:
        parts = urlsplit(url)
        for name, value in parse_qsl(parts.query) + parse_qsl(parts.fragment):
            if name in SECRET_PARAMETERS:
                self.register(value, f"{name} in a URL")

    def mark(self) -> Mark:
        return Mark(len(self.lines), len(self.canaries))

    def leaks_since(self, mark: Mark) -> list[str]:
        """Each canary registered since `mark` (and each global one) found in a line since."""
        lines = self.lines[mark.line:]
        canaries = self.canaries[mark.canary:] + self.global_canaries
        return list(_leaks(lines, canaries))


def _leaks(lines: list[str], canaries: Iterable[tuple[str, str]]) -> Iterable[str]:
    text = "\n".join(lines)
    for value, what in dict(canaries).items():  # once per value
        if value in text:
            line = next(line for line in lines if value in line)
            yield f"{what} ({value[:6]}...) appears in the log: {line[:300]}"


SCAN = LogScan()
