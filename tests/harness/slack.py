"""The Slack adapter running on a fresh fake Slack, and a `Bot` to send it what Slack would."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from bot.core.admission import Admission
from bot.core.service import AnswerService
from bot.slack import limits
from bot.slack.adapter import EVENTS_PATH, SlackAdapter, SlackOptions
from bot.web import WebServer, create_web_app
from inference.engine import SamplingParams
from tests.fakes.slack import (
    BOT_USER_ID,
    FakeSlack,
    SlackLimits,
    app_mention_event,
    event_callback,
    signed_request,
    slash_command,
)
from tests.fakes.slack import Message as SlackMessage
from tests.harness.polling import until

SECRET = "test-signing-secret"
DISCLAIMER = "_Check with a clinician._"
FAST = 20.0  # Slack's limits, 20 times faster: these tests are about flows, not budgets
Mode = Literal["http", "socket"]


@dataclass
class Bot:
    """A running adapter on a fake Slack, and ways to send it what Slack would."""

    slack: FakeSlack
    adapter: SlackAdapter
    mode: Mode
    http: aiohttp.ClientSession
    base_url: str

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST to the events URL as Slack does; returns the status and any JSON body."""
        url = f"{self.base_url}{EVENTS_PATH}"
        async with self.http.post(url, data=body, headers=headers) as response:
            json = response.content_type == "application/json"
            return response.status, await response.json() if json else {}

    async def send(self, payload: dict[str, Any], retry: int = 0) -> float:
        """Deliver an events_api payload; returns the seconds until it was acknowledged."""
        started = time.monotonic()
        if self.mode == "socket":
            envelope = await self.slack.send_socket_event(
                "events_api", payload, retry_attempt=retry
            )
            await self.slack.wait_ack(envelope)
        else:
            body, headers = signed_request(payload, SECRET)
            if retry:
                headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "timeout"}
            assert (await self.post(body, headers))[0] == 200
        return time.monotonic() - started

    async def event(self, event: dict[str, Any]) -> None:
        await self.send(event_callback(event))

    async def mention(self, text: str) -> str:
        """A person mentions the bot in C1 (stored, then sent as app_mention); returns its ts."""
        ts = self.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}")
        await self.event(app_mention_event(text, ts=ts))
        return ts

    async def command(self, text: str, response_url: str | None = None) -> dict[str, Any]:
        """Run the slash command; returns what the ack carried ({} when nothing)."""
        url = response_url or self.slack.new_response_url()
        fields = slash_command(text, response_url=url, command=self.adapter.command)
        if self.mode == "socket":
            envelope = await self.slack.send_socket_event("slash_commands", fields)
            return (await self.slack.wait_ack(envelope)).get("payload", {})
        status, ack = await self.post(*signed_request(fields, SECRET, form=True))
        assert status == 200
        return ack

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every answer in flight is done."""
        await until(lambda: self.adapter.in_flight == 0, timeout)

    def bot_messages(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        return [m for m in self.slack.thread(channel, thread_ts) if m.user == BOT_USER_ID]


def options(slack: FakeSlack, mode: Mode) -> SlackOptions:
    return SlackOptions(
        bot_token="xoxb-test",
        app_token="xapp-1-test" if mode == "socket" else None,
        signing_secret=SECRET,
        api_url=slack.api_url.rstrip("/"),  # the adapter adds the slash back
        disclaimer=DISCLAIMER,
    )


GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


@asynccontextmanager
async def running(
    engine: Any,
    mode: Mode = "http",
    admission: Admission | None = None,
    *,
    slack_limits: SlackLimits | None = None,
    metrics: Any = None,
    sampling: SamplingParams = GREEDY,
    **adapter_options: Any,
) -> AsyncIterator[Bot]:
    """The adapter on a fresh fake Slack (enforcing `slack_limits`, if any), served by
    bot/web.py's server; stopped cleanly."""
    async with FakeSlack(limits=slack_limits) as slack, aiohttp.ClientSession() as http:
        service = AnswerService(
            engine, sampling, progress_interval=0.05, admission=admission, metrics=metrics
        )
        web_app = create_web_app()
        adapter_options.setdefault("budget", limits.budget(scale=FAST))
        adapter = SlackAdapter(options(slack, mode), service, web_app, **adapter_options)
        server = WebServer(web_app, port=0, host="127.0.0.1")
        port = await server.start()
        await adapter.start()
        try:
            yield Bot(slack, adapter, mode, http, f"http://127.0.0.1:{port}")
        finally:
            await adapter.stop()
            await server.stop()
