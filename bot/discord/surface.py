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
import re
import secrets
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import discord

from bot.core import texts
from bot.core.events import Answer
from bot.core.links import honest_links
from bot.core.outbox import Outbox, Undeliverable, Write
from bot.core.reply import LIVE, OutboxReply, Role, Send
from bot.core.splitting import split_text
from bot.discord.limits import GLOBAL, channel_bucket, webhook_bucket

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # characters per Discord message
NO_PINGS = discord.AllowedMentions.none()  # model output must never ping anyone
NOTICE_MARK = "🚨"  # starts an emergency notice, so history can leave it out
PROGRESS_INTERVAL = 1.0  # seconds between progress edits of one message, at least
THINKING_MESSAGES = 4  # longer thinking is attached as a file instead
THREAD_NAME_LIMIT = 100
STOP_ID = r"huatuo-stop:(?P<request>[\w-]+)"

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


class StopButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=STOP_ID):
    """The Stop button under an answer being written; a click becomes a `stop_click` event."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=texts.STOP,
                style=discord.ButtonStyle.secondary,
                custom_id=f"huatuo-stop:{request_id}",
            )
        )
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[discord.ui.View],
        match: re.Match[str],
    ) -> StopButton:
        return cls(match["request"])

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.dispatch("stop_click", interaction, self.request_id)


def controls(role: Role, request_id: str) -> discord.ui.View | None:
    """The Stop button while the answer is being written (a LIVE role), else none."""
    if role not in LIVE or not request_id:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(StopButton(request_id))
    return view


def _text(text: str, role: Role) -> str:
    return f"{NOTICE_MARK} {text}" if role == "notice" else text


def _delete(message: Any, buckets: tuple[Hashable, ...]) -> Write[object]:
    async def attempt() -> None:
        await message.delete()

    return Write("delete placeholder", attempt, buckets)


class ChannelSurface:
    """Ordinary messages replying to `question`; the thinking in a thread on the answer (in a
    text channel), else after it in the same channel."""

    progress_interval = PROGRESS_INTERVAL
    detours = True
    thinking_messages = THINKING_MESSAGES

    def __init__(
        self,
        question: discord.Message | discord.PartialMessage,
        name: str,
        disclaimer: str,
        request_id: str = "",
    ) -> None:
        self.question = question
        self.channel = question.channel
        self.name = name  # of the thinking's thread
        self.disclaimer = disclaimer
        self.request_id = request_id
        self.place: Any = question.channel  # where the thinking goes

    def show(self, text: str, role: Role, target: discord.Message | None = None) -> Write[Any]:
        content, view = _text(text, role), controls(role, self.request_id)
        if target is not None:
            return edit_write(target, content, f"edit to {role}", view=view)
        reference = self.question.to_reference(fail_if_not_exists=False)
        return post_write(
            self.channel, Post(content), f"post {role}", reference=reference, **_with(view)
        )

    def remove(self, target: discord.Message) -> Write[object]:
        if isinstance(self.place, discord.Thread) and self.place.id == target.id:  # its starter
            return edit_write(target, texts.ANSWER_BELOW, "point to the answer", view=None)
        return _delete(target, (channel_bucket("delete", target.channel.id), GLOBAL))

    def answer_parts(self, answer: Answer) -> list[str]:
        return answer_parts(answer, self.disclaimer)

    def draft_parts(self, answer: str) -> list[str]:
        return draft_parts(answer)

    def thinking_parts(self, thinking: str, title: str) -> list[str]:
        return thinking_parts(thinking, title)

    async def open_thinking(self, send: Send, anchor: discord.Message) -> None:
        """A thread on `anchor` where possible (not in DMs and threads, or when refused)."""
        if not isinstance(anchor.channel, discord.TextChannel):
            return
        try:
            self.place = await send(thread_write(anchor, self.name))
        except Undeliverable as exc:  # the thinking then goes in the channel
            log.warning("no thread for the thinking (%s); posting in the channel", exc)

    def think(self, text: str, target: discord.Message | None = None) -> Write[Any]:
        if target is not None:
            return edit_write(target, text, "edit thinking")
        return post_write(self.place, Post(text), "post thinking")

    async def attach_thinking(self, send: Send, thinking: str, title: str) -> bool:
        await send(post_write(self.place, attachment(thinking, title), "attach thinking"))
        return True


class Original:
    """An interaction's own (deferred) response, which is its placeholder."""


