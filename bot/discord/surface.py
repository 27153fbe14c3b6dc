"""Where one answer's messages go on Discord: the question's channel, or an app command's
interaction. Each maps the core reply's writes (bot.core.reply) to discord.py calls.

In a channel every answer part replies to the question and thinking messages reply to nothing:
that is how `bot.discord.history` tells answers from thinking when it rebuilds a conversation. A
notice replies to the question too, and starts with `NOTICE_MARK` so history can skip it. Every
post carries a nonce that Discord enforces, so a post retried after a lost response is not
posted twice.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import secrets
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import discord

from bot.core import texts
from bot.core.events import Answer
from bot.core.links import honest_links
from bot.core.outbox import Outbox, Undeliverable, Write
from bot.core.reply import OutboxReply, Role, Send
from bot.core.splitting import split_text
from bot.discord.limits import GLOBAL, channel_bucket, webhook_bucket

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # characters per Discord message
NO_PINGS = discord.AllowedMentions.none()  # model output must never ping anyone
NOTICE_MARK = "🚨"  # starts an emergency notice, so history can leave it out
PROGRESS_INTERVAL = 1.0  # seconds between progress edits of one message, at least
THINKING_MESSAGES = 4  # longer thinking is attached as a file instead
THREAD_NAME_LIMIT = 100

Shown = discord.Message | discord.InteractionMessage | discord.WebhookMessage


@dataclass(frozen=True)
class Post:
    """One message of the thinking: text, and any attached file (name, bytes)."""

    content: str
    attachment: tuple[str, bytes] | None = None

    def files(self) -> list[discord.File]:
        """New File objects each time (discord.py closes them after sending, retries included)."""
        if self.attachment is None:
            return []
        name, data = self.attachment
        return [discord.File(io.BytesIO(data), filename=name)]


def _text(text: str, role: Role) -> str:
    return f"{NOTICE_MARK} {text}" if role == "notice" else text


def _delete(message: Any, buckets: tuple[Hashable, ...]) -> Write[object]:
    async def attempt() -> None:
        await message.delete()

    return Write("delete placeholder", attempt, buckets)


class ChannelSurface:
    """Ordinary messages replying to `question`; the thinking in a thread on the answer."""

    progress_interval = PROGRESS_INTERVAL
    detours = True

    def __init__(
        self, question: discord.Message | discord.PartialMessage, name: str, disclaimer: str
    ) -> None:
        self.question = question
        self.channel = question.channel
        self.name = name  # of the thinking's thread
        self.disclaimer = disclaimer

    def show(self, text: str, role: Role, target: discord.Message | None = None) -> Write[Any]:
        content = _text(text, role)
        if target is not None:
            return edit_write(target, content, f"edit to {role}")
        reference = self.question.to_reference(fail_if_not_exists=False)
        return post_write(self.channel, Post(content), f"post {role}", reference=reference)

    def remove(self, target: discord.Message) -> Write[object]:
        return _delete(target, (channel_bucket("delete", self.channel.id), GLOBAL))

    def answer_parts(self, answer: Answer) -> list[str]:
        return answer_parts(answer, self.disclaimer)

    async def post_thinking(self, send: Send, answer: Answer, anchor: discord.Message) -> str:
        """In a new thread on the answer where possible, else after it in the channel."""
        where = await self._thread(send, anchor) or self.channel
        posts = thinking_posts(answer)
        for post in posts:
            await send(post_write(where, post, "post thinking"))
        inside = "in a thread" if where is not self.channel else "in the channel"
        return f"in {len(posts)} message(s) {inside}"

    async def _thread(self, send: Send, anchor: discord.Message) -> discord.Thread | None:
        """A thread on the answer; None in DMs and threads, or when Discord refuses one."""
        if not isinstance(anchor.channel, discord.TextChannel):
            return None
        try:
            return await send(thread_write(anchor, self.name))
        except Undeliverable as exc:  # the thinking then goes in the channel
            log.warning("no thread for the thinking (%s); posting in the channel", exc)
            return None


class Original:
    """An interaction's own (deferred) response, which is its placeholder."""


ORIGINAL = Original()


