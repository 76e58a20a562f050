"""Command line: `oauth-gateway serve [--dev] [--config PATH]`, `keys`, `config check`,
`clients hash-secret`.

Argument parsing only; the work happens in the package. Configuration problems end the process
with one line naming the key and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.config import ALGORITHMS, Settings, load_settings
from gateway.errors import ConfigError

log = logging.getLogger("gateway")
EXIT_CONFIG_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args.config, dev=args.dev))
        if args.command == "config":
            settings = _settings(args.config)
            print(f"configuration OK: issuer {settings.issuer}, "
                  f"providers: {', '.join(_provider_names(settings)) or 'none'}")
            return 0
        if args.command == "keys":
            return _keys(args)
        if args.command == "clients":
            return _hash_client_secret(generate=args.generate)
    except ConfigError as e:
        print(f"oauth-gateway: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except OSError as e:
        print(f"oauth-gateway: {e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    parser.print_help()
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oauth-gateway", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--dev", action="store_true",
                       help="development mode: local provider stand-ins, generated keys")
    check = commands.add_parser("config", help="configuration tools")
    check.add_argument("action", choices=["check"])
    check.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG)")
    keys = commands.add_parser("keys", help="signing key tools")
    keys.add_argument("action", choices=["generate", "list"])
    keys.add_argument("--dir", help="keys directory (default: tokens.keys_dir of the config)")
    keys.add_argument("--algorithm", choices=ALGORITHMS,
                      help="key type (default: tokens.algorithm of the config)")
    keys.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG)")
    clients = commands.add_parser("clients", help="OpenID Connect client tools")
    clients.add_argument("action", choices=["hash-secret"],
                         help="print the client_secret_hash of a secret read from stdin")
    clients.add_argument("--generate", action="store_true",
                         help="generate a new secret and print it with its hash")
    return parser


def _hash_client_secret(*, generate: bool) -> int:
    from gateway.oidc.clients import MIN_SECRET_LENGTH, generate_client_secret, hash_client_secret

    if generate:
        secret = generate_client_secret()
        print(f"client_secret = {secret}")
        print(f'client_secret_hash = "{hash_client_secret(secret)}"')
        return 0
    secret = sys.stdin.readline().rstrip("\r\n")
    if len(secret) < MIN_SECRET_LENGTH:
        # The hash is fast because secrets are random (SECURITY C4); a short one is guessable.
        print(f"oauth-gateway: a client secret needs at least {MIN_SECRET_LENGTH} characters; "
              "use --generate for a random one", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(hash_client_secret(secret))
    return 0


def _settings(config: str | None) -> Settings:
    return load_settings(config, os.environ)


def _provider_names(settings: Settings) -> list[str]:
    return [f.name for f in dataclasses.fields(settings.providers)
            if getattr(settings.providers, f.name) is not None]


def _keys(args: argparse.Namespace) -> int:
    from gateway.keys import load_keyset, write_new_key

    if args.dir and args.algorithm:
        keys_dir, algorithm = Path(args.dir), args.algorithm
    else:
        settings = _settings(args.config)
        keys_dir = Path(args.dir or settings.tokens.keys_dir)
        algorithm = args.algorithm or settings.tokens.algorithm
    if args.action == "generate":
        path = write_new_key(keys_dir, algorithm)
        print(f"wrote {path} ({algorithm}); it signs from the next start")
        return 0
    keyset = load_keyset(keys_dir, algorithm)
    for key in keyset.keys:
        marker = "signing" if key is keyset.signing else "verify-only"
        print(f"{key.kid}  {key.algorithm}  created {key.created}  {marker}")
    return 0


async def _serve(config: str | None, *, dev: bool) -> int:
    from gateway import server

    if dev:
        from gateway.dev import prepare_dev_stack

        stack = prepare_dev_stack(config, os.environ)
        settings = stack.settings
        provider_servers = stack.start_providers()
        ctx, http_server = server.start_gateway(settings, stack.gateway_sockets)
        servers = [http_server, *provider_servers]
        for name, provider in stack.providers.items():
            log.info("development mode: %s stand-in at %s", name, provider.standin.base_url)
        log.info("open %s/ in your browser and sign in", settings.issuer)
    else:
        settings = _settings(config)
        sockets = server.bind(settings.listen.address, settings.listen.port)
        ctx, http_server = server.start_gateway(settings, sockets)
        servers = [http_server]
        log.info("listening on %s:%d, issuer %s", settings.listen.address,
                 server.bound_port(sockets), settings.issuer)
    await server.wait_for_stop_signal()
    log.info("stopping: draining in-flight requests")
    await server.drain(servers, ctx)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
