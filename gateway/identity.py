"""The normalized identity every provider produces, whatever its own profile looks like."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

MAX_PICTURE_URL_LENGTH = 2048


@dataclass(frozen=True)
class Identity:
    """Who signed in. The key is (idp, provider subject), never the email (SECURITY C5)."""

    idp: str
    provider_subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    picture: str | None = None

    @property
    def sub(self) -> str:
        """Stable per provider account, and never colliding across providers."""
        return f"{self.idp}:{self.provider_subject}"

    def profile_claims(self) -> dict[str, Any]:
        """The claims our tokens carry. An email only when the provider vouches for it."""
        claims: dict[str, Any] = {"idp": self.idp}
        if self.email and self.email_verified:
            claims["email"] = self.email
            claims["email_verified"] = True
        if self.name:
            claims["name"] = self.name
        if self.picture:
            claims["picture"] = self.picture
        return claims


def checked_picture_url(value: Any) -> str | None:
    """A provider's profile picture as our `picture` claim, or none. OIDC Core 5.1 makes it a
    URL, and downstream apps put it in an `<img src>`: only an absolute http(s) URL of
    printable ASCII passes, never a javascript: or data: URL or one that splits a header."""
    if not (isinstance(value, str) and value.isascii() and value.isprintable()
            and " " not in value and len(value) <= MAX_PICTURE_URL_LENGTH):
        return None
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    if parts.scheme.lower() in ("https", "http") and parts.hostname:
        return value
    return None


def text_claim(value: Any) -> str | None:
    """A profile value that is a non-empty string, else None (providers send nulls, numbers,
    empty strings)."""
    return value if isinstance(value, str) and value else None
