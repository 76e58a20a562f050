"""Helpers for the OpenID Connect tests: registered clients, and a browser driven through
`/authorize` -> upstream login -> `/authorize/resume` -> the app's redirect_uri."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from conftest import Browser, Stack
from log_canaries import SCAN

from gateway.oidc.clients import hash_client_secret

REDIRECT_URI = "https://app.example.test/callback"
SPA_REDIRECT_URI = "https://spa.example.test/cb"
LOGOUT_URI = "https://app.example.test/signed-out"
CONFIDENTIAL_SECRET = "Zt7Qw9kVx2LmN4pR8sT1uY6aB3cD5eF0gH2jK4lM6nP"
OTHER_SECRET = "Mq3Wn8Xb5Vc2Lz7Kj4Hg1Fd6Sa9Pq0Or3Ie5Uw8Yt2R"

CONFIDENTIAL = {
    "client_id": "webapp",
    "name": "Web App",
    "client_secret_hash": hash_client_secret(CONFIDENTIAL_SECRET),
    "redirect_uris": [REDIRECT_URI],
    "post_logout_redirect_uris": [LOGOUT_URI],
}
PUBLIC = {
    "client_id": "spa",
    "name": "Single-page App",
    "redirect_uris": [SPA_REDIRECT_URI],
    "audience": "https://api.example.test",
}
OTHER = {
    "client_id": "other",
    "client_secret_hash": hash_client_secret(OTHER_SECRET),
    "redirect_uris": ["https://other.example.test/cb"],
}
CLIENTS = [CONFIDENTIAL, PUBLIC, OTHER]
# The API the single-page app calls: it introspects the tokens meant for it (its audience).
INTROSPECTOR_SECRET = "Hj5Kl8Zx2Cv4Bn7Mq1We3Rt6Yu9Io0PaSd2Fg5Jk8L"
INTROSPECTOR = {
    "client_id": "introspector",
    "client_secret_hash": hash_client_secret(INTROSPECTOR_SECRET),
    "redirect_uris": ["https://api.example.test/unused"],
    "audience": "https://api.example.test",
}
INTROSPECTOR_AUTH = ("introspector", INTROSPECTOR_SECRET)
for _secret in (CONFIDENTIAL_SECRET, OTHER_SECRET, INTROSPECTOR_SECRET):
    SCAN.register(_secret, "client secret", everywhere=True)


def oidc_stack(make_stack: Any, clients: list[dict[str, Any]] | None = None,
               **overrides: Any) -> Stack:
    stack: Stack = make_stack(clients=clients if clients is not None else CLIENTS, **overrides)
    return stack


def discovery(stack: Stack) -> dict[str, Any]:
    answer = httpx.get(f"{stack.url}/.well-known/openid-configuration")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def authorize_url(stack: Stack, **params: str) -> str:
    return f"{stack.url}/authorize?{urlencode(params)}"


def complete_authorization(browser: Browser, url: str, *, user: str = "ada",
                           provider: str = "google") -> httpx.Response:
    """Follow the browser from an authorization URL to the answer that leaves the gateway
    for the app (a 302 to its redirect_uri), signing in upstream when asked to."""
    stack = browser.stack
    answer = browser.get(url)
    if answer.status_code != 302 or not answer.headers["location"].startswith(stack.url):
        return answer  # an error page, or straight back to the app (error or SSO)
    location = answer.headers["location"]
    path = urlsplit(location).path
    if path == "/login":  # the provider chooser: the user clicks one
        return_to = parse_qs(urlsplit(location).query)["return_to"][0]
        location = f"{stack.url}/login/{provider}?{urlencode({'return_to': return_to})}"
    start = browser.get(location)
    assert start.status_code == 302, start.text
    back = browser.consent(start.headers["location"], user=user)
    assert back.status_code == 302, back.text
    callback = browser.get(back.headers["location"])
    assert callback.status_code == 302, callback.text
    resume = callback.headers["location"]
    assert resume.startswith(f"{stack.url}/authorize/resume?"), resume
    return browser.get(resume)


def redirect_params(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def authorization_params(client_id: str = "spa", redirect_uri: str = SPA_REDIRECT_URI,
                         scope: str = "openid email profile offline_access",
                         **extra: str) -> dict[str, str]:
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": scope, "state": "st-123", "nonce": "n-456",
              "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


def get_code(browser: Browser, **params: str) -> str:
    """Sign in (or reuse the session) and return the code the app receives."""
    answer = complete_authorization(
        browser, authorize_url(browser.stack, **authorization_params(**params)))
    query = redirect_params(answer)
    assert "code" in query, query
    return query["code"]


def token_request(stack: Stack, data: dict[str, str],
                  auth: tuple[str, str] | None = None) -> httpx.Response:
    answer = httpx.post(f"{stack.url}/token", data=data, auth=auth)
    SCAN.register_response(answer)
    return answer


def exchange(stack: Stack, code: str, *, client_id: str = "spa",
             redirect_uri: str = SPA_REDIRECT_URI, verifier: str | None = VERIFIER,
             auth: tuple[str, str] | None = None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    if auth is None:
        data["client_id"] = client_id
    return token_request(stack, data, auth)


def refresh(stack: Stack, refresh_token: str, *, client_id: str = "spa",
            auth: tuple[str, str] | None = None, scope: str | None = None) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        data["scope"] = scope
    if auth is None:
        data["client_id"] = client_id
    return token_request(stack, data, auth)


def tokens_for(stack: Stack, browser: Browser | None = None, **params: str) -> dict[str, Any]:
    """The token response of a whole code flow for the public client."""
    browser = browser or stack.browser()
    answer = exchange(stack, get_code(browser, **params))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
