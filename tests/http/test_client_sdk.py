"""The downstream SDK (`gateway.client`): verifying the gateway's tokens in another app, and the
runnable Tornado example built on it."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import tornado.httpserver
import tornado.netutil
from conftest import REPO_ROOT, LoopThread, Stack, query_of
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import signing
from gateway.client import (
    GatewayUnavailable,
    GatewayVerifier,
    TokenRejected,
    bearer_challenge,
    is_api_request,
)

ISSUER = "https://login.example.test"
AUDIENCE = "https://login.example.test"


# ---------------------------------------------------------------------------------------------
# Against a real gateway, keys over HTTP


def test_verifies_a_real_gateway_token_through_discovery(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    with httpx.Client() as http:
        verifier = GatewayVerifier(stack.url, stack.url, http=http)
        claims = verifier.verify(token)
        assert claims["sub"].startswith("google:")
        assert claims["name"] == "Ada Lovelace"
        assert verifier.verify(token)["jti"] == claims["jti"]
    assert verifier.fetch_count == 1  # keys cached: one discovery + JWKS round for both


def test_averify_verifies_a_real_gateway_token_with_an_async_client(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    token = browser.access_token()

    async def check() -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            verifier = GatewayVerifier(stack.url, stack.url,
                                       jwks_url=f"{stack.url}/.well-known/jwks.json", http=http)
            return await verifier.averify(token)

    assert asyncio.run(check())["idp"] == "google"


def test_real_token_for_another_audience_or_issuer_is_rejected(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    with pytest.raises(TokenRejected, match="audience"):
        GatewayVerifier(stack.url, "https://billing.example").verify(token)
    with pytest.raises(TokenRejected):
        GatewayVerifier(stack.url, stack.url, jwks_url=f"{stack.url}/.well-known/jwks.json",
                        ).verify(_with_claims(token, iss="https://evil.example"))


def test_unreachable_gateway_fails_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(503)))
    verifier = GatewayVerifier(ISSUER, AUDIENCE, http=http)
    keys = KeyPair()
    with pytest.raises(GatewayUnavailable):
        verifier.verify(keys.token())


# ---------------------------------------------------------------------------------------------
# A JWKS we control: rotation and refusals


class KeyPair:
    def __init__(self, kid: str = "key-1") -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        members = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        return {**members, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def token(self, *, typ: str = "at+jwt", now: float | None = None, **claims: Any) -> str:
        now = time.time() if now is None else now
        body = {"iss": ISSUER, "sub": "google:1", "aud": AUDIENCE, "iat": int(now),
                "nbf": int(now), "exp": int(now) + 600, "jti": "j1", **claims}
        return signing.compact_jws(body, {"alg": "ES256", "kid": self.kid, "typ": typ},
                                   signing.signer_for(self.private, "ES256"))


class FakeGateway:
    """Serves a JWKS (and counts the fetches) through httpx's MockTransport."""

    def __init__(self, *keys: KeyPair) -> None:
        self.published = list(keys)
        self.jwks_fetches = 0
        self.now = 1_000_000.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER,
                                             "jwks_uri": f"{ISSUER}/.well-known/jwks.json"})
        self.jwks_fetches += 1
        return httpx.Response(200, json={"keys": [k.jwk() for k in self.published]})

    def verifier(self, **kwargs: Any) -> GatewayVerifier:
        http = httpx.Client(transport=httpx.MockTransport(self.handle))
        kwargs.setdefault("audience", AUDIENCE)
        return GatewayVerifier(ISSUER, kwargs.pop("audience"), http=http,
                               clock=lambda: self.now, **kwargs)


@pytest.fixture
def old_key() -> KeyPair:
    return KeyPair("old")


@pytest.fixture
def gateway(old_key: KeyPair) -> FakeGateway:
    return FakeGateway(old_key)


def test_rotation_unknown_kid_triggers_one_refetch(gateway: FakeGateway, old_key: KeyPair
                                                   ) -> None:
    verifier = gateway.verifier()
    assert verifier.verify(old_key.token(now=gateway.now))["sub"] == "google:1"
    assert gateway.jwks_fetches == 1
    new_key = KeyPair("new")
    gateway.published.append(new_key)  # the gateway rotates: the new key is published
    gateway.now += 5
    assert verifier.verify(new_key.token(now=gateway.now))["sub"] == "google:1"
    assert gateway.jwks_fetches == 2
    assert verifier.verify(old_key.token(now=gateway.now))  # old tokens still verify
    assert gateway.jwks_fetches == 2


