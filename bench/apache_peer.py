"""The peer for the benchmark: Apache httpd verifying the gateway's tokens with mod_oauth2.

A team that does not run a gateway's `/verify` often lets its web server check the JWT itself:
Apache with `libapache2-mod-oauth2` (OpenIDC's module, C on OpenSSL) is that, configured with the
gateway's JWKS (`OAuth2TokenVerify jwks_uri`). `running` starts one: mpm_event, one process
(the gateway is one process too) of THREADS threads, on a free loopback port, in a temporary
directory, pinned to the gateway's core. It serves:

- `/static.txt`: a small file, no token asked (the peer's hello-world);
- `/hot/ok.txt`: the file behind a token check whose result mod_oauth2 caches (its default);
- `/cold/ok.txt`: the same with `expiry=0`: every request's token checked again.

Needs the Debian packages `apache2` and `libapache2-mod-oauth2`.
"""

# ruff: noqa: S603, S607 - it runs apache2 by name, as an operator would

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ports import free_port, wait_for_port

APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
# One process; a thread for each of wrk's 100 connections: with 64, mpm_event closed kept-alive
# connections under load (a tenth of the requests were read errors for wrk), at the same rate.
THREADS = 128
CONFIG = """
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel warn
User {user}
Group {group}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule oauth2_module {modules}/mod_oauth2.so
StartServers 1
ServerLimit 1
ThreadLimit {threads}
ThreadsPerChild {threads}
MinSpareThreads {threads}
MaxSpareThreads {threads}
MaxRequestWorkers {threads}
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
DocumentRoot "{root}/htdocs"
<Directory "{root}/htdocs">
    Require all granted
</Directory>
<Location /hot/>
    AuthType oauth2
    OAuth2TokenVerify jwks_uri {jwks}
    Require valid-user
</Location>
<Location /cold/>
    AuthType oauth2
    OAuth2TokenVerify jwks_uri {jwks} expiry=0
    Require valid-user
</Location>
"""
BODY = b"Hello, world"


def available() -> str | None:
    """None when Apache and mod_oauth2 are installed, else what is missing."""
    if not Path(APACHE).exists():
        return "apache2 is not installed (apt-get install apache2 libapache2-mod-oauth2)"
    if not (MODULES / "mod_oauth2.so").exists():
        return "mod_oauth2 is not installed (apt-get install libapache2-mod-oauth2)"
    return None


@contextlib.contextmanager
def running(jwks_uri: str, core: str) -> Iterator[int]:
    """Apache with mod_oauth2 checking tokens against `jwks_uri`; yields its port."""
    with tempfile.TemporaryDirectory(prefix="apache-peer-") as directory:
        root = Path(directory)
        for name in ("hot", "cold"):
            (root / "htdocs" / name).mkdir(parents=True)
            (root / "htdocs" / name / "ok.txt").write_bytes(BODY)
        (root / "htdocs" / "static.txt").write_bytes(BODY)
        # The worker (www-data when started as root) reads these files; nothing secret here.
        os.chmod(root, 0o755)  # noqa: S103
        port = free_port()
        user = "www-data" if os.getuid() == 0 else str(os.getuid())
        group = "www-data" if os.getuid() == 0 else str(os.getgid())
        (root / "httpd.conf").write_text(CONFIG.format(
            root=root, port=port, user=user, group=group, modules=MODULES, threads=THREADS,
            jwks=jwks_uri))
        process = subprocess.Popen(["taskset", "-c", core, APACHE, "-f", str(root / "httpd.conf"),
                                    "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, still_starting=lambda: _still_starting(process, root))
            yield port
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def _still_starting(process: subprocess.Popen[bytes], root: Path) -> None:
    if process.poll() is not None:
        log = (root / "error.log").read_text() if (root / "error.log").exists() else ""
        raise RuntimeError(f"apache2 exited ({process.returncode}): {log[-2000:]}")


def version() -> str:
    output = subprocess.run([APACHE, "-v"], capture_output=True, text=True, check=False).stdout
    first = output.splitlines()[0] if output else "apache2"
    module = shutil.which("dpkg-query")
    if module is None:
        return first
    mod = subprocess.run([module, "-W", "-f=${Version}", "libapache2-mod-oauth2"],
                         capture_output=True, text=True, check=False).stdout
    return f"{first.removeprefix('Server version: ')}, mod_oauth2 {mod or '?'}"
