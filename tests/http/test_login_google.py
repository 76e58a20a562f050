"""Login with Google end to end, over real HTTP against the Google stand-in."""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from conftest import Stack, query_of

RETURN_TO = "https://app.example.test/dashboard?tab=1"
APP_SETTINGS = {"allowed_return_urls": ["https://app.example.test/"]}


@pytest.fixture
def app_stack(make_stack) -> Stack:
    return make_stack(login=APP_SETTINGS)


def test_full_login_flow_ends_at_return_to_with_a_verifiable_jwt(app_stack: Stack) -> None:
    browser = app_stack.browser()
    done = browser.login(RETURN_TO)
    assert done.status_code == 302
    assert done.headers["location"] == RETURN_TO
    token = browser.access_token()
    verified = httpx.get(f"{app_stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert verified.status_code == 200
    claims = verified.json()
    ada = next(u for u in _dev_users() if u.key == "ada")
    assert claims["sub"] == f"google:{ada.sub}"
    assert claims["idp"] == "google"
    assert claims["email"] == ada.email and claims["email_verified"] is True
    assert claims["name"] == ada.name
    assert claims["picture"] == ada.avatar.url(app_stack.google.base_url)
    assert claims["iss"] == app_stack.url
    assert claims["aud"] == app_stack.url
    assert claims["exp"] - claims["iat"] == 600
    assert verified.headers["Cache-Control"] == "no-store"


def test_verify_accepts_the_access_cookie(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login(RETURN_TO)
    verified = browser.get(f"{app_stack.url}/verify")
    assert verified.status_code == 200
    assert verified.json()["idp"] == "google"


def test_jwt_verifies_independently_with_the_published_jwks(app_stack: Stack) -> None:
    browser = app_stack.browser()
    browser.login(RETURN_TO)
    token = browser.access_token()
    jwks = httpx.get(f"{app_stack.url}/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert "max-age" in jwks.headers["Cache-Control"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = next(k for k in jwks.json()["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key), algorithms=[key["alg"]],
                        audience=app_stack.url, issuer=app_stack.url)
    assert claims["sub"].startswith("google:")
    assert len(claims["jti"]) >= 16


def test_openid_configuration_describes_issuer_and_jwks(stack: Stack) -> None:
    document = httpx.get(f"{stack.url}/.well-known/openid-configuration").json()
    assert document["issuer"] == stack.url
    assert document["jwks_uri"] == f"{stack.url}/.well-known/jwks.json"
    assert httpx.get(document["jwks_uri"]).json()["keys"]


def test_S1_S2_S3_login_redirect_carries_state_pkce_and_nonce(stack: Stack) -> None:
    start = stack.browser().start_login()
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(stack.google.authorize_url + "?")
    params = {k: v[0] for k, v in query_of(location).items()}
    assert len(params["state"]) >= 22  # >= 128 bits of base64url
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["nonce"]) >= 22
    assert params["redirect_uri"] == f"{stack.url}/callback/google"
    assert params["response_type"] == "code"
    assert set(params["scope"].split()) >= {"openid", "email", "profile"}
    assert start.headers["Cache-Control"] == "no-store"


