"""The one aiohttp server: `GET /healthz`, `/readyz`, `/metrics`, plus the routes adapters add."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# {"ready": bool, ...}: the body of /readyz
Readiness = Callable[[], Awaitable[dict[str, Any]]]


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _bearer_matches(request: web.Request, token: str) -> bool:
    """The request's `Authorization: Bearer …` is `token` (compared in constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def create_web_app(
    readiness: Readiness | None = None,
    registry: CollectorRegistry | None = None,
    metrics_token: str | None = None,
) -> web.Application:
    """The application; adapters add their routes before the server starts.

    With `readiness`, `GET /readyz` answers 200 or 503 with its report; with `registry`,
    `GET /metrics` serves it in Prometheus text format, only to `Bearer metrics_token` if set.
    """
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    if readiness is not None:

        async def readyz(request: web.Request) -> web.Response:
            report = await readiness()
            return web.json_response(report, status=200 if report["ready"] else 503)

        app.router.add_get("/readyz", readyz)
    if registry is not None:

        async def metrics(request: web.Request) -> web.Response:
            if metrics_token and not _bearer_matches(request, metrics_token):
                return web.Response(
                    status=401,
                    text="401: /metrics needs Authorization: Bearer <HUATUO_METRICS_TOKEN>\n",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
            body = generate_latest(registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)
    return app


class WebServer:
    """Serves an application on host:port (port 0: a free port) between start() and stop()."""

    def __init__(self, app: web.Application, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._runner = web.AppRunner(app, shutdown_timeout=5.0)

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("http: serving on %s", address(self.host, self.port))
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()


def address(host: str, port: int) -> str:
    """host:port as people write it ([::1]:8080 for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
