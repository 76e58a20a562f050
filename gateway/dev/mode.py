"""Development mode: the gateway plus local stand-ins for its providers, no credentials needed.

Keys and the cookie secret are generated on first start into a state directory (never into
git); the stand-ins get fresh random client credentials at every start. Each stand-in listens
on its own port (`dev.provider_port`, the next one, ...), as each provider has its own host.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import tornado.httpserver
import tornado.web

from gateway.config import Settings, deep_merge, load_settings
from gateway.dev.standins import apple, facebook, github, google, microsoft, oidc, x
from gateway.dev.standins.google import GoogleStandIn
from gateway.handlers.demo import DEMO_CALLBACK_PATH, DEMO_CLIENT_ID
from gateway.server import bind, bound_port

DEV_HOST = "localhost"
DEV_PORT = 8080  # the gateway's; examples/tornado_app.py expects it there by default


class StandIn(Protocol):
    """What dev mode needs of a provider stand-in (see gateway/dev/standins/)."""

    base_url: str

    def make_app(self) -> tornado.web.Application: ...


# (provider name, factory): the factory gets the stand-in's base URL and the gateway's issuer
# and returns the stand-in and the gateway's configuration section pointing at it. A dotted
# name is the section's path under [providers] ("oidc.dev": [providers.oidc.dev], the provider
# "dev").
StandInFactory = Callable[[str, str], tuple[StandIn, dict[str, Any]]]
STANDINS: tuple[tuple[str, StandInFactory], ...] = (
    ("google", google.dev_provider),
    ("facebook", facebook.dev_provider),
    ("twitter", x.dev_provider),
    ("github", github.dev_provider),
    ("microsoft", microsoft.dev_provider),
    (f"oidc.{oidc.DEV_NAME}", oidc.dev_provider),
    ("apple", apple.dev_provider),
)


@dataclass
class DevProvider:
    name: str
    standin: StandIn
    sockets: list[socket.socket]


@dataclass
class DevStack:
    settings: Settings
    gateway_sockets: list[socket.socket]
    providers: dict[str, DevProvider]

    @property
    def google(self) -> GoogleStandIn:
        standin = self.providers["google"].standin
        assert isinstance(standin, GoogleStandIn)
        return standin

    def standin(self, name: str) -> StandIn:
        return self.providers[name].standin

    def start_providers(self) -> list[tornado.httpserver.HTTPServer]:
        """Serve every stand-in (call inside the event loop)."""
        servers = []
        for provider in self.providers.values():
            server = tornado.httpserver.HTTPServer(provider.standin.make_app())
            server.add_sockets(provider.sockets)
            servers.append(server)
        return servers


def prepare_dev_stack(
    config_path: str | Path | None,
    environ: Mapping[str, str],
    *,
    overrides: Mapping[str, Any] | None = None,
    command_line: Mapping[str, Any] | None = None,
    host: str = DEV_HOST,
    standin_hosts: Mapping[str, str] | None = None,
) -> DevStack:
    """Bind the gateway's and the stand-ins' ports, then build settings pointing at them.

    `overrides` are defaults beneath the file and the environment; `command_line` goes above
    them (see `load_settings`). `standin_hosts` puts a stand-in on another host than the
    gateway's (a test's `127.0.0.1` beside `localhost`: another site, as a real provider is)."""
    first = _first_pass(config_path, environ, overrides, command_line, host)
    gateway_sockets = bind(host, first.listen.port)
    issuer = f"http://{host}:{bound_port(gateway_sockets)}"
    providers: dict[str, DevProvider] = {}
    sections: dict[str, Any] = {}
    for offset, (path, factory) in enumerate(STANDINS):
        standin_host = (standin_hosts or {}).get(path, host)
        sockets = bind(standin_host, _provider_port(first, offset))
        standin, section = factory(f"http://{standin_host}:{bound_port(sockets)}", issuer)
        name = _provider_name(path)
        providers[name] = DevProvider(name, standin, sockets)
        _put_section(sections, path, section)
    state_dir = Path(first.dev.state_dir)
    settings = _final_pass(config_path, environ, overrides, command_line, issuer, sections,
                           [p.standin.base_url for p in providers.values()],
                           _dev_cookie_secret(state_dir), state_dir)
    return DevStack(settings, gateway_sockets, providers)


def check_dev_config(
    config_path: str | Path | None,
    environ: Mapping[str, str],
    *,
    command_line: Mapping[str, Any] | None = None,
    host: str = DEV_HOST,
) -> Settings:
    """The settings `serve --dev` would start with, checked the same way, for `config check
    --dev`; but no port is bound and nothing is written, so it also works while a development
    gateway runs. A port of 0 (chosen at start) is left out of the URLs; the stand-ins'
    credentials are thrown away."""
    first = _first_pass(config_path, environ, None, command_line, host)
    issuer = _origin(host, first.listen.port)
    sections: dict[str, Any] = {}
    origins: list[str] = []
    for offset, (path, factory) in enumerate(STANDINS):
        standin, section = factory(_origin(host, _provider_port(first, offset)), issuer)
        _put_section(sections, path, section)
        origins.append(standin.base_url)
    state_dir = Path(first.dev.state_dir)
    return _final_pass(config_path, environ, None, command_line, issuer, sections, origins,
                       _dev_cookie_secret(state_dir, create=False), state_dir)


def _first_pass(config_path: str | Path | None, environ: Mapping[str, str],
                overrides: Mapping[str, Any] | None, command_line: Mapping[str, Any] | None,
                host: str) -> Settings:
    """Only to learn the ports and the state directory; the issuer is not known yet."""
    placeholder: dict[str, Any] = {"providers": {}}
    for path, _ in STANDINS:
        if path != "apple":
            _put_section(placeholder["providers"], path,
                         {"client_id": "-", "client_secret": "-"})
    placeholder["providers"]["twitter"].update(consumer_key="-", consumer_secret="-")  # oauth1
    placeholder["providers"]["apple"] = apple.placeholder_section()  # a key, no secret
    for section in placeholder["providers"]["oidc"].values():  # generic OpenID providers
        section.update(display_name="-", issuer=f"http://{host}")
    return load_settings(config_path, environ,
                         base=_dev_base(f"http://{host}", placeholder, overrides),
                         overrides=command_line, dev_mode=True)


def _final_pass(config_path: str | Path | None, environ: Mapping[str, str],
                overrides: Mapping[str, Any] | None, command_line: Mapping[str, Any] | None,
                issuer: str, sections: dict[str, Any], standin_origins: list[str],
                cookie_secret: str | None, state_dir: Path) -> Settings:
    extra: dict[str, Any] = {
        "tokens": {"keys_dir": str(state_dir / "keys")},
        "providers": sections,
        # The stand-ins serve the test users' pictures (over http, unlike the real providers).
        "dev": {"image_origins": standin_origins},
    }
    if cookie_secret is not None:
        extra["cookies"] = {"secret": cookie_secret}
    return load_settings(config_path, environ, base=_dev_base(issuer, extra, overrides),
                         overrides=command_line, dev_mode=True)


def _provider_name(path: str) -> str:
    return path.rpartition(".")[2]


def _put_section(sections: dict[str, Any], path: str, section: dict[str, Any]) -> None:
    """`section` at its dotted `path` under [providers] ("oidc.dev": sections["oidc"]["dev"])."""
    *parents, name = path.split(".")
    for parent in parents:
        sections = sections.setdefault(parent, {})
    sections[name] = section


def _provider_port(first: Settings, offset: int) -> int:
    return first.dev.provider_port + offset if first.dev.provider_port else 0


def _origin(host: str, port: int) -> str:
    return f"http://{host}:{port}" if port else f"http://{host}"


def _dev_base(issuer: str, extra: Mapping[str, Any],
              overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "issuer": issuer,
        "listen": {"address": DEV_HOST, "port": DEV_PORT},
        "tokens": {"keys_dir": ".gateway-dev/keys"},
        "cookies": {"secret": "x" * 32, "secure": False},
        "login": {"allowed_return_urls": [f"{issuer}/"]},
        # A public OIDC client on the gateway's own origin: /demo/oidc runs the code flow.
        "clients": [{"client_id": DEMO_CLIENT_ID, "name": "Demo app",
                     "redirect_uris": [f"{issuer}{DEMO_CALLBACK_PATH}"],
                     "post_logout_redirect_uris": [f"{issuer}/"]}],
    }
    deep_merge(base, extra)
    deep_merge(base, overrides or {})
    return base


def _dev_cookie_secret(state_dir: Path, *, create: bool = True) -> str | None:
    """A random secret kept in the state directory, so dev sessions survive a restart (None
    when there is none yet and `create` is false)."""
    path = state_dir / "cookie-secret"
    if not path.exists() and not create:
        return None
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def close_sockets(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
