"""One contract for every connector (Google, Facebook, X over OAuth 2.0, X over OAuth 1.0a,
GitHub, Microsoft, Apple, a generic OpenID provider):
what a login must do whatever the provider, over real HTTP against each stand-in. Each
provider's own file keeps only its protocol's tests (the authorization request, the code
exchange's shape, the provider's error formats).

A new connector joins by adding one `Provider` to PROVIDERS; where a provider genuinely
differs, its description says so (an OAuth 1.0a callback carries no `error`, one request
token cookie per browser, Apple comes back with a cross-site form post and has no pictures),
never a silent skip. A callback is a `Callback` (conftest.py): a redirect, or a form post that
the test browser sends cross-site, without its SameSite=Lax cookies, as browsers do."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from conftest import Browser, Callback, Stack, query_of
from oauthlib.oauth1.rfc5849 import signature
from provider_support import assert_clear_error

from gateway.dev.standins import apple, facebook, github, google, microsoft, oidc, x_common
from gateway.dev.standins.common import Fault

RETURN_TO = "https://app.example.test/dashboard?tab=1"
APP_SETTINGS = {"allowed_return_urls": ["https://app.example.test/"]}
RETRY_LINK = "return_to=https%3A%2F%2Fapp.example.test%2Fdashboard"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens


def _oauth2_callback(stack: Stack, start: httpx.Response) -> str:
    """The callback an OAuth 2.0 login asks for: the authorization request's redirect_uri."""
    return query_of(start.headers["location"])["redirect_uri"][0]


def _oauth1_callback(stack: Stack, start: httpx.Response) -> str:
    """The callback an OAuth 1.0a login asks for: the request token request's oauth_callback."""
    request = stack.standin("twitter").oauth1_requests[-1]
    return dict(signature.collect_parameters(
        headers={"Authorization": request.authorization}))["oauth_callback"]


def _oauth2_decline(start_location: str) -> dict[str, list[str]]:
    return {"error": ["access_denied"], "state": query_of(start_location)["state"]}


def _x_secrets(x: Any) -> list[str]:
    token_secrets = [secret for secret, _ in x._access_tokens.values()]  # OAuth 1.0a's
    return [*token_secrets, x.client_secret, x.consumer_secret]


