"""How the pages show a token's claims: one row each, times as readable UTC dates with the
number in a tooltip, everything else as text (templates/claims_table.html)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# NumericDate claims (RFC 7519 2, OIDC Core 2 and 5.1): seconds since the epoch, which nobody
# reads; the pages show a UTC date, the number in its tooltip.
TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time", "updated_at"})


@dataclass(frozen=True)
class ClaimRow:
    """One claim as the claims table (templates/claims_table.html) shows it."""

    name: str
    text: str  # what a person reads
    epoch: int | None = None  # time claims: the value itself, for the tooltip
    iso: str | None = None  # time claims: the <time datetime> attribute


def claim_rows(claims: Mapping[str, Any]) -> list[ClaimRow]:
    """The claims sorted by name, times as readable UTC dates, other values as text (strings
    as they are, anything else as JSON)."""
    rows = []
    for name in sorted(claims):
        value = claims[name]
        when = _utc_date(value) if name in TIME_CLAIMS else None
        if when is not None:
            rows.append(ClaimRow(name, when.strftime("%Y-%m-%d %H:%M:%S UTC"), int(value),
                                 when.isoformat().replace("+00:00", "Z")))
        elif isinstance(value, str):
            rows.append(ClaimRow(name, value))
        else:
            rows.append(ClaimRow(name, json.dumps(value)))
    return rows


def _utc_date(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):  # out of the platform's range: shown as is
        return None
