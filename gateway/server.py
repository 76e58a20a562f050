"""Runs the gateway's HTTP server with hardened limits and a graceful stop: bind, serve until
SIGTERM or SIGINT, then drain the requests in flight. Several worker processes, each running
`serve`, are supervised by `gateway.workers`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from gateway.app import build_context, make_admin_app, make_app
from gateway.config import Settings
from gateway.context import GatewayContext
from gateway.data_plane import DataPlane
from gateway.fast_route import fast_routes
from gateway.handlers.base import edge_of
from gateway.http_limits import (
    BODY_TIMEOUT,
    IDLE_CONNECTION_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
)
from gateway.keys import KeyDirectory
from gateway.workers import STOP_SIGNALS, stop_when_orphaned

log = logging.getLogger("gateway.server")

DRAIN_SECONDS = 10.0


def make_http_server(app: tornado.web.Application, *, shared_socket: bool = False
                     ) -> tornado.httpserver.HTTPServer:
    server_class = SharedSocketHTTPServer if shared_socket else tornado.httpserver.HTTPServer
    return server_class(
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


Listener = tornado.httpserver.HTTPServer | DataPlane


def start_gateway(settings: Settings, sockets: Sequence[socket.socket], *,
                  shared_socket: bool = False) -> tuple[GatewayContext, Listener]:
    """Load keys, build the app and serve it on already bound sockets (call inside the loop):
    with Tornado's HTTP server, or with `listen.http_parser = "llhttp"` the data plane's
    connection for every route (gateway/data_plane.py)."""
    tokens = settings.tokens
    keys = KeyDirectory(Path(tokens.keys_dir), tokens.algorithm, tokens.key_activation_delay,
                        require_rs256=True)
    keyset = keys.load(generate_if_empty=settings.dev_mode)
    ctx = build_context(settings, keyset)
    app = make_app(ctx)
    server: Listener
    if settings.listen.http_parser == "llhttp":
        server = DataPlane(app, fast_routes(app), every_route=True)
        server.listen(sockets, shared_socket=shared_socket)
    else:
        server = make_http_server(app, shared_socket=shared_socket)
        server.add_sockets(sockets)
    if tokens.key_reload_interval > 0:
        watch_keys(ctx, keys, tokens.key_reload_interval)
    return ctx, server


def watch_keys(ctx: GatewayContext, keys: KeyDirectory,
               interval: float) -> tornado.ioloop.PeriodicCallback:
    """SECURITY K3: key files added or removed are picked up, and a new key starts signing
    when its time comes, without a restart. The context is held weakly: a gateway dropped
    without a drain (as in the tests) ends its own watch."""
    ctx_ref = weakref.ref(ctx)

    def reload() -> None:
        current = ctx_ref()
        if current is None:
            watch.stop()
            return
        current.use_keyset(keys.refresh(current.keyset))

    watch = tornado.ioloop.PeriodicCallback(reload, interval * 1000, jitter=0.1)
    watch.start()
    return watch


def start_admin(settings: Settings, ctx: GatewayContext, *, worker: int | None = None
                ) -> tuple[tornado.httpserver.HTTPServer, int] | None:
    """The admin listener (`/metrics`) beside the public one, with its port; None when
    `admin.enabled` is false (call inside the loop). Worker `i` of `serve --workers N` has its
    own, on `admin.port + i` (a free port each when admin.port is 0): each process counts its
    own requests, and Prometheus scrapes each as a target of its own."""
    if not settings.admin.enabled:
        return None
    port = settings.admin.port + (worker or 0) if settings.admin.port else 0
    sockets = bind(settings.admin.address, port)
    server = make_http_server(make_admin_app(ctx))
    server.add_sockets(sockets)
    port = bound_port(sockets)
    whose = "" if worker is None else f" of worker {worker}"
    log.info("admin listener (/metrics)%s on %s:%d", whose, settings.admin.address, port)
    return server, port


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the loop). A worker is forked with these
    signals blocked (see `Workers.start`); they are unblocked once the loop will handle them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return stop


def bind_data_plane(settings: Settings) -> list[socket.socket]:
    """The data plane's sockets, when it is enabled (bound before any worker is forked)."""
    data_plane = settings.data_plane
    return bind(data_plane.address, data_plane.port) if data_plane.enabled else []


async def start_data_plane(settings: Settings, http_server: Listener,
                           sockets: Sequence[socket.socket], *,
                           shared_socket: bool = False) -> DataPlane | None:
    """The data-plane listener (gateway/data_plane.py) on `sockets`, serving the application's
    fast routes; None without sockets."""
    if not sockets:
        return None
    application = application_of(http_server)
    plane = DataPlane(application, fast_routes(application))
    await plane.start(sockets, shared_socket=shared_socket)
    host, port = sockets[0].getsockname()[:2]
    log.info("data plane (/verify, /auth) on %s:%d", host, port)
    return plane


async def serve(settings: Settings, sockets: Sequence[socket.socket], *,
                data_plane_sockets: Sequence[socket.socket] = (),
                parent: int | None = None, worker: int = 0) -> None:
    """Serve until SIGTERM or SIGINT, or in a worker (number `worker`) until its `parent` is
    gone; then drain."""
    stop = stop_event()
    try:
        await _serve_until_stopped(settings, sockets, data_plane_sockets, stop, parent, worker)
    finally:
        release_stop_signals()


