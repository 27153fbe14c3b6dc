"""Slack's AI app surface end to end: the real slack-bolt/slack_sdk against the fake Slack's
suggested prompts, loading status, native streaming with a thinking step, feedback buttons; the
fallback to edited messages on each refusal; markdown blocks read back as history."""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.links import MASKED_LINK, disguises, is_web
from bot.feedback import summary
from bot.feedback.store import FeedbackStore
from bot.slack import stream
from bot.slack.agent import PROMPTS
from bot.slack.feedback import FEEDBACK_ACTION, feedback_block
from bot.slack.markdown import WORD_JOINER, safe_markdown
from bot.slack.mrkdwn import unescape
from bot.slack.reply import THINKING_MARK
from inference.engine import Message
from inference.scripted import Script
from tests.fakes.slack import (
    app_home_opened_event,
    block_actions,
    interactive_form,
    message_event,
    reaction_event,
)
from tests.fakes.slack import signed_request as slack_signed
from tests.harness.engines import scripted
from tests.harness.links import CORPUS
from tests.harness.polling import until
from tests.harness.slack import DISCLAIMER, SECRET, Bot, running

THINKING = " ".join(f"reasoning{n}" for n in range(20))
ANSWER_LINES = [f"- point {n}: see [NICE](https://nice.org.uk/{n})" for n in range(12)]
STEP = 0.02  # seconds per chunk: about 2 s an answer


