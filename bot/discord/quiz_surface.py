"""The quiz's messages on Discord: the quiz with its buttons, its count, closing it, the reveal in
a thread, and private answers to clicks (the quiz flow's Discord surface, bot.quiz.flow).

The buttons are `QuizButton` dynamic items: discord.py rebuilds one from the custom id of any
click (`huatuo-quiz:<quiz id>:<letter or reveal>`), so clicks are handled whatever became of the
view that sent them. A case too long for one message goes in messages of its own above. In DMs
and threads (no new thread for the reveal), the model's answer replies to the quiz message
itself: that is how `bot.discord.history` finds the case.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import discord

from bot.core.outbox import Outbox, Undeliverable
from bot.core.reply import OutboxReply
from bot.core.splitting import split_text
from bot.discord.surface import (
    MESSAGE_LIMIT,
    NO_PINGS,
    ChannelSurface,
    Post,
    discord_reply,
    edit_write,
    post_write,
    thread_name,
    thread_write,
    whisper,
)
from bot.quiz import texts
from bot.quiz.flow import CannotPost
from bot.quiz.item import QuizItem
from bot.quiz.session import Quiz, Reveal

log = logging.getLogger(__name__)

REVEAL = "reveal"
TEMPLATE = r"huatuo-quiz:(?P<quiz>[0-9a-f]{12}):(?P<choice>[A-Z]|reveal)"
COUNT_ROOM = 40  # characters kept free in the quiz message for the "N answers so far" line
CASE_ABOVE = "_(The case is in the message above.)_"


class QuizButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=TEMPLATE):
    """An option or Reveal button of a quiz; a click becomes a `quiz_click` client event."""

    def __init__(self, quiz_id: str, choice: str) -> None:
        reveal = choice == REVEAL
        super().__init__(
            discord.ui.Button(
                label="Reveal" if reveal else choice,
                style=discord.ButtonStyle.primary if reveal else discord.ButtonStyle.secondary,
                custom_id=f"huatuo-quiz:{quiz_id}:{choice}",
            )
        )
        self.quiz_id, self.choice = quiz_id, choice

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[discord.ui.View],
        match: re.Match[str],
    ) -> QuizButton:
        return cls(match["quiz"], match["choice"])

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.dispatch("quiz_click", interaction, self.quiz_id, self.choice)


@dataclass(frozen=True)
class DiscordVia:
    """Where a command or click came from (a channel that takes messages), and its interaction
    (None for a case of the day), which is answered first and privately."""

    channel: Any
    interaction: discord.Interaction | None = None


@dataclass
class _Posted:
    """An open quiz's message with the buttons, and what it shows (count aside)."""

    message: discord.PartialMessage
    item: QuizItem  # the item as shown there (a long case goes in a message of its own above)
    text: str


