"""One question's reply on Discord: placeholder, throttled progress, answer, thinking, errors."""

from __future__ import annotations

import io
import logging
import math
import time

import discord

from bot.core import texts
from bot.core.events import Answer, Progress
from bot.core.splitting import split_text
from bot.discord.outbox import MESSAGE_LIMIT, NOTICE_MARK, Outbox, Post

log = logging.getLogger(__name__)

PLACEHOLDER = "Thinking…"
EDIT_INTERVAL = 1.0  # seconds between progress edits of one message
THINKING_MESSAGES = 4  # longer thinking is attached as a file instead
THREAD_NAME_LIMIT = 100


class DiscordReply:
    """The `bot.core.adapter.Reply` of one Discord question, on top of an `Outbox`."""

    def __init__(self, outbox: Outbox, question: str, *, disclaimer: str, request_id: str) -> None:
        self.outbox = outbox
        self.question = question
        self.disclaimer = disclaimer
        self.request_id = request_id
        self._last_edit = -math.inf
        self.delivered: Answer | None = None  # once the answer is shown
        self.answer_messages: list[discord.Message] = []  # the messages showing it

    async def show_placeholder(self) -> None:
        """Post "Thinking…" at once; a failure is logged, and the answer is posted fresh later."""
        started = time.monotonic()
        try:
            await self.outbox.edit(PLACEHOLDER)
        except discord.HTTPException as exc:
            log.warning("request %s: placeholder not posted (HTTP %s)", self.request_id, exc.status)
            return
        log.info("request %s: placeholder in %.2f s", self.request_id, time.monotonic() - started)

    async def notice(self, text: str) -> None:
        """The notice first, then a fresh placeholder below it for the answer."""
        await self.outbox.notice(f"{NOTICE_MARK} {text}")
        await self.outbox.edit(PLACEHOLDER)

    async def progress(self, progress: Progress) -> None:
        """Edit the placeholder, at least EDIT_INTERVAL after the previous edit was done (so
        edits reach Discord that far apart even when one was slow to go out)."""
        if time.monotonic() - self._last_edit < EDIT_INTERVAL:
            return
        self._last_edit = math.inf  # no second edit while this one is on its way
        try:
            await self.outbox.edit(texts.progress_text(progress))
        finally:
            self._last_edit = time.monotonic()

    async def deliver(self, answer: Answer) -> None:
        started = time.monotonic()
        first, *rest = split_text(texts.answer_text(answer, self.disclaimer), MESSAGE_LIMIT)
        posted = [await self.outbox.edit(first)]
        for part in rest:
            posted.append(await self.outbox.add(part))
        self.answer_messages = [message for message in posted if message is not None]
        self.delivered = answer
        if answer.thinking:
            await self.outbox.aside(thread_name(self.question), thinking_posts(answer))
        log.info(
            "request %s delivered: %d answer message(s), %d + %d chars, in %.2f s",
            self.request_id,
            1 + len(rest),
            len(answer.answer),
            len(answer.thinking),
            time.monotonic() - started,
        )

    async def fail(self, message: str) -> None:
        await self.outbox.edit(message)


def thread_name(question: str) -> str:
    """1-100 characters from the question, cut at a word with an ellipsis when too long."""
    name = " ".join(question.split()) or "Question"
    if len(name) <= THREAD_NAME_LIMIT:
        return name
    cut = name[: THREAD_NAME_LIMIT - 1]
    space = cut.rfind(" ")
    if space >= THREAD_NAME_LIMIT // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def thinking_posts(answer: Answer) -> list[Post]:
    """The thinking under a bold title, split into messages, or as a .txt file when very long."""
    title = texts.thinking_title(answer)
    parts = split_text(f"**{title}**\n\n{answer.thinking}", MESSAGE_LIMIT)
    if len(parts) <= THINKING_MESSAGES:
        return [Post(part) for part in parts]
    data = f"{title}\n\n{answer.thinking}\n".encode()
    file = discord.File(io.BytesIO(data), filename="thinking.txt")
    return [Post(f"**{title}** ({len(answer.thinking):,} characters, attached)", [file])]
