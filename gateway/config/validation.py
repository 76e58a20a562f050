"""Validation: every rule across fields, in one pass after loading; the first problem is a
`ConfigError` naming its key, so the CLI can print one clear line."""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import math
import re
import ssl
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.config.settings import (
    ALGORITHMS,
    APPLE_SCOPES,
    BUILT_IN_PROVIDER_NAMES,
    CLIENT_ID_PATTERN,
    CLIENT_SECRET_HASH_PATTERN,
    ENV_PREFIX,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_LEEWAY_SECONDS,
    MAX_UPSTREAM_TIMEOUT,
    MAX_WORKERS,
    MIN_COOKIE_SECRET_BYTES,
    MIN_DISTINCT_SECRET_CHARACTERS,
    OIDC_PROVIDER_NAME_PATTERN,
    OIDC_SCOPES,
    SAMESITE_VALUES,
    SECRET_FILE_SUFFIX,
    AccessSettings,
    AppleSettings,
    ClientSettings,
    CookieSettings,
    FacebookSettings,
    GitHubSettings,
    GoogleSettings,
    MicrosoftSettings,
    OidcProviderSettings,
    ProviderSettings,
    Secret,
    Settings,
    StoreSettings,
    TokenSettings,
    TracingSettings,
    TwitterSettings,
    UpstreamSettings,
)
from gateway.errors import ConfigError
from gateway.store.location import StoreLocation, parse_store_url, store_url

MIN_API_TOKEN_LENGTH = 32
MAX_VERIFIED_CACHE_MB = 65_536
MAX_REPLICAS_ACK = 16  # store.min_replicas_ack
HTTP_PARSERS = ("tornado", "llhttp")  # listen.http_parser
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?i){_LABEL}(?:\.{_LABEL})+")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def validate(settings: Settings) -> None:
    """Every rule, section by section in a fixed order: the first problem found is reported."""
    _check_issuer_and_listen(settings)
    _check_tokens(settings.tokens)
    _check_cookies(settings)
    _check_login(settings)
    _check_upstream(settings.upstream)
    _check_store(settings)
    _check_workers(settings)
    _check_operations(settings)
    _check_providers(settings)
    _check_edge(settings)
    _check_oidc_lifetimes(settings.tokens)
    _check_clients(settings)
    for i, origin in enumerate(settings.dev.image_origins):
        _check_origin(f"dev.image_origins[{i}]", origin)
    _check_access(settings.access, list(settings.providers.oidc))


def _check_issuer_and_listen(settings: Settings) -> None:
    _check_public_url("issuer", settings.issuer, settings.dev_mode)
    if settings.issuer.endswith("/") or urlsplit(settings.issuer)[3:] != ("", ""):
        raise ConfigError("issuer", "must be a base URL without trailing slash, query or fragment")
    if not 0 <= settings.listen.port <= 65535:
        raise ConfigError("listen.port", "must be between 0 and 65535")
    if not 1 <= settings.listen.workers <= MAX_WORKERS:
        raise ConfigError("listen.workers", f"must be between 1 and {MAX_WORKERS}")
    if settings.listen.http_parser not in HTTP_PARSERS:
        raise ConfigError("listen.http_parser", f"must be one of {', '.join(HTTP_PARSERS)}")


