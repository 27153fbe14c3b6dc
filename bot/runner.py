"""`huatuo-bot run`: one engine, one HTTP server and the chat platforms, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import ConfigError, Settings
from bot.core.adapter import Adapter
from bot.core.service import AnswerService
from bot.engines import make_engine
from bot.metrics import Metrics
from bot.web import WebServer, create_web_app
from inference.engine import BatchEngine
from inference.remote import RemoteEngine

log = logging.getLogger(__name__)

PLATFORMS = ("slack", "discord")


def configured_platforms(settings: Settings) -> list[str]:
    found = []
    if settings.slack_bot_token:
        found.append("slack")
    if settings.discord_bot_token:
        found.append("discord")
    return found


def make_service(
    settings: Settings, engine: BatchEngine | RemoteEngine, metrics: Metrics | None = None
) -> AnswerService:
    return AnswerService(
        engine,
        settings.sampling,
        system_prompt=settings.system_prompt,
        max_question_chars=settings.max_question_chars,
        answer_timeout=settings.answer_timeout,
        redact_phi=settings.redact_before_sending,
        metrics=metrics,
    )


def make_adapters(
    settings: Settings, service: AnswerService, platforms: Sequence[str], web_app
) -> list[Adapter]:
    """The adapters for `platforms`, all sharing one service (and so one engine)."""
    adapters: list[Adapter] = []
    if "slack" in platforms:
        from bot.slack.adapter import SlackAdapter

        adapters.append(SlackAdapter(settings, service, web_app, command=settings.slack_command))
    if "discord" in platforms:
        from bot.discord.adapter import DiscordAdapter

        adapters.append(DiscordAdapter(settings, service, sync_guild=settings.discord_sync_guild))
    return adapters


@dataclass
class Readiness:
    """The body of `GET /readyz`: ready once the engine is started and every platform connected."""

    engine: BatchEngine | RemoteEngine
    adapters: Sequence[Adapter] = ()
    stopping: bool = False  # set when shutdown begins

    def __call__(self) -> dict[str, Any]:
        platforms = {adapter.name: adapter.ready for adapter in self.adapters}
        engine = self.engine.started and not self.stopping
        return {
            "ready": engine and bool(platforms) and all(platforms.values()),
            "model": self.engine.model_name,
            "engine": engine,
            "stopping": self.stopping,
            "platforms": platforms,
        }


async def serve(
    settings: Settings,
    platforms: Sequence[str],
    engine: BatchEngine | RemoteEngine | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start everything, wait for `stop` (set by SIGTERM/SIGINT), then shut down in order:
    platforms first (each gives its answers in flight a grace period), then the engine."""
    missing = [p for p in platforms if p not in configured_platforms(settings)]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} requested but not configured; `huatuo-bot check` says what "
            "to set."
        )
    if not platforms:
        raise ConfigError("No chat platform configured; `huatuo-bot check` says what to set.")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = engine or make_engine(settings)
    if not engine.started:
        await engine.start()
    metrics = Metrics(engine)
    readiness = Readiness(engine)
    web_app = create_web_app(readiness, metrics.registry)
    service = make_service(settings, engine, metrics)
    adapters = make_adapters(settings, service, platforms, web_app)
    readiness.adapters = adapters
    web = WebServer(web_app, settings.http_port)
    started: list[Adapter] = []
    try:
        await web.start()
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        log.info("serving %s with model %s", ", ".join(platforms), engine.model_name)
        await stop.wait()
        log.info("stopping: finishing answers in flight")
    finally:
        readiness.stopping = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for adapter in reversed(started):
            await adapter.stop()
        await engine.close(grace=0)
        await web.stop()
