"""Any OpenID Connect provider, configured from its discovery document alone
(`[providers.oidc.<name>]`); Microsoft's connector (providers/microsoft.py) is this one with its
own rules.

The authorization code flow with `state`, PKCE S256 and a `nonce` (RFC 9700 2.1.1, OIDC Core
3.1.2.1); the code exchanged with client_secret_basic (or client_secret_post when the provider
takes only that); the `id_token` verified with the provider's JWKS, in the algorithms its
discovery lists (asymmetric only), its `iss` exactly the configured issuer (SECURITY C9), `aud`,
`azp`, `exp`, `iat`, `nonce` (providers/id_tokens.py); userinfo asked only when the `id_token`
lacks the email or the name, and refused when it names another `sub`.
"""

from __future__ import annotations

import base64
import functools
import time
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from typing import Any

from gateway import jose, transactions
from gateway.config import OidcProviderSettings, Secret, Settings
from gateway.errors import UpstreamError, unverifiable_answer
from gateway.identity import Identity, checked_picture_url, text_claim
from gateway.providers import id_tokens
from gateway.providers.base import (
    ArgumentReader,
    CallbackParameters,
    LoginStart,
    oauth2_callback_parameters,
)
from gateway.transactions import LoginTransaction
from gateway.upstream.client import Upstream
from gateway.upstream.discovery import Discovery, ProviderMetadata, StaticMetadata, discovery_url
from gateway.upstream.provider_keys import UpstreamKeys


class OidcConnector:
    """An OpenID provider's connector. Discovery, keys and calls are its own; the handlers see
    only the Connector protocol (providers/base.py)."""

    binding_cookie: str | None = None

    def __init__(self, *, name: str, display_name: str, issuer: str, client_id: str,
                 client_secret: Secret, scopes: Sequence[str], upstream: Upstream,
                 discovery: Discovery | StaticMetadata, callback_url: str, leeway: int,
                 jwks_cache_seconds: float, jwks_refresh_cooldown: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.display_name = display_name
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = tuple(scopes)
        self.upstream = upstream
        self.discovery = discovery
        self.callback_url = callback_url
        self.leeway = leeway
        self.clock = clock
        self._jwks_cache_seconds = jwks_cache_seconds
        self._jwks_refresh_cooldown = jwks_refresh_cooldown
        self._keys: UpstreamKeys | None = None
        self._keys_url = ""

    # -- the Connector protocol ----------------------------------------------------------------

    async def begin(self, tx: LoginTransaction) -> LoginStart:
        metadata = await self.discovery.metadata()
        state = transactions.new_state()
        query = urllib.parse.urlencode(self.authorization_params(tx, state))
        endpoint = metadata.authorization_endpoint
        # Discovery allows a query in the endpoint (OAuth 2.0 3.1): ours goes after it.
        return LoginStart(state, f"{endpoint}{'&' if '?' in endpoint else '?'}{query}")

    def callback_parameters(self, argument: ArgumentReader) -> CallbackParameters:
        return oauth2_callback_parameters(argument)

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        assert params.code is not None
        metadata = await self.discovery.metadata()
        tokens = await self.exchange_code(metadata, params.code, tx.code_verifier)
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise self.unverifiable("token response lacks id_token or access_token")
        id_claims = await id_tokens.verified_id_token(
            id_token, self.keys(metadata), provider=self.name, issuers=self.issuers,
            client_id=self.client_id, algorithms=self.id_token_algorithms(metadata),
            nonce=tx.nonce, leeway=self.leeway, now=self.clock())
        id_tokens.check_at_hash(id_claims, access_token, _header_alg(id_token), self.name)
        self.check_id_claims(id_claims)
        userinfo: dict[str, Any] = {}
        if metadata.userinfo_endpoint is not None and self.needs_userinfo(id_claims):
            userinfo = await self.userinfo(metadata.userinfo_endpoint, access_token)
            if userinfo.get("sub") != id_claims["sub"]:
                # OIDC Core 5.3.4: "MUST NOT be used" otherwise (SECURITY C9).
                raise self.unverifiable("userinfo sub differs from id_token sub")
        return self.identity(id_claims, userinfo)

    # -- the steps, each a method a provider with its own rules may override --------------------

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.callback_url,
            "scope": " ".join(self.scopes),
            "state": state,
            "nonce": tx.nonce,
            "code_challenge": tx.code_challenge,
            "code_challenge_method": "S256",
        }

    async def exchange_code(self, metadata: ProviderMetadata, code: str,
                            code_verifier: str) -> dict[str, Any]:
        """RFC 6749 4.1.3 with the PKCE verifier. Never retried: a code is single use."""
        fixed = {"redirect_uri": self.callback_url}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if metadata.token_endpoint_auth_method == "client_secret_basic":
            headers["Authorization"] = basic_authorization(self.client_id,
                                                           self.client_secret.reveal())
        else:
            fixed.update(client_id=self.client_id, client_secret=self.client_secret.reveal())
        # urlencode's output, less its per-pair work on a login's path.
        quote = urllib.parse.quote_plus
        body = (f"grant_type=authorization_code&code={quote(code)}"
                f"&code_verifier={quote(code_verifier)}&{_form_encoded(tuple(fixed.items()))}")
        request = self.upstream.request(metadata.token_endpoint, method="POST", body=body,
                                        headers=headers)
        return await self.upstream.fetch_json(request, provider=self.name, what="token")

    def keys(self, metadata: ProviderMetadata) -> UpstreamKeys:
        """The provider's JWKS, from its discovery's `jwks_uri` (a new cache if it moved)."""
        keys = self._keys
        if keys is None or self._keys_url != metadata.jwks_uri:
            self._keys_url = metadata.jwks_uri
            keys = self._keys = UpstreamKeys(
                self.upstream, provider=self.name, jwks_url=metadata.jwks_uri,
                cache_seconds=self._jwks_cache_seconds,
                refresh_cooldown=self._jwks_refresh_cooldown)
        return keys

    def id_token_algorithms(self, metadata: ProviderMetadata) -> tuple[str, ...]:
        """What the provider says it signs with, of the asymmetric algorithms only."""
        return tuple(a for a in metadata.id_token_signing_algs
                     if a in id_tokens.ASYMMETRIC_ALGORITHMS)

    def check_id_claims(self, id_claims: dict[str, Any]) -> None:
        """A provider's own rules on the verified id_token's claims, before anything else is
        asked of it (Google: the Workspace organization, `hd`)."""

    def issuers(self, claims: dict[str, Any]) -> Collection[str]:
        return (self.issuer,)

    def needs_userinfo(self, id_claims: dict[str, Any]) -> bool:
        return not (id_claims.get("email") and id_claims.get("name"))

    async def userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        request = self.upstream.request(url, headers={"Authorization": f"Bearer {access_token}"})
        return await self.upstream.fetch_json(request, provider=self.name, what="userinfo")

    def identity(self, id_claims: dict[str, Any], userinfo: dict[str, Any]) -> Identity:
        return identity_from_claims(self.name, id_claims, userinfo)

    def unverifiable(self, detail: str) -> UpstreamError:
        return unverifiable_answer(self.name, detail)


