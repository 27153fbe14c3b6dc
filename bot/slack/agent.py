"""Slack's agent view: suggested prompts when someone opens the bot's Messages tab or starts a
thread with it there (slack/manifest.yml's `agent_view` lists the same prompts)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.core.budget import Priority
from bot.core.outbox import Undeliverable, Write
from bot.slack.limits import method_bucket
from bot.slack.reply import SlackDelivery

log = logging.getLogger(__name__)

TITLE = "Ask about a case, a diagnosis or a treatment"
PROMPTS = (
    {
        "title": "Explain a diagnosis step by step",
        "message": "Explain step by step how to tell an acute coronary syndrome from other "
        "causes of chest pain.",
    },
    {
        "title": "Work through a case",
        "message": "A 65-year-old man has sudden breathlessness and a swollen left calf. "
        "What is the differential diagnosis, and what would you do first?",
    },
    {
        "title": "Compare treatments",
        "message": "Compare the first-line treatments for type 2 diabetes and their main risks.",
    },
    {
        "title": "Quiz me on cardiology",
        "message": "Ask me a multiple-choice question on cardiology, then explain the answer.",
    },
)
PATIENCE = 30.0  # seconds: prompts shown later than that are moot

Spawn = Callable[[Coroutine[Any, Any, None], str | None], None]


class AgentView:
    """Sets the suggested prompts; `accept(body)` is false for events to drop (retries,
    stopping), `spawn` runs the write after the event's ack."""

    def __init__(
        self, delivery: SlackDelivery, accept: Callable[[Mapping[str, Any]], object], spawn: Spawn
    ) -> None:
        self.delivery = delivery
        self.accept = accept
        self.spawn = spawn

    def listen(self, app: AsyncApp) -> None:
        app.event("app_home_opened")(self._on_home_opened)
        app.event("assistant_thread_started")(self._on_thread_started)

    async def _on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab") == "messages" and event.get("channel") and self.accept(body):
            self.spawn(self.suggest(event["channel"]), body.get("event_id"))

    async def _on_thread_started(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        thread = event.get("assistant_thread") or {}
        channel, ts = thread.get("channel_id"), thread.get("thread_ts")
        if channel and ts and self.accept(body):
            self.spawn(self.suggest(channel, ts), body.get("event_id"))

    async def suggest(self, channel: str, thread_ts: str | None = None) -> None:
        """Show the suggested prompts in a DM (its Messages tab) or one of its threads."""

        async def attempt() -> Any:
            return await self.delivery.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, title=TITLE, prompts=list(PROMPTS)
            )

        bucket = method_bucket("assistant.threads.setSuggestedPrompts")
        write = Write("suggested prompts", attempt, (bucket,))
        try:
            await self.delivery.outbox.send(write, Priority.PLACEHOLDER, patience=PATIENCE)
        except Undeliverable as exc:  # e.g. a plan without Slack's AI features
            log.info("slack: no suggested prompts in %s (%s)", channel, exc)