def test_rotation_second_unknown_kid_within_the_cooldown_does_not_refetch(
        gateway: FakeGateway, old_key: KeyPair) -> None:
    verifier = gateway.verifier(refresh_cooldown=60)
    verifier.verify(old_key.token(now=gateway.now))
    gateway.now += 61
    with pytest.raises(TokenRejected, match="unknown kid"):
        verifier.verify(KeyPair("made-up-1").token(now=gateway.now))
    assert gateway.jwks_fetches == 2
    gateway.now += 10
    with pytest.raises(TokenRejected, match="unknown kid"):
        verifier.verify(KeyPair("made-up-2").token(now=gateway.now))
    assert gateway.jwks_fetches == 2  # within the cooldown: no fetch
    gateway.now += 60
    with pytest.raises(TokenRejected):
        verifier.verify(KeyPair("made-up-3").token(now=gateway.now))
    assert gateway.jwks_fetches == 3


def test_keys_are_fetched_again_once_the_cache_expires(gateway: FakeGateway, old_key: KeyPair
                                                       ) -> None:
    verifier = gateway.verifier(cache_seconds=300)
    verifier.verify(old_key.token(now=gateway.now))
    gateway.now += 299
    verifier.verify(old_key.token(now=gateway.now))
    assert gateway.jwks_fetches == 1
    gateway.now += 2
    verifier.verify(old_key.token(now=gateway.now))
    assert gateway.jwks_fetches == 2


def test_concurrent_first_requests_share_one_fetch(old_key: KeyPair) -> None:
    gateway = FakeGateway(old_key)
    release = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        await release.wait()  # every request below arrives while the keys are on their way
        return gateway.handle(request)

    async def check() -> list[dict[str, Any]]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
        verifier = GatewayVerifier(ISSUER, AUDIENCE, jwks_url=f"{ISSUER}/jwks", http=http)
        tasks = [asyncio.ensure_future(verifier.averify(old_key.token())) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        try:
            return await asyncio.gather(*tasks)
        finally:
            await http.aclose()

    assert [c["sub"] for c in asyncio.run(check())] == ["google:1"] * 5
    assert gateway.jwks_fetches == 1


def test_expired_token_is_rejected(gateway: FakeGateway, old_key: KeyPair) -> None:
    verifier = gateway.verifier()
    token = old_key.token(now=gateway.now)
    gateway.now += 600 + 31  # past exp and the leeway
    with pytest.raises(TokenRejected, match="expired"):
        verifier.verify(token)


def test_not_yet_valid_token_is_rejected(gateway: FakeGateway, old_key: KeyPair) -> None:
    with pytest.raises(TokenRejected, match="not yet valid"):
        gateway.verifier().verify(old_key.token(now=gateway.now, nbf=int(gateway.now) + 120))


def test_wrong_audience_is_rejected(gateway: FakeGateway, old_key: KeyPair) -> None:
    with pytest.raises(TokenRejected, match="audience"):
        gateway.verifier(audience="https://other.example").verify(old_key.token(now=gateway.now))


def test_wrong_issuer_is_rejected(gateway: FakeGateway, old_key: KeyPair) -> None:
    with pytest.raises(TokenRejected, match="issuer"):
        gateway.verifier().verify(old_key.token(now=gateway.now, iss="https://evil.example"))


def test_tampered_token_is_rejected(gateway: FakeGateway, old_key: KeyPair) -> None:
    token = _with_claims(old_key.token(now=gateway.now), sub="google:admin")
    with pytest.raises(TokenRejected, match="signature"):
        gateway.verifier().verify(token)


def test_J1_alg_none_is_rejected(gateway: FakeGateway, old_key: KeyPair) -> None:
    header = _b64({"alg": "none", "typ": "at+jwt", "kid": "old"})
    body = _b64({"iss": ISSUER, "sub": "google:1", "aud": AUDIENCE, "iat": int(gateway.now),
                 "nbf": int(gateway.now), "exp": int(gateway.now) + 600})
    with pytest.raises(TokenRejected, match="not accepted"):
        gateway.verifier().verify(f"{header}.{body}.")


def test_J2_hmac_with_the_public_key_as_secret_is_rejected(gateway: FakeGateway,
                                                           old_key: KeyPair) -> None:
    public_pem = old_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = {"iss": ISSUER, "sub": "google:1", "aud": AUDIENCE, "iat": int(gateway.now),
            "nbf": int(gateway.now), "exp": int(gateway.now) + 600}
    header = _b64({"alg": "HS256", "typ": "at+jwt", "kid": "old"})
    import hashlib
    import hmac
    signing_input = f"{header}.{_b64(body)}"
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input.encode(),
                                                  hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(TokenRejected, match="not accepted"):
        gateway.verifier().verify(f"{signing_input}.{signature.decode()}")


def test_J5_id_token_is_not_an_access_token(gateway: FakeGateway, old_key: KeyPair) -> None:
    with pytest.raises(TokenRejected, match="typ"):
        gateway.verifier().verify(old_key.token(now=gateway.now, typ="JWT"))


def test_J3_jku_header_is_rejected_and_never_fetched(gateway: FakeGateway, old_key: KeyPair
                                                     ) -> None:
    token = jwt.encode({"iss": ISSUER}, old_key.private, algorithm="ES256",
                       headers={"kid": "old", "typ": "at+jwt", "jku": "https://evil.example/k"})
    with pytest.raises(TokenRejected, match="forbidden header"):
        gateway.verifier().verify(token)
    assert gateway.jwks_fetches == 0


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "x" * 10_000, "a.b.c.d.e"])
def test_J7_malformed_tokens_are_rejected(gateway: FakeGateway, token: str) -> None:
    with pytest.raises(TokenRejected):
        gateway.verifier().verify(token)