@dataclass(frozen=True)
class Provider:
    """What the contract needs to know about a connector and its stand-in."""

    id: str  # the test id
    name: str  # /login/<name>, /callback/<name>, the idp claim, the sub's prefix
    display: str  # the brand on buttons and pages
    config: dict[str, Any]  # the `providers` section that enables it as tested here
    # The stand-in's endpoints (its `faults` keys) the gateway calls: while sending the browser
    # upstream, then on the callback, in order (the code or token exchange first).
    begin_endpoints: tuple[str, ...]
    callback_endpoints: tuple[str, ...]
    unreachable: dict[str, Any]  # configuration that points the code exchange nowhere
    accounts: Sequence[Any]  # the stand-in's test accounts
    subject: Callable[[Any], str]  # an account's id at the provider
    verified_email: Callable[[Any], str | None]  # what the provider vouches for
    decline_query: Callable[[str], dict[str, list[str]]]  # the redirect back after "deny"
    callback_sent: Callable[[Stack, httpx.Response], str]  # the callback URL sent upstream
    issued_tokens: Callable[[Any], list[str]]  # the access tokens the stand-in gave out
    upstream_secrets: Callable[[Any], list[str]]  # client secret, token secret, token parts
    transaction_param: str = "state"  # what brings the login transaction's key back
    code_param: str = "code"
    # OAuth 2.0 callbacks carry `error=`; an OAuth 1.0a callback only `denied=`, so another
    # error there is a callback without a verifier: a 400, not the provider's 502.
    error_status: int = 502
    # OAuth 1.0a keeps the request token secret in one cookie per browser (SECURITY S4): of
    # logins started in several tabs, only the last can finish.
    one_login_at_a_time: bool = False
    binding_cookie: str | None = None
    other: str = "google"  # another provider, for mix-up and switching tests
    # How the provider sends the browser back: a redirect (GET), or Apple's cross-site form
    # post (POST, SECURITY C8).
    callback_method: str = "GET"
    # Where its section is under [providers] when not at its name (a generic OpenID provider:
    # ("oidc", "<name>")).
    section_path: tuple[str, ...] = ()
    # A generic OpenID provider's failing discovery (its begin endpoint) is a 503 page saying
    # the provider is unavailable, whatever the failure; None: the failure's own answer.
    begin_failure: tuple[int, str] | None = None
    # Points the code exchange nowhere through the stand-in (its discovery document), for a
    # provider whose endpoints are not in the configuration.
    make_unreachable: Callable[[Any], None] | None = None
    # Microsoft's ID token carries no picture (its photo is a Graph API call we do not make);
    # Apple shares none.
    has_picture: bool = True

    @property
    def exchange(self) -> str:
        return self.callback_endpoints[0]

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.begin_endpoints + self.callback_endpoints

    def account(self, key: str) -> Any:
        return next(a for a in self.accounts if a.key == key)

    def sub(self, key: str) -> str:
        return f"{self.name}:{self.subject(self.account(key))}"

    def picture(self, stack: Stack, account: Any) -> str | None:
        """The `picture` claim of `account`'s tokens."""
        if not self.has_picture:
            return None
        url: str = account.avatar.url(stack.standin(self.name).base_url)
        return url

    def stack(self, make_stack: Callable[..., Stack], providers: dict[str, Any] | None = None,
              **overrides: Any) -> Stack:
        *parents, name = self.section_path or (self.name,)
        config: dict[str, Any] = {**self.config}
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = {**node.get(name, {}), **(providers or {})}
        return make_stack(providers=config, **overrides)

    def failure(self, endpoint: str, status: int | tuple[int, ...], words: str
                ) -> tuple[int | tuple[int, ...], str]:
        """What the gateway answers when `endpoint` fails as `status` and `words` say."""
        if endpoint in self.begin_endpoints and self.begin_failure is not None:
            return self.begin_failure
        return status, words


X_OAUTH2 = Provider(
    id="x-oauth2", name="twitter", display="X", config={},
    begin_endpoints=(), callback_endpoints=("token", "me"),
    unreachable={"token_url": f"{UNREACHABLE}/2/oauth2/token"},
    accounts=x_common.DEV_USERS, subject=lambda a: a.id,
    verified_email=lambda a: a.email if a.email_confirmed else None,
    decline_query=_oauth2_decline, callback_sent=_oauth2_callback,
    issued_tokens=lambda x: list(x._bearer_tokens), upstream_secrets=_x_secrets)

def _oidc_decline(start_location: str) -> dict[str, list[str]]:
    """A generic provider's "deny": error and state, and its issuer (RFC 9207)."""
    issuer = urlsplit(start_location)._replace(path="", query="").geturl()
    return {**_oauth2_decline(start_location), "iss": [issuer]}


def _oidc_unreachable(standin: Any) -> None:
    standin.endpoint_overrides["token_endpoint"] = f"{UNREACHABLE}/token"


MICROSOFT = Provider(
    id="microsoft", name="microsoft", display="Microsoft", config={},
    begin_endpoints=("discovery",), callback_endpoints=("token", "jwks"),
    unreachable={}, accounts=microsoft.DEV_USERS, subject=lambda a: a.sub,
    verified_email=lambda a: a.email if a.xms_edov else None,
    decline_query=_oauth2_decline, callback_sent=_oauth2_callback,
    issued_tokens=lambda m: list(m._access_tokens),
    upstream_secrets=lambda m: [m.client_secret],
    begin_failure=(503, "unavailable"), make_unreachable=_oidc_unreachable, has_picture=False)

