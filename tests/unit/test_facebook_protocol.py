"""Facebook's protocol logic as plain functions: profile -> identity, the picture URL, the
token answer, `appsecret_proof`, and what of a Graph API error reaches our log."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest, HTTPResponse

from gateway.dev.standins import facebook as standin
from gateway.errors import UpstreamError
from gateway.providers.facebook import (
    access_token_of,
    appsecret_proof,
    identity_from_facebook,
    picture_url,
)
from gateway.upstream.client import _oauth_error_of

PICTURE = "https://platform-lookaside.fbsbx.com/platform/profilepic/?asid=10123&height=200"
PROFILE: dict[str, Any] = {
    "id": "10158812345678901",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "picture": {"data": {"height": 200, "width": 200, "is_silhouette": False, "url": PICTURE}},
}


def test_a_full_profile_becomes_an_identity_with_a_verified_email() -> None:
    identity = identity_from_facebook(PROFILE)
    assert identity.sub == "facebook:10158812345678901"
    assert identity.idp == "facebook"
    assert identity.profile_claims() == {
        "idp": "facebook", "email": "ada@example.com", "email_verified": True,
        "name": "Ada Lovelace", "picture": PICTURE}


@pytest.mark.parametrize("email", [None, "", 42, ["ada@example.com"]])
def test_C5_no_usable_email_means_no_email_claim(email: Any) -> None:
    profile = {**PROFILE, "email": email}
    identity = identity_from_facebook(profile)
    assert identity.email is None and identity.email_verified is False
    assert "email" not in identity.profile_claims()
    assert "email_verified" not in identity.profile_claims()


def test_C5_a_declined_email_is_simply_absent() -> None:
    profile = {k: v for k, v in PROFILE.items() if k != "email"}
    assert "email" not in identity_from_facebook(profile).profile_claims()


@pytest.mark.parametrize("subject", [None, "", 10158812345678901, "ada", "101:58", "10 15",
                                     "١٠١٥٨", "1" * 65, True])
def test_a_profile_without_an_app_scoped_id_is_refused(subject: Any) -> None:
    with pytest.raises(UpstreamError) as refused:
        identity_from_facebook({**PROFILE, "id": subject})
    assert refused.value.provider == "facebook"


def test_name_and_picture_are_optional() -> None:
    identity = identity_from_facebook({"id": "123"})
    assert identity.profile_claims() == {"idp": "facebook"}


@pytest.mark.parametrize("url", [PICTURE, "http://example.test/p.jpg",
                                 "HTTPS://scontent.xx.fbcdn.net/v/p.jpg"])
def test_http_and_https_pictures_are_kept(url: str) -> None:
    assert picture_url({"data": {"url": url}}) == url


@pytest.mark.parametrize("picture", [
    {"data": {"url": "javascript:alert(1)"}},
    {"data": {"url": "data:image/svg+xml;base64,PHN2Zz4="}},
    {"data": {"url": "//evil.example/p.jpg"}},
    {"data": {"url": "https://"}},
    {"data": {"url": "https://a.example/p.jpg\nSet-Cookie: x"}},
    {"data": {"url": " https://a.example/p.jpg"}},
    {"data": {"url": "https://a.example/" + "p" * 3000}},
    {"data": {"url": 42}},
    {"data": "https://a.example/p.jpg"},
    {"url": PICTURE},
    PICTURE,
    None,
])
def test_any_other_picture_is_dropped(picture: Any) -> None:
    assert picture_url(picture) is None
    assert identity_from_facebook({**PROFILE, "picture": picture}).picture is None


def test_the_token_answer_must_hold_a_bearer_access_token() -> None:
    assert access_token_of({"access_token": "EAAx", "token_type": "bearer",
                            "expires_in": 5183944}) == "EAAx"
    assert access_token_of({"access_token": "EAAx"}) == "EAAx"
    for answer in ({}, {"access_token": ""}, {"access_token": 1},
                   {"access_token": "EAAx", "token_type": "mac"}):
        with pytest.raises(UpstreamError):
            access_token_of(answer)


def test_appsecret_proof_is_the_hex_hmac_sha256_of_the_token_keyed_by_the_app_secret() -> None:
    # echo -n EAAtoken | openssl dgst -sha256 -hmac app-secret
    expected = "9f9f0867bc3df2d00cecd6aa6fb78e65b64c050401bd6ec5b84d98503d443d34"
    assert appsecret_proof("app-secret", "EAAtoken") == expected
    assert standin.appsecret_proof("app-secret", "EAAtoken") == expected


def _failed(body: Any, code: int = 400) -> HTTPResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HTTPResponse(HTTPRequest("https://graph.example/"), code, buffer=io.BytesIO(raw))


def test_a_graph_api_error_is_logged_by_type_and_code_only() -> None:
    response = _failed({"error": {"message": "Invalid OAuth access token EAAsecret",
                                  "type": "OAuthException", "code": 190,
                                  "fbtrace_id": "AbC"}})
    assert _oauth_error_of(response) == " error=OAuthException code=190"


@pytest.mark.parametrize(("body", "logged"), [
    ({"error": "invalid_grant", "error_description": "Bad Request"}, " error=invalid_grant"),
    ({"error": {"type": "OAuth\nException", "code": "190"}}, ""),
    ({"error": {"type": "x" * 80, "code": True}}, ""),
    ({"error": {"type": "GraphMethodException", "code": -1}}, " error=GraphMethodException"),
    ({"error": "forged\nupstream failure provider=google"}, ""),
    (b"<html>", ""),
])
def test_nothing_else_of_an_error_body_reaches_the_log(body: Any, logged: str) -> None:
    assert _oauth_error_of(_failed(body)) == logged


