"""Discovery: the JWKS and the OpenID configuration document."""

from __future__ import annotations

from typing import Any

from gateway.config import OIDC_SCOPES
from gateway.context import GatewayContext
from gateway.handlers.base import BaseHandler
from gateway.oidc.authorization import PROMPT_VALUES
from gateway.oidc.clients import AUTH_METHODS, NONE

JWKS_MAX_AGE = 300  # seconds; short enough that a newly published key is seen quickly


class JwksHandler(BaseHandler):
    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        self.set_header("Cache-Control", f"public, max-age={JWKS_MAX_AGE}")
        self.set_header("Access-Control-Allow-Origin", "*")  # public keys, no credentials
        self.set_header("Content-Type", "application/jwk-set+json")
        self.finish(self.ctx.keyset.jwks())


class OpenIdConfigurationHandler(BaseHandler):
    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        self.set_header("Cache-Control", f"public, max-age={JWKS_MAX_AGE}")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.write_json(openid_configuration(self.ctx))


def openid_configuration(ctx: GatewayContext) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 section 3, RFC 8414 and RFC 9207 metadata."""
    issuer = ctx.settings.issuer
    client_auth = list(AUTH_METHODS)
    confidential_auth = [m for m in AUTH_METHODS if m != NONE]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/logout/oidc",
        # Back-Channel Logout 1.0 section 2.1: logout tokens always carry `sid`.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "verification_endpoint": f"{issuer}/verify",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        # SECURITY J11: RS256 (Discovery 3 requires it), then tokens.algorithm.
        "id_token_signing_alg_values_supported": list(ctx.keyset.id_token_algorithms),
        "access_token_signing_alg_values_supported": [ctx.keyset.algorithm],
        "token_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint_auth_methods_supported": confidential_auth,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(OIDC_SCOPES),
        "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "auth_time",
                             "nonce", "at_hash", "azp", "sid", "idp", "email",
                             "email_verified", "name", "picture"],
        "prompt_values_supported": sorted(PROMPT_VALUES),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "login_providers": {name: f"{issuer}/login/{name}" for name in ctx.providers},
    }
