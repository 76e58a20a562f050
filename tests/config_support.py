"""Configuration files for tests: the minimal production TOML with changes applied, secret
files, and the one-line ConfigError every refusal must be."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from gateway.config import load_settings
from gateway.errors import ConfigError

EXAMPLE_CONFIG = REPO_ROOT / "config" / "gateway.example.toml"
# Canary values: random-looking, so that a weak-secret check (SECURITY L2) never trips on them,
# and unique, so that a search for them in any output is meaningful.
COOKIE_SECRET = "Zq7rV2mXc9LwT4bN8yHs1KdP6fJg3QeU5aWo0iRtYxCvBnMl"  # 48 bytes
CLIENT_SECRET = "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3cJ"
CLIENT_ID = "1234567890-abc.apps.googleusercontent.com"

# The minimal production file: section -> {key: value}; "" is the top level.
MINIMAL: dict[str, dict[str, Any]] = {
    "": {"issuer": "https://login.example.com"},
    "tokens": {"keys_dir": "/var/lib/oauth-gateway/keys"},
    "cookies": {"secret": COOKIE_SECRET},
    "providers.google": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
}


def write_config(directory: Path, changes: Mapping[str, Any] | None = None) -> Path:
    """Write the minimal production TOML into `directory`, with `changes` applied.

    `changes` maps dotted keys to values (`{"tokens.leeway": 301}`); None removes the key.
    """
    sections = {name: dict(values) for name, values in MINIMAL.items()}
    for dotted, value in (changes or {}).items():
        section, _, key = dotted.rpartition(".")
        table = sections.setdefault(section, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    lines = [f"{key} = {_toml_value(value)}" for key, value in sections.pop("").items()]
    for section, values in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path = directory / "gateway.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string for the plain text used here


def write_secret(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    return path


def refusal(path: Path | None, environ: Mapping[str, str] | None = None, *,
            dev_mode: bool = False) -> ConfigError:
    """Load and expect a ConfigError whose message is one line starting with its key."""
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {}, dev_mode=dev_mode)
    error = caught.value
    message = str(error)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{error.key}: ")
    return error


def assert_refused(tmp_path: Path, changes: Mapping[str, Any], key: str,
                   environ: Mapping[str, str] | None = None) -> ConfigError:
    error = refusal(write_config(tmp_path, changes), environ)
    assert error.key.startswith(key), str(error)
    return error


# ---------------------------------------------------------------------------------------------
# Valid files
