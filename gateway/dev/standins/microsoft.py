"""A local stand-in for the Microsoft identity platform v2.0, speaking its OpenID Connect
protocol with its paths, so that a configuration differs only in `authority`.

Endpoints, under `/<tenant>/` (common, organizations, consumers or a tenant ID):
- `GET /<tenant>/v2.0/.well-known/openid-configuration`: the discovery document; its issuer is
  the template `<authority>/{tenantid}/v2.0` (a tenant ID's own issuer for a tenant path).
- `GET /<tenant>/oauth2/v2.0/authorize`: an account chooser (PKCE S256 required), then the
  redirect with `code` and `state`.
- `POST /<tenant>/oauth2/v2.0/token`: client_secret_basic or client_secret_post; answers an
  `id_token` (RS256) with `iss` `<authority>/<the account's tid>/v2.0`, `tid`, `oid`, a
  per-app `sub`, `name`, `preferred_username`, `email` and, when the account's tenant verified
  its domain, `xms_edov` (the optional claim an app registration asks for).
- `GET /<tenant>/discovery/v2.0/keys`: the JWKS.

Test accounts, in two work tenants and the personal accounts' tenant: Ada and Grace (Contoso,
domain verified: `xms_edov` true), Alan (Fabrikam, his address unverified: `xms_edov` false),
Mallory (Fabrikam, whose admin set her email to Ada's address without owning the domain: no
`xms_edov`, the "nOAuth" trap), and Sam, a personal Microsoft account.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import tornado.web

from gateway.dev.standins.common import (
    DEV_ACCOUNTS,
    Avatar,
    DevUser,
    Grant,
    OAuth2TokenHandler,
    make_avatar,
    make_standin_app,
)
from gateway.dev.standins.oidc import ID_TOKEN_LIFETIME, DiscoveryHandler, OidcStandIn
from gateway.dev.standins.oidc_common import (
    AuthorizeHandler,
    ChooseAccountHandler,
    JwksHandler,
    at_hash,
)

__all__ = ["CONTOSO", "DEV_USERS", "FABRIKAM", "MicrosoftAccount", "MicrosoftStandIn",
           "dev_provider"]

CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FABRIKAM = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
CONSUMERS = "9188040d-6c67-4c5b-b112-36a304b66dad"
TENANT = r"(?:common|organizations|consumers|[0-9a-f-]{36})"


@dataclass(frozen=True)
class MicrosoftAccount:
    key: str
    tid: str
    oid: str
    name: str
    email: str | None
    xms_edov: bool | None  # None: the claim is absent
    avatar: Avatar  # served, never claimed: Microsoft's id_token has no picture

    @property
    def sub(self) -> str:
        return f"{self.tid}:{self.oid}"


def _account(user: DevUser, tid: str, email: str | None, xms_edov: bool | None,
             colour: str) -> MicrosoftAccount:
    oid = str(uuid.UUID(bytes=hashlib.sha256(b"microsoft:" + user.key.encode()).digest()[:16]))
    return MicrosoftAccount(user.key, tid, oid, user.name, email, xms_edov,
                            make_avatar("microsoft", user, colour))


_ada, _grace, _alan = DEV_ACCOUNTS
DEV_USERS: tuple[MicrosoftAccount, ...] = (
    _account(_ada, CONTOSO, "ada@example.com", True, "#0078d4"),
    _account(_grace, CONTOSO, "grace@example.com", True, "#107c10"),
    _account(_alan, FABRIKAM, "alan@example.org", False, "#d83b01"),
    _account(DevUser("mallory", "Mallory (her tenant says she is ada@example.com)", "Mallory",
                     "Admin", None, False, "mallory"), FABRIKAM, "ada@example.com", None,
             "#5c2d91"),
    _account(DevUser("sam", "Sam (a personal Microsoft account)", "Sam", "Personal", None,
                     False, "sam"), CONSUMERS, "sam@outlook.example", True, "#008272"),
)


class MicrosoftStandIn(OidcStandIn):
    """The generic stand-in's protocol, with Microsoft's paths, issuers and claims."""

    brand: ClassVar[str] = "Microsoft"
    sends_iss: ClassVar[bool] = False
    tenant: str = "common"  # the tenant the gateway is configured with (its discovery path)

    def make_app(self) -> tornado.web.Application:
        return make_standin_app(self, [
            (rf"/{TENANT}/v2\.0/\.well-known/openid-configuration", DiscoveryHandler),
            (rf"/{TENANT}/oauth2/v2\.0/authorize", AuthorizeHandler),
            (rf"/{TENANT}/oauth2/v2\.0/authorize/choose", ChooseAccountHandler),
            (rf"/{TENANT}/oauth2/v2\.0/token", OAuth2TokenHandler),
            (rf"/{TENANT}/discovery/v2\.0/keys", JwksHandler),
        ])

    def _discovery(self, base: str) -> dict[str, Any]:
        tenant = self.tenant
        issuer_tenant = {"common": "{tenantid}", "organizations": "{tenantid}",
                         "consumers": CONSUMERS}.get(tenant, tenant)
        return {
            "issuer": self.discovery_issuer or f"{base}/{issuer_tenant}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "response_types_supported": ["code", "id_token", "code id_token",
                                         "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "claims_supported": ["sub", "iss", "cloud_instance_name", "aud", "exp", "iat",
                                 "auth_time", "acr", "nonce", "preferred_username", "name",
                                 "tid", "ver", "at_hash", "c_hash", "email"],
            "tenant_region_scope": None,
        }

    def id_token(self, grant: Grant[Any], access_token: str) -> str:
        now = int(self.clock())
        account: Any = grant.account
        client_id = grant.request.client_id
        claims: dict[str, Any] = {
            "ver": "2.0", "iss": f"{self.base_url}/{account.tid}/v2.0", "aud": client_id,
            "azp": client_id, "iat": now, "nbf": now, "exp": now + ID_TOKEN_LIFETIME,
            # Microsoft's sub is pairwise: per app and account, useless to another app.
            "sub": hashlib.sha256(f"{client_id}:{account.oid}".encode()).hexdigest()[:43],
            "tid": account.tid, "oid": account.oid, "at_hash": at_hash(access_token),
        }
        scope = grant.request.scope
        if "profile" in scope:
            claims.update(name=account.name, preferred_username=account.email)
        if "email" in scope and account.email:
            claims["email"] = account.email
            if account.xms_edov is not None:
                claims["xms_edov"] = account.xms_edov
        return self.signed_id_token(claims, grant.request.nonce)


def dev_provider(base_url: str, gateway_issuer: str
                 ) -> tuple[MicrosoftStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and the gateway's `providers.microsoft` for it."""
    client_id = str(uuid.uuid4())
    client_secret = secrets.token_urlsafe(30)
    standin = MicrosoftStandIn(base_url, client_id, client_secret,
                               [f"{gateway_issuer}/callback/microsoft"],
                               accounts=DEV_USERS)  # type: ignore[arg-type]
    section = {"client_id": client_id, "client_secret": client_secret, "tenant": "common",
               "authority": base_url}
    return standin, section
