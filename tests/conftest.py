"""Real servers on loopback for the tests: the gateway and the provider stand-ins, each started
on port 0 in a background event loop, driven over real HTTP by httpx."""

from __future__ import annotations

import asyncio
import html.parser
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import tornado.web
from log_canaries import SCAN, LogScan

from gateway.context import GatewayContext
from gateway.dev.mode import DevStack, prepare_dev_stack
from gateway.dev.standins.google import GoogleStandIn
from gateway.server import application_of, start_gateway


class LoopThread:
    """An asyncio event loop in a thread, where the servers live."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self.run(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class Stack:
    """A running gateway in development mode with its Google stand-in."""

    dev: DevStack
    ctx: GatewayContext
    loop: LoopThread
    server: Any = None  # the gateway's listener: Tornado's HTTPServer, or llhttp's DataPlane

    @property
    def application(self) -> tornado.web.Application:
        return application_of(self.server)

    @property
    def url(self) -> str:
        return self.dev.settings.issuer

    @property
    def google(self) -> GoogleStandIn:
        return self.dev.google

    def standin(self, name: str) -> Any:
        return self.dev.standin(name)

    def browser(self) -> Browser:
        return Browser(self)


UNIT_TESTS = Path(__file__).parent / "unit"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--http-parser", default="llhttp", choices=("tornado", "llhttp"),
                     help="the gateways' listen.http_parser in tests that start a stack")


@pytest.fixture(autouse=True)
def no_sockets_in_unit_tests(request: pytest.FixtureRequest,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/unit is the quick loop: protocol logic, parsing, claims, configuration. A test
    there that connects or listens belongs in tests/http, and fails here to say so."""
    if UNIT_TESTS not in Path(request.node.path).parents:
        return

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a test in tests/unit opened a socket: move it to tests/http")

    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, refused)


@pytest.fixture(scope="session", autouse=True)
def log_scan() -> Iterator[Any]:
    """SECURITY L1: every gateway and Tornado log record of the run, kept as JSON lines
    (tests/log_canaries.py)."""
    SCAN.install()
    yield SCAN
    SCAN.uninstall()


@pytest.fixture
def logs() -> Iterator[LogScan]:
    """Every record of the gateway's and Tornado's loggers during the test, as JSON lines."""
    scan = LogScan()
    scan.install()
    yield scan
    scan.uninstall()


@pytest.fixture(autouse=True)
def no_secret_in_logs(log_scan: Any) -> Iterator[None]:
    """After each test (its stacks stopped): none of its canaries is in any log line."""
    mark = log_scan.mark()
    yield
    leaks = log_scan.leaks_since(mark)
    assert not leaks, "SECURITY L1: secrets in the logs:\n" + "\n".join(leaks)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def deployments(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Callable[..., Any]]:
    """Gateway processes started as a user starts them (process_support.Deployment)."""
    from process_support import deployment_factory  # it imports this module

    yield from deployment_factory(loop_thread, tmp_path_factory)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of the test's own on the shared Redis, its keys removed afterwards."""
    from store_backends import delete_prefix, require_redis, unique_prefix

    require_redis()
    prefix = unique_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture(scope="session")
def pg_run_database() -> Iterator[str]:
    """A PostgreSQL database of this test run's own (a unique name), dropped at its end."""
    from store_backends import create_database, drop_database, require_postgres

    require_postgres()
    name = create_database()
    yield name
    drop_database(name)


@pytest.fixture
def pg_database(pg_run_database: str) -> str:
    """The run's PostgreSQL database, emptied of what earlier tests stored."""
    from store_backends import empty_store_tables

    empty_store_tables(pg_run_database)
    return pg_run_database


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own, with no schema yet."""
    from store_backends import create_database, drop_database, require_postgres

    require_postgres()
    name = create_database()
    yield name
    drop_database(name)


@pytest.fixture
def pg_proxy() -> Iterator[Any]:
    """A TCP proxy to the shared PostgreSQL (store_backends.TcpProxy), which the test cuts,
    stalls and restores: an outage of its own, never of the shared server."""
    from store_backends import TcpProxy, require_postgres

    require_postgres()
    server = TcpProxy()
    yield server
    server.close()


@pytest.fixture(scope="session")
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis master, two replicas and three sentinels of the tests' own
    (tests/redis_topology.py), started once: a test that breaks it heals it before it ends."""
    from redis_topology import SentinelTopology, running

    with running(SentinelTopology(tmp_path_factory.mktemp("redis-sentinel"))) as topology:
        yield topology