OIDC = Provider(
    id="oidc", name=oidc.DEV_NAME, display=oidc.DEV_DISPLAY_NAME, config={},
    begin_endpoints=("discovery",), callback_endpoints=("token", "jwks"),
    unreachable={}, accounts=oidc.DEV_USERS, subject=lambda a: a.sub,
    verified_email=lambda a: a.email if a.email_verified in (True, "true") else None,
    decline_query=_oidc_decline, callback_sent=_oauth2_callback,
    issued_tokens=lambda o: list(o._access_tokens),
    upstream_secrets=lambda o: [o.client_secret],
    section_path=("oidc", oidc.DEV_NAME), begin_failure=(503, "unavailable"),
    make_unreachable=_oidc_unreachable)

PROVIDERS = [
    Provider(
        id="google", name="google", display="Google", config={},
        begin_endpoints=(), callback_endpoints=("token", "jwks"),
        unreachable={"token_url": f"{UNREACHABLE}/token"},
        accounts=google.DEV_USERS, subject=lambda a: a.sub,
        verified_email=lambda a: a.email if a.email_verified else None,
        decline_query=_oauth2_decline, callback_sent=_oauth2_callback,
        issued_tokens=lambda g: list(g._access_tokens),
        upstream_secrets=lambda g: [g.client_secret], other="facebook"),
    Provider(
        id="facebook", name="facebook", display="Facebook", config={},
        begin_endpoints=(), callback_endpoints=("token", "me"),
        unreachable={"graph_url": UNREACHABLE},
        accounts=facebook.DEV_USERS, subject=lambda a: a.id,
        verified_email=lambda a: a.email,
        decline_query=lambda location: {
            "error": ["access_denied"], "error_code": ["200"],
            "error_description": ["Permissions error"], "error_reason": ["user_denied"],
            "state": query_of(location)["state"]},
        callback_sent=_oauth2_callback,
        issued_tokens=lambda f: list(f._access_tokens),
        upstream_secrets=lambda f: [*(t[3:20] for t in f._access_tokens), f.client_secret]),
    X_OAUTH2,
    # The same X, its accounts and ids, over the other protocol.
    dataclasses.replace(
        X_OAUTH2, id="x-oauth1", config={"twitter": {"mode": "oauth1"}},
        begin_endpoints=("request_token",),
        callback_endpoints=("access_token", "verify_credentials"),
        unreachable={"access_token_url": f"{UNREACHABLE}/oauth/access_token"},
        decline_query=lambda location: {"denied": query_of(location)["oauth_token"]},
        callback_sent=_oauth1_callback, issued_tokens=lambda x: list(x._access_tokens),
        transaction_param="oauth_token", code_param="oauth_verifier", error_status=400,
        one_login_at_a_time=True, binding_cookie="gw_x_request"),
    Provider(
        id="github", name="github", display="GitHub", config={},
        begin_endpoints=(), callback_endpoints=("token", "user", "emails"),
        unreachable={"token_url": f"{UNREACHABLE}/login/oauth/access_token"},
        accounts=github.DEV_USERS, subject=lambda a: str(a.id),
        verified_email=lambda a: a.verified_email,
        decline_query=lambda location: {
            "error": ["access_denied"],
            "error_description": ["The user has denied your application access."],
            "error_uri": [f"{github.DOCS}/apps/managing-oauth-apps/troubleshooting-"
                          "authorization-request-errors/#access-denied"],
            "state": query_of(location)["state"]},
        callback_sent=_oauth2_callback,
        issued_tokens=lambda g: list(g._access_tokens),
        upstream_secrets=lambda g: [g.client_secret]),
    MICROSOFT,
    OIDC,
    Provider(
        id="apple", name="apple", display="Apple", config={},
        begin_endpoints=(), callback_endpoints=("token", "jwks"),
        # One authority for every endpoint: the consent page is still the stand-in's
        # (_login_page).
        unreachable={"authority": UNREACHABLE},
        accounts=apple.DEV_USERS, subject=lambda a: a.sub,
        # Apple's booleans come as JSON booleans or as strings.
        verified_email=lambda a: a.email if a.email_verified in (True, "true") else None,
        decline_query=lambda location: {"error": ["user_cancelled_authorize"],
                                        "state": query_of(location)["state"]},
        callback_sent=_oauth2_callback,
        issued_tokens=lambda a: list(a._access_tokens),
        upstream_secrets=lambda a: [*a.client_secrets, *a._refresh_tokens],
        callback_method="POST", has_picture=False),
]


