"""The generic OpenID Connect connector against a provider the project did not write: panva's
certified `oidc-provider` (tests/interop/oidc-provider/, pinned in its package-lock.json),
started by the test on a free loopback port. The gateway knows only its issuer, client id and
secret: everything else comes from its discovery document. A login goes through its own pages
(its development interactions: a login form, then a consent form), followed with httpx.

Without Node.js or the npm install (`.ci/run` runs `npm ci` there) the test skips locally and
fails under CI=true.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from conftest import REPO_ROOT, FormParser, Stack
from log_canaries import SCAN
from store_backends import free_port

SERVER_DIR = REPO_ROOT / "tests" / "interop" / "oidc-provider"
NAME = "interop"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true; .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@dataclass
class OpenIdProvider:
    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen[str] | None = None

    def start(self, redirect_uri: str) -> None:
        environ = {**os.environ, "ISSUER": self.issuer, "PORT": self.issuer.rsplit(":", 1)[1],
                   "CLIENT_ID": self.client_id, "CLIENT_SECRET": self.client_secret,
                   "REDIRECT_URI": redirect_uri}
        node = shutil.which("node")
        assert node is not None
        self.process = subprocess.Popen([node, "server.mjs"], cwd=SERVER_DIR, env=environ,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:  # its warnings, then "listening"
            seen.append(line)
            if line.strip() == "listening":
                return
        raise AssertionError("oidc-provider did not start:\n" + "".join(seen))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def openid_provider() -> Iterator[OpenIdProvider]:
    if shutil.which("node") is None:
        _unavailable("node is not installed (apt-get install nodejs npm)")
    if not (SERVER_DIR / "node_modules" / "oidc-provider").is_dir():
        _unavailable(f"oidc-provider is not installed (cd {SERVER_DIR} && npm ci)")
    provider = OpenIdProvider(f"http://127.0.0.1:{free_port()}", "oauth-gateway",
                              secrets.token_urlsafe(32))
    SCAN.register(provider.client_secret, "interop client_secret")
    yield provider
    provider.stop()


def _login_through_the_provider(stack: Stack, client: httpx.Client, start_url: str,
                                login: str) -> httpx.Response:
    """Follow redirects and submit the provider's forms (its login, then its consent) until
    the provider sends the browser back to the gateway's callback; returns that answer."""
    response = client.get(start_url)
    for _ in range(12):
        if response.is_redirect:
            target = response.url.join(response.headers["location"])
            response = client.get(target)
            if str(target).startswith(f"{stack.url}/callback/"):
                return response
            continue
        assert response.status_code == 200, response.text
        form = FormParser()
        form.feed(response.text)
        assert form.action is not None, response.text
        data = {**form.inputs}
        if data.get("prompt") == "login":
            data.update(login=login, password="any")
        response = client.post(response.url.join(form.action), data=data)
    raise AssertionError("the login did not come back to the gateway")


def test_interop_a_login_at_a_certified_openid_provider_configured_by_discovery_alone(
        make_stack: Callable[..., Stack], openid_provider: OpenIdProvider) -> None:
    stack = make_stack(providers={"oidc": {NAME: {
        "display_name": "Interop OP", "issuer": openid_provider.issuer,
        "client_id": openid_provider.client_id,
        "client_secret": openid_provider.client_secret}}})
    openid_provider.start(f"{stack.url}/callback/{NAME}")
    with httpx.Client(timeout=15, follow_redirects=False) as client:
        start = client.get(f"{stack.url}/login/{NAME}")
        assert start.status_code == 302, start.text
        assert start.headers["location"].startswith(f"{openid_provider.issuer}/auth?")
        done = _login_through_the_provider(stack, client, start.headers["location"], "alice")
        assert done.status_code == 302, done.text
        assert done.headers["location"] == f"{stack.url}/"
        claims = client.get(f"{stack.url}/verify").json()
    assert claims["sub"] == f"{NAME}:alice"
    assert claims["idp"] == NAME
    # oidc-provider puts the profile in userinfo only: the gateway asked it, same sub.
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert claims["name"] == "Interop alice"
