"""Development mode: the gateway plus a local stand-in for Google, no credentials needed.

Keys and the cookie secret are generated on first start into a state directory (never into
git); the stand-in gets fresh random client credentials at every start.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.httpserver

from gateway.config import Settings, deep_merge, load_settings
from gateway.devproviders.google import GoogleStandIn
from gateway.server import bind, bound_port

DEV_HOST = "localhost"


@dataclass
class DevStack:
    settings: Settings
    gateway_sockets: list[socket.socket]
    provider_sockets: list[socket.socket]
    google: GoogleStandIn

    def start_provider(self) -> tornado.httpserver.HTTPServer:
        """Serve the stand-in (call inside the event loop)."""
        server = tornado.httpserver.HTTPServer(self.google.make_app())
        server.add_sockets(self.provider_sockets)
        return server


def prepare_dev_stack(
    config_path: str | Path | None,
    environ: Mapping[str, str],
    *,
    overrides: Mapping[str, Any] | None = None,
    host: str = DEV_HOST,
) -> DevStack:
    """Bind the gateway's and the stand-in's ports, then build settings pointing at both."""
    # A first pass only to learn the ports and the state directory; the issuer is not known yet.
    placeholder = {"providers": {"google": {"client_id": "-", "client_secret": "-"}}}
    first = load_settings(config_path, environ,
                          base=_dev_base(f"http://{host}", placeholder, overrides), dev_mode=True)
    gateway_sockets = bind(host, first.listen.port)
    provider_sockets = bind(host, first.dev.provider_port)
    issuer = f"http://{host}:{bound_port(gateway_sockets)}"
    provider_url = f"http://{host}:{bound_port(provider_sockets)}"
    state_dir = Path(first.dev.state_dir)
    client_id = f"dev-{secrets.token_hex(8)}.apps.googleusercontent.com"
    client_secret = "GOCSPX-" + secrets.token_urlsafe(24)
    google = GoogleStandIn(provider_url, client_id, client_secret, [f"{issuer}/callback/google"])
    google_section = {
        "client_id": client_id,
        "client_secret": client_secret,
        "authorize_url": google.authorize_url,
        "token_url": google.token_url,
        "userinfo_url": google.userinfo_url,
        "jwks_url": google.jwks_url,
        "issuers": [google.issuer],
    }
    base = _dev_base(issuer, {
        "tokens": {"keys_dir": str(state_dir / "keys")},
        "cookies": {"secret": _dev_cookie_secret(state_dir)},
        "providers": {"google": google_section},
    }, overrides)
    settings = load_settings(config_path, environ, base=base, dev_mode=True)
    return DevStack(settings, gateway_sockets, provider_sockets, google)


def _dev_base(issuer: str, extra: Mapping[str, Any],
              overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "issuer": issuer,
        "listen": {"address": DEV_HOST, "port": 8080},
        "tokens": {"keys_dir": ".gateway-dev/keys"},
        "cookies": {"secret": "x" * 32, "secure": False},
        "login": {"allowed_return_urls": [f"{issuer}/"]},
    }
    deep_merge(base, extra)
    deep_merge(base, overrides or {})
    return base


def _dev_cookie_secret(state_dir: Path) -> str:
    """A random secret kept in the state directory, so dev sessions survive a restart."""
    path = state_dir / "cookie-secret"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def close_sockets(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