@pytest.fixture(params=PROVIDERS, ids=[p.id for p in PROVIDERS])
def provider(request: pytest.FixtureRequest) -> Provider:
    return request.param


@pytest.fixture
def stack(provider: Provider, make_stack: Callable[..., Stack]) -> Stack:
    return provider.stack(make_stack, login=APP_SETTINGS)


def _endpoint_params() -> list[Any]:
    return [pytest.param(p, endpoint, id=f"{p.id}-{endpoint}")
            for p in PROVIDERS for endpoint in p.endpoints]


def _callback(stack: Stack, p: Provider) -> str:
    return f"{stack.url}/callback/{p.name}"


def _consented(stack: Stack, p: Provider, user: str = "ada",
               return_to: str | None = None) -> tuple[Browser, httpx.Response, Callback]:
    """A browser back from the provider's consent page: the browser, the login's redirect
    upstream, and the callback the provider sent the browser to."""
    browser = stack.browser()
    start = browser.start_login(return_to, provider=p.name)
    assert start.status_code == 302, start.text
    back = browser.consent(start.headers["location"], user=user)
    callback = Callback.of(back)
    assert callback.method == p.callback_method, back.text
    return browser, start, callback


def _made_up_callback(stack: Stack, p: Provider, params: dict[str, str]) -> Callback:
    """A callback to the gateway with these parameters, sent the way `p` sends its own."""
    return Callback.with_params(_callback(stack, p), p.callback_method, params)


def _key_and_code(callback: Callback, p: Provider) -> tuple[str, str]:
    params = callback.params
    return params[p.transaction_param][0], params[p.code_param][0]


def _no_access_cookie(browser: Browser) -> bool:
    return not any(name.endswith("gw_access") for name in browser.cookies)


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith(("gateway", "tornado")))


# ---------------------------------------------------------------------------------------------
# A successful login


def test_full_login_flow_ends_at_return_to_with_a_verifiable_jwt(stack: Stack,
                                                                 provider: Provider) -> None:
    browser = stack.browser()
    done = browser.login(RETURN_TO, provider=provider.name)
    assert done.status_code == 302
    assert done.headers["location"] == RETURN_TO
    token = browser.access_token()
    verified = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"})
    assert verified.status_code == 200
    assert verified.headers["Cache-Control"] == "no-store"
    claims = verified.json()
    ada = provider.account("ada")
    assert claims["sub"] == provider.sub("ada")
    assert claims["idp"] == provider.name
    assert claims["email"] == ada.email and claims["email_verified"] is True
    assert claims["name"] == ada.name
    assert claims.get("picture") == provider.picture(stack, ada)
    assert claims["iss"] == stack.url and claims["aud"] == stack.url
    assert claims["exp"] - claims["iat"] == 600


def test_verify_accepts_the_access_cookie(stack: Stack, provider: Provider) -> None:
    browser = stack.browser()
    browser.login(RETURN_TO, provider=provider.name)
    verified = browser.get(f"{stack.url}/verify")
    assert verified.status_code == 200
    assert verified.json()["idp"] == provider.name


def test_jwt_verifies_independently_with_the_published_jwks(stack: Stack,
                                                            provider: Provider) -> None:
    browser = stack.browser()
    browser.login(RETURN_TO, provider=provider.name)
    token = browser.access_token()
    jwks = httpx.get(f"{stack.url}/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert "max-age" in jwks.headers["Cache-Control"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = next(k for k in jwks.json()["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key), algorithms=[key["alg"]],
                        audience=stack.url, issuer=stack.url)
    ada = provider.account("ada")
    assert claims["sub"] == provider.sub("ada")
    assert claims["idp"] == provider.name
    assert claims["email"] == ada.email and claims["email_verified"] is True
    assert claims["name"] == ada.name
    assert claims.get("picture") == provider.picture(stack, ada)
    assert len(claims["jti"]) >= 16


