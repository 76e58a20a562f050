"""The objects every handler shares, built once in app.py and handed to handlers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import Settings
from gateway.cookies import CookiePolicy
from gateway.keys import KeySet
from gateway.providers import EnabledProvider
from gateway.redirects import AllowedReturn
from gateway.sessions import Sessions
from gateway.store import Store
from gateway.tokens import TokenIssuer, TokenVerifier


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
    providers: dict[str, EnabledProvider] = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    @property
    def default_return_to(self) -> str:
        return self.settings.login.default_return_to or f"{self.settings.issuer}/"
