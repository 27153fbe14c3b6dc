"""The Slack quiz end to end: the real slack-bolt app, clicks as block_actions, a fake Slack."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.config import Settings
from bot.quiz import texts
from bot.quiz.item import QuizItem
from bot.quiz.schedule import CaseOfTheDay, parse_schedule
from bot.runner import serve
from bot.slack.quiz import COUNT_INTERVAL, mrkdwn, sections
from bot.slack.reply import FAIL_MARK, POSED_MARK, PROGRESS_MARK, THINKING_MARK
from inference.engine import Message
from inference.scripted import Script, ScriptedEngine
from tests.fakes.slack import (
    BOT_USER_ID,
    FakeSlack,
    SlackLimits,
    app_mention_event,
    message_event,
    slash_command,
)
from tests.harness.polling import until
from tests.harness.slack import DISCLAIMER, Bot, Mode, running
from tests.harness.slack_quiz import ITEM, THINKING, answers_b, quiz_bot, start_quiz


def private_to(bot: Bot, user: str) -> list[str]:
    """The ephemeral messages sent to one person."""
    return [
        c.params["text"]
        for c in bot.slack.calls_to("chat.postEphemeral")
        if c.params["user"] == user
    ]


# ---- the main flow -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_a_quiz_is_answered_by_learners_and_revealed_by_its_starter(mode: Mode) -> None:
    async with quiz_bot(mode) as (bot, engine):
        quiz = await start_quiz(bot)
        posted = quiz.message
        assert posted.channel == "C1" and posted.thread_ts is None
        assert quiz.buttons() == ["A", "B", "C", "D", "Reveal"]
        body = "\n".join(b["text"]["text"] for b in posted.blocks if b["type"] == "section")
        assert "bleeding gums &amp; loose teeth" in body, "bank text is escaped for Slack"
        assert "*A.* Vitamin A\n*B.* Vitamin C\n*C.* Vitamin D\n*D.* Vitamin K" in body
        assert "revealed in 1 minute, or when <@U1> presses *Reveal*" in body
        assert engine.requests[0].request.messages[0].content == ITEM.prompt

        assert await quiz.click("U2", "huatuo_quiz_answer_A") < 1.0
        await quiz.answer("U3", "B")
        await quiz.answer("U2", "B")  # U2 changes their mind: counts once, as B
        await quiz.answer("U4", "D")
        await until(lambda: len(bot.slack.calls_to("chat.postEphemeral")) == 4)
        assert private_to(bot, "U2") == [
            "Your answer is *A*: Vitamin A. You can change it until the answer is revealed.",
            "Your answer changed to *B*: Vitamin C. You can change it until the answer is "
            "revealed.",
        ]
        await until(lambda: quiz.count() == "3 answers so far.", timeout=COUNT_INTERVAL + 3)
        assert len(bot.slack.calls_to("chat.update")) <= 2, "four clicks, the count coalesced"
        assert quiz.thread() == [], "nothing in the thread before the reveal"

        await quiz.reveal("U2")  # not the starter
        await until(lambda: private_to(bot, "U2")[2:])
        assert private_to(bot, "U2")[2].startswith(
            "Sorry, only the person who started this quiz (<@U1>) can reveal the answer."
        )
        assert quiz.buttons()[-1] == "Reveal" and quiz.thread() == []

        await quiz.reveal("U1")
        await bot.idle()
        closed = quiz.current
        assert quiz.buttons() == [], "the buttons are gone"
        assert "*B.* Vitamin C ✅" in closed.text and "(closed)" in closed.text
        reveal, model, thinking = quiz.thread()
        assert reveal == (
            f"{POSED_MARK} *The correct answer is B: Vitamin C*\n\n"
            "*Answers*\nA: 0\nB: 2 ✅\nC: 0\nD: 1\n"
            "2 of 3 learners chose the correct answer.\n\n_Question from a test bank._"
        )
        assert model == (
            "**The model's answer** (it chose B: correct):\n\nThe answer is **B. Vitamin C**."
            f"\n\n{DISCLAIMER}"
        )
        assert thinking == f"{THINKING_MARK} **Thinking**\n{THINKING}"

        before = len(bot.slack.calls)
        await quiz.reveal("U1")  # a second reveal does nothing
        await quiz.answer("U5", "C")  # nor does a late answer count
        await until(lambda: private_to(bot, "U5"))
        await bot.idle()
        assert [c.method for c in bot.slack.calls[before:]] == ["chat.postEphemeral"]
        assert private_to(bot, "U5") == [texts.QUIZ_CLOSED]
        assert len(quiz.thread()) == 3


async def test_the_timer_reveals_a_quiz_nobody_revealed() -> None:
    async with quiz_bot(seconds=0.3) as (bot, _):
        quiz = await start_quiz(bot)
        await until(lambda: len(quiz.thread()) == 3)
        timer = f"{POSED_MARK} Time is up. *The correct answer is B: Vitamin C*"
        assert quiz.thread()[0].startswith(timer)
        assert "Nobody answered this time." in quiz.thread()[0]
        assert quiz.buttons() == []


async def test_a_slow_explanation_follows_when_ready_and_a_failure_is_said() -> None:
    stalled = lambda q: Script(("## Final Response\n\nThe answer is B.",), stall_at=0)  # noqa: E731
    async with quiz_bot(script=stalled, explain_wait=0.1) as (bot, engine):
        quiz = await start_quiz(bot)
        await quiz.reveal("U1")
        await until(lambda: len(quiz.thread()) == 2)
        reveal, note = quiz.thread()
        assert reveal.startswith(f"{POSED_MARK} *The correct answer is B") and quiz.buttons() == []
        assert note == (
            f"{PROGRESS_MARK} The model's explanation is not ready yet; it will appear here in "
            "this thread when it is."
        )
        engine.release.set()
        await until(lambda: quiz.thread()[1].startswith("**The model's answer**"))
        assert len(quiz.thread()) == 2, "the note became the explanation"
        assert "(it chose B: correct):\n\nThe answer is B." in quiz.thread()[1]

    failing = lambda q: Script(("x",), fail_at=0)  # noqa: E731
    async with quiz_bot(script=failing) as (bot, _):
        quiz = await start_quiz(bot)
        await quiz.reveal("U1")
        await until(lambda: len(quiz.thread()) == 2)
        assert quiz.thread()[1].startswith(
            f"{FAIL_MARK} Sorry, the model could not explain this question"
        )


async def test_the_open_quiz_thread_is_not_answered_until_the_reveal() -> None:
    async with quiz_bot() as (bot, engine):
        quiz = await start_quiz(bot)
        ts = quiz.message.ts
        reply = bot.slack.add_message("C1", "I think it's C", user="U2", thread_ts=ts)
        await bot.event(message_event("I think it's C", user="U2", ts=reply, thread_ts=ts))
        mention = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> answer?", user="U3", thread_ts=ts)
        await bot.event(app_mention_event("answer?", user="U3", ts=mention, thread_ts=ts))
        await until(lambda: private_to(bot, "U3"))
        await bot.idle()
        assert private_to(bot, "U3") == [
            "This quiz is still open, so I won't answer in its thread yet: the answer and my "
            "explanation follow here when it is revealed."
        ]
        assert len(engine.requests) == 1, "only the quiz's own explanation was asked"
        assert [m.user for m in bot.slack.thread("C1", ts)] == [BOT_USER_ID, "U2", "U3"]

        await quiz.reveal("U1")
        await bot.idle()
        why = bot.slack.add_message("C1", "why not C?", user="U2", thread_ts=ts)
        await bot.event(message_event("why not C?", user="U2", ts=why, thread_ts=ts))
        await bot.idle()
        assert len(engine.requests) == 2, "after the reveal, the thread is a conversation"
        posed, explanation, asked = engine.requests[1].request.messages
        assert posed.role == "user" and posed.content.startswith("*Quiz* (closed)")
        assert "I think it's C" in posed.content and "The correct answer is B" in posed.content
        assert explanation.role == "assistant" and "Vitamin C" in explanation.content
        assert asked == Message("user", "why not C?")


async def test_stopping_reveals_open_quizzes() -> None:
    engine = ScriptedEngine(answers_b)
    await engine.start()
    try:
        async with running(engine) as bot:  # the adapter's own Quizzes (shipped bank)
            quiz = await start_quiz(bot)
            correct = bot.adapter.quiz.quizzes.get(quiz.id).item.answer  # type: ignore[union-attr]
            await quiz.answer("U2", correct)
            await until(lambda: private_to(bot, "U2"))
        thread = quiz.thread()
        restarting = f"{POSED_MARK} The bot is restarting, so here is the answer now."
        assert thread[0].startswith(restarting)
        assert "1 of 1 learner chose the correct answer." in thread[0]
        assert "_Question from MedQA (Jin et al. 2021" in thread[0]
        assert quiz.buttons() == []
    finally:
        await engine.close(grace=0)


async def test_a_quiz_where_the_bot_cannot_post_is_explained_privately() -> None:
    async with quiz_bot() as (bot, _):
        bot.slack.error_next("chat.postMessage", "not_in_channel")
        url = bot.slack.new_response_url()
        await bot.command("quiz", url)
        await until(lambda: bot.slack.responses[url])
        [response] = bot.slack.responses[url]
        assert response["response_type"] == "ephemeral"
        assert "Invite me to the channel" in response["text"]
        assert len(bot.adapter.quiz.quizzes) == 0, "the unposted quiz is forgotten"


async def test_help_mentions_the_quiz() -> None:
    async with quiz_bot() as (bot, _):
        ack = await bot.command("help")
    assert "`/huatuo quiz`" in ack["text"]


def test_a_long_case_is_split_into_section_blocks_that_fit() -> None:
    paragraph = "Laboratory studies show: haemoglobin 9.1 g/dL, leukocytes 14,200/mm3. " * 12
    case = QuizItem("long-1", "\n".join([paragraph] * 6), ITEM.options, "B")
    text = mrkdwn(texts.question_text(case, "Quiz", 600, "<@U1>"), "<@U1>")
    blocks = sections(text)
    assert len(text) > 5000 and len(blocks) == 2
    assert all(len(block["text"]["text"]) <= 3000 for block in blocks)
    assert "\n".join(block["text"]["text"] for block in blocks) == text


# ---- case of the day ---------------------------------------------------------------------------


async def test_the_case_of_the_day_is_posted_once_a_day_by_the_adapter() -> None:
    async with quiz_bot(case_seconds=3600) as (bot, _):
        now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
        end = now + timedelta(days=2, hours=1)

        def clock() -> datetime:
            return now

        async def sleep(seconds: float) -> None:
            nonlocal now
            now += timedelta(seconds=seconds)
            if now > end:
                raise asyncio.CancelledError
            await asyncio.sleep(0)

        entries = parse_schedule("slack:C7 08:00 Europe/London")
        schedule = CaseOfTheDay(entries, {"slack": bot.adapter.post_quiz}, clock=clock, sleep=sleep)
        with pytest.raises(asyncio.CancelledError):
            await schedule.run()
        posts = [m for m in bot.slack.messages if m.channel == "C7"]
        assert len(posts) == 2
        for post in posts:
            assert post.text.startswith("*Case of the day*\n\n")
            assert "revealed in 1 hour._" in post.text and "presses" not in post.text
            buttons = [e["text"]["text"] for e in post.blocks[-1]["elements"]]
            assert buttons == ["A", "B", "C", "D"], "nobody to press Reveal: no Reveal button"


def test_the_manifest_enables_interactivity() -> None:
    manifest = yaml.safe_load(Path(__file__).parents[1].joinpath("slack/manifest.yml").read_text())
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


# ---- huatuo-bot run ------------------------------------------------------------------------------


async def test_run_schedules_the_case_of_the_day_and_reveals_open_quizzes_on_stop(
    unused_tcp_port, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever serve() writes lands here
    caplog.set_level(logging.INFO, logger="bot")
    engine = ScriptedEngine(answers_b)
    async with FakeSlack() as slack:
        settings = Settings(
            _env_file=None,
            slack_bot_token="xoxb-test",
            slack_app_token="xapp-1-test",
            slack_api_url=slack.api_url,
            http_port=unused_tcp_port,
            case_of_the_day="slack:C7 08:00 Europe/London",
        )
        stop = asyncio.Event()
        server = asyncio.create_task(serve(settings, ["slack"], engine, stop))
        try:
            await slack.wait_connected()
            fields = slash_command("quiz", response_url=slack.new_response_url())
            await slack.wait_ack(await slack.send_socket_event("slash_commands", fields))
            [quiz] = await until(lambda: [m for m in slack.messages if m.blocks])
            stop.set()
            await asyncio.wait_for(server, 10)
        finally:
            stop.set()
            await asyncio.gather(server, return_exceptions=True)
    reveal = slack.thread("C1", quiz.ts)[1].text
    assert reveal.startswith(f"{POSED_MARK} The bot is restarting, so here is the answer now.")
    assert "case of the day: slack:C7 08:00 Europe/London, next at" in caplog.text


async def test_a_quiz_under_slacks_limits_and_faults_is_posted_counted_and_revealed_once() -> None:
    """The quiz post's response lost, count edits rate limited, the reveal post failing once: the
    learners still see one quiz, its count, one reveal and one explanation."""
    async with quiz_bot(slack_limits=SlackLimits(scale=20.0)) as (bot, _engine):
        bot.slack.lose_next("chat.postMessage")  # the quiz itself
        quiz = await start_quiz(bot)
        bot.slack.fail_next("chat.update", 429, retry_after=1)
        for user, letter in (("U2", "B"), ("U3", "B"), ("U4", "D")):
            await quiz.answer(user, letter)
        await until(lambda: quiz.count() == "3 answers so far.", timeout=COUNT_INTERVAL + 10)
        bot.slack.fail_next("chat.postMessage", 503)  # the reveal
        await quiz.reveal("U1")
        await until(lambda: len(quiz.thread()) == 3, timeout=30)
        await bot.idle()
        reveal, model, thinking = quiz.thread()
        assert [m for m in bot.slack.messages if m.blocks and m.thread_ts is None] == [quiz.current]
    assert reveal.startswith(f"{POSED_MARK} *The correct answer is B: Vitamin C*")
    assert "**B. Vitamin C**" in model and thinking.startswith(THINKING_MARK)
    assert bot.slack.rate_limited("chat.update") >= 1 and any(c.lost for c in bot.slack.calls)
