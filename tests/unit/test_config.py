"""Configuration: one TOML file plus `GATEWAY_...` overrides, secrets from files, and a
`ConfigError` naming the key for every missing or wrong value (README, "Configuration")."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from config_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    COOKIE_SECRET,
    EXAMPLE_CONFIG,
    assert_refused,
    refusal,
    write_config,
    write_secret,
)
from conftest import REPO_ROOT
from process_support import toml_lines

from gateway.config import (
    FacebookSettings,
    GitHubSettings,
    MicrosoftSettings,
    Secret,
    Settings,
    TwitterSettings,
    load_settings,
)
from gateway.dev.mode import check_dev_config
from gateway.redirects import is_allowed_return_to, parse_allowlist


def test_minimal_production_file_loads(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path), {})

    assert isinstance(settings, Settings)
    assert settings.issuer == "https://login.example.com"
    assert settings.dev_mode is False
    assert settings.tokens.keys_dir == "/var/lib/oauth-gateway/keys"
    assert settings.cookies.secret.reveal() == COOKIE_SECRET
    assert settings.cookies.secure is True
    assert settings.providers.google is not None
    assert settings.providers.google.client_id == CLIENT_ID
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET
    assert settings.callback_url("google") == "https://login.example.com/callback/google"


def test_shipped_example_is_valid_with_its_secret_files_given_through_env(tmp_path: Path) -> None:
    cookie_file = write_secret(tmp_path, "cookie-secret", COOKIE_SECRET)
    client_file = write_secret(tmp_path, "google-client-secret", CLIENT_SECRET)
    environ = {
        "GATEWAY_COOKIES__SECRET_FILE": str(cookie_file),
        "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE": str(client_file),
    }

    settings = load_settings(EXAMPLE_CONFIG, environ)

    assert settings.issuer == "https://login.example.com"
    assert settings.cookies.secret.reveal() == COOKIE_SECRET
    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET
    assert settings.login.allowed_return_urls == (
        "https://app.example.com/", "https://admin.example.com/console/")


def test_L2_secret_values_from_env_override_the_secret_files_of_the_shipped_example() -> None:
    environ = {
        "GATEWAY_COOKIES__SECRET": COOKIE_SECRET,
        "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET": CLIENT_SECRET,
    }

    settings = load_settings(EXAMPLE_CONFIG, environ)

    assert settings.cookies.secret.reveal() == COOKIE_SECRET
    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET


# ---------------------------------------------------------------------------------------------
# config/gateway.minimal.toml: one provider, the fewest keys, secrets from the environment

MINIMAL_CONFIG = REPO_ROOT / "config" / "gateway.minimal.toml"
MINIMAL_SECRETS = {"GATEWAY_COOKIES__SECRET": COOKIE_SECRET,
                   "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET": CLIENT_SECRET}


def _keys_of(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        keys |= _keys_of(value, f"{prefix}{key}.") if isinstance(value, dict) \
            else {prefix + key}
    return keys


def test_minimal_config_is_valid_with_its_secrets_from_the_environment() -> None:
    settings = load_settings(MINIMAL_CONFIG, MINIMAL_SECRETS)

    assert settings.cookies.secret.reveal() == COOKIE_SECRET
    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET
    assert (settings.providers.facebook, settings.providers.twitter) == (None, None)
    assert settings.cookies.secure is True and not settings.dev_mode


def test_minimal_config_takes_its_secrets_from_files_named_in_the_environment(
        tmp_path: Path) -> None:
    environ = {
        "GATEWAY_COOKIES__SECRET_FILE": str(write_secret(tmp_path, "cookie", COOKIE_SECRET)),
        "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE":
            str(write_secret(tmp_path, "google", CLIENT_SECRET)),
    }
    settings = load_settings(MINIMAL_CONFIG, environ)
    assert settings.cookies.secret.reveal() == COOKIE_SECRET
    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET


def test_minimal_config_holds_no_secret_and_every_key_it_has_is_needed(tmp_path: Path) -> None:
    tree = tomllib.loads(MINIMAL_CONFIG.read_text(encoding="utf-8"))
    keys = _keys_of(tree)
    assert keys == {"issuer", "tokens.keys_dir", "providers.google.client_id"}
    for key in keys:  # without any one of them, the check fails naming it
        section, _, name = key.rpartition(".")
        pruned = copy.deepcopy(tree)
        table = pruned
        for part in filter(None, section.split(".")):
            table = table[part]
        del table[name]
        path = tmp_path / "pruned.toml"
        path.write_text("\n".join(toml_lines(pruned)) + "\n", encoding="utf-8")
        assert refusal(path, MINIMAL_SECRETS).key == key


@pytest.mark.parametrize("missing, variable", [
    ("GATEWAY_COOKIES__SECRET", "GATEWAY_COOKIES__SECRET"),
    ("GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET", "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET"),
])
def test_minimal_config_without_a_secret_names_the_key_and_its_variables(
        missing: str, variable: str) -> None:
    environ = {k: v for k, v in MINIMAL_SECRETS.items() if k != missing}
    error = refusal(MINIMAL_CONFIG, environ)
    assert error.key == variable[len("GATEWAY_"):].lower().replace("__", ".")
    assert f"{variable} or {variable}_FILE in the environment" in str(error)


# ---------------------------------------------------------------------------------------------
# config/dev.toml: what `serve --dev --config config/dev.toml` runs with

DEV_CONFIG = REPO_ROOT / "config" / "dev.toml"


def test_dev_config_passes_the_development_check_and_not_the_production_one(
        tmp_path: Path) -> None:
    settings = check_dev_config(DEV_CONFIG, {"GATEWAY_DEV__STATE_DIR": str(tmp_path / "s")})
    assert settings.dev_mode
    assert settings.issuer == "http://localhost:8080"
    assert settings.tokens.algorithm == "EdDSA"
    assert not (tmp_path / "s").exists()  # a check writes nothing
    assert refusal(DEV_CONFIG).key == "issuer"


def test_dev_config_lets_the_example_app_return_without_listing_it(tmp_path: Path) -> None:
    settings = check_dev_config(DEV_CONFIG, {"GATEWAY_DEV__STATE_DIR": str(tmp_path)})
    allowlist = parse_allowlist([f"{settings.issuer}/", *settings.login.allowed_return_urls],
                                dev_loopback=settings.dev_mode)
    assert is_allowed_return_to("http://localhost:8000/", allowlist)


def test_allowed_return_urls_from_the_environment_are_comma_separated() -> None:
    # As config/dev.toml and config/gateway.example.toml document it.
    environ = {**MINIMAL_SECRETS, "GATEWAY_LOGIN__ALLOWED_RETURN_URLS":
               "https://app.example.com/, https://admin.example.com/console/,"}
    settings = load_settings(MINIMAL_CONFIG, environ)
    assert settings.login.allowed_return_urls == (
        "https://app.example.com/", "https://admin.example.com/console/")


def test_config_comments_show_the_comma_separated_return_url_variable() -> None:
    for path in (DEV_CONFIG, EXAMPLE_CONFIG):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines()
                 if "GATEWAY_LOGIN__ALLOWED_RETURN_URLS=" in line]
        assert len(lines) == 1 and lines[0].lstrip().startswith("#"), path
        value = lines[0].split("=", 1)[1].strip()
        assert value.count(",") >= 1 and " " not in value


# ---------------------------------------------------------------------------------------------
# The environment overrides the file


def test_env_overrides_the_algorithm_of_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"tokens.algorithm": "RS256"})

    settings = load_settings(path, {"GATEWAY_TOKENS__ALGORITHM": "ES256"})

    assert settings.tokens.algorithm == "ES256"


def test_env_integers_are_parsed(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"tokens.leeway": 10})

    settings = load_settings(path, {"GATEWAY_TOKENS__LEEWAY": "60",
                                    "GATEWAY_LISTEN__PORT": "9090"})

    assert settings.tokens.leeway == 60
    assert settings.listen.port == 9090


def test_env_integer_that_is_not_a_number_is_refused_naming_key_and_variable(
        tmp_path: Path) -> None:
    error = refusal(write_config(tmp_path), {"GATEWAY_LISTEN__PORT": "eighty"})

    assert error.key.startswith("listen.port")
    assert "GATEWAY_LISTEN__PORT" in str(error)


def test_the_http_parser_is_llhttp_unless_tornado_is_asked_for(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert load_settings(path, {}).listen.http_parser == "llhttp"
    assert load_settings(path, {"GATEWAY_LISTEN__HTTP_PARSER": "tornado"}
                         ).listen.http_parser == "tornado"
    error = refusal(path, {"GATEWAY_LISTEN__HTTP_PARSER": "httptools"})
    assert error.key == "listen.http_parser"
    assert "tornado, llhttp" in str(error)


def test_env_bool_false_turns_secure_cookies_off_for_a_loopback_issuer(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"issuer": "http://localhost:8080"})

    settings = load_settings(path, {"GATEWAY_COOKIES__SECURE": "false"})

    assert settings.cookies.secure is False


def test_env_lists_are_comma_separated(tmp_path: Path) -> None:
    environ = {"GATEWAY_LOGIN__ALLOWED_RETURN_URLS":
               "https://app.example.com/, https://admin.example.com/console/"}

    settings = load_settings(write_config(tmp_path), environ)

    assert settings.login.allowed_return_urls == (
        "https://app.example.com/", "https://admin.example.com/console/")


def test_GATEWAY_CONFIG_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"tokens.leeway": 42})

    settings = load_settings(None, {"GATEWAY_CONFIG": str(path)})

    assert settings.tokens.leeway == 42
    assert settings.cookies.secret.reveal() == COOKIE_SECRET


# ---------------------------------------------------------------------------------------------
# Secrets from files (SECURITY L2)


def test_L2_client_secret_is_read_from_the_file_named_in_toml(tmp_path: Path) -> None:
    secret_file = write_secret(tmp_path, "google-client-secret", CLIENT_SECRET)
    path = write_config(tmp_path, {"providers.google.client_secret": None,
                                   "providers.google.client_secret_file": str(secret_file)})

    settings = load_settings(path, {})

    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET


def test_L2_client_secret_is_read_from_the_file_named_in_env(tmp_path: Path) -> None:
    secret_file = write_secret(tmp_path, "google-client-secret", CLIENT_SECRET)
    path = write_config(tmp_path, {"providers.google.client_secret": None})

    settings = load_settings(
        path, {"GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE": str(secret_file)})

    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET


def test_L2_secret_file_named_in_env_overrides_the_one_named_in_toml(tmp_path: Path) -> None:
    old = write_secret(tmp_path, "old-secret", "GOCSPX-old-secret-value")
    new = write_secret(tmp_path, "new-secret", CLIENT_SECRET)
    path = write_config(tmp_path, {"providers.google.client_secret": None,
                                   "providers.google.client_secret_file": str(old)})

    settings = load_settings(path, {"GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE": str(new)})

    assert settings.providers.google is not None
    assert settings.providers.google.client_secret.reveal() == CLIENT_SECRET


def test_secret_value_and_secret_file_together_are_refused(tmp_path: Path) -> None:
    secret_file = write_secret(tmp_path, "google-client-secret", CLIENT_SECRET)

    assert_refused(tmp_path, {"providers.google.client_secret_file": str(secret_file)},
                   "providers.google.client_secret")


def test_missing_secret_file_in_toml_is_refused_naming_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    error = assert_refused(tmp_path, {"providers.google.client_secret": None,
                                      "providers.google.client_secret_file": str(missing)},
                           "providers.google.client_secret_file")

    assert str(missing) in str(error)


def test_missing_secret_file_in_env_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"cookies.secret": None})

    error = refusal(path, {"GATEWAY_COOKIES__SECRET_FILE": str(tmp_path / "no-such-secret")})

    assert error.key == "cookies.secret_file"


# ---------------------------------------------------------------------------------------------
# Secrets never show themselves (SECURITY L1)


def test_L1_repr_and_str_of_settings_never_contain_the_secrets(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path), {})

    for text in (repr(settings), str(settings), repr(settings.cookies),
                 repr(settings.providers), str(settings.cookies.secret)):
        assert COOKIE_SECRET not in text
        assert CLIENT_SECRET not in text
    assert "Secret('**********')" in repr(settings)


def test_L1_secret_repr_is_masked_but_reveal_gives_the_value() -> None:
    secret = Secret(CLIENT_SECRET)

    assert CLIENT_SECRET not in repr(secret)
    assert CLIENT_SECRET not in str(secret)
    assert CLIENT_SECRET not in f"{secret}"
    assert secret.reveal() == CLIENT_SECRET


def test_L1_a_refused_secret_is_not_echoed_in_the_error(tmp_path: Path) -> None:
    short = "canary-short-secret-31-bytes-xx"
    assert len(short) == 31

    error = assert_refused(tmp_path, {"cookies.secret": short}, "cookies.secret")

    assert short not in str(error)


# ---------------------------------------------------------------------------------------------
# Wrong values are refused with the key named


def test_unknown_key_in_a_section_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"tokens.algoritm": "ES256"}, "tokens.algoritm")


def test_unknown_key_from_env_is_refused(tmp_path: Path) -> None:
    error = refusal(write_config(tmp_path), {"GATEWAY_TOKENS__ALGORITM": "ES256"})

    assert error.key == "tokens.algoritm"


def test_string_for_an_integer_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"tokens.leeway": "30"}, "tokens.leeway")


def test_J1_algorithm_HS256_is_refused(tmp_path: Path) -> None:
    error = assert_refused(tmp_path, {"tokens.algorithm": "HS256"}, "tokens.algorithm")

    assert "HS256" in str(error)


def test_J1_algorithm_none_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"tokens.algorithm": "none"}, "tokens.algorithm")


def test_issuer_with_trailing_slash_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"issuer": "https://login.example.com/"}, "issuer")


def test_http_issuer_on_a_public_host_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"issuer": "http://login.example.com"}, "issuer")


def test_missing_issuer_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"issuer": None}, "issuer")


@pytest.mark.parametrize("origin", [
    "http://localhost:8081/", "http://localhost:8081/avatars", "localhost:8081", "ftp://a.example",
    "https://a.example; script-src *", "https://a.example 'unsafe-inline'", "https://*.example",
    "http://a.example:99999", "http://[zz]", "https://user@a.example", "https://a.example\n",
    "http://", "data:", "https:",
])
def test_H2_dev_image_origins_must_be_bare_origins(tmp_path: Path, origin: str) -> None:
    """They go into the pages' Content-Security-Policy: nothing may add a directive."""
    error = refusal(write_config(tmp_path, {"dev.image_origins": [origin]}))
    assert error.key == "dev.image_origins[0]"


