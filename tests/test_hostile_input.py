"""Malformed and hostile input never crashes the bot: each gets a clear reply or is ignored."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core import texts
from bot.slack.reply import FAIL_MARK
from tests import test_discord
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import BOT_USER_ID, app_mention_event, event_callback, signed_request
from tests.test_discord import replies, serving, until
from tests.test_slack import SECRET, Bot, running

fake = test_discord.fake  # the fake Discord fixture

HUGE = "chest pain " * 9091  # 100,001 characters
ODD_QUESTIONS = {
    "emoji only": "🤒🤕💊🩺",
    "right-to-left": "ما هي أعراض مرض السكري؟ מה הם הסימפטומים",
    "control characters": "what\x00 is\x07 sepsis\x1b[31m?\u202e\ufeff",
}


async def ask(bot: Bot, text: str) -> str:
    """Mention the bot with `text` (exactly as typed) in C1; the bot's final first reply."""
    ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}")
    await bot.event(app_mention_event(text, ts=ts))
    await bot.idle()
    return bot.bot_messages("C1", ts)[0].text


async def test_slack_empty_mention_and_huge_question_get_a_clear_reply(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        assert await ask(bot, "") == f"{FAIL_MARK} {texts.EMPTY_QUESTION}"
        assert await ask(bot, "   \n\t ") == f"{FAIL_MARK} {texts.EMPTY_QUESTION}"
        no_text = {k: v for k, v in app_mention_event("").items() if k != "text"}
        await bot.event(no_text)
        await bot.idle()
        assert (
            bot.bot_messages("C1", no_text["ts"])[0].text == f"{FAIL_MARK} {texts.EMPTY_QUESTION}"
        )
        huge = await ask(bot, HUGE)
        assert huge == f"{FAIL_MARK} {texts.too_long(len(HUGE.strip()), 8000)}"
        assert "100,000" in huge or "99,99" in huge
        assert not scripted_engine.requests


@pytest.mark.parametrize("kind", list(ODD_QUESTIONS))
async def test_slack_odd_but_real_questions_are_answered(scripted_engine, kind: str) -> None:
    async with running(scripted_engine) as bot:
        answer = await ask(bot, ODD_QUESTIONS[kind])
        assert answer.startswith("Answer to: "), answer
        assert len(scripted_engine.requests) == 1


def _without(event: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in keys}


MALFORMED_EVENTS = {
    "no user": lambda: _without(app_mention_event("what is sepsis?"), "user"),
    "no channel": lambda: _without(app_mention_event("what is sepsis?"), "channel"),
    "no ts": lambda: _without(app_mention_event("what is sepsis?"), "ts", "event_ts"),
    "text is not a string": lambda: {**app_mention_event("x"), "text": {"nested": ["x"]}},
}


@pytest.mark.parametrize("kind", list(MALFORMED_EVENTS))
async def test_slack_malformed_events_are_acknowledged_and_ignored(scripted_engine, kind) -> None:
    async with running(scripted_engine) as bot:
        status, _ = await bot.post(
            *signed_request(event_callback(MALFORMED_EVENTS[kind]()), SECRET)
        )
        assert status == 200, "acknowledged, so Slack does not retry it"
        await bot.idle()
        assert not scripted_engine.requests
        assert not bot.slack.calls_to("chat.postMessage")
        assert (await ask(bot, "still there?")).startswith("Answer to: still there?")


async def test_slack_envelope_without_an_event_or_with_broken_json_is_refused_cleanly(
    scripted_engine,
) -> None:
    async with running(scripted_engine) as bot:
        envelope = _without(event_callback(app_mention_event("x")), "event")
        status, _ = await bot.post(*signed_request(envelope, SECRET))
        assert status in (200, 404)
        body, headers = signed_request(event_callback(app_mention_event("x")), SECRET)
        body = body[: len(body) // 2]  # truncated JSON: the signature no longer matches either
        assert (await bot.post(body, headers))[0] in (400, 401)
        assert (await ask(bot, "still there?")).startswith("Answer to: still there?")


async def discord_reply(fake: FakeDiscord, content: str, **options: Any) -> str:
    asked = await fake.dispatch_message(content, mentions_bot=True, **options)
    parts = await until(
        lambda: [m for m in replies(fake, asked) if not m["content"].startswith("Thinking")]
    )
    return parts[0]["content"]


async def test_discord_empty_mention_and_odd_questions(fake: FakeDiscord, scripted_engine) -> None:
    async with serving(fake, scripted_engine):
        assert texts.EMPTY_QUESTION in await discord_reply(fake, "")
        for n, question in enumerate(ODD_QUESTIONS.values()):  # one asker each, so no waiting
            answer = await discord_reply(fake, question, author=fake.make_user(f"asker{n}"))
            assert answer.startswith("Answer to: ")
    assert len(scripted_engine.requests) == len(ODD_QUESTIONS)


async def test_discord_unexpected_gateway_events_are_ignored(
    fake: FakeDiscord, scripted_engine
) -> None:
    async with serving(fake, scripted_engine) as adapter:
        await fake.dispatch("MADE_UP_EVENT", {"anything": True})
        asked = await fake.dispatch_message("still there?", mentions_bot=True)
        await until(lambda: fake.threads)
        system = {**asked, "id": fake.new_id(), "type": 99}  # a message type we do not know
        await fake.dispatch("MESSAGE_CREATE", system)
        other = fake.make_user("other")
        assert (await discord_reply(fake, "and now?", author=other)).startswith("Answer to: ")
        assert adapter.ready
    assert len(scripted_engine.requests) == 2