def _check_tokens(tokens: TokenSettings) -> None:
    if tokens.algorithm not in ALGORITHMS:
        raise ConfigError(
            "tokens.algorithm", f"must be one of {', '.join(ALGORITHMS)} (got {tokens.algorithm!r})"
        )
    if not 30 <= tokens.access_token_lifetime <= 86400:
        raise ConfigError("tokens.access_token_lifetime", "must be between 30 and 86400 seconds")
    if not 0 <= tokens.leeway <= MAX_LEEWAY_SECONDS:
        raise ConfigError("tokens.leeway", f"must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
    if not tokens.keys_dir:
        raise ConfigError("tokens.keys_dir", "is required (a directory holding the signing keys)")
    if not 0 <= tokens.verified_cache_mb <= MAX_VERIFIED_CACHE_MB:
        raise ConfigError("tokens.verified_cache_mb",
                          f"must be between 0 (no cache) and {MAX_VERIFIED_CACHE_MB} MB")


def _check_cookies(settings: Settings) -> None:
    cookies, dev = settings.cookies, settings.dev_mode
    _check_cookie_secrets(cookies, dev)
    if cookies.samesite not in SAMESITE_VALUES:
        raise ConfigError("cookies.samesite", f"must be one of {', '.join(SAMESITE_VALUES)}")
    if cookies.samesite == "None" and not cookies.secure:
        raise ConfigError("cookies.samesite", "None requires cookies.secure = true")
    if not cookies.secure and not (dev or _is_loopback_url(settings.issuer)):
        raise ConfigError("cookies.secure",
                          "may be false only in development mode or on a loopback issuer")
    if cookies.domain and not _is_domain_of(cookies.domain, settings.issuer):
        raise ConfigError("cookies.domain", "must be the issuer's host or a parent domain of it")
    if cookies.session_lifetime < 60 or cookies.session_idle_timeout < 60:
        raise ConfigError("cookies.session_lifetime", "session timeouts must be at least 60 s")
    if cookies.session_idle_timeout > cookies.session_lifetime:
        raise ConfigError("cookies.session_idle_timeout", "must not exceed session_lifetime")


def _check_cookie_secrets(cookies: CookieSettings, dev: bool) -> None:
    if not cookies.secret:
        raise _missing_secret("cookies.secret", "at least 32 random bytes")
    _check_cookie_secret("cookies.secret", cookies.secret, dev)
    for i, previous in enumerate(cookies.previous_secrets):
        _check_cookie_secret(f"cookies.previous_secrets[{i}]", previous, dev)
        if previous == cookies.secret or previous in cookies.previous_secrets[:i]:
            raise ConfigError(f"cookies.previous_secrets[{i}]",
                              "repeats cookies.secret or an earlier previous secret")


def _check_login(settings: Settings) -> None:
    login, dev = settings.login, settings.dev_mode
    for i, url in enumerate(login.allowed_return_urls):
        _check_public_url(f"login.allowed_return_urls[{i}]", url, dev)
    if login.default_return_to:
        _check_public_url("login.default_return_to", login.default_return_to, dev)
    if not 30 <= login.transaction_lifetime <= 3600:
        raise ConfigError("login.transaction_lifetime", "must be between 30 and 3600 seconds")
    if login.max_pending_transactions < 1:
        raise ConfigError("login.max_pending_transactions", "must be at least 1")
    if not 1 <= login.max_pending_per_client <= login.max_pending_transactions:
        raise ConfigError("login.max_pending_per_client",
                          "must be at least 1 and at most login.max_pending_transactions")


def _check_upstream(upstream: UpstreamSettings) -> None:
    for name in ("connect_timeout", "request_timeout"):
        timeout = getattr(upstream, name)
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_UPSTREAM_TIMEOUT):
            raise ConfigError(f"upstream.{name}",
                              f"must be a number of seconds above 0 and at most "
                              f"{MAX_UPSTREAM_TIMEOUT:.0f} (got {timeout})")
    if upstream.max_clients < 1:
        raise ConfigError("upstream.max_clients", "must be at least 1")
    if upstream.max_response_bytes < 1024:
        raise ConfigError("upstream.max_response_bytes", "must be at least 1024")
    if upstream.ca_file:
        _check_ca_file(upstream.ca_file)
    if upstream.jwks_cache_seconds < 0 or upstream.jwks_refresh_cooldown < 0:
        raise ConfigError("upstream.jwks_cache_seconds", "JWKS timings must not be negative")


def _check_providers(settings: Settings) -> None:
    providers = settings.providers
    for section in dataclasses.fields(providers):
        provider = getattr(providers, section.name)
        if provider is not None and section.name != "oidc":
            _check_provider(f"providers.{section.name}", provider, settings.dev_mode)
    for name, oidc in providers.oidc.items():
        _check_oidc_provider(name, oidc, settings.dev_mode)