def test_S2_the_code_exchange_sends_the_pkce_verifier(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    challenge = query_of(start.headers["location"])["code_challenge"][0]
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    token_request = stack.google.token_requests[-1]
    from gateway.transactions import pkce_s256_challenge
    assert pkce_s256_challenge(token_request["code_verifier"]) == challenge
    assert token_request["redirect_uri"] == f"{stack.url}/callback/google"


def test_S1_state_cannot_be_reused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    assert browser.get(back.headers["location"]).status_code == 302
    replay = browser.get(back.headers["location"])
    assert replay.status_code == 400
    assert "location" not in replay.headers
    assert "expired or was already used" in replay.text


def test_S1_state_is_bound_to_the_browser_that_started_the_login(stack: Stack) -> None:
    victim, attacker = stack.browser(), stack.browser()
    start = attacker.start_login()
    back = attacker.consent(start.headers["location"])
    forced = victim.get(back.headers["location"])  # login CSRF: attacker's callback in victim
    assert forced.status_code == 400
    assert not any(name.endswith("gw_access") for name in victim.cookies)


def test_S1_unknown_or_missing_state_is_refused(stack: Stack) -> None:
    browser = stack.browser()
    browser.start_login()
    unknown = browser.get(f"{stack.url}/callback/google", params={"state": "x" * 43,
                                                                  "code": "c"})
    assert unknown.status_code == 400
    missing = browser.get(f"{stack.url}/callback/google", params={"code": "c"})
    assert missing.status_code == 400


def test_S1_expired_state_is_refused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    lifetime = stack.dev.settings.login.transaction_lifetime
    store = stack.ctx.store
    real_clock = store.clock  # type: ignore[attr-defined]
    store.clock = lambda: real_clock() + lifetime + 1  # type: ignore[attr-defined]
    try:
        expired = browser.get(back.headers["location"])
    finally:
        store.clock = real_clock  # type: ignore[attr-defined]
    assert expired.status_code == 400
    assert not any(name.endswith("gw_access") for name in browser.cookies)


def test_logins_started_in_several_tabs_each_complete_with_one_small_cookie(
        stack: Stack) -> None:
    browser = stack.browser()
    starts = [browser.start_login() for _ in range(5)]
    login_cookies = [n for n in browser.cookies if n.endswith("gw_login")]
    assert len(login_cookies) == 1
    assert sum(len(k) + len(v) for k, v in browser.cookies.items()) < 1024
    for start in reversed(starts):
        back = browser.consent(start.headers["location"])
        assert browser.get(back.headers["location"]).status_code == 302


def test_S7_duplicate_state_parameter_is_refused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    params = query_of(back.headers["location"])
    state, code = params["state"][0], params["code"][0]
    url = f"{stack.url}/callback/google?state={state}&state=other&code={code}"
    answer = browser.get(url)
    assert answer.status_code == 400
    assert "more than once" in answer.text


def test_S8_tokens_on_the_front_channel_are_refused(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    state = query_of(start.headers["location"])["state"][0]
    answer = browser.get(f"{stack.url}/callback/google",
                         params={"state": state, "access_token": "ya29.stolen"})
    assert answer.status_code == 400


def test_S8_upstream_error_description_is_never_reflected(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    state = query_of(start.headers["location"])["state"][0]
    answer = browser.get(f"{stack.url}/callback/google", params={
        "state": state, "error": "server_error",
        "error_description": "<script>alert('owned')</script> call +1-555"})
    assert answer.status_code == 502
    assert "owned" not in answer.text and "555" not in answer.text


def test_user_who_declines_sees_a_clear_page_with_a_way_to_retry(app_stack: Stack) -> None:
    browser = app_stack.browser()
    start = browser.start_login(RETURN_TO)
    back = browser.consent(start.headers["location"], decision="deny")
    assert query_of(back.headers["location"])["error"] == ["access_denied"]
    page = browser.get(back.headers["location"])
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "cancelled" in page.text
    assert "/login/google?return_to=https%3A%2F%2Fapp.example.test%2Fdashboard" in page.text
    assert "Traceback" not in page.text


def test_declined_login_answers_json_to_a_client_asking_for_json(stack: Stack) -> None:
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"], decision="deny")
    answer = browser.get(back.headers["location"], headers={"Accept": "application/json"})
    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"
    assert answer.json()["retry_url"].startswith("/login/google")


def test_C5_unverified_email_is_not_claimed(stack: Stack) -> None:
    unverified = next(u for u in _dev_users() if not u.email_verified)
    browser = stack.browser()
    browser.login(user=unverified.key)
    claims = browser.get(f"{stack.url}/verify").json()
    assert "email" not in claims and "email_verified" not in claims
    assert claims["sub"] == f"google:{unverified.sub}"


def test_L1_no_code_state_or_token_in_the_logs(stack: Stack, caplog: pytest.LogCaptureFixture
                                               ) -> None:
    caplog.set_level(logging.DEBUG)
    browser = stack.browser()
    start = browser.start_login()
    back = browser.consent(start.headers["location"])
    params = query_of(back.headers["location"])
    browser.get(back.headers["location"])
    token = browser.access_token()
    browser.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    # The server's loggers (the gateway's and Tornado's); httpx here is the test's own client.
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith(("gateway", "tornado")))
    assert "/callback/google" in logged  # the access log did run
    for secret in (params["code"][0], params["state"][0], token, *browser.cookies.values(),
                   stack.dev.settings.cookies.secret.reveal(),
                   stack.google.token_requests[-1]["client_secret"]):
        assert secret not in logged


def _dev_users():
    from gateway.dev.standins.google import DEV_USERS
    return DEV_USERS


def test_healthz_and_readyz(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok", "pid": os.getpid()}
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"config": True, "keys": True, "store": True}


def test_R5_login_redirect_ignores_the_host_header(stack: Stack) -> None:
    port = urlsplit(stack.url).port
    start = httpx.get(f"http://127.0.0.1:{port}/login/google",
                      headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert start.status_code == 302
    redirect_uri = query_of(start.headers["location"])["redirect_uri"][0]
    assert redirect_uri == f"{stack.url}/callback/google"


def test_R6_callback_redirects_to_a_clean_url_without_referrer(app_stack: Stack) -> None:
    done = app_stack.browser().login(RETURN_TO)
    assert done.headers["location"] == RETURN_TO
    assert "code=" not in done.headers["location"] and "state=" not in done.headers["location"]
    assert done.headers["Referrer-Policy"] == "no-referrer"
    assert done.headers["Cache-Control"] == "no-store"


def test_session_id_is_rotated_at_every_login(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    first = next(v for n, v in browser.cookies.items() if n.endswith("gw_session"))
    browser.login(user="grace")
    second = next(v for n, v in browser.cookies.items() if n.endswith("gw_session"))
    assert first != second
    assert browser.get(f"{stack.url}/verify").json()["name"] == "Grace Hopper"


def test_home_page_shows_who_is_signed_in(stack: Stack) -> None:
    browser = stack.browser()
    before = browser.get(f"{stack.url}/")
    assert "Sign in with Google" in before.text
    browser.login()
    after = browser.get(f"{stack.url}/")
    assert "Signed in as Ada Lovelace" in after.text
    assert "Content-Security-Policy" in after.headers


def test_S5_P7_sign_out_needs_post_and_xsrf_and_clears_cookies(stack: Stack) -> None:
    browser = stack.browser()
    browser.login()
    assert browser.get(f"{stack.url}/logout").status_code == 405
    page = browser.get(f"{stack.url}/")  # sets the _xsrf cookie
    assert browser.post(f"{stack.url}/logout").status_code == 403
    from conftest import FormParser
    form = FormParser()
    form.feed(page.text)
    out = browser.post(f"{stack.url}/logout", data=form.inputs)
    assert out.status_code == 303
    assert not any(n.endswith(("gw_access", "gw_session")) for n in browser.cookies)
    assert "Sign in with Google" in browser.get(f"{stack.url}/").text


def test_unknown_route_is_a_clean_404(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/nope")
    assert page.status_code == 404 and "Traceback" not in page.text
    api = httpx.get(f"{stack.url}/nope", headers={"Accept": "application/json"})
    assert api.json()["error"] == "not_found"


def test_access_token_lifetime_follows_configuration(make_stack) -> None:
    stack = make_stack(tokens={"access_token_lifetime": 120, "algorithm": "ES256"})
    browser = stack.browser()
    browser.login()
    claims = browser.get(f"{stack.url}/verify").json()
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.get_unverified_header(browser.access_token())["alg"] == "ES256"
    assert abs(claims["iat"] - time.time()) < 60
