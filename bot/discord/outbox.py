"""Where one answer's messages go on Discord: the question's channel, or the interaction itself."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import discord

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # characters per Discord message
NO_PINGS = discord.AllowedMentions.none()  # model output must never ping anyone
NOTICE_MARK = "🚨"  # starts an emergency notice, so history can leave it out


@dataclass
class Post:
    """One message of the thinking: text and any attached file."""

    content: str
    files: list[discord.File] = field(default_factory=list)


class Outbox(Protocol):
    """The few things an answer does on Discord, whatever carries it."""

    async def edit(self, content: str) -> discord.Message:
        """Show `content` in the placeholder (posting it first if there is none yet); returns it."""

    async def notice(self, content: str) -> None:
        """Show an urgent message before the answer, which goes below it."""

    async def add(self, content: str) -> discord.Message | None:
        """Post one more part of the answer after the placeholder; returns it if it can."""

    async def aside(self, thread_name: str, posts: Sequence[Post]) -> None:
        """Post the thinking: in a new thread on the answer where possible, else after it."""


class ChannelOutbox:
    """Ordinary messages replying to the question; the thinking in a thread on the answer.

    Every answer part replies to the question and thinking messages reply to nothing: that is how
    `bot.discord.history` tells answers from thinking when it rebuilds a conversation. A notice
    replies to the question too, and starts with `NOTICE_MARK` so history can skip it.
    """

    def __init__(self, question: discord.Message) -> None:
        self.question = question
        self.placeholder: discord.Message | None = None

    async def edit(self, content: str) -> discord.Message:
        if self.placeholder is None:
            self.placeholder = await self._reply(content)
        else:
            await self.placeholder.edit(content=content, allowed_mentions=NO_PINGS)
        return self.placeholder

    async def notice(self, content: str) -> None:
        """The placeholder, if any, becomes the notice; the next edit posts a new one below."""
        placeholder, self.placeholder = self.placeholder, None
        if placeholder is not None:
            try:
                await placeholder.edit(content=content, allowed_mentions=NO_PINGS)
                return
            except discord.HTTPException as exc:
                log.warning("notice not shown in the placeholder (HTTP %s); posting it", exc.status)
        await self._reply(content)

    async def add(self, content: str) -> discord.Message:
        return await self._reply(content)

    async def aside(self, thread_name: str, posts: Sequence[Post]) -> None:
        where = await self._thread(thread_name) or self.question.channel
        for post in posts:
            await where.send(post.content, files=post.files, allowed_mentions=NO_PINGS)

    async def _thread(self, name: str) -> discord.Thread | None:
        """A thread on the answer; None in DMs and threads, or when Discord refuses one."""
        return None if self.placeholder is None else await open_thread(self.placeholder, name)

    async def _reply(self, content: str) -> discord.Message:
        reference = self.question.to_reference(fail_if_not_exists=False)
        return await self.question.channel.send(
            content, reference=reference, allowed_mentions=NO_PINGS
        )


async def open_thread(
    message: discord.Message | discord.PartialMessage, name: str
) -> discord.Thread | None:
    """A public thread on `message`; None in DMs and threads, or when Discord refuses one."""
    if not isinstance(message.channel, discord.TextChannel):
        return None
    try:
        return await message.create_thread(name=name, auto_archive_duration=1440)
    except discord.HTTPException as exc:
        log.warning("no thread (HTTP %s); posting in the channel instead", exc.status)
        return None


class InteractionOutbox:
    """Through an app command's interaction: its deferred response is the placeholder."""

    def __init__(self, interaction: discord.Interaction, *, ephemeral: bool) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral

    async def edit(self, content: str) -> discord.Message:
        return await self.interaction.edit_original_response(
            content=content, allowed_mentions=NO_PINGS
        )

    async def notice(self, content: str) -> None:
        """A followup, shown at once; the deferred response above it still becomes the answer."""
        await self._followup(Post(content))

    async def add(self, content: str) -> None:
        await self._followup(Post(content))

    async def aside(self, thread_name: str, posts: Sequence[Post]) -> None:
        for post in posts:
            await self._followup(post)

    async def _followup(self, post: Post) -> None:
        await self.interaction.followup.send(
            post.content, files=post.files, ephemeral=self.ephemeral, allowed_mentions=NO_PINGS
        )
