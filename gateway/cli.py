"""The `oauth-gateway` command: `serve [--dev]`, `config check [--dev]`, `keys`, `sessions`,
`store migrate`, `clients`.

Argument parsing only; the work happens in the package. Configuration problems end the process
with one line naming the key and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import socket
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.config import ALGORITHMS, Settings, TokenSettings, load_settings
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
            return _check_config(args.config, dev=args.dev)
        if args.command == "keys":
            return _keys(args)
        if args.command == "clients":
            return _hash_client_secret(generate=args.generate)
        if args.command == "sessions":
            return asyncio.run(_sessions(args))
        if args.command == "store":
            return asyncio.run(_migrate_store(args.config))
    except ConfigError as e:
        _print_config_error(e)
        return EXIT_CONFIG_ERROR
    except OSError as e:
        print(f"oauth-gateway: {e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    parser.print_help()
    return 1


DESCRIPTION = ("Social-login gateway: sign in with Google, Facebook, X or GitHub, get a signed "
               "JWT.")
EPILOG = """\
Try it with no setup:
  oauth-gateway serve --dev        then open http://localhost:8080/

Configuration: a TOML file (--config PATH, or $GATEWAY_CONFIG) and GATEWAY_<SECTION>__<KEY>
environment variables, which win over the file (lists comma-separated; any secret can come from
a file with <KEY>_FILE). Every key is described in config/gateway.example.toml.

Run `oauth-gateway COMMAND --help` for a command's options."""
CONFIG_HELP = "the TOML configuration file (default: $GATEWAY_CONFIG; none: environment only)"


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog to the terminal's width but keeps
    paragraphs with indented lines (examples, tables) as written; lists the commands without
    argparse's extra `COMMAND` line above them."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n  " in paragraph or paragraph.startswith("  "):
                paragraphs.append(textwrap.indent(paragraph, indent))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width,
                                                initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paragraphs)

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if action.nargs == argparse.PARSER:
            text = text.split("\n", 1)[1]
        return text


