"""Sign in with X over OAuth 1.0a (mode "oauth1"), end to end over real HTTP against the X
stand-in, which checks every signature with oauthlib (not the gateway's signing code): its own
protocol. What every provider's login shares is in test_provider_contract.py."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from conftest import Stack, query_of
from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849 import signature
from provider_support import assert_clear_error, x_account, x_standin

from gateway.dev.standins.common import Fault
from gateway.dev.standins.x import XStandIn
from gateway.providers.twitter import identity_from_x_v1
from gateway.providers.twitter_oauth1 import authorization_header

APP_SETTINGS = {"allowed_return_urls": ["https://app.example.test/"]}
OAUTH1 = {"twitter": {"mode": "oauth1"}}
COULD_NOT_AUTHENTICATE = {"errors": [{"code": 32, "message": "Could not authenticate you."}]}


@pytest.fixture
def oauth1_stack(make_stack) -> Stack:
    return make_stack(login=APP_SETTINGS, providers=OAUTH1)


def _request_token_cookie(browser) -> str:
    return next(name for name in browser.cookies if name.endswith("gw_x_request"))


def _consented(stack: Stack, user: str = "ada"):
    """A browser back from X's consent page: (browser, the callback URL it was sent to)."""
    browser = stack.browser()
    start = browser.start_login(provider="twitter")
    assert start.status_code == 302, start.text
    back = browser.consent(start.headers["location"], user=user)
    assert back.status_code == 302
    return browser, back.headers["location"]


def _assert_refused_before_any_token_request(stack: Stack, answer: httpx.Response,
                                             browser) -> None:
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    assert "Try again" in answer.text
    assert not any(name.endswith("gw_access") for name in browser.cookies)
    assert x_standin(stack).calls["access_token"] == 0


def test_sub_is_the_same_x_user_id_in_both_modes(make_stack) -> None:
    subs = []
    for providers in ({}, OAUTH1):
        stack = make_stack(providers=providers)
        browser = stack.browser()
        browser.login(user="grace", provider="twitter")
        subs.append(browser.get(f"{stack.url}/verify").json()["sub"])
    assert subs == [f"twitter:{x_account('grace').id}"] * 2


def test_login_gets_a_request_token_for_the_fixed_callback_and_sends_the_browser_to_x(
        oauth1_stack: Stack) -> None:
    browser = oauth1_stack.browser()
    start = browser.start_login(provider="twitter")
    assert start.status_code == 302
    x = x_standin(oauth1_stack)
    location = start.headers["location"]
    assert location.startswith(x.authenticate_url + "?")
    oauth_token = query_of(location)["oauth_token"][0]
    request = x.oauth1_requests[-1]
    assert request.method == "POST"  # as X documents POST oauth/request_token
    assert request.url == x.request_token_url  # protocol parameters in the header only
    assert request.authorization.startswith("OAuth ")
    header = dict(signature.collect_parameters(headers={"Authorization": request.authorization}))
    assert header["oauth_callback"] == f"{oauth1_stack.url}/callback/twitter"
    assert header["oauth_signature_method"] == "HMAC-SHA1"
    assert oauth_token not in str(browser.cookies)  # the cookie is signed, not the raw pair
    assert start.headers["Cache-Control"] == "no-store"


def test_S4_request_token_cookie_is_signed_httponly_lax_and_short_lived(
        oauth1_stack: Stack) -> None:
    browser = oauth1_stack.browser()
    browser.start_login(provider="twitter")
    header = next(h for h in browser.set_cookie_headers if "gw_x_request=" in h)
    attributes = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in attributes and "path=/" in attributes
    assert "samesite=lax" in attributes
    lifetime = oauth1_stack.dev.settings.login.transaction_lifetime
    assert f"max-age={lifetime}" in attributes
    assert browser.cookies[_request_token_cookie(browser)].startswith("2|")  # Tornado v2 signed


def test_S4_callback_whose_oauth_token_does_not_match_the_cookie_is_refused(
        oauth1_stack: Stack) -> None:
    browser = oauth1_stack.browser()
    first = browser.start_login(provider="twitter")
    back = browser.consent(first.headers["location"])
    browser.start_login(provider="twitter")  # a second login: the cookie now holds another token
    answer = browser.get(back.headers["location"])
    _assert_refused_before_any_token_request(oauth1_stack, answer, browser)
    assert "does not match" in answer.text


