"""Login with Facebook end to end, over real HTTP against the Facebook stand-in."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from conftest import Stack, query_of

from gateway.dev.standins.facebook import DEV_USERS, FacebookAccount, appsecret_proof
from gateway.transactions import pkce_s256_challenge

RETURN_TO = "https://app.example.test/dashboard?tab=1"
APP_SETTINGS = {"allowed_return_urls": ["https://app.example.test/"]}
DEFAULT_VERSION = "v26.0"


@pytest.fixture
def app_stack(make_stack) -> Stack:
    return make_stack(login=APP_SETTINGS)


def _user(key: str) -> FacebookAccount:
    return next(u for u in DEV_USERS if u.key == key)


def test_full_login_flow_ends_at_return_to_with_a_verifiable_jwt(app_stack: Stack) -> None:
    browser = app_stack.browser()
    done = browser.login(RETURN_TO, provider="facebook")
    assert done.status_code == 302
    assert done.headers["location"] == RETURN_TO
    verified = httpx.get(f"{app_stack.url}/verify",
                         headers={"Authorization": f"Bearer {browser.access_token()}"})
    assert verified.status_code == 200
    claims = verified.json()
    ada = _user("ada")
    assert claims["sub"] == f"facebook:{ada.id}"
    assert claims["idp"] == "facebook"
    assert claims["name"] == ada.name
    assert claims["picture"] == ada.avatar.url(app_stack.standin("facebook").base_url)
    assert claims["email"] == ada.email and claims["email_verified"] is True
    assert claims["iss"] == app_stack.url and claims["aud"] == app_stack.url


def test_jwt_verifies_independently_with_the_published_jwks(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login(RETURN_TO, provider="facebook")
    token = browser.access_token()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    jwks = httpx.get(f"{app_stack.url}/.well-known/jwks.json").json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key), algorithms=[key["alg"]],
                        audience=app_stack.url, issuer=app_stack.url)
    ada = _user("ada")
    assert claims["sub"] == f"facebook:{ada.id}"
    assert claims["idp"] == "facebook"
    assert claims["email"] == ada.email and claims["email_verified"] is True
    assert claims["name"] == ada.name
    assert claims["picture"] == ada.avatar.url(app_stack.standin("facebook").base_url)


def test_S1_S2_R4_login_redirect_goes_to_the_versioned_dialog_with_state_and_pkce(
        stack: Stack) -> None:
    standin = stack.standin("facebook")
    start = stack.browser().start_login(provider="facebook")
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(f"{standin.base_url}/{DEFAULT_VERSION}/dialog/oauth?")
    params = {k: v[0] for k, v in query_of(location).items()}
    assert params["client_id"] == standin.client_id
    assert params["redirect_uri"] == f"{stack.url}/callback/facebook"
    assert params["response_type"] == "code"
    assert params["scope"] == "public_profile,email"
    assert len(params["state"]) >= 22  # >= 128 bits of base64url
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert "client_secret" not in params
    assert start.headers["Cache-Control"] == "no-store"


def test_pkce_can_be_switched_off_for_facebook(make_stack) -> None:
    stack = make_stack(providers={"facebook": {"pkce": False}})
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    assert "code_challenge" not in query_of(start.headers["location"])
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    assert "code_verifier" not in stack.standin("facebook").token_requests[-1]
    assert browser.get(f"{stack.url}/verify").json()["idp"] == "facebook"


def test_S2_the_code_exchange_posts_the_pkce_verifier_and_keeps_the_secret_out_of_urls(
        stack: Stack) -> None:
    standin = stack.standin("facebook")
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    challenge = query_of(start.headers["location"])["code_challenge"][0]
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    token_request = standin.token_requests[-1]
    assert pkce_s256_challenge(token_request["code_verifier"]) == challenge
    assert token_request["redirect_uri"] == f"{stack.url}/callback/facebook"
    assert token_request["client_secret"] == standin.client_secret
    exchange = next(c for c in standin.graph_calls if c.endpoint == "token")
    assert exchange.method == "POST"
    assert exchange.query_names == ()  # code and secret travel in the body only


def test_profile_is_read_with_explicit_fields_and_the_right_appsecret_proof(
        stack: Stack) -> None:
    standin = stack.standin("facebook")
    assert stack.browser().login(provider="facebook").status_code == 302
    (access_token,) = standin._access_tokens
    me = standin.me_requests[-1]
    assert me["appsecret_proof"] == appsecret_proof(standin.client_secret, access_token)
    assert set(me["fields"].split(",")) == {"id", "name", "email", "picture.type(large)"}
    assert "access_token" not in me  # the token travels in the Authorization header
    me_call = next(c for c in standin.graph_calls if c.endpoint == "me")
    assert me_call.method == "GET" and "access_token" not in me_call.query_names


def test_the_configured_graph_api_version_is_the_one_called(make_stack) -> None:
    stack = make_stack(providers={"facebook": {"graph_api_version": "v19.0"}})
    standin = stack.standin("facebook")
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    assert urlsplit(start.headers["location"]).path == "/v19.0/dialog/oauth"
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    assert standin.versions_called == {"v19.0"}
    assert {c.endpoint for c in standin.graph_calls} == {"authorize", "token", "me"}


def test_C5_user_who_shares_no_email_gets_no_email_claim(stack: Stack) -> None:
    alan = _user("alan")
    assert alan.email is None
    browser = stack.browser()
    assert browser.login(user="alan", provider="facebook").status_code == 302
    claims = browser.get(f"{stack.url}/verify").json()
    assert "email" not in claims and "email_verified" not in claims
    assert claims["sub"] == f"facebook:{alan.id}"
    assert claims["name"] == alan.name


def test_C5_the_subject_is_the_app_scoped_id_never_the_email(stack: Stack) -> None:
    browser = stack.browser()
    browser.login(user="grace", provider="facebook")
    claims = browser.get(f"{stack.url}/verify").json()
    assert claims["sub"] == f"facebook:{_user('grace').id}"
    assert "grace" not in claims["sub"]


def test_user_who_declines_sees_a_clear_page_with_a_way_to_retry(app_stack: Stack) -> None:
    browser = app_stack.browser()
    start = browser.start_login(RETURN_TO, provider="facebook")
    back = browser.consent(start.headers["location"], decision="deny")
    params = {k: v[0] for k, v in query_of(back.headers["location"]).items()}
    assert params == {"error": "access_denied", "error_code": "200",
                      "error_description": "Permissions error", "error_reason": "user_denied",
                      "state": query_of(start.headers["location"])["state"][0]}
    page = browser.get(back.headers["location"])
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "cancelled" in page.text and "Try again" in page.text
    assert 'href="/login/facebook?return_to=https%3A%2F%2Fapp.example.test%2Fdashboard' in page.text
    assert "Permissions error" not in page.text  # S8: never reflected
    assert not any(n.endswith("gw_access") for n in browser.cookies)
    assert app_stack.standin("facebook").token_requests == []


def test_declined_login_answers_json_to_a_client_asking_for_json(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    back = browser.consent(start.headers["location"], decision="deny")
    answer = browser.get(back.headers["location"], headers={"Accept": "application/json"})
    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"
    assert answer.json()["retry_url"].startswith("/login/facebook")


def test_S1_state_cannot_be_reused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    replay = browser.get(back.headers["location"])
    assert replay.status_code == 400
    assert "location" not in replay.headers
    assert "expired or was already used" in replay.text
    assert len(stack.standin("facebook").token_requests) == 1


def test_S1_state_is_bound_to_the_browser_that_started_the_login(stack: Stack) -> None:
    victim, attacker = stack.browser(), stack.browser()
    start = attacker.start_login(provider="facebook")
    back = attacker.consent(start.headers["location"])
    forced = victim.get(back.headers["location"])
    assert forced.status_code == 400
    assert not any(name.endswith("gw_access") for name in victim.cookies)
    assert stack.standin("facebook").token_requests == []


def test_S6_a_google_state_and_code_at_the_facebook_callback_are_refused_before_any_token_request(
        stack: Stack) -> None:
    facebook = stack.standin("facebook")
    browser = stack.browser()
    start = browser.start_login(provider="google")
    back = browser.consent(start.headers["location"])
    params = query_of(back.headers["location"])
    mixed_up = browser.get(f"{stack.url}/callback/facebook",
                           params={"code": params["code"][0], "state": params["state"][0]})
    assert mixed_up.status_code == 400
    assert "started with another provider" in mixed_up.text
    assert facebook.token_requests == [] and facebook.calls["token"] == 0
    assert stack.google.token_requests == []
    assert not any(n.endswith("gw_access") for n in browser.cookies)


def test_S7_duplicate_code_parameter_is_refused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    back = browser.consent(start.headers["location"])
    params = query_of(back.headers["location"])
    state, code = params["state"][0], params["code"][0]
    answer = browser.get(f"{stack.url}/callback/facebook?state={state}&code={code}&code=other")
    assert answer.status_code == 400
    assert stack.standin("facebook").token_requests == []


def test_S8_tokens_on_the_front_channel_are_refused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    state = query_of(start.headers["location"])["state"][0]
    answer = browser.get(f"{stack.url}/callback/facebook",
                         params={"state": state, "access_token": "EAAstolen"})
    assert answer.status_code == 400
    assert stack.standin("facebook").token_requests == []


def test_S8_upstream_error_description_is_never_reflected(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    state = query_of(start.headers["location"])["state"][0]
    answer = browser.get(f"{stack.url}/callback/facebook", params={
        "state": state, "error": "server_error", "error_code": "1",
        "error_description": "<script>alert('owned')</script> call +1-555"})
    assert answer.status_code == 502
    assert "owned" not in answer.text and "555" not in answer.text


def test_R5_login_redirect_ignores_the_host_header(stack: Stack) -> None:
    port = urlsplit(stack.url).port
    start = httpx.get(f"http://127.0.0.1:{port}/login/facebook",
                      headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert start.status_code == 302
    redirect_uri = query_of(start.headers["location"])["redirect_uri"][0]
    assert redirect_uri == f"{stack.url}/callback/facebook"


def test_R6_callback_redirects_to_a_clean_url_without_referrer(app_stack: Stack) -> None:
    done = app_stack.browser().login(RETURN_TO, provider="facebook")
    assert done.headers["location"] == RETURN_TO
    assert done.headers["Referrer-Policy"] == "no-referrer"
    assert done.headers["Cache-Control"] == "no-store"


def test_L1_C2_no_code_state_secret_or_token_in_the_logs(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    standin = stack.standin("facebook")
    browser = stack.browser()
    start = browser.start_login(provider="facebook")
    back = browser.consent(start.headers["location"])
    params = query_of(back.headers["location"])
    done = browser.get(back.headers["location"])
    home = browser.get(f"{stack.url}/")
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith(("gateway", "tornado")))
    assert "/callback/facebook" in logged  # the access log did run
    (upstream_token,) = standin._access_tokens
    for secret in (params["code"][0], params["state"][0], browser.access_token(),
                   standin.client_secret, upstream_token, upstream_token[3:20]):
        assert secret not in logged
    seen_by_browser = "\n".join([*browser.set_cookie_headers, done.text, home.text])
    assert upstream_token not in seen_by_browser


def test_home_page_offers_facebook_and_shows_who_signed_in(stack: Stack) -> None:
    browser = stack.browser()
    assert "Sign in with Facebook" in browser.get(f"{stack.url}/").text
    browser.login(user="grace", provider="facebook")
    page = browser.get(f"{stack.url}/")
    assert "Signed in as Grace Hopper" in page.text
    assert "via Facebook" in page.text


def test_switching_from_google_to_facebook_rotates_the_session(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    first = next(v for n, v in browser.cookies.items() if n.endswith("gw_session"))
    browser.login(provider="facebook")
    second = next(v for n, v in browser.cookies.items() if n.endswith("gw_session"))
    assert first != second
    assert browser.get(f"{stack.url}/verify").json()["idp"] == "facebook"