@pytest.fixture(scope="session")
def cluster_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis Cluster of three masters of the tests' own (tests/redis_topology.py)."""
    from redis_topology import ClusterTopology, running

    with running(ClusterTopology(tmp_path_factory.mktemp("redis-cluster"))) as topology:
        yield topology


@pytest.fixture
def make_stack(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory,
               pytestconfig: pytest.Config) -> Iterator[Callable[..., Stack]]:
    """Start a gateway + stand-in with configuration overrides: `make_stack(tokens={...})`."""
    servers: list[Any] = []
    stacks: list[DevStack] = []
    contexts: list[GatewayContext] = []

    def start(*, host: str = "127.0.0.1", standin_hosts: dict[str, str] | None = None,
              **overrides: Any) -> Stack:
        """`host` is the gateway's (and by default every stand-in's); `standin_hosts` puts a
        stand-in on another host, another site (`{"apple": "127.0.0.1"}` beside `localhost`)."""
        state_dir = tmp_path_factory.mktemp("gateway-state")
        base: dict[str, Any] = {
            "listen": {"port": 0, "http_parser": pytestconfig.getoption("http_parser")},
            "dev": {"provider_port": 0, "state_dir": str(state_dir)},
        }
        for section, values in overrides.items():
            base.setdefault(section, {})
            if isinstance(values, dict):
                base[section].update(values)
            else:
                base[section] = values
        dev = prepare_dev_stack(None, {}, overrides=base, host=host,
                                standin_hosts=standin_hosts)
        SCAN.register(dev.settings.cookies.secret.reveal(), "cookie secret")
        for name in ("google", "facebook", "twitter", "github", "microsoft", "apple"):
            section = getattr(dev.settings.providers, name)
            for secret in ("client_secret", "consumer_secret", "private_key"):
                if section is not None and hasattr(section, secret):
                    # A PEM key line by line: a log line would hold its lines apart.
                    for part in getattr(section, secret).reveal().splitlines():
                        SCAN.register(part, f"{name} {secret}")
        for name, oidc in dev.settings.providers.oidc.items():
            SCAN.register(oidc.client_secret.reveal(), f"{name} client_secret")
        stacks.append(dev)

        def boot() -> tuple[GatewayContext, Any]:
            servers.extend(dev.start_providers())
            ctx, server = start_gateway(dev.settings, dev.gateway_sockets)
            servers.append(server)
            return ctx, server

        ctx, server = loop_thread.call(boot)
        contexts.append(ctx)
        return Stack(dev, ctx, loop_thread, server)

    yield start
    for server in servers:
        loop_thread.call(server.stop)
    for ctx in contexts:  # [tracing]: its exporter thread ends with the stack
        if ctx.tracing is not None:
            ctx.tracing.shutdown()
    for dev in stacks:  # the upstream access tokens the stand-ins issued (SECURITY C2, L1)
        for provider in dev.providers.values():
            # Apple's: the client secrets (JWTs) the gateway signed and sent.
            for attribute in ("_access_tokens", "_bearer_tokens", "client_secrets"):
                for token in list(getattr(provider.standin, attribute, {})):
                    SCAN.register(token, f"{provider.name} upstream access token")


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


