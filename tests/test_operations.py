"""Operations endpoints: /healthz (liveness), /readyz (readiness) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from yarl import URL

from bot.cli import main
from bot.config import Settings
from bot.core.service import AnswerService
from bot.metrics import Metrics
from bot.runner import Readiness, serve
from bot.slack.adapter import SlackAdapter, SlackOptions
from bot.web import Readiness as ReadinessCallable
from bot.web import WebServer, create_web_app
from inference.engine import GenerationRequest, Message, SamplingParams
from inference.remote import RemoteEngine
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.fakes.slack import FakeSlack
from tests.harness.service import CollectingReply, question
from tests.servers.scripted import ScriptedServer


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
        options = SlackOptions("xoxb-test", "xapp-1-test", api_url=slack.api_url.rstrip("/"))
        service = AnswerService(engine, SamplingParams(16, 0.0, 1.0))
        adapter = SlackAdapter(options, service)
        readiness = Readiness(engine, [adapter])
        async with serving(readiness) as get:

            async def readyz() -> tuple[int, dict[str, Any]]:
                status, content_type, body = await get("/readyz")
                assert content_type.startswith("application/json")
                return status, json.loads(body)

            loading = ["The model is not loaded yet.", "Slack is not connected."]
            assert await readyz() == (503, not_ready(engine=False, slack=False, reasons=loading))
            await engine.start()
            connecting = ["Slack is not connected."]
            assert await readyz() == (503, not_ready(engine=True, slack=False, reasons=connecting))
            await adapter.start()
            status, body = await readyz()
            assert status == 200
            assert body == {
                "ready": True,
                "model": "huatuo-test",
                "engine": True,
                "stopping": False,
                "platforms": {"slack": True},
                "reasons": [],
            }
            assert (await get("/healthz"))[0] == 200
            readiness.stopping = True  # shutdown has begun: no new traffic, still alive
            status, body = await readyz()
            assert status == 503 and body["reasons"] == [
                "Shutting down: no new questions are taken."
            ]
            assert (await get("/healthz"))[0] == 200
            await adapter.stop()
            await engine.close(grace=0)
            status, body = await readyz()
            assert status == 503 and body["platforms"] == {"slack": False}


def not_ready(engine: bool, slack: bool, reasons: list[str]) -> dict[str, Any]:
    return {
        "ready": False,
        "model": "huatuo-test",
        "engine": engine,
        "stopping": False,
        "platforms": {"slack": slack},
        "reasons": reasons,
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


# ---- `huatuo-bot run`: where it listens, who reads /metrics, and readiness of the model server --

TOKEN = "metrics-token-0123456789abcdef"
STUCK = 60.0  # seconds that mean "never", not "slow": these waits take well under 1 s here


def can_use_127_0_0_2() -> bool:
    """Linux answers on all of 127.0.0.0/8; other systems may have 127.0.0.1 alone."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


async def get_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET `url` with a fresh connection; (status, body)."""
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.text()


@asynccontextmanager
async def running_bot(
    port: int, engine: Any, reachable: str = "127.0.0.1", **env: str
) -> AsyncIterator[str]:
    """`huatuo-bot run`'s serve() in this process with Slack in HTTP mode and `env` as settings;
    yields http://`reachable`:`port` once /healthz answers there, then stops as on SIGTERM."""
    async with FakeSlack() as slack:
        settings = Settings(
            _env_file=None,
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET="signing-secret",
            SLACK_API_URL=slack.api_url,
            HUATUO_HTTP_PORT=str(port),
            HUATUO_FEEDBACK_DB="",
            **env,
        )
        stop = asyncio.Event()
        bot = asyncio.create_task(serve(settings, ["slack"], engine, stop))
        base = f"http://{reachable}:{port}"
        try:
            async with asyncio.timeout(STUCK):
                while True:
                    assert not bot.done(), bot.exception()
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        if (await get_status(f"{base}/healthz"))[0] == 200:
                            break
                    await asyncio.sleep(0.02)
            yield base
        finally:
            stop.set()
            await bot


async def refused(url: str) -> bool:
    try:
        await get_status(url)
    except aiohttp.ClientConnectorError:
        return True
    return False


@pytest.mark.skipif(not can_use_127_0_0_2(), reason="needs 127.0.0.2 on the loopback interface")
@pytest.mark.parametrize(
    ("host", "reachable", "unreachable"),
    [
        (None, ["127.0.0.1"], ["127.0.0.2"]),  # the default: this machine's loopback only
        ("127.0.0.2", ["127.0.0.2"], ["127.0.0.1"]),
        ("0.0.0.0", ["127.0.0.1", "127.0.0.2"], []),  # every interface, as in the image
    ],
)
async def test_the_http_server_listens_on_the_configured_host_only(
    unused_tcp_port, monkeypatch, host: str | None, reachable: list[str], unreachable: list[str]
) -> None:
    monkeypatch.delenv("HUATUO_HTTP_HOST", raising=False)
    env = {"HUATUO_HTTP_HOST": host} if host else {}
    async with running_bot(unused_tcp_port, ScriptedEngine(), reachable[0], **env):
        for address in reachable:
            assert await get_status(f"http://{address}:{unused_tcp_port}/healthz") == (
                200,
                '{"status": "ok"}',
            )
        for address in unreachable:
            assert await refused(f"http://{address}:{unused_tcp_port}/healthz")


