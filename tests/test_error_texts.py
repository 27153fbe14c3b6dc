"""What askers are told when the model fails: what happened in plain words, whether to try again,
the request id; the technical detail (server URL, connection error, a quoted API key) reaches the
log records only. Through the real SDKs, the fake Slack and Discord, and real HTTP servers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot.cli import main
from bot.core import texts
from bot.quiz.bank import QuestionBank
from bot.quiz.registry import Quizzes
from bot.slack.reply import FAIL_MARK
from inference.engine import (
    EngineClosed,
    EngineError,
    PromptTooLong,
    QueueFull,
    SamplingParams,
    closed,
    cut_off_by_shutdown,
    queue_full,
)
from inference.remote import ModelServerError, RemoteEngine
from inference.scripted import ScriptedEngine
from tests.fakes.discord import FakeDiscord
from tests.harness.discord import replies, serving
from tests.harness.links import slack_shown
from tests.harness.polling import until
from tests.harness.slack import running
from tests.harness.slack_quiz import ITEM, start_quiz
from tests.servers.closed import nothing_listening

ID = "3fa2b9c01d2e"
API_KEY = "sk-proj-Xq81SECRETkeyZ9876"
OPENAI_SHOWN = f"{API_KEY[:3]}{'*' * (len(API_KEY) - 7)}{API_KEY[-4:]}"  # as OpenAI quotes it
TECHNICAL = ("127.0.0.1", "http", "Connection refused", "not reachable", "HTTP", "CUDA", "sk-")


def told(text: str) -> None:
    """An asker's text holds no technical detail."""
    assert not [word for word in TECHNICAL if word in text], text
    assert "9876" not in text and "Traceback" not in text, text


def logged(caplog: pytest.LogCaptureFixture, *details: str) -> str:
    """The log records that hold every detail (the request id among them), one a line."""
    found = [r.getMessage() for r in caplog.records if all(d in r.getMessage() for d in details)]
    assert found, details
    return "\n".join(found)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (queue_full(12), f"Sorry, too many questions are waiting (request {ID}). Please ask again"),
        (closed(), f"Sorry, the bot is restarting (request {ID}). Please ask again in a minute."),
        (cut_off_by_shutdown(), "Sorry, the bot is restarting"),
        (
            PromptTooLong("The question is too long for this model (9,000 tokens; at most 4,096"),
            f"Sorry, this question is too long for the model (request {ID}). Please shorten it",
        ),
        (
            ModelServerError(
                "The model server at http://10.0.0.5:8000/v1 is not reachable (Connection refused)."
            ),
            f"Sorry, the model server is not answering right now (request {ID}). Please try "
            "again in a few minutes; an admin can find the details in the logs.",
        ),
        (
            ModelServerError("The model server at http://gpu:8000/v1 is failing (HTTP 503).", 503),
            "Sorry, the model server is not answering right now",
        ),
        (
            ModelServerError(
                "The model server at http://gpu:8000/v1 refused the request (HTTP 401: "
                f"Incorrect API key provided: {OPENAI_SHOWN}).",
                401,
            ),
            f"Sorry, the model server turned this question down (request {ID}), so asking again "
            "won't help for now. Please tell an admin; they can find the details in the logs.",
        ),
        (
            EngineError("Generation failed: CUDA error: out of memory"),
            f"Sorry, something went wrong while answering (request {ID}). Please try again; if "
            "it happens again, an admin can find the details in the logs.",
        ),
    ],
)
def test_each_engine_failure_is_told_in_plain_words_with_the_request_id(
    error: EngineError, expected: str
) -> None:
    text = texts.engine_failed(error, ID)
    assert text.startswith(expected)
    assert f"(request {ID})" in text and str(error) not in text
    assert isinstance(error, (QueueFull, EngineClosed)) or "admin" in text
    told(text)


# ---- through the platforms --------------------------------------------------------------------


@asynccontextmanager
async def engine_at(base_url: str, api_key: str | None = None) -> AsyncIterator[RemoteEngine]:
    engine = RemoteEngine(base_url, "huatuo", api_key=api_key, backoff=0.01)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close(grace=0)