def _parser() -> argparse.ArgumentParser:
    formatter = _HelpFormatter
    parser = argparse.ArgumentParser(prog="oauth-gateway", description=DESCRIPTION,
                                     epilog=EPILOG, formatter_class=formatter)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", formatter_class=formatter,
        help="Run the gateway; with --dev, a local one that needs no setup.",
        description="Run the gateway until SIGTERM or Ctrl-C, then drain in-flight requests.",
        epilog="examples:\n"
               "  oauth-gateway serve --dev\n"
               "  oauth-gateway serve --config /etc/oauth-gateway/gateway.toml --workers 4")
    serve.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    serve.add_argument("--dev", action="store_true",
                       help="development mode: local stand-ins for Google, Facebook, X and GitHub, "
                            "keys and cookie secret generated into dev.state_dir, apps on "
                            "http://localhost (any port) allowed as return URLs; never in "
                            "production")
    serve.add_argument("--workers", type=_worker_count, metavar="N",
                       help="worker processes sharing the port (default: listen.workers, 1); "
                            "more than 1 needs a sqlite or redis store")

    config = commands.add_parser(
        "config", formatter_class=formatter,
        help="Check a configuration before you deploy it.",
        description="Load the configuration as `serve` would (file, then environment) and "
                    "check every key: prints a summary and exits 0, or prints one line naming "
                    "the first wrong or missing key and exits 2.",
        epilog="examples:\n"
               "  oauth-gateway config check --config config/gateway.minimal.toml\n"
               "  oauth-gateway config check --dev --config config/dev.toml")
    config.add_argument("action", choices=["check"], metavar="check",
                        help="the only action: check the configuration")
    config.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    config.add_argument("--dev", action="store_true",
                        help="check it as `serve --dev` runs it: development defaults beneath "
                             "the file (issuer, keys, secrets, stand-in providers); binds no "
                             "port and writes nothing")

    keys = commands.add_parser(
        "keys", formatter_class=formatter,
        help="Generate, rotate, list or prune the keys that sign tokens.",
        description="Manage the private keys in tokens.keys_dir; every key there is published "
                    "in the JWKS, and the newest active one signs.",
        epilog="actions:\n"
               "  generate, rotate  write a new key: published at once, signing after\n"
               "                    tokens.key_activation_delay (at once if it is the only key\n"
               "                    of its algorithm); with an algorithm other than RS256, an\n"
               "                    RS256 key for OpenID Connect ID tokens as well\n"
               "  list              each key's kid, algorithm, creation time and status\n"
               "  prune             remove keys whose tokens have all expired")
    keys.add_argument("action", choices=["generate", "rotate", "list", "prune"],
                      metavar="{generate,rotate,list,prune}", help="what to do (see below)")
    keys.add_argument("--dir", help="the keys directory (default: tokens.keys_dir of the "
                                    "configuration)")
    keys.add_argument("--algorithm", choices=ALGORITHMS,
                      help="the key type (default: tokens.algorithm of the configuration)")
    keys.add_argument("--config", metavar="PATH", help=CONFIG_HELP)

    sessions = commands.add_parser(
        "sessions", formatter_class=formatter,
        help="List or end a user's sessions, wherever their browsers are.",
        description="Read the store the configuration names. `list` prints a user's live "
                    "sessions; `revoke` ends them (by user, or the one session of a sid): "
                    "the session, its refresh-token families and access tokens, and a "
                    "back-channel logout to the apps that took part.",
        epilog="examples:\n"
               "  oauth-gateway sessions list --sub google:1098 --config gateway.toml\n"
               "  oauth-gateway sessions revoke --sid=3q2-7wEAAAAA --config gateway.toml")
    sessions.add_argument("action", choices=["list", "revoke"], metavar="{list,revoke}",
                          help="what to do")
    whom = sessions.add_mutually_exclusive_group(required=True)
    whom.add_argument("--sub", help="the user: the `sub` claim of their tokens")
    whom.add_argument("--sid", help="one session: the `sid` claim of its tokens (revoke only); "
                      "write --sid=SID, since a sid may begin with '-'")
    sessions.add_argument("--config", metavar="PATH", help=CONFIG_HELP)

    store = commands.add_parser(
        "store", formatter_class=formatter,
        help="Create or migrate the store's schema before the gateways start.",
        description="Apply the schema migrations the store of the configuration lacks (a "
                    "PostgreSQL database or a SQLite file; Redis and memory have none), each "
                    "once, then exit 0; exit 1 if the store cannot be reached. Every gateway "
                    "does the same when it starts: run it first to migrate with an account the "
                    "gateways do not use, or to see that a deployment can reach its store.",
        epilog="examples:\n"
               "  oauth-gateway store migrate --config /etc/oauth-gateway/gateway.toml")
    store.add_argument("action", choices=["migrate"], metavar="migrate",
                       help="the only action: migrate the schema")
    store.add_argument("--config", metavar="PATH", help=CONFIG_HELP)

    clients = commands.add_parser(
        "clients", formatter_class=formatter,
        help="Generate or hash the client secret of an OpenID Connect app.",
        description="Print the client_secret_hash of a secret read from stdin, for a "
                    "[[clients]] entry of the configuration; the secret itself goes to the "
                    "app only.",
        epilog="examples:\n"
               "  oauth-gateway clients hash-secret --generate\n"
               "  printf '%s\\n' \"$SECRET\" | oauth-gateway clients hash-secret")
    clients.add_argument("action", choices=["hash-secret"], metavar="hash-secret",
                         help="the only action: print the hash of the secret")
    clients.add_argument("--generate", action="store_true",
                         help="generate a new random secret and print it with its hash")
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


