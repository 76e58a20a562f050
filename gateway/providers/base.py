"""What the registry knows of an enabled provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EnabledProvider:
    name: str  # the path segment: /login/<name>, /callback/<name>, and the `idp` claim
    display_name: str  # for buttons and pages ("Google", "Facebook", "X")
    provider: Any  # the provider object its handlers receive
    login_mixin: type  # carries the tornado.auth mixin; mixed into the generic handlers
