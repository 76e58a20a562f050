"""The README's first command: `oauth-gateway serve --dev` starts a gateway a person can use."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import FormParser


@pytest.mark.slow
def test_serve_dev_signs_in_with_each_provider_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # Port 0: the gateway and each stand-in take a free port, and the log says which.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_LISTEN__PORT": "0",
                "GATEWAY_DEV__PROVIDER_PORT": "0",
                "GATEWAY_ADMIN__PORT": "0",
                "GATEWAY_DEV__STATE_DIR": str(tmp_path / "state")})
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--dev"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        output = _wait_for_line(process, re.compile(r"open (http://\S+)/ in your browser"))
        base = output.group(1)
        assert re.fullmatch(r"http://localhost:\d+", base)
        chooser = httpx.get(f"{base}/login")
        for provider, brand in (("google", "Google"), ("facebook", "Facebook"),
                                ("twitter", "X"), ("github", "GitHub"),
                                ("microsoft", "Microsoft"), ("apple", "Apple"),
                                ("dev", "Dev SSO")):
            assert f'href="/login/{provider}' in chooser.text
            client = httpx.Client(timeout=10)
            start = client.get(f"{base}/login/{provider}", follow_redirects=False)
            assert start.status_code == 302
            consent = client.get(start.headers["location"])
            form = FormParser()
            form.feed(consent.text)
            back = client.post(httpx.URL(start.headers["location"]).join(form.action or ""),
                               data={**form.inputs, "user": "ada"}, follow_redirects=False)
            if provider == "apple":  # Apple posts back (form_post); the gateway relays it
                for _ in range(2):
                    form = FormParser()
                    form.feed(back.text)
                    back = client.post(httpx.URL(str(back.url)).join(form.action or ""),
                                       data=form.inputs, follow_redirects=False)
                done = back
            else:
                done = client.get(back.headers["location"], follow_redirects=False)
            assert done.status_code == 302, (provider, done.text)
            assert done.headers["location"] == f"{base}/"
            home = client.get(f"{base}/")
            assert "Signed in as Ada Lovelace" in home.text
            assert f"via {brand}" in home.text  # the brand a person knows
        keys = list((tmp_path / "state" / "keys").glob("key-*.pem"))
        assert len(keys) == 1 and keys[0].stat().st_mode & 0o077 == 0
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    assert code == 0


def _wait_for_line(process: subprocess.Popen, pattern: re.Pattern, timeout: float = 30):
    """Read the process's stderr in a thread (select() on a buffered pipe misses lines that
    are already in Python's buffer) until a line matches."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        match = pattern.search(line)
        if match:
            return match
    raise AssertionError("gateway did not start:\n" + "".join(seen))
