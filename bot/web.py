"""The one aiohttp server: `GET /healthz`, plus the routes adapters add (Slack's HTTP mode)."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_web_app() -> web.Application:
    """The application; adapters add their routes before the server starts."""
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
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