def release_stop_signals() -> None:
    """Before the loop closes: block the stop signals, then drop their handlers. CPython 3.11
    closes the loop's self-pipe before it removes signal handlers, and a SIGTERM in between
    (a supervisor stopping a worker that is failing anyway) printed a BrokenPipeError
    traceback; blocked, a late signal waits for the exit that is coming."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)


async def _serve_until_stopped(settings: Settings, sockets: Sequence[socket.socket],
                               data_plane_sockets: Sequence[socket.socket],
                               stop: asyncio.Event, parent: int | None, worker: int) -> None:
    # Workers share one listening socket (forked after the bind).
    ctx, http_server = start_gateway(settings, sockets, shared_socket=parent is not None)
    servers: list[Listener] = [http_server]
    data_plane = await start_data_plane(settings, http_server, data_plane_sockets,
                                        shared_socket=parent is not None)
    servers.extend([data_plane] if data_plane else [])
    admin = start_admin(settings, ctx, worker=worker if parent is not None else None)
    servers.extend([admin[0]] if admin else [])
    orphan_watch = asyncio.create_task(stop_when_orphaned(parent, stop)) if parent else None
    settle_heap()
    if parent:
        log.info("worker pid %d serving", os.getpid())
    else:
        log.info("listening on %s:%d, issuer %s", settings.listen.address, bound_port(sockets),
                 settings.issuer)
    await stop.wait()
    if orphan_watch is not None:
        orphan_watch.cancel()
    log.info("stopping: draining in-flight requests")
    await drain(servers, ctx)


class SharedSocketHTTPServer(tornado.httpserver.HTTPServer):
    """For a listening socket several worker processes accept on: one connection per readiness
    event, so that the next connection goes to whichever worker gets to it first, the least
    busy one. Tornado accepts up to 128 at once: the first worker awake took a burst of
    connections (wrk's 100, a proxy's pool) and the others idled while it was saturated."""

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            # TCPServer's own tables, as its add_sockets fills them (stop() reads them).
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = accept_one_per_event(sock, self._handle_connection)


def accept_one_per_event(sock: socket.socket,
                         callback: Callable[[socket.socket, Any], None]) -> Callable[[], None]:
    """tornado.netutil.add_accept_handler, one accept() per event; returns the remover."""
    io_loop = tornado.ioloop.IOLoop.current()

    def accept(fd: socket.socket, events: int) -> None:
        try:
            connection, address = sock.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up while queued
        callback(connection, address)

    io_loop.add_handler(sock, accept, tornado.ioloop.IOLoop.READ)
    return lambda: io_loop.remove_handler(sock)


# The cyclic collector's generation thresholds once serving (CPython's are 700, 10, 10). With a
# young collection every 700 allocations, the objects of requests in flight are caught alive
# and promoted until the old generation has grown by a quarter, and then a full collection
# scans every connection's objects (~120 each): up to 600 ms at 10,000 connections, 15 times
# while 5,000 logins parked (bench c10k), and inside measured /verify windows. Every 20,000,
# most have died first: 2 full collections (18 ms in all); 5,000 and 10,000 still gave a
# 500 ms one. /verify measured the same at 700 and 20,000 (0.93 x hello-world both).
GC_THRESHOLDS = (20_000, 10, 10)


def settle_heap() -> None:
    """Once serving: what start-up made (modules, the app, keys) lives as long as the process.
    `gc.freeze` keeps it out of the cyclic collector's scans, so that a full collection costs
    what requests left behind, not the whole heap (tens of ms every few seconds under load);
    and young collections are spaced (GC_THRESHOLDS) so that little else grows old."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def drain(servers: Sequence[Listener],
                ctx: GatewayContext, timeout: float = DRAIN_SECONDS) -> None:
    """Stop accepting, let in-flight requests finish (bounded), then close the connections
    that are left (idle keep-alives), let back-channel logouts finish (bounded), close the
    store and send the last spans."""
    for server in servers:
        server.stop()
    # The data plane's handlers count in their application's, the public listener's.
    applications = {id(app): app for app in map(application_of, servers)}.values()
    in_flight = [inflight for app in applications
                 if (inflight := edge_of(app).inflight) is not None]
    idle = await asyncio.gather(*(i.wait_until_idle(timeout) for i in in_flight))
    if not all(idle):
        log.warning("drain time of %.0fs exceeded; closing remaining connections", timeout)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(s.close_all_connections() for s in servers)), timeout)
    except TimeoutError:
        log.warning("connections did not close within %.0fs", timeout)
    try:  # back-channel logouts under way (SECURITY P9) still need the store's keys, not it
        await asyncio.wait_for(ctx.backchannel.drain(), timeout)
    except TimeoutError:
        log.warning("back-channel logouts still under way after %.0fs: dropped", timeout)
    await ctx.store.close()
    if ctx.tracing is not None:  # the last spans go out (bounded: the exporter's timeout)
        await asyncio.get_running_loop().run_in_executor(None, ctx.tracing.shutdown)


def application_of(server: Listener) -> tornado.web.Application:
    if isinstance(server, DataPlane):
        return server.application
    application = server.request_callback
    assert isinstance(application, tornado.web.Application)
    return application
