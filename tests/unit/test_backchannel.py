"""Back-channel logout's protocol pieces (SECURITY P9): the logout token's claims, what an
answer means for retrying, registration, and the one-delivery-per-client claim in the store.
The deliveries themselves run over HTTP in tests/http/test_oidc_backchannel.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from config_support import write_config

from gateway.config import ClientSettings, UpstreamSettings, load_settings
from gateway.errors import ConfigError
from gateway.metrics import GatewayMetrics
from gateway.oidc.backchannel import (
    LOGOUT_EVENT,
    BackChannelLogout,
    judge_answer,
    logout_token_claims,
)
from gateway.oidc.clients import ClientRegistry
from gateway.store.memory import MemoryStore

RECEIVER = ClientSettings(client_id="web", redirect_uris=("https://app.example.com/cb",),
                          backchannel_logout_uri="https://app.example.com/bc")
SILENT = ClientSettings(client_id="spa", redirect_uris=("https://spa.example.com/cb",))


def test_P9_logout_token_claims_follow_section_2_4() -> None:
    claims = logout_token_claims(issuer="https://login.example.com", client_id="web",
                                 sub="google:1", sid="s-1", now=1000, jti="j-1")
    assert claims["iss"] == "https://login.example.com" and claims["aud"] == "web"
    assert claims["sid"] == "s-1" and claims["sub"] == "google:1" and claims["jti"] == "j-1"
    assert claims["events"] == {LOGOUT_EVENT: {}}
    assert claims["iat"] == 1000 and 1000 < claims["exp"] <= 1000 + 300
    assert "nonce" not in claims


@pytest.mark.parametrize(("status", "error", "delivered", "retry"), [
    (200, None, True, False),
    (204, None, True, False),
    (500, None, False, True),
    (503, None, False, True),
    (400, None, False, False),
    (302, None, False, False),  # never followed, never success
    (None, "599 Timeout", False, True),
])
def test_P9_what_an_answer_means(status: int | None, error: str | None, delivered: bool,
                                 retry: bool) -> None:
    attempt = judge_answer(status, error)
    assert (attempt.delivered, attempt.retry) == (delivered, retry)


def _load(tmp_path: Path, uri: str) -> Any:
    path = write_config(tmp_path, None)
    path.write_text(path.read_text() + f'''
[[clients]]
client_id = "web"
redirect_uris = ["https://app.example.com/cb"]
backchannel_logout_uri = "{uri}"
backchannel_logout_session_required = true
''')
    return load_settings(path, {})


def test_P9_a_backchannel_logout_uri_is_registered(tmp_path: Path) -> None:
    [client] = _load(tmp_path, "https://app.example.com/bc?tenant=1").clients
    assert client.backchannel_logout_uri == "https://app.example.com/bc?tenant=1"
    assert client.backchannel_logout_session_required


@pytest.mark.parametrize("uri", ["https://app.example.com/bc#f", "http://app.example.com/bc",
                                 "/bc", "https://user:pw@app.example.com/bc"])
def test_P9_a_wrong_backchannel_logout_uri_is_refused(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, uri)
    assert refused.value.key == "clients[0].backchannel_logout_uri"


class Signer:
    def sign(self, claims: dict[str, Any], typ: str, algorithm: str | None = None) -> str:
        return "unused"


def _notifier(store: MemoryStore, sent: list[tuple[str, str, str]]) -> BackChannelLogout:
    notifier = BackChannelLogout(
        store, ClientRegistry([RECEIVER, SILENT]), Signer(), issuer="https://login.example.com",
        upstream=UpstreamSettings(), metrics=GatewayMetrics(), participation_ttl=3600)

    async def deliver(client: ClientSettings, sid: str, sub: str) -> None:
        sent.append((client.client_id, sid, sub))

    notifier._deliver = deliver  # type: ignore[method-assign]
    return notifier


def test_P9_each_client_of_a_session_is_notified_once_whichever_replica_ends_it() -> None:
    store = MemoryStore()
    sent: list[tuple[str, str, str]] = []
    first, second = _notifier(store, sent), _notifier(store, sent)  # two replicas, one store

    async def scenario() -> None:
        await first.joined("s-1", "web", "google:1")
        await first.joined("s-1", "web", "google:1")  # a second family of the same session
        await second.joined("s-1", "spa", "google:1")  # no URI: nothing to remember
        await second.joined("s-2", "web", "google:2")
        await asyncio.gather(first.session_ended("s-1"), second.session_ended("s-1"))
        await asyncio.gather(first.drain(), second.drain())

    asyncio.run(scenario())
    assert sent == [("web", "s-1", "google:1")]
    assert len(store) == 1  # s-2's participation is still there, for its own ending


def test_P9_a_revoked_family_notifies_its_client_once() -> None:
    store = MemoryStore()
    sent: list[tuple[str, str, str]] = []
    notifier = _notifier(store, sent)

    async def scenario() -> None:
        await notifier.joined("s-1", "web", "google:1")
        await notifier.client_logged_out("s-1", "web")
        await notifier.session_ended("s-1")  # the session ends later: web was told already
        await notifier.drain()

    asyncio.run(scenario())
    assert sent == [("web", "s-1", "google:1")]
