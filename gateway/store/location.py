"""Where the store lives: the `store.url` setting, parsed and checked.

    memory://                        one process, lost on restart (development mode's default)
    sqlite:///var/lib/gw/gateway.db  a file, absolute path (the default outside development mode)
    sqlite:gateway.db                a file, relative to the working directory
    redis://[user:password@]host:port/db, rediss://...   shared by several replicas
    postgresql://user[:password]@host:5432/dbname, postgres://...   shared by several replicas
    redis+sentinel://host:26379,.../<master name>[/db], redis+cluster://host:7000,...
                                     Redis with failover: redis_urls.py parses them

Paths follow SQLite's own URI filenames (`file:///abs/path`, `file:relative`): what comes after
`sqlite:` is the path, so three slashes start an absolute one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway.store import redis_urls

DEVELOPMENT_URL = "memory://"
# The container image creates /var/lib/oauth-gateway, owned by the gateway's user, for its keys;
# the database sits beside them, so a container starts with no store setting at all. Mount a
# volume there (as for the keys) for sessions to outlive the container.
PRODUCTION_URL = "sqlite:///var/lib/oauth-gateway/gateway.db"
SCHEMES = ("memory", "sqlite", "redis", "rediss", "postgresql", "postgres")
# redis-py options that may follow a Redis URL's `?`, with the type each must parse as.
REDIS_URL_OPTIONS: dict[str, type] = {
    "db": int, "socket_timeout": float, "socket_connect_timeout": float,
    "max_connections": int, "health_check_interval": int, "ssl_cert_reqs": str,
    "ssl_ca_certs": str, "ssl_check_hostname": str, "client_name": str,
}
# What may follow a PostgreSQL URL's `?`: libpq's names for TLS and the connect timeout, and
# the gateway's own for the per-statement timeout and the pool's size (gateway/store/postgres.py).
POSTGRES_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POSTGRES_URL_OPTIONS: dict[str, type] = {
    "sslmode": str, "sslrootcert": str, "connect_timeout": float, "command_timeout": float,
    "max_connections": int,
}


@dataclass(frozen=True)
class StoreLocation:
    """A parsed `store.url`."""

    kind: str  # memory, sqlite, redis or postgres
    path: str = ""  # sqlite: the database file
    url: str = ""  # redis: the URL as redis-py takes it; postgres: as configured
    has_password: bool = False
    # redis+sentinel:// and redis+cluster://: the servers, the master's name, the options.
    topology: redis_urls.RedisTopology | None = None

    def describe(self) -> str:
        """For logs: never the password."""
        if self.kind == "sqlite":
            return f"sqlite {self.path}"
        if self.topology is not None:
            return self.topology.describe()
        if self.kind == "redis":
            parts = urlsplit(self.url)
            return f"{parts.scheme} {parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
        if self.kind == "postgres":
            parts = urlsplit(self.url)
            return f"postgresql {parts.hostname}:{parts.port or 5432}{parts.path}"
        return "memory (one process, lost on restart)"


def store_url(configured: str, *, dev_mode: bool) -> str:
    """The configured `store.url`, or the default of the mode when it is empty."""
    return configured or (DEVELOPMENT_URL if dev_mode else PRODUCTION_URL)


def parse_store_url(url: str) -> StoreLocation:
    """Parse and check a store URL; a ValueError's message says what is wrong, in one line."""
    if url.partition("://")[0].lower() in redis_urls.SCHEMES:
        topology = redis_urls.parse(url)
        return StoreLocation("redis", url=url, has_password=bool(topology.password),
                             topology=topology)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or ("://" not in url and scheme != "sqlite"):
        raise ValueError("must be memory://, sqlite:///absolute/path.db, sqlite:relative.db, "
                         "redis://host:port/db or postgresql://user@host:5432/dbname "
                         f"(got {url.split('@')[-1]!r})")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            raise ValueError("memory:// takes nothing after it")
        return StoreLocation("memory")
    if scheme == "sqlite":
        return _parse_sqlite(parts.netloc, parts.path, parts.query)
    if scheme in ("postgresql", "postgres"):
        return _parse_postgres(url)
    return _parse_redis(url)


def _parse_sqlite(netloc: str, path: str, query: str) -> StoreLocation:
    if netloc:
        raise ValueError(f"a SQLite URL has no host ({netloc!r}): use sqlite:///absolute/path.db "
                         "or sqlite:relative/path.db")
    if query:
        raise ValueError("a SQLite URL takes no ?options")
    path = unquote(path)
    if not path or path.endswith("/"):
        raise ValueError("a SQLite URL needs a file path: sqlite:///absolute/path.db")
    return StoreLocation("sqlite", path=path)


def _parse_redis(url: str) -> StoreLocation:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the Redis port must be a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("a Redis URL needs a host: redis://host:port/db")
    if port == 0:
        raise ValueError("the Redis port must not be 0")
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        raise ValueError(f"the Redis database must be a number (got {database!r})")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = REDIS_URL_OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"unknown Redis URL option {name!r} "
                             f"(known: {', '.join(REDIS_URL_OPTIONS)})")
        try:
            kind(value)
        except ValueError:
            raise ValueError(f"Redis URL option {name} must be a number (got {value!r})") from None
    return StoreLocation("redis", url=url, has_password=parts.password is not None)


def _parse_postgres(url: str) -> StoreLocation:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the PostgreSQL port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("a PostgreSQL URL needs a host: postgresql://user@host:5432/dbname")
    if port == 0:
        raise ValueError("the PostgreSQL port must not be 0")
    if not parts.username:
        raise ValueError("a PostgreSQL URL needs a user: postgresql://user@host:5432/dbname")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError("a PostgreSQL URL needs one database name: "
                         "postgresql://user@host:5432/dbname")
    seen = set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = POSTGRES_URL_OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"unknown PostgreSQL URL option {name!r} "
                             f"(known: {', '.join(POSTGRES_URL_OPTIONS)})")
        if name in seen:
            raise ValueError(f"PostgreSQL URL option {name} is given twice")
        seen.add(name)
        if name == "sslmode" and value not in POSTGRES_SSLMODES:
            raise ValueError(f"sslmode must be one of {', '.join(POSTGRES_SSLMODES)} "
                             f"(got {value!r})")
        if kind is not str:
            try:
                number = kind(value)
            except ValueError:
                raise ValueError(f"PostgreSQL URL option {name} must be a number "
                                 f"(got {value!r})") from None
            if not (number > 0 and math.isfinite(number)):
                raise ValueError(f"PostgreSQL URL option {name} must be above 0 (got {value!r})")
    return StoreLocation("postgres", url=url, has_password=parts.password is not None)