async def test_metrics_need_the_bearer_token_when_one_is_set(unused_tcp_port) -> None:
    async with running_bot(unused_tcp_port, ScriptedEngine(), HUATUO_METRICS_TOKEN=TOKEN) as base:
        for headers in (
            None,
            {"Authorization": "Bearer wrong-token-0123456789abcdef"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{base}/metrics", headers=headers) as response,
            ):
                assert response.status == 401, headers
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "huatuo_" not in await response.text()
        for scheme in ("Bearer", "bearer"):
            status, text = await get_status(
                f"{base}/metrics", {"Authorization": f"{scheme} {TOKEN}"}
            )
            assert status == 200 and "huatuo_questions_total" in text
        # The probes stay open: Kubernetes and Docker call them without credentials.
        assert (await get_status(f"{base}/healthz"))[0] == 200
        assert (await get_status(f"{base}/readyz"))[0] == 200


async def test_readyz_is_not_ready_while_the_model_server_is_down(unused_tcp_port) -> None:
    """The remote engine's /v1/models is probed (here every 0.05 s); its failure is the reason,
    with the password in HUATUO_OPENAI_BASE_URL masked; /healthz stays 200 meanwhile."""
    async with ScriptedServer() as server:
        port = URL(server.base_url).port
        url = f"http://alice:right-key@127.0.0.1:{port}/v1"  # as a proxy with basic auth wants
        engine = RemoteEngine(url, "scripted", probe_interval=0.05)
        async with running_bot(unused_tcp_port, engine) as base:
            status, text = await get_status(f"{base}/readyz")
            assert (status, json.loads(text)["reasons"]) == (200, [])
            await server.stop()

            async def down() -> dict[str, Any]:
                while (status := await get_status(f"{base}/readyz"))[0] == 200:
                    await asyncio.sleep(0.02)
                return json.loads(status[1])

            body = await asyncio.wait_for(down(), STUCK)
            assert body["ready"] is False and body["engine"] is False
            assert body["platforms"] == {"slack": True}
            [reason] = body["reasons"]
            masked = f"http://***@127.0.0.1:{port}/v1"
            assert reason.startswith(f"The model server at {masked} is not reachable ("), reason
            assert "right-key" not in json.dumps(body)
            assert (await get_status(f"{base}/healthz"))[0] == 200


async def test_readyz_asks_the_model_server_at_most_once_per_interval(unused_tcp_port) -> None:
    async with ScriptedServer() as server:
        engine = RemoteEngine(server.base_url, "scripted", api_key="right-key", probe_interval=3600)
        async with running_bot(unused_tcp_port, engine) as base:
            asked = server.model_lists  # once, when the engine started
            answers = await asyncio.gather(*(get_status(f"{base}/readyz") for _ in range(30)))
            assert {status for status, _ in answers} == {200}
            assert asked == server.model_lists == 1


async def test_readyz_names_a_model_the_server_does_not_list(unused_tcp_port) -> None:
    async with ScriptedServer() as server:
        engine = RemoteEngine(server.base_url, "huatuo-7b", api_key="right-key")
        async with running_bot(unused_tcp_port, engine) as base:
            status, text = await get_status(f"{base}/readyz")
    assert status == 503
    assert json.loads(text)["reasons"] == [
        f"The model server at {server.base_url} does not list 'huatuo-7b'; it lists 'scripted'."
    ]


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        (" 0.0.0.0 ", "0.0.0.0"),
        ("::", "::"),
        ("localhost", "localhost"),
    ],
)
def test_the_http_host_is_an_address(value: str, host: str) -> None:
    assert Settings(_env_file=None, HUATUO_HTTP_HOST=value).http_host == host


@pytest.mark.parametrize("value", ["", "0.0.0.0:8080", "http://0.0.0.0", "my host"])
def test_a_host_that_is_not_an_address_is_refused_with_the_fix(value: str) -> None:
    with pytest.raises(ValidationError, match="HUATUO_HTTP_HOST") as refused:
        Settings(_env_file=None, HUATUO_HTTP_HOST=value)
    assert "0.0.0.0 (every interface)" in str(refused.value)


def test_a_weak_metrics_token_is_refused_without_being_echoed() -> None:
    assert Settings(_env_file=None, HUATUO_METRICS_TOKEN=" ").metrics_token is None
    for weak in ("hunter2-secret", "sixteen chars ok but spaces"):
        with pytest.raises(ValidationError, match="HUATUO_METRICS_TOKEN") as refused:
            Settings(_env_file=None, HUATUO_METRICS_TOKEN=weak)
        assert "at least 16 printable ASCII characters" in str(refused.value)
        assert weak not in str(refused.value)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, "✓ http: 127.0.0.1:8080, this machine only; /metrics without a token"),
        (
            {"HUATUO_HTTP_HOST": "0.0.0.0", "HUATUO_HTTP_PORT": "9000"},
            "✓ http: 0.0.0.0:9000, open to the network; /metrics without a token: set "
            "HUATUO_METRICS_TOKEN, or keep the port on a private network",
        ),
        (
            {"HUATUO_HTTP_HOST": "::", "HUATUO_METRICS_TOKEN": TOKEN},
            "✓ http: [::]:8080, open to the network; /metrics needs the bearer token "
            "(HUATUO_METRICS_TOKEN)",
        ),
    ],
)
def test_check_says_where_http_listens_and_who_reads_metrics(
    monkeypatch, tmp_path, capsys, env: dict[str, str], line: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HUATUO_HTTP_HOST", "HUATUO_HTTP_PORT", "HUATUO_METRICS_TOKEN", "HUATUO_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"HUATUO_MODEL": "builtin:smollm2", "DISCORD_BOT_TOKEN": "t", **env}.items():
        monkeypatch.setenv(name, value)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert line in out, out
    assert TOKEN not in out


def test_check_names_a_bad_http_host(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUATUO_HTTP_HOST", "0.0.0.0:8080")
    assert main(["check"]) == 2
    assert "✗ HUATUO_HTTP_HOST: Value error, '0.0.0.0:8080' is not an address" in (
        capsys.readouterr().out
    )
