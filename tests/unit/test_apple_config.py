"""`[providers.apple]`: what the gateway needs to sign Apple's client secret is checked at
start, and every mistake is one line naming the key (the process never starts to fail later,
at each login's code exchange)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from config_support import CLIENT_SECRET, COOKIE_SECRET, EXAMPLE_CONFIG, refusal, write_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway import cli
from gateway.config import AppleSettings, load_settings

APPLE = {"providers.apple.client_id": "com.example.web",
         "providers.apple.team_id": "TEAMID1234",
         "providers.apple.key_id": "KEYID12345"}


def _p8(key: Any, encryption: Any = None) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption()).decode()


def _key_file(directory: Path, text: str) -> Path:
    path = directory / "AuthKey_KEYID12345.p8"
    path.write_text(text, encoding="utf-8")
    return path


def _config(tmp_path: Path, key_text: str | None = None, **changes: Any) -> Path:
    key_text = key_text if key_text is not None else _p8(ec.generate_private_key(ec.SECP256R1()))
    key_file = _key_file(tmp_path, key_text)
    return write_config(tmp_path, {**APPLE, "providers.apple.private_key_file": str(key_file),
                                   **changes})


def test_apple_section_loads_with_its_p8_key_file(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path), {})
    apple = settings.providers.apple
    assert apple is not None
    assert (apple.client_id, apple.team_id, apple.key_id) == (
        "com.example.web", "TEAMID1234", "KEYID12345")
    assert apple.private_key.reveal().startswith("-----BEGIN " + "PRIVATE KEY-----")
    assert "BEGIN" not in repr(apple)  # a Secret: never in a repr, a traceback or a log
    assert apple.authority == "https://appleid.apple.com"
    assert apple.scopes == ("name", "email")
    assert settings.callback_url("apple") == "https://login.example.com/callback/apple"


def _pem_armour(label: str, body: bytes) -> str:
    """PEM armour around `body` (RFC 7468), made here rather than written out in the file."""
    dashes = "-" * 5
    return (f"{dashes}BEGIN {label}{dashes}\n{base64.b64encode(body).decode()}\n"
            f"{dashes}END {label}{dashes}\n")


KEY_PROBLEMS = {
    "rsa": _p8(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "p384": _p8(ec.generate_private_key(ec.SECP384R1())),
    "ed25519": _p8(ed25519.Ed25519PrivateKey.generate()),
    "encrypted": _p8(ec.generate_private_key(ec.SECP256R1()),
                     serialization.BestAvailableEncryption(b"passphrase")),
    "public-key": ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    "garbage": _pem_armour("PRIVATE KEY", b"not a key"),  # the armour of a key, no key inside
    "empty": "",
}


@pytest.mark.parametrize("kind", KEY_PROBLEMS)
def test_apple_key_that_cannot_sign_es256_is_refused_at_start_in_one_line(
        tmp_path: Path, kind: str) -> None:
    error = refusal(_config(tmp_path, KEY_PROBLEMS[kind]))
    assert error.key == "providers.apple.private_key"
    message = str(error)
    assert "P-256" in message or ".p8" in message or "private_key_file" in message
    body = [line for line in KEY_PROBLEMS[kind].splitlines() if line and "-----" not in line]
    assert not any(line in message for line in body)  # the key never shows


def test_apple_key_file_that_does_not_exist_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, {**APPLE, "providers.apple.private_key_file":
                                   str(tmp_path / "missing.p8")})
    error = refusal(path)
    assert error.key == "providers.apple.private_key_file"
    assert "missing.p8" in str(error)


def test_apple_key_may_come_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, APPLE)
    key = _p8(ec.generate_private_key(ec.SECP256R1()))
    settings = load_settings(path, {"GATEWAY_PROVIDERS__APPLE__PRIVATE_KEY": key})
    assert settings.providers.apple is not None
    assert settings.providers.apple.private_key.reveal() == key
    missing = refusal(path)
    assert missing.key == "providers.apple.private_key"
    assert "GATEWAY_PROVIDERS__APPLE__PRIVATE_KEY_FILE" in str(missing)


@pytest.mark.parametrize(("changes", "key"), [
    ({"providers.apple.team_id": None}, "providers.apple.team_id"),
    ({"providers.apple.team_id": "teamid1234"}, "providers.apple.team_id"),
    ({"providers.apple.team_id": "TEAMID123"}, "providers.apple.team_id"),
    ({"providers.apple.key_id": "KEY ID 123"}, "providers.apple.key_id"),
    ({"providers.apple.key_id": None}, "providers.apple.key_id"),
    ({"providers.apple.client_id": None}, "providers.apple.client_id"),
    ({"providers.apple.client_id": "com.example web"}, "providers.apple.client_id"),
    ({"providers.apple.authority": "http://appleid.apple.com"}, "providers.apple.authority"),
    ({"providers.apple.authority": "https://appleid.apple.com/"}, "providers.apple.authority"),
    ({"providers.apple.scopes": ["name", "openid"]}, "providers.apple.scopes[1]"),
    ({"providers.apple.client_secret": "s3cr3t"}, "providers.apple.client_secret"),
    ({"providers.apple.key_file": "/run/secrets/k.p8"}, "providers.apple.key_file"),
])
def test_apple_wrong_or_unknown_keys_are_refused_in_one_line(
        tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    assert refusal(_config(tmp_path, **changes)).key == key


def test_apple_bad_key_stops_the_cli_with_one_line_and_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    path = _config(tmp_path, KEY_PROBLEMS["rsa"])
    assert cli.main(["config", "check", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["oauth-gateway: configuration error: providers.apple.private_key: must "
                     "be an EC P-256 key (Apple's .p8); this is an RSA key"]


def test_apple_commented_example_block_is_valid_and_states_the_real_defaults(
        tmp_path: Path) -> None:
    """The shipped example's `[providers.apple]` block, uncommented, with its key file given
    through the environment, loads; what it says is the default is the default."""
    example = EXAMPLE_CONFIG.read_text()
    start = example.index("# [providers.apple]")
    block = example[start:example.index("\n\n", start)]
    enabled = example.replace(block, "\n".join(line.removeprefix("# ")
                                               for line in block.splitlines()))
    path = tmp_path / "gateway.toml"
    path.write_text(enabled)
    key_file = _key_file(tmp_path, _p8(ec.generate_private_key(ec.SECP256R1())))
    environ = {"GATEWAY_COOKIES__SECRET": COOKIE_SECRET,
               "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET": CLIENT_SECRET,
               "GATEWAY_PROVIDERS__APPLE__PRIVATE_KEY_FILE": str(key_file)}
    apple = load_settings(path, environ).providers.apple
    assert apple is not None
    assert (apple.client_id, apple.team_id, apple.key_id) == (
        "com.example.web", "TEAMID1234", "KEYID12345")
    defaults = AppleSettings()
    assert (apple.authority, apple.scopes) == (defaults.authority, defaults.scopes)
