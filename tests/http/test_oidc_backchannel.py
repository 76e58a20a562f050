"""OpenID Connect Back-Channel Logout 1.0 (SECURITY P9): when a session ends, the gateway POSTs
a signed logout token to every client that took part in it and registered a
`backchannel_logout_uri`, once per client.

The receiver is the RP's back-channel endpoint, on loopback: it validates each logout token by
the spec's rules (section 2.6) with joserfc against the gateway's published JWKS, never with
our own code, and counts what it received.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import LoopThread, Stack
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from log_canaries import SCAN
from oidc_support import (
    CONFIDENTIAL,
    CONFIDENTIAL_SECRET,
    OTHER,
    OTHER_SECRET,
    PUBLIC,
    REDIRECT_URI,
    discovery,
    exchange,
    get_code,
    oidc_stack,
    refresh,
    tokens_for,
)
from process_support import (
    HTTP_TIMEOUT,
    Deployment,
    GatewayProcess,
    toml_lines,
)
from store_backends import REDIS_URL, free_port
from test_replicas import login_across_replicas

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Receiver:
    """The apps' back-channel logout endpoints: `/bc/<client_id>`."""

    url: str
    issuer: str = ""
    algorithm: str = ""  # the one the app accepts (its id_token_signed_response_alg)
    algorithm_of: dict[str, str] = field(default_factory=dict)  # apps that chose another
    jwks: dict[str, Any] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)  # answers to give first, then 200
    requests: dict[str, int] = field(default_factory=dict)  # per client, valid or not
    accepted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # valid claims
    refused: list[str] = field(default_factory=list)  # why, for the assertion message
    seen_jti: set[str] = field(default_factory=set)

    def uri(self, client_id: str) -> str:
        return f"{self.url}/bc/{client_id}"

    def trust(self, stack: Stack) -> None:
        """What the RP learns from discovery: the issuer, its algorithm and keys."""
        metadata = discovery(stack)
        self.issuer = metadata["issuer"]
        # The apps registered no id_token_signed_response_alg: RS256, and only that.
        assert "RS256" in metadata["id_token_signing_alg_values_supported"]
        self.algorithm = "RS256"
        self.jwks = httpx.get(metadata["jwks_uri"]).json()

    def validate(self, client_id: str, logout_token: str) -> dict[str, Any]:
        """Back-Channel Logout 1.0 section 2.6, each rule by joserfc or spelled out."""
        token = jwt.decode(logout_token, KeySet.import_key_set(self.jwks),  # the signature
                           algorithms=[self.algorithm_of.get(client_id, self.algorithm)])
        if token.header.get("typ") != "logout+jwt":
            raise ValueError(f"typ {token.header.get('typ')!r}")
        jwt.JWTClaimsRegistry(
            leeway=5,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": client_id},
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
            sid={"essential": True},
        ).validate(token.claims)
        claims = token.claims
        if not isinstance(claims.get("events"), dict) or LOGOUT_EVENT not in claims["events"]:
            raise ValueError("no back-channel logout event")
        if "nonce" in claims:
            raise ValueError("a nonce")
        if claims["jti"] in self.seen_jti:
            raise ValueError("replayed jti")
        self.seen_jti.add(claims["jti"])
        return claims

    def count(self, client_id: str) -> int:
        return len(self.accepted.get(client_id, []))


