"""Typed, frozen settings loaded once from a TOML file plus `GATEWAY_...` environment variables.

Environment variables override the file: `GATEWAY_ISSUER`, `GATEWAY_TOKENS__ALGORITHM`,
`GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET` (a double underscore separates sections). Any secret
can instead be read from a file: `client_secret_file = "/run/secrets/google"` in TOML, or
`GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE=/run/secrets/google` in the environment.

Every problem is reported as a `ConfigError` naming the key, so the CLI can print one clear line.
`settings.py` holds the sections, `loading.py` reads them, `validation.py` checks them; this
package exports what the rest of the gateway uses.
"""

from gateway.config.loading import deep_merge, load_settings
from gateway.config.settings import (
    ALGORITHMS,
    APPLE_MAX_CLIENT_SECRET_LIFETIME,
    OIDC_SCOPES,
    AccessSettings,
    AppleSettings,
    ClientSettings,
    CookieSettings,
    FacebookSettings,
    GitHubSettings,
    GoogleSettings,
    MicrosoftSettings,
    OidcProviderSettings,
    Secret,
    Settings,
    TokenSettings,
    TracingSettings,
    TwitterSettings,
    UpstreamSettings,
)

__all__ = [
    "ALGORITHMS",
    "APPLE_MAX_CLIENT_SECRET_LIFETIME",
    "OIDC_SCOPES",
    "AccessSettings",
    "AppleSettings",
    "ClientSettings",
    "CookieSettings",
    "FacebookSettings",
    "GitHubSettings",
    "GoogleSettings",
    "MicrosoftSettings",
    "OidcProviderSettings",
    "Secret",
    "Settings",
    "TokenSettings",
    "TracingSettings",
    "TwitterSettings",
    "UpstreamSettings",
    "deep_merge",
    "load_settings",
]