@asynccontextmanager
async def refusing_every_key() -> AsyncIterator[str]:
    """An OpenAI-style server that refuses the key it is given, quoting part of it as OpenAI
    does; yields its base URL."""

    async def refuse(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        shown = f"{given[:3]}{'*' * (len(given) - 7)}{given[-4:]}"
        error = {"message": f"Incorrect API key provided: {shown}.", "type": "invalid_request"}
        return web.json_response({"error": error}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    app.router.add_get("/v1/models", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def test_slack_a_model_server_that_is_down_is_told_plainly_and_logged_in_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = nothing_listening()
    async with engine_at(url) as engine, running(engine) as bot:
        question = await bot.mention("what is gout?")
        await bot.idle()

    [failed] = bot.bot_messages("C1", question)
    request_id = request_id_in(failed.text)
    assert failed.text == (
        f"{FAIL_MARK} Sorry, the model server is not answering right now (request {request_id})."
        " Please try again in a few minutes; an admin can find the details in the logs."
    )
    for text in slack_shown(bot.slack):
        told(text)
    assert url in logged(caplog, request_id, "Connection refused")


async def test_discord_a_refused_api_key_is_told_plainly_and_its_quote_stays_in_the_log(
    fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        refusing_every_key() as url,
        engine_at(url, API_KEY) as engine,
        serving(fake, engine),
    ):
        asked = await fake.dispatch_message("what is gout?", mentions_bot=True)
        [failed] = await until(lambda: [m for m in replies(fake, asked) if "Sorry" in m["content"]])

    request_id = request_id_in(failed["content"])
    assert failed["content"] == (
        f"Sorry, the model server turned this question down (request {request_id}), so asking "
        "again won't help for now. Please tell an admin; they can find the details in the logs."
    )
    for call in fake.calls:
        told(json.dumps(call.json or {}))
    assert url in logged(
        caplog, request_id, f"HTTP 401: Incorrect API key provided: {OPENAI_SHOWN}"
    )


class FailingGpu(ScriptedEngine):
    """The real batch worker, whose every step fails the way a GPU can."""

    def _step(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


async def test_discord_a_failing_gpu_is_told_plainly_and_logged_in_detail(
    fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FailingGpu()
    await engine.start()
    try:
        async with serving(fake, engine):
            asked = await fake.dispatch_message("what is gout?", mentions_bot=True)
            [failed] = await until(
                lambda: [m for m in replies(fake, asked) if "Sorry" in m["content"]]
            )
    finally:
        await engine.close(grace=0)

    request_id = engine.requests[0].request.request_id
    assert failed["content"] == texts.broken(request_id)
    told(failed["content"])
    assert "illegal memory access" in logged(caplog, request_id, "CUDA error")


async def test_slack_a_quiz_explanation_the_model_server_could_not_give_is_told_plainly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = nothing_listening()
    async with engine_at(url) as engine:
        sampling = SamplingParams(max_new_tokens=64, temperature=0.0)
        quizzes = Quizzes(QuestionBank([ITEM]), engine, sampling, seconds=60)
        try:
            async with running(engine, quizzes=quizzes) as bot:
                quiz = await start_quiz(bot)
                await quiz.reveal("U1")
                await until(lambda: len(quiz.thread()) == 2)
        finally:
            await quizzes.close(grace=1.0)

    failed = quiz.thread()[1]
    request_id = request_id_in(failed)
    assert failed == (
        f"{FAIL_MARK} Sorry, the model could not explain this question (request {request_id}); "
        "an admin can find the details in the logs."
    )
    for text in slack_shown(bot.slack):
        told(text)
    assert url in logged(caplog, request_id, "Connection refused")


# ---- the operator's own terminal --------------------------------------------------------------


@pytest.fixture
def server_down(monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """`huatuo-bot` set up for a model server where nothing listens (no .env read)."""
    for name in ("HUATUO_MODEL", "HUATUO_OPENAI_API_KEY", "HUATUO_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    url = nothing_listening()
    monkeypatch.setenv("HUATUO_BACKEND", "openai")
    monkeypatch.setenv("HUATUO_OPENAI_BASE_URL", url)
    monkeypatch.setenv("HUATUO_OPENAI_MODEL", "huatuo")
    return url


def test_ask_tells_the_operator_the_asker_text_after_the_log_with_the_detail(
    server_down: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "what is gout?"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    *log, told_text = err.rstrip("\n").split("\n")
    assert told_text.startswith("Sorry, the model server is not answering right now (request ")
    request_id = request_id_in(told_text)
    assert any(
        request_id in line and server_down in line and "Connection refused" in line for line in log
    )


def test_ask_json_keeps_its_contract_when_the_model_server_is_down(
    server_down: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "--json", "what is gout?"]) == 1
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    result = json.loads(line)
    assert result["error"].startswith("Sorry, the model server is not answering right now")
    assert (result["answer"], result["thinking"], result["complete"], result["model"]) == (
        "",
        "",
        False,
        "huatuo",
    )
    told(result["error"])
    assert "Connection refused" in err


def request_id_in(text: str) -> str:
    """The request id an asker's text carries."""
    found = re.search(r"\(request ([\w-]+)\)", text)
    assert found, text
    return found.group(1)
