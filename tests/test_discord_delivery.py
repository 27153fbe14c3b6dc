"""Discord delivery under Discord's real limits and faults: what each asker sees at the end.

The fake Discord enforces per-route buckets and the global limit (429 with `retry_after` and
`X-RateLimit-*` headers, which discord.py waits out by itself) and injects faults (503, a write
applied but its response lost, a deleted message, a redelivered MESSAGE_CREATE).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bot.core import texts
from bot.discord import adapter as adapter_module
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.fakes.discord import DiscordLimits, FakeDiscord
from tests.harness.crowd import discord_crowd
from tests.harness.discord import DISCLAIMER, FAST, JSON, replies, serving
from tests.harness.polling import until


async def test_fifty_people_ask_in_one_channel_at_once_with_limits_and_faults() -> None:
    report = await discord_crowd(50, scale=20.0, faults=0.05, seed=3)
    print(json.dumps(report.as_dict()))
    assert report.faults > 0, "the faults were not on"
    assert report.outcomes == {"answered": 50}, report
    assert report.duplicates == 0 and report.stale == 0, report
    assert len(report.delays) == 50


# ---- one fault at a time, asserting what the asker sees ---------------------------------------
def stalled(engine: ScriptedEngine) -> None:
    """Every answer held after a few chunks until the test releases the engine."""
    engine.script_for = lambda question: Script(huatuo_script(question).chunks, stall_at=3)


def assert_answered_once(fake: FakeDiscord, asked: JSON, question: str) -> JSON:
    """One answer replying to the question, its thinking once in a thread on it (or on the
    placeholder, which then says where the answer went); returns the answer."""
    mine = replies(fake, asked)
    [answer] = [m for m in mine if m["content"] == f"Answer to: {question}\n\n{DISCLAIMER}"]
    assert [m["content"] for m in mine if m is not answer] in ([], [texts.ANSWER_BELOW])
    [thread] = [t for t in fake.threads if any(t.starter is m for m in mine)]
    [thinking] = fake.channel_messages(thread.channel["id"])
    assert thinking["content"].startswith("**Thinking**")
    return answer


async def placeholder_of(fake: FakeDiscord, asked: JSON) -> JSON:
    [placeholder] = await until(lambda: replies(fake, asked))
    assert placeholder["content"].startswith("Thinking…")
    return placeholder


async def test_a_deleted_placeholder_is_replaced_by_the_answer(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    stalled(scripted_engine)
    async with serving(fake, scripted_engine) as adapter:
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        placeholder = await placeholder_of(fake, asked)
        await fake.delete_message(placeholder["channel_id"], placeholder["id"])
        scripted_engine.release.set()
        await until(lambda: adapter.in_flight == 0, timeout=60)
        assert_answered_once(fake, asked, "What causes a fever?")


async def test_a_redelivered_message_is_answered_once(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    stalled(scripted_engine)
    async with serving(fake, scripted_engine) as adapter:
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        await placeholder_of(fake, asked)
        await fake.redispatch(asked)  # while answering: no "still answering your previous…"
        scripted_engine.release.set()
        await until(lambda: adapter.in_flight == 0, timeout=60)
        await fake.redispatch(asked)  # after the answer: no second answer or thread
        await asyncio.sleep(0.2)
        assert adapter.in_flight == 0
        assert_answered_once(fake, asked, "What causes a fever?")
    assert len(scripted_engine.requests) == 1 and len(fake.threads) == 1


@pytest.mark.parametrize("fault", ["lost", 503])
async def test_a_placeholder_post_that_fails_is_neither_lost_nor_doubled(
    fake: FakeDiscord, scripted_engine: ScriptedEngine, fault: str | int
) -> None:
    async with serving(fake, scripted_engine) as adapter:
        if fault == "lost":
            fake.lose_next("POST", r"^/channels/\d+/messages$")
        else:
            fake.fail_next("POST", r"^/channels/\d+/messages$", status=503)
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        await until(lambda: fake.threads and adapter.in_flight == 0, timeout=60)
        assert_answered_once(fake, asked, "What causes a fever?")


async def test_a_progress_edit_held_back_does_not_hold_the_answer_back(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    stalled(scripted_engine)
    async with serving(fake, scripted_engine) as adapter:
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        await placeholder_of(fake, asked)
        fake.fail_next("PATCH", r"^/channels/\d+/messages/\d+$", status=429, retry_after=20)
        await until(lambda: fake.rate_limited("PATCH"))  # discord.py now waits 20 s on it
        released = time.monotonic()
        scripted_engine.release.set()
        await until(lambda: adapter.in_flight == 0, timeout=60)
        answer = assert_answered_once(fake, asked, "What causes a fever?")
    [shown] = [
        c for c in fake.calls_to("POST", r"/messages$") if c.json["content"] == answer["content"]
    ]
    assert shown.at - released < 10, "the answer waited out the edit's retry_after of 20 s"


async def test_a_conversation_that_cannot_be_read_is_said_not_answered_blind(
    fake: FakeDiscord, scripted_engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter_module, "HISTORY_PATIENCE", 1.0)
    async with serving(fake, scripted_engine) as adapter:
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        await until(lambda: fake.threads and adapter.in_flight == 0, timeout=60)
        answer = assert_answered_once(fake, asked, "What causes a fever?")
        fake.fail_next("GET", r"/messages", status=503, times=100)
        follow_up = await fake.dispatch_message(
            "What dose for him?", message_reference=answer["id"]
        )
        await until(lambda: replies(fake, follow_up), timeout=60)
        await until(lambda: adapter.in_flight == 0, timeout=60)
        [told] = replies(fake, follow_up)
    assert told["content"] == texts.HISTORY_UNREADABLE
    assert len(scripted_engine.requests) == 1  # never sent to the model without its case


async def test_ask_with_limits_and_a_lost_post_is_answered_once(
    scripted_engine: ScriptedEngine,
) -> None:
    fake = FakeDiscord(limits=DiscordLimits(scale=FAST))
    await fake.start()
    try:
        async with serving(fake, scripted_engine) as adapter:
            fake.lose_next("POST", r"^/channels/\d+/messages$")
            interaction = await fake.dispatch_interaction("ask", {"question": "What is sepsis?"})
            await until(lambda: fake.threads and adapter.in_flight == 0, timeout=60)
            original = fake.originals[interaction["token"]]
            assert_answered_once(fake, original, "What is sepsis?")
    finally:
        await fake.stop()
