"""How the signed-in page lists its user's sessions (templates/sessions_list.html): one row a
session, this device first, then the most recently used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.devices import UNKNOWN
from gateway.sessions import Session


@dataclass(frozen=True)
class SessionRow:
    sid: str  # what the "Sign out" form of the row names
    device: str
    provider: str  # the brand a person knows ("X"), never the internal id ("twitter")
    address: str
    signed_in: str  # readable UTC date
    signed_in_iso: str  # the <time datetime> attribute
    last_active: str
    last_active_iso: str
    current: bool  # this browser's own session


def session_rows(sessions: Sequence[tuple[str, Session]], *, current_handle: str,
                 provider_names: Mapping[str, str]) -> list[SessionRow]:
    """The rows of a user's sessions (`Sessions.of_sub`), this browser's first, then the
    others by last use, most recent first."""
    ordered = sorted(sessions, key=lambda pair: (pair[0] != current_handle, -pair[1].last_seen))
    return [_row(session, current=handle == current_handle, provider_names=provider_names)
            for handle, session in ordered]


def _row(session: Session, *, current: bool, provider_names: Mapping[str, str]) -> SessionRow:
    signed_in, signed_in_iso = _when(session.created)
    last_active, last_active_iso = _when(session.last_seen)
    return SessionRow(
        sid=session.sid,
        device=session.device or UNKNOWN,
        provider=provider_names.get(session.idp, session.idp),
        address=session.address or "unknown",
        signed_in=signed_in, signed_in_iso=signed_in_iso,
        last_active=last_active, last_active_iso=last_active_iso,
        current=current,
    )


def _when(epoch: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(epoch, UTC)
    return (moment.strftime("%Y-%m-%d %H:%M UTC"),
            moment.isoformat(timespec="seconds").replace("+00:00", "Z"))
