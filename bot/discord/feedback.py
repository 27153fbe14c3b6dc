"""👍 / 👎 reactions on the bot's Discord answers, recorded as ratings in the feedback store.

Raw reaction events arrive for every message, cached or not, so ratings on answers given before a
restart count too.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.core.events import Question
from bot.core.reply import OutboxReply
from bot.feedback.store import FeedbackStore, Reaction, record_answer

RATINGS = {"👍": 1, "👎": -1}
# Skin-tone modifiers (U+1F3FB..U+1F3FF) and the emoji presentation selector.
PLAIN = str.maketrans(dict.fromkeys([*map(chr, range(0x1F3FB, 0x1F400)), "\ufe0f"]))


def rating(emoji: discord.PartialEmoji) -> int | None:
    """+1 or -1 for a thumbs up or down of any skin tone; None for any other emoji (custom
    emoji have names like `thumbsup`, so they never count)."""
    return RATINGS.get((emoji.name or "").translate(PLAIN))


class DiscordFeedback:
    """Records delivered answers and the reactions on them; does nothing without a store."""

    def __init__(self, store: FeedbackStore | None, client: discord.Client) -> None:
        self.store = store
        self.client = client

    def listen(self) -> None:
        """Receive the client's raw reaction events (when there is a store to record them in)."""
        if self.store is not None:
            self.client.event(self.on_raw_reaction_add)
            self.client.event(self.on_raw_reaction_remove)

    async def answered(self, question: Question, reply: OutboxReply[Any]) -> None:
        """Record the answer `reply` delivered, if it delivered one."""
        messages = [m for m in reply.shown if isinstance(m, discord.Message)]
        channel = str(messages[0].channel.id) if messages else question.conversation.channel
        ids = [str(message.id) for message in messages]
        await record_answer(self.store, question, reply.delivered, channel, ids)

    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        await self._react(event, added=True)

    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        await self._react(event, added=False)

    async def _react(self, event: discord.RawReactionActionEvent, added: bool) -> None:
        me, value = self.client.user, rating(event.emoji)
        if self.store is None or value is None or me is None or event.user_id == me.id:
            return
        reaction = Reaction(
            "discord",
            str(event.channel_id),
            str(event.message_id),
            str(event.user_id),
            str(event.emoji),
        )
        await self.store.react(reaction, value, added)
