"""A real Caddy (Debian's package) protects an app that has no sign-in code, with the gateway's
`GET /auth` behind `forward_auth`, configured from the shipped sample `config/Caddyfile`.

Everything on 127.0.0.1: Caddy, the app and the gateway on three ports. The sample's app site
is used as it is, with only its addresses changed (the site's name to a loopback http address,
the gateway's and the app's host:port to theirs); a global options block of our own keeps
Caddy's admin API off and its state in the test's directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, LoopThread, Stack
from proxy_support import (
    USER_HEADERS,
    check_forged_headers_refused,
    check_sign_in_and_out,
    executable,
    protected_app,
    proxied_stack,
    running,
    shown_user,
)

pytestmark = pytest.mark.slow

SAMPLE = REPO_ROOT / "config" / "Caddyfile"
APP_SITE = "app.example.com {"
GATEWAY = "oauth-gateway:8080"
APP = "app:8000"


def app_site(sample: str) -> str:
    """The sample's app.example.com site block, up to the gateway's own site."""
    start = sample.index(APP_SITE)
    end = sample.index("# The gateway itself", start)
    return sample[start:end]


def caddy_config(tmp_path: Path, *, port: int, gateway_port: int, app_port: int) -> str:
    site = app_site(SAMPLE.read_text())
    for original in (APP_SITE, GATEWAY, APP):
        assert site.count(original) == 1, f"the sample's site names {original} once"
    site = site.replace(APP_SITE, f"http://127.0.0.1:{port} {{") \
        .replace(GATEWAY, f"127.0.0.1:{gateway_port}") \
        .replace(APP, f"127.0.0.1:{app_port}")
    return f"""{{
	admin off
	auto_https off
	storage file_system {tmp_path}/data
}}

{site}"""


def test_the_tested_site_is_the_sample_with_other_addresses(tmp_path: Path) -> None:
    """Only addresses change: every other line of the sample's app site is in the config."""
    config = caddy_config(tmp_path, port=1, gateway_port=2, app_port=3)
    sample = app_site(SAMPLE.read_text())
    kept = [line for line in sample.splitlines()
            if not any(address in line for address in (APP_SITE, GATEWAY, APP))]
    assert len(kept) > 10
    assert all(line in config.splitlines() for line in kept)
    for header in USER_HEADERS:  # what the sample promises to strip and copy
        assert f"request_header -{header}" in sample
        assert re.search(rf"copy_headers [^\n]*\b{header}\b", sample)


@pytest.fixture
def app_port(loop_thread: LoopThread) -> Iterator[int]:
    with protected_app(loop_thread) as port:
        yield port


@pytest.fixture
def caddy(tmp_path: Path, app_port: int, make_stack: Callable[..., Stack]
          ) -> Iterator[tuple[str, Stack]]:
    caddy = executable("caddy", "caddy")
    port, origin, stack, gateway_port = proxied_stack(make_stack)
    config = tmp_path / "Caddyfile"
    config.write_text(caddy_config(tmp_path, port=port, gateway_port=gateway_port,
                                   app_port=app_port))
    # Caddy keeps state under $HOME / $XDG_*: the test's directory, not the machine's.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    with running([caddy, "run", "--config", str(config), "--adapter", "caddyfile"], port,
                 env=env, name="caddy"):
        yield origin, stack


def test_caddy_sends_a_stranger_to_login_and_back_then_refuses_after_sign_out(caddy) -> None:
    def check_shown(page: str, claims: dict[str, Any]) -> None:
        user = shown_user(page)
        assert user["user"] == claims["sub"]
        assert user["email"] == claims["email"]

    check_sign_in_and_out(*caddy, check_shown)


def test_caddy_never_lets_a_forged_identity_header_through(caddy) -> None:
    check_forged_headers_refused(*caddy)
