"""RP-Initiated Logout 1.0: which client asks, and where the browser may go afterwards.

`post_logout_redirect_uri` is honoured only when it is exactly one of the client's registered
ones, the client being named by `client_id` or by the `aud` of a valid `id_token_hint`
(section 2); anything else is an error page, never a redirect (as SECURITY R1/R3 for logins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import ClientSettings
from gateway.errors import InvalidRequest
from gateway.oidc.authorization import with_query
from gateway.oidc.clients import ClientRegistry


@dataclass(frozen=True)
class LogoutRequest:
    client: ClientSettings | None
    redirect_to: str | None  # post_logout_redirect_uri with state, when registered
    hint_sid: str | None  # the gateway session named by a valid id_token_hint


def parse_logout_request(*, hint_claims: dict[str, Any] | None, client_id: str | None,
                         post_logout_redirect_uri: str | None, state: str | None,
                         clients: ClientRegistry) -> LogoutRequest:
    client = clients.get(client_id) if client_id else None
    if client_id and client is None:
        raise InvalidRequest("This app is not registered with the gateway.",
                             log_detail="end_session: unknown client_id")
    hint_sid = None
    if hint_claims is not None:
        client = _hinted_client(hint_claims, client, clients)
        sid = hint_claims.get("sid")
        hint_sid = sid if isinstance(sid, str) and sid else None
    redirect_to = None
    if post_logout_redirect_uri is not None:
        if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
            raise InvalidRequest("The app asked to return to an address it has not registered.",
                                 log_detail="end_session: post_logout_redirect_uri refused")
        redirect_to = with_query(post_logout_redirect_uri, {"state": state})
    return LogoutRequest(client, redirect_to, hint_sid)


def _hinted_client(hint_claims: dict[str, Any], named: ClientSettings | None,
                   clients: ClientRegistry) -> ClientSettings:
    """The one registered client in the hint's `aud`; it must be the one `client_id` names."""
    audience = hint_claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    hinted = [c for c in (clients.get(a) for a in audiences if isinstance(a, str)) if c]
    if len(hinted) != 1 or (named is not None and hinted[0] is not named):
        raise InvalidRequest("The id_token_hint does not belong to this app.",
                             log_detail="end_session: id_token_hint aud mismatch")
    return hinted[0]
