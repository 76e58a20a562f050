"""Operations: liveness and readiness."""

from __future__ import annotations

from gateway.context import GatewayContext
from gateway.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    api = True

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ok"})


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