def test_key_with_an_hmac_algorithm_in_the_jwks_is_ignored(old_key: KeyPair) -> None:
    secret = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": [
            {"kty": "oct", "k": secret, "kid": "old", "alg": "HS256"}]})

    verifier = GatewayVerifier(ISSUER, AUDIENCE, jwks_url=f"{ISSUER}/jwks",
                               http=httpx.Client(transport=httpx.MockTransport(handle)))
    token = jwt.encode({"iss": ISSUER}, "k" * 32, algorithm="HS256",
                       headers={"kid": "old", "typ": "at+jwt"})
    with pytest.raises(TokenRejected):
        verifier.verify(token)


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _with_claims(token: str, **changes: Any) -> str:
    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return f"{header}.{_b64({**claims, **changes})}.{signature}"


# ---------------------------------------------------------------------------------------------
# The runnable example: examples/tornado_app.py, in-process


def _example_module() -> Any:
    spec = importlib.util.spec_from_file_location("tornado_app_example",
                                                  REPO_ROOT / "examples" / "tornado_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_app(loop_thread: LoopThread, make_stack: Callable[..., Stack]
                ) -> Iterator[tuple[str, Stack]]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    origin = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    stack = make_stack(login={"allowed_return_urls": [f"{origin}/"]})
    app = _example_module().make_app(stack.url)

    def start() -> tornado.httpserver.HTTPServer:
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        return server

    server = loop_thread.call(start)
    yield origin, stack
    loop_thread.call(server.stop)
    loop_thread.run(app.settings["gateway_verifier"].aclose())


def test_example_app_sends_a_stranger_to_the_gateway_login(example_app) -> None:
    origin, stack = example_app
    answer = httpx.get(f"{origin}/")
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(f"{stack.url}/login?")
    assert query_of(location)["return_to"] == [f"{origin}/"]
    assert httpx.get(location).status_code == 200  # the return_to passes the gateway's allowlist


def test_example_app_shows_the_user_with_the_cookie_or_a_bearer_token(example_app) -> None:
    origin, stack = example_app
    browser = stack.browser()
    done = browser.login(return_to=f"{origin}/")
    assert done.headers["location"] == f"{origin}/"
    with_cookie = browser.get(f"{origin}/")
    assert with_cookie.status_code == 200
    assert with_cookie.json()["hello"] == "Ada Lovelace"
    bearer = httpx.get(f"{origin}/",
                       headers={"Authorization": f"Bearer {browser.access_token()}"})
    assert bearer.status_code == 200
    assert bearer.json()["sub"].startswith("google:")