def test_C5_the_subject_is_the_providers_id_never_the_email(stack: Stack,
                                                             provider: Provider) -> None:
    browser = stack.browser()
    browser.login(user="grace", provider=provider.name)
    claims = browser.get(f"{stack.url}/verify").json()
    assert claims["sub"] == provider.sub("grace")
    assert "grace" not in claims["sub"]


def test_C5_unverified_email_is_not_claimed(stack: Stack, provider: Provider) -> None:
    alan = provider.account("alan")
    assert provider.verified_email(alan) is None  # no email, or one the provider does not vouch
    browser = stack.browser()
    assert browser.login(user="alan", provider=provider.name).status_code == 302
    claims = browser.get(f"{stack.url}/verify").json()
    assert "email" not in claims and "email_verified" not in claims
    assert claims["sub"] == provider.sub("alan")
    assert claims["name"] == alan.name


def test_R6_callback_redirects_to_a_clean_url_without_referrer(stack: Stack,
                                                               provider: Provider) -> None:
    done = stack.browser().login(RETURN_TO, provider=provider.name)
    assert done.headers["location"] == RETURN_TO
    assert "code=" not in done.headers["location"] and "state=" not in done.headers["location"]
    assert "oauth_" not in done.headers["location"]
    assert done.headers["Referrer-Policy"] == "no-referrer"
    assert done.headers["Cache-Control"] == "no-store"