class DiscordQuizSurface:
    """The quiz flow's Discord surface: messages through the outbox, or a click's response."""

    cannot_post = (
        "Sorry, I can't post a quiz here. Please check that I may send messages in this channel."
    )

    def __init__(self, outbox: Outbox, disclaimer: str, count_interval: float) -> None:
        self.outbox = outbox  # the model's explanation goes out like any answer
        self.disclaimer = disclaimer
        self.count_interval = count_interval  # seconds between edits of the count, at least
        self._posted: dict[str, _Posted] = {}  # open quizzes by id

    def mention(self, user: str) -> str:
        return f"<@{user}>"

    async def post(self, quiz: Quiz, seconds: float, via: DiscordVia | None) -> str:
        """The quiz (through the interaction, if any), a long case in messages above it."""
        assert via is not None
        revealer = self.mention(quiz.starter) if quiz.starter else None
        lead, item, text = _layout(quiz, seconds, revealer)
        view = discord.ui.View(timeout=None)
        for choice in [*quiz.item.options, *([REVEAL] if quiz.revealable else [])]:
            view.add_item(QuizButton(quiz.id, choice))
        try:
            for part in lead:
                await self._send(via, part)
            message_id = await self._send(via, _with_count(text, 0), view)
        except (discord.HTTPException, Undeliverable) as exc:
            raise CannotPost(str(exc)) from exc
        self._posted[quiz.id] = _Posted(via.channel.get_partial_message(message_id), item, text)
        return str(message_id)

    async def _send(self, via: DiscordVia, text: str, view: discord.ui.View | None = None) -> int:
        """One message: the interaction's response (within its 3 s, directly), then its
        followups; or in the channel, through the outbox."""
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        if via.interaction is None:
            return (await self.outbox.send(post_write(via.channel, Post(text), "quiz", **extra))).id
        if via.interaction.response.is_done():
            kwargs = {"wait": True, "allowed_mentions": NO_PINGS, **extra}
            return (await via.interaction.followup.send(text, **kwargs)).id
        sent = await via.interaction.response.send_message(text, allowed_mentions=NO_PINGS, **extra)
        assert sent is not None and sent.message_id is not None
        return sent.message_id

    def show_count(self, quiz: Quiz) -> None:
        posted = self._posted.get(quiz.id)
        if posted is not None and not quiz.revealed:
            edit = edit_write(posted.message, _with_count(posted.text, quiz.answered), "quiz count")
            self.outbox.offer(("quiz", quiz.id), edit, self.count_interval)

    async def close(self, reveal: Reveal, via: DiscordVia | None) -> bool:
        quiz = reveal.quiz
        await self.outbox.settle(("quiz", quiz.id))  # no count edit after the closed message
        posted = self._posted.get(quiz.id)
        if posted is None:
            return False
        closed = texts.closed_question_text(posted.item, quiz.title, reveal.tally.total)
        interaction = via.interaction if via is not None else None
        try:
            if interaction is not None:  # the click's response: within Discord's 3 s, directly
                await interaction.response.edit_message(
                    content=closed, view=None, allowed_mentions=NO_PINGS
                )
            else:
                await self.outbox.send(edit_write(posted.message, closed, "close quiz", view=None))
        except (discord.HTTPException, Undeliverable) as exc:  # e.g. deleted: the answer follows
            log.warning("discord: quiz %s message not closed (%s)", quiz.id, exc)
        return True

    async def post_reveal(self, reveal: Reveal) -> OutboxReply[Any] | None:
        """The answer and the tally in a thread on the quiz (in DMs and threads: below it); the
        model's answer replies to them there, or to the quiz itself, for history to find it."""
        quiz, posted = reveal.quiz, self._posted.pop(reveal.quiz.id)
        name = thread_name(f"{quiz.title}: {quiz.item.question}")
        thread = await self._thread(posted.message, name)
        shown = Post(texts.reveal_text(reveal))
        try:
            tally = await self.outbox.send(
                post_write(thread or posted.message.channel, shown, "reveal")
            )
        except Undeliverable as exc:
            log.error("discord: quiz %s answer not posted (%s)", quiz.id, exc)
            return None
        surface = ChannelSurface(tally if thread else posted.message, name, self.disclaimer)
        return discord_reply(self.outbox, surface, f"quiz-{quiz.id}")

    async def _thread(self, message: discord.PartialMessage, name: str) -> discord.Thread | None:
        """A thread on the quiz for its reveal; None in DMs and threads, or if Discord refuses."""
        if not isinstance(message.channel, discord.TextChannel):
            return None
        try:
            return await self.outbox.send(thread_write(message, name))
        except Undeliverable as exc:
            log.warning("discord: no thread for the reveal (%s); posting in the channel", exc)
            return None

    async def whisper(self, via: DiscordVia, text: str, mentions: Sequence[str] = ()) -> None:
        """An ephemeral answer to the interaction (none once it is answered: a quiz whose case
        went out, but not its buttons, says no more)."""
        assert via.interaction is not None
        if not via.interaction.response.is_done():
            await whisper(via.interaction, text)

    async def ignore(self, via: DiscordVia) -> None:
        assert via.interaction is not None
        await via.interaction.response.defer()


def _layout(quiz: Quiz, seconds: float, revealer: str | None) -> tuple[list[str], QuizItem, str]:
    """The messages to post before the one with the buttons (a case too long to share it), and
    the item and text that one shows."""
    item = quiz.item
    text = texts.question_text(item, quiz.title, seconds, revealer)
    if len(text) + COUNT_ROOM <= MESSAGE_LIMIT:
        return [], item, text
    lead = split_text(f"**{quiz.title}**\n\n{item.question.strip()}", MESSAGE_LIMIT)
    shown = dataclasses.replace(item, question=CASE_ABOVE)
    return lead, shown, texts.question_text(shown, quiz.title, seconds, revealer)


def _with_count(text: str, answered: int) -> str:
    """The quiz message: its text and how many have answered so far."""
    return f"{text}\n\n{texts.answered_text(answered)}"
