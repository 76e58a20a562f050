"""The OpenID Connect provider against docs/security.md (SECURITY R1, R3, S2, S3, C1, C4, J5, H1),
over real HTTP: redirects only to exactly registered URIs, PKCE S256, single-use codes bound to
their client, client authentication, distinguishable ID tokens, single sign-on."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from conftest import Stack
from oidc_support import (
    CLIENTS,
    CONFIDENTIAL_SECRET,
    INTROSPECTOR,
    INTROSPECTOR_AUTH,
    OTHER_SECRET,
    REDIRECT_URI,
    SPA_REDIRECT_URI,
    authorization_params,
    authorize_url,
    bearer,
    complete_authorization,
    exchange,
    get_code,
    oidc_stack,
    redirect_params,
    refresh,
    token_request,
    tokens_for,
)

from gateway.config import OIDC_SCOPES


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return oidc_stack(make_stack)


def _page_not_redirect(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/html")


# -- R1, R3: never a redirect to an unregistered place ---------------------------------------


@pytest.mark.parametrize("redirect_uri", [
    "https://spa.example.test/c",  # a prefix
    "https://spa.example.test/cb/",  # a trailing slash
    "https://spa.example.test/cb/../cb",
    "https://SPA.example.test/cb",  # different case
    "https://spa.example.test/CB",
    "https://spa.example.test/cb?next=https://evil.example/",  # extra query
    "https://spa.example.test/cb#frag",
    "https://spa.example.test:443/cb",
    "http://spa.example.test/cb",
    "https://evil.example/cb",
    "https://app.example.test/callback",  # registered, but for another client
])
def test_R1_an_unregistered_redirect_uri_is_a_page_never_a_redirect(
        stack: Stack, redirect_uri: str) -> None:
    answer = httpx.get(authorize_url(stack, **authorization_params(redirect_uri=redirect_uri)))
    _page_not_redirect(answer)
    assert "not registered" in answer.text


def test_R1_a_duplicated_redirect_uri_is_a_page(stack: Stack) -> None:
    url = authorize_url(stack, **authorization_params()) + "&redirect_uri=https%3A%2F%2Fevil.ex"
    _page_not_redirect(httpx.get(url))


@pytest.mark.parametrize("client_id", ["nobody", "SPA", "spa ", ""])
def test_R3_an_unknown_client_id_is_a_page_never_a_redirect(stack: Stack, client_id: str) -> None:
    params = {**authorization_params(), "client_id": client_id}
    _page_not_redirect(httpx.get(authorize_url(stack, **params)))


def test_R3_an_unknown_client_with_an_error_is_still_a_page(stack: Stack) -> None:
    params = authorization_params(client_id="nobody", response_type="token", scope="x")
    _page_not_redirect(httpx.get(authorize_url(stack, **params)))


# -- errors the client may see: back on its redirect_uri with state and iss --------------------


@pytest.mark.parametrize(("change", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"scope": "email profile"}, "invalid_scope"),
    ({"scope": "openid admin"}, "invalid_scope"),
    ({"provider": "myspace"}, "invalid_request"),
])
def test_client_errors_go_back_to_the_redirect_uri_with_state_and_iss(
        stack: Stack, change: dict[str, str], error: str) -> None:
    answer = httpx.get(authorize_url(stack, **authorization_params(**change)))
    assert answer.headers["location"].startswith(SPA_REDIRECT_URI + "?")
    query = redirect_params(answer)
    assert query["error"] == error
    assert query["state"] == "st-123" and query["iss"] == stack.url
    assert "code" not in query


def test_S2_a_public_client_without_pkce_gets_an_error_on_its_redirect(stack: Stack) -> None:
    params = authorization_params(code_challenge="", code_challenge_method="")
    query = redirect_params(httpx.get(authorize_url(stack, **params)))
    assert query["error"] == "invalid_request" and "PKCE" in query["error_description"]


@pytest.mark.parametrize("method", ["plain", ""])
def test_S2_plain_pkce_is_refused(stack: Stack, method: str) -> None:
    params = authorization_params(code_challenge="a" * 43, code_challenge_method=method)
    query = redirect_params(httpx.get(authorize_url(stack, **params)))
    assert query["error"] == "invalid_request"


def test_S2_a_wrong_code_verifier_is_invalid_grant(stack: Stack) -> None:
    code = get_code(stack.browser())
    answer = exchange(stack, code, verifier="x" * 43)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert exchange(stack, code).status_code == 400  # and the code is spent


def test_S2_a_missing_code_verifier_is_invalid_grant(stack: Stack) -> None:
    answer = exchange(stack, get_code(stack.browser()), verifier=None)
    assert answer.json()["error"] == "invalid_grant"


def test_prompt_none_without_a_session_is_login_required(stack: Stack) -> None:
    query = redirect_params(httpx.get(authorize_url(stack, **authorization_params(
        prompt="none"))))
    assert query["error"] == "login_required" and query["state"] == "st-123"


def test_a_provider_the_client_does_not_accept_is_refused(make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=[{
        "client_id": "spa", "redirect_uris": [SPA_REDIRECT_URI], "providers": ["facebook"]}])
    query = redirect_params(httpx.get(authorize_url(stack, **authorization_params(
        provider="google"))))
    assert query["error"] == "invalid_request"


def test_a_session_from_a_provider_the_client_does_not_accept_is_not_reused(
        make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=[{
        "client_id": "spa", "redirect_uris": [SPA_REDIRECT_URI], "providers": ["facebook"]}])
    browser = stack.browser()
    browser.login()  # a Google session
    first = browser.get(authorize_url(stack, **authorization_params()))
    assert urlsplit(first.headers["location"]).path == "/login/facebook"


# -- the code: single use, bound, expiring (C1) ------------------------------------------------


def test_the_success_redirect_carries_code_state_and_iss(stack: Stack) -> None:
    answer = complete_authorization(stack.browser(),
                                    authorize_url(stack, **authorization_params()))
    query = redirect_params(answer)
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == "st-123" and query["iss"] == stack.url
    assert len(query["code"]) >= 22  # >= 128 bits
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_C1_a_replayed_code_fails_and_revokes_what_its_first_use_issued(stack: Stack) -> None:
    code = get_code(stack.browser())
    first = exchange(stack, code)
    assert first.status_code == 200
    tokens = first.json()
    replay = exchange(stack, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    refused = refresh(stack, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert httpx.get(f"{stack.url}/userinfo",
                     headers=bearer(tokens["access_token"])).status_code == 401


def test_C1_a_code_of_client_A_is_refused_to_client_B(stack: Stack) -> None:
    code = get_code(stack.browser())
    answer = exchange(stack, code, redirect_uri=SPA_REDIRECT_URI,
                      auth=("webapp", CONFIDENTIAL_SECRET))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_C1_a_code_is_bound_to_its_redirect_uri(stack: Stack) -> None:
    answer = exchange(stack, get_code(stack.browser()), redirect_uri=SPA_REDIRECT_URI + "/")
    assert answer.json()["error"] == "invalid_grant"


def test_C1_an_unknown_code_is_invalid_grant(stack: Stack) -> None:
    answer = exchange(stack, "no-such-code")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


# -- client authentication (C4) and the token endpoint's answers (H1) -------------------------


def _webapp_code(stack: Stack, **extra: str) -> str:
    return get_code(stack.browser(), client_id="webapp", redirect_uri=REDIRECT_URI, **extra)


def test_C4_a_wrong_client_secret_is_401_invalid_client(stack: Stack) -> None:
    code = _webapp_code(stack)
    for auth in (("webapp", CONFIDENTIAL_SECRET + "x"), ("webapp", OTHER_SECRET),
                 ("nobody", CONFIDENTIAL_SECRET)):
        answer = exchange(stack, code, redirect_uri=REDIRECT_URI, auth=auth)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["Pragma"] == "no-cache"
    # A wrong secret did not spend the code.
    ok = exchange(stack, code, redirect_uri=REDIRECT_URI, auth=("webapp", CONFIDENTIAL_SECRET))
    assert ok.status_code == 200


def test_C4_a_confidential_client_without_a_secret_is_refused(stack: Stack) -> None:
    answer = exchange(stack, _webapp_code(stack), client_id="webapp", redirect_uri=REDIRECT_URI)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_C4_client_secret_post_works(stack: Stack) -> None:
    code = _webapp_code(stack)
    answer = token_request(stack, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "client_id": "webapp", "client_secret": CONFIDENTIAL_SECRET})
    assert answer.status_code == 200, answer.text


def test_S2_a_confidential_client_may_skip_pkce_but_then_sends_no_verifier(
        stack: Stack) -> None:
    code = _webapp_code(stack, code_challenge="", code_challenge_method="")
    downgrade = exchange(stack, code, redirect_uri=REDIRECT_URI,
                         auth=("webapp", CONFIDENTIAL_SECRET))
    assert downgrade.json()["error"] == "invalid_grant"
    code = _webapp_code(stack, code_challenge="", code_challenge_method="")
    ok = exchange(stack, code, redirect_uri=REDIRECT_URI, verifier=None,
                  auth=("webapp", CONFIDENTIAL_SECRET))
    assert ok.status_code == 200


def test_H1_token_answers_are_never_cached(stack: Stack) -> None:
    answer = exchange(stack, get_code(stack.browser()))
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"
    assert answer.headers["content-type"].startswith("application/json")


def test_token_endpoint_refuses_other_grant_types_and_query_parameters(stack: Stack) -> None:
    answer = token_request(stack, {"grant_type": "password", "client_id": "spa"})
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"
    answer = httpx.post(f"{stack.url}/token?grant_type=authorization_code&client_id=spa")
    assert answer.status_code == 401  # nothing is read from the query string


def test_the_token_response_has_what_oidc_requires(stack: Stack) -> None:
    tokens = tokens_for(stack)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 600
    assert tokens["scope"] == "openid email profile offline_access"
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["client_id"] == "spa" and access["aud"] == "https://api.example.test"
    assert access["scope"] == tokens["scope"] and access["fid"] and access["sid"]
    id_token = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert id_token["aud"] == "spa" and id_token["azp"] == "spa"
    assert id_token["nonce"] == "n-456"  # SECURITY S3
    assert id_token["sub"] == access["sub"] and id_token["sid"] == access["sid"]
    assert id_token["auth_time"] <= id_token["iat"]


# -- J5: an ID token is not an access token ----------------------------------------------------


def test_J5_an_id_token_is_refused_where_an_access_token_is_expected(make_stack: Any) -> None:
    stack = oidc_stack(make_stack)
    tokens = tokens_for(stack)
    assert jwt.get_unverified_header(tokens["id_token"])["typ"] == "JWT"
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
    verify = httpx.get(f"{stack.url}/verify", headers=bearer(tokens["id_token"]))
    assert verify.status_code == 401
    userinfo = httpx.get(f"{stack.url}/userinfo", headers=bearer(tokens["id_token"]))
    assert userinfo.status_code == 401


def test_J5_an_id_token_is_inactive_at_introspection(make_stack: Any) -> None:
    stack = oidc_stack(make_stack, clients=[*CLIENTS, INTROSPECTOR])
    tokens = tokens_for(stack)
    answer = httpx.post(f"{stack.url}/introspect", data={"token": tokens["id_token"]},
                        auth=INTROSPECTOR_AUTH)
    assert answer.json() == {"active": False}


# -- single sign-on ----------------------------------------------------------------------------


def test_sso_a_second_authorization_with_a_live_session_skips_the_provider(
        stack: Stack) -> None:
    browser = stack.browser()
    get_code(browser)
    upstream_logins = stack.google.calls["authorize"]
    second = browser.get(authorize_url(stack, **authorization_params(
        client_id="webapp", redirect_uri=REDIRECT_URI)))
    assert second.headers["location"].startswith(REDIRECT_URI + "?")
    assert "code" in redirect_params(second)
    assert stack.google.calls["authorize"] == upstream_logins
    assert browser.get(authorize_url(stack, **authorization_params(
        prompt="none"))).headers["location"].startswith(SPA_REDIRECT_URI + "?code=")


def test_sso_prompt_login_signs_in_upstream_again(stack: Stack) -> None:
    browser = stack.browser()
    get_code(browser)
    upstream_logins = stack.google.calls["authorize"]
    code = get_code(browser, prompt="login")
    assert stack.google.calls["authorize"] > upstream_logins
    assert exchange(stack, code).status_code == 200


def test_sso_max_age_zero_signs_in_again(stack: Stack) -> None:
    browser = stack.browser()
    get_code(browser)
    again = browser.get(authorize_url(stack, **authorization_params(max_age="0")))
    assert urlsplit(again.headers["location"]).path.startswith("/login")


def test_the_discovery_lists_what_the_gateway_supports(stack: Stack) -> None:
    metadata = httpx.get(f"{stack.url}/.well-known/openid-configuration").json()
    assert set(metadata["scopes_supported"]) == set(OIDC_SCOPES)
    assert metadata["end_session_endpoint"] == f"{stack.url}/logout/oidc"
    assert metadata["request_uri_parameter_supported"] is False


# -- H8: CORS for the registered apps' origins only ---------------------------------------------


def test_H8_token_endpoint_cors_only_for_registered_origins(stack: Stack) -> None:
    preflight = httpx.options(f"{stack.url}/token", headers={
        "Origin": "https://spa.example.test", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://spa.example.test"
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    error = httpx.post(f"{stack.url}/token", data={"grant_type": "x", "client_id": "spa"},
                       headers={"Origin": "https://spa.example.test"})
    assert error.status_code == 400  # the app's page can read the error too
    assert error.headers["Access-Control-Allow-Origin"] == "https://spa.example.test"
    for origin in ("https://evil.example", "null", "https://spa.example.test.evil.example"):
        refused = httpx.options(f"{stack.url}/token", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in refused.headers


def test_H8_no_cors_on_the_authorization_endpoint(stack: Stack) -> None:
    answer = httpx.get(authorize_url(stack, **authorization_params()),
                       headers={"Origin": "https://spa.example.test"})
    assert "Access-Control-Allow-Origin" not in answer.headers


# -- L1: no code, token or secret in any log line -------------------------------------------------


def test_L1_the_code_flow_logs_no_code_token_or_secret(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    caplog.set_level(logging.DEBUG)
    browser = stack.browser()
    code = get_code(browser, client_id="webapp", redirect_uri=REDIRECT_URI)
    tokens = exchange(stack, code, redirect_uri=REDIRECT_URI,
                      auth=("webapp", CONFIDENTIAL_SECRET)).json()
    refreshed = refresh(stack, tokens["refresh_token"], auth=("webapp", CONFIDENTIAL_SECRET))
    assert exchange(stack, code, redirect_uri=REDIRECT_URI,
                    auth=("webapp", CONFIDENTIAL_SECRET)).status_code == 400  # replay, logged
    assert exchange(stack, code, redirect_uri=REDIRECT_URI,
                    auth=("webapp", "wrong-" + CONFIDENTIAL_SECRET)).status_code == 401
    # The gateway's and Tornado's log lines (the test's own HTTP client logs its URLs).
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if record.name.startswith(("gateway", "tornado")))
    assert "refused" in logged  # the refusals were logged, with their reasons
    secrets_seen = [code, CONFIDENTIAL_SECRET, tokens["access_token"], tokens["id_token"],
                    tokens["refresh_token"], refreshed.json()["refresh_token"]]
    for value in secrets_seen:
        assert value not in logged
