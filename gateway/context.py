"""The objects every handler shares, built once in app.py and handed to handlers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from gateway.access import AccessPolicy
from gateway.config import Settings
from gateway.cookies import CookiePolicy
from gateway.keys import KeySet, purpose_key
from gateway.metrics import GatewayMetrics
from gateway.oidc.backchannel import BackChannelLogout
from gateway.oidc.clients import ClientRegistry
from gateway.oidc.grants import Grants
from gateway.pending import PendingCaps
from gateway.providers import Connector
from gateway.redirects import AllowedReturn
from gateway.sessions import Sessions
from gateway.store import Store
from gateway.tokens import TokenIssuer, TokenVerifier

if TYPE_CHECKING:  # the `tracing` extra: imported only when tracing is configured
    from gateway.tracing import Tracing


@dataclass
class GatewayContext:
    settings: Settings
    keyset: KeySet
    store: Store
    issuer: TokenIssuer
    verifier: TokenVerifier
    sessions: Sessions
    cookies: CookiePolicy
    allowed_returns: tuple[AllowedReturn, ...]
    access: AccessPolicy = field(default_factory=AccessPolicy)
    providers: dict[str, Connector] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    # SECURITY H10: per-client caps on started logins and saved /authorize requests; None in
    # development mode unless rate_limits.enforce_in_dev_mode (the benchmarks log in a lot).
    pending_caps: PendingCaps | None = None
    tracing: Tracing | None = None  # [tracing] otlp_endpoint set

    def use_keyset(self, keyset: KeySet) -> None:
        """Swap in a reloaded key set (SECURITY K3): the JWKS, the signing key and the
        verification keys change together, between two requests."""
        if keyset is self.keyset:
            return
        self.verifier.use_keyset(keyset)
        self.issuer.keyset = keyset
        self.keyset = keyset

    @cached_property
    def clients(self) -> ClientRegistry:
        """The registered downstream OIDC clients."""
        return ClientRegistry(self.settings.clients)

    @cached_property
    def grants(self) -> Grants:
        """Codes, refresh-token families and revocations, in the store."""
        return Grants(self.store, self.settings.tokens, clock=self.clock,
                      successor_key=purpose_key(self.settings.cookies.secret.reveal(),
                                                "refresh-token successor"),
                      listener=self.backchannel)

    @cached_property
    def backchannel(self) -> BackChannelLogout:
        """Back-channel logout: the clients of each session, told when it ends (P9)."""
        tokens = self.settings.tokens
        return BackChannelLogout(
            self.store, self.clients, self.issuer, issuer=self.settings.issuer,
            upstream=self.settings.upstream, metrics=self.metrics, clock=self.clock,
            participation_ttl=float(tokens.refresh_token_absolute_lifetime
                                    + tokens.access_token_lifetime + tokens.leeway))

    @property
    def default_return_to(self) -> str:
        return self.settings.login.default_return_to or f"{self.settings.issuer}/"
