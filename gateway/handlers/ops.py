"""Operations: liveness and readiness."""

from __future__ import annotations

import os

from gateway.context import GatewayContext
from gateway.handlers.base import BaseHandler
from gateway.metrics import CONTENT_TYPE


class HealthHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers. `pid` tells which
    process answered (with `serve --workers N`, each worker is one)."""

    api = True

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ok", "pid": os.getpid()})


class ReadyHandler(BaseHandler):
    """GET /readyz: keys loaded, configuration valid, store answering."""

    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        checks = {
            "config": True,  # settings were validated before the server started
            "keys": bool(self.ctx.keyset.keys),
            "store": await self.ctx.store.ping(),
        }
        ready = all(checks.values())
        self.write_json({"status": "ready" if ready else "not ready", "checks": checks},
                        status=200 if ready else 503)


class MetricsHandler(BaseHandler):
    """GET /metrics: Prometheus' text format, on the admin listener (or, when
    `admin.expose_on_public` says so, on the public one too)."""

    api = True

    def initialize(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.ctx.metrics.exposition())
