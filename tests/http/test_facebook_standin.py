"""The Facebook stand-in speaks Facebook's protocol: the Login dialog, the code exchange and
the Graph API's /me, each refusing what Facebook refuses (driven directly over HTTP)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from conftest import FormParser, Stack, query_of

from gateway.dev.standins.facebook import DEV_USERS, FacebookStandIn, appsecret_proof
from gateway.transactions import pkce_s256_challenge

VERSION = "v26.0"


@pytest.fixture
def standin(stack: Stack) -> FacebookStandIn:
    facebook = stack.standin("facebook")
    assert isinstance(facebook, FacebookStandIn)
    return facebook


def _dialog_params(standin: FacebookStandIn, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": standin.client_id,
        "redirect_uri": standin.redirect_uris[0],
        "response_type": "code",
        "scope": "public_profile,email",
        "state": "state-123",
        **overrides,
    }
    return {k: v for k, v in params.items() if v is not None}


def _choose(standin: FacebookStandIn, params: dict[str, str], *, user: str = "ada",
            version: str = VERSION, decision: str | None = None) -> httpx.Response:
    page = httpx.get(f"{standin.base_url}/{version}/dialog/oauth", params=params)
    assert page.status_code == 200, page.text
    form = FormParser()
    form.feed(page.text)
    assert form.action is not None
    data = {**form.inputs, **({"decision": decision} if decision else {"user": user})}
    return httpx.post(f"{standin.base_url}{form.action}", data=data)


def _code(standin: FacebookStandIn, **kwargs: Any) -> str:
    params = _dialog_params(standin, **kwargs.pop("dialog", {}))
    back = _choose(standin, params, **kwargs)
    assert back.status_code == 302
    return query_of(back.headers["location"])["code"][0]


def _exchange(standin: FacebookStandIn, code: str, **overrides: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "client_id": standin.client_id,
        "client_secret": standin.client_secret,
        "redirect_uri": standin.redirect_uris[0],
        "code": code,
        **overrides,
    }
    return httpx.post(f"{standin.base_url}/{VERSION}/oauth/access_token",
                      data={k: v for k, v in form.items() if v is not None})


def _access_token(standin: FacebookStandIn, **kwargs: Any) -> str:
    answer = _exchange(standin, _code(standin, **kwargs))
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def _me(standin: FacebookStandIn, token: str, proof: str | None = "right",
        fields: str | None = "id,name") -> httpx.Response:
    params = {"fields": fields} if fields is not None else {}
    if proof is not None:
        params["appsecret_proof"] = (appsecret_proof(standin.client_secret, token)
                                     if proof == "right" else proof)
    return httpx.get(f"{standin.base_url}/{VERSION}/me", params=params,
                     headers={"Authorization": f"Bearer {token}"})


def _graph_error(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 400, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(error)
    return error


@pytest.mark.parametrize("overrides", [
    {"client_id": "1234567890"},
    {"redirect_uri": "https://evil.example/callback/facebook"},
    {"redirect_uri": None},
])
def test_R3_unknown_client_or_unregistered_redirect_uri_is_an_error_page(
        standin: FacebookStandIn, overrides: dict[str, str | None]) -> None:
    page = httpx.get(f"{standin.base_url}/{VERSION}/dialog/oauth",
                     params=_dialog_params(standin, **overrides))
    assert page.status_code == 400
    assert "location" not in page.headers
    assert page.headers["content-type"].startswith("text/html")
    assert "Facebook" in page.text and "<form" not in page.text


def test_dialog_refuses_unknown_scopes(standin: FacebookStandIn) -> None:
    page = httpx.get(f"{standin.base_url}/{VERSION}/dialog/oauth",
                     params=_dialog_params(standin, scope="email,user_posts"))
    assert page.status_code == 400 and "user_posts" in page.text


def test_cancel_redirects_back_with_facebooks_denial_parameters(standin: FacebookStandIn) -> None:
    back = _choose(standin, _dialog_params(standin), decision="deny")
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith(standin.redirect_uris[0] + "?")
    assert location.endswith("#_=_")
    assert "error_description=Permissions+error" in location
    assert {k: v[0] for k, v in query_of(location).items()} == {
        "error": "access_denied", "error_code": "200", "error_description": "Permissions error",
        "error_reason": "user_denied", "state": "state-123"}


def test_code_exchange_answers_a_bearer_token_by_post_or_by_get(standin: FacebookStandIn) -> None:
    posted = _exchange(standin, _code(standin))
    assert posted.status_code == 200
    assert set(posted.json()) == {"access_token", "token_type", "expires_in"}
    assert posted.json()["token_type"] == "bearer"
    # The documented form: a GET with everything in the query string.
    got = httpx.get(f"{standin.base_url}/{VERSION}/oauth/access_token", params={
        "client_id": standin.client_id, "client_secret": standin.client_secret,
        "redirect_uri": standin.redirect_uris[0], "code": _code(standin)})
    assert got.status_code == 200 and got.json()["access_token"].startswith("EAA")


def test_code_is_single_use(standin: FacebookStandIn) -> None:
    code = _code(standin)
    assert _exchange(standin, code).status_code == 200
    error = _graph_error(_exchange(standin, code))
    assert error["type"] == "OAuthException" and error["code"] == 100
    assert "has been used" in error["message"]


def test_code_expires(standin: FacebookStandIn) -> None:
    code = _code(standin)
    real_clock = standin.clock
    standin.clock = lambda: real_clock() + 601
    try:
        error = _graph_error(_exchange(standin, code))
    finally:
        standin.clock = real_clock
    assert "expired" in error["message"]


def test_redirect_uri_must_be_identical_to_the_dialogs(standin: FacebookStandIn) -> None:
    code = _code(standin)
    error = _graph_error(_exchange(standin, code,
                                   redirect_uri=standin.redirect_uris[0] + "/other"))
    assert error["code"] == 100 and "redirect_uri is identical" in error["message"]
    # The refused code is spent: a retry with the right redirect_uri fails too.
    assert _exchange(standin, code).status_code == 400


@pytest.mark.parametrize(("overrides", "code"), [
    ({"client_secret": "0" * 32}, 1),
    ({"client_secret": None}, 1),
    ({"client_id": "1234567890"}, 101),
])
def test_client_must_authenticate(standin: FacebookStandIn, overrides: dict[str, str | None],
                                  code: int) -> None:
    error = _graph_error(_exchange(standin, _code(standin), **overrides))
    assert error["code"] == code


def test_S2_pkce_verifier_is_required_and_checked(standin: FacebookStandIn) -> None:
    verifier = secrets.token_urlsafe(48)
    dialog = {"code_challenge": pkce_s256_challenge(verifier), "code_challenge_method": "S256"}
    assert _graph_error(_exchange(standin, _code(standin, dialog=dialog)))["code"] == 100
    wrong = _exchange(standin, _code(standin, dialog=dialog),
                      code_verifier=secrets.token_urlsafe(48))
    assert "code verifier" in _graph_error(wrong)["message"]
    right = _exchange(standin, _code(standin, dialog=dialog), code_verifier=verifier)
    assert right.status_code == 200


def test_me_requires_a_valid_access_token(standin: FacebookStandIn) -> None:
    assert _graph_error(_me(standin, "EAAnot-a-token"))["code"] == 190
    missing = httpx.get(f"{standin.base_url}/{VERSION}/me", params={"fields": "id"})
    assert _graph_error(missing)["code"] == 2500


@pytest.mark.parametrize("proof", [None, "0" * 64, "not-hex"])
def test_me_refuses_a_missing_or_wrong_appsecret_proof(standin: FacebookStandIn,
                                                       proof: str | None) -> None:
    token = _access_token(standin)
    error = _graph_error(_me(standin, token, proof=proof))
    assert error["code"] == 100 and error["type"] == "GraphMethodException"
    assert "appsecret_proof" in error["message"]
    assert _me(standin, token).status_code == 200


def test_a_proof_made_with_another_apps_secret_is_refused(standin: FacebookStandIn) -> None:
    token = _access_token(standin)
    foreign = appsecret_proof(secrets.token_hex(16), token)
    assert "Invalid appsecret_proof" in _graph_error(_me(standin, token, proof=foreign))["message"]


def test_me_answers_only_the_requested_fields(standin: FacebookStandIn) -> None:
    ada = next(u for u in DEV_USERS if u.key == "ada")
    token = _access_token(standin)
    assert _me(standin, token, fields=None).json() == {"id": ada.id, "name": ada.name}
    full = _me(standin, token, fields="id,name,email,picture.type(large)").json()
    assert full["email"] == ada.email
    assert full["picture"] == {"data": {"height": 200, "width": 200, "is_silhouette": False,
                                        "url": ada.avatar.url(standin.base_url)}}
    assert "first_name" not in full
    assert _graph_error(_me(standin, token, fields="id,birthday"))["code"] == 100


def test_email_only_when_granted_and_shared(standin: FacebookStandIn) -> None:
    alan = _access_token(standin, user="alan")
    assert "email" not in _me(standin, alan, fields="id,email").json()
    without_scope = _access_token(standin, dialog={"scope": "public_profile"})
    assert "email" not in _me(standin, without_scope, fields="id,email").json()


def test_any_version_is_served_and_recorded(standin: FacebookStandIn) -> None:
    code = _code(standin, version="v12.0")
    answer = httpx.post(f"{standin.base_url}/v12.0/oauth/access_token", data={
        "client_id": standin.client_id, "client_secret": standin.client_secret,
        "redirect_uri": standin.redirect_uris[0], "code": code})
    assert answer.status_code == 200
    assert standin.versions_called == {"v12.0"}
    assert httpx.get(f"{standin.base_url}/me").status_code == 404  # unversioned: not served
