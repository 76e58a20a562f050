"""The container image, built and run without a Docker engine (issue 5; SECURITY D1-D3).

Debian's `buildah` builds the Dockerfile daemonless (vfs storage, chroot isolation) on a stand-in
for the public python base image, made with `debootstrap` from Debian's packages (the public
image cannot be pulled here) and cached between runs. The image is then started as an operator
would start it: its own entrypoint and command, configuration from environment variables, the
signing keys and a provider secret from mounted directories, no development mode. It must serve
a full login against a Google stand-in running on the host, as a non-root user, hold no
compiler, test, key or `.git`, write nowhere but /var/lib/oauth-gateway and /tmp, refuse
development-mode secrets, and exit 0 on SIGTERM.

Needs root, `buildah` and `debootstrap` (`.ci/run` installs them); without them the test is
skipped locally and fails under CI=true. Set GATEWAY_TEST_CONTAINER_CACHE to move the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.httpserver
from conftest import REPO_ROOT, Browser, LoopThread

from gateway.dev.standins.google import dev_provider
from gateway.server import bind, bound_port

pytestmark = [pytest.mark.slow, pytest.mark.container]

# What the Dockerfile needs of its base: python3 (>= 3.11) with its venv module, CA certificates
# for pip, and `useradd`/`groupadd` (Debian's minbase has them). Changing this list or the suite
# makes a new cached base.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_KEY = hashlib.sha256(f"{BASE_SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:12]
BASE_IMAGE = f"localhost/oauth-gateway-test-base:{BASE_KEY}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_DIR = Path(os.environ.get("GATEWAY_TEST_CONTAINER_CACHE",
                                "/var/cache/oauth-gateway-test-base"))
IMAGE_UID = 10001  # the Dockerfile's user
WRITABLE_PATHS = ("var/lib/oauth-gateway", "tmp")
BUILD_TIMEOUT = 600
# What `buildah run` itself writes into the container before starting a command.
BUILDAH_RUN_FILES = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


@dataclass
class Buildah:
    """buildah with its own storage (vfs needs no kernel overlay support) under the cache."""

    root: Path

    def command(self, *args: str) -> list[str]:
        return ["buildah", "--storage-driver", "vfs", "--root", str(self.root / "storage"),
                "--runroot", str(self.root / "run"), *args]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args[:2])} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def run_args(self, container: str, mounts: Sequence[str] = (),
                 env: dict[str, str] | None = None, user: str = "") -> list[str]:
        """`buildah run` as the image's user (or `user`), with bind mounts and variables."""
        args = ["run", "--isolation", "chroot", "--network", "host"]
        if user:
            args += ["--user", user]
        for mount in mounts:
            args += ["--volume", mount]
        for name, value in (env or {}).items():
            args += ["--env", f"{name}={value}"]
        return [*args, container, "--"]