def _check_config(config: str | None, *, dev: bool) -> int:
    if dev:
        from gateway.dev.mode import check_dev_config

        settings = check_dev_config(config, os.environ)
    else:
        try:
            settings = _settings(config)
        except ConfigError as e:
            if e.key == "issuer" and str(e).endswith("is required"):
                # Most likely a development file (they need no issuer): say how to check one.
                raise ConfigError("issuer", "is required (a development configuration, such "
                                  "as config/dev.toml? check it with `oauth-gateway config "
                                  "check --dev`)") from None
            raise
    mode = " (development mode)" if dev else ""
    port = " (its port chosen at start)" if dev and settings.listen.port == 0 else ""
    print(f"configuration OK{mode}: issuer {settings.issuer}{port}, "
          f"providers: {', '.join(_provider_names(settings)) or 'none'}")
    return 0


def _settings(config: str | None, command_line: Mapping[str, Any] | None = None) -> Settings:
    return load_settings(config, os.environ, overrides=command_line)


def _provider_names(settings: Settings) -> list[str]:
    return settings.providers.enabled_names()


def _keys(args: argparse.Namespace) -> int:
    """SECURITY K3: keys are rotated in (published first, signing later) and pruned once every
    token they signed has expired (gateway/keys.py)."""
    # Pruning needs the real token lifetime: it always reads the configuration.
    if args.dir and args.algorithm and args.action != "prune":
        keys_dir, algorithm, tokens = Path(args.dir), args.algorithm, TokenSettings()
    else:
        tokens = _settings(args.config).tokens
        keys_dir = Path(args.dir or tokens.keys_dir)
        algorithm = args.algorithm or tokens.algorithm
    if args.action in ("generate", "rotate"):
        _write_keys(keys_dir, algorithm, tokens)
    elif args.action == "prune":
        _prune_keys(keys_dir, algorithm, tokens)
    else:
        _list_keys(keys_dir, algorithm, tokens)
    return 0


def _write_keys(keys_dir: Path, algorithm: str, tokens: TokenSettings) -> None:
    from gateway.keys import families_present, key_algorithms, write_new_key

    delay, now = tokens.key_activation_delay, time.time()
    # SECURITY J11: with another algorithm than RS256, an RS256 key for ID tokens as well.
    present = families_present(keys_dir)
    for key_algorithm in key_algorithms(algorithm):
        path = write_new_key(keys_dir, key_algorithm, now)
        when = "at once (the only key)" if key_algorithm not in present else \
            f"from {_utc(now + delay)} (tokens.key_activation_delay = {delay} s)"
        what = "" if key_algorithm == algorithm else ", for ID tokens"
        print(f"wrote {path} ({key_algorithm}{what}): published by running gateways within "
              f"{tokens.key_reload_interval:.0f} s; it signs {when}")


def _prune_keys(keys_dir: Path, algorithm: str, tokens: TokenSettings) -> None:
    from gateway.keys import key_path, load_keyset, prunable_keys

    now = time.time()
    keyset = load_keyset(keys_dir, algorithm, activation_delay=tokens.key_activation_delay,
                         now=now)
    pruned = [key for family in keyset.families
              for key in prunable_keys(family, now, tokens.access_token_lifetime,
                                       tokens.leeway)]
    for key in pruned:
        key_path(keys_dir, key).unlink()
        print(f"removed {key_path(keys_dir, key)} ({key.kid}): its tokens have expired")
    if not pruned:
        print("nothing to prune")


def _list_keys(keys_dir: Path, algorithm: str, tokens: TokenSettings) -> None:
    from gateway.keys import ID_TOKEN_ALGORITHM, load_keyset

    delay = tokens.key_activation_delay
    keyset = load_keyset(keys_dir, algorithm, activation_delay=delay, now=time.time())
    for family in keyset.families:
        signing_index = family.keys.index(family.signing)
        for index, key in enumerate(family.keys):
            if key is family.signing:
                status = "signing"
            elif index > signing_index:
                status = f"signs-from {_utc(key.created_at + delay)}  pending"
            else:
                status = "verify-only"
            print(f"{key.kid}  {key.algorithm}  created {key.created}  {status}")
    if algorithm != ID_TOKEN_ALGORITHM and keyset.rs256 is None:
        print(f"no {ID_TOKEN_ALGORITHM} key for ID tokens: create one with `oauth-gateway keys "
              f"generate --algorithm {ID_TOKEN_ALGORITHM}`")


