"""Structured logs: one JSON object a line, the request id on every line of a request and in its
`X-Request-ID` answer, sent upstream too; and no secret in any line (SECURITY L1, L3)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from config_support import assert_refused, write_config
from conftest import Stack
from log_canaries import LogScan
from oidc_support import (
    CLIENTS,
    CONFIDENTIAL_SECRET,
    INTROSPECTOR,
    INTROSPECTOR_AUTH,
    INTROSPECTOR_SECRET,
    bearer,
    oidc_stack,
    refresh,
    tokens_for,
)

from gateway.config import Settings, load_settings
from gateway.handlers.base import REFUSAL_LINES_PER_SECOND, edge_of
from gateway.logs import (
    JsonFormatter,
    LogBudget,
    RequestIdFilter,
    TextFormatter,
    configure_logging,
)

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def events(scan: LogScan, stack: Stack | None = None) -> list[dict[str, Any]]:
    """The lines so far as JSON; with `stack`, once its server thread has written them (a
    request's access line follows its answer on the wire)."""
    if stack is not None:
        stack.loop.call(lambda: None)
    return [json.loads(line) for line in scan.lines]


def test_log_lines_are_json_with_the_request_id_of_the_answer(stack: Stack,
                                                              logs: LogScan) -> None:
    answer = httpx.get(f"{stack.url}/.well-known/jwks.json")
    request_id = answer.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    access = [e for e in events(logs, stack) if e.get("event") == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == request_id
    assert (line["logger"], line["level"], line["method"], line["route"], line["status"]) == (
        "gateway.access", "INFO", "GET", "/.well-known/jwks.json", 200)
    assert isinstance(line["latency_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert all("\n" not in raw for raw in logs.lines)


def test_a_sane_incoming_request_id_is_kept(stack: Stack, logs: LogScan) -> None:
    answer = httpx.get(f"{stack.url}/verify", headers={"X-Request-ID": "lb-7f3a.9_Z"})
    assert answer.status_code == 401
    assert answer.headers["x-request-id"] == "lb-7f3a.9_Z"
    lines = events(logs, stack)
    assert {e["event"] for e in lines} >= {"request", "refused"}
    assert all(e.get("request_id") == "lb-7f3a.9_Z" for e in lines)


@pytest.mark.parametrize("incoming", ["a b", "x" * 129, "<script>", "id;drop", "é"])
def test_an_insane_incoming_request_id_is_replaced(stack: Stack, logs: LogScan,
                                                  incoming: str) -> None:
    answer = httpx.get(f"{stack.url}/.well-known/jwks.json",
                       headers=[(b"X-Request-ID", incoming.encode())])
    request_id = answer.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert [e["request_id"] for e in events(logs, stack)] == [request_id]


def test_check_requests_are_logged_at_debug_and_refusals_keep_their_line(
        make_stack: Callable[..., Stack], logs: LogScan) -> None:
    """/verify, /auth and the probes come on every request or every few seconds: their access
    lines are at DEBUG (counted in /metrics) unless `logging.check_requests`; a refusal still
    has its "refused" line with the reason."""
    stack = make_stack()
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    assert httpx.get(f"{stack.url}/verify", headers=bearer(token)).status_code == 200
    assert httpx.get(f"{stack.url}/healthz").status_code == 200
    assert httpx.get(f"{stack.url}/verify", headers=bearer(token + "x")).status_code == 401
    access = {(e["route"], e["status"]): e["level"] for e in events(logs, stack)
              if e.get("event") == "request"}
    assert access[("/verify", 200)] == "DEBUG"
    assert access[("/healthz", 200)] == "DEBUG"
    assert access[("/verify", 401)] == "DEBUG"
    assert [e["reason"] for e in events(logs, stack) if e.get("event") == "refused"] == [
        "malformed signature"]
    assert access[("/callback/google", 302)] == "INFO"  # not a check: logged as before

    loud = make_stack(logging={"check_requests": True})
    browser = loud.browser()
    browser.login()
    token = browser.access_token()
    assert httpx.get(f"{loud.url}/verify", headers=bearer(token)).status_code == 200
    levels = [e["level"] for e in events(logs, loud)
              if e.get("event") == "request" and e["route"] == "/verify"]
    assert levels[-1] == "INFO"


def test_error_answers_carry_the_request_id_too(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/no/such/page", headers={"Accept": "application/json"})
    assert answer.status_code == 404
    assert GENERATED_ID.fullmatch(answer.headers["x-request-id"])


def test_L3_login_events_carry_provider_outcome_and_request_id(stack: Stack,
                                                               logs: LogScan) -> None:
    browser = stack.browser()
    done = browser.login()
    denied_start = browser.start_login()
    back = browser.consent(denied_start.headers["location"], decision="deny")
    denied = browser.get(back.headers["location"])
    logins = [e for e in events(logs, stack) if e.get("event") == "login"]
    assert [(e["provider"], e["outcome"], e["level"]) for e in logins] == [
        ("google", "success", "INFO"), ("google", "denied", "WARNING")]
    assert logins[0]["request_id"] == done.headers["x-request-id"]
    assert logins[1]["request_id"] == denied.headers["x-request-id"]


def test_L3_token_refusals_are_logged_with_their_reason(stack: Stack, logs: LogScan) -> None:
    answer = httpx.get(f"{stack.url}/verify", headers=bearer("a.b.c"))
    assert answer.status_code == 401
    [refused] = [e for e in events(logs, stack) if e.get("event") == "refused"]
    assert refused["request_id"] == answer.headers["x-request-id"]
    assert refused["status"] == 401 and refused["reason"].startswith("malformed")


def test_the_request_id_is_sent_upstream(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = stack.ctx.providers["google"].upstream
    sent: list[str | None] = []
    fetch = upstream.client.fetch

    def spy(request: Any, **kwargs: Any) -> Any:
        sent.append(request.headers.get("X-Request-ID"))
        return fetch(request, **kwargs)

    monkeypatch.setattr(upstream.client, "fetch", spy)
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    done = browser.get(back.headers["location"], headers={"X-Request-ID": "trace-42"})
    assert done.status_code == 302
    assert sent and set(sent) == {"trace-42"}  # the token call (and JWKS, userinfo if any)


def test_L1_no_code_state_token_cookie_or_secret_in_any_log_line(
        make_stack: Callable[..., Stack], logs: LogScan) -> None:
    stack = oidc_stack(make_stack, clients=[*CLIENTS, INTROSPECTOR])
    canaries: dict[str, str] = {
        "cookie secret": stack.dev.settings.cookies.secret.reveal(),
        "confidential client secret": CONFIDENTIAL_SECRET,
        "introspector client secret": INTROSPECTOR_SECRET,
    }
    google = stack.dev.settings.providers.google
    assert google is not None
    canaries["google client secret"] = google.client_secret.reveal()
    # A Google login, through the consent page: its code and state, then our cookies.
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    callback = parse_qs(urlsplit(back.headers["location"]).query)
    canaries["upstream code"] = callback["code"][0]
    canaries["state"] = callback["state"][0]
    assert browser.get(back.headers["location"]).status_code == 302
    for name, value in browser.cookies.items():
        canaries[f"cookie {name}"] = value
    access_token = browser.access_token()
    # A failed login, /verify with a valid and an invalid token, introspection.
    failed = browser.start_login()
    denied = browser.consent(failed.headers["location"], decision="deny")
    assert browser.get(denied.headers["location"]).status_code >= 400
    assert httpx.get(f"{stack.url}/verify", headers=bearer(access_token)).status_code == 200
    forged = access_token[:-8] + "AAAAAAAA"
    canaries["forged token"] = forged
    assert httpx.get(f"{stack.url}/verify", headers=bearer(forged)).status_code == 401
    assert httpx.post(f"{stack.url}/introspect", data={"token": forged},
                      auth=INTROSPECTOR_AUTH).json() == {"active": False}
    # An OpenID Connect code flow with a refresh, and a refresh token reused.
    tokens = tokens_for(stack, scope="openid offline_access")
    for name in ("access_token", "id_token", "refresh_token"):
        canaries[name] = tokens[name]
    renewed = refresh(stack, tokens["refresh_token"])
    assert renewed.status_code == 200
    canaries["rotated refresh token"] = renewed.json()["refresh_token"]
    # The upstream access tokens the Google stand-in issued (SECURITY C2).
    for i, token in enumerate(stack.google._access_tokens):
        canaries[f"upstream access token {i}"] = token
    stack.loop.call(lambda: None)  # the last request's lines are written
    lines = "\n".join(logs.lines)
    assert '"event": "login"' in lines and '"event": "refused"' in lines  # it did log
    leaked = [name for name, value in canaries.items() if value and value in lines]
    assert not leaked, leaked


def test_the_log_scan_catches_a_leak() -> None:
    """The whole-run scan of conftest.py is only as good as this: a canary is found."""
    scan = LogScan()
    scan.install()
    try:
        mark = scan.mark()
        scan.register("canary-0123456789abcdef", "test token")
        logging.getLogger("gateway.test").debug("oops: %s", "canary-0123456789abcdef")
        leaks = scan.leaks_since(mark)
    finally:
        scan.uninstall()
    assert len(leaks) == 1 and "test token" in leaks[0]


def test_log_format_defaults_to_json_outside_dev_mode_and_text_in_it() -> None:
    assert Settings().log_format == "json"
    assert Settings(dev_mode=True).log_format == "text"


def test_configured_logging_writes_json_or_text_with_the_request_id() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for format_name in ("json", "text"):
            stream = io.StringIO()
            configure_logging(format_name, "info", stream=stream)
            logging.getLogger("gateway.test").info("hello %s", "world",
                                                   extra={"request_id": "rid-1"})
            logging.getLogger("gateway.test").debug("not written")
            out = stream.getvalue().strip().splitlines()
            assert len(out) == 1
            if format_name == "json":
                line = json.loads(out[0])
                assert (line["message"], line["request_id"], line["level"]) == (
                    "hello world", "rid-1", "INFO")
            else:
                assert "[rid-1]" in out[0] and "hello world" in out[0]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_formatters_survive_records_without_a_request() -> None:
    record = logging.LogRecord("gateway.x", logging.ERROR, __file__, 1, "boom", None, None)
    RequestIdFilter().filter(record)
    assert "request_id" not in json.loads(JsonFormatter().format(record))
    assert "[-]" in TextFormatter().format(record)


@pytest.mark.parametrize(("changes", "key"), [
    ({"logging.format": "xml"}, "logging.format"),
    ({"logging.level": "LOUD"}, "logging.level"),
    ({"admin.port": 70000}, "admin.port"),
])
def test_bad_logging_and_admin_settings_are_refused_naming_the_key(
        tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    assert_refused(tmp_path, changes, key)


def test_logging_and_admin_settings_load_from_the_file(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, {
        "logging.format": "text", "logging.level": "debug", "admin.port": 0,
        "admin.address": "0.0.0.0", "admin.expose_on_public": True}), {})
    assert settings.log_format == "text" and settings.logging.level == "debug"
    assert (settings.admin.port, settings.admin.address, settings.admin.expose_on_public) == (
        0, "0.0.0.0", True)


def test_L2_token_refusal_lines_are_bounded_and_say_how_many_were_not_written() -> None:
    now = [100.0]
    budget = LogBudget(3, clock=lambda: now[0])
    assert [budget.allow() for _ in range(5)] == [True, True, True, False, False]
    now[0] = 101.2
    assert budget.allow()
    assert budget.take_not_logged() == 2
    assert budget.take_not_logged() is None


def test_L2_a_flood_of_forged_tokens_does_not_flood_the_log(stack: Stack, logs: LogScan
                                                            ) -> None:
    browser = stack.browser()
    browser.login()
    token = browser.access_token()
    assert httpx.get(f"{stack.url}/verify", headers=bearer(token)).status_code == 200
    head, payload, _ = token.split(".")
    # The whole flood within one second of the budget's clock, however slow this machine is.
    edge_of(stack.application).refusal_log = LogBudget(
        REFUSAL_LINES_PER_SECOND, clock=lambda: 7.0)
    with httpx.Client() as client:
        for n in range(120):
            forged = f"{head}.{payload}.{'A' * 340}{n:02d}"[:len(head) + len(payload) + 344]
            assert client.get(f"{stack.url}/verify", headers=bearer(forged)).status_code == 401
    lines = events(logs, stack)
    refused = [e for e in lines if e.get("event") == "refused"]
    answered = [e for e in lines if e.get("event") == "request" and e["route"] == "/verify"]
    assert len([e for e in answered if e["status"] == 401]) == 120  # each keeps its line
    assert len(refused) == REFUSAL_LINES_PER_SECOND == 50
    assert {e["reason"] for e in refused} <= {"bad signature", "malformed signature"}
