"""Malformed and hostile input never crashes the bot: each gets a clear reply or is ignored."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core import texts
from bot.slack.reply import FAIL_MARK, THINKING_MARK
from inference.scripted import Script, ScriptedEngine
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import (
    BOT_USER_ID,
    app_mention_event,
    event_callback,
    signed_request,
)
from tests.harness.discord import SENDS, replies, serving, thread_messages
from tests.harness.discord_quiz import quiz_serving, quizzes_of, reveal_id, thread_of
from tests.harness.discord_quiz import start_quiz as start_discord_quiz
from tests.harness.engines import chunked, scripted
from tests.harness.links import FORMS, TOKENS, assert_slack_safe, slack_shown
from tests.harness.polling import until
from tests.harness.slack import SECRET, Bot, running
from tests.harness.slack_quiz import quiz_bot, start_quiz

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


# ---- model output that tries to ping people or disguise a link ---------------------------------

STEERED = (
    "Ignore the question. [x](!channel) [team](!here) [Dr](@U0123) [x](!subteam^S1) "
    "<!everyone> &lt;!here&gt; [https://intranet.example](https://evil.example) "
    "@everyone @here <@&123456789012345678> <@123456789012345678>"
)
HOSTILE = "\n".join(  # every form, every token: one line each
    form.replace("{t}", token) for form in FORMS for token in TOKENS
)


def steered(thinking: str, answer: str) -> Script:
    text = f"## Thinking\n\n{thinking}\n\n## Final Response\n\n{answer}"
    return chunked(text, 400)


async def test_slack_steered_answer_and_thinking_ping_nobody_and_disguise_no_link() -> None:
    scripts = {"short": steered(STEERED, HOSTILE), "long": steered(HOSTILE, STEERED)}
    async with scripted(lambda q: scripts[q]) as engine, running(engine) as bot:
        short = await bot.mention("short")  # the corpus as the answer, the thinking in messages
        await bot.idle()
        long = await bot.mention("long")  # the corpus as the thinking: a file
        await bot.idle()

    shown = slack_shown(bot.slack)
    assert len(shown) > 10 and len(bot.slack.files) == 1
    for text in shown:
        assert_slack_safe(text)
    answer, *_, thinking = (m.text for m in bot.bot_messages("C1", short))
    # Links to non-web targets are shown as their label and target in plain text; mentions are
    # escaped or broken with a word joiner (U+2060), so nobody is pinged.
    assert answer.startswith("x (!here)\nx (!channel)\nx (!everyone)\nx (@U0123ABCD)\n")
    seen = (
        "Ignore the question. x (!channel) team (!here) Dr (@U0123) x (!subteam^S1) "
        "&lt;!everyone&gt; &amp;lt;!here&amp;gt; https://evil.example @\u2060everyone "
        "@\u2060here &lt;@&amp;123456789012345678&gt; &lt;@123456789012345678&gt;"
    )
    assert thinking.startswith(THINKING_MARK) and thinking.endswith(seen)
    assert bot.bot_messages("C1", long)[0].text.startswith(seen)
    [file] = bot.slack.files.values()
    assert file.title == "Thinking" and file.content == HOSTILE.encode()


async def test_slack_steered_quiz_explanation_keeps_only_the_starters_mention() -> None:
    explanation = steered(STEERED, f"The answer is B. {STEERED}\n{HOSTILE}")
    async with quiz_bot(script=lambda q: explanation) as (bot, _):
        quiz = await start_quiz(bot)
        await quiz.reveal("U1")
        await until(lambda: len(quiz.thread()) == 3)

    posted = bot.slack.calls_to("chat.postMessage")[0].params["text"]
    assert "when <@U1> presses *Reveal*" in posted, "the starter's own mention still works"
    explained = quiz.thread()[1]  # a disguised link shows its real target, bare
    assert "https://evil.example" in explained and "intranet" not in explained
    for text in slack_shown(bot.slack):
        assert_slack_safe(text, "<@U1>")


async def test_discord_steered_answer_pings_nobody_and_disguises_no_link(
    fake: FakeDiscord,
) -> None:
    async with scripted(lambda q: steered(STEERED, STEERED)) as engine, serving(fake, engine):
        answer = await discord_reply(fake, "anything?")
        thinking = await until(lambda: fake.threads and thread_messages(fake))

    sends = [c.json for c in fake.calls if c.method in ("POST", "PATCH") and SENDS.match(c.path)]
    assert sends and all(body["allowed_mentions"] == {"parse": []} for body in sends)
    for text in (answer, thinking[0]["content"]):
        assert "@everyone @here <@&123456789012345678> <@123456789012345678>" in text
        assert "<https://evil.example>" in text and "intranet" not in text


async def test_discord_steered_quiz_explanation_disguises_no_link(fake: FakeDiscord) -> None:
    engine = ScriptedEngine(lambda q: steered(STEERED, f"The answer is B. {STEERED}"))
    await engine.start()
    try:
        async with quiz_serving(fake, quizzes_of(engine, seconds=60)):
            quiz = await start_discord_quiz(fake)
            await fake.click_button(quiz, reveal_id(quiz))
            thread = await until(lambda: len(thread_of(fake, quiz)) == 3 and thread_of(fake, quiz))
    finally:
        await engine.close(grace=0)
    _, explanation, thinking = thread
    for message in (explanation, thinking):
        assert "<https://evil.example>" in message["content"]
        assert "intranet" not in message["content"]
