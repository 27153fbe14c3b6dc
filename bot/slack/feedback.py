"""👍 / 👎 on the bot's Slack answers, as reactions or with the feedback buttons under each
answer, recorded as ratings in the feedback store (one per person per answer: the latest)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.core.events import Answer, Question
from bot.core.reply import OutboxReply
from bot.feedback.store import FeedbackStore, Reaction, record_answer


class Delivered(Protocol):
    """What a reply says about its answer once done (OutboxReply, or a native stream's)."""

    delivered: Answer | None
    shown: list[str]


RATINGS = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
FEEDBACK_ACTION = "huatuo_feedback"  # the feedback buttons under an answer
BUTTONS = {"good": 1, "bad": -1}  # their values
BUTTON_EMOJI = "feedback_buttons"  # how a button's rating is stored, beside the reactions'


def feedback_block() -> dict[str, Any]:
    """Slack's feedback buttons (👍 / 👎), to go under an answer (a click names its message)."""

    def button(text: str, value: str, label: str) -> dict[str, Any]:
        plain = {"type": "plain_text", "text": text}
        return {"text": plain, "value": value, "accessibility_label": label}

    buttons = {
        "type": "feedback_buttons",
        "action_id": FEEDBACK_ACTION,
        "positive_button": button("👍", "good", "This answer was helpful"),
        "negative_button": button("👎", "bad", "This answer was not helpful"),
    }
    return {"type": "context_actions", "elements": [buttons]}


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
        """Handle reaction events (always: an event without a listener is answered 404) and
        clicks on the feedback buttons."""
        app.event("reaction_added")(self._on_added)
        app.event("reaction_removed")(self._on_removed)
        app.action(FEEDBACK_ACTION)(self._on_button)

    async def answered(self, question: Question, reply: OutboxReply[str] | Delivered) -> None:
        """Record the answer `reply` delivered, if it delivered one."""
        channel = question.conversation.channel
        await record_answer(self.store, question, reply.delivered, channel, reply.shown)

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

    async def _on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A click on 👍 or 👎 under an answer: the clicker's rating of it, replacing theirs."""
        await ack()
        value = BUTTONS.get(action.get("value", ""))
        container = body.get("container") or {}
        channel, ts = container.get("channel_id"), container.get("message_ts")
        if self.store is None or value is None or not channel or not ts:
            return
        reaction = Reaction("slack", channel, ts, body["user"]["id"], BUTTON_EMOJI)
        await self.store.react(reaction, value, added=True)