class InteractionSurface:
    """Through an app command's interaction: its response is the placeholder, followups the rest.
    Edits and followups share one webhook budget, so an answer never detours around the response.
    """

    progress_interval = PROGRESS_INTERVAL
    detours = False

    def __init__(
        self, interaction: discord.Interaction, *, ephemeral: bool, disclaimer: str
    ) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.disclaimer = disclaimer
        self._buckets = (webhook_bucket(interaction.id), GLOBAL)

    def show(self, text: str, role: Role, target: Any = None) -> Write[Any]:
        content = _text(text, role)
        if target is ORIGINAL:

            async def attempt() -> discord.InteractionMessage:
                return await self.interaction.edit_original_response(
                    content=content, allowed_mentions=NO_PINGS
                )

            return Write(f"edit to {role}", attempt, self._buckets)
        if target is not None:
            return edit_write(target, content, f"edit to {role}", self._buckets)
        return self._followup(Post(content), f"followup {role}")

    def remove(self, target: Any) -> Write[object]:
        if target is ORIGINAL:

            async def attempt() -> None:
                await self.interaction.delete_original_response()

            return Write("delete the response", attempt, self._buckets)
        return _delete(target, self._buckets)

    def answer_parts(self, answer: Answer) -> list[str]:
        return answer_parts(answer, self.disclaimer)

    async def post_thinking(self, send: Send, answer: Answer, anchor: Any) -> str:
        posts = thinking_posts(answer)
        for post in posts:
            await send(self._followup(post, "followup thinking"))
        return f"in {len(posts)} followup(s)"

    def _followup(self, post: Post, label: str) -> Write[Any]:
        async def attempt() -> discord.WebhookMessage:
            return await self.interaction.followup.send(
                post.content,
                files=post.files(),
                ephemeral=self.ephemeral,
                allowed_mentions=NO_PINGS,
                wait=True,
            )

        return Write(label, attempt, self._buckets)


def post_write(where: Any, post: Post, label: str, **fields: Any) -> Write[discord.Message]:
    """A message in `where` (a channel or thread) with a nonce Discord enforces."""
    nonce = secrets.randbits(63)  # one per message: Discord gives a retry the first back

    async def attempt() -> discord.Message:
        return await where.send(
            post.content, files=post.files(), nonce=nonce, allowed_mentions=NO_PINGS, **fields
        )

    # Whether it landed: the same post again, which Discord answers with the first if it did.
    return Write(label, attempt, (channel_bucket("create", where.id), GLOBAL), attempt)


def edit_write(
    message: Any,
    content: str,
    label: str,
    buckets: tuple[Hashable, ...] | None = None,
    **fields: Any,
) -> Write[Any]:
    """`message` edited to `content`, spending `buckets` (default: its channel's edit route)."""

    async def attempt() -> Any:
        return await message.edit(content=content, allowed_mentions=NO_PINGS, **fields)

    buckets = buckets or (channel_bucket("edit", message.channel.id), GLOBAL)
    return Write(label, attempt, buckets)


def thread_write(
    anchor: discord.Message | discord.PartialMessage, name: str
) -> Write[discord.Thread]:
    """A public thread on `anchor` (which must be in a text channel)."""

    async def attempt() -> discord.Thread:
        return await anchor.create_thread(name=name, auto_archive_duration=1440)

    async def landed() -> discord.Thread | None:  # a thread has the id of its first message
        try:
            found = await anchor.guild.fetch_channel(anchor.id) if anchor.guild else None
        except discord.NotFound:
            return None
        return found if isinstance(found, discord.Thread) else None

    return Write(
        "open thread", attempt, (channel_bucket("thread", anchor.channel.id), GLOBAL), landed
    )


def discord_reply(
    outbox: Outbox, surface: ChannelSurface | InteractionSurface, request_id: str
) -> OutboxReply[Any]:
    """A Reply on Discord; an interaction's deferred response is its placeholder already."""
    placeholder = ORIGINAL if isinstance(surface, InteractionSurface) else None
    return OutboxReply(outbox, surface, request_id, placeholder=placeholder)


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


def answer_parts(answer: Answer, disclaimer: str) -> list[str]:
    """The answer's messages: its links kept honest (model output), split to fit."""
    shown = dataclasses.replace(answer, answer=honest_links(answer.answer))
    return split_text(texts.answer_text(shown, disclaimer), MESSAGE_LIMIT)


def thinking_posts(answer: Answer) -> list[Post]:
    """The thinking under a bold title, split into messages, or as a .txt file when very long."""
    title = texts.thinking_title(answer)
    thinking = honest_links(answer.thinking)
    parts = split_text(f"**{title}**\n\n{thinking}", MESSAGE_LIMIT)
    if len(parts) <= THINKING_MESSAGES:
        return [Post(part) for part in parts]
    data = f"{title}\n\n{answer.thinking}\n".encode()
    content = f"**{title}** ({len(answer.thinking):,} characters, attached)"
    return [Post(content, ("thinking.txt", data))]
