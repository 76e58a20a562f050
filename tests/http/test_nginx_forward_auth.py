"""A real nginx (Debian's package) protects an app that has no sign-in code, with the gateway's
`GET /auth` behind `auth_request`, configured from the shipped sample `config/nginx.conf`.

Everything on 127.0.0.1: nginx, the app and the gateway on three ports. Browsers send a host's
cookies to every port of it, so the gateway's (host-only) cookies reach `/auth` through nginx.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, LoopThread, Stack
from proxy_support import (
    check_forged_headers_refused,
    check_sign_in_and_out,
    executable,
    protected_app,
    proxied_stack,
    running,
)

pytestmark = pytest.mark.slow

SAMPLE = REPO_ROOT / "config" / "nginx.conf"


def nginx_config(tmp_path: Path, *, port: int, gateway_port: int, app_port: int) -> str:
    """The sample's app server, on loopback without TLS, inside a main context of our own."""
    sample = SAMPLE.read_text()
    sample = sample[: sample.index("# The gateway itself")]  # the gateway is reached directly
    sample = sample.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{gateway_port};")
    sample = sample.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};")
    sample = sample.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    sample = re.sub(r"\n\s*ssl_certificate(_key)?\s[^\n]*", "", sample)
    temp = {name: tmp_path / name for name in ("client_body", "proxy", "fastcgi", "uwsgi",
                                               "scgi")}
    for path in temp.values():
        path.mkdir()
    # As root, nginx's workers would run as `nobody`, who cannot enter pytest's 0700 temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
{sample}
}}
"""


@pytest.fixture
def app_port(loop_thread: LoopThread) -> Iterator[int]:
    with protected_app(loop_thread) as port:
        yield port


@pytest.fixture
def nginx(tmp_path: Path, app_port: int, make_stack: Callable[..., Stack]
          ) -> Iterator[tuple[str, Stack]]:
    nginx = executable("nginx", "nginx")
    port, origin, stack, gateway_port = proxied_stack(make_stack)
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(tmp_path, port=port, gateway_port=gateway_port,
                                   app_port=app_port))
    with running([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "err.log"),
                  "-c", str(config)], port, name="nginx"):
        yield origin, stack


def test_nginx_sends_a_stranger_to_login_and_back_then_refuses_after_sign_out(nginx) -> None:
    def check_shown(page: str, claims: dict[str, Any]) -> None:
        assert f"<b id='user'>{claims['sub']}</b>" in page

    check_sign_in_and_out(*nginx, check_shown)


def test_nginx_never_lets_a_forged_user_header_through(nginx) -> None:
    check_forged_headers_refused(*nginx)


COMPOSE_SITE = REPO_ROOT / "deploy" / "nginx" / "gateway.conf"


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A throwaway certificate and key for `name`, for nginx to load."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    pem, private = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pem, private


def test_nginx_accepts_the_compose_files_site(tmp_path: Path) -> None:
    """deploy/nginx/gateway.conf, as the nginx image includes it (inside `http`), passes
    `nginx -t`. Only what the test machine cannot have changes: the replicas' name (Compose's
    DNS) becomes a loopback address, the certificate a throwaway one."""
    nginx = executable("nginx", "nginx")
    site = COMPOSE_SITE.read_text()
    assert site.count("server gateway:8080 ") == 1
    site = site.replace("server gateway:8080 ", "server 127.0.0.1:8080 ")
    pem, key = self_signed(tmp_path, "login.example.com")
    site = site.replace("/etc/nginx/certs/login.example.com.pem", str(pem)) \
        .replace("/etc/nginx/certs/login.example.com.key", str(key))
    assert "/etc/nginx/certs/" not in site
    config = tmp_path / "nginx.conf"
    config.write_text(f"""pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
{site}
}}
""")
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "err.log"),
                              "-c", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
