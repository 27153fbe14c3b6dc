"""The Slack adapter end to end: the real slack-bolt app against the fake Slack on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core import texts
from bot.core.events import Progress
from bot.core.outbox import Outbox
from bot.core.splitting import utf8_size
from bot.core.texts import CAPPED
from bot.metrics import Metrics
from bot.slack import limits
from bot.slack.adapter import web_client
from bot.slack.events import Identity, thread_history
from bot.slack.markdown import safe_markdown
from bot.slack.mrkdwn import FENCE, to_mrkdwn
from bot.slack.reply import (
    FAIL_MARK,
    NOTICE_MARK,
    PROGRESS_MARK,
    THINKING_MARK,
    ReplyStyle,
    SlackDelivery,
    asked_text,
)
from inference.engine import Message, SamplingParams
from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    FakeSlack,
    app_mention_event,
    bot_message_event,
    event_callback,
    message_changed_event,
    message_event,
    signed_request,
)
from tests.harness.engines import chunked, scripted
from tests.harness.polling import until
from tests.harness.slack import DISCLAIMER, SECRET, Bot, Mode, options, running

LIMIT = 3500


def final_text(bot: Bot, channel: str, thread_ts: str) -> str:
    """The placeholder's text (the first bot reply in the thread)."""
    return bot.bot_messages(channel, thread_ts)[0].text


# ---- the main flows ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_mention_is_answered_once_in_its_thread(scripted_engine, mode: Mode) -> None:
    async with running(scripted_engine, mode) as bot:
        question = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> what causes fever?")
        mention = app_mention_event("what causes fever?", ts=question)
        ack_seconds = await bot.send(event_callback(mention))
        await bot.idle()

        answer, thinking = bot.bot_messages("C1", question)
        assert ack_seconds < 1.0
        assert answer.thread_ts == thinking.thread_ts == question
        assert answer.edited_ts, "the placeholder is edited into the answer"
        assert answer.text == f"Answer to: what causes fever?\n\n{DISCLAIMER}"
        assert thinking.text.startswith(f"{THINKING_MARK} **Thinking**\n")
        assert "The question is: what causes fever?" in thinking.text
        assert bot.slack.calls_to("chat.postMessage")[0].params["text"] == (
            f"{PROGRESS_MARK} Thinking…"
        )
        [request] = scripted_engine.requests
        assert request.request.messages == (Message("user", "what causes fever?"),)


