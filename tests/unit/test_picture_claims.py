"""The picture claim is an absolute http(s) URL or nothing, from every provider's profile shape
(gateway/identity.py checked_picture_url)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import TEST_DATA

from gateway.identity import Identity, checked_picture_url
from gateway.providers.facebook import identity_from_facebook
from gateway.providers.github import identity_from_github
from gateway.providers.google import identity_from_google
from gateway.providers.twitter import identity_from_x_v1, identity_from_x_v2

# oauth2-proxy's open-redirect payloads: source and license in tests/data/README.md.
CORPUS = TEST_DATA / "openredirects.txt"
BAD_PICTURES = [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:image/svg+xml,<svg onload=alert(1)>",
    "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "//evil.example/p.jpg",
    "/relative/p.jpg", "p.jpg", "https://", "https:///p.jpg", "ftp://a.example/p.jpg",
    "https://a.example/p.jpg\r\nSet-Cookie: x=1", " https://a.example/p.jpg",
    "https://a.example/p .jpg", "https://a.example/\u00e9.jpg", "https://[zz]/p.jpg",
    "https://a.example/" + "p" * 2100, "", 42, None, ["https://a.example/p.jpg"],
    {"url": "https://a.example/p.jpg"},
]
GOOD_PICTURES = ["https://lh3.googleusercontent.com/a/ACg8ocK=s96-c",
                 "https://pbs.twimg.com/profile_images/1/a_normal.jpg",
                 "HTTPS://scontent.xx.fbcdn.net/v/p.jpg?stp=1&oh=2", "http://127.0.0.1:8081/a"]

# Each provider's profile document with the picture where that provider puts it.
PROFILES: dict[str, Callable[[Any], Identity]] = {
    "google id_token": lambda p: identity_from_google({"sub": "1", "picture": p}, {}),
    "google userinfo": lambda p: identity_from_google({"sub": "1"}, {"sub": "1", "picture": p}),
    "facebook": lambda p: identity_from_facebook({"id": "10", "picture": {"data": {"url": p}}}),
    "x v2": lambda p: identity_from_x_v2({"id": "12", "profile_image_url": p}),
    "x v1.1": lambda p: identity_from_x_v1({"id_str": "12", "profile_image_url_https": p}),
    "github": lambda p: identity_from_github({"id": 12, "avatar_url": p}, None),
}


@pytest.mark.parametrize("picture", BAD_PICTURES, ids=lambda p: repr(p)[:40])
@pytest.mark.parametrize("provider", PROFILES)
def test_a_picture_that_is_not_an_http_url_is_dropped(provider: str, picture: Any) -> None:
    identity = PROFILES[provider](picture)
    assert identity.picture is None
    assert "picture" not in identity.profile_claims()


@pytest.mark.parametrize("picture", GOOD_PICTURES)
@pytest.mark.parametrize("provider", PROFILES)
def test_an_http_picture_url_is_kept_as_sent(provider: str, picture: str) -> None:
    assert PROFILES[provider](picture).profile_claims()["picture"] == picture


def test_no_open_redirect_payload_passes_as_anything_but_an_http_url() -> None:
    """oauth2-proxy's 559 open-redirect payloads (tests/data): each is dropped, or kept as an
    absolute http(s) URL with a host (never a scheme-relative, javascript: or data: one)."""
    if not CORPUS.is_file():
        pytest.fail(f"the open-redirect corpus is missing: {CORPUS} (tests/data/README.md)",
                    pytrace=False)
    payloads = CORPUS.read_text(encoding="utf-8").splitlines()
    assert len(payloads) > 500
    kept = 0
    for payload in payloads:
        checked = checked_picture_url(payload)
        if checked is not None:
            kept += 1
            assert checked == payload
            assert checked.lower().startswith(("https://", "http://")), payload
            assert checked.isascii() and checked.isprintable() and " " not in checked
    assert 0 < kept < len(payloads)
