"""Runs the gateway's HTTP server with hardened limits and a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web

from gateway.app import build_context, make_app
from gateway.config import Settings
from gateway.context import GatewayContext
from gateway.keys import load_keyset

log = logging.getLogger("gateway.server")

# SECURITY H7: Tornado's defaults (100 MiB bodies, no idle timeout) are far above anything a
# login or a verification needs. These are the hard limits, past which the connection is
# dropped; the handlers answer 413/431 above their own, lower limits (handlers/base.py).
MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
IDLE_CONNECTION_TIMEOUT = 75.0
BODY_TIMEOUT = 15.0
DRAIN_SECONDS = 10.0


def make_http_server(app: tornado.web.Application) -> tornado.httpserver.HTTPServer:
    return tornado.httpserver.HTTPServer(
        app,
        xheaders=False,
        max_body_size=MAX_BODY_BYTES,
        max_header_size=MAX_HEADER_BYTES,
        idle_connection_timeout=IDLE_CONNECTION_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
    )


def bind(address: str, port: int) -> list[socket.socket]:
    return tornado.netutil.bind_sockets(port, address or None)


def bound_port(sockets: Sequence[socket.socket]) -> int:
    return int(sockets[0].getsockname()[1])


def start_gateway(settings: Settings, sockets: Sequence[socket.socket]
                  ) -> tuple[GatewayContext, tornado.httpserver.HTTPServer]:
    """Load keys, build the app and serve it on already bound sockets (call inside the loop)."""
    keyset = load_keyset(Path(settings.tokens.keys_dir), settings.tokens.algorithm,
                         generate_if_empty=settings.dev_mode)
    ctx = build_context(settings, keyset)
    server = make_http_server(make_app(ctx))
    server.add_sockets(sockets)
    return ctx, server


async def wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def drain(servers: Sequence[tornado.httpserver.HTTPServer], ctx: GatewayContext) -> None:
    """Stop accepting, let in-flight requests finish (bounded), close the store."""
    for server in servers:
        server.stop()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(s.close_all_connections() for s in servers)), DRAIN_SECONDS)
    except TimeoutError:
        log.warning("drain time of %.0fs exceeded; closing remaining connections", DRAIN_SECONDS)
    await ctx.store.close()
