"""OpenID Connect Back-Channel Logout 1.0 (SECURITY P9): when a gateway session ends, every
client that took part in it and registered a `backchannel_logout_uri` is sent a signed
`logout_token`, server to server.

Participation is one store entry per (sid, client): written when a family starts, never a list
read and rewritten (two concurrent code exchanges would lose one). When the session ends, each
entry is `take`n, the store's atomic single-use primitive, so that of all the replicas ending
the same session (sign-out and an RP-initiated logout racing, say) exactly one delivers to each
client. A replica that dies mid-delivery loses it: at most once, never twice.

Delivery runs in the background (the request that ended the session does not wait), with the
upstream timeouts, bounded retries with backoff on 5xx, timeouts and connection failures, and
never follows a redirect. The token is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from gateway.config import ClientSettings, UpstreamSettings
from gateway.metrics import GatewayMetrics
from gateway.oidc.clients import ClientRegistry
from gateway.store import Store
from gateway.upstream.client import provider_tls_context

log = logging.getLogger("gateway.oidc")

PARTICIPANTS = "oidc-session-client"  # (sid, client_id) -> {"sub": ...}
LOGOUT_TOKEN_TYPE = "logout+jwt"  # Back-Channel Logout 1.0 section 2.4
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120  # seconds: the RP validates it on arrival
MAX_ATTEMPTS = 4
FIRST_BACKOFF = 1.0  # seconds; doubled after each failed attempt
JTI_BYTES = 16


class LogoutTokenSigner(Protocol):
    def sign(self, claims: dict[str, Any], typ: str, algorithm: str | None = None) -> str: ...


def participant_key(sid: str, client_id: str) -> str:
    # A sid is URL-safe base64 and a client_id has no space (config validation): unambiguous.
    return f"{sid} {client_id}"


def logout_token_claims(*, issuer: str, client_id: str, sub: str, sid: str, now: int,
                        jti: str) -> dict[str, Any]:
    """The claims of a logout token (section 2.4): `iss`, `aud`, `iat`, `exp`, `jti`, the
    `events` member, `sub` and `sid`; never a `nonce` (it would make it pass for an ID
    token)."""
    return {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_LIFETIME,
        "jti": jti,
        "sub": sub,
        "sid": sid,
        "events": {LOGOUT_EVENT: {}},
    }


@dataclass(frozen=True)
class Attempt:
    """What one POST to the RP's back-channel endpoint says about the next step."""

    delivered: bool
    retry: bool
    detail: str  # for our log: a status or a transport failure, never the token


def judge_answer(status: int | None, transport_error: str | None) -> Attempt:
    """Section 2.8: a 2xx is success; a 5xx, a timeout or a broken connection may pass, so
    it is retried; anything else (4xx, a redirect, which is never followed) will not."""
    if transport_error is not None:
        return Attempt(False, True, transport_error)
    assert status is not None
    if 200 <= status < 300:
        return Attempt(True, False, f"status {status}")
    return Attempt(False, status >= 500, f"status {status}")


class BackChannelLogout:
    """Records the clients of each session and notifies them when it ends."""

    def __init__(self, store: Store, clients: ClientRegistry, signer: LogoutTokenSigner, *,
                 issuer: str, upstream: UpstreamSettings, metrics: GatewayMetrics,
                 participation_ttl: float, clock: Callable[[], float] = time.time,
                 first_backoff: float = FIRST_BACKOFF) -> None:
        self._store = store
        self._clients = clients
        self._signer = signer
        self._issuer = issuer
        self._upstream = upstream
        self._metrics = metrics
        self._ttl = participation_ttl
        self._clock = clock
        self._first_backoff = first_backoff
        self._http: AsyncHTTPClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak refs

    async def joined(self, sid: str, client_id: str, sub: str) -> None:
        """The client received tokens of session `sid` (a family started)."""
        client = self._clients.get(client_id)
        if sid and client is not None and client.backchannel_logout_uri:
            await self._store.put(PARTICIPANTS, participant_key(sid, client_id), {"sub": sub},
                                  self._ttl)

    async def session_ended(self, sid: str) -> None:
        """Notify every client that took part in session `sid`, once each."""
        if sid:
            for client in self._clients.backchannel_receivers():
                await self._claim_and_send(sid, client)

    async def client_logged_out(self, sid: str, client_id: str) -> None:
        """Notify one client that its part of session `sid` ended (its family was revoked on
        a replayed refresh token or code)."""
        client = self._clients.get(client_id)
        if sid and client is not None and client.backchannel_logout_uri:
            await self._claim_and_send(sid, client)

    async def drain(self) -> None:
        """Wait for the deliveries under way (graceful shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _claim_and_send(self, sid: str, client: ClientSettings) -> None:
        record = await self._store.take(PARTICIPANTS, participant_key(sid, client.client_id))
        if record is None:
            return  # never took part, or another replica (or an earlier ending) has it
        task = asyncio.get_running_loop().create_task(
            self._deliver(client, sid, str(record.get("sub", ""))))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, client: ClientSettings, sid: str, sub: str) -> None:
        now = int(self._clock())
        token = self._signer.sign(logout_token_claims(
            issuer=self._issuer, client_id=client.client_id, sub=sub, sid=sid, now=now,
            jti=secrets.token_urlsafe(JTI_BYTES)), LOGOUT_TOKEN_TYPE,
            # Section 2.4: signed as its ID tokens are (SECURITY J11), what the app validates.
            client.id_token_signed_response_alg)
        body = urllib.parse.urlencode({"logout_token": token})
        backoff = self._first_backoff
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcome = await self._post(client.backchannel_logout_uri, body)
            if outcome.delivered:
                self._metrics.backchannel_logout("delivered")
                log.info("back-channel logout delivered client=%s attempts=%d",
                         client.client_id, attempt,
                         extra={"event": "backchannel_logout", "client_id": client.client_id})
                return
            if not outcome.retry or attempt == MAX_ATTEMPTS:
                break
            await asyncio.sleep(backoff)
            backoff *= 2
        self._metrics.backchannel_logout("failed")
        log.warning("back-channel logout to client=%s failed after %d attempt(s): %s",
                    client.client_id, attempt, outcome.detail,
                    extra={"event": "backchannel_logout_failed", "client_id": client.client_id})

    async def _post(self, url: str, body: str) -> Attempt:
        request = HTTPRequest(
            url, method="POST", body=body, follow_redirects=False,
            connect_timeout=self._upstream.connect_timeout,
            request_timeout=self._upstream.request_timeout,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Cache-Control": "no-store"})
        try:
            response = await self._client().fetch(request, raise_error=False)
        except HTTPClientError as e:  # a timeout (599)
            return judge_answer(None, f"{e.code} {e.message}")
        except OSError as e:
            return judge_answer(None, f"connection failed: {e.strerror or type(e).__name__}")
        if response.code == 599:
            return judge_answer(None, f"transport failure: {type(response.error).__name__}")
        return judge_answer(response.code, None)

    def _client(self) -> AsyncHTTPClient:
        # Our own instance, made in the loop that uses it; small bodies only; the CA bundle
        # of `upstream.ca_file` when set (an RP behind a private CA).
        if self._http is None:
            trusted = provider_tls_context(self._upstream.ca_file)
            self._http = AsyncHTTPClient(
                force_instance=True, max_body_size=65536, max_buffer_size=65536,
                defaults={"ssl_options": trusted} if trusted is not None else None)
        return self._http
