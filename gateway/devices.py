"""A session's device as its user would name it ("Firefox on Linux"), read from the User-Agent.

Only a short description made of known names is kept in the session record, never the raw
header: the list of a user's sessions shows it, and a crafted header cannot put arbitrary text
there. The order of the rules matters: Edge and Opera say "Chrome" too, Chrome says "Safari",
and Android says "Linux".
"""

from __future__ import annotations

import functools
import re

UNKNOWN = "Unknown device"
MAX_USER_AGENT = 512  # longer headers are read only this far

# (pattern, name): the first that matches wins.
BROWSERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name) for pattern, name in (
        (r"\bEdg(?:e|A|iOS)?/", "Edge"),
        (r"\bOPR/|\bOpera\b", "Opera"),
        (r"\bSamsungBrowser/", "Samsung Internet"),
        (r"\bFirefox/|\bFxiOS/", "Firefox"),
        (r"\bCriOS/|\bChrome/|\bHeadlessChrome/", "Chrome"),
        (r"\bChromium/", "Chromium"),
        (r"\bVersion/[\d.]+.*\bSafari/", "Safari"),
        (r"^curl/", "curl"),
        (r"^python-httpx/|^python-requests/|^Python-urllib/", "Python"),
    ))

SYSTEMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name) for pattern, name in (
        (r"\biPhone\b", "iPhone"),
        (r"\biPad\b", "iPad"),
        (r"\bAndroid\b", "Android"),
        (r"\bCrOS\b", "ChromeOS"),
        (r"\bWindows\b", "Windows"),
        (r"\bMac OS X\b|\bMacintosh\b", "macOS"),
        (r"\bLinux\b|\bX11\b", "Linux"),
    ))


def describe_device(user_agent: str | None) -> str:
    """"<browser> on <system>", either alone when the other is unknown, or "Unknown device"."""
    return _described((user_agent or "")[:MAX_USER_AGENT])


# Users share a handful of browsers: each header is matched against the rules once.
@functools.lru_cache(maxsize=1024)
def _described(header: str) -> str:
    browser = _first(BROWSERS, header)
    system = _first(SYSTEMS, header)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or UNKNOWN


def _first(rules: tuple[tuple[re.Pattern[str], str], ...], header: str) -> str | None:
    for pattern, name in rules:
        if pattern.search(header):
            return name
    return None
