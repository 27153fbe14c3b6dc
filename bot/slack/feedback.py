"""👍 / 👎 reactions on the bot's Slack answers, recorded as ratings in the feedback store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.core.events import Question
from bot.core.reply import OutboxReply
from bot.feedback.store import FeedbackStore, Reaction

log = logging.getLogger(__name__)

RATINGS = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}


def rating(reaction: str) -> int | None:
    """+1 or -1 for a thumbs up or down of any skin tone ("+1::skin-tone-2"), else None."""
    return RATINGS.get(reaction.partition("::")[0])


class SlackFeedback:
    """Records delivered answers and the reactions on them; does nothing without a store.

    `accept(body)` is false for events to drop: Slack's retries, and while the bot is stopping.
    """

    def __init__(
        self, store: FeedbackStore | None, accept: Callable[[Mapping[str, Any]], object]
    ) -> None:
        self.store = store
        self.accept = accept

    def listen(self, app: AsyncApp) -> None:
        """Handle reaction events (always: an event without a listener is answered 404)."""
        app.event("reaction_added")(self._on_added)
        app.event("reaction_removed")(self._on_removed)

    async def answered(self, question: Question, reply: OutboxReply[str]) -> None:
        """Record the answer `reply` delivered, if it delivered one."""
        if self.store is None or reply.delivered is None:
            return
        try:
            channel = question.conversation.channel
            await self.store.answered(question, reply.delivered, channel, reply.shown)
        except Exception:
            log.warning("request %s: feedback not recorded", question.request_id, exc_info=True)

    async def _on_added(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        await self._react(body, event, added=True)

    async def _on_removed(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        await self._react(body, event, added=False)

    async def _react(self, body: Mapping[str, Any], event: Mapping[str, Any], added: bool) -> None:
        item, emoji = event.get("item") or {}, event.get("reaction") or ""
        value = rating(emoji)
        if self.store is None or value is None or item.get("type") != "message":
            return
        if not self.accept(body):
            return
        reaction = Reaction("slack", item["channel"], item["ts"], event["user"], emoji)
        await self.store.react(reaction, value, added)
