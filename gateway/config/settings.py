"""The settings: typed, frozen dataclasses, one per configuration section, and `Secret`, whose
`repr` never shows its value. Loaded by loading.py, checked by validation.py."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    # "llhttp": the data plane's connection (gateway/data_plane.py) for every route, the same
    # handlers behind it, cheaper per request; "tornado": Tornado's own HTTP/1.1 server, which
    # answers some malformed requests llhttp refuses (docs/configuration.md, `[listen]`).
    http_parser: str = "llhttp"


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
    # Memory for tokens already verified, per process (a hit skips the signature check).
    verified_cache_mb: int = 64


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
    # SECURITY H10: logins (and, separately, saved /authorize requests) one client address (an
    # IPv6 /64) may start per transaction_lifetime; past it, that client gets a 429.
    max_pending_per_client: int = 20
    # The total of each, a bound on memory only: far above any one client's cap, so that
    # filling it takes tens of thousands of addresses (a full store is everyone's 503).
    max_pending_transactions: int = 500_000


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


# The providers the gateway has a connector of its own for, by the name of their routes (and
# "x", X's brand): a generic OpenID Connect provider may not take one of these names.
BUILT_IN_PROVIDER_NAMES = ("google", "facebook", "twitter", "x", "github", "microsoft", "apple")
# A generic provider's name is a path segment (/login/<name>), the `idp` claim and the prefix of
# its `sub`: lower-case letters, digits, '-' and '_', starting with a letter.
OIDC_PROVIDER_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# How the gateway authenticates at a generic provider's token endpoint (OIDC Core 9), in order
# of preference: client_secret_basic is the default when discovery lists none.
TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class OidcProviderSettings:
    """A generic OpenID Connect provider (`[providers.oidc.<name>]`): everything else comes
    from its discovery document, `<issuer>/.well-known/openid-configuration`."""

    display_name: str = ""  # the brand on its button ("Acme SSO"); required
    issuer: str = ""  # compared exactly with the discovery document's and the id_token's (C9)
    client_id: str = ""
    client_secret: Secret = NO_SECRET
    scopes: tuple[str, ...] = ("openid", "email", "profile")


@dataclass(frozen=True)
class MicrosoftSettings:
    """Microsoft identity platform v2.0 (Entra ID work or school accounts, personal Microsoft
    accounts), an OpenID Connect provider with a tenant in its URLs and issuer."""

    client_id: str = ""  # the app registration's Application (client) ID
    client_secret: Secret = NO_SECRET
    # common: any Entra tenant and personal accounts; organizations: any Entra tenant;
    # consumers: personal accounts only; or one tenant's GUID: that tenant only.
    tenant: str = "common"
    authority: str = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class GitHubSettings:
    client_id: str = ""  # the OAuth app's Client ID
    client_secret: Secret = NO_SECRET
    authorize_url: str = "https://github.com/login/oauth/authorize"
    token_url: str = "https://github.com/login/oauth/access_token"
    # The REST API root: /user and /user/emails are read under it (GitHub Enterprise Server:
    # https://HOST/api/v3).
    api_url: str = "https://api.github.com"
    # read:user for /user; user:email for /user/emails, where the verified addresses are.
    scopes: tuple[str, ...] = ("read:user", "user:email")


APPLE_SCOPES = ("name", "email")
# Apple's refusal of a client secret that lives longer than 6 months (15777000 seconds).
APPLE_MAX_CLIENT_SECRET_LIFETIME = 15_777_000


@dataclass(frozen=True)
class AppleSettings:
    """Sign in with Apple (providers/apple.py). The client secret is no configured string: the
    gateway signs it (an ES256 JWT) with the team's key."""

    client_id: str = ""  # the Services ID, e.g. com.example.web
    team_id: str = ""  # the Apple Developer team's 10-character id
    key_id: str = ""  # the 10-character id of the "Sign in with Apple" key
    # The key's .p8 file (PKCS#8, EC P-256), usually as private_key_file.
    private_key: Secret = NO_SECRET
    # Apple's base URL: /auth/authorize, /auth/token and /auth/keys are under it; it is also
    # the `iss` of Apple's id_tokens and the `aud` of our client secrets.
    authority: str = "https://appleid.apple.com"
    scopes: tuple[str, ...] = APPLE_SCOPES


@dataclass(frozen=True)
class ProviderSettings:
    google: GoogleSettings | None = None
    facebook: FacebookSettings | None = None
    twitter: TwitterSettings | None = None
    github: GitHubSettings | None = None
    microsoft: MicrosoftSettings | None = None
    apple: AppleSettings | None = None
    # Generic OpenID Connect providers by name (`[providers.oidc.<name>]`), any number.
    oidc: Mapping[str, OidcProviderSettings] = field(default_factory=dict)

    def enabled_names(self) -> list[str]:
        """Every enabled provider's name (its routes, its `idp` claim, its `sub` prefix)."""
        built_in = [f.name for f in dataclasses.fields(self)
                    if f.name != "oidc" and getattr(self, f.name) is not None]
        return [*built_in, *self.oidc]


@dataclass(frozen=True)
class StoreSettings:
    # memory://, sqlite:///absolute/path.db, sqlite:relative.db, redis://host:port/db or
    # postgresql://user@host:5432/dbname; empty: memory:// in development mode,
    # gateway.store.location.PRODUCTION_URL otherwise.
    url: str = ""
    password: Secret = NO_SECRET  # the Redis or PostgreSQL password, when not in the URL
    key_prefix: str = "oauth-gateway"  # Redis keys start with it: gateways may share a Redis
    sentinel_password: Secret = NO_SECRET  # redis+sentinel://: the sentinels' own password
    # Replicas that must acknowledge a write before the gateway answers (WAIT; SECURITY T7);
    # 0: none. Redis and Sentinel only.
    min_replicas_ack: int = 0


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
    # OIDC Registration 2: how its ID tokens are signed, RS256 or tokens.algorithm (J11).
    id_token_signed_response_alg: str = "RS256"
    # Back-Channel Logout 1.0: where the gateway POSTs a logout_token when a session the app
    # took part in ends (SECURITY P9); empty = none sent.
    backchannel_logout_uri: str = ""
    # Logout tokens always carry `sid` (and `sub`), so this only records the app's wish.
    backchannel_logout_session_required: bool = False

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
    # The bearer secret of the sessions API (/admin/sessions); none: the API is off.
    api_token: Secret = NO_SECRET


@dataclass(frozen=True)
class DataPlaneSettings:
    """A second public listener for `/verify` and `/auth` only, on llhttp instead of Tornado's
    HTTP layer (gateway/data_plane.py): the same answers, cheaper per request."""

    enabled: bool = False
    address: str = "0.0.0.0"  # noqa: S104 - like listen.address: a container's interfaces
    port: int = 8081  # 0: a free port, logged at start


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
class TracingSettings:
    # OTLP/HTTP traces endpoint of a collector, e.g. "http://127.0.0.1:4318/v1/traces".
    # Empty: no tracing (the `tracing` extra is not needed).
    otlp_endpoint: str = ""
    service_name: str = "oauth-gateway"
    sample_ratio: float = 1.0  # of new traces; a trusted proxy's traceparent decides its own


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
    data_plane: DataPlaneSettings = field(default_factory=DataPlaneSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
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
