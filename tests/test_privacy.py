"""No message text in logs at INFO or above: questions and answers through every adapter."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from inference.scripted import Script, ScriptedEngine
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import message_event
from tests.harness.discord import serving, thread_messages
from tests.harness.polling import until
from tests.harness.service import CollectingReply, question, service
from tests.harness.slack import running

QUESTION = "Is quokka-zebra-4711 syndrome contagious? I have crushing chest pain right now"
FOLLOW_UP = "What about wombat-lantern-88?"
THINKING = "Pondering narwhal-teapot-305."
ANSWER = "Only platypus-violin-926 spreads it."
SECRETS = ("quokka-zebra-4711", "wombat-lantern-88", "narwhal-teapot-305", "platypus-violin-926")


def script(_: str) -> Script:
    return Script((f"## Thinking\n\n{THINKING}\n\n", f"## Final Response\n\n{ANSWER}"))


@pytest.fixture
async def engine() -> AsyncIterator[ScriptedEngine]:
    engine = ScriptedEngine(script)
    await engine.start()
    yield engine
    await engine.close(grace=0)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything logged at INFO and above, from every logger."""
    caplog.set_level(logging.INFO)
    assert logging.getLogger().level == logging.INFO
    return caplog


def assert_no_text_in(logs: pytest.LogCaptureFixture) -> None:
    assert logs.records, "something was logged"
    for record in logs.records:
        logged = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert not any(secret in logged for secret in SECRETS), logged


async def test_service_logs_no_text(engine: ScriptedEngine, logs) -> None:
    reply = CollectingReply()
    assert await service(engine).answer(question(QUESTION), reply) == "answered"
    assert reply.notices and reply.answers[0].answer == ANSWER
    assert_no_text_in(logs)


async def test_slack_logs_no_text(engine: ScriptedEngine, logs) -> None:
    async with running(engine) as bot:
        asked = await bot.mention(QUESTION)
        await bot.idle()
        follow_up = bot.slack.add_message("C1", FOLLOW_UP, thread_ts=asked)
        await bot.event(message_event(FOLLOW_UP, ts=follow_up, thread_ts=asked))
        await bot.idle()
    assert ANSWER in bot.bot_messages("C1", asked)[-2].text
    assert_no_text_in(logs)


async def test_discord_logs_no_text(engine: ScriptedEngine, logs) -> None:
    fake = FakeDiscord(heartbeat_interval_ms=500)
    await fake.start()
    try:
        async with serving(fake, engine):
            await fake.dispatch_message(QUESTION, mentions_bot=True)
            await until(lambda: thread_messages(fake))
            await fake.dispatch_message(FOLLOW_UP, channel_id=fake.threads[0].channel["id"])
            await until(lambda: len(thread_messages(fake)) == 4)
    finally:
        await fake.stop()
    assert len(engine.requests) == 2
    assert_no_text_in(logs)