def _check_oidc_provider(name: str, provider: OidcProviderSettings, dev: bool) -> None:
    """A generic OpenID Connect provider: its name becomes routes, an `idp` claim and a `sub`
    prefix, so it must be URL-safe and must not pass for a built-in provider."""
    prefix = f"providers.oidc.{name}"
    if not OIDC_PROVIDER_NAME_PATTERN.fullmatch(name):
        raise ConfigError(prefix, f"the name {name!r} must be 1 to 32 lower-case letters, "
                          "digits, '-' or '_', starting with a letter (it is a URL path segment)")
    if name in BUILT_IN_PROVIDER_NAMES:
        raise ConfigError(prefix, f"the name {name!r} is a built-in provider's; choose another")
    _require(prefix, provider, "display_name", "issuer", "client_id", "client_secret")
    _check_public_url(f"{prefix}.issuer", provider.issuer, dev)
    if urlsplit(provider.issuer)[3:] != ("", ""):
        # OIDC Discovery 2: the issuer is a URL without query or fragment.
        raise ConfigError(f"{prefix}.issuer", "must not have a query or fragment")
    if "openid" not in provider.scopes:
        raise ConfigError(f"{prefix}.scopes", "must include openid")
    if not provider.display_name.isprintable() or len(provider.display_name) > 64:
        raise ConfigError(f"{prefix}.display_name", "must be at most 64 printable characters")


def _check_access(access: AccessSettings, enabled_oidc: Collection[str] = ()) -> None:
    """Entries that could never match are mistakes: say so at start, not by locking users out."""
    _check_domains("access.email_domains", access.email_domains)
    for i, email in enumerate(access.emails):
        local, at, domain = email.rpartition("@")
        if not (at and local and _DOMAIN.fullmatch(domain)) or any(c.isspace() for c in email):
            raise ConfigError(f"access.emails[{i}]",
                              f"must be an email address such as ada@example.com (got {email!r})")
    providers = [f.name for f in dataclasses.fields(ProviderSettings) if f.name != "oidc"]
    providers += list(enabled_oidc)
    for i, subject in enumerate(access.subjects):
        provider, colon, account = subject.partition(":")
        if not (colon and account) or provider not in providers \
                or not account.isprintable() or " " in account:
            raise ConfigError(f"access.subjects[{i}]",
                              f"must be a `sub` such as google:1098... or twitter:1234..., "
                              f"the provider one of {', '.join(providers)} (got {subject!r})")


def _check_domains(key: str, domains: tuple[str, ...]) -> None:
    for i, domain in enumerate(domains):
        if not _DOMAIN.fullmatch(domain):
            raise ConfigError(f"{key}[{i}]",
                              f"must be a domain such as example.com (got {domain!r})")


def _check_origin(key: str, origin: str) -> None:
    """scheme://host[:port] and nothing else: it goes into a Content-Security-Policy header."""
    try:
        parts = urlsplit(origin)
        port_is_valid = parts.port is None or parts.port > 0
    except ValueError:  # a malformed IPv6 host or port
        port_is_valid = False
    if not (port_is_valid and parts.scheme in ("https", "http") and parts.hostname
            and origin == f"{parts.scheme}://{parts.netloc}" and "@" not in origin
            and origin.isascii() and origin.isprintable()
            and not any(c in origin for c in " ;,'\"\\*")):
        raise ConfigError(key, f"must be an origin such as http://localhost:8081 (got {origin!r})")


def _check_provider(prefix: str, provider: Any, dev: bool) -> None:
    """Every provider's endpoints, then what each one requires of its own."""
    for f in dataclasses.fields(provider):
        if f.name.endswith("_url"):
            _check_public_url(f"{prefix}.{f.name}", getattr(provider, f.name), dev)
    if isinstance(provider, GoogleSettings):
        _require(prefix, provider, "client_id", "client_secret")
        _check_domains(f"{prefix}.hosted_domains", provider.hosted_domains)
        if not provider.issuers:
            raise ConfigError(f"{prefix}.issuers", "must list at least one issuer")
        if "openid" not in provider.scopes:
            raise ConfigError(f"{prefix}.scopes", "must include openid")
        if provider.fetch_userinfo not in ("auto", "always", "never"):
            raise ConfigError(f"{prefix}.fetch_userinfo", "must be auto, always or never")
    elif isinstance(provider, MicrosoftSettings):
        _require(prefix, provider, "client_id", "client_secret")
        _check_public_url(f"{prefix}.authority", provider.authority, dev)
        if provider.authority.endswith("/") or urlsplit(provider.authority)[2:] != ("", "", ""):
            raise ConfigError(f"{prefix}.authority", "must be a base URL such as "
                              "https://login.microsoftonline.com (no path, no trailing slash)")
        if provider.tenant not in ("common", "organizations", "consumers") \
                and not _GUID.fullmatch(provider.tenant):
            raise ConfigError(f"{prefix}.tenant", "must be common, organizations, consumers or "
                              f"a tenant ID (a GUID) (got {provider.tenant!r})")
    elif isinstance(provider, FacebookSettings):
        _require(prefix, provider, "client_id", "client_secret")
        if not re.fullmatch(r"v\d+\.\d+", provider.graph_api_version):
            raise ConfigError(f"{prefix}.graph_api_version", "must look like v26.0")
    elif isinstance(provider, TwitterSettings):
        if provider.mode == "oauth2":
            _require(prefix, provider, "client_id", "client_secret")
            if not {"users.read", "tweet.read"} <= set(provider.scopes):
                # X's GET /2/users/me, which tells who signed in, needs both.
                raise ConfigError(f"{prefix}.scopes", "must include users.read and tweet.read")
        elif provider.mode == "oauth1":
            _require(prefix, provider, "consumer_key", "consumer_secret")
        else:
            raise ConfigError(f"{prefix}.mode", "must be oauth2 or oauth1")
    elif isinstance(provider, GitHubSettings):
        _check_github(prefix, provider)
    elif isinstance(provider, AppleSettings):
        _check_apple(prefix, provider, dev)


