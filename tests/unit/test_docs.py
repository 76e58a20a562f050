"""The documentation cannot drift from the code: links resolve, command lines name real
subcommands and options, every configuration key is documented where the reference says, the
Compose file and the systemd unit name real settings, and the README stays a front door.

Fast and offline: no server, no socket (the command line's `--help` is read in-process; only
`git ls-files` runs, to know which files the repository holds).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import ipaddress
import re
import secrets
import shlex
import subprocess
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import cli
from gateway.config import Secret, Settings, load_settings
from gateway.errors import EXIT_CONFIG_ERROR


def _repo_root() -> Path:
    for directory in Path(__file__).resolve().parents:
        if (directory / "pyproject.toml").is_file():
            return directory
    raise RuntimeError("no pyproject.toml above this test")  # pragma: no cover


ROOT = _repo_root()
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
EXAMPLE_TOML = ROOT / "config" / "gateway.example.toml"
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
# Each Compose file -> its TLS proxy's service.
COMPOSE_FILES = {ROOT / "deploy" / "compose.yaml": "nginx",
                 ROOT / "deploy" / "compose.caddy.yaml": "caddy"}
SYSTEMD_UNIT = ROOT / "config" / "oauth-gateway.service"
README_MAX_LINES = 250
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}


# -- Markdown ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CodeBlock:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str  # the fence's language, "" if none
    text: str


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")


def code_blocks(page: Path) -> list[CodeBlock]:
    blocks: list[CodeBlock] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        blocks.append(CodeBlock(page, i + 1, info.lower(), "\n".join(body)))
        i = j + 1
    return blocks


def prose(page: Path) -> str:
    """The page without its fenced code blocks (their lines blanked, so numbers still match)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    inside: str | None = None
    kept: list[str] = []
    for line in lines:
        opening = FENCE.match(line)
        if inside is None and opening:
            inside = opening.group(1)
            kept.append("")
        elif inside is not None:
            if line.strip().startswith(inside):
                inside = None
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept)


INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code."""
    found = []
    for number, line in enumerate(prose(page).splitlines(), 1):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(page).splitlines():
        heading = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = github_slug(heading.group(1))
            seen = counts.get(slug, 0)
            found.add(slug if seen == 0 else f"{slug}-{seen}")
            counts[slug] = seen + 1
        found.update(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", line))
    return frozenset(found)


@cache
def tracked_files() -> frozenset[str] | None:
    """Paths git tracks (relative to the root); None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return frozenset(p for p in listed.decode().split("\0") if p)


def is_tracked(path: Path) -> bool:
    try:
        relative = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return False
    tracked = tracked_files()
    if tracked is None or path.resolve() == ROOT:
        return path.exists()
    # A new file counts once it exists and git would add it: tests run before a commit too.
    return relative in tracked or any(p.startswith(relative + "/") for p in tracked) \
        or (path.is_file() and not _ignored(relative))


def _ignored(relative: str) -> bool:
    result = subprocess.run(["git", "check-ignore", "-q", relative], cwd=ROOT,
                            capture_output=True, check=False)
    return result.returncode == 0


