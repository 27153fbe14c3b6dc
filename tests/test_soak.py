"""Soak: 300 questions from 30 people through the fake Slack enforcing Slack's limits with 5 % of
writes failing, with retries, overlapping questions and a rate limit. Every question is answered
exactly once or its asker told why, and nothing is left behind: no tasks, no slots, no memory
growth in the bot's own code between two halves."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import tracemalloc
from pathlib import Path

from bot.core import texts
from bot.core.admission import Admission
from bot.slack.reply import FAIL_MARK, PROGRESS_MARK, THINKING_MARK
from inference.scripted import ScriptedEngine
from tests.fakes.slack import BOT_USER_ID, SlackLimits, app_mention_event, event_callback
from tests.harness.polling import until
from tests.harness.slack import FAST, Bot, running

PEOPLE = 30
QUESTIONS_EACH = 10
RATE_LIMIT = 8  # per person per hour: the 9th and 10th questions of someone are refused
FAULTS = 0.05  # of Slack writes fail once, with Slack's limits enforced (20 times faster)
REASONS = {
    "one at a time": texts.ONE_AT_A_TIME,
    "rate limit": "You've reached the limit of 8 questions per hour.",
    "queue full": "Sorry, too many questions are waiting",
}
OUR_CODE = [
    tracemalloc.Filter(True, f"{Path(__file__).parents[1] / package}/*")
    for package in ("bot", "inference")
]
REPORT = os.environ.get("HUATUO_SOAK_REPORT")  # where to write the figures as JSON, if set


def settled(bot: Bot, ts: str) -> bool:
    """The asker of `ts` has their answer (with its thinking) or a refusal."""
    messages = bot.bot_messages("C1", ts)
    if not messages or messages[0].text.startswith(PROGRESS_MARK):
        return False
    return messages[0].text.startswith(FAIL_MARK) or len(messages) == 2


async def ask_in_turn(
    bot: Bot, admission: Admission, person: int, rng: random.Random, sent: list[tuple]
) -> None:
    """One person's questions: mostly after the previous answer, one in four impatiently (but
    the first person of each half always waits, so reaches the rate limit); about one in ten
    is delivered twice (a Slack retry)."""
    user = f"U{person:02d}"
    for n in range(QUESTIONS_EACH):
        text = f"question {n} from {user}"
        ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}", user=user)
        payload = event_callback(app_mention_event(text, ts=ts, user=user))
        await bot.send(payload)
        if rng.random() < 0.1:
            await bot.send(payload, retry=1)  # Slack's retry of the same event
        sent.append((ts, text))
        # Most wait until the bot is done with them (their answer shown, nothing of theirs in
        # flight); the first person of each half always does, so reaches the rate limit.
        if person % (PEOPLE // 2) == 0 or rng.random() < 0.75:
            done = lambda ts=ts: settled(bot, ts) and not admission.busy("slack", user)  # noqa: E731
            await until(done, timeout=60)
        await asyncio.sleep(rng.uniform(0.0, 0.02))


def outcome(bot: Bot, ts: str, text: str) -> str:
    """What the asker of `ts` got: "answered", or the refusal kind; fails on anything else."""
    messages = bot.bot_messages("C1", ts)
    first = messages[0].text
    if first.startswith(f"Answer to: {text}"):
        assert [m.text.startswith(THINKING_MARK) for m in messages] == [False, True], first
        return "answered"
    assert len(messages) == 1 and first.startswith(FAIL_MARK), [m.text for m in messages]
    kinds = [kind for kind, reason in REASONS.items() if reason in first]
    assert len(kinds) == 1, first
    return kinds[0]


async def run_half(bot: Bot, admission: Admission, people: range, seed: int) -> dict[str, int]:
    sent: list[tuple[str, str]] = []
    rng = random.Random(seed)
    await asyncio.gather(*(ask_in_turn(bot, admission, p, rng, sent) for p in people))
    await bot.idle(timeout=60)
    counts: dict[str, int] = {}
    for ts, text in sent:
        kind = outcome(bot, ts, text)
        counts[kind] = counts.get(kind, 0) + 1
    assert sum(counts.values()) == len(people) * QUESTIONS_EACH
    return counts


def our_tasks() -> int:
    """Tasks running the bot's own code (answers, progress edits), not the HTTP servers' ones."""
    roots = tuple(str(Path(__file__).parents[1] / package) for package in ("bot", "inference"))
    return sum(
        1
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "cr_code", None) is not None
        and task.get_coro().cr_code.co_filename.startswith(roots)
    )


def our_memory() -> int:
    gc.collect()
    return sum(
        s.size for s in tracemalloc.take_snapshot().filter_traces(OUR_CODE).statistics("filename")
    )


async def test_soak_300_questions_from_30_people() -> None:
    engine = ScriptedEngine(step_delay=0.002, max_batch=8, max_queue=16)
    await engine.start()
    admission = Admission(rate_limit=RATE_LIMIT, rate_window=3600)
    tracemalloc.start(1)
    try:
        async with running(
            engine, admission=admission, slack_limits=SlackLimits(scale=FAST)
        ) as bot:
            bot.slack.fault_rate(FAULTS, seed=7)  # writes that fail: 503s and lost responses
            tasks_before = len(asyncio.all_tasks())
            first = await run_half(bot, admission, range(PEOPLE // 2), seed=1)
            engine.requests.clear()  # the scripted engine's record for tests, not the bot's
            after_first = our_memory()
            second = await run_half(bot, admission, range(PEOPLE // 2, PEOPLE), seed=2)
            engine.requests.clear()
            after_second = our_memory()
            ours = await until(lambda: our_tasks() == 0 and [0], timeout=5)
            tasks_after = len(asyncio.all_tasks())  # + keep-alive connections of the HTTP pools
            assert bot.adapter.in_flight == 0
            assert admission.in_flight == 0
            assert engine.running == 0
    finally:
        tracemalloc.stop()
        await engine.close(grace=0)

    totals = {k: first.get(k, 0) + second.get(k, 0) for k in {*first, *second}}
    growth = after_second - after_first
    figures = {
        "questions": PEOPLE * QUESTIONS_EACH,
        "outcomes": totals,
        "tasks_before": tasks_before,
        "tasks_after": tasks_after,
        "bot_tasks_after": ours[0],
        "bot_memory_after_first_half_kib": round(after_first / 1024, 1),
        "bot_memory_growth_second_half_kib": round(growth / 1024, 1),
        "rate_limiter_people_tracked": admission.limiter.tracked,
    }
    print(json.dumps(figures))
    if REPORT:
        Path(REPORT).write_text(json.dumps(figures, indent=2) + "\n")
    assert totals["answered"] >= 150, totals  # about 230 here: the patient are all answered
    assert totals.get("rate limit", 0) >= 4, "two patient people have questions 9 and 10 refused"
    # What the second half adds: the retry memory of event ids (bounded at 10,000) and the rate
    # limiter's times of 15 more people (forgotten after the window); nothing per answer.
    assert growth < 64 * 1024, figures