ORIGINAL = Original()


class InteractionSurface:
    """Through an app command's interaction: its response is the placeholder, followups the rest.
    Edits and followups share one webhook budget, so an answer never detours around the response.
    """

    progress_interval = PROGRESS_INTERVAL
    detours = False
    thinking_messages = THINKING_MESSAGES

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        ephemeral: bool,
        disclaimer: str,
        request_id: str = "",
    ) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.disclaimer = disclaimer
        self.request_id = request_id
        self._buckets = (webhook_bucket(interaction.id), GLOBAL)

    def show(self, text: str, role: Role, target: Any = None) -> Write[Any]:
        content, view = _text(text, role), controls(role, self.request_id)
        if target is ORIGINAL:

            async def attempt() -> discord.InteractionMessage:
                return await self.interaction.edit_original_response(
                    content=content, allowed_mentions=NO_PINGS, view=view
                )

            return Write(f"edit to {role}", attempt, self._buckets)
        if target is not None:
            return edit_write(target, content, f"edit to {role}", self._buckets, view=view)
        return self._followup(Post(content), f"followup {role}", view)

    def remove(self, target: Any) -> Write[object]:
        if target is ORIGINAL:

            async def attempt() -> None:
                await self.interaction.delete_original_response()

            return Write("delete the response", attempt, self._buckets)
        return _delete(target, self._buckets)

    def answer_parts(self, answer: Answer) -> list[str]:
        return answer_parts(answer, self.disclaimer)

    def draft_parts(self, answer: str) -> list[str]:
        return draft_parts(answer)

    def thinking_parts(self, thinking: str, title: str) -> list[str]:
        return thinking_parts(thinking, title)

    async def open_thinking(self, send: Send, anchor: Any) -> None:
        return None  # followups after the response

    def think(self, text: str, target: Any = None) -> Write[Any]:
        if target is not None:
            return edit_write(target, text, "edit thinking", self._buckets)
        return self._followup(Post(text), "followup thinking")

    async def attach_thinking(self, send: Send, thinking: str, title: str) -> bool:
        await send(self._followup(attachment(thinking, title), "followup thinking file"))
        return True

    def _followup(self, post: Post, label: str, view: discord.ui.View | None = None) -> Write[Any]:
        async def attempt() -> discord.WebhookMessage:
            return await self.interaction.followup.send(
                post.content,
                files=post.files(),
                ephemeral=self.ephemeral,
                allowed_mentions=NO_PINGS,
                wait=True,
                **_with(view),
            )

        return Write(label, attempt, self._buckets)


def _with(view: discord.ui.View | None) -> dict[str, Any]:
    """A new message's components: a view if there is one (a post cannot take view=None)."""
    return {} if view is None else {"view": view}


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


def draft_parts(answer: str) -> list[str]:
    """The final response so far: its links kept honest (model output), split to fit."""
    return split_text(texts.draft_text(honest_links(answer)), MESSAGE_LIMIT)


def thinking_parts(thinking: str, title: str) -> list[str]:
    """The thinking under a bold title, split into messages."""
    return split_text(f"**{title}**\n\n{honest_links(thinking)}", MESSAGE_LIMIT)


def attachment(thinking: str, title: str) -> Post:
    """The whole thinking as a .txt file, for when it needs too many messages."""
    data = f"{title}\n\n{thinking}\n".encode()
    content = f"**{title}** ({len(thinking):,} characters, attached whole)"
    return Post(content, ("thinking.txt", data))


async def whisper(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer: only the person who clicked or typed the command sees it."""
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