def test_S4_missing_request_token_cookie_is_refused(oauth1_stack: Stack) -> None:
    browser, callback = _consented(oauth1_stack)
    del browser.cookies[_request_token_cookie(browser)]
    _assert_refused_before_any_token_request(oauth1_stack, browser.get(callback), browser)


@pytest.mark.parametrize("forge", ["unsigned", "tampered"])
def test_S4_forged_request_token_cookie_is_refused(oauth1_stack: Stack, forge: str) -> None:
    browser, callback = _consented(oauth1_stack)
    name = _request_token_cookie(browser)
    oauth_token = query_of(callback)["oauth_token"][0]
    if forge == "unsigned":
        browser.cookies[name] = f"oauth_token={oauth_token}&oauth_token_secret=guessed"
    else:
        value = browser.cookies[name]
        browser.cookies[name] = value[:-5] + ("0" if value[-5] != "0" else "1") + value[-4:]
    _assert_refused_before_any_token_request(oauth1_stack, browser.get(callback), browser)


def test_S4_the_request_token_cookie_is_cleared_by_the_callback(oauth1_stack: Stack) -> None:
    browser, callback = _consented(oauth1_stack)
    assert browser.get(callback).status_code == 302
    assert not any(name.endswith("gw_x_request") for name in browser.cookies)


def test_C5_identity_from_x_v1_claims_only_an_email_x_returned() -> None:
    verified = identity_from_x_v1({"id": 12, "id_str": "12", "name": "A", "email": "a@x.test",
                                   "profile_image_url_https": "https://pbs.twimg.test/a.jpg"})
    assert verified.sub == "twitter:12"
    assert verified.profile_claims() == {"idp": "twitter", "email": "a@x.test",
                                         "email_verified": True, "name": "A",
                                         "picture": "https://pbs.twimg.test/a.jpg"}
    unverified = identity_from_x_v1({"id": 12, "id_str": "12", "name": "A", "email": None})
    assert "email" not in unverified.profile_claims()


def test_authorization_header_percent_encodes_names_and_values() -> None:
    header = authorization_header({"oauth_callback": "http://a.test/cb?x=1 2",
                                   "oauth_nonce": "n~-._"})
    assert header == ('OAuth oauth_callback="http%3A%2F%2Fa.test%2Fcb%3Fx%3D1%202", '
                      'oauth_nonce="n~-._"')


def test_verify_credentials_is_asked_for_the_email_without_the_last_post(
        oauth1_stack: Stack) -> None:
    browser = oauth1_stack.browser()
    browser.login(provider="twitter")
    request = x_standin(oauth1_stack).oauth1_requests[-1]
    assert request.method == "GET"
    assert dict(parse_qsl(urlsplit(request.url).query)) == {"include_email": "true",
                                                           "skip_status": "true"}


# The stand-in checks every signature, timestamp and nonce (RFC 5849 3.2) independently.


def _signed_request_token_request(x: XStandIn, callback: str) -> tuple[str, dict[str, str]]:
    client = Client(x.consumer_key, client_secret=x.consumer_secret, callback_uri=callback)
    uri, headers, _ = client.sign(x.request_token_url, http_method="POST")
    return uri, headers


def test_the_stand_in_refuses_a_request_altered_in_transit_or_replayed(stack: Stack) -> None:
    x = x_standin(stack)
    callback = f"{stack.url}/callback/twitter"
    uri, headers = _signed_request_token_request(x, callback)
    altered = {"Authorization": headers["Authorization"].replace(
        "callback%2Ftwitter", "callback%2Fevil")}
    assert altered != headers
    refused = httpx.post(uri, headers=altered)
    assert refused.status_code == 401 and refused.json() == COULD_NOT_AUTHENTICATE
    accepted = httpx.post(uri, headers=headers)
    assert accepted.status_code == 200
    assert dict(parse_qsl(accepted.text))["oauth_callback_confirmed"] == "true"
    replayed = httpx.post(uri, headers=headers)  # the same nonce and timestamp again
    assert replayed.status_code == 401 and replayed.json() == COULD_NOT_AUTHENTICATE