_GITHUB_SCOPE = re.compile(r"[a-z_]+(?::[a-z_]+)?")  # GitHub's names: user, read:user, ...


def _check_github(prefix: str, github: GitHubSettings) -> None:
    _require(prefix, github, "client_id", "client_secret")
    parts = urlsplit(github.api_url)
    if parts.query or parts.fragment:
        raise ConfigError(f"{prefix}.api_url", "must be the API's root URL, without a query "
                          "or fragment (https://api.github.com, or https://HOST/api/v3)")
    for i, scope in enumerate(github.scopes):
        if not _GITHUB_SCOPE.fullmatch(scope):
            raise ConfigError(f"{prefix}.scopes[{i}]",
                              f"must be one GitHub scope such as read:user (got {scope!r})")


# Apple's team and key ids: ten upper-case letters or digits (developer.apple.com, Membership
# details and Keys).
_APPLE_ID = re.compile(r"[A-Z0-9]{10}")


def _check_apple(prefix: str, apple: AppleSettings, dev: bool) -> None:
    """Everything the gateway needs to sign Apple's client secret, checked at start: a bad key
    would otherwise fail every Apple login at its code exchange."""
    _require(prefix, apple, "client_id", "team_id", "key_id", "private_key")
    if any(c.isspace() or not c.isprintable() for c in apple.client_id):
        raise ConfigError(f"{prefix}.client_id", "must be the Services ID, e.g. com.example.web")
    for name in ("team_id", "key_id"):
        if not _APPLE_ID.fullmatch(getattr(apple, name)):
            raise ConfigError(f"{prefix}.{name}", "must be Apple's 10-character id (upper-case "
                              f"letters and digits; got {getattr(apple, name)!r})")
    _check_public_url(f"{prefix}.authority", apple.authority, dev)
    if apple.authority.endswith("/") or urlsplit(apple.authority)[3:] != ("", ""):
        raise ConfigError(f"{prefix}.authority",
                          "must be a base URL without trailing slash, query or fragment")
    for i, scope in enumerate(apple.scopes):
        if scope not in APPLE_SCOPES:
            raise ConfigError(f"{prefix}.scopes[{i}]",
                              f"must be one of {', '.join(APPLE_SCOPES)} (got {scope!r})")
    problem = apple_key_problem(apple.private_key)
    if problem:
        raise ConfigError(f"{prefix}.private_key", problem)


