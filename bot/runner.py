"""`huatuo-bot run`: one engine, one HTTP server and the chat platforms, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import ConfigError, Settings
from bot.core.adapter import Adapter
from bot.instance import single_instance
from bot.metrics import Metrics
from bot.quiz.schedule import CaseOfTheDay, Poster
from bot.web import WebServer, create_web_app
from bot.wiring import (
    daily_posts,
    load_bank,
    make_adapters,
    make_engine,
    make_quizzes,
    make_service,
    open_store,
    sampling,
)
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


def quiz_posters(adapters: Sequence[Adapter]) -> dict[str, Poster]:
    """The case-of-the-day poster (`post_quiz`) of each adapter that has one, by platform."""
    return {a.name: a.post_quiz for a in adapters if hasattr(a, "post_quiz")}  # type: ignore[attr-defined]


@dataclass
class Readiness:
    """The body of `GET /readyz`: ready while the engine can answer and every platform is up."""

    engine: BatchEngine | RemoteEngine
    adapters: Sequence[Adapter] = ()
    stopping: bool = False  # set when shutdown begins

    async def __call__(self) -> dict[str, Any]:
        reasons: list[str] = []
        if self.stopping:
            reasons.append("Shutting down: no new questions are taken.")
        elif not self.engine.started:
            reasons.append("The model is not loaded yet.")
        elif isinstance(self.engine, RemoteEngine) and (problem := await self.engine.problem()):
            reasons.append(problem)
        engine = not reasons
        platforms = {adapter.name: adapter.ready for adapter in self.adapters}
        if not platforms:
            reasons.append("No chat platform is configured.")
        for name, up in platforms.items():
            if not up:
                reasons.append(f"{name.capitalize()} is not connected.")
        return {
            "ready": not reasons,
            "model": self.engine.model_name,
            "engine": engine,
            "stopping": self.stopping,
            "platforms": platforms,
            "reasons": reasons,
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
    with single_instance(settings, platforms):  # before anything else: a second one stops here
        await _serve(settings, platforms, engine, stop)


async def _serve(
    settings: Settings,
    platforms: Sequence[str],
    engine: BatchEngine | RemoteEngine | None,
    stop: asyncio.Event | None,
) -> None:
    feedback = open_store(settings)  # before the engine loads: a bad path fails fast
    bank = load_bank(settings)  # likewise a bad question bank
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = engine or make_engine(settings)
    if not engine.started:
        await engine.start()
    metrics = Metrics(engine)
    if feedback is not None:
        metrics.watch_feedback(feedback)
    readiness = Readiness(engine)
    web_app = create_web_app(readiness, metrics.registry, settings.metrics_token)
    service = make_service(settings, engine, metrics)
    quizzes = make_quizzes(settings, engine, sampling(settings), bank)
    adapters = make_adapters(settings, service, platforms, web_app, feedback, quizzes)
    readiness.adapters = adapters
    metrics.watch_delivery([a.outbox for a in adapters if hasattr(a, "outbox")])  # type: ignore[attr-defined]
    web = WebServer(web_app, settings.http_port, settings.http_host)
    started: list[Adapter] = []
    schedule: asyncio.Task[None] | None = None
    try:
        await web.start()
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        cases = CaseOfTheDay(daily_posts(settings), quiz_posters(started))
        schedule = asyncio.create_task(cases.run(), name="case-of-the-day")
        log.info("serving %s with model %s", ", ".join(platforms), engine.model_name)
        await stop.wait()
        log.info("stopping: finishing %d answer(s) in flight", service.admission.in_flight)
    finally:
        readiness.stopping = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # New askers on every platform are told to come back while answers in flight finish
        # and open quizzes are revealed, together; then the platforms disconnect, cancelling
        # (and explaining) what is left.
        began = time.monotonic()
        if schedule is not None:
            schedule.cancel()
            await asyncio.gather(schedule, return_exceptions=True)
        drained, _ = await asyncio.gather(
            service.drain(settings.shutdown_grace), quizzes.close(settings.shutdown_grace)
        )
        if not drained:
            log.warning("stopping: grace period over, cutting short the answers left")
        grace = max(settings.shutdown_grace - (time.monotonic() - began), 0.0)
        await asyncio.gather(*(adapter.stop(grace) for adapter in started))
        await engine.close(grace=0)
        if feedback is not None:
            await feedback.close()
        await web.stop()
