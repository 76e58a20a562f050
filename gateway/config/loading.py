"""Loading the settings: the TOML file, then `GATEWAY_...` environment variables over it, secrets
from files, each value coerced to its field's type; then validation.py checks them."""

from __future__ import annotations

import collections.abc
import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.settings import (
    ENV_CONFIG_PATH,
    ENV_PREFIX,
    SECRET_FILE_SUFFIX,
    Secret,
    Settings,
)
from gateway.config.validation import validate
from gateway.errors import ConfigError


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    dev_mode: bool = False,
) -> Settings:
    """Read the TOML file (if any), apply `GATEWAY_...` overrides from `environ`, validate.

    `base` holds defaults beneath the file (development mode uses it); `overrides` goes above
    the environment (the command line's options, e.g. `serve --workers`); `environ` is passed
    in rather than read from `os.environ` so that tests never need to patch the process.
    """
    environ = environ if environ is not None else {}
    raw: dict[str, Any] = _deep_copy(dict(base or {}))
    if path is None and environ.get(ENV_CONFIG_PATH):
        path = environ[ENV_CONFIG_PATH]
    if path is not None:
        deep_merge(raw, _read_toml(Path(path)))
    deep_merge(raw, _env_overrides(environ))
    deep_merge(raw, overrides or {})
    if "dev_mode" in raw:
        # SECURITY D2: the relaxed checks of development mode come only with `serve --dev`.
        raise ConfigError("dev_mode", "cannot be set in a file or the environment; "
                          "use `oauth-gateway serve --dev`")
    if dev_mode:
        raw["dev_mode"] = True
    settings: Settings = _build(Settings, raw, "")
    validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror}") from None


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(name, "malformed variable name (use GATEWAY_SECTION__KEY)")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, "conflicts with another variable")
        node[parts[-1]] = _EnvValue(value, name)
    return tree


@dataclass(frozen=True)
class _EnvValue:
    """A raw string from the environment, coerced to the field's type when the schema is known."""

    text: str
    variable: str


def deep_merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Merge a later layer (file over defaults, environment over file) into `into`.

    A secret set in a later layer replaces the earlier layer's `<key>_file` and the other way
    round; only within one layer are both a conflict (reported when the settings are built).
    """
    for key, value in other.items():
        counterpart = key[: -len(SECRET_FILE_SUFFIX)] if key.endswith(SECRET_FILE_SUFFIX) \
            else key + SECRET_FILE_SUFFIX
        if counterpart not in other:
            into.pop(counterpart, None)
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = _deep_copy(dict(value))
        else:
            into[key] = value


def _deep_copy(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _build(cls: type[Any], raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "config", "must be a table (section)")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    secret_files = {f"{name}{SECRET_FILE_SUFFIX}" for name in known if _is_secret(hints[name])}
    for key in raw:
        if key not in known and key not in secret_files:
            raise ConfigError(prefix + key, "unknown setting")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        if _is_secret(hint) and f"{f.name}_file" in raw:
            if f.name in raw:
                raise ConfigError(key, f"set either {f.name} or {f.name}_file, not both")
            path = raw[f"{f.name}_file"]
            values[f.name] = _read_secret_file(key + "_file", path) if hint is Secret \
                else _read_secret_files(key + "_file", path)
        elif f.name in raw:
            values[f.name] = _coerce(hint, raw[f.name], key)
    return cls(**values)


def _is_secret(hint: Any) -> bool:
    return hint is Secret or _tuple_item(hint) is Secret


def _read_secret_files(key: str, value: Any) -> tuple[Secret, ...]:
    """A list of secrets read from a list of files (comma-separated from the environment)."""
    paths = _coerce(tuple[str, ...], value, key)
    return tuple(_read_secret_file(f"{key}[{i}]", path) for i, path in enumerate(paths))


def _read_secret_file(key: str, value: Any) -> Secret:
    path = value.text if isinstance(value, _EnvValue) else value
    if not isinstance(path, str) or not path:
        raise ConfigError(key, "must be a file path")
    try:
        return Secret(Path(path).read_text(encoding="utf-8").strip())
    except OSError as e:
        raise ConfigError(key, f"cannot read secret file {path}: {e.strerror}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    optional = _optional_inner(hint)
    if optional is not None:
        hint = optional
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, _EnvValue):
            raise ConfigError(key, "is a section; set its keys instead")
        return _build(hint, value, key + ".")
    table = _named_tables_item(hint)
    if table is not None:
        # Tables by name (`[providers.oidc.<name>]`): each built with its own dotted key.
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table of tables ([{key}.<name>])")
        return types.MappingProxyType(
            {name: _build(table, entry, f"{key}.{name}.") for name, entry in value.items()})
    item = _tuple_item(hint)
    if isinstance(item, type) and dataclasses.is_dataclass(item):
        # A TOML array of tables (`[[clients]]`): each item named by its index.
        if not isinstance(value, list):
            raise ConfigError(key, f"must be an array of tables ([[{key}]])")
        return tuple(_build(item, entry, f"{key}[{i}].") for i, entry in enumerate(value))
    if item is Secret:
        return tuple(Secret(v) for v in _coerce(tuple[str, ...], value, key))
    if isinstance(value, _EnvValue):
        return _from_env_text(hint, value, key)
    if typing.get_origin(hint) is tuple:
        return _string_list(value, key)
    scalar = _SCALARS.get(hint)
    if scalar is None:
        raise ConfigError(key, f"unsupported setting type {hint!r}")  # pragma: no cover
    accepts, convert, expected = scalar
    if not accepts(value):
        raise ConfigError(key, f"must be {expected}")
    return convert(value)


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of strings")
    return tuple(value)


# A TOML value's type -> (accepts the value, converts it, what the error says it must be).
# bool is an int in Python: numbers refuse it explicitly.
_SCALARS: dict[Any, tuple[Callable[[Any], bool], Callable[[Any], Any], str]] = {
    Secret: (lambda v: isinstance(v, str), Secret, "a string"),
    bool: (lambda v: isinstance(v, bool), bool, "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), int, "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), float,
            "a number"),
    str: (lambda v: isinstance(v, str), str, "a string"),
}


def _from_env_text(hint: Any, value: _EnvValue, key: str) -> Any:
    text = value.text.strip()
    where = f"{key} (from {value.variable})"
    if hint is Secret:
        return Secret(value.text)
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(where, f"must be true or false (got {text!r})")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ConfigError(where, f"must be a number (got {text!r})") from None
    if hint is str:
        return text
    if typing.get_origin(hint) is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    raise ConfigError(where, "cannot be set from the environment")  # pragma: no cover


def _tuple_item(hint: Any) -> Any:
    """`X` of `tuple[X, ...]`, else None."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _named_tables_item(hint: Any) -> Any:
    """`X` of `Mapping[str, X]` when X is a settings dataclass, else None."""
    if typing.get_origin(hint) is collections.abc.Mapping:
        args = typing.get_args(hint)
        if len(args) == 2 and isinstance(args[1], type) and dataclasses.is_dataclass(args[1]):
            return args[1]
    return None


def _optional_inner(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