def build_all(settings: Settings, upstream: Upstream) -> list[OidcConnector]:
    """One connector per `[providers.oidc.<name>]`."""
    return [build_one(name, section, settings, upstream)
            for name, section in settings.providers.oidc.items()]


def build_one(name: str, section: OidcProviderSettings, settings: Settings,
              upstream: Upstream) -> OidcConnector:
    cache = settings.upstream
    discovery = Discovery(upstream, provider=name, url=discovery_url(section.issuer),
                          expected_issuer=section.issuer, cache_seconds=cache.jwks_cache_seconds,
                          retry_seconds=cache.jwks_refresh_cooldown)
    return OidcConnector(
        name=name, display_name=section.display_name, issuer=section.issuer,
        client_id=section.client_id, client_secret=section.client_secret,
        scopes=section.scopes, upstream=upstream, discovery=discovery,
        callback_url=settings.callback_url(name), leeway=settings.tokens.leeway,
        jwks_cache_seconds=cache.jwks_cache_seconds,
        jwks_refresh_cooldown=cache.jwks_refresh_cooldown)


# ---------------------------------------------------------------------------------------------
# Protocol logic: plain functions


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 2.3.1: HTTP Basic of the form-urlencoded client id and secret."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def identity_from_claims(idp: str, id_claims: dict[str, Any],
                         userinfo: dict[str, Any]) -> Identity:
    """Standard claims (OIDC Core 5.1) to our identity; userinfo (same `sub`, checked) only
    fills what the id_token lacks. The email and its `email_verified` come as a pair from one
    source, so that one answer's flag never vouches for the other's address."""
    source = id_claims if id_claims.get("email") else userinfo
    email = source.get("email")
    merged = {**userinfo, **{k: v for k, v in id_claims.items() if v not in (None, "")}}
    return Identity(
        idp=idp,
        provider_subject=id_claims["sub"],
        email=email if isinstance(email, str) and email else None,
        email_verified=id_tokens.claimed_true(source.get("email_verified")),
        name=text_claim(merged.get("name")),
        picture=checked_picture_url(merged.get("picture")),
    )


@functools.lru_cache(maxsize=16)
def _form_encoded(fields: tuple[tuple[str, str], ...]) -> str:
    """The fields every code exchange of a connector sends alike, encoded once."""
    return urllib.parse.urlencode(fields)


def _header_alg(id_token: str) -> str:
    """The `alg` of a token whose header verified_id_token has already parsed and checked."""
    return _alg_of_header(id_token.partition(".")[0])


@functools.lru_cache(maxsize=16)
def _alg_of_header(segment: str) -> str:
    # A provider's header is the same for every token one key signs: parsed once per key.
    return str(jose.parse_header_segment(segment)["alg"])
