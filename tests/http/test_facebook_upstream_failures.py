"""Every way Facebook can fail (code exchange or /me) ends in a clear error page with a retry
link, never a 500, and the log names the provider and status but never a token (SECURITY H6,
H9, L1, C2). What every provider shares (timeouts, hang-ups, 5xx) is in
test_provider_contract.py."""

from __future__ import annotations

import json
import logging

import pytest
from provider_support import assert_clear_error, callback_after_consent

from gateway.dev.standins.common import Fault

OAUTH_EXCEPTION = json.dumps({"error": {
    "message": "Error validating access token: Session has expired on Tuesday <b>canary</b>",
    "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "AbCdEfGh123"}})


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith(("gateway", "tornado")))


FAILURES = [
    (Fault(status=500, body='{"error": {"message": "An unknown error occurred", '
                            '"type": "OAuthException", "code": 1}}'), 502, "refused the request"),
    (Fault(status=400, body=OAUTH_EXCEPTION), 502, "refused the request"),
    (Fault(status=200, body="{not json"), 502, "could not read"),
    (Fault(status=200, body='["id"]'), 502, "could not read"),
]


@pytest.mark.parametrize(("fault", "status", "words"), [
    *FAILURES,
    (Fault(status=200, body='{"token_type": "bearer", "expires_in": 60}'), 502,
     "could not be verified"),
    (Fault(status=200, body='{"access_token": "EAAx", "token_type": "mac"}'), 502,
     "could not be verified"),
])
def test_token_endpoint_failures_end_in_a_clear_page(make_stack, fault: Fault, status: int,
                                                     words: str) -> None:
    stack = make_stack()
    stack.standin("facebook").faults["token"] = fault
    assert_clear_error(callback_after_consent(stack, "facebook"), "facebook", status, words)


@pytest.mark.parametrize(("fault", "status", "words"), [
    *FAILURES,
    (Fault(status=200, body='{"name": "Ada Lovelace"}'), 502, "could not be verified"),
    (Fault(status=200, body='{"id": "ada@example.com", "name": "Ada"}'), 502,
     "could not be verified"),
    (Fault(status=200, body='{"id": 1234567890, "name": "Ada"}'), 502, "could not be verified"),
])
def test_me_failures_end_in_a_clear_page(make_stack, fault: Fault, status: int,
                                         words: str) -> None:
    stack = make_stack()
    stack.standin("facebook").faults["me"] = fault
    assert_clear_error(callback_after_consent(stack, "facebook"), "facebook", status, words)


def test_L1_an_oauth_exception_is_logged_by_provider_status_and_code_never_token_or_message(
        make_stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stack = make_stack()
    standin = stack.standin("facebook")
    standin.faults["me"] = Fault(status=400, body=OAUTH_EXCEPTION)
    assert callback_after_consent(stack, "facebook").status_code == 502
    logged = _server_log(caplog)
    assert "upstream failure provider=facebook status=400 me: HTTP 400 error=OAuthException " \
           "code=190" in logged
    (upstream_token,) = standin._access_tokens
    for secret in (upstream_token, upstream_token[3:20], standin.client_secret, "canary",
                   "Session has expired", "AbCdEfGh123"):
        assert secret not in logged


def test_L1_a_failed_code_exchange_logs_no_code_or_secret(
        make_stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stack = make_stack()
    standin = stack.standin("facebook")
    standin.faults["token"] = Fault(status=400, body=OAUTH_EXCEPTION)
    assert callback_after_consent(stack, "facebook").status_code == 502
    logged = _server_log(caplog)
    assert "provider=facebook status=400 token: HTTP 400 error=OAuthException code=190" in logged
    sent = standin.token_requests[-1]
    for secret in (sent["code"], sent["client_secret"], sent["code_verifier"]):
        assert secret not in logged
