"""Sign in with Apple's own protocol over real HTTP against the Apple stand-in: the form post
and its same-site relay (SECURITY C8), what the authorization request and the code exchange
carry, Apple's booleans, the name it sends once, the id_token's checks and the client secret's
renewal. What every provider shares is in test_provider_contract.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from conftest import Browser, Callback, FormParser, Stack, query_of
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from gateway.dev.standins.apple import AppleStandIn
from gateway.providers.apple import CLIENT_SECRET_LIFETIME, NAMES_NAMESPACE, AppleConnector
from gateway.transactions import pkce_s256_challenge

RETURN_TO = "https://app.example.test/dashboard"
APP_SETTINGS = {"allowed_return_urls": ["https://app.example.test/"]}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack(login=APP_SETTINGS)


def _apple(stack: Stack) -> AppleStandIn:
    standin = stack.standin("apple")
    assert isinstance(standin, AppleStandIn)
    return standin


def _connector(stack: Stack) -> AppleConnector:
    connector = stack.ctx.providers["apple"]
    assert isinstance(connector, AppleConnector)
    return connector


def _form_post(stack: Stack, user: str = "ada", browser: Browser | None = None
               ) -> tuple[Browser, httpx.Response, Callback]:
    """A browser at Apple's form post page after `user` said yes: the browser, the login's
    redirect to Apple, and the form post Apple's page makes."""
    browser = browser or stack.browser()
    start = browser.start_login(RETURN_TO, provider="apple")
    assert start.status_code == 302, start.text
    callback = Callback.of(browser.consent(start.headers["location"], user=user))
    assert callback.method == "POST" and callback.url == f"{stack.url}/callback/apple"
    return browser, start, callback


def _relay_page(answer: httpx.Response) -> FormParser:
    assert answer.status_code == 200, answer.text
    form = FormParser()
    form.feed(answer.text)
    return form


def _claims(browser: Browser, stack: Stack) -> dict[str, Any]:
    answer = browser.get(f"{stack.url}/verify")
    assert answer.status_code == 200, answer.text
    claims: dict[str, Any] = answer.json()
    return claims


def _no_access_cookie(browser: Browser) -> bool:
    return not any(name.endswith("gw_access") for name in browser.cookies)


# ---------------------------------------------------------------------------------------------
# The authorization request and the code exchange