@pytest.fixture(autouse=True)
def fast_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream writes every 0.2 s at most (1 s on a real workspace): several in 2 s."""
    monkeypatch.setattr(stream, "APPEND_INTERVAL", 0.2)


def engine(script: Callable[[str], Script] = lambda q: lined(q)) -> Any:
    """An engine writing `script` a chunk every STEP s."""
    return scripted(script, STEP)


def lined(question: str) -> Script:
    """A thinking of 20 words, then an answer of 12 lines, one word per chunk."""
    answer = "\n".join([f"Answer to: {question}", "", *ANSWER_LINES])
    text = f"## Thinking\n\n{THINKING}\n\n## Final Response\n\n{answer}"
    return Script(tuple(re.findall(r"\S+\s*|\s+", text)))


def expected(question: str) -> str:
    """The answer message as Slack holds it in the end (the plain-text fallback too)."""
    return safe_markdown("\n".join([f"Answer to: {question}", "", *ANSWER_LINES, "", DISCLAIMER]))


async def dm(bot: Bot, text: str, thread_ts: str | None = None) -> str:
    """U1 writes to the bot in its DM D1 (the agent view's threads are DM threads too)."""
    ts = bot.slack.add_message("D1", text, thread_ts=thread_ts)
    await bot.event(
        message_event(text, channel="D1", channel_type="im", ts=ts, thread_ts=thread_ts)
    )
    return ts


def chunks_sent(bot: Bot) -> list[dict[str, Any]]:
    """Every chunk the stream methods were sent, in order."""
    methods = ("chat.startStream", "chat.appendStream", "chat.stopStream")
    return [c for call in bot.slack.calls if call.method in methods for c in call.params["chunks"]]


def thinking_shown(bot: Bot, thread_ts: str) -> str:
    """The thinking as people can read it in the end: the step, or the thread's messages."""
    step = [m.tasks["reasoning"]["details"] for m in bot.slack.thread("D1", thread_ts) if m.tasks]
    posts = [m.text for m in bot.bot_messages("D1", thread_ts) if m.text.startswith(THINKING_MARK)]
    return "\n".join(step + posts)


async def test_opening_the_messages_tab_shows_the_suggested_prompts(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        await bot.event(app_home_opened_event("home"))
        await bot.event(app_home_opened_event("messages"))
        started = {"channel_id": "D1", "thread_ts": "1700000000.000100", "user_id": "U1"}
        await bot.event({"type": "assistant_thread_started", "assistant_thread": started})
        await until(lambda: len(bot.slack.suggested) == 2)
        await bot.idle()

    prompts = list(PROMPTS)
    assert bot.slack.suggested == {("D1", None): prompts, ("D1", "1700000000.000100"): prompts}
    manifest = yaml.safe_load(Path(__file__).parents[1].joinpath("slack/manifest.yml").read_text())
    assert manifest["features"]["agent_view"]["suggested_prompts"] == prompts
    assert "not a medical device" in manifest["features"]["agent_view"]["agent_description"]


async def test_a_direct_message_is_streamed_natively_with_a_thinking_step() -> None:
    async with engine() as model, running(model) as bot:
        ts = await dm(bot, "what is sepsis?")
        await bot.idle()

    [answer] = bot.bot_messages("D1", ts)  # no placeholder, no thinking message
    assert answer.text == expected("what is sepsis?") and not answer.streaming
    assert answer.metadata == {"event_type": "huatuo_message", "event_payload": {"role": "answer"}}
    assert answer.blocks == [feedback_block()]
    step = {"id": "reasoning", "title": "Reasoning", "status": "complete", "details": THINKING}
    assert answer.tasks == {"reasoning": step | {"type": "task_update"}}
    [status] = bot.slack.calls_to("assistant.threads.setStatus")
    [start] = bot.slack.calls_to("chat.startStream")
    assert status.params["loading_messages"] == list(stream.LOADING) and status.time < start.time
    assert bot.slack.status("D1", ts) is None, "the status went once the stream began"
    sent = chunks_sent(bot)
    assert sent[0]["type"] == "task_update" and sent[0]["status"] == "in_progress", "step first"
    text_chunks = [c for c in sent if c["type"] == "markdown_text"]
    assert len(text_chunks) >= 3, "the answer is streamed as it is written"
    assert not bot.slack.calls_to("chat.update") and not bot.slack.calls_to("chat.postMessage")


def refuse(bot: Bot, how: str) -> None:
    """Make the fake Slack refuse the native methods as `how` says."""
    if how == "no AI features":
        bot.slack.ai_features = False
    elif how == "unknown method":
        bot.slack.unsupported |= {"chat.startStream", "chat.appendStream", "chat.stopStream"}
    else:  # Slack closes the stream mid-answer
        bot.slack.stream_timeout = 0.8


@pytest.mark.parametrize("how", ["no AI features", "unknown method", "stream expired"])
async def test_a_refused_native_answer_falls_back_to_edits_without_losing_text(how: str) -> None:
    async with engine() as model, running(model) as bot:
        refuse(bot, how)
        ts = await dm(bot, "what is sepsis?")
        await bot.idle()

    [answer] = [m for m in bot.bot_messages("D1", ts) if not m.text.startswith(THINKING_MARK)]
    assert answer.text == expected("what is sepsis?") and not answer.streaming
    assert answer.blocks == [{"type": "markdown", "text": answer.text}, feedback_block()]
    assert "reasoning19" in thinking_shown(bot, ts) and "reasoning0" in thinking_shown(bot, ts)
    started = [c for c in bot.slack.calls_to("chat.startStream") if not c.error]
    if how == "stream expired":  # the stream's own message became the answer
        assert [c.error for c in bot.slack.calls_to("chat.appendStream")][-1] == (
            "message_not_in_streaming_state"
        )
        assert answer.ts == _stream_ts(bot)
    else:
        assert not started and bot.slack.calls_to("chat.update"), "a placeholder, edited"


def _stream_ts(bot: Bot) -> str:
    [start] = [c for c in bot.slack.calls_to("chat.startStream") if not c.error]
    [message] = [m for m in bot.slack.messages if m.ts > start.params["thread_ts"]][:1]
    return message.ts


async def test_a_channel_answer_is_edited_in_auto_mode() -> None:
    async with engine() as model, running(model) as bot:
        ts = await bot.mention("what is sepsis?")
        await bot.idle()

    answer, thinking = bot.bot_messages("C1", ts)
    assert answer.text == expected("what is sepsis?") and answer.edited_ts
    assert answer.blocks == [{"type": "markdown", "text": answer.text}, feedback_block()]
    assert thinking.text.startswith(f"{THINKING_MARK} **Thinking**")
    native = ("chat.startStream", "assistant.threads.setStatus")
    assert not [c for c in bot.slack.calls if c.method in native]


async def test_the_loading_status_is_renewed_while_the_question_waits(monkeypatch) -> None:
    monkeypatch.setattr(stream, "STATUS_EVERY", 0.2)
    stalled = lambda q: Script(("## Thinking\n\nHmm.\n\n## Final Response\n\nYes.",), stall_at=0)  # noqa: E731
    async with engine(stalled) as model, running(model) as bot:
        ts = await dm(bot, "fever?")
        await until(lambda: len(bot.slack.calls_to("assistant.threads.setStatus")) >= 3)
        assert bot.slack.status("D1", ts) == stream.STATUS
        model.release.set()
        await bot.idle()
        assert bot.slack.status("D1", ts) is None

    calls = bot.slack.calls_to("assistant.threads.setStatus")
    assert all(b.time - a.time < 120 for a, b in itertools.pairwise(calls))
    [answer] = bot.bot_messages("D1", ts)
    assert answer.text.startswith("Yes.")


async def click(bot: Bot, message: Any, user: str, value: str) -> None:
    payload = block_actions(
        FEEDBACK_ACTION, value, message=message, response_url="", user=user, kind="feedback_buttons"
    )
    body, headers = slack_signed(interactive_form(payload), SECRET, form=True)
    assert (await bot.post(body, headers))[0] == 200


async def test_feedback_buttons_are_recorded_and_counted_with_reactions(tmp_path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    async with engine() as model, running(model, feedback=store) as bot:
        ts = await dm(bot, "what is sepsis?")
        await bot.idle()
        [answer] = bot.bot_messages("D1", ts)
        await click(bot, answer, "U1", "good")
        await click(bot, answer, "U1", "bad")  # the latest wins
        await click(bot, answer, "U2", "good")
        await bot.event(reaction_event("+1", answer.ts, channel="D1", user="U3"))
        await bot.idle()
    await store.close()

    db = sqlite3.connect(tmp_path / "feedback.sqlite3")
    [group] = summary.summarize(db, "")
    assert (group.answers, group.rated, group.up, group.down) == (1, 1, 2, 1)


async def test_a_follow_up_reads_the_native_answer_back_as_history() -> None:
    async with engine() as model, running(model) as bot:
        ts = await dm(bot, "what is sepsis?")
        await bot.idle()
        await dm(bot, "and in children?", thread_ts=ts)
        await bot.idle()

    answer = "\n".join(["Answer to: what is sepsis?", "", *ANSWER_LINES])
    assert model.requests[1].request.messages == (
        Message("user", "what is sepsis?"),
        Message("assistant", answer),
        Message("user", "and in children?"),
    )


def test_markdown_from_the_model_can_neither_ping_nor_disguise_a_link() -> None:
    for text in [*CORPUS, "@here look", "@channel", "[x](https://ok.example) @everyone"]:
        shown = safe_markdown(text)
        assert "<" not in shown and ">" not in shown, shown
        assert not re.search(r"@(here|channel|everyone)", shown, re.IGNORECASE), shown
        prose = re.sub(r"(?ms)^```.*?^```|`[^`\n]+`", "", shown)  # code shows no links
        for link in MASKED_LINK.finditer(prose):
            target = link.group(2)
            assert is_web(unescape(target)), (text, shown)
            assert not disguises(unescape(link.group(1)), unescape(target)), shown
    assert safe_markdown("@here") == f"@{WORD_JOINER}here"