def test_R5_login_redirect_ignores_the_host_header(stack: Stack, provider: Provider) -> None:
    port = urlsplit(stack.url).port
    start = httpx.get(f"http://127.0.0.1:{port}/login/{provider.name}",
                      headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert start.status_code == 302
    assert provider.callback_sent(stack, start) == _callback(stack, provider)


def test_home_page_offers_the_provider_and_shows_who_signed_in(stack: Stack,
                                                               provider: Provider) -> None:
    browser = stack.browser()
    before = browser.get(f"{stack.url}/")
    assert f"Sign in with {provider.display}" in before.text
    assert f'href="/login/{provider.name}?' in before.text
    browser.login(user="grace", provider=provider.name)
    after = browser.get(f"{stack.url}/")
    assert "Signed in as Grace Hopper" in after.text
    assert f"via {provider.display}" in after.text
    assert "Content-Security-Policy" in after.headers


def test_session_id_is_rotated_at_every_login_and_provider_switch(stack: Stack,
                                                                  provider: Provider) -> None:
    browser = stack.browser()

    def session() -> str:
        return next(v for n, v in browser.cookies.items() if n.endswith("gw_session"))

    browser.login(provider=provider.other)
    first = session()
    browser.login(provider=provider.name)
    second = session()
    browser.login(user="grace", provider=provider.name)
    third = session()
    assert len({first, second, third}) == 3
    claims = browser.get(f"{stack.url}/verify").json()
    assert claims["idp"] == provider.name and claims["name"] == "Grace Hopper"


def test_logins_started_in_several_tabs_each_complete_with_one_small_cookie(
        stack: Stack, provider: Provider) -> None:
    browser = stack.browser()
    starts = [browser.start_login(provider=provider.name) for _ in range(5)]
    assert len([n for n in browser.cookies if n.endswith("gw_login")]) == 1
    assert sum(len(k) + len(v) for k, v in browser.cookies.items()) < 1024
    backs = [browser.consent(start.headers["location"]) for start in starts]
    answers = [browser.return_from_provider(back).status_code for back in reversed(backs)]
    if provider.one_login_at_a_time:  # the cookie holds the last tab's request token only
        assert answers == [302, 400, 400, 400, 400]
    else:
        assert answers == [302] * 5


# ---------------------------------------------------------------------------------------------
# The callback: state (or request token), binding, parameters


def test_S1_S4_state_cannot_be_reused(stack: Stack, provider: Provider) -> None:
    browser, _, callback = _consented(stack, provider)
    assert browser.deliver(callback).status_code == 302
    replay = browser.deliver(callback)
    assert replay.status_code == 400
    assert "location" not in replay.headers
    assert "expired or was already used" in replay.text
    assert stack.standin(provider.name).calls[provider.exchange] == 1


def test_S1_state_is_bound_to_the_browser_that_started_the_login(stack: Stack,
                                                                  provider: Provider) -> None:
    _, _, callback = _consented(stack, provider)
    victim = stack.browser()
    forced = victim.deliver(callback)  # login CSRF: the attacker's callback in the victim's browser
    assert forced.status_code == 400
    assert _no_access_cookie(victim)
    assert stack.standin(provider.name).calls[provider.exchange] == 0


def test_S1_unknown_or_missing_state_is_refused(stack: Stack, provider: Provider) -> None:
    browser = stack.browser()
    browser.start_login(provider=provider.name)
    unknown = browser.deliver(_made_up_callback(stack, provider, {
        provider.transaction_param: "x" * 43, provider.code_param: "c"}))
    assert unknown.status_code == 400
    missing = browser.deliver(_made_up_callback(stack, provider, {provider.code_param: "c"}))
    assert missing.status_code == 400
    assert stack.standin(provider.name).calls[provider.exchange] == 0


def test_S1_expired_state_is_refused(stack: Stack, provider: Provider) -> None:
    browser, _, callback = _consented(stack, provider)
    lifetime = stack.dev.settings.login.transaction_lifetime
    store = stack.ctx.store
    real_clock = store.clock  # type: ignore[attr-defined]
    store.clock = lambda: real_clock() + lifetime + 1  # type: ignore[attr-defined]
    try:
        expired = browser.deliver(callback)
    finally:
        store.clock = real_clock  # type: ignore[attr-defined]
    assert expired.status_code == 400
    assert _no_access_cookie(browser)
    assert stack.standin(provider.name).calls[provider.exchange] == 0


def test_S6_another_providers_state_and_code_are_refused_before_any_token_request(
        stack: Stack, provider: Provider) -> None:
    other = next(p for p in PROVIDERS if p.name == provider.other)
    browser, _, other_callback = _consented(stack, other)
    state, code = _key_and_code(other_callback, other)
    mixed_up = browser.deliver(_made_up_callback(stack, provider, {
        provider.transaction_param: state, provider.code_param: code}))
    assert mixed_up.status_code == 400
    assert "started with another provider" in mixed_up.text
    assert stack.standin(provider.name).calls[provider.exchange] == 0
    assert stack.standin(other.name).calls[other.exchange] == 0
    assert _no_access_cookie(browser)


@pytest.mark.parametrize("repeated", ["transaction", "code"])
def test_S7_duplicate_callback_parameters_are_refused(stack: Stack, provider: Provider,
                                                      repeated: str) -> None:
    browser, _, callback = _consented(stack, provider)
    name = provider.transaction_param if repeated == "transaction" else provider.code_param
    answer = browser.deliver(callback.adding(name, "other"))
    assert answer.status_code == 400
    assert "more than once" in answer.text
    assert stack.standin(provider.name).calls[provider.exchange] == 0
    assert _no_access_cookie(browser)


def test_S8_tokens_on_the_front_channel_are_refused(stack: Stack, provider: Provider) -> None:
    browser, _, callback = _consented(stack, provider)
    answer = browser.deliver(callback.adding("access_token", "ya29.stolen"))
    assert answer.status_code == 400
    assert stack.standin(provider.name).calls[provider.exchange] == 0


def test_S8_upstream_error_description_is_never_reflected(stack: Stack,
                                                          provider: Provider) -> None:
    browser = stack.browser()
    start = browser.start_login(provider=provider.name)
    key = query_of(start.headers["location"])[provider.transaction_param][0]
    answer = browser.deliver(_made_up_callback(stack, provider, {
        provider.transaction_param: key, "error": "server_error",
        "error_description": "<script>alert('owned')</script> call +1-555-0199"}))
    assert answer.status_code == provider.error_status
    # Not "555" alone: the page's retry link holds the gateway's address, whose port may.
    assert "owned" not in answer.text and "555-0199" not in answer.text


def test_L1_C2_no_code_state_secret_or_token_in_the_logs_pages_or_cookies(
        stack: Stack, provider: Provider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser, start, callback = _consented(stack, provider)
    key, code = _key_and_code(callback, provider)
    done = browser.deliver(callback)
    assert done.status_code == 302
    token = browser.access_token()
    pages = [start.text, done.text, browser.get(f"{stack.url}/").text,
             browser.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {token}"}
                         ).text]
    logged = _server_log(caplog)
    assert f"/callback/{provider.name}" in logged  # the access log did run
    standin = stack.standin(provider.name)
    issued = provider.issued_tokens(standin)
    assert len(issued) == 1  # the one login's upstream access token
    upstream = [*issued, *provider.upstream_secrets(standin)]
    for secret in (code, key, token, *browser.cookies.values(),
                   stack.dev.settings.cookies.secret.reveal(), *upstream):
        assert secret not in logged
    for secret in upstream:  # the provider's tokens stay on the server
        assert not any(secret in page for page in pages)
        assert not any(secret in header for header in browser.set_cookie_headers)
        assert secret not in token


# ---------------------------------------------------------------------------------------------
# The user says no


def test_user_who_declines_sees_a_clear_page_with_a_way_to_retry(stack: Stack,
                                                                 provider: Provider) -> None:
    browser = stack.browser()
    start = browser.start_login(RETURN_TO, provider=provider.name)
    back = browser.consent(start.headers["location"], decision="deny")
    assert Callback.of(back).params == provider.decline_query(start.headers["location"])
    page = browser.return_from_provider(back)
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "cancelled" in page.text and "Try again" in page.text
    assert f'href="/login/{provider.name}?{RETRY_LINK}' in page.text
    assert "Permissions error" not in page.text  # S8: never reflected
    assert "Traceback" not in page.text
    assert _no_access_cookie(browser)
    if provider.binding_cookie is not None:
        assert not any(n.endswith(provider.binding_cookie) for n in browser.cookies)
    assert stack.standin(provider.name).calls[provider.exchange] == 0


def test_declined_login_answers_json_to_a_client_asking_for_json(stack: Stack,
                                                                 provider: Provider) -> None:
    browser = stack.browser()
    start = browser.start_login(provider=provider.name)
    back = browser.consent(start.headers["location"], decision="deny")
    answer = browser.return_from_provider(back, headers={"Accept": "application/json"})
    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"
    assert answer.json()["retry_url"].startswith(f"/login/{provider.name}")


# ---------------------------------------------------------------------------------------------
# The provider fails: a clear page with a way to retry, never a 500


def _login_with_fault(make_stack: Callable[..., Stack], p: Provider, endpoint: str,
                      fault: Fault, accept: str = "text/html", **overrides: Any
                      ) -> httpx.Response:
    """The gateway's answer at the step that calls `endpoint`, which answers with `fault`."""
    stack = p.stack(make_stack, **overrides)
    stack.standin(p.name).faults[endpoint] = fault
    browser = stack.browser()
    start = browser.start_login(provider=p.name)
    if endpoint in p.begin_endpoints:
        return start
    back = browser.consent(start.headers["location"])
    return browser.return_from_provider(back, headers={"Accept": accept})


@pytest.mark.parametrize("fault", [
    Fault(status=500, body='{"error": "internal <b>canary</b>"}'),
    Fault(status=503, body="<html>down</html>", content_type="text/html"),
], ids=["500", "503"])
@pytest.mark.parametrize(("provider", "endpoint"), _endpoint_params())
def test_a_5xx_from_the_provider_is_a_clear_page(make_stack, provider: Provider, endpoint: str,
                                                 fault: Fault) -> None:
    answer = _login_with_fault(make_stack, provider, endpoint, fault)
    assert_clear_error(answer, provider.name,
                       *provider.failure(endpoint, 502, "refused the request"))


@pytest.mark.parametrize(("provider", "endpoint"), _endpoint_params())
def test_a_provider_that_does_not_answer_in_time_is_a_504_page(make_stack, provider: Provider,
                                                               endpoint: str) -> None:
    answer = _login_with_fault(make_stack, provider, endpoint,
                               Fault(status=200, body="{}", delay=3),
                               upstream={"request_timeout": 0.5})
    assert_clear_error(answer, provider.name,
                       *provider.failure(endpoint, 504, "did not answer in time"))


@pytest.mark.parametrize(("provider", "endpoint"), _endpoint_params())
def test_a_provider_that_hangs_up_is_a_clear_page(make_stack, provider: Provider,
                                                  endpoint: str) -> None:
    answer = _login_with_fault(make_stack, provider, endpoint, Fault(status=0, delay=0.1),
                               upstream={"request_timeout": 2})
    assert_clear_error(answer, provider.name, *provider.failure(endpoint, (502, 504), ""))


def test_unreachable_provider_is_a_clear_page(make_stack, provider: Provider) -> None:
    stack = provider.stack(make_stack, providers=provider.unreachable)
    if provider.make_unreachable is not None:
        provider.make_unreachable(stack.standin(provider.name))
    browser = stack.browser()
    start = browser.start_login(provider=provider.name)
    # Apple's consent page is under the unreachable authority too: the user still meets the
    # stand-in's (a no-op for the others, whose consent page is configured apart).
    page = start.headers["location"].replace(UNREACHABLE, stack.standin(provider.name).base_url)
    back = browser.consent(page)
    assert_clear_error(browser.return_from_provider(back), provider.name, 502,
                       "could not be reached")


def test_oversized_provider_answer_is_refused(make_stack, provider: Provider) -> None:
    answer = _login_with_fault(make_stack, provider, provider.exchange,
                               Fault(status=200, body='{"a": "' + "x" * 100_000 + '"}'),
                               upstream={"max_response_bytes": 4096})
    assert_clear_error(answer, provider.name, 502, "")


def test_upstream_failure_answers_json_when_asked(make_stack, provider: Provider) -> None:
    answer = _login_with_fault(make_stack, provider, provider.callback_endpoints[-1],
                               Fault(status=400, body='{"error": "<b>canary</b>"}'),
                               accept="application/json")
    assert answer.status_code == 502
    assert answer.json()["error"] == "upstream_error"
    assert answer.json()["retry_url"].startswith(f"/login/{provider.name}")
    assert "canary" not in answer.text


def test_the_code_exchange_is_never_retried(make_stack, provider: Provider) -> None:
    stack = provider.stack(make_stack)
    standin = stack.standin(provider.name)
    standin.faults[provider.exchange] = Fault(status=500)
    browser, _, callback = _consented(stack, provider)
    assert browser.deliver(callback).status_code == 502
    assert standin.calls[provider.exchange] == 1
    assert all(standin.calls[e] == 0 for e in provider.callback_endpoints[1:])


@pytest.mark.parametrize(("provider", "endpoint"), _endpoint_params())
def test_a_failed_login_does_not_block_the_next_one(make_stack, provider: Provider,
                                                    endpoint: str) -> None:
    stack = provider.stack(make_stack)
    standin = stack.standin(provider.name)
    standin.faults[endpoint] = Fault(status=500)
    browser = stack.browser()
    start = browser.start_login(provider=provider.name)
    if endpoint in provider.begin_endpoints:
        assert start.status_code == provider.failure(endpoint, 502, "")[0]
    else:
        back = browser.consent(start.headers["location"])
        assert browser.return_from_provider(back).status_code == 502
    del standin.faults[endpoint]
    assert stack.browser().login(provider=provider.name).status_code == 302
