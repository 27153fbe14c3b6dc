"""Live answers under the platforms' real limits: how soon people see the model at work.

The real adapters answer through the fake Slack and fake Discord, which enforce the documented
limits at their own pace; a scripted engine writes HuatuoGPT-o1's format at a steady pace (about
30 tokens a second per answer, as one GPU stream of an 8B model; a 300-token thinking then a
150-token final response). For one answer, and for 16 asked at once in one channel: the seconds
from the answer's first token to the platform taking the first write that shows its thinking, and
its first answer words; and the writes each answer cost. Writes bench/results/live.json and the
table between the `bench:live` markers in README.md.

    python -m bench.live [--no-readme]   # from the repo root
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.readme import write_section
from inference.scripted import Script, ScriptedEngine
from tests.harness.crowd import Finished

RESULTS = Path(__file__).parent / "results" / "live.json"
PACE = 1 / 30  # seconds per token
THINKING_WORDS, ANSWER_WORDS = 300, 150


def script(question: str) -> Script:
    """One word per token; the answer's first line names the question."""
    thinking = " ".join(f"reasoning{n}" for n in range(THINKING_WORDS))
    answer = " ".join(f"point{n}" for n in range(ANSWER_WORDS))
    text = f"## Thinking\n\n{thinking}\n\n## Final Response\n\nAnswer to: {question}\n\n{answer}"
    return Script(tuple(word + " " for word in text.split(" ")))


def first(shown: list[tuple[float, str]], shows: Callable[[str], bool]) -> float | None:
    """When the platform first took a write (time, text) that `shows`."""
    return min((at for at, text in shown if shows(text)), default=None)


async def slack(askers: int) -> dict[str, Any]:
    from bot.slack import limits
    from bot.slack.reply import THINKING_MARK
    from tests.fakes.slack import BOT_USER_ID, SlackLimits, app_mention_event
    from tests.harness.slack import running

    tokens, engine = Finished(), ScriptedEngine(script, step_delay=PACE, max_batch=16)
    await engine.start()
    try:
        async with running(
            engine, slack_limits=SlackLimits(), budget=limits.budget(), metrics=tokens
        ) as bot:
            asked = {}
            for n in range(askers):
                text, user = f"question {n}", f"U{n:03d}"
                ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}", user=user)
                asked[text] = ts
                await bot.event(app_mention_event(text, ts=ts, user=user))
            await bot.idle(timeout=600)
            calls = [
                c
                for c in bot.slack.calls
                if c.method in ("chat.postMessage", "chat.update", "chat.delete") and c.status
            ]
            rows = []
            for text, ts in asked.items():
                bot_ts = {m.ts for m in bot.bot_messages("C1", ts)}
                mine = [
                    c
                    for c in calls
                    if c.params.get("thread_ts") == ts or c.params.get("ts") in bot_ts
                ]
                shown = [(c.time, c.params.get("text", "")) for c in mine if c.status == 200]
                thinking = first(shown, lambda t: t.startswith(THINKING_MARK))
                answer = first(shown, lambda t, text=text: t.startswith(f"Answer to: {text}\n"))
                seen = first(shown, lambda t: True)
                rows.append(_row(tokens.first_token[text], seen, thinking, answer, mine))
            return _summary(rows)
    finally:
        await engine.close(grace=0)


