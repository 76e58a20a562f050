"""What kept-alive provider connections save over TLS: the gateway's upstream client
(gateway/upstream/client.py, pooled) against Tornado's simple client with the same TLS settings (a
connection, and a handshake, per call), calling a local HTTPS server in rounds.

    .venv/bin/python bench/upstream_tls.py [--calls 300] [--rounds 3]

The real providers are HTTPS; the login benchmark's stand-in (bench/run.py) is plain HTTP on
loopback, where a connection costs little. Client and server share one process pinned to one
core, so the figures are the CPU of both ends per call: the ratio is what matters.
"""

# ruff: noqa: S603, S607 - taskset by name

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tornado.httpserver
import tornado.web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from gateway.config import UpstreamSettings
from gateway.server import bind, bound_port
from gateway.upstream.client import Upstream, make_http_client, provider_tls_context


class Document(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"ok": True})


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 (ECDSA P-256, as Google's front ends
    offer): (CA file, certificate file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provider")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """One context for every connection, as a real server keeps (a dict of file names would
    make Tornado load them for each handshake)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def measure(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ca_file, cert_file, key_file = certificates(Path(directory))
        sockets = bind("127.0.0.1", 0)
        server = tornado.httpserver.HTTPServer(
            tornado.web.Application([(r"/doc", Document)]),
            ssl_options=server_context(cert_file, key_file))
        server.add_sockets(sockets)
        url = f"https://127.0.0.1:{bound_port(sockets)}/doc"
        settings = UpstreamSettings(ca_file=str(ca_file))
        clients = {
            "kept alive (the gateway's client)": Upstream(make_http_client(settings), settings),
            "a connection per call (Tornado's simple client)": Upstream(SimpleAsyncHTTPClient(
                force_instance=True,
                defaults={"ssl_options": provider_tls_context(str(ca_file))}), settings),
        }
        per_call: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(rounds):
            for name, client in clients.items():
                started = time.process_time()
                for _ in range(calls):
                    await client.fetch_json(client.request(url), provider="bench", what="call")
                per_call[name].append((time.process_time() - started) / calls * 1e6)
        server.stop()
    kept, fresh = per_call.values()
    ratios = [f / k for k, f in zip(kept, fresh, strict=True)]
    print(f"# upstream over TLS, {time.strftime('%Y-%m-%d')}, {calls} calls x {rounds} rounds, "
          "client and server on one core")
    print("| client | CPU per call, both ends (median, spread) |")
    print("|---|---|")
    for name, values in per_call.items():
        print(f"| {name} | {statistics.median(values):.0f} us "
              f"({min(values):.0f}-{max(values):.0f}) |")
    print(f"| a connection per call / kept alive | {statistics.median(ratios):.2f} x "
          f"({min(ratios):.2f}-{max(ratios):.2f}) |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pinned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cpus = os.cpu_count()
    if not args.pinned and cpus and cpus > 1:
        return subprocess.run(["taskset", "-c", "0", sys.executable, __file__, "--pinned",
                               "--calls", str(args.calls), "--rounds", str(args.rounds)],
                              check=False).returncode
    asyncio.run(measure(args.calls, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
