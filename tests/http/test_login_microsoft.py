"""Sign in with Microsoft over real HTTP against its stand-in (gateway/dev/standins/microsoft.py):
what Microsoft's rules add to the provider contract (SECURITY C7): the tenant-templated issuer,
the tenant the configuration allows, `tid` and `oid` as the subject, and `xms_edov` as the only
proof of an email ("nOAuth")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Stack, query_of
from provider_support import assert_clear_error, callback_after_consent

from gateway.dev.standins.microsoft import (
    CONSUMERS,
    CONTOSO,
    DEV_USERS,
    FABRIKAM,
    MicrosoftStandIn,
)

NAME = "microsoft"


def _standin(stack: Stack) -> MicrosoftStandIn:
    standin = stack.standin(NAME)
    assert isinstance(standin, MicrosoftStandIn)
    return standin


def _account(key: str) -> Any:
    return next(a for a in DEV_USERS if a.key == key)


def _tenant_stack(make_stack: Callable[..., Stack], tenant: str, **overrides: Any) -> Stack:
    stack = make_stack(providers={NAME: {"tenant": tenant}}, **overrides)
    _standin(stack).tenant = tenant
    return stack


def _login(stack: Stack, user: str) -> Any:
    browser = stack.browser()
    start = browser.start_login(provider=NAME)
    back = browser.consent(start.headers["location"], user=user)
    done = browser.get(back.headers["location"])
    return done, browser


def _claims(stack: Stack, user: str) -> dict[str, Any]:
    done, browser = _login(stack, user)
    assert done.status_code == 302, done.text
    claims: dict[str, Any] = browser.get(f"{stack.url}/verify").json()
    return claims


def test_the_authorization_request_goes_to_the_tenants_endpoint_with_pkce_and_nonce(
        stack: Stack) -> None:
    start = stack.browser().start_login(provider=NAME)
    location = start.headers["location"]
    assert location.startswith(f"{_standin(stack).base_url}/common/oauth2/v2.0/authorize?")
    query = query_of(location)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["nonce"][0]) >= 32 and query["response_mode"] == ["query"]
    assert query["scope"] == ["openid email profile"]


def test_C7_microsoft_the_subject_is_the_tenant_and_object_id(stack: Stack) -> None:
    ada = _account("ada")
    claims = _claims(stack, "ada")
    # Not Microsoft's per-app `sub`, nor the email, nor preferred_username.
    assert claims["sub"] == f"microsoft:{CONTOSO}:{ada.oid}"
    assert claims["email"] == "ada@example.com" and claims["email_verified"] is True


def test_C7_microsoft_an_email_without_xms_edov_is_not_verified_noauth(
        make_stack: Callable[..., Stack]) -> None:
    mallory = _account("mallory")
    assert mallory.email == "ada@example.com" and mallory.xms_edov is None
    stack = make_stack()
    claims = _claims(stack, "mallory")
    assert "email" not in claims and "email_verified" not in claims
    assert claims["sub"] == f"microsoft:{FABRIKAM}:{mallory.oid}"
    # The access policy that admits Ada by her email does not admit Mallory with it.
    guarded = make_stack(access={"emails": ["ada@example.com"]})
    refused, _ = _login(guarded, "mallory")
    assert refused.status_code == 403
    assert _claims(guarded, "ada")["email"] == "ada@example.com"


def test_C7_microsoft_xms_edov_false_is_not_verified(stack: Stack) -> None:
    assert _account("alan").xms_edov is False
    assert "email" not in _claims(stack, "alan")


def test_C7_microsoft_an_issuer_other_than_the_tokens_own_tenants_is_refused(
        stack: Stack) -> None:
    base = _standin(stack).base_url
    _standin(stack).id_token_overrides["iss"] = f"{base}/{FABRIKAM}/v2.0"  # Ada is Contoso's
    assert_clear_error(callback_after_consent(stack, NAME), NAME, 502, "could not be verified")


@pytest.mark.parametrize("tid", [None, "not-a-guid", "{tenantid}"])
def test_C7_microsoft_a_token_without_a_tenant_id_is_refused(stack: Stack, tid: Any) -> None:
    standin = _standin(stack)
    standin.id_token_overrides["tid"] = tid
    if tid is not None:
        standin.id_token_overrides["iss"] = f"{standin.base_url}/{tid}/v2.0"
    assert_clear_error(callback_after_consent(stack, NAME), NAME, 502, "could not be verified")


def test_C7_microsoft_an_id_token_without_oid_is_refused(stack: Stack) -> None:
    _standin(stack).id_token_overrides["oid"] = None
    assert_clear_error(callback_after_consent(stack, NAME), NAME, 502, "could not be verified")


def test_C7_microsoft_a_single_tenant_admits_its_own_accounts_only(
        make_stack: Callable[..., Stack]) -> None:
    stack = _tenant_stack(make_stack, CONTOSO)
    assert _standin(stack).discovery()["issuer"].endswith(f"/{CONTOSO}/v2.0")
    assert _claims(stack, "grace")["sub"].startswith(f"microsoft:{CONTOSO}:")
    assert_clear_error(callback_after_consent(stack, NAME, user="alan"), NAME, 502, "")
    assert_clear_error(callback_after_consent(stack, NAME, user="sam"), NAME, 502, "")


def test_C7_microsoft_organizations_refuses_personal_accounts(
        make_stack: Callable[..., Stack]) -> None:
    stack = _tenant_stack(make_stack, "organizations")
    assert _claims(stack, "alan")["sub"].startswith(f"microsoft:{FABRIKAM}:")
    assert_clear_error(callback_after_consent(stack, NAME, user="sam"), NAME, 502, "")


def test_C7_microsoft_consumers_admits_personal_accounts_only(
        make_stack: Callable[..., Stack]) -> None:
    stack = _tenant_stack(make_stack, "consumers")
    assert _claims(stack, "sam")["sub"].startswith(f"microsoft:{CONSUMERS}:")
    assert_clear_error(callback_after_consent(stack, NAME, user="ada"), NAME, 502, "")


def test_C7_microsoft_a_discovery_document_naming_one_tenant_for_common_is_refused(
        stack: Stack) -> None:
    base = _standin(stack).base_url
    _standin(stack).discovery_issuer = f"{base}/{CONTOSO}/v2.0"
    assert_clear_error(stack.browser().start_login(provider=NAME), NAME, 503, "unavailable")


def test_the_code_exchange_uses_client_secret_basic(stack: Stack) -> None:
    _claims(stack, "ada")
    standin = _standin(stack)
    authorization = standin.token_authorizations[-1]
    assert authorization is not None and authorization.startswith("Basic ")
    assert "client_secret" not in standin.token_requests[-1]
    assert standin.calls["discovery"] == 1