def apple_key_problem(private_key: Secret) -> str | None:
    """What is wrong with a Sign in with Apple key (None: nothing), in one line that never
    shows the key: Apple's .p8 file is a PEM PKCS#8 EC P-256 private key."""
    try:
        key = serialization.load_pem_private_key(private_key.reveal().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return ("must be the .p8 key Apple gave (a PEM \"BEGIN PRIVATE KEY\" file, not "
                "encrypted): private_key_file names it")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = "an RSA" if isinstance(key, rsa.RSAPrivateKey) else "another kind of"
        return f"must be an EC P-256 key (Apple's .p8); this is {kind} key"
    if not isinstance(key.curve, ec.SECP256R1):
        return f"must be an EC P-256 key (Apple's .p8); this one is on {key.curve.name}"
    return None


def _check_store(settings: Settings) -> None:
    store = settings.store
    try:
        location = parse_store_url(store_url(settings.store.url, dev_mode=settings.dev_mode))
    except ValueError as e:
        raise ConfigError("store.url", str(e)) from None
    if store.password and location.kind not in ("redis", "postgres"):
        raise ConfigError("store.password",
                          "is only for a redis://, rediss:// or postgresql:// store.url")
    if store.password and location.has_password:
        raise ConfigError("store.password", "store.url holds a password already; set only one")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", store.key_prefix):
        raise ConfigError("store.key_prefix",
                          "must be 1 to 100 letters, digits, '.', '_', ':' or '-'")
    _check_redis_topology(store, location)


def _check_redis_topology(store: StoreSettings, location: StoreLocation) -> None:
    """Settings only some Redis topologies can honour."""
    topology = location.topology.kind if location.topology is not None else location.kind
    if store.sentinel_password and topology != "sentinel":
        raise ConfigError("store.sentinel_password", "is only for a redis+sentinel:// or "
                          "rediss+sentinel:// store.url")
    acks = store.min_replicas_ack
    if not 0 <= acks <= MAX_REPLICAS_ACK:
        raise ConfigError("store.min_replicas_ack",
                          f"must be between 0 and {MAX_REPLICAS_ACK} (got {acks})")
    if acks and topology not in ("redis", "sentinel"):
        # A Cluster's WAIT would have to follow each key to its node: not done (docs/deploy.md).
        what = "a Redis Cluster" if topology == "cluster" else f"the {topology} store"
        raise ConfigError("store.min_replicas_ack", f"{what} cannot wait for replicas: only a "
                          "redis://, rediss:// or redis+sentinel:// store.url can")


def _check_workers(settings: Settings) -> None:
    """Several worker processes must share one state: never with in-process state."""
    workers = settings.listen.workers
    if workers == 1:
        return
    if settings.dev_mode:
        raise ConfigError("listen.workers", f"must be 1 in development mode (got {workers}): "
                          "the provider stand-ins and the memory:// store live in one process")
    if parse_store_url(store_url(settings.store.url, dev_mode=settings.dev_mode)).kind == "memory":
        raise ConfigError("listen.workers", f"{workers} worker processes cannot use the "
                          "memory:// store: login transactions and sessions would not be shared "
                          "between them; use a sqlite:///, redis:// or postgresql:// store.url")


def _check_operations(settings: Settings) -> None:
    if not 0 <= settings.admin.port <= 65535:
        raise ConfigError("admin.port", "must be between 0 and 65535")
    data_plane = settings.data_plane
    if not 0 <= data_plane.port <= 65535:
        raise ConfigError("data_plane.port", "must be between 0 and 65535")
    if data_plane.enabled and data_plane.port and data_plane.port == settings.listen.port:
        raise ConfigError("data_plane.port", f"is listen.port ({settings.listen.port}): the "
                          "data plane needs a port of its own")
    # Worker i of `serve --workers N` has its admin listener on admin.port + i.
    admin_ports = range(settings.admin.port, settings.admin.port + settings.listen.workers)
    if settings.admin.enabled and settings.admin.port:
        if admin_ports[-1] > 65535:
            raise ConfigError("admin.port", f"one port per worker from {admin_ports[0]}: must "
                              f"be at most {65536 - settings.listen.workers}")
        if settings.listen.workers > 1 and settings.listen.port in admin_ports:
            raise ConfigError("admin.port", f"the admin listeners' ports {admin_ports[0]}.."
                              f"{admin_ports[-1]} include listen.port {settings.listen.port}")
    if settings.admin.api_token and len(settings.admin.api_token.reveal()) < MIN_API_TOKEN_LENGTH:
        raise ConfigError("admin.api_token", f"must be at least {MIN_API_TOKEN_LENGTH} "
                          "characters (e.g. head -c 32 /dev/urandom | base64)")
    if settings.logging.format not in ("", *LOG_FORMATS):
        raise ConfigError("logging.format", f"must be one of {', '.join(LOG_FORMATS)}")
    if settings.logging.level.upper() not in LOG_LEVELS:
        raise ConfigError("logging.level", f"must be one of {', '.join(LOG_LEVELS)}")
    _check_tracing(settings.tracing)


def _check_tracing(tracing: TracingSettings) -> None:
    if not 0.0 <= tracing.sample_ratio <= 1.0:
        raise ConfigError("tracing.sample_ratio", "must be between 0.0 and 1.0")
    if not tracing.service_name.strip():
        raise ConfigError("tracing.service_name", "must not be empty")
    if not tracing.otlp_endpoint:
        return
    endpoint = urlsplit(tracing.otlp_endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
        raise ConfigError("tracing.otlp_endpoint", "must be an http(s) URL of an OTLP/HTTP "
                          "traces endpoint, e.g. http://127.0.0.1:4318/v1/traces")
    if endpoint.username or endpoint.password or endpoint.query or endpoint.fragment:
        raise ConfigError("tracing.otlp_endpoint", "takes no credentials, ?query or #fragment")
    if importlib.util.find_spec("opentelemetry.sdk") is None or importlib.util.find_spec(
            "opentelemetry.exporter.otlp.proto.http") is None:
        raise ConfigError("tracing.otlp_endpoint", "needs the tracing extra: "
                          "pip install 'oauth-gateway[tracing]'")


def _check_cookie_secret(key: str, secret: Secret, dev: bool) -> None:
    if len(secret.reveal().encode()) < MIN_COOKIE_SECRET_BYTES:
        raise ConfigError(key, f"must be at least {MIN_COOKIE_SECRET_BYTES} bytes")
    if not dev and len(set(secret.reveal())) < MIN_DISTINCT_SECRET_CHARACTERS:
        # SECURITY L2: a typed or placeholder secret is refused outside development mode.
        raise ConfigError(key, "looks weak (too few distinct characters); generate "
                          "one with: head -c 48 /dev/urandom | base64")


def _check_edge(settings: Settings) -> None:
    """Trusted proxies, rate limits and key rotation timing."""
    for i, cidr in enumerate(settings.proxy.trusted):
        try:
            ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError as e:
            raise ConfigError(f"proxy.trusted[{i}]", f"must be an address or CIDR ({e})") from None
    limits = settings.rate_limits
    for group in ("login", "token", "verify"):
        if getattr(limits, f"{group}_requests") < 0:
            raise ConfigError(f"rate_limits.{group}_requests", "must be 0 (off) or more")
        if not 1 <= getattr(limits, f"{group}_window") <= 86400:
            raise ConfigError(f"rate_limits.{group}_window", "must be between 1 and 86400 seconds")
    if not 0 <= settings.tokens.key_activation_delay <= 30 * 86400:
        raise ConfigError("tokens.key_activation_delay", "must be between 0 and 2592000 seconds")
    if not 0 <= settings.tokens.key_reload_interval <= 3600:
        raise ConfigError("tokens.key_reload_interval", "must be between 0 and 3600 seconds")


def _check_oidc_lifetimes(tokens: TokenSettings) -> None:
    if not 10 <= tokens.authorization_code_lifetime <= 60:
        # SECURITY C1: codes expire within 60 s.
        raise ConfigError("tokens.authorization_code_lifetime", "must be between 10 and 60 seconds")
    if tokens.refresh_token_idle_lifetime < 60:
        raise ConfigError("tokens.refresh_token_idle_lifetime", "must be at least 60 seconds")
    if tokens.refresh_token_absolute_lifetime < tokens.refresh_token_idle_lifetime:
        raise ConfigError("tokens.refresh_token_absolute_lifetime",
                          "must be at least refresh_token_idle_lifetime")
    if not 0 <= tokens.refresh_token_reuse_interval <= 60:
        raise ConfigError("tokens.refresh_token_reuse_interval", "must be between 0 and 60 seconds")


def _check_clients(settings: Settings) -> None:
    enabled = set(settings.providers.enabled_names())
    seen: set[str] = set()
    for i, client in enumerate(settings.clients):
        prefix = f"clients[{i}]"
        if not CLIENT_ID_PATTERN.fullmatch(client.client_id):
            raise ConfigError(f"{prefix}.client_id",
                              "is required: 1 to 128 letters, digits, '.', '_', '~' or '-'")
        if client.client_id in seen:
            raise ConfigError(f"{prefix}.client_id", f"{client.client_id!r} is registered twice")
        seen.add(client.client_id)
        _check_client(prefix, client, enabled, settings.dev_mode)
        id_token_algorithms = ("RS256", settings.tokens.algorithm)
        if client.id_token_signed_response_alg not in id_token_algorithms:
            # SECURITY J11: ID tokens in RS256 (OIDC Core 15.1) or in tokens.algorithm.
            raise ConfigError(f"{prefix}.id_token_signed_response_alg",
                              f"must be {' or '.join(dict.fromkeys(id_token_algorithms))} "
                              f"(got {client.id_token_signed_response_alg!r})")


def _check_client(prefix: str, client: ClientSettings, enabled: set[str], dev: bool) -> None:
    if client.client_secret_hash and not CLIENT_SECRET_HASH_PATTERN.fullmatch(
            client.client_secret_hash):
        raise ConfigError(f"{prefix}.client_secret_hash",
                          "must be the output of `oauth-gateway clients hash-secret`")
    if not client.redirect_uris:
        raise ConfigError(f"{prefix}.redirect_uris", "must list at least one URL")
    for name in ("redirect_uris", "post_logout_redirect_uris"):
        for j, uri in enumerate(getattr(client, name)):
            _check_registered_uri(f"{prefix}.{name}[{j}]", uri, dev)
    if client.backchannel_logout_uri:
        # Back-Channel Logout 1.0 section 2.2: absolute, no fragment; a query is allowed.
        _check_public_url(f"{prefix}.backchannel_logout_uri", client.backchannel_logout_uri, dev)
        if "#" in client.backchannel_logout_uri:
            raise ConfigError(f"{prefix}.backchannel_logout_uri", "must not contain a fragment")
    for j, provider in enumerate(client.providers):
        if provider not in enabled:
            raise ConfigError(f"{prefix}.providers[{j}]",
                              f"{provider!r} is not an enabled provider "
                              f"({', '.join(sorted(enabled)) or 'none enabled'})")
    if "openid" not in client.scopes:
        raise ConfigError(f"{prefix}.scopes", "must include openid")
    for j, scope in enumerate(client.scopes):
        if scope not in OIDC_SCOPES:
            raise ConfigError(f"{prefix}.scopes[{j}]",
                              f"must be one of {', '.join(OIDC_SCOPES)} (got {scope!r})")


def _check_registered_uri(key: str, uri: str, dev: bool) -> None:
    """A redirect URI a client registers: absolute, https (http on loopback or in development
    mode), no fragment (RFC 6749 3.1.2), no wildcard: it is compared as an exact string."""
    _check_public_url(key, uri, dev)
    if "#" in uri:
        raise ConfigError(key, "must not contain a fragment (#)")
    if "*" in uri:
        raise ConfigError(key, "must not contain a wildcard: redirect URIs match exactly")
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in uri):
        raise ConfigError(key, "must be plain ASCII without spaces")


def _require(prefix: str, provider: Any, *names: str) -> None:
    for name in names:
        value = getattr(provider, name)
        if isinstance(value, Secret) and not value:
            raise _missing_secret(f"{prefix}.{name}")
        if not value:
            raise ConfigError(f"{prefix}.{name}", "is required")


def env_variable(key: str) -> str:
    """The environment variable that sets a dotted key (`providers.google.client_secret`:
    GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET)."""
    return ENV_PREFIX + key.replace(".", "__").upper()


def _missing_secret(key: str, what: str = "") -> ConfigError:
    """Secrets usually come from the environment or a file: the message says how."""
    name = key.rpartition(".")[2]
    return ConfigError(key, f"is required{f' ({what})' if what else ''}: set {name} or "
                       f"{name}{SECRET_FILE_SUFFIX} in the file, or {env_variable(key)} or "
                       f"{env_variable(key)}{SECRET_FILE_SUFFIX.upper()} in the environment")


def _check_public_url(key: str, url: str, dev: bool) -> None:
    if not url:
        raise ConfigError(key, "is required")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(key, f"must be an absolute https:// URL (got {url!r})")
    if parts.username or parts.password:
        raise ConfigError(key, "must not contain user info")
    if parts.scheme == "http" and not (_is_loopback_url(url) or dev):
        raise ConfigError(key, "must use https:// (http:// only for loopback addresses)")


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_domain_of(domain: str, url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    domain = domain.lower().lstrip(".")
    return host == domain or host.endswith("." + domain)


def _check_ca_file(path: str) -> None:
    """A CA bundle that cannot be used would fail every login at its first provider call."""
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:  # an OSError too: first
        raise ConfigError("upstream.ca_file", f"{path} holds no PEM certificate") from None
    except OSError as e:
        raise ConfigError("upstream.ca_file", f"cannot read {path}: {e.strerror or e}") from None
