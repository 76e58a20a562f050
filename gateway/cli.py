"""Command line: `oauth-gateway serve [--dev] [--config PATH] [--workers N]`, `keys`,
`config check`, `clients hash-secret`.

Argument parsing only; the work happens in the package. Configuration problems end the process
with one line naming the key and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.config import ALGORITHMS, Settings, load_settings
from gateway.errors import EXIT_CONFIG_ERROR, ConfigError
from gateway.logs import configure_logging

log = logging.getLogger("gateway")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return _serve(args.config, dev=args.dev, workers=args.workers)
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
        _print_config_error(e)
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
    serve.add_argument("--workers", type=_worker_count, metavar="N",
                       help="worker processes sharing the port (default: listen.workers, 1); "
                            "more than 1 needs a sqlite or redis store")
    check = commands.add_parser("config", help="configuration tools")
    check.add_argument("action", choices=["check"])
    check.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG)")
    keys = commands.add_parser("keys", help="signing key tools")
    keys.add_argument("action", choices=["generate", "rotate", "list", "prune"],
                      help="generate|rotate: write a new key (published at once, signing after "
                           "tokens.key_activation_delay); list; prune: remove keys whose "
                           "tokens have all expired")
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


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {count})")
    return count


def _print_config_error(error: ConfigError) -> None:
    print(f"oauth-gateway: configuration error: {error}", file=sys.stderr)


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


def _settings(config: str | None, command_line: Mapping[str, Any] | None = None) -> Settings:
    return load_settings(config, os.environ, overrides=command_line)


def _provider_names(settings: Settings) -> list[str]:
    return [f.name for f in dataclasses.fields(settings.providers)
            if getattr(settings.providers, f.name) is not None]


def _keys(args: argparse.Namespace) -> int:
    """SECURITY K3: keys are rotated in (published first, signing later) and pruned once every
    token they signed has expired (gateway/keys.py)."""
    from gateway.config import TokenSettings
    from gateway.keys import KEY_FILE_PREFIX, key_path, load_keyset, prunable_keys, write_new_key

    # Pruning needs the real token lifetime: it always reads the configuration.
    if args.dir and args.algorithm and args.action != "prune":
        keys_dir, algorithm, tokens = Path(args.dir), args.algorithm, TokenSettings()
    else:
        tokens = _settings(args.config).tokens
        keys_dir = Path(args.dir or tokens.keys_dir)
        algorithm = args.algorithm or tokens.algorithm
    delay = tokens.key_activation_delay
    now = time.time()
    if args.action in ("generate", "rotate"):
        first = not (keys_dir.is_dir() and any(keys_dir.glob(f"{KEY_FILE_PREFIX}*.pem")))
        path = write_new_key(keys_dir, algorithm, now)
        when = "at once (the only key)" if first else \
            f"from {_utc(now + delay)} (tokens.key_activation_delay = {delay} s)"
        print(f"wrote {path} ({algorithm}): published by running gateways within "
              f"{tokens.key_reload_interval:.0f} s; it signs {when}")
        return 0
    keyset = load_keyset(keys_dir, algorithm, activation_delay=delay, now=now)
    if args.action == "prune":
        pruned = prunable_keys(keyset, now, tokens.access_token_lifetime, tokens.leeway)
        for key in pruned:
            key_path(keys_dir, key).unlink()
            print(f"removed {key_path(keys_dir, key)} ({key.kid}): its tokens have expired")
        if not pruned:
            print("nothing to prune")
        return 0
    signing_index = keyset.keys.index(keyset.signing)
    for index, key in enumerate(keyset.keys):
        if key is keyset.signing:
            status = "signing"
        elif index > signing_index:
            status = f"signs-from {_utc(key.created_at + delay)}  pending"
        else:
            status = "verify-only"
        print(f"{key.kid}  {key.algorithm}  created {key.created}  {status}")
    return 0


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _serve(config: str | None, *, dev: bool, workers: int | None) -> int:
    # The command line's --workers wins over the file and the environment.
    command_line = {"listen": {"workers": workers}} if workers is not None else None
    if dev:
        return asyncio.run(_serve_dev(config, command_line))
    from gateway import server
    from gateway.keys import load_keyset
    from gateway.workers import run_workers

    settings = _settings(config, command_line)
    configure_logging(settings.log_format, settings.logging.level)
    sockets = server.bind(settings.listen.address, settings.listen.port)
    count = settings.listen.workers
    if count == 1:
        asyncio.run(server.serve(settings, sockets))
        return 0
    # Checked once here, so that a missing key is one line rather than one per worker.
    load_keyset(Path(settings.tokens.keys_dir), settings.tokens.algorithm)
    log.info("listening on %s:%d with %d worker processes, issuer %s", settings.listen.address,
             server.bound_port(sockets), count, settings.issuer)
    return run_workers(count, functools.partial(_worker, settings, sockets, os.getpid()))


def _worker(settings: Settings, sockets: Sequence[socket.socket], parent: int,
            index: int) -> int:
    """One worker's life, in the forked process: its own event loop, keys, store, HTTP client."""
    from gateway import server

    try:
        asyncio.run(server.serve(settings, sockets, parent=parent))
    except ConfigError as e:
        _print_config_error(e)
        return EXIT_CONFIG_ERROR
    return 0


async def _serve_dev(config: str | None, command_line: Mapping[str, Any] | None) -> int:
    from gateway import server
    from gateway.dev import prepare_dev_stack

    stop = server.stop_event()
    stack = prepare_dev_stack(config, os.environ, command_line=command_line)
    settings = stack.settings
    provider_servers = stack.start_providers()
    configure_logging(settings.log_format, settings.logging.level)
    ctx, http_server = server.start_gateway(settings, stack.gateway_sockets)
    admin = server.start_admin(settings, ctx)
    for name, provider in stack.providers.items():
        log.info("development mode: %s stand-in at %s", name, provider.standin.base_url)
    log.info("open %s/ in your browser and sign in", settings.issuer)
    server.settle_heap()
    await stop.wait()
    log.info("stopping: draining in-flight requests")
    await server.drain([http_server, *provider_servers, *([admin[0]] if admin else [])], ctx)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
