"""Login with Facebook over real HTTP against the Facebook stand-in: its own protocol (the
versioned dialog, the Graph API calls, appsecret_proof). What every provider's login shares is
in test_provider_contract.py."""

from __future__ import annotations

from urllib.parse import urlsplit

from conftest import Stack, query_of

from gateway.dev.standins.facebook import appsecret_proof
from gateway.transactions import pkce_s256_challenge

DEFAULT_VERSION = "v26.0"


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
