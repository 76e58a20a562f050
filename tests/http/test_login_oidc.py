"""A generic OpenID Connect provider (`[providers.oidc.<name>]`) over real HTTP against its
stand-in (gateway/dev/standins/oidc.py): what its own protocol adds to the provider contract
(tests/http/test_provider_contract.py runs the shared behaviours): discovery held to the
configured issuer, the traps of SECURITY C9, the algorithms its discovery lists, the client
authentication it asks for, userinfo only when needed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Stack, query_of
from provider_support import assert_clear_error, callback_after_consent

from gateway.dev.standins.oidc import DEV_NAME, DEV_USERS, OidcStandIn

NAME = DEV_NAME


def _standin(stack: Stack) -> OidcStandIn:
    standin = stack.standin(NAME)
    assert isinstance(standin, OidcStandIn)
    return standin


def _account(key: str) -> Any:
    return next(a for a in DEV_USERS if a.key == key)


def _no_access_cookie(answer: httpx.Response) -> bool:
    return not any(n.endswith("gw_access") for n in answer.cookies)


def _claims(stack: Stack, user: str) -> dict[str, Any]:
    browser = stack.browser()
    done = browser.login(user=user, provider=NAME)
    assert done.status_code == 302, done.text
    claims: dict[str, Any] = browser.get(f"{stack.url}/verify").json()
    return claims


# ---------------------------------------------------------------------------------------------
# The authorization request


def test_the_authorization_request_carries_state_pkce_s256_and_a_nonce(stack: Stack) -> None:
    start = stack.browser().start_login(provider=NAME)
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(f"{_standin(stack).base_url}/authorize?")
    query = query_of(location)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [stack.dev.settings.providers.oidc[NAME].client_id]
    assert query["redirect_uri"] == [f"{stack.url}/callback/{NAME}"]
    assert query["scope"] == ["openid email profile"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32


def test_the_discovery_document_is_fetched_once_and_cached(stack: Stack) -> None:
    for user in ("ada", "grace", "ada"):
        _claims(stack, user)
    assert _standin(stack).calls["discovery"] == 1
    assert _standin(stack).calls["jwks"] == 1


def test_the_discovery_document_is_fetched_again_once_stale(make_stack: Callable[..., Stack]
                                                            ) -> None:
    stack = make_stack(upstream={"jwks_cache_seconds": 0, "jwks_refresh_cooldown": 0})
    _claims(stack, "ada")
    _standin(stack).endpoint_overrides["token_endpoint"] = "http://127.0.0.1:9/token"
    # The next login reads the new document: its code exchange goes where it now says.
    callback = callback_after_consent(stack, NAME)
    assert_clear_error(callback, NAME, 502, "could not be reached")
    assert _standin(stack).calls["discovery"] >= 3


# ---------------------------------------------------------------------------------------------
# SECURITY C9: the traps


def test_C9_a_discovery_document_naming_another_issuer_configures_nothing(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    _standin(stack).discovery_issuer = "http://127.0.0.1:9/another-issuer"
    caplog.set_level(logging.WARNING)
    start = stack.browser().start_login(provider=NAME)
    assert_clear_error(start, NAME, 503, "unavailable")
    assert _standin(stack).calls["authorize"] == 0
    assert "names another issuer" in caplog.text


def test_C9_an_issuer_that_differs_only_by_a_trailing_slash_is_another_issuer(
        stack: Stack) -> None:
    _standin(stack).discovery_issuer = f"{_standin(stack).issuer}/"
    assert stack.browser().start_login(provider=NAME).status_code == 503


def test_C9_a_userinfo_naming_another_sub_signs_no_one_in(stack: Stack) -> None:
    mallory = _account("mallory")
    assert mallory.trap == "userinfo_other_sub"
    answer = callback_after_consent(stack, NAME, user="mallory")
    assert_clear_error(answer, NAME, 502, "could not be verified")
    assert _standin(stack).calls["userinfo"] == 1  # asked, and its answer refused
    # The honest userinfo of an account whose id_token lacks the profile signs in.
    _standin(stack).claims_in_id_token = False
    claims = _claims(stack, "ada")
    assert claims["sub"] == f"{NAME}:{_account('ada').sub}"
    assert claims["email"] == "ada@example.com" and claims["name"] == "Ada Lovelace"
    assert _standin(stack).calls["userinfo"] == 2


def test_C9_an_id_token_for_several_audiences_without_azp_is_refused(stack: Stack) -> None:
    assert _account("oscar").trap == "audiences_without_azp"
    answer = callback_after_consent(stack, NAME, user="oscar")
    assert_clear_error(answer, NAME, 502, "could not be verified")
    assert _no_access_cookie(answer)


def test_C9_an_id_token_for_several_audiences_with_our_azp_passes(stack: Stack) -> None:
    client_id = stack.dev.settings.providers.oidc[NAME].client_id
    _standin(stack).id_token_overrides.update(aud=[client_id, "another-app"], azp=client_id)
    assert _claims(stack, "ada")["sub"] == f"{NAME}:{_account('ada').sub}"


@pytest.mark.parametrize(("overrides", "why"), [
    ({"iss": "http://127.0.0.1:9"}, "another issuer"),
    ({"aud": "another-app", "azp": "another-app"}, "another audience"),
    ({"azp": "another-app"}, "azp of another client"),
    ({"nonce": "not-the-one-we-sent"}, "another login's nonce"),
    ({"nonce": None}, "no nonce"),
    ({"exp": 1_000_000_000}, "expired"),
    ({"iat": 4_000_000_000}, "issued in the future"),
    ({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "at_hash of another access token"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_C9_id_token_claims_are_checked(stack: Stack, overrides: dict[str, Any],
                                        why: str) -> None:
    _standin(stack).id_token_overrides.update(overrides)
    answer = callback_after_consent(stack, NAME)
    assert_clear_error(answer, NAME, 502, "could not be verified")


def test_C9_an_id_token_signed_by_another_key_is_refused(stack: Stack) -> None:
    _standin(stack).sign_id_token_with_foreign_key = True
    assert_clear_error(callback_after_consent(stack, NAME), NAME, 502, "")


@pytest.mark.parametrize("forged", ["HS256", "none"])
def test_C9_hmac_and_none_are_refused_even_when_discovery_lists_them(stack: Stack,
                                                                     forged: str) -> None:
    standin = _standin(stack)
    standin.advertised_algs = (forged, "RS256")
    standin.forged_alg = forged  # HS256: keyed by our client secret, which the provider knows
    answer = callback_after_consent(stack, NAME)
    assert_clear_error(answer, NAME, 502, "could not be verified")


def test_C9_only_the_algorithms_discovery_lists_are_accepted(make_stack: Callable[..., Stack]
                                                             ) -> None:
    stack = make_stack()
    standin = _standin(stack)
    standin.signing_alg, standin.advertised_algs = "ES256", ("RS256",)
    assert_clear_error(callback_after_consent(stack, NAME), NAME, 502, "could not be verified")
    standin.advertised_algs = ("ES256",)
    fresh = make_stack()  # a gateway that reads the new discovery document
    _standin(fresh).signing_alg = "ES256"
    assert _claims(fresh, "ada")["email"] == "ada@example.com"


# ---------------------------------------------------------------------------------------------
# The code exchange, userinfo, the email


def test_the_code_exchange_uses_client_secret_basic_when_offered(stack: Stack) -> None:
    _claims(stack, "ada")
    standin = _standin(stack)
    assert standin.token_authorizations[-1] is not None
    assert standin.token_authorizations[-1].startswith("Basic ")
    sent = standin.token_requests[-1]
    assert "client_secret" not in sent and "client_id" not in sent
    assert sent["grant_type"] == "authorization_code" and len(sent["code_verifier"]) >= 43


def test_the_code_exchange_uses_client_secret_post_when_it_is_the_only_one(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    _standin(stack).token_endpoint_auth_methods = ("client_secret_post",)
    _claims(stack, "ada")
    standin = _standin(stack)
    assert standin.token_authorizations[-1] is None
    assert standin.token_requests[-1]["client_secret"] == standin.client_secret


def test_a_provider_taking_no_client_secret_method_is_unavailable(stack: Stack) -> None:
    _standin(stack).token_endpoint_auth_methods = ("private_key_jwt",)
    assert_clear_error(stack.browser().start_login(provider=NAME), NAME, 503, "unavailable")


def test_userinfo_is_asked_only_when_the_id_token_lacks_email_or_name(stack: Stack) -> None:
    _claims(stack, "ada")
    assert _standin(stack).calls["userinfo"] == 0


def test_C5_email_verified_as_the_string_true_counts_and_false_does_not(stack: Stack) -> None:
    assert _account("grace").email_verified == "true"
    grace = _claims(stack, "grace")
    assert grace["email"] == "grace@example.com" and grace["email_verified"] is True
    assert _account("alan").email_verified == "false"
    alan = _claims(stack, "alan")
    assert "email" not in alan and "email_verified" not in alan


def test_a_discovery_document_that_is_not_json_is_a_503_page(stack: Stack) -> None:
    from gateway.dev.standins.common import Fault

    _standin(stack).faults["discovery"] = Fault(status=200, body="<html>login</html>",
                                                content_type="text/html")
    answer = stack.browser().start_login(provider=NAME)
    assert_clear_error(answer, NAME, 503, "unavailable")
    api = stack.browser().get(f"{stack.url}/login/{NAME}",
                              headers={"Accept": "application/json"})
    assert api.status_code == 503
    assert api.json()["error"] == "temporarily_unavailable"