def test_dev_image_origins_accept_origins(tmp_path: Path) -> None:
    origins = ["http://localhost:8081", "https://img.example:8443", "http://[::1]:9000"]
    settings = load_settings(write_config(tmp_path, {"dev.image_origins": origins}), {})
    assert settings.dev.image_origins == tuple(origins)


def test_D2_dev_mode_cannot_be_switched_on_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"issuer": "http://login.example.com",
                                   "cookies.secure": False})

    refusal(path, {"GATEWAY_DEV_MODE": "true"})


def test_K4_short_cookie_secret_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"cookies.secret": "s" * 31}, "cookies.secret")


def test_K4_cookie_secret_of_32_bytes_is_accepted(tmp_path: Path) -> None:
    secret = COOKIE_SECRET[:32]

    settings = load_settings(write_config(tmp_path, {"cookies.secret": secret}), {})

    assert settings.cookies.secret.reveal() == secret


def test_L2_weak_cookie_secret_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"cookies.secret": "x" * 32}, "cookies.secret")


def test_P1_samesite_none_without_secure_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"issuer": "http://localhost:8080", "cookies.samesite": "None",
                              "cookies.secure": False}, "cookies.samesite")


def test_P1_insecure_cookies_are_refused_outside_dev_on_a_public_issuer(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"cookies.secure": False}, "cookies.secure")


