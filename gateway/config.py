"""Typed, frozen settings loaded once from a TOML file plus `GATEWAY_...` environment variables.

Environment variables override the file: `GATEWAY_ISSUER`, `GATEWAY_TOKENS__ALGORITHM`,
`GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET` (a double underscore separates sections). Any secret
can instead be read from a file: `client_secret_file = "/run/secrets/google"` in TOML, or
`GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE=/run/secrets/google` in the environment.

Every problem is reported as a `ConfigError` naming the key, so the CLI can print one clear line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import ssl
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.store.location import parse_store_url, store_url

ENV_PREFIX = "GATEWAY_"
ENV_CONFIG_PATH = "GATEWAY_CONFIG"
ALGORITHMS = ("EdDSA", "ES256", "RS256")
SAMESITE_VALUES = ("Lax", "Strict", "None")
MIN_COOKIE_SECRET_BYTES = 32
MAX_LEEWAY_SECONDS = 300
MAX_UPSTREAM_TIMEOUT = 300.0
MAX_WORKERS = 256
SECRET_FILE_SUFFIX = "_file"
# A secret with fewer distinct characters than this was typed by a person, not generated.
MIN_DISTINCT_SECRET_CHARACTERS = 12
# A DNS name of two labels or more (access.email_domains, access.emails).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?i){_LABEL}(?:\.{_LABEL})+")


class Secret:
    """A string that never shows itself in a repr, a traceback or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


NO_SECRET = Secret("")


@dataclass(frozen=True)
class ListenSettings:
    address: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    port: int = 8080
    # Processes serving the port (`serve --workers N`): 1 serves in the process itself; more
    # fork that many workers from a supervising parent (gateway/workers.py).
    workers: int = 1


@dataclass(frozen=True)
class TokenSettings:
    algorithm: str = "RS256"
    access_token_lifetime: int = 600
    audience: str = ""  # default `aud` of cookie-mode tokens; the issuer when empty
    leeway: int = 30
    keys_dir: str = ""
    # SECURITY K3: a new key is published at once and signs this many seconds after it was made
    # (`keys rotate`), so that JWKS caches (max-age 300 s) and every replica's reload (30 s)
    # see it before any token it signs.
    key_activation_delay: int = 3600
    key_reload_interval: float = 30.0  # seconds between two looks at keys_dir; 0 = never
    # OpenID Connect for downstream apps (gateway/oidc/).
    authorization_code_lifetime: int = 60  # seconds a code may wait to be exchanged (<= 60, C1)
    refresh_token_idle_lifetime: int = 1_209_600  # a refresh token unused this long dies (14 d)
    refresh_token_absolute_lifetime: int = 2_592_000  # a family dies this long after login (30 d)
    refresh_token_reuse_interval: int = 5  # seconds a rotated refresh token may race (T4)
    verify_checks_revocation: bool = False  # /verify asks the store whether a token was revoked


@dataclass(frozen=True)
class CookieSettings:
    secret: Secret = NO_SECRET
    # SECURITY K5/P3: earlier secrets, newest first, still accepted when reading cookies (never
    # used to sign): a rotation logs no one out. Drop one after session_lifetime.
    previous_secrets: tuple[Secret, ...] = ()
    domain: str = ""
    secure: bool = True
    samesite: str = "Lax"
    session_lifetime: int = 86400
    session_idle_timeout: int = 7200


@dataclass(frozen=True)
class LoginSettings:
    allowed_return_urls: tuple[str, ...] = ()
    default_return_to: str = ""  # where a login without return_to lands; "" = the gateway's page
    transaction_lifetime: int = 600
    max_pending_transactions: int = 100_000


@dataclass(frozen=True)
class UpstreamSettings:
    connect_timeout: float = 5.0
    request_timeout: float = 10.0
    max_clients: int = 1000
    max_response_bytes: int = 1_048_576
    # PEM bundle the providers' TLS certificates must chain to; empty: the system's store.
    ca_file: str = ""
    jwks_cache_seconds: int = 3600
    jwks_refresh_cooldown: int = 60


@dataclass(frozen=True)
class GoogleSettings:
    client_id: str = ""
    client_secret: Secret = NO_SECRET
    authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"
    userinfo_url: str = "https://openidconnect.googleapis.com/v1/userinfo"
    jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    issuers: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    # Google Workspace domains whose accounts alone may sign in through Google (the id_token's
    # `hd` claim); empty: any Google account (then see [access]).
    hosted_domains: tuple[str, ...] = ()
    # "auto": ask userinfo only when the id_token lacks name or picture.
    fetch_userinfo: str = "auto"