async def _sessions(args: argparse.Namespace) -> int:
    """SECURITY P8: sessions found by user or by sid, ended as one (gateway/sessions.py)."""
    from gateway.app import build_context
    from gateway.keys import load_keyset
    from gateway.signout import end_sessions

    settings = _settings(args.config)
    keyset = load_keyset(Path(settings.tokens.keys_dir), settings.tokens.algorithm,
                         require_rs256=True)
    ctx = build_context(settings, keyset)
    try:
        if args.action == "list":
            if args.sub is None:
                raise ConfigError("--sid", "only `sessions revoke` takes a sid; list takes --sub")
            for _, session in await ctx.sessions.of_sub(args.sub):
                print(f"{session.sid}  {session.idp}  signed in {_utc(session.created)}  "
                      f"last seen {_utc(session.last_seen)}  "
                      f"{session.device or 'unknown device'} from {session.address or '?'}")
            return 0
        count, sids = await end_sessions(ctx, sub=args.sub, sid=args.sid)
        print(f"ended {count} session(s); revoked what {len(sids)} sid(s) issued")
        await ctx.backchannel.drain()  # the apps are told before the command returns
        return 0
    finally:
        await ctx.store.close()


async def _migrate_store(config: str | None) -> int:
    from gateway.store import StoreUnavailable
    from gateway.store.factory import migrate_store

    try:
        print(await migrate_store(_settings(config)))
    except StoreUnavailable as e:
        print(f"oauth-gateway: store migrate: {e}", file=sys.stderr)
        return 1
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
    data_plane_sockets = server.bind_data_plane(settings)
    count = settings.listen.workers
    if count == 1:
        asyncio.run(server.serve(settings, sockets, data_plane_sockets=data_plane_sockets))
        return 0
    # Checked once here, so that a missing key is one line rather than one per worker.
    load_keyset(Path(settings.tokens.keys_dir), settings.tokens.algorithm, require_rs256=True)
    log.info("listening on %s:%d with %d worker processes, issuer %s", settings.listen.address,
             server.bound_port(sockets), count, settings.issuer)
    return run_workers(count, functools.partial(_worker, settings, sockets, data_plane_sockets,
                                                os.getpid()))


def _worker(settings: Settings, sockets: Sequence[socket.socket],
            data_plane_sockets: Sequence[socket.socket], parent: int, index: int) -> int:
    """One worker's life, in the forked process: its own event loop, keys, store, HTTP client."""
    from gateway import server

    try:
        asyncio.run(server.serve(settings, sockets, data_plane_sockets=data_plane_sockets,
                                 parent=parent, worker=index))
    except ConfigError as e:
        _print_config_error(e)
        return EXIT_CONFIG_ERROR
    return 0


async def _serve_dev(config: str | None, command_line: Mapping[str, Any] | None) -> int:
    from gateway import server
    from gateway.dev.mode import prepare_dev_stack

    stop = server.stop_event()
    stack = prepare_dev_stack(config, os.environ, command_line=command_line)
    settings = stack.settings
    provider_servers = stack.start_providers()
    configure_logging(settings.log_format, settings.logging.level)
    ctx, http_server = server.start_gateway(settings, stack.gateway_sockets)
    admin = server.start_admin(settings, ctx)
    data_plane = await server.start_data_plane(settings, http_server,
                                               server.bind_data_plane(settings))
    for name, provider in stack.providers.items():
        log.info("development mode: %s stand-in at %s", name, provider.standin.base_url)
    log.info("development mode: a login may return to any app on http://localhost, "
             "http://127.0.0.1 or http://[::1], whatever its port")
    log.info("open %s/ in your browser and sign in", settings.issuer)
    server.settle_heap()
    await stop.wait()
    log.info("stopping: draining in-flight requests")
    await server.drain([http_server, *provider_servers, *([admin[0]] if admin else []),
                        *([data_plane] if data_plane else [])], ctx)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