def test_P1_cookie_domain_must_be_a_parent_of_the_issuer_host(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"cookies.domain": "example.org"}, "cookies.domain")


def test_P1_cookie_domain_that_is_a_parent_of_the_issuer_host_is_accepted(
        tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, {"cookies.domain": "example.com"}), {})

    assert settings.cookies.domain == "example.com"


def test_P1_cookie_domain_that_only_ends_like_the_issuer_host_is_refused(
        tmp_path: Path) -> None:
    assert_refused(tmp_path, {"cookies.domain": "ample.com"}, "cookies.domain")


@pytest.mark.parametrize("leeway", [-1, 301])
def test_J4_leeway_out_of_range_is_refused(tmp_path: Path, leeway: int) -> None:
    assert_refused(tmp_path, {"tokens.leeway": leeway}, "tokens.leeway")


@pytest.mark.parametrize("lifetime", [29, 86401])
def test_J6_access_token_lifetime_out_of_range_is_refused(tmp_path: Path, lifetime: int) -> None:
    assert_refused(tmp_path, {"tokens.access_token_lifetime": lifetime},
                   "tokens.access_token_lifetime")


def test_R2_allowed_return_url_that_is_not_absolute_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"login.allowed_return_urls": ["https://app.example.com/", "/home"]},
                   "login.allowed_return_urls")


