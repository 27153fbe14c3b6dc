"""Slack HTTP-mode ack latency while the local engine generates (design.md §6: ack within 3 s).

The real adapter serves `POST /slack/events` through bot/web.py against the fake Slack; the
built-in model answers. Eight mentions arrive at once; while their answers are generated, twenty
more signed events follow (Slack retries of those mentions, and channel chatter the bot ignores).
Each latency is from sending a signed event to its HTTP 200. Writes bench/results/slack_ack.json
and the table between the `bench:slack` markers in README.md.

    python -m bench.slack_ack_latency [--new-tokens 64] [--no-readme]   # from the repo root
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import torch

from bench.readme import write_section
from bot.config import Settings
from bot.core.service import AnswerService
from bot.slack.adapter import EVENTS_PATH, SlackAdapter, SlackOptions
from bot.web import WebServer, create_web_app
from inference.engine import SamplingParams
from inference.loading import load_model, resolve_model
from inference.local import LocalEngine
from tests.fakes.slack import (
    BOT_USER_ID,
    FakeSlack,
    app_mention_event,
    event_callback,
    message_event,
    signed_request,
)

RESULTS = Path(__file__).resolve().parent / "results/slack_ack.json"
SECRET = "bench-signing-secret"
QUESTIONS = [
    "What are the common causes of chest pain?",
    "How is type 2 diabetes diagnosed?",
    "What is the first-line treatment for hypertension?",
    "When should a fever in a child be checked by a doctor?",
    "What are the warning signs of a stroke?",
    "How does asthma differ from COPD?",
    "What causes iron deficiency anaemia?",
    "What are the symptoms of appendicitis?",
]


async def post(http: aiohttp.ClientSession, url: str, payload: dict[str, Any], retry: int = 0):
    """Send one signed event; returns the milliseconds until its HTTP 200."""
    body, headers = signed_request(payload, SECRET)
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    started = time.perf_counter()
    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 200, response.status
    return (time.perf_counter() - started) * 1000


def summary(millis: list[float]) -> dict[str, float]:
    return {
        "count": len(millis),
        "median_ms": statistics.median(millis),
        "max_ms": max(millis),
    }


async def run(new_tokens: int) -> dict[str, Any]:
    spec = resolve_model("builtin:smollm2")
    model, tokenizer = load_model(spec)
    engine = LocalEngine(spec, max_batch=16, model=model, tokenizer=tokenizer)
    await engine.start()
    async with FakeSlack() as slack, aiohttp.ClientSession() as http:
        disclaimer = Settings(_env_file=None).disclaimer  # the default footer ends every answer
        options = SlackOptions(
            "xoxb-bench", signing_secret=SECRET, api_url=slack.api_url, disclaimer=disclaimer
        )
        service = AnswerService(engine, SamplingParams(new_tokens, 0.0, 1.0))
        web_app = create_web_app()
        adapter = SlackAdapter(options, service, web_app)
        server = WebServer(web_app, port=0, host="127.0.0.1")
        url = f"http://127.0.0.1:{await server.start()}{EVENTS_PATH}"
        await adapter.start()
        try:
            await post(http, url, event_callback(message_event("warm-up chatter")))
            mentions = []
            for n, question in enumerate(QUESTIONS):  # one asker each: one in flight per person
                ts = slack.add_message("C1", f"<@{BOT_USER_ID}> {question}")
                mentions.append(event_callback(app_mention_event(question, ts=ts, user=f"U{n}")))
            started = time.perf_counter()
            first = await asyncio.gather(*(post(http, url, m) for m in mentions))
            while engine.running < len(mentions):
                await asyncio.sleep(0.01)
            later, generating = [], []
            for n in range(20):
                if n % 2:
                    payload, retry = mentions[n % len(mentions)], 1 + n // len(mentions)
                else:
                    payload, retry = event_callback(message_event(f"chatter {n}")), 0
                generating.append(engine.running)
                later.append(await post(http, url, payload, retry))
                await asyncio.sleep(0.1)
            while adapter.in_flight:
                await asyncio.sleep(0.05)
            answers = sum(
                1
                for m in mentions
                for reply in slack.thread("C1", m["event"]["ts"])[1:]
                if reply.edited_ts and reply.text.endswith(disclaimer)
            )
            return {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{torch.get_num_threads()} CPU threads, {platform.machine()}",
                "model": "builtin:smollm2",
                "new_tokens": new_tokens,
                "mentions_at_once": summary(first),
                "events_while_generating": summary(later)
                | {
                    "answers_generating_min": min(generating),
                    "answers_generating_max": max(generating),
                },
                "all": summary([*first, *later]),
                "answers_delivered": answers,
                "generation_seconds": time.perf_counter() - started,
            }
        finally:
            await adapter.stop()
            await server.stop()
            await engine.close(grace=0)


def table(results: dict[str, Any]) -> str:
    """The README table: ack times against Slack's 3 s limit."""
    rows = [
        ("8 mentions at once", results["mentions_at_once"]),
        ("20 events while 8 answers generate", results["events_while_generating"]),
    ]
    lines = [
        "| Events | median ack | worst ack | Slack's limit |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {r['median_ms']:.1f} ms | {r['max_ms']:.1f} ms | 3 s |" for name, r in rows),
        "",
        f"HTTP mode, signed events to HTTP 200, while the built-in model generated 8 answers of "
        f"{results['new_tokens']} tokens ({results['answers_delivered']} delivered). Measured "
        f"{results['date']} on {results['machine']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args.new_tokens))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if not args.no_readme:
        write_section("slack", table(results))


if __name__ == "__main__":
    main()
