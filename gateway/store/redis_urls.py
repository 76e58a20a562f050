"""The `store.url` forms of a Redis that has more than one server, parsed and checked:

    redis+sentinel://[user:password@]host1:26379,host2:26379,host3:26379/<master name>[/<db>]
    redis+cluster://[user:password@]host1:7000,host2:7001,host3:7002

`rediss+sentinel://` and `rediss+cluster://` speak TLS (to the sentinels and to the servers).
The password in the URL, or `store.password`, is the Redis servers'; the sentinels' own, when
they have one, is `store.sentinel_password` (gateway/store/redis_connect.py uses both). A host
without a port gets the usual one (26379 for a sentinel, 6379 for a cluster node). The options
after `?` are those of a `redis://` URL (location.REDIS_URL_OPTIONS) but `db`: a Sentinel URL
names its database in the path, and a Cluster has only database 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = SENTINEL_SCHEMES + CLUSTER_SCHEMES
SENTINEL_PORT = 26379
CLUSTER_PORT = 6379
# Options after `?`, with the type each must parse as (a subset of what redis-py takes).
OPTIONS: dict[str, type] = {
    "socket_timeout": float, "socket_connect_timeout": float, "max_connections": int,
    "health_check_interval": int, "ssl_cert_reqs": str, "ssl_ca_certs": str,
    "ssl_check_hostname": bool, "client_name": str,
}
SSL_CERT_REQS = ("none", "optional", "required")
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# A Sentinel master's name, as operators write them (Sentinel itself takes any word).
MASTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


@dataclass(frozen=True)
class RedisTopology:
    """A parsed Sentinel or Cluster URL."""

    scheme: str  # one of SCHEMES
    nodes: tuple[tuple[str, int], ...]  # the sentinels, or the cluster nodes to start from
    service: str = ""  # Sentinel: the master's name
    database: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    options: tuple[tuple[str, str | int | float | bool], ...] = ()

    @property
    def kind(self) -> str:
        return "sentinel" if self.scheme in SENTINEL_SCHEMES else "cluster"

    @property
    def tls(self) -> bool:
        return self.scheme.startswith("rediss")

    def describe(self) -> str:
        """For logs: never the password."""
        nodes = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        if self.kind == "sentinel":
            return f"{self.scheme} master {self.service!r} db {self.database} via {nodes}"
        return f"{self.scheme} {nodes}"


def parse(url: str) -> RedisTopology:
    """Parse and check a Sentinel or Cluster URL; a ValueError says what is wrong in one line,
    without the password."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in SCHEMES:
        raise ValueError(f"must start with one of {', '.join(s + '://' for s in SCHEMES)}")
    if "#" in rest:
        raise ValueError("must not have a #fragment")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    sentinel = scheme in SENTINEL_SCHEMES
    default_port = SENTINEL_PORT if sentinel else CLUSTER_PORT
    nodes = _nodes(hosts, default_port, "sentinel" if sentinel else "cluster node")
    if sentinel:
        service, database = _sentinel_path(path if slash else "")
    else:
        if path:
            raise ValueError("a Redis Cluster URL has no path: a cluster has only database 0 "
                             f"(got /{path})")
        service, database = "", 0
    return RedisTopology(scheme, nodes, service, database, unquote(username), unquote(password),
                         _options(query))


def _nodes(hosts: str, default_port: int, what: str) -> tuple[tuple[str, int], ...]:
    if not hosts:
        raise ValueError(f"needs at least one {what}: host:port[,host:port...]")
    nodes = []
    for item in hosts.split(","):
        if item.startswith("["):  # an IPv6 address: [::1]:26379
            host, bracket, port_text = item[1:].partition("]")
            if not bracket or (port_text and not port_text.startswith(":")):
                raise ValueError(f"bad {what} address {item!r}: write [IPv6]:port")
            port_text = port_text[1:]
        else:
            host, _, port_text = item.partition(":")
            if not HOST.fullmatch(host):
                raise ValueError(f"bad {what} host {host!r} in {item!r}")
        if not host:
            raise ValueError(f"a {what} without a host in {hosts!r}")
        port = default_port
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
                raise ValueError(f"the {what} port must be a number from 1 to 65535 "
                                 f"(got {port_text!r} in {item!r})")
            port = int(port_text)
        nodes.append((host, port))
    return tuple(nodes)


def _sentinel_path(path: str) -> tuple[str, int]:
    name, _, database = path.partition("/")
    if not name:
        raise ValueError("a Sentinel URL needs the master's name: "
                         "redis+sentinel://host:26379,host:26379/<master name>[/<db>]")
    if not MASTER_NAME.fullmatch(unquote(name)):
        raise ValueError(f"bad Sentinel master name {unquote(name)!r}: letters, digits, "
                         "'.', '_' and '-'")
    database = database.rstrip("/")
    if database and not database.isdigit():
        raise ValueError(f"the Redis database must be a number (got {database!r})")
    return unquote(name), int(database or 0)


def _options(query: str) -> tuple[tuple[str, str | int | float | bool], ...]:
    options: list[tuple[str, str | int | float | bool]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        kind = OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"unknown Redis URL option {name!r} (known: {', '.join(OPTIONS)})")
        options.append((name, _typed(name, value, kind)))
    return tuple(options)


def _typed(name: str, value: str, kind: type) -> str | int | float | bool:
    if kind is bool:
        if value.lower() not in BOOLEANS:
            raise ValueError(f"Redis URL option {name} must be true or false (got {value!r})")
        return BOOLEANS[value.lower()]
    if kind is str:
        if name == "ssl_cert_reqs" and value not in SSL_CERT_REQS:
            raise ValueError(f"Redis URL option {name} must be one of {', '.join(SSL_CERT_REQS)}")
        return value
    try:
        number: int | float = int(value) if kind is int else float(value)
    except ValueError:
        raise ValueError(f"Redis URL option {name} must be a number (got {value!r})") from None
    if number < 0 or (number == 0 and name != "health_check_interval"):
        raise ValueError(f"Redis URL option {name} must be above 0 (got {value!r})")
    return number
