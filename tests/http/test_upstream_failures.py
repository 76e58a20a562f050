"""The ways only Google fails (its token answers, the ID token's claims and signature) end in a
clear error page with a retry link, never a 500. Timeouts, hang-ups, 5xx and the like, the same
for every provider, are in test_provider_contract.py."""

from __future__ import annotations

import pytest
from provider_support import assert_clear_error, callback_after_consent

from gateway.dev.standins.google import Fault


@pytest.mark.parametrize(("fault", "status", "words"), [
    (Fault(status=400, body='{"error": "invalid_grant", "error_description": "Bad Request"}'),
     502, "refused the request"),
    (Fault(status=200, body="{not json"), 502, "could not read"),
    (Fault(status=200, body="[1, 2]"), 502, "could not read"),
    (Fault(status=200, body='{"access_token": "ya29.x"}'), 502, "could not be verified"),
])
def test_token_endpoint_failures_end_in_a_clear_page(make_stack, fault: Fault, status: int,
                                                     words: str) -> None:
    stack = make_stack()
    stack.google.faults["token"] = fault
    assert_clear_error(callback_after_consent(stack), "google", status, words)


def test_userinfo_failure_is_a_clear_page(make_stack) -> None:
    stack = make_stack(providers={"google": {"fetch_userinfo": "always"}})
    stack.google.faults["userinfo"] = Fault(status=401, body='{"error": "invalid_token"}')
    assert_clear_error(callback_after_consent(stack), "google", 502, "refused the request")


@pytest.mark.parametrize("overrides", [
    {"aud": "someone-else.apps.googleusercontent.com"},
    {"iss": "https://evil.example"},
    {"nonce": "not-the-nonce"},
    {"nonce": None},
    {"exp": 1_000_000_000},
    {"azp": "someone-else.apps.googleusercontent.com"},
    {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"},
])
def test_C3_id_token_claims_are_checked(make_stack, overrides: dict) -> None:
    stack = make_stack()
    stack.google.id_token_overrides.update(overrides)
    assert_clear_error(callback_after_consent(stack), "google", 502, "could not be verified")


def test_C3_id_token_signature_is_checked(make_stack) -> None:
    stack = make_stack()
    stack.google.sign_id_token_with_foreign_key = True
    assert_clear_error(callback_after_consent(stack), "google", 502, "could not be verified")