@dataclass(frozen=True)
class FacebookSettings:
    client_id: str = ""  # the App ID
    client_secret: Secret = NO_SECRET  # the App Secret; also keys `appsecret_proof`
    graph_api_version: str = "v26.0"
    # Version-less bases; the version is inserted as the first path segment.
    dialog_url: str = "https://www.facebook.com"
    graph_url: str = "https://graph.facebook.com"
    scopes: tuple[str, ...] = ("public_profile", "email")
    # PKCE S256 on the dialog and the code exchange. Facebook documents it for manually built
    # login flows but calls it "in testing": switch it off if Facebook refuses the parameters.
    pkce: bool = True


@dataclass(frozen=True)
class TwitterSettings:
    # "oauth2": X's OAuth 2.0 with PKCE (X API v2); "oauth1": OAuth 1.0a (v1.1 API).
    mode: str = "oauth2"
    client_id: str = ""  # OAuth 2.0 Client ID (mode oauth2)
    client_secret: Secret = NO_SECRET  # OAuth 2.0 Client Secret (confidential client)
    consumer_key: str = ""  # OAuth 1.0a API Key (mode oauth1)
    consumer_secret: Secret = NO_SECRET  # OAuth 1.0a API Key Secret
    authorize_url: str = "https://x.com/i/oauth2/authorize"
    token_url: str = "https://api.x.com/2/oauth2/token"
    userinfo_url: str = "https://api.x.com/2/users/me"
    # users.read + tweet.read for GET /2/users/me; users.email for its confirmed_email field.
    scopes: tuple[str, ...] = ("users.read", "tweet.read", "users.email")
    request_token_url: str = "https://api.x.com/oauth/request_token"
    authenticate_url: str = "https://api.x.com/oauth/authenticate"
    access_token_url: str = "https://api.x.com/oauth/access_token"
    verify_credentials_url: str = "https://api.x.com/1.1/account/verify_credentials.json"


@dataclass(frozen=True)
class ProviderSettings:
    google: GoogleSettings | None = None
    facebook: FacebookSettings | None = None
    twitter: TwitterSettings | None = None


@dataclass(frozen=True)
class StoreSettings:
    # memory://, sqlite:///absolute/path.db, sqlite:relative.db or redis://host:port/db;
    # empty: memory:// in development mode, gateway.store.location.PRODUCTION_URL otherwise.
    url: str = ""
    password: Secret = NO_SECRET  # the Redis password, when it is not in the URL
    key_prefix: str = "oauth-gateway"  # Redis keys start with it: gateways may share a Redis


OIDC_SCOPES = ("openid", "email", "profile", "offline_access")
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,128}")
CLIENT_SECRET_HASH_PATTERN = re.compile(r"sha256\$[A-Za-z0-9_-]{16,64}\$[0-9a-f]{64}")


@dataclass(frozen=True)
class ClientSettings:
    """A downstream app registered for the OpenID Connect code flow (`[[clients]]`)."""

    client_id: str = ""
    name: str = ""  # shown on the gateway's pages; the client_id when empty
    # `oauth-gateway clients hash-secret` output; empty = a public client (PKCE required).
    client_secret_hash: str = ""
    redirect_uris: tuple[str, ...] = ()  # compared as exact strings (SECURITY R1)
    post_logout_redirect_uris: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()  # upstream providers this app may use; empty = all enabled
    audience: str = ""  # `aud` of its access tokens; the client_id when empty
    scopes: tuple[str, ...] = OIDC_SCOPES  # what it may ask for

    @property
    def is_public(self) -> bool:
        return not self.client_secret_hash

    @property
    def token_audience(self) -> str:
        return self.audience or self.client_id

    @property
    def display_name(self) -> str:
        return self.name or self.client_id


@dataclass(frozen=True)
class ForwardAuthSettings:
    """`GET /auth`, the reverse proxies' sub-request (nginx `auth_request`, Traefik ForwardAuth,
    Caddy `forward_auth`)."""

    # Add `Authorization: Bearer <access JWT>` to a 200, for the app behind the proxy (a fresh
    # token is minted when only the gateway session is there).
    pass_token: bool = False
    # The `aud` values of the access tokens /auth accepts; empty = the cookie login's audience.
    audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessSettings:
    """Who may sign in (gateway/access.py). All empty: any account of an enabled provider."""

    email_domains: tuple[str, ...] = ()  # a verified email at one of these domains (exact)
    emails: tuple[str, ...] = ()  # one of these verified emails
    subjects: tuple[str, ...] = ()  # one of these accounts, as `sub` ("twitter:1234...")


