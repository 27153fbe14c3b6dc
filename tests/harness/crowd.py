"""A crowd asking at once, against fake platforms that enforce their limits and inject faults.

Shared by the delivery tests and `bench/delivery.py`. Each asker's conversation is read back from
the fake server at the end and classified as a person would see it: answered (one answer, its
thinking once), told (one clear failure), or lost; with duplicates (any message shown twice, or a
leftover placeholder) and stale progress texts counted apart. The delay is from the moment the
engine finished the answer to the moment the platform received the write that showed it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.core.events import Question
from bot.core.service import Outcome
from inference.engine import GenerationStats
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.harness.polling import until

ANSWER = "Answer to: "  # how the scripted engine's answers start (inference/scripted.py)
SLACK_WRITES = ("chat.postMessage", "chat.update", "chat.delete", "files.completeUploadExternal")


class Finished:
    """Metrics for the AnswerService that note when each question's answer began and was ready."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}  # question text -> time.monotonic() of the last token
        self.first_token: dict[str, float] = {}  # question text -> ... of the first token

    def observe(self, question: Question, outcome: Outcome, stats: GenerationStats | None) -> None:
        if stats is not None and stats.finished_at is not None:
            self.ready[question.text] = stats.finished_at
        if stats is not None and stats.first_token_at is not None:
            self.first_token[question.text] = stats.first_token_at

    def error(self, kind: str) -> None:
        pass

    def refused(self, question: Question, kind: str) -> None:
        pass


@dataclass
class Seen:
    """What one asker sees at the end."""

    answers: int = 0
    thinking: int = 0
    failures: int = 0
    progress: int = 0  # messages still showing a placeholder or progress text
    shown_at: float | None = None  # when the platform received the write showing the answer

    @property
    def outcome(self) -> str:
        if self.answers:
            return "answered"
        return "told" if self.failures else "lost"

    @property
    def duplicates(self) -> int:
        return max(0, self.answers - 1) + max(0, self.thinking - 1) + max(0, self.failures - 1)


@dataclass
class Report:
    """The crowd's outcome, as the benchmark writes it."""

    askers: int
    seconds: float
    outcomes: dict[str, int]
    duplicates: int
    stale: int
    rate_limited: int
    faults: int
    delays: list[float] = field(repr=False)
    writes: int = 0  # calls that post, edit or delete messages

    def as_dict(self) -> dict[str, Any]:
        delays = sorted(self.delays)
        return {
            "askers": self.askers,
            "answered": self.outcomes.get("answered", 0),
            "told": self.outcomes.get("told", 0),
            "lost": self.outcomes.get("lost", 0),
            "duplicates": self.duplicates,
            "stale": self.stale,
            "rate_limited_429s": self.rate_limited,
            "faults_injected": self.faults,
            "seconds": round(self.seconds, 2),
            "delay_median_s": round(statistics.median(delays), 2) if delays else None,
            "delay_worst_s": round(delays[-1], 2) if delays else None,
        }


def report(
    seen: dict[str, Seen],
    ready: dict[str, float],
    seconds: float,
    rate_limited: int,
    faults: int,
    writes: int = 0,
) -> Report:
    """Add up what every asker (by question text) saw."""
    outcomes: dict[str, int] = {}
    for person in seen.values():
        outcomes[person.outcome] = outcomes.get(person.outcome, 0) + 1
    delays = [
        max(0.0, person.shown_at - ready[text])
        for text, person in seen.items()
        if person.shown_at is not None and text in ready
    ]
    return Report(
        askers=len(seen),
        seconds=seconds,
        outcomes=outcomes,
        duplicates=sum(p.duplicates for p in seen.values()),
        stale=sum(p.progress for p in seen.values()),
        rate_limited=rate_limited,
        faults=faults,
        delays=delays,
        writes=writes,
    )


def first_shown(writes: Iterable[tuple[float, bool, object]], first_line: str) -> float | None:
    """When the platform first took (time, taken, text) a write whose text starts with
    `first_line`; a write applied whose response was lost counts as taken."""
    return min(
        (at for at, taken, text in writes if taken and str(text).split("\n", 1)[0] == first_line),
        default=None,
    )


def engine(
    script_for: Callable[[str], Script] = huatuo_script, pace: float = 0.002
) -> ScriptedEngine:
    """An engine whose answers name their question (so each asker can find their own), writing
    one chunk per row every `pace` seconds."""
    return ScriptedEngine(script_for, step_delay=pace, max_batch=16, max_queue=128)


async def settle(done: Callable[[], bool], timeout: float) -> float:
    """Wait until `done()`; returns the seconds it took (fails after `timeout`)."""
    started = time.monotonic()
    await until(done, timeout, every=0.05)
    return time.monotonic() - started


# ---- Slack -------------------------------------------------------------------------------------
def slack_seen(bot: Any, channel: str, ts: str, text: str) -> Seen:
    """What the asker of `text` (their message `ts` in `channel`) sees in its thread."""
    from bot.slack.reply import FAIL_MARK, PROGRESS_MARK, THINKING_MARK

    seen, first_line = Seen(), f"{ANSWER}{text}"
    for message in bot.bot_messages(channel, ts):
        if message.text.split("\n", 1)[0] == first_line:
            seen.answers += 1
        elif message.text.startswith(THINKING_MARK):
            seen.thinking += 1
        elif message.text.startswith(FAIL_MARK):
            seen.failures += 1
        elif message.text.startswith(PROGRESS_MARK):
            seen.progress += 1
        else:
            raise AssertionError(f"an unexpected message for {text!r}: {message.text!r}")
    writes = bot.slack.calls_to("chat.postMessage") + bot.slack.calls_to("chat.update")
    taken = ((c.time, c.status == 200 or c.lost, c.params.get("text")) for c in writes)
    seen.shown_at = first_shown(taken, first_line)
    return seen