async def test_direct_message_is_answered_without_a_mention(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        ts = bot.slack.add_message("D1", "is 38.5 °C a fever?")
        await bot.event(
            message_event("is 38.5 °C a fever?", channel="D1", channel_type="im", ts=ts)
        )
        await bot.idle()

        [answer] = bot.bot_messages("D1", ts)  # streamed natively, the thinking in its step
        assert answer.thread_ts == ts and "The question is" in answer.tasks["reasoning"]["details"]
        assert answer.text.startswith("Answer to: is 38.5 °C a fever?")
        assert scripted_engine.requests[0].request.messages[-1].content == "is 38.5 °C a fever?"


async def test_follow_up_in_the_thread_carries_the_history(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        question = await bot.mention("what causes fever?")
        await bot.idle()
        follow_up = bot.slack.add_message("C1", "and in children?", thread_ts=question)
        await bot.event(message_event("and in children?", ts=follow_up, thread_ts=question))
        elsewhere = bot.slack.add_message("C1", "unrelated chat")
        reply = bot.slack.add_message("C1", "a reply between people", thread_ts=elsewhere)
        await bot.event(message_event("a reply between people", ts=reply, thread_ts=elsewhere))
        await bot.idle()

        assert len(scripted_engine.requests) == 2, "only the bot's own thread continues"
        assert scripted_engine.requests[1].request.messages == (
            Message("user", "what causes fever?"),
            Message("assistant", "Answer to: what causes fever?"),
            Message("user", "and in children?"),
        )
        replies = bot.bot_messages("C1", question)
        assert replies[-2].text.startswith("Answer to: and in children?")
        assert not bot.bot_messages("C1", elsewhere)


async def test_an_emergency_notice_comes_before_the_answer_and_stays_out_of_history(
    scripted_engine,
) -> None:
    text = "I have crushing chest pain right now"
    async with running(scripted_engine) as bot:
        question = await bot.mention(text)
        await bot.idle()
        notice, answer, thinking = bot.bot_messages("C1", question)
        assert notice.text.startswith(f"{NOTICE_MARK} **This may be an emergency.**")
        assert "911" in notice.text and notice.thread_ts == question
        assert answer.text == f"Answer to: {text}\n\n{DISCLAIMER}"
        assert thinking.text.startswith(THINKING_MARK)

        follow_up = bot.slack.add_message("C1", "what should I do?", thread_ts=question)
        await bot.event(message_event("what should I do?", ts=follow_up, thread_ts=question))
        await bot.idle()
    assert scripted_engine.requests[1].request.messages == (
        Message("user", text),
        Message("assistant", f"Answer to: {text}"),
        Message("user", "what should I do?"),
    )


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_slash_command_posts_the_question_and_answers_in_its_thread(
    scripted_engine, mode: Mode
) -> None:
    async with running(scripted_engine, mode) as bot:
        started = time.monotonic()
        ack = await bot.command("what is sepsis?")
        assert time.monotonic() - started < 1.0
        assert "text" not in ack
        await bot.idle()

        posted, answer, thinking = bot.slack.messages
        assert posted.text == asked_text("U1", "what is sepsis?")
        assert posted.thread_ts is None and answer.thread_ts == thinking.thread_ts == posted.ts
        assert answer.text.startswith("Answer to: what is sepsis?")
        assert scripted_engine.requests[0].request.messages[-1].content == "what is sepsis?"

        follow_up = bot.slack.add_message("C1", "how is it treated?", thread_ts=posted.ts)
        await bot.event(message_event("how is it treated?", ts=follow_up, thread_ts=posted.ts))
        await bot.idle()
        assert scripted_engine.requests[1].request.messages[:2] == (
            Message("user", "what is sepsis?"),
            Message("assistant", "Answer to: what is sepsis?"),
        )


@pytest.mark.parametrize("text", ["help", ""])
async def test_slash_help_is_private(scripted_engine, text: str) -> None:
    async with running(scripted_engine, command="/ask-huatuo") as bot:
        ack = await bot.command(text)
        await bot.idle()
    assert "`/ask-huatuo <question>`" in ack["text"]
    assert not bot.slack.messages and not scripted_engine.requests


async def test_slash_command_where_the_bot_cannot_post_says_so_privately(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        bot.slack.error_next("chat.postMessage", "not_in_channel")
        url = bot.slack.new_response_url()
        assert await bot.command("what is sepsis?", url) == {}
        response = await until(lambda: bot.slack.responses[url])
    assert "/invite" in response[0]["text"] and response[0]["response_type"] == "ephemeral"
    assert not scripted_engine.requests


# ---- answer once, and only to people ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_a_retried_event_is_answered_once(scripted_engine, mode: Mode) -> None:
    async with running(scripted_engine, mode) as bot:
        question = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> chest pain?")
        payload = event_callback(app_mention_event("chest pain?", ts=question))
        await bot.send(payload)
        await bot.send(payload, retry=1)
        await bot.idle()
        await bot.send(payload, retry=2)  # after the answer, too
        await bot.idle()

    assert len(scripted_engine.requests) == 1
    assert len(bot.bot_messages("C1", question)) == 2  # the answer and its thinking


async def test_a_mention_arriving_as_app_mention_and_message_is_answered_once(
    scripted_engine,
) -> None:
    async with running(scripted_engine) as bot:
        question = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> chest pain?")
        await bot.event(message_event(f"<@{BOT_USER_ID}> chest pain?", ts=question))
        await bot.event(app_mention_event("chest pain?", ts=question))
        await bot.idle()

    [request] = scripted_engine.requests
    assert request.request.messages[-1].content == "chest pain?"
    assert len(bot.bot_messages("C1", question)) == 2


async def test_bot_edited_and_deleted_messages_are_ignored(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        question = await bot.mention("chest pain?")
        await bot.idle()
        in_thread = {"thread_ts": question}
        deleted = {
            **message_event("gone", **in_thread),
            "subtype": "message_deleted",
            "hidden": True,
        }
        for event in (
            bot_message_event("another bot's note", **in_thread),
            message_event("our own echo", user=BOT_USER_ID, bot_id=BOT_ID, **in_thread),
            message_event("a bot with a user id", user="U9", bot_id="B9", **in_thread),
            message_changed_event(question, f"<@{BOT_USER_ID}> chest pain, edited"),
            deleted,
            message_event("top-level chatter without a mention"),
        ):
            await bot.event(event)
        await bot.idle()

    assert len(scripted_engine.requests) == 1
    assert len(bot.bot_messages("C1", question)) == 2


async def test_http_mode_verifies_signatures_and_serves_health(scripted_engine) -> None:
    async with running(scripted_engine, "http") as bot:
        payload = event_callback(app_mention_event("chest pain?"))
        for body, headers in (
            signed_request(payload, "not-the-secret"),
            signed_request(payload, SECRET, timestamp=int(time.time()) - 3600),
            (signed_request(payload, SECRET)[0], {"Content-Type": "application/json"}),
        ):
            assert (await bot.post(body, headers))[0] == 401
        async with bot.http.get(f"{bot.base_url}/healthz") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
        await bot.idle()
    assert not scripted_engine.requests and not bot.slack.messages


# ---- long texts, failures, rate limits, shutdown ----------------------------------------------

LONG_ANSWER = "\n\n".join(
    [
        f"**Point {n}.** 发热是机体对感染的常见反应。需要结合病史判断。 Fever is common." * 3
        for n in range(12)
    ]
    + [
        "```python\n"
        + "\n".join(f"dose_{n} = weight_kg * {n} < 4000  # 毫克" for n in range(150))
        + "\n```"
    ]
    + [
        f"Paragraph {n}: 请及时就医。 See [the guide](https://example.org/g?a={n}&b=2)."
        for n in range(20)
    ]
)


async def test_a_long_answer_is_split_into_whole_messages() -> None:
    text = f"## Thinking\n\nShort.\n\n## Final Response\n\n{LONG_ANSWER}"
    async with scripted(lambda q: chunked(text)) as engine, running(engine) as bot:
        question = await bot.mention("doses?")
        await bot.idle()

    *answer, thinking = bot.bot_messages("C1", question)
    assert len(answer) >= 4 and thinking.text.startswith(THINKING_MARK)
    for part in answer:
        assert utf8_size(part.text) <= LIMIT
        assert sum(line.strip().startswith(FENCE) for line in part.text.split("\n")) % 2 == 0
        assert part.blocks and part.blocks[0] == {"type": "markdown", "text": part.text}

    def content(text: str) -> list[str]:
        return [line for line in text.split("\n") if line.strip() and not line.startswith(FENCE)]

    expected = safe_markdown(f"{LONG_ANSWER}\n\n{DISCLAIMER}")
    assert content("\n".join(part.text for part in answer)) == content(expected)
    assert "[the guide](https://example.org/g?a=3&amp;b=2)" in expected
    assert "**Point 0.**" in answer[0].text and "&lt; 4000" in expected


async def test_long_thinking_goes_up_as_a_file_and_stays_out_of_history() -> None:
    thinking = "\n\n".join(f"Step {n}: 考虑鉴别诊断 and rule things out." * 8 for n in range(60))
    text = f"## Thinking\n\n{thinking}\n\n## Final Response\n\nProbably viral."
    async with scripted(lambda q: chunked(text, 400)) as engine, running(engine) as bot:
        question = await bot.mention("cough?")
        await bot.idle()
        answer, upload = bot.bot_messages("C1", question)
        follow_up = bot.slack.add_message("C1", "and then?", thread_ts=question)
        await bot.event(message_event("and then?", ts=follow_up, thread_ts=question))
        await bot.idle()

    first, second = bot.slack.files.values()  # one per answer
    assert first.content == second.content == thinking.encode()
    assert first.thread_ts == second.thread_ts == question
    assert upload.files == [first.id] and answer.text.startswith("Probably viral.")
    assert engine.requests[1].request.messages == (
        Message("user", "cough?"),
        Message("assistant", "Probably viral."),
        Message("user", "and then?"),
    )


async def test_an_engine_failure_edits_the_placeholder() -> None:
    script = chunked("## Thinking\n\nHmm", 5, fail_at=2)
    async with scripted(lambda q: script) as engine, running(engine) as bot:
        question = await bot.mention("rash?")
        await bot.idle()

    [placeholder] = bot.bot_messages("C1", question)
    assert placeholder.text.startswith(f"{FAIL_MARK} Sorry, something went wrong")


async def test_a_rate_limited_edit_is_retried_and_the_answer_arrives(scripted_engine) -> None:
    async with running(scripted_engine) as bot:
        bot.slack.fail_next("chat.update", status=429, retry_after=0)
        question = await bot.mention("fever?")
        await bot.idle()

    assert len(bot.slack.calls_to("chat.update")) >= 2
    assert final_text(bot, "C1", question).startswith("Answer to: fever?")


async def test_stopping_tells_the_asker_of_an_answer_in_flight() -> None:
    script = chunked("## Thinking\n\nHmm, let me see", 5, stall_at=3)
    async with scripted(lambda q: script) as e, running(e, stop_grace=0.1) as bot:
        question = await bot.mention("rash?")
        await until(lambda: e.requests and bot.bot_messages("C1", question))
        await bot.adapter.stop()
        assert bot.adapter.in_flight == 0

    assert final_text(bot, "C1", question) == f"{FAIL_MARK} {texts.CUT_SHORT}"
    assert e.requests[0].cancelled


async def test_progress_edits_are_throttled_and_the_latest_wins() -> None:
    interval = 0.3
    async with FakeSlack() as slack:
        client = web_client(options(slack, "http"), retries=False)
        outbox = Outbox("slack", limits.budget(), limits.classify)
        delivery = SlackDelivery(outbox, client, ReplyStyle(edit_interval=interval))
        reply = delivery.reply("C1", "1.000001")
        reply.start()
        await until(lambda: slack.messages)
        started = time.monotonic()
        for n in range(1, 31):
            await reply.progress(Progress("thinking", tokens=n, elapsed=1))
            await asyncio.sleep(0.02)
        await reply.progress(Progress("waiting", position=2))
        await reply.progress(Progress("waiting", position=1))  # held back, then shown
        await until(lambda: "next in line" in slack.messages[0].text)
        elapsed = time.monotonic() - started
        await reply.fail("stopped")  # the final text is never held back, not even right after

    *progress, final = [call.time for call in slack.calls_to("chat.update")]
    assert 2 <= len(progress) <= elapsed / interval + 1
    assert all(b - a >= interval - 0.05 for a, b in itertools.pairwise(progress))
    assert final - progress[-1] < interval
    assert slack.messages[0].text == f"{FAIL_MARK} stopped"


# ---- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("## Diagnosis", "*Diagnosis*"),
        ("### **Bold** heading ###", "*Bold heading*"),
        ("**Fever** is *common* and ~~rare~~", "*Fever* is _common_ and ~rare~"),
        ("- one\n  * two\n+ three", "• one\n  • two\n• three"),
        ("1. first", "1. first"),
        (
            "see [NICE](https://nice.org.uk/x?a=1&b=2)",
            "see <https://nice.org.uk/x?a=1&amp;b=2|NICE>",
        ),
        ("`**x** < y` and **z**", "`**x** &lt; y` and *z*"),
        ("```python\nx = 2 * 3 * 4  # **no**\n```", "```\nx = 2 * 3 * 4  # **no**\n```"),
        ("<!channel> a < b & c", "&lt;!channel&gt; a &lt; b &amp; c"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("---", "──────────"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_thread_history_keeps_questions_and_final_answers_only() -> None:
    bot = Identity(BOT_USER_ID, BOT_ID)
    ours = {"user": BOT_USER_ID, "bot_id": BOT_ID}

    def message(ts: int, text: str, **fields: Any) -> dict[str, Any]:
        return {"ts": f"1700000000.{ts:06d}", "text": text, **fields}

    replies = [
        message(1, asked_text("U1", "dose <5 mg?"), **ours),
        message(2, "Yes &amp; no.", **ours),
        message(3, f"Part two.\n\n{to_mrkdwn(DISCLAIMER)}", **ours),
        message(4, f"{THINKING_MARK} *Thinking*\nhmm", **ours),
        message(5, f"{THINKING_MARK} *Thinking* (long, so attached as a file)", files=[{}], **ours),
        message(6, f"<@{BOT_USER_ID}> and for children?", user="U2"),
        message(7, "me too", user="U3"),
        message(8, "note", bot_id="B9", subtype="bot_message"),
        message(9, f"{FAIL_MARK} Sorry", **ours),
        message(10, f"{PROGRESS_MARK} Thinking…", **ours),
        message(11, "the current question", user="U2"),
        message(12, "a later reply", user="U2"),
    ]

    history = thread_history(replies, "1700000000.000011", bot, to_mrkdwn(DISCLAIMER))

    assert history == (
        Message("user", "dose <5 mg?"),
        Message("assistant", "Yes & no.\n\nPart two."),
        Message("user", "and for children?\n\nme too"),
    )


def test_manifest_asks_for_what_the_adapter_uses() -> None:
    manifest = yaml.safe_load(Path(__file__).parents[1].joinpath("slack/manifest.yml").read_text())
    settings_ = manifest["settings"]
    assert settings_["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/huatuo"]
    assert set(settings_["event_subscriptions"]["bot_events"]) == {
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "reaction_added",
        "reaction_removed",
        "app_home_opened",
        "assistant_thread_started",
    }
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
        "chat:write",
        "files:write",
        "commands",
        "reactions:read",
        "usergroups:read",
        "assistant:write",
    }


# ---- the built-in model, through both transports ----------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_builtin_model_end_to_end(local_engine, slowness: float, mode: Mode) -> None:
    async with running(local_engine, mode) as bot:
        question = await bot.mention("What is a fever?")
        await bot.idle(timeout=120 * slowness)  # about 1 s on an idle 2-core machine

    [answer] = bot.bot_messages("C1", question)  # the demo model writes no thinking
    assert answer.edited_ts and answer.text.endswith(DISCLAIMER)
    assert not answer.text.startswith((PROGRESS_MARK, FAIL_MARK))
    assert len(answer.text) > len(DISCLAIMER) + 10


@pytest.mark.model
async def test_builtin_model_given_the_thinking_header_and_a_budget_shows_both(
    thinking_engine, slowness: float
) -> None:
    sampling = SamplingParams(max_new_tokens=40, temperature=0.0, thinking_budget=16)
    metrics = Metrics(thinking_engine)
    async with running(thinking_engine, sampling=sampling, metrics=metrics) as bot:
        question = await bot.mention("What is a fever?")
        await bot.idle(timeout=120 * slowness)  # about 1 s on an idle 2-core machine

    answer, thinking = bot.bot_messages("C1", question)
    assert answer.thread_ts == thinking.thread_ts == question
    assert answer.text.endswith(DISCLAIMER) and CAPPED in answer.text
    assert thinking.text.startswith(THINKING_MARK) and "fever" in thinking.text.lower()
    shown = answer.text + thinking.text
    assert "## Thinking" not in shown and "Final Response" not in shown, "headers are parsed"
    slack = {"platform": "slack"}
    assert metrics.registry.get_sample_value("huatuo_thinking_capped_total", slack) == 1