@dataclass(frozen=True)
class ProxySettings:
    """SECURITY H3: the reverse proxies whose `X-Forwarded-For`/`-Proto` are believed."""

    trusted: tuple[str, ...] = ()  # CIDRs, e.g. "10.0.0.0/8"; empty: trust no one


@dataclass(frozen=True)
class RateLimitSettings:
    """SECURITY H5: requests per window per client address and route group; 0 = no limit."""

    login_requests: int = 120  # /login, /login/<provider>, /authorize
    login_window: int = 60
    token_requests: int = 3000  # /token, /revoke, /introspect (app backends: many users each)
    token_window: int = 60
    verify_requests: int = 30000  # /verify, /userinfo
    verify_window: int = 60
    verify_shared: bool = False  # count /verify in the store (one round trip) or per process
    enforce_in_dev_mode: bool = False  # development mode (and its benchmarks) has no limits


@dataclass(frozen=True)
class DevSettings:
    provider_port: int = 8081
    state_dir: str = ".gateway-dev"
    # Origins the pages may show pictures from besides https: (the stand-ins serve theirs over
    # http); `serve --dev` sets the stand-ins' own. Development mode only.
    image_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdminSettings:
    """The admin listener serving `/metrics`, apart from the public port (SECURITY D3)."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9090  # 0: a free port, logged at start
    expose_on_public: bool = False  # also serve /metrics on the public listener


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LoggingSettings:
    format: str = ""  # "json" or "text"; empty: text in development mode, json otherwise
    level: str = "INFO"
    # An INFO access line per /verify, /auth, /healthz and /readyz request answered below 500.
    # Off: they come with every request of every app (or every probe), all are counted in
    # /metrics, a line each costs a fifth of /verify's throughput, and a refusal has its own
    # "refused" line with the reason (token refusals: at most 50 a second); DEBUG then.
    check_requests: bool = False


@dataclass(frozen=True)
class Settings:
    issuer: str = ""
    dev_mode: bool = False
    listen: ListenSettings = field(default_factory=ListenSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    cookies: CookieSettings = field(default_factory=CookieSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    dev: DevSettings = field(default_factory=DevSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    forward_auth: ForwardAuthSettings = field(default_factory=ForwardAuthSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    clients: tuple[ClientSettings, ...] = ()

    @property
    def audience(self) -> str:
        return self.tokens.audience or self.issuer

    @property
    def log_format(self) -> str:
        return self.logging.format or ("text" if self.dev_mode else "json")

    def callback_url(self, provider: str) -> str:
        """The fixed upstream redirect_uri of a provider (SECURITY R4: never from request input)."""
        return f"{self.issuer}/callback/{provider}"


# ---------------------------------------------------------------------------------------------
# Loading


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    dev_mode: bool = False,
) -> Settings:
    """Read the TOML file (if any), apply `GATEWAY_...` overrides from `environ`, validate.

    `base` holds defaults beneath the file (development mode uses it); `overrides` goes above
    the environment (the command line's options, e.g. `serve --workers`); `environ` is passed
    in rather than read from `os.environ` so that tests never need to patch the process.
    """
    environ = environ if environ is not None else {}
    raw: dict[str, Any] = _deep_copy(dict(base or {}))
    if path is None and environ.get(ENV_CONFIG_PATH):
        path = environ[ENV_CONFIG_PATH]
    if path is not None:
        deep_merge(raw, _read_toml(Path(path)))
    deep_merge(raw, _env_overrides(environ))
    deep_merge(raw, overrides or {})
    if "dev_mode" in raw:
        # SECURITY D2: the relaxed checks of development mode come only with `serve --dev`.
        raise ConfigError("dev_mode", "cannot be set in a file or the environment; "
                          "use `oauth-gateway serve --dev`")
    if dev_mode:
        raw["dev_mode"] = True
    settings: Settings = _build(Settings, raw, "")
    validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror}") from None


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(name, "malformed variable name (use GATEWAY_SECTION__KEY)")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, "conflicts with another variable")
        node[parts[-1]] = _EnvValue(value, name)
    return tree


@dataclass(frozen=True)
class _EnvValue:
    """A raw string from the environment, coerced to the field's type when the schema is known."""

    text: str
    variable: str


def deep_merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Merge a later layer (file over defaults, environment over file) into `into`.

    A secret set in a later layer replaces the earlier layer's `<key>_file` and the other way
    round; only within one layer are both a conflict (reported when the settings are built).
    """
    for key, value in other.items():
        counterpart = key[: -len(SECRET_FILE_SUFFIX)] if key.endswith(SECRET_FILE_SUFFIX) \
            else key + SECRET_FILE_SUFFIX
        if counterpart not in other:
            into.pop(counterpart, None)
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = _deep_copy(dict(value))
        else:
            into[key] = value


def _deep_copy(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _build(cls: type[Any], raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "config", "must be a table (section)")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    secret_files = {f"{name}{SECRET_FILE_SUFFIX}" for name in known if _is_secret(hints[name])}
    for key in raw:
        if key not in known and key not in secret_files:
            raise ConfigError(prefix + key, "unknown setting")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        if _is_secret(hint) and f"{f.name}_file" in raw:
            if f.name in raw:
                raise ConfigError(key, f"set either {f.name} or {f.name}_file, not both")
            path = raw[f"{f.name}_file"]
            values[f.name] = _read_secret_file(key + "_file", path) if hint is Secret \
                else _read_secret_files(key + "_file", path)
        elif f.name in raw:
            values[f.name] = _coerce(hint, raw[f.name], key)
    return cls(**values)


def _is_secret(hint: Any) -> bool:
    return hint is Secret or _tuple_item(hint) is Secret


def _check_ca_file(path: str) -> None:
    """A CA bundle that cannot be used would fail every login at its first provider call."""
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:  # an OSError too: first
        raise ConfigError("upstream.ca_file", f"{path} holds no PEM certificate") from None
    except OSError as e:
        raise ConfigError("upstream.ca_file", f"cannot read {path}: {e.strerror or e}") from None


def _read_secret_files(key: str, value: Any) -> tuple[Secret, ...]:
    """A list of secrets read from a list of files (comma-separated from the environment)."""
    paths = _coerce(tuple[str, ...], value, key)
    return tuple(_read_secret_file(f"{key}[{i}]", path) for i, path in enumerate(paths))


def _read_secret_file(key: str, value: Any) -> Secret:
    path = value.text if isinstance(value, _EnvValue) else value
    if not isinstance(path, str) or not path:
        raise ConfigError(key, "must be a file path")
    try:
        return Secret(Path(path).read_text(encoding="utf-8").strip())
    except OSError as e:
        raise ConfigError(key, f"cannot read secret file {path}: {e.strerror}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    optional = _optional_inner(hint)
    if optional is not None:
        hint = optional
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, _EnvValue):
            raise ConfigError(key, "is a section; set its keys instead")
        return _build(hint, value, key + ".")
    item = _tuple_item(hint)
    if isinstance(item, type) and dataclasses.is_dataclass(item):
        # A TOML array of tables (`[[clients]]`): each item named by its index.
        if not isinstance(value, list):
            raise ConfigError(key, f"must be an array of tables ([[{key}]])")
        return tuple(_build(item, entry, f"{key}[{i}].") for i, entry in enumerate(value))
    if item is Secret:
        return tuple(Secret(v) for v in _coerce(tuple[str, ...], value, key))
    if isinstance(value, _EnvValue):
        return _from_env_text(hint, value, key)
    if hint is Secret:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return Secret(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, "must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return value
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a list of strings")
        return tuple(value)
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # pragma: no cover


def _from_env_text(hint: Any, value: _EnvValue, key: str) -> Any:
    text = value.text.strip()
    where = f"{key} (from {value.variable})"
    if hint is Secret:
        return Secret(value.text)
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(where, f"must be true or false (got {text!r})")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ConfigError(where, f"must be a number (got {text!r})") from None
    if hint is str:
        return text
    if typing.get_origin(hint) is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    raise ConfigError(where, "cannot be set from the environment")  # pragma: no cover


def _tuple_item(hint: Any) -> Any:
    """`X` of `tuple[X, ...]`, else None."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _optional_inner(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


# ---------------------------------------------------------------------------------------------
# Validation: cross-field rules, one ConfigError naming the key


def validate(settings: Settings) -> None:
    dev = settings.dev_mode
    _check_public_url("issuer", settings.issuer, dev)
    if settings.issuer.endswith("/") or urlsplit(settings.issuer)[3:] != ("", ""):
        raise ConfigError("issuer", "must be a base URL without trailing slash, query or fragment")
    if not 0 <= settings.listen.port <= 65535:
        raise ConfigError("listen.port", "must be between 0 and 65535")
    if not 1 <= settings.listen.workers <= MAX_WORKERS:
        raise ConfigError("listen.workers", f"must be between 1 and {MAX_WORKERS}")

    tokens = settings.tokens
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

    cookies = settings.cookies
    if not cookies.secret:
        raise _missing_secret("cookies.secret", "at least 32 random bytes")
    _check_cookie_secret("cookies.secret", cookies.secret, dev)
    for i, previous in enumerate(cookies.previous_secrets):
        _check_cookie_secret(f"cookies.previous_secrets[{i}]", previous, dev)
        if previous == cookies.secret or previous in cookies.previous_secrets[:i]:
            raise ConfigError(f"cookies.previous_secrets[{i}]",
                              "repeats cookies.secret or an earlier previous secret")
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

    login = settings.login
    for i, url in enumerate(login.allowed_return_urls):
        _check_public_url(f"login.allowed_return_urls[{i}]", url, dev)
    if login.default_return_to:
        _check_public_url("login.default_return_to", login.default_return_to, dev)
    if not 30 <= login.transaction_lifetime <= 3600:
        raise ConfigError("login.transaction_lifetime", "must be between 30 and 3600 seconds")

    upstream = settings.upstream
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
    if login.max_pending_transactions < 1:
        raise ConfigError("login.max_pending_transactions", "must be at least 1")
    _check_store(settings)
    _check_workers(settings)
    _check_operations(settings)

    providers = settings.providers
    for section in dataclasses.fields(providers):
        provider = getattr(providers, section.name)
        if provider is not None:
            _check_provider(f"providers.{section.name}", provider, dev)
    _check_edge(settings)
    _check_oidc_lifetimes(tokens)
    _check_clients(settings)
    for i, origin in enumerate(settings.dev.image_origins):
        _check_origin(f"dev.image_origins[{i}]", origin)
    _check_access(settings.access)


def _check_access(access: AccessSettings) -> None:
    """Entries that could never match are mistakes: say so at start, not by locking users out."""
    _check_domains("access.email_domains", access.email_domains)
    for i, email in enumerate(access.emails):
        local, at, domain = email.rpartition("@")
        if not (at and local and _DOMAIN.fullmatch(domain)) or any(c.isspace() for c in email):
            raise ConfigError(f"access.emails[{i}]",
                              f"must be an email address such as ada@example.com (got {email!r})")
    providers = [f.name for f in dataclasses.fields(ProviderSettings)]
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


def _check_store(settings: Settings) -> None:
    store = settings.store
    try:
        location = parse_store_url(store_url(settings.store.url, dev_mode=settings.dev_mode))
    except ValueError as e:
        raise ConfigError("store.url", str(e)) from None
    if store.password and location.kind != "redis":
        raise ConfigError("store.password", "is only for a redis:// or rediss:// store.url")
    if store.password and location.has_password:
        raise ConfigError("store.password", "store.url holds a password already; set only one")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", store.key_prefix):
        raise ConfigError("store.key_prefix",
                          "must be 1 to 100 letters, digits, '.', '_', ':' or '-'")


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
                          "between them; use a sqlite:/// or redis:// store.url")


