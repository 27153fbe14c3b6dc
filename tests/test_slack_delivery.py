"""Slack delivery under Slack's real limits and faults: what each asker sees at the end.

The fake Slack enforces the per-channel post rate and the method tiers (429 with Retry-After)
and injects faults (503, a write applied but its response lost, msg_too_long, a deleted message);
the bot's budget matches Slack's, both sped up by the same factor where a test would otherwise
wait for minutes.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import generate_latest

from bot.core import texts
from bot.metrics import Metrics
from bot.slack import adapter, limits
from bot.slack.reply import (
    FAIL_MARK,
    NOTICE_MARK,
    PROGRESS_MARK,
    THINKING_MARK,
    ReplyStyle,
    asked_text,
)
from inference.engine import Message
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.fakes.slack import BOT_USER_ID, SlackLimits, app_mention_event, message_event
from tests.harness.crowd import slack_crowd
from tests.harness.engines import scripted
from tests.harness.polling import until
from tests.harness.slack import DISCLAIMER, FAST, Bot, running


async def test_fifty_people_ask_in_one_channel_at_once_with_limits_and_faults() -> None:
    report = await slack_crowd(50, scale=20.0, faults=0.05, seed=3)
    print(json.dumps(report.as_dict()))
    assert report.faults > 0, "the faults were not on"
    assert report.outcomes == {"answered": 50}, report
    assert report.duplicates == 0 and report.stale == 0, report
    assert len(report.delays) == 50


# ---- one fault at a time, asserting what the asker sees ---------------------------------------
def stalled(question: str) -> Script:
    """The usual scripted answer, held after a few chunks until the test releases it."""
    return Script(huatuo_script(question).chunks, stall_at=3)


def long_answer(question: str) -> Script:
    """An answer of three Slack messages."""
    paragraph = "Fluids, antibiotics and source control within the hour. " * 30
    text = f"## Thinking\n\nHmm.\n\n## Final Response\n\nAnswer to: {question}\n\n"
    text += "\n\n".join([paragraph] * 5)
    return Script(tuple(text[i : i + 200] for i in range(0, len(text), 200)), stall_at=3)


def shown(bot: Bot, ts: str) -> list[str]:
    """The bot's messages in the asker's thread, as they read now."""
    return [message.text for message in bot.bot_messages("C1", ts)]


def assert_answered_once(bot: Bot, ts: str, question: str) -> None:
    """One answer and one thinking message (the thinking may come first: it is shown live, and
    an answer whose placeholder could not be edited is posted anew below it)."""
    thinking, answer = sorted(shown(bot, ts), key=lambda text: not text.startswith(THINKING_MARK))
    assert answer == f"Answer to: {question}\n\n{DISCLAIMER}"
    assert thinking.startswith(THINKING_MARK)


async def ask(bot: Bot, text: str, user: str) -> str:
    """`user` mentions the bot in C1; returns the message's ts."""
    ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}", user=user)
    await bot.event(app_mention_event(text, ts=ts, user=user))
    return ts


async def placeholder_of(bot: Bot, ts: str) -> str:
    """Wait for the placeholder in the asker's thread; its ts."""
    await until(lambda: shown(bot, ts) and shown(bot, ts)[0].startswith(PROGRESS_MARK))
    return bot.bot_messages("C1", ts)[0].ts


@pytest.mark.parametrize(("status", "times"), [(503, 1), (429, 4)])
async def test_a_placeholder_that_cannot_be_posted_does_not_cost_the_answer(
    scripted_engine: ScriptedEngine, status: int, times: int
) -> None:
    async with running(scripted_engine) as bot:
        bot.slack.fail_next("chat.postMessage", status, retry_after=1, times=times)
        question = await bot.mention("what is sepsis?")
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")


async def test_a_rate_limited_progress_edit_does_not_hold_the_answer_back() -> None:
    async with scripted(stalled) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        await placeholder_of(bot, question)
        bot.slack.fail_next("chat.update", 429, retry_after=20)
        await until(lambda: bot.slack.rate_limited("chat.update"))  # a progress edit
        released = time.monotonic()
        engine.release.set()
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")  # the placeholder went
    [shown_at] = [
        call.time
        for call in bot.slack.calls_to("chat.postMessage")
        if call.params["text"].startswith("Answer to:")
    ]
    assert shown_at - released < 10, "the answer waited out the edits' Retry-After of 20 s"