def test_S2_S3_apple_login_asks_for_a_form_post_with_state_pkce_and_nonce(stack: Stack) -> None:
    apple = _apple(stack)
    browser, start, callback = _form_post(stack)
    location = start.headers["location"]
    assert location.startswith(f"{apple.base_url}/auth/authorize?")
    query = {name: values[0] for name, values in query_of(location).items()}
    assert query["response_type"] == "code"
    assert query["response_mode"] == "form_post"
    assert query["scope"] == "name email"
    assert query["client_id"] == apple.client_id
    assert query["redirect_uri"] == f"{stack.url}/callback/apple"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 22
    assert browser.deliver(callback).status_code == 302
    exchange = apple.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["client_id"] == apple.client_id
    assert exchange["redirect_uri"] == f"{stack.url}/callback/apple"
    assert exchange["code"] == callback.params["code"][0]
    assert pkce_s256_challenge(exchange["code_verifier"]) == query["code_challenge"]
    # The client secret, checked by joserfc with the team's public key (not PyJWT, which
    # signed it, nor the stand-in's own check).
    public = ECKey.import_key(apple.team_public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    secret = jose_jwt.decode(exchange["client_secret"], public, algorithms=["ES256"])
    assert secret.header["kid"] == apple.key_id
    assert secret.claims["iss"] == apple.team_id
    assert secret.claims["sub"] == apple.client_id
    assert secret.claims["aud"] == apple.base_url  # the configured authority
    assert 0 < secret.claims["exp"] - secret.claims["iat"] <= 15_777_000


# ---------------------------------------------------------------------------------------------
# SECURITY C8: the cross-site form post, relayed same-site


def test_C8_the_form_post_needs_no_cookie_and_the_same_site_relay_finishes_it(
        stack: Stack) -> None:
    apple = _apple(stack)
    browser, _, callback = _form_post(stack)
    login_cookie = next(n for n in browser.cookies if n.endswith("gw_login"))
    assert browser.samesite[login_cookie] == "Lax"  # withheld from a cross-site POST
    first = browser.post_form(callback.url, callback.fields, cross_site=True)
    relay = _relay_page(first)
    assert apple.calls["token"] == 0  # nothing finished, nothing taken from the store
    assert "location" not in first.headers
    assert first.headers["Cache-Control"] == "no-store"
    assert not first.headers.get_list("set-cookie")
    assert relay.action == "/callback/apple" and relay.method == "post"
    assert relay.fields == [*callback.fields, ("gateway_relayed", "1")]
    assert "Continue" in first.text  # without JavaScript, a button does it
    done = browser.post_form(f"{stack.url}{relay.action}", relay.fields)  # same-site
    assert done.status_code == 302 and done.headers["location"] == RETURN_TO
    assert apple.calls["token"] == 1
    assert _claims(browser, stack)["sub"].startswith("apple:")


def test_C8_the_relay_page_runs_its_own_script_only(stack: Stack) -> None:
    nonces = []
    for _ in range(2):
        browser, _, callback = _form_post(stack)
        first = browser.post_form(callback.url, callback.fields, cross_site=True)
        csp = first.headers["Content-Security-Policy"]
        nonce = re.fullmatch(r".*script-src 'nonce-([A-Za-z0-9_-]{22,})';.*", csp)
        assert nonce is not None, csp
        scripts = re.findall(r"<script([^>]*)>", first.text)
        assert scripts == [f' nonce="{nonce.group(1)}"']
        assert "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp and first.headers["X-Frame-Options"] == "DENY"
        nonces.append(nonce.group(1))
    assert nonces[0] != nonces[1]


def test_C8_a_form_post_replayed_in_another_browser_is_refused(stack: Stack) -> None:
    """Login CSRF: the attacker's own form post (their code, their state), made to run in the
    victim's browser, even one with an Apple login of its own in progress."""
    apple = _apple(stack)
    _, _, attackers = _form_post(stack, user="grace")
    victim = stack.browser()
    victim.start_login(provider="apple")  # the victim's own login cookie is there
    forced = victim.deliver(attackers)
    assert forced.status_code == 400
    assert "started in another browser" in forced.text
    assert apple.calls["token"] == 0
    assert _no_access_cookie(victim)


def test_C8_the_relay_posted_without_the_login_cookie_is_refused(stack: Stack) -> None:
    apple = _apple(stack)
    browser, _, callback = _form_post(stack)
    relay = _relay_page(browser.post_form(callback.url, callback.fields, cross_site=True))
    cross_site = browser.post_form(f"{stack.url}{relay.action}", relay.fields, cross_site=True)
    assert cross_site.status_code == 400
    assert apple.calls["token"] == 0
    assert _no_access_cookie(browser)
    replay = browser.post_form(f"{stack.url}{relay.action}", relay.fields)
    assert replay.status_code == 400 and "expired or was already used" in replay.text


def test_C8_a_form_post_that_carries_the_cookie_is_still_relayed_first(stack: Stack) -> None:
    """Also when the login cookie did come (cookies.samesite = "None", a same-site provider):
    only the marked relay finishes a login, one way for every browser."""
    apple = _apple(stack)
    browser, _, callback = _form_post(stack)
    first = browser.post_form(callback.url, callback.fields)  # with every cookie
    assert _relay_page(first).fields[-1] == ("gateway_relayed", "1")
    assert apple.calls["token"] == 0


def test_C8_only_apples_callback_takes_a_post_and_only_it_skips_the_xsrf_check(
        stack: Stack) -> None:
    browser = stack.browser()
    google_start = browser.start_login(provider="google")
    state = query_of(google_start.headers["location"])["state"][0]
    google_post = browser.post(f"{stack.url}/callback/google",
                               data={"state": state, "code": "4/0Acode"})
    assert google_post.status_code == 405
    assert stack.google.calls["token"] == 0
    _, _, callback = _form_post(stack, browser=browser)
    apple_get = browser.get(f"{stack.url}/callback/apple",
                            params={k: v[0] for k, v in callback.params.items()})
    assert apple_get.status_code == 405
    assert _apple(stack).calls["token"] == 0
    logout = browser.post(f"{stack.url}/logout")  # the XSRF check holds everywhere else
    assert logout.status_code == 403
    relay = browser.post_form(callback.url, callback.fields, cross_site=True)
    assert relay.status_code == 200  # no _xsrf, yet not refused


@pytest.mark.parametrize("case", ["oversized", "json", "multipart", "query", "long-user"])
def test_C8_H4_apples_form_post_is_form_encoded_bounded_and_in_the_body(
        stack: Stack, case: str) -> None:
    browser, _, callback = _form_post(stack)
    fields = dict(callback.fields)
    url, headers = callback.url, dict(FORM)
    body: str | bytes = httpx.QueryParams(fields).__str__()
    if case == "oversized":
        body = httpx.QueryParams({**fields, "padding": "x" * 9000}).__str__()
    elif case == "json":
        body, headers = '{"state": "s", "code": "c"}', {"Content-Type": "application/json"}
    elif case == "multipart":
        request = httpx.Request("POST", url, files={"f": ("f", b"x")}, data=fields)
        body, headers = request.read(), {"Content-Type": request.headers["Content-Type"]}
    elif case == "query":
        url = f"{url}?code=other"
    else:
        body = httpx.QueryParams({**fields, "user": "x" * 5000}).__str__()
    answer = browser.post(url, content=body, headers=headers, cross_site=True)
    assert answer.status_code == (413 if case == "oversized" else 400), answer.text
    assert "<form" not in answer.text and "Traceback" not in answer.text
    assert _apple(stack).calls["token"] == 0


# ---------------------------------------------------------------------------------------------
# SECURITY C7: what Apple vouches for, and the name it sends once


@pytest.mark.parametrize(("email_verified", "claimed"), [
    ("true", True), (True, True), ("false", False), (False, False), ("1", False),
])
def test_C7_apple_string_and_json_booleans(make_stack: Callable[..., Stack],
                                          email_verified: Any, claimed: bool) -> None:
    stack = make_stack()
    _apple(stack).id_token_overrides["email_verified"] = email_verified
    browser = stack.browser()
    assert browser.login(provider="apple").status_code == 302
    claims = _claims(browser, stack)
    assert (claims.get("email") == "ada@example.com") is claimed
    assert ("email_verified" in claims) is claimed


def test_C7_apple_private_relay_address_is_a_verified_email(stack: Stack) -> None:
    browser = stack.browser()
    assert browser.login(provider="apple", user="grace").status_code == 302
    claims = _claims(browser, stack)
    assert claims["email"] == "x7k2q9v4mt@privaterelay.appleid.com"
    assert claims["email_verified"] is True
    grace = _apple(stack).account("grace")
    assert grace is not None and grace.is_private_email is True  # JSON booleans for Grace
    assert claims["sub"] == f"apple:{grace.sub}"


def test_C7_apple_name_is_kept_across_logins(stack: Stack) -> None:
    ada = _apple(stack).account("ada")
    assert ada is not None
    browser, _, first = _form_post(stack)
    assert "user" in first.params  # the first authorization carries the name...
    assert browser.deliver(first).status_code == 302
    assert _claims(browser, stack)["name"] == "Ada Lovelace"
    browser, _, second = _form_post(stack)
    assert "user" not in second.params  # ...and no later one does
    assert browser.deliver(second).status_code == 302
    assert _claims(browser, stack)["name"] == "Ada Lovelace"
    kept = stack.loop.run(stack.ctx.store.get(NAMES_NAMESPACE, ada.sub))
    assert kept == {"name": "Ada Lovelace"}
    stack.loop.run(stack.ctx.store.delete(NAMES_NAMESPACE, ada.sub))  # what kept it
    browser = stack.browser()
    assert browser.login(provider="apple").status_code == 302
    assert "name" not in _claims(browser, stack)


def test_C7_apple_user_field_email_is_ignored(stack: Stack) -> None:
    """The `user` field is unsigned: its email is never claimed, not even for an account whose
    own email Apple does not vouch for; its name is (a user names themselves anyway)."""
    forged = '{"name":{"firstName":"Mallory","lastName":"M"},"email":"boss@example.test"}'
    for user, email in (("ada", "ada@example.com"), ("alan", None)):
        browser, _, callback = _form_post(stack, user=user)
        tampered = Callback(callback.url, "POST", tuple(
            (name, forged if name == "user" else value) for name, value in callback.fields))
        assert browser.deliver(tampered).status_code == 302
        claims = _claims(browser, stack)
        assert claims.get("email") == email
        assert claims["name"] == "Mallory M"


# ---------------------------------------------------------------------------------------------
# SECURITY C3 for Apple: the id_token is checked


@pytest.mark.parametrize("override", [
    {"iss": "https://appleid.apple.com.evil.test"}, {"aud": "com.example.other"},
    {"nonce": "not-the-login-nonce"}, {"nonce": None}, {"exp": 1_000_000_000},
    {"sub": None}, "foreign-key",
], ids=["iss", "aud", "nonce", "no-nonce", "exp", "no-sub", "foreign-key"])
def test_C3_apple_id_token_is_checked(make_stack: Callable[..., Stack],
                                      override: dict[str, Any] | str) -> None:
    stack = make_stack()
    apple = _apple(stack)
    if override == "foreign-key":
        apple.sign_id_token_with_foreign_key = True
    else:
        assert isinstance(override, dict)
        apple.id_token_overrides.update(override)
    browser = stack.browser()
    answer = browser.login(provider="apple")
    assert answer.status_code == 502
    assert "could not be verified" in answer.text
    assert _no_access_cookie(browser)


# ---------------------------------------------------------------------------------------------
# The client secret: kept, and renewed before it expires


def test_apple_client_secret_is_renewed_before_it_expires(stack: Stack,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    apple, connector = _apple(stack), _connector(stack)
    real_clock = connector.clock
    shift = [0.0]

    def gateway_clock() -> float:
        return real_clock() + shift[0]

    monkeypatch.setattr(connector, "clock", gateway_clock)
    monkeypatch.setattr(connector.client_secret, "_clock", gateway_clock)
    assert stack.browser().login(provider="apple").status_code == 302
    assert stack.browser().login(provider="apple").status_code == 302
    first = apple.client_secrets[-1]
    assert apple.client_secrets == [first, first]  # kept, not signed at every login
    # A day later at Apple: the secret the gateway still holds has expired, and Apple says so.
    monkeypatch.setattr(apple, "clock", lambda: real_clock() + CLIENT_SECRET_LIFETIME + 1)
    refused = stack.browser().login(provider="apple")
    assert refused.status_code == 502
    assert apple.client_secrets[-1] == first
    # The gateway's own clock at half the lifetime: it has made a new one already.
    shift[0] = CLIENT_SECRET_LIFETIME / 2
    monkeypatch.setattr(apple, "clock", gateway_clock)
    assert stack.browser().login(provider="apple").status_code == 302
    renewed = apple.client_secrets[-1]
    assert renewed != first
    claims = jwt.decode(renewed, options={"verify_signature": False})
    assert claims["exp"] - gateway_clock() > CLIENT_SECRET_LIFETIME / 2 - 60