async def discord(askers: int) -> dict[str, Any]:
    from bot.discord import limits
    from tests.fakes.discord import DiscordLimits, FakeDiscord
    from tests.harness.discord import replies, serving
    from tests.harness.polling import until

    fake = FakeDiscord(limits=DiscordLimits())
    await fake.start()
    tokens, engine = Finished(), ScriptedEngine(script, step_delay=PACE, max_batch=16)
    await engine.start()
    try:
        async with serving(fake, engine, metrics=tokens, budget=limits.budget()) as adapter:
            asked = {}
            for n in range(askers):
                person = fake.make_user(f"learner{n}")
                text = f"question {n}"
                asked[text] = await fake.dispatch_message(text, author=person, mentions_bot=True)
            await until(lambda: all(replies(fake, m) for m in asked.values()), timeout=600)
            await until(lambda: adapter.in_flight == 0, timeout=600)
            rows = []
            taken = [c for c in fake.calls if c.method in ("POST", "PATCH") and c.status == 200]
            for text, message in asked.items():
                shown_as = {m["id"] for m in replies(fake, message)}
                threads = [t.channel["id"] for t in fake.threads if t.starter["id"] in shown_as]
                inside = tuple(f"/channels/{t}/" for t in threads)
                own = tuple(f"/messages/{m}" for m in shown_as)
                mine = [
                    c
                    for c in fake.calls
                    if c.method in ("POST", "PATCH", "DELETE")
                    and (c.path.startswith(inside) or c.path.endswith(own))
                ]
                mine += [None] * len(shown_as)  # their own posts, made in the channel
                thinking = first(
                    [
                        (c.at, c.json.get("content") or "")
                        for c in taken
                        if c.path.startswith(inside)
                    ],
                    lambda t: t.startswith("**Thinking"),
                )
                answer = first(
                    [(c.at, (c.json or {}).get("content") or "") for c in taken],
                    lambda t, text=text: t.startswith(f"Answer to: {text}\n"),
                )
                replying = [c.at for c in taken if _replies_to(c, message["id"])]
                seen = min(replying, default=None)
                rows.append(_row(tokens.first_token[text], seen, thinking, answer, mine))
            return _summary(rows)
    finally:
        await engine.close(grace=0)
        await fake.stop()


def _replies_to(call: Any, message_id: str) -> bool:
    """A Discord post replying to the message `message_id` (a placeholder or an answer part)."""
    reference = (call.json or {}).get("message_reference") or {}
    return call.method == "POST" and str(reference.get("message_id")) == message_id


def _row(
    first_token: float,
    seen_at: float | None,
    thinking_at: float | None,
    answer_at: float | None,
    writes: list[Any],
) -> dict[str, float]:
    """One answer: when the asker first saw a message, its thinking and its answer words, and
    its writes."""
    assert seen_at is not None and thinking_at is not None and answer_at is not None
    return {
        "seen_s": seen_at - first_token,
        "thinking_s": thinking_at - first_token,
        "answer_s": answer_at - first_token,
        "writes": len(writes),
        "rate_limited": sum(c is not None and c.status == 429 for c in writes),
    }


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 2)

    return {
        "askers": len(rows),
        "first_message_median_s": median("seen_s"),
        "first_message_worst_s": round(max(r["seen_s"] for r in rows), 2),
        "first_thinking_median_s": median("thinking_s"),
        "first_thinking_worst_s": round(max(r["thinking_s"] for r in rows), 2),
        "first_answer_median_s": median("answer_s"),
        "first_answer_worst_s": round(max(r["answer_s"] for r in rows), 2),
        "writes_per_answer": round(statistics.mean(r["writes"] for r in rows), 1),
        "rate_limited_429s": sum(int(r["rate_limited"]) for r in rows),
    }


async def run() -> dict[str, Any]:
    scenarios = {}
    for name, measure in (("Slack", slack), ("Discord", discord)):
        for askers in (1, 16):
            scenarios[f"{name}, {askers}"] = result = await measure(askers)
            print(name, askers, json.dumps(result), flush=True)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "tokens_per_second": round(1 / PACE),
        "answer_starts_at_token": THINKING_WORDS + 4,
        "scenarios": scenarios,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| Platform, answers at once | first message, median | worst | first thinking shown, "
        "median | worst | first answer words shown, median | worst | writes per answer | 429s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["scenarios"].items():
        lines.append(
            f"| {name} | {r['first_message_median_s']:.2f} s | {r['first_message_worst_s']:.2f} s "
            f"| {r['first_thinking_median_s']:.1f} s | {r['first_thinking_worst_s']:.1f}"
            f" s | {r['first_answer_median_s']:.1f} s | {r['first_answer_worst_s']:.1f} s | "
            f"{r['writes_per_answer']:.0f} | {r['rate_limited_429s']} |"
        )
    starts = results["answer_starts_at_token"] / results["tokens_per_second"]
    lines += [
        "",
        "Seconds after the answer's first token, with the platforms' limits enforced at their own "
        f"pace and a model writing {results['tokens_per_second']} tokens a second per answer "
        f"(its final response starts {starts:.0f} s in, so about {starts:.0f} s is the floor "
        "for the first answer words). The first message is usually the placeholder (negative: "
        "posted before the model's first token). Writes per answer: every post, edit and "
        f"delete, the placeholder's included. Measured {results['date']} ({results['machine']}); "
        "`make bench` reruns it.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = parser.parse_args()
    results = asyncio.run(run())
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_readme:
        write_section("live", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