class FormParser(html.parser.HTMLParser):
    """The first form of a page: its action, method and inputs (what a browser would submit)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.inputs: dict[str, str] = {}
        self.fields: list[tuple[str, str]] = []  # every input in order, repeated names too
        self.buttons: list[tuple[str, str]] = []
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self._done:
            return
        if tag == "form" and self.action is None:
            self.action, self.method = a.get("action", ""), a.get("method", "get").lower()
        elif tag == "input" and self.action is not None and a.get("name"):
            self.inputs[a["name"]] = a.get("value", "")
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "button" and self.action is not None and a.get("name"):
            self.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.action is not None:
            self._done = True


class Browser:
    """A minimal browser: keeps cookies per host (ignoring the Secure flag, as on a dev
    http://localhost), follows nothing by itself so tests can look at every hop."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(timeout=15)
        self.cookies: dict[str, str] = {}
        self.samesite: dict[str, str] = {}  # each cookie's SameSite attribute, as it was set
        self.set_cookie_headers: list[str] = []

    def request(self, method: str, url: str, *, cross_site: bool = False,
                **kwargs: Any) -> httpx.Response:
        """`cross_site`: a POST from another site's page (Sign in with Apple's form post),
        which carries only the SameSite=None cookies, as browsers send it."""
        headers = dict(kwargs.pop("headers", {}) or {})
        cookies = {k: v for k, v in self.cookies.items()
                   if not cross_site or self.samesite.get(k, "").lower() == "none"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        response = self.http.request(method, url, headers=headers, follow_redirects=False,
                                     **kwargs)
        self.http.cookies.clear()  # this class keeps the cookies; httpx's jar would add them
        SCAN.register_response(response)
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                expired = morsel["max-age"] == "0" or "1970" in morsel["expires"] or (
                    morsel["expires"] and not morsel.value)
                if expired:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
                    self.samesite[name] = morsel["samesite"]
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def start_login(self, return_to: str | None = None, provider: str = "google"
                    ) -> httpx.Response:
        """GET /login/<provider>; returns the 302 to the provider."""
        params = {"return_to": return_to} if return_to else {}
        return self.get(f"{self.stack.url}/login/{provider}", params=params)

    def consent(self, authorize_location: str, user: str = "ada",
                decision: str | None = None) -> httpx.Response:
        """Open the provider's consent page and click a user (or deny); returns the 302 back."""
        page = self.get(authorize_location)
        assert page.status_code == 200, page.text
        form = FormParser()
        form.feed(page.text)
        assert form.action is not None, "no form on the consent page"
        data = dict(form.inputs)
        if decision:
            data["decision"] = decision
        else:
            data["user"] = user
        action = httpx.URL(authorize_location).join(form.action)
        return self.post(str(action), data=data)

    def login(self, return_to: str | None = None, user: str = "ada",
              provider: str = "google") -> httpx.Response:
        """The whole flow; returns the gateway callback's response (a 302 to return_to)."""
        start = self.start_login(return_to, provider)
        assert start.status_code == 302, start.text
        back = self.consent(start.headers["location"], user=user)
        return self.return_from_provider(back)

    def return_from_provider(self, back: httpx.Response, **kwargs: Any) -> httpx.Response:
        """Back at the gateway's callback after the provider's page: its redirect followed, or
        its form post (Sign in with Apple) submitted; the gateway's answer."""
        return self.deliver(Callback.of(back), **kwargs)

    def deliver(self, callback: Callback, **kwargs: Any) -> httpx.Response:
        """The callback as the provider's page makes the browser send it. A form post is
        cross-site (no SameSite=Lax cookie); the gateway answers it with its relay page,
        which the browser submits from the gateway's own origin, as its script does."""
        if callback.method == "GET":
            return self.get(callback.url, **kwargs)
        answer = self.post_form(callback.url, callback.fields, cross_site=True, **kwargs)
        relay = FormParser()
        relay.feed(answer.text if answer.status_code == 200 else "")
        if relay.action is None or relay.method != "post":
            return answer
        target = httpx.URL(callback.url).join(relay.action)
        return self.post_form(str(target), relay.fields, **kwargs)

    def post_form(self, url: str, fields: Iterable[tuple[str, str]], **kwargs: Any
                  ) -> httpx.Response:
        """A form post of these fields, in this order, names repeated as given."""
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   **(kwargs.pop("headers", {}) or {})}
        return self.post(url, content=urlencode(list(fields)), headers=headers, **kwargs)

    def access_token(self) -> str:
        for name, value in self.cookies.items():
            if name.endswith("gw_access"):
                return value
        raise AssertionError("no access cookie")


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@dataclass(frozen=True)
class Callback:
    """How a provider sends the browser back to the gateway: a redirect to `url` (GET, the
    parameters in its query), or a page whose form posts `fields` to `url` (`form_post`)."""

    url: str
    method: str = "GET"
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, back: httpx.Response) -> Callback:
        """From the provider's answer to the consent page."""
        if back.status_code in (302, 303):
            return cls(back.headers["location"])
        assert back.status_code == 200, back.text
        form = FormParser()
        form.feed(back.text)
        assert form.action and form.method == "post", "neither a redirect nor a form post"
        return cls(str(back.url.join(form.action)), "POST", tuple(form.fields))

    @property
    def params(self) -> dict[str, list[str]]:
        if self.method == "GET":
            return query_of(self.url)
        params: dict[str, list[str]] = {}
        for name, value in self.fields:
            params.setdefault(name, []).append(value)
        return params

    def adding(self, name: str, value: str) -> Callback:
        """The same callback with one more parameter (for a redirect, before Facebook's
        `#_=_` fragment)."""
        if self.method == "POST":
            return Callback(self.url, "POST", (*self.fields, (name, value)))
        url, hash_mark, fragment = self.url.partition("#")
        return Callback(f"{url}&{urlencode({name: value})}{hash_mark}{fragment}")

    @classmethod
    def with_params(cls, url: str, method: str, params: dict[str, str]) -> Callback:
        if method == "POST":
            return cls(url, "POST", tuple(params.items()))
        return cls(f"{url}?{urlencode(params)}")


REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).parent / "data"  # corpora, each with its source and license