def test_the_stand_in_refuses_the_gateways_own_requests_altered_or_replayed(
        oauth1_stack: Stack) -> None:
    browser = oauth1_stack.browser()
    browser.login(provider="twitter")
    x = x_standin(oauth1_stack)
    request = x.oauth1_requests[-1]  # the gateway's GET verify_credentials
    headers = {"Authorization": request.authorization}
    altered = httpx.get(request.url.replace("include_email=true", "include_email=false"),
                        headers=headers)
    assert altered.status_code == 401 and altered.json() == COULD_NOT_AUTHENTICATE
    replayed = httpx.get(request.url, headers=headers)
    assert replayed.status_code == 401 and replayed.json() == COULD_NOT_AUTHENTICATE


def test_a_wrong_consumer_secret_is_refused_by_the_stand_in(make_stack) -> None:
    stack = make_stack(providers={"twitter": {"mode": "oauth1",
                                              "consumer_secret": "not-the-real-secret"}})
    answer = stack.browser().start_login(provider="twitter")
    assert answer.status_code == 502
    assert "refused the request" in answer.text and 'href="/login/twitter' in answer.text


def test_the_stand_in_refuses_a_timestamp_outside_its_window(oauth1_stack: Stack) -> None:
    x = x_standin(oauth1_stack)
    real_clock = x.clock
    x.clock = lambda: real_clock() + 3600
    try:
        answer = oauth1_stack.browser().start_login(provider="twitter")
    finally:
        x.clock = real_clock
    assert answer.status_code == 502
    uri, headers = _signed_request_token_request(x, f"{oauth1_stack.url}/callback/twitter")
    x.clock = lambda: real_clock() - 3600
    try:
        late = httpx.post(uri, headers=headers)
    finally:
        x.clock = real_clock
    assert late.status_code == 401 and late.json()["errors"][0]["code"] == 135


# Every way X can fail ends in a clear page with a way to retry, never a 500.


FORM = "application/x-www-form-urlencoded"
X_401 = '{"errors": [{"code": 32, "message": "Could not authenticate you."}]}'
FAULTS = [
    (Fault(status=500, body='{"errors": [{"code": 131, "message": "Internal error"}]}'), 502,
     "refused the request"),
    (Fault(status=401, body=X_401), 502, "refused the request"),
    (Fault(status=200, body="{not a form", content_type=FORM), 502, "could not read"),
]


@pytest.mark.parametrize(("fault", "status", "words"), [
    *FAULTS,
    (Fault(status=200, body="oauth_token=a&oauth_token_secret=b", content_type=FORM), 502,
     "could not use"),  # no oauth_callback_confirmed=true
])
def test_request_token_failures_end_in_a_clear_page(make_stack, fault: Fault, status: int,
                                                    words: str) -> None:
    stack = make_stack(providers=OAUTH1)
    x_standin(stack).faults["request_token"] = fault
    assert_clear_error(stack.browser().start_login(provider="twitter"), "twitter", status, words)


@pytest.mark.parametrize(("fault", "status", "words"), [
    *FAULTS,
    (Fault(status=200, body="oauth_token=a&oauth_token_secret=b", content_type=FORM), 502,
     "could not use"),  # no user_id
])
def test_access_token_failures_end_in_a_clear_page(make_stack, fault: Fault, status: int,
                                                   words: str) -> None:
    stack = make_stack(providers=OAUTH1)
    x_standin(stack).faults["access_token"] = fault
    browser, callback = _consented(stack)
    assert_clear_error(browser.get(callback), "twitter", status, words)


@pytest.mark.parametrize(("fault", "status", "words"), [
    *FAULTS[:2],
    (Fault(status=200, body="{not json"), 502, "could not read"),
    (Fault(status=200, body='{"id_str": "12", "name": "Someone else"}'), 502, "could not use"),
    (Fault(status=200, body='{"name": "No id"}'), 502, "could not use"),
])
def test_verify_credentials_failures_end_in_a_clear_page(make_stack, fault: Fault, status: int,
                                                         words: str) -> None:
    stack = make_stack(providers=OAUTH1)
    x_standin(stack).faults["verify_credentials"] = fault
    browser, callback = _consented(stack)
    assert_clear_error(browser.get(callback), "twitter", status, words)