async def slack_crowd(
    askers: int,
    channels: int = 1,
    *,
    scale: float = 1.0,
    faults: float = 0.0,
    seed: int = 0,
    timeout: float = 600.0,
    script_for: Callable[[str], Script] = huatuo_script,
    pace: float = 0.002,
) -> Report:
    """`askers` people mention the bot at once, spread over `channels` channels, with Slack's
    limits enforced (`scale` times faster) and `faults` of the writes failing (503 or a lost
    response); what each of them sees at the end."""
    from bot.slack import limits
    from tests.fakes.slack import BOT_USER_ID, SlackLimits, app_mention_event
    from tests.harness.slack import running

    finished, scripted = Finished(), engine(script_for, pace)
    await scripted.start()
    try:
        async with running(
            scripted,
            slack_limits=SlackLimits(scale=scale),
            budget=limits.budget(scale=scale),
            metrics=finished,
        ) as bot:
            bot.slack.fault_rate(faults, seed=seed)
            asked: dict[str, tuple[str, str]] = {}
            events = []
            for n in range(askers):
                channel, user = f"C{n % channels + 1}", f"U{n:03d}"
                text = f"question {n} from {user}"
                ts = bot.slack.add_message(channel, f"<@{BOT_USER_ID}> {text}", user=user)
                asked[text] = (channel, ts)
                events.append(bot.event(app_mention_event(text, channel=channel, user=user, ts=ts)))
            started = time.monotonic()
            await asyncio.gather(*events)
            await settle(lambda: bot.adapter.in_flight == 0, timeout)
            seconds = time.monotonic() - started
            seen = {text: slack_seen(bot, *where, text) for text, where in asked.items()}
            injected = sum(bot.slack.faults_injected.values())
            writes = sum(1 for c in bot.slack.calls if c.method in SLACK_WRITES)
            limited = bot.slack.rate_limited()
            return report(seen, finished.ready, seconds, limited, injected, writes)
    finally:
        await scripted.close(grace=0)


# ---- Discord -----------------------------------------------------------------------------------
def discord_seen(fake: Any, asked: dict[str, Any], text: str) -> Seen:
    """What the asker of `text` (their message `asked`) sees: the bot's replies to it, and the
    thinking that names their question (in a thread, or in the channel)."""
    from bot.core import texts

    seen, first_line, bot = Seen(), f"{ANSWER}{text}", fake.bot_user["id"]
    progress = (texts.PLACEHOLDER, "Writing the answer…")
    for message in fake.channel_messages(asked["channel_id"]):
        if (message.get("message_reference") or {}).get("message_id") != asked["id"]:
            continue
        content = message["content"]
        if content.split("\n", 1)[0] == first_line:
            seen.answers += 1
        elif content.startswith(progress):
            seen.progress += 1
        else:
            seen.failures += 1
    seen.thinking = sum(
        1
        for channel in fake.channels
        for message in fake.channel_messages(channel)
        if message["author"]["id"] == bot
        and message["content"].startswith("**Thinking")
        and f"The question is: {text}\n" in message["content"]
    )
    writes = [c for c in fake.calls if c.method in ("POST", "PATCH")]
    taken = ((c.at, c.status == 200 or c.lost, (c.json or {}).get("content")) for c in writes)
    seen.shown_at = first_shown(taken, first_line)
    return seen


async def discord_crowd(
    askers: int,
    channels: int = 1,
    *,
    scale: float = 1.0,
    faults: float = 0.0,
    seed: int = 0,
    timeout: float = 600.0,
    script_for: Callable[[str], Script] = huatuo_script,
    pace: float = 0.002,
) -> Report:
    """`askers` people mention the bot at once over `channels` channels, with Discord's limits
    enforced (`scale` times faster) and `faults` of the message writes failing (503 or a lost
    response); what each of them sees at the end."""
    from bot.discord import limits
    from tests.fakes.discord import DiscordLimits, FakeDiscord
    from tests.harness.discord import serving

    fake = FakeDiscord(limits=DiscordLimits(scale=scale))
    await fake.start()
    places = [fake.channel_id, *(fake.add_channel(f"ward-{n}") for n in range(1, channels))]
    finished, scripted = Finished(), engine(script_for, pace)
    await scripted.start()
    try:
        budget = limits.budget(scale=scale)
        async with serving(fake, scripted, metrics=finished, budget=budget) as adapter:
            fake.fault_rate(faults, seed=seed)
            people = [fake.make_user(f"learner{n}") for n in range(askers)]
            started = time.monotonic()
            asked = {
                f"question {n}": await fake.dispatch_message(
                    f"question {n}",
                    author=person,
                    channel_id=places[n % channels],
                    mentions_bot=True,
                )
                for n, person in enumerate(people)
            }
            await settle(lambda: adapter.in_flight == 0, timeout)
            seconds = time.monotonic() - started
            fake.fault_rate(0)
            seen = {text: discord_seen(fake, message, text) for text, message in asked.items()}
            injected = sum(fake.faults_injected.values())
            writes = sum(1 for c in fake.calls if c.method in ("POST", "PATCH", "DELETE"))
            return report(seen, finished.ready, seconds, fake.rate_limited(), injected, writes)
    finally:
        await scripted.close(grace=0)
        await fake.stop()
