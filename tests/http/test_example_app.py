"""examples/tornado_app.py next to `oauth-gateway serve --dev`, both as a person starts them,
with no setting beyond the ports (the machine is shared: no fixed 8080 and 8000): a browser
opening the app is sent to the gateway, signs in through the Google stand-in's chooser and
lands back on the app, signed in; an API client gets a 401."""

from __future__ import annotations

import html
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import REPO_ROOT, FormParser
from process_support import clean_environ
from store_backends import free_port

from gateway.dev.mode import DEV_HOST, DEV_PORT

EXAMPLE = REPO_ROOT / "examples" / "tornado_app.py"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class Process:
    """A child process whose output is read by a thread (the pipe never fills)."""

    def __init__(self, args: list[str], env: dict[str, str], *, stream: str) -> None:
        self.process = subprocess.Popen(
            args, env=env, cwd=REPO_ROOT, text=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else subprocess.STDOUT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        pipe = self.process.stdout if stream == "stdout" else self.process.stderr
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe) -> None:
        for line in pipe:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError(f"{pattern.pattern!r} not printed:\n" + "".join(self.seen))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(STOP_TIMEOUT)


@pytest.fixture
def gateway_and_example(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`oauth-gateway serve --dev` and `python examples/tornado_app.py`: their base URLs."""
    env = clean_environ()
    gateway = Process([sys.executable, "-m", "gateway", "serve", "--dev"], {
        **env, "GATEWAY_LISTEN__PORT": "0", "GATEWAY_DEV__PROVIDER_PORT": "0",
        "GATEWAY_ADMIN__PORT": "0", "GATEWAY_DEV__STATE_DIR": str(tmp_path / "state")},
        stream="stderr")
    processes = [gateway]
    try:
        issuer = gateway.wait_for(re.compile(r"open (http://\S+)/ in your browser")).group(1)
        # The log says what a person needs to know: loopback apps need no setting.
        assert "return to any app on http://localhost" in "".join(gateway.seen)
        # The example's own two settings, for the ports this test could get.
        example = Process([sys.executable, str(EXAMPLE)],
                          {**env, "GATEWAY_ISSUER": issuer, "PORT": str(free_port())},
                          stream="stdout")
        processes.append(example)
        app = example.wait_for(re.compile(r"open (http://\S+)/ ")).group(1)
        yield issuer, app
    finally:
        codes = [process.stop() for process in processes]
    assert codes[0] == 0, "".join(gateway.seen)


def test_example_defaults_are_where_serve_dev_listens() -> None:
    source = EXAMPLE.read_text(encoding="utf-8")
    assert f'DEFAULT_ISSUER = "http://{DEV_HOST}:{DEV_PORT}"' in source
    assert "DEFAULT_PORT = 8000" in source


@pytest.mark.slow
def test_example_app_signs_in_through_serve_dev_with_no_setting(
        gateway_and_example: tuple[str, str]) -> None:
    issuer, app = gateway_and_example
    assert urlsplit(issuer).hostname == urlsplit(app).hostname == "localhost"
    with httpx.Client(timeout=10, follow_redirects=True) as browser:  # keeps cookies per host
        chooser = browser.get(f"{app}/", headers={"Accept": "text/html"})
        # The app sent us to the gateway, which accepts the app as a place to return to.
        assert chooser.status_code == 200, chooser.text
        assert str(chooser.url).startswith(f"{issuer}/login?")
        link = re.search(r'href="(/login/google\?[^"]*)"', chooser.text)
        assert link, chooser.text

        consent = browser.get(f"{issuer}{html.unescape(link.group(1))}")
        assert consent.status_code == 200, consent.text
        form = FormParser()
        form.feed(consent.text)
        assert ("user", "ada") in form.buttons
        assert form.action is not None and form.method == "post"
        signed_in = browser.post(str(consent.url.join(form.action)),
                                 data={**form.inputs, "user": "ada"})

        assert str(signed_in.url) == f"{app}/"
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["hello"] == "Ada Lovelace"
        assert signed_in.json()["sub"].startswith("google:")
        # The browser's access cookie came from the gateway's host, on another port.
        assert browser.get(f"{app}/").json()["hello"] == "Ada Lovelace"

    api = httpx.get(f"{app}/", headers={"Authorization": "Bearer not-a-token"})
    assert api.status_code == 401
    assert api.headers["www-authenticate"] == f'Bearer realm="{issuer}", error="invalid_token"'
    anonymous_api = httpx.get(f"{app}/", headers={"Accept": "application/json"})
    assert anonymous_api.status_code == 401
    assert anonymous_api.headers["www-authenticate"] == f'Bearer realm="{issuer}"'