def test_C6_google_endpoint_over_http_on_a_public_host_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"providers.google.token_url": "http://oauth2.googleapis.com/token"},
                   "providers.google.token_url")


def test_C6_infinite_upstream_timeout_is_refused(tmp_path: Path) -> None:
    error = refusal(write_config(tmp_path), {"GATEWAY_UPSTREAM__REQUEST_TIMEOUT": "inf"})

    assert error.key.startswith("upstream.request_timeout")


def test_C6_upstream_ca_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    error = assert_refused(tmp_path, {"upstream.ca_file": str(missing)}, "upstream.ca_file")
    assert "cannot read" in str(error)


def test_C6_upstream_ca_file_without_a_certificate_is_refused(tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    error = refusal(write_config(tmp_path), {"GATEWAY_UPSTREAM__CA_FILE": str(not_pem)})
    assert error.key == "upstream.ca_file" and "no PEM certificate" in str(error)


def test_google_section_without_client_id_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"providers.google.client_id": None}, "providers.google.client_id")


def test_google_section_without_client_secret_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"providers.google.client_secret": None},
                   "providers.google.client_secret")


def test_S3_google_scopes_without_openid_are_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"providers.google.scopes": ["email", "profile"]},
                   "providers.google.scopes")


def test_malformed_env_variable_name_is_refused(tmp_path: Path) -> None:
    error = refusal(write_config(tmp_path), {"GATEWAY_TOKENS____X": "1"})

    assert error.key == "GATEWAY_TOKENS____X"


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('issuer = "https://login.example.com\n[tokens\n', encoding="utf-8")

    error = refusal(path)

    assert error.key == "config"
    assert "not valid TOML" in str(error)


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"

    error = refusal(missing)

    assert error.key == "config"
    assert str(missing) in str(error)


