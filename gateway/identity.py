"""The normalized identity every provider produces, whatever its own profile looks like."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