class BackChannelHandler(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def check_xsrf_cookie(self) -> None:
        return None

    def post(self, client_id: str) -> None:
        receiver = self.receiver
        receiver.requests[client_id] = receiver.requests.get(client_id, 0) + 1
        logout_token = self.get_body_argument("logout_token", "")
        SCAN.register(logout_token, "logout token", everywhere=True)
        self.set_header("Cache-Control", "no-store")
        if receiver.statuses:
            self.set_status(receiver.statuses.pop(0))
            return
        try:
            claims = receiver.validate(client_id, logout_token)
        except (JoseError, ValueError) as e:
            receiver.refused.append(f"{client_id}: {type(e).__name__} {e}")
            self.set_status(400)
            self.write({"error": "invalid_request"})
            return
        receiver.accepted.setdefault(client_id, []).append(claims)


@pytest.fixture
def receiver(loop_thread: LoopThread) -> Iterator[Receiver]:
    def start() -> tuple[Receiver, tornado.httpserver.HTTPServer]:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        found = Receiver(f"http://127.0.0.1:{port}")
        app = tornado.web.Application([(r"/bc/([^/]+)", BackChannelHandler,
                                        {"receiver": found})])
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        return found, server

    found, server = loop_thread.call(start)
    yield found
    loop_thread.call(server.stop)


def _with_uri(client: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    return {**client, "backchannel_logout_uri": receiver.uri(client["client_id"]),
            "backchannel_logout_session_required": True}


@pytest.fixture
def bc_stack(make_stack: Any, receiver: Receiver) -> Stack:
    """webapp and other have back-channel URIs; spa has none."""
    stack = oidc_stack(make_stack, clients=[_with_uri(CONFIDENTIAL, receiver), PUBLIC,
                                            _with_uri(OTHER, receiver)],
                       tokens={"refresh_token_reuse_interval": 0})
    receiver.trust(stack)
    return stack


def _drain(stack: Stack) -> None:
    """Wait for the deliveries the gateway started (no sleep: their tasks end)."""
    stack.loop.run(stack.ctx.backchannel.drain())


def _webapp_tokens(stack: Stack, browser: Any) -> dict[str, Any]:
    code = get_code(browser, client_id="webapp", redirect_uri=REDIRECT_URI)
    answer = exchange(stack, code, redirect_uri=REDIRECT_URI, auth=("webapp", CONFIDENTIAL_SECRET))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _sign_out(stack: Stack, browser: Any) -> None:
    home = browser.get(f"{stack.url}/")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None
    assert browser.post(f"{stack.url}/logout", data={"_xsrf": xsrf.group(1)}).status_code == 303


def _session_of(receiver: Receiver, tokens: dict[str, Any]) -> dict[str, Any]:
    token = jwt.decode(tokens["id_token"], KeySet.import_key_set(receiver.jwks),
                       algorithms=[receiver.algorithm])
    return {"sid": token.claims["sid"], "sub": token.claims["sub"]}


def test_P9_sign_out_sends_one_valid_logout_token_to_each_client_of_the_session(
        bc_stack: Stack, receiver: Receiver) -> None:
    browser = bc_stack.browser()
    webapp = _webapp_tokens(bc_stack, browser)
    tokens_for(bc_stack, browser)  # spa takes part too, without a back-channel URI
    _sign_out(bc_stack, browser)
    _drain(bc_stack)
    assert not receiver.refused, receiver.refused
    assert receiver.requests == {"webapp": 1}  # not spa (no URI), not other (not there)
    [claims] = receiver.accepted["webapp"]
    assert {"sid": claims["sid"], "sub": claims["sub"]} == _session_of(receiver, webapp)
    assert claims["exp"] - claims["iat"] <= 300


def test_P9_rp_initiated_logout_by_hint_notifies_the_clients_of_that_session(
        bc_stack: Stack, receiver: Receiver) -> None:
    browser = bc_stack.browser()
    webapp = _webapp_tokens(bc_stack, browser)
    other_code = get_code(browser, client_id="other", redirect_uri=OTHER["redirect_uris"][0])
    assert exchange(bc_stack, other_code, redirect_uri=OTHER["redirect_uris"][0],
                    auth=("other", OTHER_SECRET)).status_code == 200
    # The app ends the session from its own server: no browser cookie (SECURITY P8).
    answer = httpx.get(f"{bc_stack.url}/logout/oidc?"
                       + urlencode({"id_token_hint": webapp["id_token"]}))
    assert answer.status_code == 200
    _drain(bc_stack)
    assert not receiver.refused, receiver.refused
    assert receiver.count("webapp") == 1 and receiver.count("other") == 1
    session = _session_of(receiver, webapp)
    assert receiver.accepted["other"][0]["sid"] == session["sid"]


def test_P9_refresh_token_reuse_logs_out_that_client_only(
        bc_stack: Stack, receiver: Receiver) -> None:
    browser = bc_stack.browser()
    webapp = _webapp_tokens(bc_stack, browser)
    other_code = get_code(browser, client_id="other", redirect_uri=OTHER["redirect_uris"][0])
    assert exchange(bc_stack, other_code, redirect_uri=OTHER["redirect_uris"][0],
                    auth=("other", OTHER_SECRET)).status_code == 200
    auth = ("webapp", CONFIDENTIAL_SECRET)
    assert refresh(bc_stack, webapp["refresh_token"], auth=auth).status_code == 200
    reused = refresh(bc_stack, webapp["refresh_token"], auth=auth)
    assert reused.json()["error"] == "invalid_grant"
    _drain(bc_stack)
    assert not receiver.refused, receiver.refused
    assert receiver.requests == {"webapp": 1}
    # Signing out later tells the other app, and the first one no second time.
    _sign_out(bc_stack, browser)
    _drain(bc_stack)
    assert receiver.requests == {"webapp": 1, "other": 1}


def test_P9_a_failing_endpoint_is_retried_and_the_token_delivered_once(
        bc_stack: Stack, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    browser = bc_stack.browser()
    _webapp_tokens(bc_stack, browser)
    _sign_out(bc_stack, browser)
    _drain(bc_stack)
    assert not receiver.refused, receiver.refused
    assert receiver.requests == {"webapp": 3}
    assert receiver.count("webapp") == 1
    metrics = bc_stack.ctx.metrics.exposition().decode()
    assert 'gateway_backchannel_logouts_total{outcome="delivered"} 1.0' in metrics


def test_P9_an_endpoint_refusing_the_token_is_not_retried(
        bc_stack: Stack, receiver: Receiver, logs: Any) -> None:
    receiver.statuses = [400]
    browser = bc_stack.browser()
    _webapp_tokens(bc_stack, browser)
    _sign_out(bc_stack, browser)
    _drain(bc_stack)
    assert receiver.requests == {"webapp": 1} and receiver.count("webapp") == 0
    assert any("back-channel logout to client=webapp failed" in line for line in logs.lines)
    metrics = bc_stack.ctx.metrics.exposition().decode()
    assert 'gateway_backchannel_logouts_total{outcome="failed"} 1.0' in metrics


def test_P9_ending_the_same_session_twice_notifies_once(
        bc_stack: Stack, receiver: Receiver) -> None:
    browser = bc_stack.browser()
    webapp = _webapp_tokens(bc_stack, browser)
    hint = urlencode({"id_token_hint": webapp["id_token"]})
    assert httpx.get(f"{bc_stack.url}/logout/oidc?{hint}").status_code == 200
    assert httpx.get(f"{bc_stack.url}/logout/oidc?{hint}").status_code == 200
    _sign_out(bc_stack, browser)
    _drain(bc_stack)
    assert receiver.requests == {"webapp": 1}


def test_P9_logout_tokens_are_signed_as_the_apps_id_tokens(
        make_stack: Any, receiver: Receiver) -> None:
    """SECURITY J11: ID tokens are RS256 unless the app registered tokens.algorithm; its
    logout tokens follow, as the app validates only that."""
    stack = oidc_stack(make_stack, tokens={"algorithm": "ES256"}, clients=[
        _with_uri(CONFIDENTIAL, receiver),
        {**_with_uri(OTHER, receiver), "id_token_signed_response_alg": "ES256"}])
    receiver.trust(stack)
    receiver.algorithm_of["other"] = "ES256"
    browser = stack.browser()
    _webapp_tokens(stack, browser)
    other_code = get_code(browser, client_id="other", redirect_uri=OTHER["redirect_uris"][0])
    assert exchange(stack, other_code, redirect_uri=OTHER["redirect_uris"][0],
                    auth=("other", OTHER_SECRET)).status_code == 200
    _sign_out(stack, browser)
    _drain(stack)
    assert not receiver.refused, receiver.refused
    assert receiver.count("webapp") == 1 and receiver.count("other") == 1


def test_P9_discovery_advertises_back_channel_logout(bc_stack: Stack) -> None:
    metadata = discovery(bc_stack)
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True


# -- several replicas ------------------------------------------------------------------------


@pytest.mark.slow
def test_P9_replicas_ending_the_same_session_at_once_notify_each_client_once(
        deployments: Callable[..., Deployment], receiver: Receiver, redis_prefix: str) -> None:
    """Two processes sharing Redis each end the same session, at the same time: the app gets
    one logout token."""
    deployment = deployments(store={"url": REDIS_URL, "key_prefix": redis_prefix})
    tree = tomllib.loads(deployment.config.read_text())
    tree["clients"] = [_with_uri(PUBLIC, receiver), *tree["clients"][1:]]
    deployment.config.write_text("\n".join(toml_lines(tree)) + "\n")
    a, b = (deployment.start(free_port()) for _ in range(2))
    receiver.issuer = deployment.issuer
    metadata = httpx.get(f"{a.url}/.well-known/openid-configuration").json()
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    receiver.algorithm = "RS256"
    receiver.jwks = httpx.get(f"{a.url}/.well-known/jwks.json").json()
    tokens = exchange(a, login_across_replicas(deployment, deployment.browser(), a, b, a)).json()
    hint = urlencode({"id_token_hint": tokens["id_token"]})

    def end_session(replica: GatewayProcess) -> int:
        return httpx.get(f"{replica.url}/logout/oidc?{hint}", timeout=HTTP_TIMEOUT).status_code

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(end_session, (a, b))) == [200, 200]
    for replica in (a, b):  # SIGTERM: each drains its deliveries before it exits
        assert replica.stop() == 0
    assert not receiver.refused, receiver.refused
    assert receiver.requests == {"spa": 1}
    assert receiver.accepted["spa"][0]["sid"] == _session_of(receiver, tokens)["sid"]


def test_P9_ending_a_session_from_another_device_notifies_its_clients(
        bc_stack: Stack, receiver: Receiver) -> None:
    phone = bc_stack.browser()
    webapp = _webapp_tokens(bc_stack, phone)
    laptop = bc_stack.browser()
    assert laptop.login().status_code == 302
    home = laptop.get(f"{bc_stack.url}/")
    [phone_sid] = re.findall(r'name="sid" value="([^"]+)"', home.text)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', home.text)
    assert xsrf is not None
    ended = laptop.post(f"{bc_stack.url}/account/sessions/end",
                        data={"_xsrf": xsrf.group(1), "sid": phone_sid})
    assert ended.status_code == 303
    _drain(bc_stack)
    assert not receiver.refused, receiver.refused
    assert receiver.requests == {"webapp": 1}
    assert receiver.accepted["webapp"][0]["sid"] == _session_of(receiver, webapp)["sid"]


def test_P9_the_admin_api_ending_a_users_sessions_notifies_their_clients(
        make_stack: Any, receiver: Receiver) -> None:
    from gateway.server import start_admin

    api_token = "Adm1nT0ken-canary-Pq8sW3nYd0MxU5cO9zIt2Le"
    stack = oidc_stack(make_stack, clients=[_with_uri(CONFIDENTIAL, receiver), PUBLIC,
                                            _with_uri(OTHER, receiver)],
                       admin={"port": 0, "api_token": api_token})
    receiver.trust(stack)
    started = stack.loop.call(lambda: start_admin(stack.dev.settings, stack.ctx))
    assert started is not None
    server, port = started
    try:
        browser = stack.browser()
        webapp = _webapp_tokens(stack, browser)
        sub = _session_of(receiver, webapp)["sub"]
        ended = httpx.delete(f"http://127.0.0.1:{port}/admin/sessions", params={"sub": sub},
                             headers={"Authorization": f"Bearer {api_token}"})
        assert ended.status_code == 200 and ended.json()["ended_sessions"] == 1
        _drain(stack)
        assert not receiver.refused, receiver.refused
        assert receiver.requests == {"webapp": 1}
        assert receiver.accepted["webapp"][0]["sid"] == _session_of(receiver, webapp)["sid"]
    finally:
        stack.loop.call(server.stop)
