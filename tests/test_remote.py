"""The remote engine against a real OpenAI-compatible server (`transformers serve`) on 127.0.0.1.

The server serves the built-in model offline, started once per session. A proxy in front of it
cuts connections as a dying server would; a scripted server answers 503 / 429 / 400 on demand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from yarl import URL

from bot import wiring
from bot.cli import main
from bot.config import Settings
from bot.slack.reply import FAIL_MARK, PROGRESS_MARK
from inference import remote
from inference.engine import (
    EngineClosed,
    EngineError,
    GenerationRequest,
    Message,
    QueueFull,
    SamplingParams,
)
from inference.reasoning import Reasoning, split_reasoning
from inference.remote import ModelServerError, RemoteEngine, served_models
from inference.thinking import FORCED_FINAL, PREFILL
from tests.harness.slack import DISCLAIMER, running
from tests.servers.closed import nothing_listening
from tests.servers.proxy import CuttableProxy
from tests.servers.scripted import Ending, ScriptedServer, continued
from tests.servers.transformers_serve import TransformersServer, export_builtin, exported_folder

GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0, top_p=1.0)  # the topic comes first
LONG = SamplingParams(max_new_tokens=400, temperature=0.0, top_p=1.0)
TOPICS = ["asthma", "diabetes", "hepatitis", "migraine", "anemia", "pneumonia", "glaucoma", "gout"]
HUATUO_7B = "FreedomIntelligence/HuatuoGPT-o1-7B"


def ask(text: str, sampling: SamplingParams = GREEDY) -> GenerationRequest:
    return GenerationRequest((Message("user", text),), sampling)


@pytest.fixture(scope="session")
def openai_server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[TransformersServer]:
    """`transformers serve` on the built-in model, once per session (about 5 s to start)."""
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    parent = Path(cache.mkdir("served-models")) if cache else tmp_path_factory.mktemp("served")
    folder = exported_folder(parent)
    if not folder.exists():  # the first run only: saved from the session's loaded model
        _, model, tokenizer = request.getfixturevalue("builtin_model")
        export_builtin(folder, model, tokenizer)
    with TransformersServer(folder) as server:
        yield server


@asynccontextmanager
async def engine_at(base_url: str, model: str, **options: Any) -> AsyncIterator[RemoteEngine]:
    engine = RemoteEngine(base_url, model, **options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close(grace=0)


@pytest.fixture
async def remote_engine(openai_server: TransformersServer) -> AsyncIterator[RemoteEngine]:
    async with engine_at(openai_server.base_url, openai_server.model) as engine:
        yield engine


@asynccontextmanager
async def behind_proxy(
    server: TransformersServer, **options: Any
) -> AsyncIterator[tuple[RemoteEngine, CuttableProxy]]:
    """An engine that reaches the server through a proxy the test can cut."""
    port = URL(server.base_url).port
    assert port is not None
    async with (
        CuttableProxy(port) as proxy,
        engine_at(f"http://127.0.0.1:{proxy.port}/v1", server.model, **options) as engine,
    ):
        yield engine, proxy


# ---- answers from the real server -------------------------------------------------------------


@pytest.mark.model
async def test_streamed_answer_is_parsed_into_thinking_and_answer(remote_engine) -> None:
    generation = remote_engine.submit(ask("What is asthma?"))
    chunks = [chunk async for chunk in generation]
    text = "".join(chunks)

    assert len(chunks) > 1, "text should stream in several chunks"
    assert "asthma" in text.lower()
    assert generation.finish_reason in ("stop", "length")
    assert 0 < generation.stats.completion_tokens <= 12  # the server's own count (usage)
    assert generation.stats.prompt_tokens > 0
    parsed = split_reasoning(text, truncated=generation.finish_reason == "length")
    assert parsed.answer == text.strip() and parsed.thinking == ""  # no headers: all answer


@pytest.mark.model
async def test_a_small_max_tokens_cuts_the_answer_short(remote_engine) -> None:
    sampling = SamplingParams(max_new_tokens=5, temperature=0.0, top_p=1.0)
    generation = remote_engine.submit(ask("Explain the causes of chest pain.", sampling))
    text = await generation.collect()

    assert generation.finish_reason == "length"
    assert generation.stats.completion_tokens == 5
    assert not split_reasoning(text, truncated=True).complete


@pytest.mark.model
async def test_eight_concurrent_requests_each_get_their_own_answer(remote_engine) -> None:
    sampling = SamplingParams(max_new_tokens=8, temperature=0.0, top_p=1.0)  # the topic comes first
    generations = [remote_engine.submit(ask(f"What is {t}?", sampling)) for t in TOPICS]
    assert remote_engine.running == len(TOPICS)  # all eight streams open at once
    texts = [await g.collect() for g in generations]

    for topic, text in zip(TOPICS, texts, strict=True):
        assert topic in text.lower(), (topic, text)
    assert remote_engine.running == 0


# ---- failures ---------------------------------------------------------------------------------


async def test_a_server_that_is_down_fails_the_question_quickly_and_names_it() -> None:
    url = nothing_listening()
    async with engine_at(url, "any-model") as engine:  # starting does not need the server
        started = time.monotonic()
        with pytest.raises(EngineError, match=rf"model server at {url} is not reachable"):
            await engine.submit(ask("What is asthma?")).collect()
    assert time.monotonic() - started < 5  # two retries with backoff, then the clear error


@pytest.mark.model
async def test_a_server_dying_mid_stream_fails_that_answer_and_the_engine_goes_on(
    openai_server,
) -> None:
    async with behind_proxy(openai_server) as (engine, proxy):
        victim = engine.submit(ask("Explain the causes of chest pain.", LONG))
        async for _ in victim:
            break  # text is streaming
        connections = len(proxy.links)
        proxy.cut()
        with pytest.raises(EngineError, match="stopped in the middle of the answer"):
            await victim.collect()
        assert victim.finish_reason == "error" and victim.text
        assert len(proxy.links) == connections, "never retried once text was sent"

        assert "gout" in (await engine.submit(ask("What is gout?")).collect()).lower()


@pytest.mark.model
async def test_the_line_is_bounded_and_cancelling_closes_the_stream_and_frees_the_slot(
    openai_server,
) -> None:
    async with behind_proxy(openai_server, max_batch=1, max_queue=2) as (engine, proxy):
        first = engine.submit(ask("Explain the causes of chest pain.", LONG))
        second, third = engine.submit(ask("What is gout?")), engine.submit(ask("What is anemia?"))
        assert (first.queue_position, second.queue_position, third.queue_position) == (None, 1, 2)
        with pytest.raises(QueueFull, match="already waiting"):
            engine.submit(ask("One question too many"))

        second.cancel()  # a waiting question leaves the line at once
        await second.collect()
        assert second.finish_reason == "cancelled" and third.queue_position == 1

        async for _ in first:
            break  # the first is streaming
        stream = proxy.links[-1]
        first.cancel()
        assert "anemia" in (await third.collect()).lower()
        await first.collect()

    assert first.finish_reason == "cancelled"
    assert first.stats.completion_tokens < 400
    assert stream.closed_by == "client", "cancelling hangs up, so the server stops generating"


@pytest.mark.model
async def test_close_finishes_what_it_can_and_fails_the_rest(openai_server) -> None:
    engine = RemoteEngine(openai_server.base_url, openai_server.model, max_batch=1)
    await engine.start()
    short = SamplingParams(4, 0.0, 1.0)
    started = time.monotonic()
    await engine.submit(ask("What is gout?", short)).collect()
    took = time.monotonic() - started  # a short answer, on this machine now (about 0.3 s)
    quick = engine.submit(ask("What is gout?", short))
    slow = engine.submit(ask("Explain the causes of chest pain.", LONG))  # waits behind quick
    await engine.close(grace=5 * took)  # ample for quick; slow needs about 100 times more

    assert await quick.collect() and quick.finish_reason == "length"
    with pytest.raises(EngineClosed, match="shut down"):
        await slow.collect()
    with pytest.raises(EngineClosed):
        engine.submit(ask("Too late"))


# ---- retries and the request, against a scripted server --------------------------------------


async def test_a_busy_or_failing_server_is_retried_before_the_first_token() -> None:
    async with (
        ScriptedServer(statuses=[503, 429]) as server,
        engine_at(server.base_url, "scripted", backoff=0.01) as engine,
    ):
        generation = engine.submit(ask("What is asthma?"))
        assert await generation.collect() == "Hello from the server."
    assert len(server.bodies) == 3
    assert (generation.stats.prompt_tokens, generation.stats.completion_tokens) == (7, 4)


@pytest.mark.parametrize(
    ("statuses", "attempts", "message"),
    [
        ([400], 1, r"refused the request \(HTTP 400: scripted failure 400\)"),
        ([500, 502, 503], 3, r"is failing \(HTTP 503: scripted failure 503\)"),
    ],
)
async def test_a_refused_request_fails_at_once_and_a_failing_server_after_the_retries(
    statuses: list[int], attempts: int, message: str
) -> None:
    async with (
        ScriptedServer(statuses) as server,
        engine_at(server.base_url, "scripted", backoff=0.01) as engine,
    ):
        with pytest.raises(ModelServerError, match=message):
            await engine.submit(ask("What is asthma?")).collect()
    assert len(server.bodies) == attempts


async def test_a_server_that_goes_quiet_mid_answer_fails_after_the_idle_timeout() -> None:
    async with ScriptedServer(stall=True) as server:  # silent after the first word, for good
        engine = wiring.remote_engine(
            Settings(
                _env_file=None,
                HUATUO_BACKEND="openai",
                HUATUO_OPENAI_BASE_URL=server.base_url,
                HUATUO_OPENAI_MODEL="scripted",
                HUATUO_OPENAI_IDLE_TIMEOUT="0.2",
            )
        )
        await engine.start()
        try:
            generation = engine.submit(ask("What is asthma?"))
            with pytest.raises(ModelServerError, match=r"sent nothing for 0.2 s"):
                await generation.collect()
        finally:
            await engine.close(grace=0)
    assert generation.text == "Hello" and len(server.bodies) == 1  # no retry once text was sent


def test_the_idle_timeout_is_two_minutes_unless_set_and_must_be_positive() -> None:
    settings = Settings(_env_file=None, openai_base_url="http://gpu:8000", openai_model="m")
    assert wiring.remote_engine(settings).read_timeout == 120
    with pytest.raises(ValidationError, match="HUATUO_OPENAI_IDLE_TIMEOUT"):
        Settings(_env_file=None, HUATUO_OPENAI_IDLE_TIMEOUT="0")


@pytest.mark.parametrize("ending", ["close", "hold"])
@pytest.mark.parametrize("usage", [True, False])
async def test_a_finished_answer_is_whole_however_the_connection_ends(
    ending: Ending, usage: bool, monkeypatch
) -> None:
    """After the finish_reason, a dropped connection or one held open and silent (without
    `data: [DONE]`) neither fails the answer nor keeps the asker waiting for the idle timeout."""
    monkeypatch.setattr(remote, "_AFTER_FINISH", 0.5)
    async with (
        ScriptedServer(ending=ending, usage=usage) as server,
        engine_at(server.base_url, "scripted", read_timeout=600) as engine,
    ):
        generation = engine.submit(ask("What is asthma?"))
        async with asyncio.timeout(60):  # far beyond 0.5 s; the server holds on for good
            text = await generation.collect()
    assert text == "Hello from the server." and generation.finish_reason == "stop"
    assert generation.stats.completion_tokens == 4 and len(server.bodies) == 1
    assert generation.stats.prompt_tokens == (7 if usage else 0)


async def test_without_usage_from_the_server_the_chunks_are_counted() -> None:
    async with (
        ScriptedServer(usage=False) as server,
        engine_at(server.base_url, "scripted") as engine,
    ):
        generation = engine.submit(ask("What is asthma?"))
        await generation.collect()
    assert generation.finish_reason == "stop" and generation.stats.completion_tokens == 4


async def test_the_request_carries_the_messages_and_sampling_as_given() -> None:
    messages = (
        Message("system", "Be brief."),
        Message("user", "What is asthma?"),
        Message("assistant", "A lung disease."),
        Message("user", "Is it curable?"),
    )
    sampling = SamplingParams(max_new_tokens=300, temperature=0.5, top_p=0.9)
    async with ScriptedServer() as server, engine_at(server.base_url, "scripted") as engine:
        await engine.submit(GenerationRequest(messages, sampling)).collect()
        await engine.submit(ask("What is gout?")).collect()

    with_system, without = server.bodies
    assert with_system == {
        "model": "scripted",
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
    }
    assert without["messages"] == [{"role": "user", "content": "What is gout?"}]


async def test_a_refused_api_key_is_named() -> None:
    async with ScriptedServer() as server:
        assert await served_models(server.base_url, "right-key") == ["scripted"]
        with pytest.raises(ModelServerError, match=r"HTTP 401: Invalid API key") as refused:
            await served_models(server.base_url, "wrong-key")
    assert refused.value.status == 401


# ---- the Thinking header and the thinking budget, against a scripted server --------------------

THOUGHTS = "one two three four five six seven eight nine ten"
CAPPED = SamplingParams(max_new_tokens=12, temperature=0.0, top_p=1.0, thinking_budget=4)


def thinks_then_answers(body: dict[str, Any]) -> str:
    """A model that thinks in ten words and, once its Final Response header is written, answers."""
    given = continued(body)
    if given is not None and given.endswith(FORCED_FINAL):
        return "The answer."
    return THOUGHTS if given is not None else f"## Thinking\n\n{THOUGHTS}"


@pytest.mark.parametrize("prefill", [True, False])
async def test_a_capped_thinking_is_continued_with_the_final_response_header(prefill) -> None:
    async with (
        ScriptedServer(reply=thinks_then_answers) as server,
        engine_at(server.base_url, "scripted", prefill_thinking=prefill) as engine,
    ):
        generation = engine.submit(ask("What is asthma?", CAPPED))
        text = await generation.collect()

    thought = "## Thinking\n\none two three four" if prefill else "## Thinking\n\none two three"
    assert text == f"{thought}{FORCED_FINAL}The answer."
    assert split_reasoning(text) == Reasoning(thought.partition("\n\n")[2], "The answer.", True)
    assert generation.finish_reason == "stop" and generation.stats.thinking_capped
    assert generation.stats.completion_tokens == 4 + 2
    first, rest = server.bodies
    question = {"role": "user", "content": "What is asthma?"}
    continuing = {"continue_final_message": True, "add_generation_prompt": False}
    if prefill:
        assert first["messages"] == [question, {"role": "assistant", "content": PREFILL}]
        assert first.items() >= continuing.items()
    else:
        assert first["messages"] == [question] and "continue_final_message" not in first
    assert rest["messages"] == [question, {"role": "assistant", "content": thought + FORCED_FINAL}]
    assert rest.items() >= {**continuing, "max_tokens": 12 - 4}.items()


async def test_a_thinking_within_its_budget_or_without_headers_is_not_capped() -> None:
    roomy = SamplingParams(max_new_tokens=40, temperature=0.0, top_p=1.0, thinking_budget=20)
    async with (
        ScriptedServer(text=THOUGHTS) as server,  # no headers: nothing to cap
        engine_at(server.base_url, "scripted") as engine,
    ):
        plain = engine.submit(ask("What is asthma?", CAPPED))
        assert await plain.collect() == THOUGHTS
        server.text = f"## Thinking\n\n{THOUGHTS}\n\n## Final Response\n\nThe answer."
        within = engine.submit(ask("What is asthma?", roomy))
        assert await within.collect() == server.text
    assert not plain.stats.thinking_capped and not within.stats.thinking_capped
    assert len(server.bodies) == 2


async def test_a_server_that_refuses_to_continue_is_noted_once_and_answers_go_on_uncapped(
    caplog,
) -> None:
    async with (
        ScriptedServer(reply=thinks_then_answers, continuing=False) as server,
        engine_at(server.base_url, "scripted", prefill_thinking=True) as engine,
    ):
        first = engine.submit(ask("What is asthma?", CAPPED))
        first_text = await first.collect()
        second = engine.submit(ask("What is gout?", CAPPED))
        second_text = await second.collect()

    assert first_text == second_text == f"## Thinking\n\n{THOUGHTS}"  # the model's own header
    assert not first.stats.thinking_capped and first.finish_reason == "stop"
    refused, plain, again = server.bodies
    assert "continue_final_message" in refused and refused["messages"][-1]["role"] == "assistant"
    assert "continue_final_message" not in plain and "continue_final_message" not in again
    [noted] = [r for r in caplog.records if "continue_final_message" in r.getMessage()]
    assert "HTTP 400" in noted.getMessage() and noted.levelname == "WARNING"


async def test_a_capped_thinking_the_server_will_not_continue_ends_as_a_thinking(caplog) -> None:
    async with (
        ScriptedServer(reply=thinks_then_answers, continuing=False) as server,
        engine_at(server.base_url, "scripted") as engine,
    ):
        capped = engine.submit(ask("What is asthma?", CAPPED))
        text = await capped.collect()
        after = engine.submit(ask("What is gout?", CAPPED))
        await after.collect()

    assert text == "## Thinking\n\none two three" and capped.finish_reason == "length"
    assert split_reasoning(text, truncated=True) == Reasoning("one two three", "", False)
    assert not capped.stats.thinking_capped
    assert after.text == f"## Thinking\n\n{THOUGHTS}"  # not capped
    assert len(server.bodies) == 3  # the capped stream, the refused continuation, the next one
    assert sum("continue_final_message" in r.getMessage() for r in caplog.records) == 1


def test_the_thinking_header_is_written_for_huatuogpt_o1_unless_set_otherwise() -> None:
    def prefills(**env: str) -> bool:
        settings = Settings(_env_file=None, openai_base_url="http://gpu:8000", **env)
        return wiring.remote_engine(settings).prefill_thinking

    assert prefills(openai_model=HUATUO_7B)
    assert not prefills(openai_model="meta-llama/Llama-3.1-8B-Instruct")
    assert not prefills(openai_model=HUATUO_7B, HUATUO_PREFILL_THINKING="false")
    assert prefills(openai_model="my-finetune", HUATUO_PREFILL_THINKING="true")


# ---- Slack, end to end ------------------------------------------------------------------------


@pytest.mark.model
async def test_a_slack_mention_is_answered_through_the_remote_engine(remote_engine) -> None:
    async with running(remote_engine, "socket") as bot:
        question = await bot.mention("What is a fever?")
        await bot.idle(timeout=120)  # about 2 s on an idle 2-core machine

    # One message: the answer, in the thread (the placeholder was edited into it, or deleted once
    # it was posted). The demo model writes no thinking.
    [answer] = bot.bot_messages("C1", question)
    assert answer.thread_ts == question
    assert answer.text.endswith(DISCLAIMER)
    assert not answer.text.startswith((PROGRESS_MARK, FAIL_MARK))
    assert len(answer.text) > len(DISCLAIMER) + 10


# ---- huatuo-bot check -------------------------------------------------------------------------


@pytest.fixture
def openai_env(monkeypatch, tmp_path):
    """HUATUO_BACKEND=openai and a platform, nothing else from the environment or a .env file."""
    for name in (
        "HUATUO_MODEL", "HUATUO_OPENAI_BASE_URL", "HUATUO_OPENAI_API_KEY", "HUATUO_OPENAI_MODEL",
        "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUATUO_BACKEND", "openai")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "token")
    return monkeypatch


@pytest.mark.model
def test_check_finds_the_server_and_its_model(openai_server, openai_env, capsys) -> None:
    openai_env.setenv("HUATUO_OPENAI_BASE_URL", openai_server.base_url)
    openai_env.setenv("HUATUO_OPENAI_MODEL", openai_server.model)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"✓ model: {openai_server.model}, served by {openai_server.base_url}" in out


def test_check_names_an_unreachable_server(openai_env, capsys) -> None:
    url = nothing_listening()
    openai_env.setenv("HUATUO_OPENAI_BASE_URL", url)
    openai_env.setenv("HUATUO_MODEL", HUATUO_7B)  # a hub id is the served name
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"✗ model server: The model server at {url} is not reachable" in out
    assert "HUATUO_OPENAI_BASE_URL" in out


@pytest.mark.model
def test_check_lists_the_served_models_when_ours_is_not_one(openai_server, openai_env, capsys):
    openai_env.setenv("HUATUO_OPENAI_BASE_URL", openai_server.base_url)
    openai_env.setenv("HUATUO_MODEL", HUATUO_7B)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"does not serve '{HUATUO_7B}'" in out and repr(openai_server.model) in out


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({"HUATUO_MODEL": HUATUO_7B}, "HUATUO_OPENAI_BASE_URL"),
        ({"HUATUO_OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, "HUATUO_OPENAI_MODEL"),
        ({"HUATUO_OPENAI_BASE_URL": "localhost:8000", "HUATUO_MODEL": HUATUO_7B}, "http(s) URL"),
    ],
)
def test_check_says_which_setting_the_openai_backend_needs(
    openai_env, capsys, settings: dict[str, str], missing: str
) -> None:
    for name, value in settings.items():
        openai_env.setenv(name, value)
    assert main(["check"]) == 1
    assert missing in capsys.readouterr().out
