"""Rotation without logging anyone out: signing keys (SECURITY K3) and cookie secrets (SECURITY
K5, P3)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import tornado.web
from conftest import Stack
from oidc_support import (
    SPA_REDIRECT_URI,
    authorization_params,
    authorize_url,
    oidc_stack,
    redirect_params,
)

from gateway.cli import main
from gateway.config import CookieSettings, Secret, load_settings
from gateway.cookies import SIGNED_VALUE_MIN_VERSION, versioned_secrets
from gateway.errors import ConfigError, InvalidToken
from gateway.keys import (
    KeyDirectory,
    load_keyset,
    prunable_keys,
    select_signing_key,
    write_new_key,
)
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier

DELAY = 3600
LIFETIME = 600
LEEWAY = 30
T0 = 1_800_000_000  # when the first key was made


def policy() -> TokenPolicy:
    return TokenPolicy("https://login.example.com", ("https://login.example.com",), LIFETIME,
                       LEEWAY)


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def two_keys(tmp_path: Path, rotated_at: float = T0 + 86400) -> tuple[str, str]:
    """A first key made at T0 and a second one rotated in at `rotated_at`: their kids."""
    write_new_key(tmp_path, "ES256", now=T0)
    first = load_keyset(tmp_path, "ES256").signing.kid
    write_new_key(tmp_path, "ES256", now=rotated_at)
    second = next(k.kid for k in load_keyset(tmp_path, "ES256").keys if k.kid != first)
    return first, second


# ---------------------------------------------------------------------------------------------
# K3: which key signs, which keys are published


def test_K3_a_fresh_install_signs_with_its_only_key_at_once(tmp_path: Path) -> None:
    write_new_key(tmp_path, "ES256", now=T0)
    keyset = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=T0 + 1)
    assert keyset.signing is keyset.keys[0]


def test_K3_a_rotated_key_is_published_at_once_but_signs_after_the_delay(tmp_path: Path) -> None:
    rotated = T0 + 86400
    first, second = two_keys(tmp_path, rotated)

    before = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=rotated + DELAY - 1)
    after = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=rotated + DELAY)

    assert {k["kid"] for k in before.jwks()["keys"]} == {first, second}
    assert before.signing.kid == first
    assert after.signing.kid == second
    assert {k["kid"] for k in after.jwks()["keys"]} == {first, second}


def test_K3_a_key_rotated_in_before_the_first_is_due_still_waits(tmp_path: Path) -> None:
    write_new_key(tmp_path, "ES256", now=T0)
    write_new_key(tmp_path, "ES256", now=T0 + 60)
    keyset = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=T0 + 120)
    assert keyset.signing is keyset.keys[0]  # the oldest: the newest was published 60 s ago


def test_K3_selection_is_the_newest_active_key(tmp_path: Path) -> None:
    for made in (T0, T0 + 10_000, T0 + 20_000):
        write_new_key(tmp_path, "ES256", now=made)
    keys = load_keyset(tmp_path, "ES256").keys
    assert select_signing_key(keys, T0 + 10_000 + DELAY, DELAY) is keys[1]
    assert select_signing_key(keys, T0 + 20_000 + DELAY - 1, DELAY) is keys[1]
    assert select_signing_key(keys, T0 + 20_000 + DELAY, DELAY) is keys[2]


def test_K3_keyset_reselects_when_a_key_is_due(tmp_path: Path) -> None:
    rotated = T0 + 86400
    _, second = two_keys(tmp_path, rotated)
    keyset = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=rotated)
    assert keyset.reselect(rotated + 1) is keyset  # nothing changed: the same object
    assert keyset.reselect(rotated + DELAY).signing.kid == second


def test_K3_old_key_is_prunable_only_once_its_last_token_expired(tmp_path: Path) -> None:
    rotated = T0 + 86400
    first, _ = two_keys(tmp_path, rotated)
    keyset = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=rotated)
    retired_at = rotated + DELAY  # the first key signed its last token just before this
    assert prunable_keys(keyset, retired_at + LIFETIME + LEEWAY, LIFETIME, LEEWAY) == []
    pruned = prunable_keys(keyset, retired_at + LIFETIME + LEEWAY + 1, LIFETIME, LEEWAY)
    assert [k.kid for k in pruned] == [first]


def test_K3_signing_and_pending_keys_are_never_pruned(tmp_path: Path) -> None:
    first, _ = two_keys(tmp_path, T0 + 86400)
    keyset = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=T0 + 86400)
    # The second key is pending: the first still signs, however old it is.
    assert prunable_keys(keyset, T0 + 86400 + DELAY - 1, LIFETIME, LEEWAY) == []
    # Long after: the first only, never the one signing now.
    assert [k.kid for k in prunable_keys(keyset, T0 + 100 * 86400, LIFETIME, LEEWAY)] == [first]


def test_K3_a_key_is_never_visible_half_written(tmp_path: Path) -> None:
    path = write_new_key(tmp_path, "ES256")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no partial file left


# ---------------------------------------------------------------------------------------------
# K3: a running gateway reloads the directory


def test_K3_key_directory_sees_a_new_key_file(tmp_path: Path) -> None:
    now = [float(T0)]
    write_new_key(tmp_path, "ES256", now=T0)
    directory = KeyDirectory(tmp_path, "ES256", DELAY, clock=lambda: now[0])
    keyset = directory.load()
    assert directory.refresh(keyset) is keyset  # unchanged directory: nothing reloaded

    write_new_key(tmp_path, "ES256", now=T0 + 100)
    os.utime(tmp_path, ns=(0, keyset_mtime(tmp_path) + 1))  # as if a later write
    published = directory.refresh(keyset)
    assert len(published.keys) == 2
    assert published.signing.kid == keyset.signing.kid  # published, not signing yet

    now[0] = T0 + 100 + DELAY
    assert directory.refresh(published).signing.kid == published.keys[1].kid


def keyset_mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_K3_an_unreadable_new_key_keeps_the_current_keys(tmp_path: Path) -> None:
    write_new_key(tmp_path, "ES256", now=T0)
    directory = KeyDirectory(tmp_path, "ES256", DELAY)
    keyset = directory.load()
    (tmp_path / "key-20300101T000000Z.pem").write_bytes(b"not a key")
    assert directory.refresh(keyset) is keyset


def test_K3_verifier_keeps_tokens_of_published_keys_and_forgets_removed_ones(
        tmp_path: Path) -> None:
    two_keys(tmp_path, T0 + 86400)
    now = T0 + 86400 + DELAY
    old = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=now - 1)
    new = load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=now)
    old_token = TokenIssuer(old, policy(), clock=lambda: now).issue(
        "google:1", "https://login.example.com", {})
    verifier = TokenVerifier(old, policy(), clock=lambda: now)
    assert verifier.verify(old_token)["sub"] == "google:1"

    verifier.use_keyset(new)  # a rotation: the old key still published
    assert verifier.verify(old_token)["sub"] == "google:1"

    (tmp_path / f"key-{old.signing.created}.pem").unlink()  # pruned
    verifier.use_keyset(load_keyset(tmp_path, "ES256", activation_delay=DELAY, now=now))
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(old_token)
    assert refused.value.reason == "unknown kid"  # not served from the cache


# ---------------------------------------------------------------------------------------------
# K3: the command line


def test_K3_keys_prune_removes_only_keys_whose_tokens_expired(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = tmp_path / "keys"
    day = 86400
    write_new_key(keys_dir, "ES256", now=time.time() - 3 * day)
    write_new_key(keys_dir, "ES256", now=time.time() - 2 * day)  # signs since a day ago
    write_new_key(keys_dir, "ES256", now=time.time() - 60)  # pending
    before = sorted(p.name for p in keys_dir.glob("*.pem"))
    config = tmp_path / "gateway.toml"
    config.write_text(f'issuer = "https://login.example.com"\n'
                      f'[tokens]\nalgorithm = "ES256"\nkeys_dir = "{keys_dir}"\n'
                      f'[cookies]\nsecret = "{"Zq3vX9pL2mN8bR4tY7wK1sD6fH0jG5cA"}"\n')

    assert main(["keys", "prune", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    after = sorted(p.name for p in keys_dir.glob("*.pem"))
    assert after == before[1:]
    assert before[0] in out and "removed" in out

    assert main(["keys", "prune", "--config", str(config)]) == 0
    assert "nothing to prune" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# K3 end to end: nobody is logged out


def jwks_kids(stack: Stack) -> set[str]:
    return {k["kid"] for k in httpx.get(f"{stack.url}/.well-known/jwks.json").json()["keys"]}


def test_K3_rotation_logs_no_one_out_and_publishes_before_signing(
        make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(tokens={"key_activation_delay": 2, "key_reload_interval": 0.05})
    keys_dir = Path(stack.dev.settings.tokens.keys_dir)
    browser = stack.browser()
    browser.login()
    before = browser.access_token()
    old_kid = kid_of(before)

    assert main(["keys", "rotate", "--dir", str(keys_dir),
                 "--algorithm", stack.dev.settings.tokens.algorithm]) == 0
    new_kid = next(k.kid for k in load_keyset(keys_dir, stack.dev.settings.tokens.algorithm).keys
                   if k.kid != old_kid)

    deadline = time.monotonic() + 15
    published_at: float | None = None
    while True:
        assert time.monotonic() < deadline, "the new key never signed"
        if published_at is None and new_kid in jwks_kids(stack):
            published_at = time.monotonic()
        user = stack.browser()
        user.login()
        kid = kid_of(user.access_token())
        if kid == new_kid:
            # JWKS had the new key before any token signed by it appeared.
            assert published_at is not None
            break
        assert kid == old_kid

    # The token issued before the rotation still verifies, and the old key is still published.
    answer = httpx.get(f"{stack.url}/verify", headers={"Authorization": f"Bearer {before}"})
    assert answer.status_code == 200
    assert {old_kid, new_kid} <= jwks_kids(stack)
    fresh = httpx.get(f"{stack.url}/verify",
                      headers={"Authorization": f"Bearer {user.access_token()}"})
    assert fresh.status_code == 200


# ---------------------------------------------------------------------------------------------
# K5 / P3: cookie secrets

OLD = "Zq3vX9pL2mN8bR4tY7wK1sD6fH0jG5cA-old"
NEW = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z-new"
OTHER = "Qw8eRt5yUi2oPa9sDf6gHj3kLz7xCv1b-other"


def sign(cookies: CookieSettings, value: str) -> bytes:
    secrets, version = versioned_secrets(cookies)
    return tornado.web.create_signed_value(secrets, "gw_session", value, key_version=version)


def read(cookies: CookieSettings, signed: bytes) -> bytes | None:
    secrets, _ = versioned_secrets(cookies)
    return tornado.web.decode_signed_value(secrets, "gw_session", signed,
                                           min_version=SIGNED_VALUE_MIN_VERSION)


def test_K5_cookie_signed_with_the_previous_secret_still_works_after_rotation() -> None:
    before = CookieSettings(secret=Secret(OLD))
    after = CookieSettings(secret=Secret(NEW), previous_secrets=(Secret(OLD),))
    assert read(after, sign(before, "session-1")) == b"session-1"


def test_K5_cookie_signed_with_an_unknown_secret_is_refused() -> None:
    after = CookieSettings(secret=Secret(NEW), previous_secrets=(Secret(OLD),))
    assert read(after, sign(CookieSettings(secret=Secret(OTHER)), "session-1")) is None


def test_K5_a_dropped_previous_secret_takes_its_cookies_with_it() -> None:
    signed = sign(CookieSettings(secret=Secret(OLD)), "session-1")
    assert read(CookieSettings(secret=Secret(NEW)), signed) is None


def test_P3_previous_secrets_only_read_the_current_one_signs() -> None:
    after = CookieSettings(secret=Secret(NEW), previous_secrets=(Secret(OLD),))
    signed = sign(after, "session-2")
    assert read(CookieSettings(secret=Secret(NEW)), signed) == b"session-2"
    assert read(CookieSettings(secret=Secret(OLD)), signed) is None


def test_K5_versions_do_not_depend_on_the_order_of_previous_secrets() -> None:
    a = CookieSettings(secret=Secret(NEW), previous_secrets=(Secret(OLD), Secret(OTHER)))
    b = CookieSettings(secret=Secret(NEW), previous_secrets=(Secret(OTHER), Secret(OLD)))
    signed = sign(CookieSettings(secret=Secret(OTHER)), "s")
    assert read(a, signed) == read(b, signed) == b"s"


def test_K5_cookies_signed_before_versions_were_derived_still_work() -> None:
    legacy = tornado.web.create_signed_value({1: OLD}, "gw_session", "s", key_version=1)
    assert read(CookieSettings(secret=Secret(OLD)), legacy) == b"s"
    assert read(CookieSettings(secret=Secret(NEW), previous_secrets=(Secret(OLD),)),
                legacy) == b"s"


def settings_with(cookies: dict[str, Any], tmp_path: Path, dev_mode: bool = False) -> Any:
    return load_settings(None, {}, base={"issuer": "https://login.example.com",
                                         "tokens": {"keys_dir": str(tmp_path)},
                                         "cookies": {"secret": NEW, **cookies}},
                         dev_mode=dev_mode)


@pytest.mark.parametrize(("previous", "message"), [
    ("too-short-but-random-Zq3vX9", "at least 32 bytes"),
    ("a" * 40, "looks weak"),
    (NEW, "repeats"),
])
def test_P3_each_previous_secret_passes_the_secret_checks(tmp_path: Path, previous: str,
                                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        settings_with({"previous_secrets": [previous]}, tmp_path)
    assert refused.value.key == "cookies.previous_secrets[0]"


def test_P3_previous_secrets_are_read_from_files(tmp_path: Path) -> None:
    old = tmp_path / "old-secret"
    old.write_text(OLD + "\n")
    settings = settings_with({"previous_secrets_file": [str(old)]}, tmp_path)
    assert settings.cookies.previous_secrets == (Secret(OLD),)
    assert OLD not in repr(settings)


def test_P3_previous_secrets_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(None, {"GATEWAY_COOKIES__PREVIOUS_SECRETS": f"{OLD},{OTHER}"},
                             base={"issuer": "https://login.example.com",
                                   "tokens": {"keys_dir": str(tmp_path)},
                                   "cookies": {"secret": NEW}})
    assert settings.cookies.previous_secrets == (Secret(OLD), Secret(OTHER))


def _single_sign_on(make_stack: Callable[..., Stack], tmp_path: Path,
                    cookies: dict[str, Any]) -> httpx.Response:
    """Sign in at a gateway whose cookie secret is OLD, then ask a gateway restarted with
    `cookies` (same store) for an authorization code with that browser's session cookie."""
    store = {"url": f"sqlite:///{tmp_path / 'gateway.db'}"}
    before = oidc_stack(make_stack, store=store, cookies={"secret": OLD})
    browser = before.browser()
    browser.login()
    after = oidc_stack(make_stack, store=store, cookies=cookies)
    restarted = after.browser()
    restarted.cookies = dict(browser.cookies)
    return restarted.get(authorize_url(after, **authorization_params()))


def test_K5_a_session_survives_a_cookie_secret_rotation(make_stack: Callable[..., Stack],
                                                        tmp_path: Path) -> None:
    answer = _single_sign_on(make_stack, tmp_path, {"secret": NEW, "previous_secrets": [OLD]})
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(SPA_REDIRECT_URI)  # single sign-on: a code
    assert "code" in redirect_params(answer)


def test_K5_a_session_signed_with_a_secret_no_longer_configured_is_refused(
        make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    answer = _single_sign_on(make_stack, tmp_path, {"secret": NEW})
    assert answer.status_code == 302
    assert not answer.headers["location"].startswith(SPA_REDIRECT_URI)  # back to a login