async def test_a_final_edit_that_fails_twice_is_retried() -> None:
    async with scripted(stalled) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        await placeholder_of(bot, question)
        bot.slack.fail_next("chat.update", 503, times=2)
        engine.release.set()
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")


async def test_an_answer_slack_refuses_ends_in_a_clear_failure_not_a_stale_placeholder() -> None:
    async with scripted(stalled) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        await placeholder_of(bot, question)
        await until(lambda: bot.slack.calls_to("chat.update"))  # progress shown
        await until(lambda: all(call.status for call in bot.slack.calls_to("chat.update")))
        bot.slack.error_next("chat.update", "msg_too_long")
        engine.release.set()
        await bot.idle(timeout=60)
        [asked] = engine.requests
        assert shown(bot, question) == [f"{FAIL_MARK} {texts.broken(asked.request.request_id)}"]


async def test_retry_after_as_a_date_is_honoured(scripted_engine: ScriptedEngine) -> None:
    tight = SlackLimits(post_rate=0.5, post_burst=1, scale=4.0, retry_after="date")
    budget = limits.budget(scale=4.0)  # ours: 0.9 posts a second per channel, Slack's here: 0.5
    async with running(scripted_engine, slack_limits=tight, budget=budget) as bot:
        asked = [await ask(bot, f"question {n}", user=f"U{n}") for n in range(2)]
        await bot.idle(timeout=120)
        for n, question in enumerate(asked):
            assert_answered_once(bot, question, f"question {n}")
        assert bot.slack.rate_limited("chat.postMessage") >= 1


async def test_a_part_of_a_long_answer_that_fails_is_followed_by_a_notice() -> None:
    async with scripted(long_answer) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        await placeholder_of(bot, question)
        bot.slack.error_next("chat.postMessage", "msg_too_long")  # the second part
        engine.release.set()
        await bot.idle(timeout=60)
        first, notice = shown(bot, question)
    assert first.startswith("Answer to: what is sepsis?")
    assert notice == f"{FAIL_MARK} {texts.PARTLY_POSTED}"


async def test_the_emergency_notice_survives_a_failed_post(scripted_engine: ScriptedEngine) -> None:
    text = "I have crushing chest pain right now"
    async with running(scripted_engine) as bot:
        bot.slack.fail_next("chat.postMessage", 503, times=2)  # the placeholder, then the notice
        question = await bot.mention(text)
        await bot.idle(timeout=60)
        notice, answer, thinking = shown(bot, question)
    assert notice.startswith(f"{NOTICE_MARK} **This may be an emergency.**")
    assert answer == f"Answer to: {text}\n\n{DISCLAIMER}"
    assert thinking.startswith(THINKING_MARK)


async def test_a_placeholder_whose_response_was_lost_is_not_posted_again(
    scripted_engine: ScriptedEngine,
) -> None:
    async with running(scripted_engine) as bot:
        bot.slack.lose_next("chat.postMessage")
        question = await bot.mention("what is sepsis?")
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")
        assert any(call.lost for call in bot.slack.calls)


async def test_thinking_whose_response_was_lost_is_posted_once() -> None:
    async with scripted(stalled) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        await placeholder_of(bot, question)
        bot.slack.lose_next("chat.postMessage")
        engine.release.set()
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")
        assert any(call.lost for call in bot.slack.calls)


async def test_a_deleted_placeholder_is_replaced_by_the_answer() -> None:
    async with scripted(stalled) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        bot.slack.delete_message("C1", await placeholder_of(bot, question))
        engine.release.set()
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")


