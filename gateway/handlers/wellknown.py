"""Discovery: the JWKS and the OpenID configuration document."""

from __future__ import annotations

from typing import Any

from gateway.context import GatewayContext
from gateway.handlers.base import BaseHandler

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
    issuer = ctx.settings.issuer
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/introspect",
        "verification_endpoint": f"{issuer}/verify",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ctx.keyset.algorithm],
        "access_token_signing_alg_values_supported": [ctx.keyset.algorithm],
        "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "auth_time",
                             "idp", "email", "email_verified", "name", "picture"],
        "login_providers": {name: f"{issuer}/login/{name}" for name in ctx.providers},
    }