def test_example_app_answers_a_tampered_bearer_token_with_401_invalid_token(example_app
                                                                            ) -> None:
    origin, stack = example_app
    browser = stack.browser()
    browser.login()
    forged = _with_claims(browser.access_token(), sub="google:admin")
    answer = httpx.get(f"{origin}/", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    assert "location" not in answer.headers
    assert answer.headers["www-authenticate"] == \
        f'Bearer realm="{stack.url}", error="invalid_token"'
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["error"] == "invalid_token"
    assert body["error_description"]
    assert query_of(body["login_url"])["return_to"] == [f"{origin}/"]


@pytest.mark.parametrize("authorization", ["Bearer not-a-jwt", "Bearer a.b.c",
                                           "Bearer " + "x" * 9000])
def test_any_refused_bearer_token_is_a_401_with_invalid_token(example_app,
                                                              authorization: str) -> None:
    origin, _ = example_app
    answer = httpx.get(f"{origin}/", headers={"Authorization": authorization})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert answer.json()["error"] == "invalid_token"


def test_api_client_without_a_token_gets_a_bare_bearer_challenge(example_app) -> None:
    # RFC 6750 3.1: a request with no credentials gets no error code in the challenge.
    origin, stack = example_app
    answer = httpx.get(f"{origin}/", headers={"Accept": "application/json"})
    assert answer.status_code == 401
    assert "location" not in answer.headers
    assert answer.headers["www-authenticate"] == f'Bearer realm="{stack.url}"'
    assert answer.json()["error"] == "invalid_request"
    basic = httpx.get(f"{origin}/", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401  # an Authorization header: an API client, but no Bearer
    assert basic.headers["www-authenticate"] == f'Bearer realm="{stack.url}"'


@pytest.mark.parametrize("accept", [
    None, "*/*", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/json;q=0.5, text/html",
])
def test_a_browser_is_still_sent_to_the_login_page(example_app, accept: str | None) -> None:
    origin, stack = example_app
    headers = {"Accept": accept} if accept else {}
    answer = httpx.get(f"{origin}/", headers=headers)
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(f"{stack.url}/login?")
    assert "www-authenticate" not in answer.headers


def test_a_browser_with_a_refused_access_cookie_is_sent_to_the_login_page(example_app) -> None:
    origin, stack = example_app
    browser = stack.browser()
    browser.login()
    forged = _with_claims(browser.access_token(), sub="google:admin")
    answer = httpx.get(f"{origin}/", headers={"Cookie": f"gw_access={forged}",
                                               "Accept": "text/html"})
    assert answer.status_code == 302


@pytest.mark.parametrize("authorization, accept, api", [
    ("Bearer x", None, True),
    ("Basic eDp5", "text/html", True),
    (None, "application/json", True),
    (None, "application/json, text/plain, */*", True),  # axios's default
    (None, "text/html;q=0.5, application/json", True),
    (None, "application/*", True),
    (None, "application/json, text/html", False),  # named alike: a tie goes to the browser
    (None, "*/*;q=0.5, text/html;q=0.4", True),  # JSON (through */*) ranks above HTML
    (None, "application/json;q=0", False),  # q=0: not acceptable at all
    (None, "application/json;q=0, text/html;q=0", False),
    (None, "application/json;q=oops", False),
    (None, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
    (None, "*/*", False),
    (None, "", False),
    (None, None, False),
    ("", "text/html", False),
])
def test_is_api_request(authorization: str | None, accept: str | None, api: bool) -> None:
    assert is_api_request(authorization, accept) is api


def test_bearer_challenge_never_carries_a_quote_from_the_realm() -> None:
    assert bearer_challenge('evil", error="x', token_refused=False) == 'Bearer realm="gateway"'
    assert bearer_challenge("https://login.example", token_refused=True) == \
        'Bearer realm="https://login.example", error="invalid_token"'


def test_J10_the_high_s_twin_of_a_token_is_rejected(gateway: FakeGateway, old_key: KeyPair
                                                     ) -> None:
    """ECDSA's (r, s) verifies as (r, n - s) too: the SDK, like the gateway, takes only the
    low-S spelling, so that one token has one string (apps may cache or deny-list by it)."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's n
    token = old_key.token(now=gateway.now)
    head, encoded = token.rsplit(".", 1)
    signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    high_s = order - int.from_bytes(signature[32:], "big")
    twin_signature = signature[:32] + high_s.to_bytes(32, "big")
    twin = f"{head}.{base64.urlsafe_b64encode(twin_signature).rstrip(b'=').decode()}"
    verifier = gateway.verifier()
    assert verifier.verify(token)["sub"] == "google:1"
    with pytest.raises(TokenRejected, match="canonical"):
        verifier.verify(twin)

