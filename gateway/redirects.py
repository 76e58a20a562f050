"""Which `return_to` URLs a login may send the browser back to (SECURITY R2, RFC 9700 4.11).

An allowed entry is an origin plus a path prefix (`https://app.example.com/dashboard/`). A
candidate passes only if it is an absolute http(s) URL whose scheme, host and port equal an
entry's exactly and whose path lies under the entry's prefix. Anything a browser might read
differently from us is refused outright rather than normalised: backslashes, control characters
and whitespace, user info, percent-encoded separators or dots, dot segments, non-ASCII hosts.

Development mode (`serve --dev`) adds `DEV_LOOPBACK_RETURNS`: an app on this machine at
`http://localhost`, `http://127.0.0.1` or `http://[::1]` on any port, so that an example app
next to the dev gateway needs no setting. Those hosts are compared as exact strings after the
same checks, so `localhost.evil.example`, `127.0.0.1.evil.example` and `evil@localhost` never
pass; nor does the rest of 127.0.0.0/8 (`127.0.0.2`, `127.1`): nothing local listens there by
default, and a narrow rule is easier to trust. Production settings never get these entries.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_RETURN_TO_LENGTH = 2048
# Anything below 0x21 (controls, space), DEL, backslash, and non-ASCII: browsers strip or
# rewrite these in ways that differ from urllib, so they never appear in a URL we accept.
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]|[^\x00-\x7f]")
# Encoded "/", "\", "." or "%" in the path can turn into separators or dot segments later.
_ENCODED_SEPARATORS = re.compile(r"%(2f|5c|2e|25)", re.IGNORECASE)
_HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")


@dataclass(frozen=True)
class AllowedReturn:
    scheme: str
    netloc: str  # lower-case host[:port] exactly as configured; the host alone when any_port
    path_prefix: str  # always ends with "/"
    any_port: bool = False  # development mode's loopback entries only

    @classmethod
    def parse(cls, url: str) -> AllowedReturn:
        parts = urlsplit(url)
        path = parts.path or "/"
        if not path.endswith("/"):
            path += "/"
        return cls(parts.scheme.lower(), parts.netloc.lower(), path)

    def admits(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        """`host` as written in a URL (IPv6 in brackets), lower case; `port` only if explicit."""
        netloc = host if self.any_port or port is None else f"{host}:{port}"
        if scheme != self.scheme or netloc != self.netloc:
            return False
        return path.startswith(self.path_prefix) or path + "/" == self.path_prefix


# Development mode only: apps on this machine, on whatever port they run (see the docstring).
DEV_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
DEV_LOOPBACK_RETURNS = tuple(AllowedReturn("http", host, "/", any_port=True)
                             for host in DEV_LOOPBACK_HOSTS)


def parse_allowlist(urls: Iterable[str], *, dev_loopback: bool = False
                    ) -> tuple[AllowedReturn, ...]:
    """The configured entries; with `dev_loopback` (development mode alone) the loopback ones."""
    entries = tuple(AllowedReturn.parse(url) for url in urls)
    return entries + DEV_LOOPBACK_RETURNS if dev_loopback else entries


def is_allowed_return_to(candidate: str, allowlist: Iterable[AllowedReturn]) -> bool:
    """True when `candidate` may be used as a redirect target after login."""
    target = _unambiguous_target(candidate)
    if target is None:
        return False
    scheme, host, port, path = target
    return any(entry.admits(scheme, host, port, path) for entry in allowlist)


def _unambiguous_target(candidate: str) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path) of an absolute http(s) URL that every browser reads as we do;
    None for anything else (see the module's docstring)."""
    if not candidate or len(candidate) > MAX_RETURN_TO_LENGTH:
        return None
    return _parsed_target(candidate)


# Apps send their users back to a handful of addresses: each is parsed once (a pure function
# of the string; at most this many, each at most MAX_RETURN_TO_LENGTH long, are kept).
@functools.lru_cache(maxsize=1024)
def _parsed_target(candidate: str) -> tuple[str, str, int | None, str] | None:
    if _UNSAFE_CHARACTERS.search(candidate):
        return None
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError:  # e.g. an unclosed IPv6 bracket ("http://[::1"), a port out of range
        return None
    # The scheme must be written exactly in lower case: "HtTp:" or "%68ttp:" are evasion forms.
    if parts.scheme not in ("http", "https") or not candidate.startswith(parts.scheme + "://"):
        return None
    host = _plain_host(parts.netloc, parts.hostname, port)
    if host is None:
        return None
    path = parts.path or "/"
    if _ENCODED_SEPARATORS.search(path) or _has_dot_segment(unquote(path)):
        return None
    return parts.scheme, host, port, path


def _plain_host(netloc: str, hostname: str | None, port: int | None) -> str | None:
    """The host of `netloc` as written in a URL (IPv6 in brackets), when `netloc` is exactly
    host[:port]: no user info, no percent-encoding, no trailing dot, no odd spelling."""
    if "@" in netloc or "%" in netloc or not netloc:
        return None
    host = hostname or ""
    if ":" in host:
        host = f"[{host}]"  # urllib drops an IPv6 literal's brackets; URLs and entries keep them
    if not _HOST.fullmatch(host) or host.endswith("."):
        return None
    spelled = host if port is None else f"{host}:{port}"
    if spelled != netloc.lower():
        return None  # e.g. an empty port "host:" or other odd spellings
    return host


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))
