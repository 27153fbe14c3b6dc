"""The one aiohttp server: `GET /healthz`, `/readyz`, `/metrics`, plus the routes adapters add."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Readiness = Callable[[], dict[str, Any]]  # {"ready": bool, ...}: the body of /readyz


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_web_app(
    readiness: Readiness | None = None, registry: CollectorRegistry | None = None
) -> web.Application:
    """The application; adapters add their routes before the server starts.

    With `readiness`, `GET /readyz` answers 200 or 503 with its report; with `registry`,
    `GET /metrics` serves it in Prometheus text format.
    """
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    if readiness is not None:

        async def readyz(request: web.Request) -> web.Response:
            report = readiness()
            return web.json_response(report, status=200 if report["ready"] else 503)

        app.router.add_get("/readyz", readyz)
    if registry is not None:

        async def metrics(request: web.Request) -> web.Response:
            body = generate_latest(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)
    return app


class WebServer:
    """Serves an application on host:port (port 0: a free port) between start() and stop()."""

    def __init__(self, app: web.Application, port: int, host: str = "0.0.0.0") -> None:
        self.host = host
        self.port = port
        self._runner = web.AppRunner(app, shutdown_timeout=5.0)

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("http: serving on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
