"""The command line: `config check`, `keys generate|list` and `serve`; a configuration problem
ends the process with exit status 2 and one line naming the key, never a traceback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from config_support import COOKIE_SECRET, write_config
from conftest import REPO_ROOT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from process_support import (
    SUBPROCESS_TIMEOUT,
    assert_one_line_config_error,
    clean_environ,
    run_cli,
)

from gateway.cli import main
from gateway.identity import Identity
from gateway.keys import write_new_key
from gateway.sessions import Sessions
from gateway.store.sqlite import SqliteStore

# Spelled in two parts so that no file of the repository looks like it holds a key.
PKCS8_PEM_HEADER = b"-----BEGIN " + b"PRIVATE KEY-----"

MINIMAL = REPO_ROOT / "config" / "gateway.minimal.toml"
DEV_TOML = REPO_ROOT / "config" / "dev.toml"


def bad_config(directory: Path) -> Path:
    """A production file whose only fault is an HS256 algorithm (SECURITY J1)."""
    return write_config(directory, {"tokens.algorithm": "HS256"})


def expected_kid(pem_path: Path) -> str:
    """RFC 7638 thumbprint of a P-256 or RSA key, computed here independently of
    gateway.keys."""
    key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)

    def b64(n: int, length: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()

    if isinstance(key, rsa.RSAPrivateKey):
        rsa_numbers = key.public_key().public_numbers()
        members = {"e": b64(rsa_numbers.e, (rsa_numbers.e.bit_length() + 7) // 8), "kty": "RSA",
                   "n": b64(rsa_numbers.n, (rsa_numbers.n.bit_length() + 7) // 8)}
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        numbers = key.public_key().public_numbers()
        members = {"crv": "P-256", "kty": "EC", "x": b64(numbers.x, 32),
                   "y": b64(numbers.y, 32)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def pem_by_type(paths: Iterable[Path]) -> dict[str, Path]:
    """The one EC and the one RSA key among `paths`: {"EC": path, "RSA": path}."""
    found: dict[str, Path] = {}
    for path in paths:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        kind = "RSA" if isinstance(key, rsa.RSAPrivateKey) else "EC"
        assert kind not in found
        found[kind] = path
    return found


# ---------------------------------------------------------------------------------------------
# config check


def test_config_check_accepts_a_valid_file_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "check", "--config", str(write_config(tmp_path))])

    out, err = capsys.readouterr()
    assert code == 0
    assert "configuration OK" in out
    assert "https://login.example.com" in out
    assert err == ""


def test_config_check_refuses_a_bad_file_with_exit_2_and_one_line_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "check", "--config", str(bad_config(tmp_path))])

    out, err = capsys.readouterr()
    assert code == 2
    assert_one_line_config_error(err, "tokens.algorithm")
    assert "configuration OK" not in out


def test_config_check_refuses_a_missing_file_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "check", "--config", str(tmp_path / "nowhere.toml")])

    _, err = capsys.readouterr()
    assert code == 2
    assert_one_line_config_error(err, "config")


def test_L1_config_check_never_prints_the_cookie_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["config", "check", "--config", str(write_config(tmp_path))])
    main(["config", "check", "--config", str(bad_config(tmp_path))])

    out, err = capsys.readouterr()
    assert COOKIE_SECRET not in out + err


def test_python_m_gateway_config_check_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("config", "check", "--config", str(bad_config(tmp_path)), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "tokens.algorithm")


def test_minimal_config_passes_config_check_with_its_secrets_from_the_environment(
        tmp_path: Path) -> None:
    secrets = {"GATEWAY_COOKIES__SECRET": COOKIE_SECRET,
               "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET": "GOCSPX-canary-check-3kQ9"}
    result = run_cli("config", "check", "--config", str(MINIMAL), cwd=tmp_path, env=secrets)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("configuration OK: issuer https://login.example.com, "
                                     "providers: google")
    assert COOKIE_SECRET not in result.stdout + result.stderr


def test_minimal_config_without_its_secrets_fails_naming_the_key_and_the_variable(
        tmp_path: Path) -> None:
    result = run_cli("config", "check", "--config", str(MINIMAL), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "cookies.secret")
    assert "GATEWAY_COOKIES__SECRET" in result.stderr

    only_cookie = run_cli("config", "check", "--config", str(MINIMAL), cwd=tmp_path,
                              env={"GATEWAY_COOKIES__SECRET": COOKIE_SECRET})
    assert only_cookie.returncode == 2
    assert_one_line_config_error(only_cookie.stderr, "providers.google.client_secret")
    assert "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET" in only_cookie.stderr


# ---------------------------------------------------------------------------------------------
# config check --dev


def test_config_check_dev_accepts_the_dev_config_as_serve_dev_runs_it(tmp_path: Path) -> None:
    result = run_cli("config", "check", "--dev", "--config", str(DEV_TOML), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("configuration OK (development mode): issuer "
                                     "http://localhost:8080, providers: google, facebook, "
                                     "twitter, github, microsoft, apple, dev")
    assert list(tmp_path.iterdir()) == []  # no state directory, keys or cookie secret written


def test_config_check_dev_binds_no_port(tmp_path: Path) -> None:
    # A development gateway may be running on the very ports the file names.
    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("config", "check", "--dev", cwd=tmp_path,
                             env={"GATEWAY_LISTEN__PORT": str(port),
                                  "GATEWAY_DEV__PROVIDER_PORT": str(port)})
    assert result.returncode == 0, result.stderr
    assert f"issuer http://localhost:{port}," in result.stdout


def test_config_check_dev_refuses_a_bad_dev_config_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "dev.toml"
    config.write_text('[tokens]\nalgorithm = "HS256"\n', encoding="utf-8")
    result = run_cli("config", "check", "--dev", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "tokens.algorithm")


def test_D2_config_check_dev_still_refuses_dev_mode_from_a_file(tmp_path: Path) -> None:
    config = tmp_path / "dev.toml"
    config.write_text("dev_mode = true\n", encoding="utf-8")
    result = run_cli("config", "check", "--dev", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "dev_mode")


def test_config_check_of_a_dev_config_without_dev_points_to_the_dev_check(tmp_path: Path
                                                                          ) -> None:
    result = run_cli("config", "check", "--config", str(DEV_TOML), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "issuer")
    assert "config check --dev" in result.stderr


# ---------------------------------------------------------------------------------------------
# --help


def _help(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "gateway", *args, "--help"],
                            env={**clean_environ(), "COLUMNS": "80"}, capture_output=True,
                            text=True, timeout=SUBPROCESS_TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_help_opens_with_a_whole_sentence_and_lists_each_command_in_one() -> None:
    text = _help()
    paragraphs = text.split("\n\n")
    assert paragraphs[0].startswith("usage: oauth-gateway")
    description = " ".join(paragraphs[1].split())
    assert description[0].isupper() and description.endswith(".")
    assert description.count(".") == 1  # one sentence, whole
    assert "Command line:" not in text and "`," not in text
    listed = re.findall(r"^ {4}(\w+) +(.+)$", text, re.MULTILINE)
    assert [name for name, _ in listed] == ["serve", "config", "keys", "sessions", "store",
                                            "clients"]
    for name, summary in listed:
        assert summary[0].isupper() and summary.endswith("."), (name, summary)
    assert "oauth-gateway serve --dev" in text


@pytest.mark.parametrize("command", ["serve", "config", "keys", "sessions", "store", "clients"])
def test_each_command_help_describes_it_in_sentences_within_80_columns(command: str) -> None:
    text = _help(command)
    paragraphs = text.split("\n\n")
    assert paragraphs[0].startswith(f"usage: oauth-gateway {command}")
    description = " ".join(paragraphs[1].split())
    assert description[0].isupper() and description.endswith("."), description
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "examples:" in text or "actions:" in text


def test_config_help_offers_the_dev_check() -> None:
    text = _help("config")
    assert "--dev" in text
    assert "oauth-gateway config check --dev --config config/dev.toml" in text


# ---------------------------------------------------------------------------------------------
# serve


def test_serve_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(bad_config(tmp_path)), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "tokens.algorithm")


# ---------------------------------------------------------------------------------------------
# keys


def test_K1_keys_generate_writes_a_private_pem_readable_by_the_owner_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = tmp_path / "keys"

    code = main(["keys", "generate", "--dir", str(keys_dir), "--algorithm", "ES256"])

    assert code == 0
    files = list(keys_dir.glob("*.pem"))
    # The ES256 key, and (SECURITY J11) an RS256 one for ID tokens.
    assert len(files) == 2
    out = capsys.readouterr().out
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_bytes().startswith(PKCS8_PEM_HEADER)
        assert str(path) in out
    by_type = pem_by_type(files)
    key = serialization.load_pem_private_key(by_type["EC"].read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    rsa_key = serialization.load_pem_private_key(by_type["RSA"].read_bytes(), password=None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size >= 2048


def test_K2_keys_list_prints_the_thumbprint_kid_and_marks_it_signing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = tmp_path / "keys"
    main(["keys", "generate", "--dir", str(keys_dir), "--algorithm", "ES256"])
    pems = pem_by_type(keys_dir.glob("*.pem"))
    capsys.readouterr()

    code = main(["keys", "list", "--dir", str(keys_dir), "--algorithm", "ES256"])

    out = capsys.readouterr().out
    assert code == 0
    # Both families, each with its own signing key (SECURITY J11).
    listed = {line.split()[0]: (line.split()[1], line.split()[-1]) for line in out.splitlines()}
    assert listed == {expected_kid(pems["EC"]): ("ES256", "signing"),
                      expected_kid(pems["RSA"]): ("RS256", "signing")}


def test_K3_keys_list_marks_a_rotated_key_pending_until_its_activation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = tmp_path / "keys"
    main(["keys", "generate", "--dir", str(keys_dir), "--algorithm", "ES256"])
    first = set(keys_dir.glob("*.pem"))
    main(["keys", "rotate", "--dir", str(keys_dir), "--algorithm", "ES256"])
    second = set(keys_dir.glob("*.pem")) - first
    capsys.readouterr()

    main(["keys", "list", "--dir", str(keys_dir), "--algorithm", "ES256"])

    markers = {line.split()[0]: line.split()[-1]
               for line in capsys.readouterr().out.splitlines()}
    # SECURITY K3: published at once (listed), signing only after tokens.key_activation_delay;
    # J11: the RS256 family of ID tokens is rotated with the ES256 one.
    assert len(first) == len(second) == 2
    assert markers == {**{expected_kid(p): "signing" for p in first},
                       **{expected_kid(p): "pending" for p in second}}


def test_keys_list_of_an_empty_directory_is_one_config_error_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["keys", "list", "--dir", str(tmp_path), "--algorithm", "ES256"])

    _, err = capsys.readouterr()
    assert code == 2
    assert_one_line_config_error(err, "tokens.keys_dir")


def test_J11_serve_without_an_rs256_key_exits_2_naming_the_command(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    write_new_key(keys_dir, "ES256")  # a directory from before ID tokens had their own keys
    config = write_config(tmp_path, {"tokens.algorithm": "ES256",
                                     "tokens.keys_dir": str(keys_dir), "listen.port": 0})

    result = run_cli("serve", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2
    assert_one_line_config_error(result.stderr, "tokens.keys_dir")
    assert "oauth-gateway keys generate --algorithm RS256" in result.stderr


def test_J11_keys_generate_rs256_completes_an_older_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = tmp_path / "keys"
    es256 = write_new_key(keys_dir, "ES256")
    main(["keys", "list", "--dir", str(keys_dir), "--algorithm", "ES256"])
    assert "no RS256 key for ID tokens" in capsys.readouterr().out

    code = main(["keys", "generate", "--dir", str(keys_dir), "--algorithm", "RS256"])

    out = capsys.readouterr().out
    assert code == 0 and "(RS256)" in out and "signs at once" in out
    (rs256,) = set(keys_dir.glob("*.pem")) - {es256}
    main(["keys", "list", "--dir", str(keys_dir), "--algorithm", "ES256"])
    listed = capsys.readouterr().out.splitlines()
    assert {line.split()[0]: line.split()[-1] for line in listed} == {
        expected_kid(es256): "signing", expected_kid(rs256): "signing"}


def test_P8_sessions_list_and_revoke_find_a_users_sessions_in_the_store(tmp_path: Path) -> None:
    """`oauth-gateway sessions`: an operator lists a user's sessions and ends them, by user or
    by one session's sid, in the store a running gateway shares (here SQLite)."""
    keys = tmp_path / "keys"
    assert run_cli("keys", "generate", "--dir", str(keys), "--algorithm", "RS256",
                   cwd=tmp_path).returncode == 0
    database = tmp_path / "gateway.db"
    config = write_config(tmp_path, {"tokens.keys_dir": str(keys),
                                     "store.url": f"sqlite://{database}"})
    ada, grace = Identity("google", "1", name="Ada"), Identity("google", "2", name="Grace")

    async def sign_in() -> dict[str, str]:
        store = SqliteStore(database)
        sessions = Sessions(store, lifetime=3600, idle_timeout=3600)
        cookies = {}
        for name, identity in (("laptop", ada), ("phone", ada), ("grace", grace)):
            cookies[name], session = await sessions.start(identity)
            cookies[f"{name}-sid"] = session.sid
        await store.close()
        return cookies

    async def alive(cookie: str) -> bool:
        store = SqliteStore(database)
        try:
            sessions = Sessions(store, lifetime=3600, idle_timeout=3600)
            return await sessions.lookup(cookie) is not None
        finally:
            await store.close()

    cookies = asyncio.run(sign_in())
    listed = run_cli("sessions", "list", "--sub", ada.sub, "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(
        [cookies["laptop-sid"], cookies["phone-sid"]])

    # `--sid=`: a sid is base64url, and one in 64 begins with "-", which argparse would read as
    # an option after a bare `--sid` (CI met one).
    one = run_cli("sessions", "revoke", f"--sid={cookies['phone-sid']}", "--config", str(config),
                  cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert [asyncio.run(alive(cookies[n])) for n in ("laptop", "phone", "grace")] == [
        True, False, True]
    everything = run_cli("sessions", "revoke", "--sub", ada.sub, "--config", str(config),
                         cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    assert [asyncio.run(alive(cookies[n])) for n in ("laptop", "grace")] == [False, True]
    assert run_cli("sessions", "list", "--sub", ada.sub, "--config", str(config),
                   cwd=tmp_path).stdout == ""