CREDENTIALS = ("client_id", "client_secret", "consumer_key", "consumer_secret")


@pytest.mark.parametrize(("section", "settings_class", "secrets"), [
    ("facebook", FacebookSettings,
     {"GATEWAY_PROVIDERS__FACEBOOK__CLIENT_SECRET": "0f3c9e1a7b2d4c6e8a0b1c2d3e4f5a6b"}),
    ("twitter", TwitterSettings,
     {"GATEWAY_PROVIDERS__TWITTER__CLIENT_SECRET": "x-client-secret-canary-7Hq2",
      "GATEWAY_PROVIDERS__TWITTER__CONSUMER_SECRET": "x-consumer-secret-canary-4Lp9"}),
    ("github", GitHubSettings,
     {"GATEWAY_PROVIDERS__GITHUB__CLIENT_SECRET": "github-client-secret-canary-2Vn8"}),
    ("microsoft", MicrosoftSettings,
     {"GATEWAY_PROVIDERS__MICROSOFT__CLIENT_SECRET": "ms-client-secret-canary-8Wd3"}),
])
def test_a_providers_commented_example_block_is_valid_and_states_the_real_defaults(
        tmp_path: Path, section: str, settings_class: type, secrets: dict[str, str]) -> None:
    """The commented `[providers.<name>]` block of the shipped example, once uncommented, is
    valid and says what the code does by default (the documentation cannot drift)."""
    example = EXAMPLE_CONFIG.read_text()
    start = example.index(f"# [providers.{section}]")
    block = example[start:example.index("\n\n", start)]
    enabled = example.replace(block, "\n".join(line.removeprefix("# ")
                                               for line in block.splitlines()))
    path = tmp_path / "gateway.toml"
    path.write_text(enabled)
    environ = {"GATEWAY_COOKIES__SECRET": COOKIE_SECRET,
               "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET": CLIENT_SECRET, **secrets}

    provider = getattr(load_settings(path, environ).providers, section)

    assert provider is not None
    for variable, value in secrets.items():
        assert getattr(provider, variable.rsplit("__", 1)[1].lower()).reveal() == value
    defaults = settings_class()
    for field in dataclasses.fields(settings_class):
        if field.name not in CREDENTIALS:
            assert getattr(provider, field.name) == getattr(defaults, field.name), field.name



def test_P8_a_short_admin_api_token_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, {"admin.api_token": "too-short"}, "admin.api_token")
    settings = load_settings(write_config(tmp_path, {"admin.api_token": "a" * 32}), {})
    assert settings.admin.api_token.reveal() == "a" * 32


@pytest.mark.parametrize("megabytes", [-1, 65_537])
def test_the_verified_cache_budget_is_bounded(tmp_path: Path, megabytes: int) -> None:
    assert_refused(tmp_path, {"tokens.verified_cache_mb": megabytes}, "tokens.verified_cache_mb")
