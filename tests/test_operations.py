"""Operations endpoints: /healthz (liveness), /readyz (readiness) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.core.service import AnswerService
from bot.metrics import Metrics
from bot.runner import Readiness
from bot.slack.adapter import SlackAdapter
from bot.web import Readiness as ReadinessCallable
from bot.web import WebServer, create_web_app
from inference.engine import GenerationRequest, Message, SamplingParams
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.fakes.slack import FakeSlack
from tests.test_service import CollectingReply, question


@asynccontextmanager
async def serving(
    readiness: ReadinessCallable | None = None, metrics: Metrics | None = None
) -> AsyncIterator[Callable[[str], Any]]:
    """bot/web.py's app on a free port; yields `get(path)` -> (status, content type, text)."""
    registry = metrics.registry if metrics is not None else None
    server = WebServer(create_web_app(readiness, registry), port=0, host="127.0.0.1")
    port = await server.start()
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, str, str]:
            async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                return response.status, response.headers["Content-Type"], await response.text()

        try:
            yield get
        finally:
            await server.stop()


async def test_healthz_is_200_while_serving() -> None:
    async with serving() as get:
        status, content_type, body = await get("/healthz")
    assert status == 200 and content_type.startswith("application/json")
    assert '"ok"' in body


async def test_readyz_follows_engine_and_slack_socket_mode() -> None:
    engine = ScriptedEngine(model_name="huatuo-test")
    async with FakeSlack() as slack:
        settings = Settings(
            slack_bot_token="xoxb-test",
            slack_app_token="xapp-1-test",
            slack_api_url=slack.api_url.rstrip("/"),
        )
        service = AnswerService(engine, SamplingParams(16, 0.0, 1.0))
        adapter = SlackAdapter(settings, service)
        readiness = Readiness(engine, [adapter])
        async with serving(readiness) as get:

            async def readyz() -> tuple[int, dict[str, Any]]:
                status, content_type, body = await get("/readyz")
                assert content_type.startswith("application/json")
                return status, json.loads(body)

            assert await readyz() == (503, not_ready(engine=False, slack=False))
            await engine.start()
            assert await readyz() == (503, not_ready(engine=True, slack=False))
            await adapter.start()
            status, body = await readyz()
            assert status == 200
            assert body == {
                "ready": True,
                "model": "huatuo-test",
                "engine": True,
                "stopping": False,
                "platforms": {"slack": True},
            }
            assert (await get("/healthz"))[0] == 200
            readiness.stopping = True  # shutdown has begun: no new traffic, still alive
            assert (await readyz())[0] == 503
            assert (await get("/healthz"))[0] == 200
            await adapter.stop()
            await engine.close(grace=0)
            status, body = await readyz()
            assert status == 503 and body["platforms"] == {"slack": False}


def not_ready(engine: bool, slack: bool) -> dict[str, Any]:
    return {
        "ready": False,
        "model": "huatuo-test",
        "engine": engine,
        "stopping": False,
        "platforms": {"slack": slack},
    }


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def held(text: str) -> Script:
    """Questions starting with "hold" stall until released; the rest answer normally."""
    return Script(("x",), stall_at=0) if text.startswith("hold") else huatuo_script(text)


async def test_metrics_count_questions_timings_and_engine_load() -> None:
    engine = ScriptedEngine(held, max_batch=1)
    await engine.start()
    metrics = Metrics(engine)
    service = AnswerService(engine, SamplingParams(64, 0.5, 0.9), metrics=metrics)
    try:
        for text in ("What is sepsis?", "What is gout?", "   "):
            await service.answer(question(text), CollectingReply())
        hold = [engine.submit(GenerationRequest((Message("user", f"hold {i}"),))) for i in (1, 2)]
        while (engine.running, engine.waiting) != (1, 1):
            await asyncio.sleep(0.01)
        async with serving(metrics=metrics) as get:
            status, content_type, text = await get("/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        found = samples(text)

        def value(name: str, **labels: str) -> float | None:
            return found.get((name, frozenset(labels.items())))

        assert value("huatuo_questions_total", platform="slack", outcome="answered") == 2
        assert value("huatuo_questions_total", platform="slack", outcome="refused") == 1
        assert value("huatuo_questions_total", platform="slack", outcome="failed") is None
        assert value("huatuo_refusals_total", platform="slack", reason="empty") == 1
        assert value("huatuo_time_to_first_token_seconds_count") == 2
        assert value("huatuo_generation_seconds_count") == 2
        assert value("huatuo_tokens_per_second_count") == 2
        assert value("huatuo_queue_waiting") == 1
        assert value("huatuo_requests_running") == 1
        for generation in hold:
            generation.cancel()
    finally:
        engine.release.set()
        await engine.close(grace=0)


async def test_metrics_count_engine_errors_by_kind(scripted_engine) -> None:
    scripted_engine.script_for = lambda text: Script(("a", "b"), fail_at=1)
    metrics = Metrics(scripted_engine)
    service = AnswerService(scripted_engine, SamplingParams(64, 0.5, 0.9), metrics=metrics)
    assert await service.answer(question("What is gout?"), CollectingReply()) == "failed"
    await scripted_engine.close(grace=0)
    assert await service.answer(question("What is gout?"), CollectingReply()) == "refused"
    value = metrics.registry.get_sample_value
    assert value("huatuo_errors_total", {"kind": "EngineError"}) == 1
    assert value("huatuo_errors_total", {"kind": "EngineClosed"}) == 1
    assert value("huatuo_questions_total", {"platform": "slack", "outcome": "failed"}) == 1
    refusals = {"platform": "slack", "reason": "EngineClosed"}
    assert value("huatuo_refusals_total", refusals) == 1
