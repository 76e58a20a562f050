"""Login transactions: the `state`, PKCE verifier and nonce of one upstream login.

A transaction is stored server-side under its `state` and bound to the browser by a random
browser id held in one small signed cookie. Every tab's login is its own transaction, yet the
browser carries a single cookie, however many logins it starts (no 431 from piled-up cookies).
The callback takes the transaction out of the store, so a `state` works once (SECURITY S1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from gateway import jose
from gateway.errors import LoginFailed

NAMESPACE = "login-tx"
STATE_BYTES = 32  # 256 bits, well above the 128 of SECURITY S1
BROWSER_ID_BYTES = 32


@dataclass(frozen=True)
class LoginTransaction:
    provider: str
    browser_id: str
    return_to: str
    code_verifier: str
    nonce: str
    created: float

    @property
    def code_challenge(self) -> str:
        return pkce_s256_challenge(self.code_verifier)

    def to_record(self) -> dict[str, Any]:
        # Every field is a str or a float: a shallow copy is whole (`asdict` deep-copies each,
        # once per login).
        return dict(vars(self))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LoginTransaction:
        return cls(**record)


def new_state() -> str:
    return secrets.token_urlsafe(STATE_BYTES)


def new_browser_id() -> str:
    return secrets.token_urlsafe(BROWSER_ID_BYTES)


def new_transaction(provider: str, browser_id: str, return_to: str, now: float) -> LoginTransaction:
    return LoginTransaction(
        provider=provider,
        browser_id=browser_id,
        return_to=return_to,
        code_verifier=secrets.token_urlsafe(48),  # 64 characters, within RFC 7636's 43-128
        nonce=secrets.token_urlsafe(24),
        created=now,
    )


def pkce_s256_challenge(code_verifier: str) -> str:
    """RFC 7636 4.2: BASE64URL(SHA256(ASCII(code_verifier))) without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return jose.base64url(digest)


def check_transaction(
    tx: LoginTransaction | None, *, provider: str, browser_id: str | None
) -> LoginTransaction:
    """Refuse a callback whose transaction is unknown, used, expired, foreign or misrouted."""
    if tx is None:
        raise LoginFailed(
            "This sign-in link has expired or was already used. Please start again.",
            log_detail="unknown, used or expired state",
        )
    if browser_id is None or not hmac.compare_digest(tx.browser_id, browser_id):
        raise LoginFailed(
            "This sign-in was started in another browser, or your cookies were cleared. "
            "Please start again.",
            log_detail="state not bound to this browser",
        )
    if tx.provider != provider:
        # SECURITY S6 (mix-up): a state started at one provider, delivered to another's callback.
        raise LoginFailed(
            "This sign-in was started with another provider. Please start again.",
            log_detail=f"state for {tx.provider} delivered to {provider}",
        )
    return tx
