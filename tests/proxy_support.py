"""Real reverse proxies (nginx, Caddy) in front of an app with no sign-in code, on loopback:
the app they protect, free ports, starting and stopping the proxy, the hop to the gateway's
login page. Used by tests/http/test_nginx_forward_auth.py and test_caddy_forward_auth.py."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import tornado.escape
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import FormParser, LoopThread, Stack, query_of

# What the gateway's 200 to /auth carries, and so what a proxy passes on to the app: a client
# must never get its own values of these through.
USER_HEADERS = ("X-Auth-Request-User", "X-Auth-Request-Email",
                "X-Auth-Request-Preferred-Username")


def executable(name: str, install: str) -> str:
    """The program, from PATH or /usr/sbin; missing, a failure in CI and a skip elsewhere."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed: .ci/run installs Debian's {install} package")
    pytest.skip(f"{name} is not installed (apt-get install {install}); CI runs this test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProtectedPage(tornado.web.RequestHandler):
    """The app behind the proxy: no sign-in code, it trusts the headers the proxy sets, and
    shows each (empty when absent)."""

    def get(self) -> None:
        shown = [f"<b id='{header.rsplit('-', 1)[-1].lower()}'>"
                 f"{tornado.escape.xhtml_escape(self.request.headers.get(header, ''))}</b>"
                 for header in USER_HEADERS]
        self.write(f"<p>Hello, {' '.join(shown)}</p>")


@contextmanager
def protected_app(loop_thread: LoopThread) -> Iterator[int]:
    """The app on a free loopback port, for the duration."""
    def start() -> tuple[tornado.httpserver.HTTPServer, int]:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/.*", ProtectedPage)]))
        server.add_sockets(sockets)
        return server, sockets[0].getsockname()[1]

    server, port = loop_thread.call(start)
    try:
        yield port
    finally:
        loop_thread.call(server.stop)


@contextmanager
def running(command: Sequence[str], port: int, *, env: dict[str, str] | None = None,
            name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a proxy and wait until it listens on `port`; stop it (SIGTERM) afterwards."""
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"{name} exited {process.returncode}: {output}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not start listening")
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def follow_to_the_gateway_login(browser: Any, location: str, stack: Stack) -> str:
    """The chooser page the proxy sent us to, then its Google button: the provider's URL."""
    chooser = browser.get(location)
    assert chooser.status_code == 200, chooser.text
    button = re.search(r'href="(/login/google\?[^"]+)"', chooser.text)
    assert button, chooser.text
    start = browser.get(stack.url + html.unescape(button.group(1)))
    assert start.status_code == 302
    return str(start.headers["location"])


def shown_user(page: str) -> dict[str, str]:
    """What the app says the proxy told it: header suffix (user, email, username) -> value."""
    return dict(re.findall(r"<b id='([a-z]+)'>([^<]*)</b>", page))


def proxied_stack(make_stack: Callable[..., Stack]) -> tuple[int, str, Stack, int]:
    """A free port for the proxy, its origin, a gateway that may send the browser back there,
    and the gateway's port."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    stack = make_stack(login={"allowed_return_urls": [f"{origin}/"]})
    gateway_port = urlsplit(stack.url).port
    assert gateway_port is not None
    return port, origin, stack, gateway_port


def check_sign_in_and_out(origin: str, stack: Stack,
                          check_shown: Callable[[str, dict[str, Any]], None]) -> None:
    """A stranger at a page behind the proxy is sent to the gateway's login and back, is shown
    the page as the user `/verify` names (`check_shown(page, claims)`), and after signing out
    is sent to log in again."""
    browser = stack.browser()
    page = f"{origin}/reports/2026?tab=a&x=1"

    refused = browser.get(page)
    assert refused.status_code == 302  # the gateway's answer, handed to the browser by the proxy
    assert refused.headers["location"].startswith(f"{stack.url}/login?")
    assert query_of(refused.headers["location"])["return_to"] == [page]

    provider = follow_to_the_gateway_login(browser, refused.headers["location"], stack)
    back = browser.consent(provider)
    done = browser.get(back.headers["location"])
    assert done.status_code == 302 and done.headers["location"] == page

    shown = browser.get(page)
    assert shown.status_code == 200
    check_shown(shown.text, browser.get(f"{stack.url}/verify").json())

    home = browser.get(f"{stack.url}/")
    form = FormParser()
    form.feed(home.text)
    assert form.action and form.action.endswith("/logout"), home.text
    assert browser.post(f"{stack.url}/logout", data=form.inputs).status_code == 303

    again = browser.get(page)
    assert again.status_code == 302
    assert again.headers["location"].startswith(f"{stack.url}/login?")


def check_forged_headers_refused(origin: str, stack: Stack) -> None:
    """Identity headers a client sends never reach the app, signed in or not."""
    browser = stack.browser()
    forged = {header: "google:admin" for header in USER_HEADERS}
    answer = browser.get(f"{origin}/", headers=forged)
    assert answer.status_code == 302
    browser.login()
    shown = browser.get(f"{origin}/", headers=forged)
    assert shown.status_code == 200
    assert "google:admin" not in shown.text
    assert shown_user(shown.text)["user"] == browser.get(f"{stack.url}/verify").json()["sub"]