def _check_operations(settings: Settings) -> None:
    if not 0 <= settings.admin.port <= 65535:
        raise ConfigError("admin.port", "must be between 0 and 65535")
    if settings.logging.format not in ("", *LOG_FORMATS):
        raise ConfigError("logging.format", f"must be one of {', '.join(LOG_FORMATS)}")
    if settings.logging.level.upper() not in LOG_LEVELS:
        raise ConfigError("logging.level", f"must be one of {', '.join(LOG_LEVELS)}")


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
    enabled = {f.name for f in dataclasses.fields(settings.providers)
               if getattr(settings.providers, f.name) is not None}
    seen: set[str] = set()
    for i, client in enumerate(settings.clients):
        prefix = f"clients[{i}]"
        if not CLIENT_ID_PATTERN.fullmatch(client.client_id):
            raise ConfigError(f"{prefix}.client_id",
                              "is required: 1 to 128 letters, digits, '.', '_', '~' or '-'")
        if client.client_id in seen:
            raise ConfigError(f"{prefix}.client_id", f"{client.client_id!r} is registered twice")
        seen.add(client.client_id)
        if client.client_secret_hash and not CLIENT_SECRET_HASH_PATTERN.fullmatch(
                client.client_secret_hash):
            raise ConfigError(f"{prefix}.client_secret_hash",
                              "must be the output of `oauth-gateway clients hash-secret`")
        if not client.redirect_uris:
            raise ConfigError(f"{prefix}.redirect_uris", "must list at least one URL")
        for name in ("redirect_uris", "post_logout_redirect_uris"):
            for j, uri in enumerate(getattr(client, name)):
                _check_registered_uri(f"{prefix}.{name}[{j}]", uri, settings.dev_mode)
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
