"""Who may sign in: the `[access]` policy, as plain code over a user's claims (no I/O).

A user passes when their account (`sub`) is listed, or their email, or its domain; an email
counts only when the provider vouches for it (`email_verified`, SECURITY C5): otherwise anyone
could type a company address into a provider account and walk in. With nothing listed, any
account of an enabled provider may sign in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import AccessSettings


@dataclass(frozen=True)
class AccessPolicy:
    email_domains: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: AccessSettings) -> AccessPolicy:
        # Emails and domains compare without case (RFC 5321 domains are; providers' local
        # parts are in practice); subjects are exact.
        return cls(frozenset(d.lower() for d in settings.email_domains),
                   frozenset(e.lower() for e in settings.emails),
                   frozenset(settings.subjects))

    @property
    def restricts(self) -> bool:
        return bool(self.email_domains or self.emails or self.subjects)

    def allows(self, sub: str, claims: Mapping[str, Any]) -> bool:
        """Whether the user with this `sub` and these profile claims may sign in."""
        if not self.restricts or sub in self.subjects:
            return True
        email = verified_email(claims)
        if email is None:
            return False
        return email in self.emails or email.rpartition("@")[2] in self.email_domains

    def refuses_signed_in(self, sub: str, claims: Mapping[str, Any]) -> bool:
        """Whether these claims of someone already signed in show that the policy does not
        admit them. An app's access token whose scope withheld the email cannot show it either
        way: it was checked at its login and lives minutes, so it is not refused for want of
        the email."""
        if self.allows(sub, claims):
            return False
        scope = claims.get("scope")
        return not (isinstance(scope, str) and "email" not in scope.split())


def verified_email(claims: Mapping[str, Any]) -> str | None:
    """The claims' email, lower-cased, when the provider vouched for it; else None."""
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is not True:
        return None
    local, at, domain = email.lower().rpartition("@")
    return email.lower() if at and local and domain else None
