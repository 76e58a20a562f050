"""A real nginx (Debian's package) protects an app that has no sign-in code, with the gateway's
`GET /auth` behind `auth_request`, configured from the shipped sample `config/nginx.conf`.

Everything on 127.0.0.1: nginx, the app and the gateway on three ports. Browsers send a host's
cookies to every port of it, so the gateway's (host-only) cookies reach `/auth` through nginx.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import REPO_ROOT, FormParser, LoopThread, Stack, query_of

pytestmark = pytest.mark.slow

SAMPLE = REPO_ROOT / "config" / "nginx.conf"


def nginx_executable() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("nginx is not installed: .ci/run installs Debian's nginx package")
    pytest.skip("nginx is not installed (apt-get install nginx); CI runs this test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_config(tmp_path: Path, *, port: int, gateway_port: int, app_port: int) -> str:
    """The sample's app server, on loopback without TLS, inside a main context of our own."""
    sample = SAMPLE.read_text()
    sample = sample[: sample.index("# The gateway itself")]  # the gateway is reached directly
    sample = sample.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{gateway_port};")
    sample = sample.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};")
    sample = sample.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    sample = re.sub(r"\n\s*ssl_certificate(_key)?\s[^\n]*", "", sample)
    temp = {name: tmp_path / name for name in ("client_body", "proxy", "fastcgi", "uwsgi",
                                               "scgi")}
    for path in temp.values():
        path.mkdir()
    # As root, nginx's workers would run as `nobody`, who cannot enter pytest's 0700 temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
{sample}
}}
"""


class ProtectedPage(tornado.web.RequestHandler):
    """The app behind nginx: no sign-in code, it trusts the header nginx sets."""

    def get(self) -> None:
        user = self.request.headers.get("X-Auth-Request-User", "")
        self.write(f"<p>Hello, <b id='user'>{tornado.escape.xhtml_escape(user)}</b></p>")


@pytest.fixture
def protected_app(loop_thread: LoopThread) -> Iterator[int]:
    def start() -> tuple[tornado.httpserver.HTTPServer, int]:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/.*", ProtectedPage)]))
        server.add_sockets(sockets)
        return server, sockets[0].getsockname()[1]

    server, port = loop_thread.call(start)
    yield port
    loop_thread.call(server.stop)


@pytest.fixture
def nginx(tmp_path: Path, protected_app: int, make_stack: Callable[..., Stack]
          ) -> Iterator[tuple[str, Stack]]:
    executable = nginx_executable()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    stack = make_stack(login={"allowed_return_urls": [f"{origin}/"]})
    gateway_port = urlsplit(stack.url).port
    assert gateway_port is not None
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(tmp_path, port=port, gateway_port=gateway_port,
                                   app_port=protected_app))
    process = subprocess.Popen([executable, "-p", str(tmp_path), "-e", str(tmp_path / "err.log"),
                                "-c", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"nginx exited {process.returncode}: {output}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not start listening")
                time.sleep(0.05)
        yield origin, stack
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _follow_to_the_gateway_login(browser, location: str, stack: Stack) -> str:
    """The chooser page nginx sent us to, then its Google button: the provider's URL."""
    chooser = browser.get(location)
    assert chooser.status_code == 200, chooser.text
    button = re.search(r'href="(/login/google\?[^"]+)"', chooser.text)
    assert button, chooser.text
    start = browser.get(stack.url + html.unescape(button.group(1)))
    assert start.status_code == 302
    return start.headers["location"]


def test_nginx_sends_a_stranger_to_login_and_back_then_refuses_after_sign_out(nginx) -> None:
    origin, stack = nginx
    browser = stack.browser()
    page = f"{origin}/reports/2026?tab=a&x=1"

    refused = browser.get(page)
    assert refused.status_code == 302
    assert refused.headers["location"].startswith(f"{stack.url}/login?")
    assert query_of(refused.headers["location"])["return_to"] == [page]

    provider = _follow_to_the_gateway_login(browser, refused.headers["location"], stack)
    back = browser.consent(provider)
    done = browser.get(back.headers["location"])
    assert done.status_code == 302 and done.headers["location"] == page

    shown = browser.get(page)
    assert shown.status_code == 200
    sub = browser.get(f"{stack.url}/verify").json()["sub"]
    assert f"<b id='user'>{sub}</b>" in shown.text

    home = browser.get(f"{stack.url}/")
    form = FormParser()
    form.feed(home.text)
    assert form.action and form.action.endswith("/logout"), home.text
    assert browser.post(f"{stack.url}/logout", data=form.inputs).status_code == 303

    again = browser.get(page)
    assert again.status_code == 302
    assert again.headers["location"].startswith(f"{stack.url}/login?")


def test_nginx_never_lets_a_forged_user_header_through(nginx) -> None:
    origin, stack = nginx
    browser = stack.browser()
    answer = browser.get(f"{origin}/", headers={"X-Auth-Request-User": "google:admin"})
    assert answer.status_code == 302
    browser.login()
    shown = browser.get(f"{origin}/", headers={"X-Auth-Request-User": "google:admin"})
    assert shown.status_code == 200
    assert "google:admin" not in shown.text