def test_D1_D2_D3_image_builds_and_serves_a_login_as_non_root_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    buildah = _buildah_or_skip()
    started = time.monotonic()
    _ensure_base_image(buildah)
    image = f"localhost/oauth-gateway-test:{secrets.token_hex(4)}"
    with _built_image(buildah, image) as config, _container(buildah, image) as container:
        built = time.monotonic()
        # The image's metadata: what an orchestrator relies on.
        assert config["config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
        assert "8080/tcp" in config["config"]["ExposedPorts"]
        assert config["config"]["StopSignal"] == "SIGTERM"
        assert "/healthz" in " ".join(config["config"]["Healthcheck"]["Test"])
        command = [*config["config"]["Entrypoint"], *(config["config"]["Cmd"] or [])]
        assert command == ["oauth-gateway", "serve"]

        runs_since = time.time()
        _assert_image_contents(buildah, container)
        _assert_dev_mode_secrets_refused(buildah, container, command)
        healthcheck = config["config"]["Healthcheck"]["Test"]
        assert healthcheck[0] == "CMD"
        _assert_serves_a_login(buildah, container, command, healthcheck[1:], tmp_path)
        _assert_wrote_only_writable_paths(buildah, container, runs_since)
    print(f"\ncontainer test: base + build {built - started:.0f} s, "
          f"total {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------------------------------------
# The checks


def _assert_image_contents(buildah: Buildah, container: str) -> None:
    """SECURITY D1/D3: no compiler, no pip, no tests, no keys, no `.git` in the image."""
    run = buildah.run_args(container)
    uid = buildah(*run, "id", "-u").stdout.strip()
    assert uid == str(IMAGE_UID), f"the image's command runs as uid {uid}"
    found = buildah(*buildah.run_args(container, user="0:0"), "sh", "-c",
                    "for c in gcc cc c++ g++ clang make pip pip3; do command -v $c; done; "
                    "find / -xdev \\( -name .git -o -name .gateway-dev -o -name conftest.py "
                    "-o -name test_container.py -o -name pip \\) -print; "
                    # Test suites in the virtualenv (the base's own stdlib is the base's).
                    "find /opt -type d \\( -name test -o -name tests \\) -print; "
                    # CA bundles (*.pem) belong in an image; private keys do not.
                    "find / -xdev -type f \\( -name '*.pem' -o -name '*.key' \\) "
                    "-exec grep -l 'PRIVATE KEY' {} +; true").stdout.split()
    assert found == [], f"the image holds what it must not: {found}"
    gateway = buildah(*run, "python3", "-c",
                      "import gateway, os; print(os.path.dirname(gateway.__file__))").stdout
    assert gateway.strip().startswith("/opt/venv/"), gateway  # installed from the wheel


def _assert_dev_mode_secrets_refused(buildah: Buildah, container: str,
                                     command: list[str]) -> None:
    """SECURITY D2: development mode cannot be switched on from the environment, and the
    development placeholder cookie secret is refused in production."""
    good = {"GATEWAY_ISSUER": "http://127.0.0.1:8080",
            "GATEWAY_COOKIES__SECURE": "false",
            "GATEWAY_COOKIES__SECRET": secrets.token_urlsafe(48)}
    cases = [({"GATEWAY_DEV_MODE": "true"}, "dev_mode"),
             ({"GATEWAY_COOKIES__SECRET": "x" * 32}, "cookies.secret"),
             ({}, "tokens.keys_dir")]  # no keys mounted: never generated outside --dev
    for env, key in cases:
        result = buildah(*buildah.run_args(container, env={**good, **env}), *command,
                         check=False, timeout=60)
        assert result.returncode != 0, f"started with {env}"
        assert f"configuration error: {key}" in result.stderr, result.stderr[-2000:]


def _assert_serves_a_login(buildah: Buildah, container: str, command: list[str],
                           healthcheck: list[str], tmp_path: Path) -> None:
    """Start the image's command as an operator would; one login; SIGTERM; exit 0."""
    port, admin_port = _free_port(), _free_port()
    issuer = f"http://127.0.0.1:{port}"
    keys, data, run_secrets = (tmp_path / name for name in ("keys", "data", "secrets"))
    subprocess.run([sys.executable, "-m", "gateway", "keys", "generate", "--dir", str(keys),
                    "--algorithm", "RS256"], check=True, capture_output=True, cwd=REPO_ROOT)
    data.mkdir()
    run_secrets.mkdir()
    loop = LoopThread()
    try:
        provider_sockets = bind("127.0.0.1", 0)
        standin, section = dev_provider(
            f"http://127.0.0.1:{bound_port(provider_sockets)}", issuer)

        def serve_standin() -> None:
            tornado.httpserver.HTTPServer(standin.make_app()).add_sockets(provider_sockets)

        loop.call(serve_standin)
        (run_secrets / "google-client-secret").write_text(section["client_secret"] + "\n")
        for path in (keys, data, run_secrets):  # the image's user reads them, nobody else
            for entry in (path, *path.iterdir()):
                os.chown(entry, IMAGE_UID, IMAGE_UID)
        env = {
            "GATEWAY_ISSUER": issuer,
            "GATEWAY_LISTEN__PORT": str(port),
            "GATEWAY_ADMIN__PORT": str(admin_port),  # /metrics, on loopback by default
            "GATEWAY_COOKIES__SECURE": "false",  # plain http on loopback only
            "GATEWAY_COOKIES__SECRET": secrets.token_urlsafe(48),
            "GATEWAY_PROVIDERS__GOOGLE__CLIENT_ID": section["client_id"],
            "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET_FILE": "/run/secrets/google-client-secret",
            "GATEWAY_PROVIDERS__GOOGLE__ISSUERS": ",".join(section["issuers"]),
            **{f"GATEWAY_PROVIDERS__GOOGLE__{name.upper()}": section[name]
               for name in ("authorize_url", "token_url", "userinfo_url", "jwks_url")},
        }
        mounts = [f"{data}:/var/lib/oauth-gateway", f"{keys}:/var/lib/oauth-gateway/keys:ro",
                  f"{run_secrets}:/run/secrets:ro"]
        process = subprocess.Popen(buildah.command(*buildah.run_args(container, mounts, env),
                                                   *command),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            pid = _wait_for_health(issuer, process)
            # chroot isolation shares the host's process table: /healthz's pid is ours to see.
            assert _is_descendant(pid, process.pid)
            assert _uids(pid) == {IMAGE_UID}, "the gateway runs as root"
            # The image's HEALTHCHECK command, run inside as an engine would run it.
            buildah(*buildah.run_args(container, env={"GATEWAY_LISTEN__PORT": str(port)}),
                    *healthcheck, timeout=30)

            browser = Browser(_Gateway(issuer))
            done = browser.login()
            assert done.status_code == 302, done.text
            assert done.headers["location"] == f"{issuer}/"
            claims = browser.get(f"{issuer}/verify").json()
            assert claims["iss"] == issuer
            assert claims["sub"].startswith("google:")
            assert claims["email"] == "ada@example.com"
            assert httpx.get(f"{issuer}/readyz").status_code == 200
            # Metrics on the admin listener only, never on the public port (SECURITY D3).
            assert httpx.get(f"http://127.0.0.1:{admin_port}/metrics").status_code == 200
            assert httpx.get(f"{issuer}/metrics").status_code == 404
            # The default store is SQLite in /var/lib/oauth-gateway, the mounted data volume.
            assert (data / "gateway.db").exists()
            os.kill(pid, signal.SIGTERM)  # buildah does not forward signals: the process's own
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                _kill_tree(process.pid)  # the gateway is buildah's grandchild
                output = process.communicate()[0]
                print(f"the container's output:\n{output[-5000:]}")  # shown as the test fails
        assert process.returncode == 0, output[-3000:]
        assert "draining" in output
        assert section["client_secret"] not in output
    finally:
        loop.stop()


def _assert_wrote_only_writable_paths(buildah: Buildah, container: str, since: float) -> None:
    """SECURITY D3: the image runs on a read-only root file system. buildah has no read-only
    run, so look instead at what the runs above changed in the container's own file system:
    nothing outside the writable paths (the volumes were mounted over them anyway)."""
    root = Path(buildah("mount", container).stdout.strip())
    try:
        changed = subprocess.run(
            ["find", str(root), "-xdev", "-newermt", f"@{since:.3f}", "-not", "-type", "d",
             "-print"], capture_output=True, text=True, check=True).stdout.split()
        changed = [p for p in changed
                   if not any(Path(p).is_relative_to(root / w) for w in WRITABLE_PATHS)
                   and Path(p).relative_to(root).as_posix() not in BUILDAH_RUN_FILES]
        assert changed == [], f"written outside {WRITABLE_PATHS}: {changed}"
    finally:
        buildah("umount", container)


# ---------------------------------------------------------------------------------------------
# Building


def _buildah_or_skip() -> Buildah:
    missing = [tool for tool in ("buildah", "debootstrap") if _which(tool) is None]
    reason = ""
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install buildah debootstrap)"
    elif os.geteuid() != 0:
        reason = "buildah's chroot isolation and debootstrap need root"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the container test cannot run: {reason}")
        pytest.skip(reason)
    return Buildah(CACHE_DIR / "buildah")


def _which(tool: str) -> str | None:
    """A tool's path, also in /usr/sbin (debootstrap's home) when PATH lacks it."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def _ensure_base_image(buildah: Buildah) -> None:
    """The stand-in for python:3.11-slim: a Debian minbase with python3, made once and kept.
    A lock keeps concurrent test runs from making it twice."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (CACHE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if buildah("images", "--quiet", BASE_IMAGE, check=False).returncode == 0:
            return
        rootfs = Path(tempfile.mkdtemp(prefix=f"rootfs-{BASE_KEY}-", dir=CACHE_DIR))
        try:
            result = subprocess.run(
                [str(_which("debootstrap")), "--variant=minbase",
                 f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(rootfs),
                 _debian_mirror()],
                capture_output=True, text=True, timeout=BUILD_TIMEOUT)
            assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-3000:]}" \
                                           f"\n{result.stderr[-3000:]}"
            container = buildah("from", "scratch").stdout.strip()
            buildah("copy", container, str(rootfs), "/", timeout=BUILD_TIMEOUT)
            buildah("config", "--cmd", "python3", container)
            buildah("commit", "--rm", container, BASE_IMAGE, timeout=BUILD_TIMEOUT)
        finally:
            _unmount_under(rootfs)  # a failed debootstrap leaves its /proc mounted
            shutil.rmtree(rootfs, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted(mounts, reverse=True):
        if Path(mount).is_relative_to(directory):
            subprocess.run(["umount", "--lazy", mount], check=False)


def _debian_mirror() -> str:
    """The machine's configured Debian mirror (one-line or deb822 sources), else Debian's."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        with contextlib.suppress(OSError):
            text = path.read_text()
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
                suites = re.search(r"^Suites:(.*)$", stanza, re.MULTILINE)
                if uris and suites and BASE_SUITE in suites.group(1).split():
                    return uris.group(1)
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == BASE_SUITE:
                    return words[1]
    return DEFAULT_MIRROR


@contextlib.contextmanager
def _built_image(buildah: Buildah, image: str) -> Iterator[dict[str, Any]]:
    # --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
    buildah("bud", "--isolation", "chroot", "--network", "host", "--format", "docker",
            "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",
            "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "--tag", image,
            "--file", str(REPO_ROOT / "Dockerfile"), str(REPO_ROOT), timeout=BUILD_TIMEOUT)
    try:
        inspected = json.loads(buildah("inspect", "--type", "image", image).stdout)
        yield inspected["Docker"]
    finally:
        buildah("rmi", image, check=False)


@contextlib.contextmanager
def _container(buildah: Buildah, image: str) -> Iterator[str]:
    container = buildah("from", image).stdout.strip()
    try:
        yield container
    finally:
        buildah("rm", container, check=False)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class _Gateway:
    """What conftest's Browser needs of a stack: the gateway's URL."""

    url: str


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def _wait_for_health(issuer: str, process: subprocess.Popen[str], timeout: float = 60) -> int:
    """Poll /healthz until it answers; its pid. Fails with the output if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the container exited ({process.returncode}):\n"
                                 f"{process.communicate()[0][-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"{issuer}/healthz", timeout=2)
            if answer.status_code == 200:
                return int(answer.json()["pid"])
        time.sleep(0.2)
    raise AssertionError("the gateway did not answer /healthz")


def _is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def _kill_tree(root: int) -> None:
    """SIGKILL a process and every descendant (killing buildah alone orphans the gateway)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pending, tree = [root], []
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    for pid in reversed(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _uids(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(uid) for uid in line.split()[1:]}
    raise AssertionError(f"no Uid line for {pid}")
