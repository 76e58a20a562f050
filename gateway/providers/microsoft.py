"""Sign in with Microsoft: the Microsoft identity platform v2.0, as the generic OpenID Connect
connector (providers/oidc.py) plus Microsoft's own rules (SECURITY C7).

- Discovery at `{authority}/{tenant}/v2.0/.well-known/openid-configuration`, whose issuer is a
  template for the multi-tenant endpoints: `{authority}/{tenantid}/v2.0`.
- An ID token's `iss` must be that template with the token's own `tid`; `organizations` refuses
  the personal accounts' tenant, `consumers` accepts it alone, a configured tenant ID only itself.
- The subject is `microsoft:<tid>:<oid>`: the tenant and the account's object id, both
  immutable and the same for every app (Microsoft's `sub` is per app), never the email or
  `preferred_username`, which users and tenant admins can set.
- "nOAuth": a tenant's admin can set any address as a user's `email`. It counts as verified only
  when the `xms_edov` claim (email domain owner verified) is true.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from gateway.config import MicrosoftSettings, Settings
from gateway.identity import Identity, text_claim
from gateway.providers import id_tokens
from gateway.providers.oidc import OidcConnector
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream
from gateway.upstream.discovery import Discovery, discovery_url

NAME = "microsoft"
DISPLAY_NAME = "Microsoft"
SCOPES = ("openid", "email", "profile")  # profile: `oid` and `name` in the id_token
# The tenant of every personal Microsoft account (Microsoft's documented constant).
CONSUMERS_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class MicrosoftConnector(OidcConnector):
    def __init__(self, settings: MicrosoftSettings, **kwargs: Any) -> None:
        super().__init__(name=NAME, display_name=DISPLAY_NAME,
                         issuer=issuer_template(settings), client_id=settings.client_id,
                         client_secret=settings.client_secret, scopes=SCOPES, **kwargs)
        self.settings = settings

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        return {**super().authorization_params(tx, state), "response_mode": "query"}

    def issuers(self, claims: dict[str, Any]) -> Collection[str]:
        return token_issuers(self.settings, claims)

    def needs_userinfo(self, id_claims: dict[str, Any]) -> bool:
        return False  # Microsoft's userinfo (on Graph) has nothing the id_token lacks

    def identity(self, id_claims: dict[str, Any], userinfo: dict[str, Any]) -> Identity:
        oid = id_claims.get("oid")
        if not isinstance(oid, str) or not TENANT_ID.fullmatch(oid):
            raise self.unverifiable("id_token lacks oid (the profile scope)")
        return identity_from_microsoft(id_claims)


def build(settings: Settings, upstream: Upstream) -> MicrosoftConnector | None:
    microsoft = settings.providers.microsoft
    if microsoft is None:
        return None
    cache = settings.upstream
    url = discovery_url(f"{microsoft.authority}/{microsoft.tenant}/v2.0")
    discovery = Discovery(upstream, provider=NAME, url=url,
                          expected_issuer=discovery_issuers(microsoft),
                          cache_seconds=cache.jwks_cache_seconds,
                          retry_seconds=cache.jwks_refresh_cooldown)
    return MicrosoftConnector(microsoft, upstream=upstream, discovery=discovery,
                              callback_url=settings.callback_url(NAME),
                              leeway=settings.tokens.leeway,
                              jwks_cache_seconds=cache.jwks_cache_seconds,
                              jwks_refresh_cooldown=cache.jwks_refresh_cooldown)


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def issuer_template(settings: MicrosoftSettings) -> str:
    return f"{settings.authority}/{{tenantid}}/v2.0"


def discovery_issuers(settings: MicrosoftSettings) -> tuple[str, ...]:
    """What the discovery document of the configured tenant may name as its issuer (SECURITY
    C9): the template for common and organizations; for consumers the template or the personal
    accounts' tenant; for a tenant ID, that tenant's issuer."""
    tenant = settings.tenant
    if tenant in ("common", "organizations"):
        return (issuer_template(settings),)
    if tenant == "consumers":
        return (issuer_template(settings), f"{settings.authority}/{CONSUMERS_TENANT}/v2.0")
    return (f"{settings.authority}/{tenant}/v2.0",)


def token_issuers(settings: MicrosoftSettings, claims: dict[str, Any]) -> tuple[str, ...]:
    """The one `iss` an ID token may have: the issuer of the tenant it names (`tid`), when
    that tenant may sign in here; none otherwise (SECURITY C7)."""
    tid = claims.get("tid")
    if not isinstance(tid, str) or not TENANT_ID.fullmatch(tid):
        return ()
    tenant = settings.tenant
    allowed = (tenant == "common"
               or (tenant == "organizations" and tid != CONSUMERS_TENANT)
               or (tenant == "consumers" and tid == CONSUMERS_TENANT)
               or tid == tenant)
    return (f"{settings.authority}/{tid}/v2.0",) if allowed else ()


def identity_from_microsoft(id_claims: dict[str, Any]) -> Identity:
    """`tid` and `oid` (checked by then) as the subject; the email only with `xms_edov`."""
    email = id_claims.get("email")
    return Identity(
        idp=NAME,
        provider_subject=f"{id_claims['tid']}:{id_claims['oid']}",
        email=email if isinstance(email, str) and email else None,
        email_verified=id_tokens.claimed_true(id_claims.get("xms_edov")),
        name=text_claim(id_claims.get("name")),
    )
