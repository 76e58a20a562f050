"""Who is the client, and did it come over TLS: `X-Forwarded-*` read only from trusted proxies
(SECURITY H3). Plain functions over the peer address and the request headers, no I/O.

The direct peer of the socket is the client unless it is one of the configured proxies
(`[proxy] trusted`, CIDRs). A trusted proxy appends the address it saw to `X-Forwarded-For`, so
the list is walked right to left, skipping trusted hops: the first untrusted address is the
client. Anything left of it was written by the client itself and is never believed. Nothing
here ever looks at `X-Forwarded-Host` or `Host` (SECURITY R5: no URL is built from them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_trusted(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The configured proxies as networks; raises ValueError naming a malformed entry."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=True) for cidr in cidrs)


def client_address(peer: str, headers: Mapping[str, str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: `peer` itself, or, when `peer` is a trusted proxy, the rightmost
    untrusted address of `X-Forwarded-For` (all hops trusted: the leftmost one)."""
    if not trusted or not is_trusted(peer, trusted):
        return peer
    address = peer
    # Tornado joins repeated headers with ",": one list, in the order the hops were added.
    for hop in reversed(headers.get("X-Forwarded-For", "").split(",")):
        ip = _parse_address(hop)
        if ip is None:
            # Empty or garbage where a trusted proxy should have written an address: stop at
            # the last hop we can vouch for.
            break
        address = str(ip)
        if not _in(ip, trusted):
            break
    return address


def forwarded_proto(peer: str, headers: Mapping[str, str],
                    trusted: Sequence[IPNetwork]) -> str | None:
    """`http` or `https` as a trusted proxy reports the client's scheme; None when the peer is
    not trusted or said nothing usable."""
    if not trusted or not is_trusted(peer, trusted):
        return None
    # The nearest proxy's value is the last one.
    value = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return value if value in ("http", "https") else None


def is_trusted(peer: str, trusted: Sequence[IPNetwork]) -> bool:
    ip = _parse_address(peer)
    return ip is not None and _in(ip, trusted)


def _in(ip: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return any(ip.version == net.version and ip in net for net in trusted)


def _parse_address(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
