"""A local stand-in for X, speaking both of X's sign-in protocols on X's paths, on one origin:
OAuth 2.0 with PKCE (x_oauth2.py) and OAuth 1.0a (x_oauth1.py), for the same test accounts
(x_common.py).

Tests steer it through `faults` (per endpoint: "authorize", "token", "me", "request_token",
"authenticate", "access_token", "verify_credentials"), its `clock`, and read `token_requests`
(OAuth 2.0 token requests), `oauth1_requests` (every OAuth 1.0a request as received) and `calls`.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tornado.web

from gateway.dev.standins import x_oauth1, x_oauth2
from gateway.dev.standins.common import AccountBook, Fault, PendingRequests, make_standin_app
from gateway.dev.standins.x_common import DEV_USERS, XAccount
from gateway.dev.standins.x_oauth1 import ReceivedRequest, XOAuth1
from gateway.dev.standins.x_oauth2 import XOAuth2

__all__ = ["DEV_USERS", "Fault", "XAccount", "XStandIn", "dev_provider"]


@dataclass
class XStandIn(XOAuth2, XOAuth1, AccountBook[XAccount]):
    """X for one app: its OAuth 2.0 client and its OAuth 1.0a consumer, on one origin."""

    base_url: str
    client_id: str
    client_secret: str
    consumer_key: str
    consumer_secret: str
    callback_urls: Sequence[str]  # the app's registered callback URLs (both protocols)
    accounts: Sequence[XAccount] = DEV_USERS
    clock: Callable[[], float] = time.time
    # Test controls.
    faults: dict[str, Fault] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    oauth1_requests: list[ReceivedRequest] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    def __post_init__(self) -> None:
        self.pending = PendingRequests()
        self._start_oauth2()
        self._start_oauth1()

    def make_app(self) -> tornado.web.Application:
        return make_standin_app(self, x_oauth2.ROUTES + x_oauth1.ROUTES)


def dev_provider(base_url: str, gateway_issuer: str) -> tuple[XStandIn, dict[str, Any]]:
    """A stand-in with fresh credentials, and the gateway's `providers.twitter` section for it.

    The mode is left to the gateway's default: `GATEWAY_PROVIDERS__TWITTER__MODE=oauth1`
    switches to OAuth 1.0a."""
    standin = XStandIn(
        base_url,
        client_id=secrets.token_urlsafe(24),  # X's OAuth 2.0 Client ID
        client_secret=secrets.token_urlsafe(38),
        consumer_key=secrets.token_urlsafe(18),  # X's API Key (25 characters)
        consumer_secret=secrets.token_urlsafe(37),
        callback_urls=[f"{gateway_issuer}/callback/twitter"],
    )
    section = {
        "client_id": standin.client_id,
        "client_secret": standin.client_secret,
        "consumer_key": standin.consumer_key,
        "consumer_secret": standin.consumer_secret,
        "authorize_url": standin.authorize_url,
        "token_url": standin.token_url,
        "userinfo_url": standin.userinfo_url,
        "request_token_url": standin.request_token_url,
        "authenticate_url": standin.authenticate_url,
        "access_token_url": standin.access_token_url,
        "verify_credentials_url": standin.verify_credentials_url,
    }
    return standin, section