def test_there_are_pages_to_check() -> None:
    assert README.is_file()
    assert {p.name for p in DOCS} >= {
        "configuration.md", "providers.md", "deploy.md", "reverse-proxy.md", "oidc.md",
        "operations.md", "benchmarks.md", "development.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part) if path_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not is_tracked(destination):
            broken.append(f"{where}: no such file in the repository")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{where}: no heading or id {anchor!r} in {path_part or page.name}")
    assert not broken, "\n".join(broken)


CITED_PATH = re.compile(r"`((?:gateway|tests|bench|config|deploy|examples|docs)/[A-Za-z0-9_./-]+)"
                        r"(?:::[A-Za-z0-9_]+)?`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_file_the_text_names_exists(page: Path) -> None:
    """A module or test named in backquotes (`gateway/handlers/verify.py`) is still there: code
    moves, and the prose that points at it must move with it."""
    missing = sorted({path for path in CITED_PATH.findall(page.read_text())
                      if not (ROOT / path.rstrip("/")).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


def test_the_link_checker_sees_links_and_their_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A title: with `code`\n\n## Who may sign in?\n\nSee [x](other.md#r2), "
                    "![pic](a.png), `[not](a link)` and <a id=\"r2\"></a>.\n\n"
                    "```\n[not](a link either)\n```\n", encoding="utf-8")
    assert [target for _, target in links(page)] == ["other.md#r2", "a.png"]
    assert anchors(page) == {"a-title-with-code", "who-may-sign-in", "r2"}


# -- Command lines -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Subcommand:
    options: dict[str, tuple[str, ...] | None]  # --flag: its choices, () any value, None none
    positionals: tuple[tuple[str, ...] | None, ...]  # each: its choices, or None (any value)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@cache
def command_line_interface() -> dict[str, Subcommand]:
    """The subcommands of `oauth-gateway`, their options and positionals, from the parser that
    `oauth-gateway --help` prints (gateway/cli.py)."""
    commands = _subparsers(cli._parser())
    assert commands, "no subcommands in oauth-gateway"
    interface = {}
    for name, parser in commands.items():
        options: dict[str, tuple[str, ...] | None] = {}
        positionals: list[tuple[str, ...] | None] = []
        for action in parser._actions:
            choices = tuple(str(c) for c in action.choices) if action.choices else None
            if not action.option_strings:
                positionals.append(choices)
                continue
            takes_value = action.nargs != 0
            for flag in action.option_strings:
                options[flag] = (choices or ()) if takes_value else None
        interface[name] = Subcommand(options, tuple(positionals))
    return interface


def test_the_interface_reader_sees_every_subcommand_and_its_options() -> None:
    interface = command_line_interface()
    assert {"serve", "config", "keys", "clients"} <= set(interface)
    assert interface["serve"].options["--dev"] is None  # a flag
    assert interface["serve"].options["--config"] == ()  # takes any value
    assert interface["config"].options["--dev"] is None
    assert "generate" in (interface["keys"].positionals[0] or ())
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        cli.main(["--help"])
    assert all(name in help_text.getvalue() for name in interface)  # what --help shows


def refusal_of(args: list[str]) -> str | None:
    """Why `oauth-gateway <args>` would be refused, or None when it names real things."""
    interface = command_line_interface()
    if not args:
        return None
    subcommand, *rest = args
    if subcommand not in interface:
        return f"no subcommand {subcommand!r} (there are {', '.join(interface)})"
    spec = interface[subcommand]
    positionals = list(spec.positionals)
    words = iter(rest)
    for word in words:
        if word.startswith("-"):
            flag, equals, value = word.partition("=")
            if flag in ("-h", "--help"):
                continue
            if flag not in spec.options:
                return f"{subcommand} has no option {flag}"
            choices = spec.options[flag]
            if choices is None:
                if equals:
                    return f"{flag} takes no value"
                continue
            if not equals:
                value = next(words, "")
            if choices and value not in choices:
                return f"{flag} must be one of {', '.join(choices)} (got {value!r})"
        elif not positionals:
            return f"{subcommand}: unexpected argument {word!r}"
        else:
            choices = positionals.pop(0)
            if choices is not None and word not in choices:
                return f"{subcommand}: {word!r} is not one of {', '.join(choices)}"
    return None


SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTIONS = {"<", ">", ">>", "2>", "2>&1", ">&"}
# docker run options that take a value (the rest used in the docs take none).
DOCKER_RUN_VALUES = {"-v", "--volume", "-e", "--env", "-p", "--publish", "--name", "--restart",
                     "--tmpfs", "--security-opt", "--cap-drop", "--cap-add", "--mount", "-u",
                     "--user", "-w", "--workdir", "--network", "--env-file", "--entrypoint"}


def gateway_arguments(command: list[str]) -> list[str] | None:
    """The arguments given to oauth-gateway by one simple shell command, or None if that
    command does not run oauth-gateway."""
    words = list(command)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value ...
        words.pop(0)
    if words[:1] in (["sudo"], ["runuser"], ["exec"], ["env"]):
        words = words[words.index("--") + 1:] if "--" in words else \
            [w for w in words[1:] if not w.startswith("-")]
    if words[:2] == ["docker", "run"]:
        rest = iter(words[2:])
        for word in rest:
            if word.startswith("-"):
                if word in DOCKER_RUN_VALUES:
                    next(rest, None)
                continue
            # The image: its entrypoint is oauth-gateway, its default command `serve`.
            return list(rest) if word.split(":")[0] == "oauth-gateway" else None
        return None
    if words and (words[0] == "oauth-gateway" or words[0].endswith("/bin/oauth-gateway")):
        return words[1:]
    return None


def shell_commands(line: str) -> Iterator[list[str]]:
    """The simple commands of one shell line: split at &&, ||, ;, |, without redirections."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    command: list[str] = []
    words = iter(lexer)
    for word in words:
        if word in SEPARATORS:
            if command:
                yield command
            command = []
        elif word in REDIRECTIONS:
            next(words, None)
        else:
            command.append(word)
    if command:
        yield command


def documented_command_lines() -> Iterator[tuple[str, str]]:
    """(where, line) of every shell line of the pages' code blocks, continuations joined, and
    of every inline `oauth-gateway ...` span."""
    for page in PAGES:
        for block in code_blocks(page):
            if block.info not in SHELL_BLOCKS:
                continue
            joined = block.text.replace("\\\n", " ")
            for offset, line in enumerate(joined.splitlines()):
                line = line.strip().removeprefix("$ ")
                if "oauth-gateway" in line:
                    yield f"{page.relative_to(ROOT)}:{block.line + 1 + offset}", line
        for number, line in enumerate(prose(page).splitlines(), 1):
            for match in INLINE_CODE.finditer(line):
                span = match.group(2).strip()
                if re.match(r"(\.venv/bin/)?oauth-gateway ", span):
                    yield f"{page.relative_to(ROOT)}:{number}", span


def test_the_docs_show_gateway_command_lines() -> None:
    """The check below must have something to check: the README's first command at least."""
    runs = [args for _, line in documented_command_lines() for command in shell_commands(line)
            if (args := gateway_arguments(command)) is not None]
    assert ["serve", "--dev"] in runs
    assert len(runs) >= 15


def test_every_documented_command_line_names_a_real_subcommand_and_options() -> None:
    wrong = []
    for where, line in documented_command_lines():
        try:
            commands = list(shell_commands(line))
        except ValueError as e:
            wrong.append(f"{where}: cannot parse {line!r} ({e})")
            continue
        for command in commands:
            args = gateway_arguments(command)
            if args is not None and (why := refusal_of(args)):
                wrong.append(f"{where}: {line}\n    {why}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("line", "refused"), [
    ("oauth-gateway serve --dev", False),
    (".venv/bin/oauth-gateway serve --workers 4 --config g.toml", False),
    ("oauth-gateway keys rotate --algorithm=ES256 --dir /k", False),
    ("docker run --rm -v /k:/k oauth-gateway keys list --dir /k", False),
    ("X=1 runuser -u gw -- /opt/gw/bin/oauth-gateway config check --config g.toml", False),
    ("oauth-gateway start", True),
    ("oauth-gateway serve --port 80", True),
    ("oauth-gateway keys remove", True),
    ("oauth-gateway keys rotate --algorithm HS256", True),
    ("oauth-gateway serve --dev=yes", True),
    ("docker run -d -p 8080:8080 oauth-gateway serve --verbose", True),
])
def test_the_command_line_check_refuses_what_the_cli_would(line: str, refused: bool) -> None:
    outcomes = [refusal_of(args) for command in shell_commands(line)
                if (args := gateway_arguments(command)) is not None]
    assert len(outcomes) == 1
    assert (outcomes[0] is not None) == refused, outcomes[0]


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    shell = "\n".join(b.text for b in code_blocks(README) if b.info in SHELL_BLOCKS)
    assert ci_command in shell.splitlines()
    assert ("python3 -m venv .venv && .venv/bin/pip install -e . && "
            ".venv/bin/oauth-gateway serve --dev") in shell.splitlines()


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"


# -- Configuration keys --------------------------------------------------------------------------


def _schema(cls: type[Any], prefix: str = "") -> dict[str, Any]:
    """Every setting the code knows, dotted (`tokens.algorithm`, `clients.client_id`), with its
    type: the configuration's schema, from the frozen dataclasses of gateway/config.py."""
    keys: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(inner[0]):
            keys.update(_schema(inner[0], f"{prefix}{f.name}."))  # [[clients]]
        elif typing.get_origin(hint) is Mapping and dataclasses.is_dataclass(inner[1]):
            keys.update(_schema(inner[1], f"{prefix}{f.name}.<name>."))  # [x.<name>]
        elif dataclasses.is_dataclass(hint) or (len(inner) == 1 and
                                                dataclasses.is_dataclass(inner[0])):
            keys.update(_schema(hint if dataclasses.is_dataclass(hint) else inner[0],
                                f"{prefix}{f.name}."))
        else:
            keys[prefix + f.name] = hint
    return keys


SCHEMA = {key: hint for key, hint in _schema(Settings).items()
          if key != "dev_mode"}  # only `serve --dev` sets it (SECURITY D2)


def _is_secret(key: str) -> bool:
    hint = SCHEMA.get(key)
    return hint is Secret or typing.get_args(hint)[:1] == (Secret,)


def setting_of(dotted: str) -> str:
    """The schema key a documented name stands for: `x_file` for a secret is that secret."""
    key = dotted.replace("[]", "")
    if key.endswith("_file") and _is_secret(key.removesuffix("_file")):
        return key.removesuffix("_file")
    return key


def setting_of_variable(name: str) -> str:
    """`GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE` -> `providers.google.client_secret`."""
    assert name.startswith("GATEWAY_"), name
    return setting_of(".".join(part.lower() for part in name[len("GATEWAY_"):].split("__")))


def example_keys() -> dict[str, int]:
    """Every key of config/gateway.example.toml, the commented-out ones too -> its line."""
    keys: dict[str, int] = {}
    section = ""
    for number, line in enumerate(EXAMPLE_TOML.read_text(encoding="utf-8").splitlines(), 1):
        header = re.match(r"^(?:# ?)?\[\[?([a-z_.]+)\]\]?\s*(?:#.*)?$", line)
        key = re.match(r"^(?:# ?)?([a-z_]+) = ", line)
        if header:
            # Tables by name ([providers.oidc.acme]) stand for their schema's <name>.
            section = re.sub(r"^providers\.oidc\.[a-z_]+$", "providers.oidc.<name>",
                             header.group(1)) + "."
        elif key:
            keys.setdefault(section + key.group(1), number)
    return keys


def documented_keys() -> dict[str, int]:
    """Every key in the first column of docs/configuration.md's tables under "Every key"."""
    text = CONFIGURATION_MD.read_text(encoding="utf-8")
    start = text.index("\n## Every key")
    end = text.find("\n## ", start + 1)
    keys: dict[str, int] = {}
    first_line = text[:start].count("\n") + 1
    for offset, line in enumerate(text[start:end if end > 0 else None].splitlines()):
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            for name in re.findall(r"`([a-z_]+(?:\[\])?(?:\.(?:[a-z_]+|<name>))*)`",
                                   first_cell):
                keys.setdefault(name, first_line + offset)
    return keys


def test_configuration_md_and_the_example_toml_document_the_same_keys() -> None:
    in_example = {setting_of(k): line for k, line in example_keys().items()}
    in_docs = {setting_of(k): line for k, line in documented_keys().items()}
    missing_from_docs = sorted(f"{k} (gateway.example.toml:{in_example[k]})"
                               for k in in_example.keys() - in_docs.keys())
    missing_from_example = sorted(f"{k} (configuration.md:{in_docs[k]})"
                                  for k in in_docs.keys() - in_example.keys())
    assert not missing_from_docs, "not in docs/configuration.md: " + ", ".join(missing_from_docs)
    assert not missing_from_example, \
        "not in config/gateway.example.toml: " + ", ".join(missing_from_example)


def test_every_documented_key_is_a_setting_and_every_setting_is_documented() -> None:
    documented = {setting_of(k) for k in documented_keys()}
    assert len(documented) > 80
    assert not documented - SCHEMA.keys(), "documented, but no such setting"
    assert not SCHEMA.keys() - documented, "settings nobody documented"


def test_the_schema_reader_sees_sections_providers_clients_and_secrets() -> None:
    assert {"issuer", "tokens.algorithm", "providers.twitter.consumer_secret",
            "clients.redirect_uris", "cookies.previous_secrets"} <= SCHEMA.keys()
    assert setting_of("cookies.secret_file") == "cookies.secret"
    assert setting_of("cookies.previous_secrets_file") == "cookies.previous_secrets"
    assert setting_of("clients[].client_id") == "clients.client_id"
    assert setting_of("upstream.ca_file") == "upstream.ca_file"  # a path, not a secret's file
    assert setting_of_variable("GATEWAY_STORE__PASSWORD_FILE") == "store.password"


# -- The Compose file and the systemd unit -------------------------------------------------------


def compose(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def compose_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=compose_name)
def test_compose_file_is_plain_yaml_with_the_expected_shape(path: Path) -> None:
    assert "\t" not in path.read_text(encoding="utf-8")  # YAML forbids tabs in indentation
    data = compose(path)
    assert set(data) <= {"name", "services", "configs", "secrets", "networks", "volumes"}
    proxy = COMPOSE_FILES[path]
    assert list(data["services"]) == ["gateway", "redis", proxy]
    gateway = data["services"]["gateway"]
    assert gateway["read_only"] is True and gateway["user"] == "10001:10001"
    assert gateway["cap_drop"] == ["ALL"] and "no-new-privileges:true" in gateway["security_opt"]
    assert "ports" not in gateway  # only the TLS proxy is published
    assert data["services"][proxy]["ports"]
    assert data["networks"]["store"]["internal"] is True
    assert set(data["services"]["redis"]["networks"]) == {"store"}
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and name != "gateway":  # the gateway's keys: made first
                assert (path.parent / source).exists() or source == "./certs", volume


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=compose_name)
def test_compose_gateway_environment_is_a_valid_production_configuration(
        path: Path, tmp_path: Path) -> None:
    data = compose(path)
    gateway = data["services"]["gateway"]
    environment: dict[str, str] = gateway["environment"]
    used_secrets = gateway["secrets"]
    assert {setting_of_variable(name) for name in environment} <= SCHEMA.keys()
    assert set(used_secrets) <= set(data["secrets"])
    environ = dict(environment)
    for name, value in environment.items():
        if name.endswith("_FILE"):
            secret = value.removeprefix("/run/secrets/")
            assert secret in used_secrets, f"{name} names a secret the service does not mount"
            secret_path = tmp_path / secret
            secret_path.write_text(secrets.token_urlsafe(48) + "\n", encoding="utf-8")
            environ[name] = str(secret_path)
    # What the image adds (the Dockerfile's ENV, not its comments).
    dockerfile = [line for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
                  if not line.lstrip().startswith("#")]
    image_environment = re.findall(r"(GATEWAY_[A-Z_]+)=([^\s\\]+)", "\n".join(dockerfile))
    assert ("GATEWAY_TOKENS__KEYS_DIR", "/var/lib/oauth-gateway/keys") in image_environment
    environ.update(image_environment)

    settings = load_settings(None, environ)

    assert settings.issuer.startswith("https://")
    assert settings.store.url.startswith("redis://") and settings.store.password
    assert settings.providers.google is not None
    # The trusted proxy is the TLS proxy's fixed address, inside the network declared for it.
    proxy = data["services"][COMPOSE_FILES[path]]["networks"]["edge"]["ipv4_address"]
    subnet = data["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert settings.proxy.trusted == (f"{proxy}/32",)
    assert ipaddress.ip_address(proxy) in ipaddress.ip_network(subnet)


def systemd_unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in SYSTEMD_UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), [])
        else:
            assert current is not None and "=" in line, line
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def test_systemd_unit_starts_a_real_command_with_real_settings() -> None:
    unit = systemd_unit()
    assert set(unit) == {"Unit", "Service", "Install"}
    service = dict(unit["Service"])
    [start] = [v for k, v in unit["Service"] if k == "ExecStart"]
    [command] = list(shell_commands(start))
    args = gateway_arguments(command)
    assert args is not None and args[0] == "serve"
    assert refusal_of(args) is None
    credentials = {v.split(":")[0] for k, v in unit["Service"] if k == "LoadCredential"}
    for key, value in unit["Service"]:
        if key == "Environment":
            name, _, path = value.partition("=")
            assert setting_of_variable(name) in SCHEMA
            if name.endswith("_FILE"):
                assert path.removeprefix("%d/") in credentials
    # A configuration error is not restarted in a loop.
    assert service["RestartPreventExitStatus"] == str(EXIT_CONFIG_ERROR)
    for directive, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                             ("CapabilityBoundingSet", ""), ("PrivateTmp", "yes")]:
        assert service.get(directive) == value, directive