async def test_a_thread_read_that_fails_once_is_retried_and_keeps_the_history(
    scripted_engine: ScriptedEngine,
) -> None:
    async with running(scripted_engine) as bot:
        question = await bot.mention("what is sepsis?")
        await bot.idle()
        bot.slack.fail_next("conversations.replies", 503)
        follow_up = bot.slack.add_message("C1", "and in children?", thread_ts=question)
        await bot.event(message_event("and in children?", ts=follow_up, thread_ts=question))
        await bot.idle(timeout=60)
    assert scripted_engine.requests[1].request.messages == (
        Message("user", "what is sepsis?"),
        Message("assistant", "Answer to: what is sepsis?"),
        Message("user", "and in children?"),
    )


async def test_a_thread_that_cannot_be_read_is_said_not_answered_blind(
    scripted_engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter, "HISTORY_PATIENCE", 1.0)
    async with running(scripted_engine) as bot:
        question = await bot.mention("what is sepsis?")
        await bot.idle()
        bot.slack.fail_next("conversations.replies", 503, times=100)
        follow_up = bot.slack.add_message("C1", "what dose for this patient?", thread_ts=question)
        event = message_event("what dose for this patient?", ts=follow_up, thread_ts=question)
        await bot.event(event)
        await bot.idle(timeout=60)
        *_, told = shown(bot, question)
    assert told == f"{FAIL_MARK} {texts.HISTORY_UNREADABLE}"
    assert len(scripted_engine.requests) == 1  # never sent to the model without its case


async def test_a_slash_question_whose_post_was_lost_is_posted_once(
    scripted_engine: ScriptedEngine,
) -> None:
    async with running(scripted_engine, slack_limits=SlackLimits(scale=FAST)) as bot:
        bot.slack.lose_next("chat.postMessage")
        await bot.command("what is sepsis?")
        await bot.idle(timeout=60)
        posted, answer, thinking = bot.slack.messages
    assert posted.text == asked_text("U1", "what is sepsis?")
    assert answer.thread_ts == thinking.thread_ts == posted.ts
    assert answer.text.startswith("Answer to: what is sepsis?")


async def test_what_the_writes_met_is_in_the_metrics(scripted_engine: ScriptedEngine) -> None:
    async with running(scripted_engine) as bot:
        metrics = Metrics(scripted_engine)
        metrics.watch_delivery([bot.adapter.outbox])
        bot.slack.fail_next("chat.postMessage", 429, retry_after=1)
        bot.slack.lose_next("chat.postMessage")
        await bot.mention("what is sepsis?")
        await bot.idle(timeout=60)
    text = generate_latest(metrics.registry).decode()
    assert 'huatuo_delivery_events_total{event="rate_limited",platform="slack"} 1.0' in text
    assert 'huatuo_delivery_events_total{event="found",platform="slack"} 1.0' in text


async def test_a_stalled_answer_is_not_edited_every_second() -> None:
    """The model stalls for 5 s: the placeholder's elapsed time changes every second, but it is
    edited at most once per 2 s (Slack's chat.update budget is shared by every answer)."""
    async with scripted(stalled) as engine, running(engine) as bot:
        question = await bot.mention("what is sepsis?")
        await placeholder_of(bot, question)
        started = time.monotonic()
        await asyncio.sleep(5.0)
        edits = len(bot.slack.calls_to("chat.update"))
        elapsed = time.monotonic() - started
        engine.release.set()
        await bot.idle(timeout=60)
        assert_answered_once(bot, question, "what is sepsis?")
    assert edits <= elapsed / ReplyStyle().edit_interval + 1, edits


async def test_stopping_while_the_thread_is_read_tells_the_asker(
    scripted_engine: ScriptedEngine,
) -> None:
    async with running(scripted_engine, stop_grace=0.1) as bot:
        question = await bot.mention("what is sepsis?")
        await bot.idle()
        bot.slack.stall_next("conversations.replies", 30.0)
        text = "what about children?"
        ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}", "U2", thread_ts=question)
        await bot.event(app_mention_event(text, ts=ts, user="U2", thread_ts=question))
        await until(lambda: bot.slack.calls_to("conversations.replies"))
        await bot.adapter.stop()
    *_, told = shown(bot, question)
    assert told == f"{FAIL_MARK} {texts.CUT_SHORT}", shown(bot, question)
