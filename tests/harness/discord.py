"""The Discord adapter serving a fake Discord, checked on the way out, and what it replied."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any

from bot.config import Settings
from bot.core.admission import Admission
from bot.core.service import AnswerService
from bot.discord import DiscordAdapter, limits
from bot.discord.adapter import DiscordOptions
from inference.engine import SamplingParams
from tests.fakes.discord import FakeDiscord

PROGRESS_TEXTS = ("Thinking… (", "Writing the answer… (")
FAST = 20.0  # Discord's limits, 20 times faster: these tests are about flows, not budgets
JSON = dict[str, Any]
DISCLAIMER = Settings(_env_file=None).disclaimer
HEARTBEAT_MS = 500
# Every call that creates or edits a message: channel messages, interaction followups and edits.
SENDS = re.compile(r"^/(channels/\d+/messages(/\d+)?|webhooks/\d+/[^/]+(/messages/[^/]+)?)$")


GREEDY = SamplingParams(max_new_tokens=48, temperature=0.0)


def make_adapter(
    fake: FakeDiscord,
    engine: Any,
    admission: Admission | None = None,
    metrics: Any = None,
    sampling: SamplingParams = GREEDY,
    **kwargs: Any,
) -> DiscordAdapter:
    options = DiscordOptions(
        bot_token=fake.token,
        api_base=f"{fake.base_url}/api/v10",
        gateway_url=f"ws://127.0.0.1:{fake.port}/gateway",
        disclaimer=DISCLAIMER,
    )
    service = AnswerService(
        engine, sampling, progress_interval=0.05, admission=admission, metrics=metrics
    )
    client_kwargs = {"guild_ready_timeout": 0.05}
    kwargs.setdefault("budget", limits.budget(scale=FAST))
    return DiscordAdapter(options, service, client_kwargs=client_kwargs, **kwargs)


@asynccontextmanager
async def serving(fake: FakeDiscord, engine: Any, **kwargs: Any) -> AsyncIterator[DiscordAdapter]:
    """A started adapter; on exit it is stopped and what it sent is checked against the rules."""
    adapter = make_adapter(fake, engine, **kwargs)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()
    assert adapter.client.is_closed()
    sends = [c.json for c in fake.calls if c.method in ("POST", "PATCH") and SENDS.match(c.path)]
    responses = [c.json.get("data") or {} for c in fake.calls_to("POST", "/callback$")]
    sends += [data for data in responses if "content" in data]  # messages, not bare defers
    assert sends and all(body["allowed_mentions"] == {"parse": []} for body in sends)
    _assert_progress_throttled(fake)


def _assert_progress_throttled(fake: FakeDiscord) -> None:
    """At most one progress edit a second per message (answers and failures are not held)."""
    edits: dict[str, list[float]] = {}
    for call in fake.calls_to("PATCH", r"/messages/[^/]+$"):
        if str((call.json or {}).get("content")).startswith(PROGRESS_TEXTS):
            edits.setdefault(call.path, []).append(call.at)
    for times in edits.values():
        assert all(b - a >= 0.99 for a, b in pairwise(times))


def replies(fake: FakeDiscord, asked: JSON) -> list[JSON]:
    """The bot's messages replying to `asked` (the parts of its answer), oldest first."""
    return [
        m
        for m in fake.channel_messages(asked["channel_id"])
        if m["author"]["id"] == fake.bot_user["id"]
        and (m.get("message_reference") or {}).get("message_id") == asked["id"]
    ]


def thread_messages(fake: FakeDiscord, index: int = 0) -> list[JSON]:
    return fake.channel_messages(fake.threads[index].channel["id"]) if fake.threads else []
