"""Slack events in, questions out: which messages to answer, their text, the thread's history."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.events import Origin
from bot.slack.mrkdwn import unescape
from bot.slack.reply import ASKED_MARK, OWN_MARKS, POSED_MARK
from inference.engine import Message

Event = Mapping[str, Any]
# Message subtypes written by a person; every other subtype (edits, deletions, bots, joins) is not.
USER_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


@dataclass(frozen=True)
class Identity:
    """Who the bot is in this workspace (from auth.test)."""

    user_id: str
    bot_id: str | None = None

    def wrote(self, message: Event) -> bool:
        """Whether a message or event is the bot's own."""
        return message.get("user") == self.user_id or (
            self.bot_id is not None and message.get("bot_id") == self.bot_id
        )


@dataclass(frozen=True)
class Trigger:
    """A message the bot may answer: who asked what, where, and how."""

    origin: Origin
    channel: str
    user: str
    text: str  # the question: mention removed, Slack escaping undone
    ts: str  # the asking message
    thread_ts: str  # the thread to answer in

    @property
    def in_thread(self) -> bool:
        """Asked inside an existing thread (so earlier turns may be history)."""
        return self.thread_ts != self.ts


def question_text(text: str, bot_user_id: str) -> str:
    """The question in a message: the bot's mention removed, Slack escaping undone."""
    return unescape(re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text)).strip()


def _well_formed(event: Event) -> bool:
    """The fields a question needs are there, with the right types (hostile input is ignored)."""
    text = event.get("text")
    ids = (event.get(key) for key in ("user", "channel", "ts"))
    thread = event.get("thread_ts")
    return (
        all(isinstance(value, str) and value for value in ids)
        and (text is None or isinstance(text, str))
        and (thread is None or isinstance(thread, str))
    )


def _from_person(event: Event, bot: Identity) -> bool:
    return (
        "user" in event
        and not event.get("bot_id")
        and event.get("subtype") in USER_SUBTYPES
        and not bot.wrote(event)
    )


def _asked(event: Event, bot: Identity) -> bool:
    """A well-formed event from a person: something the bot may answer."""
    return _well_formed(event) and _from_person(event, bot)


def _trigger(event: Event, origin: Origin, bot: Identity) -> Trigger:
    return Trigger(
        origin=origin,
        channel=event["channel"],
        user=event["user"],
        text=question_text(event.get("text") or "", bot.user_id),
        ts=event["ts"],
        thread_ts=event.get("thread_ts") or event["ts"],
    )


def mention_trigger(event: Event, bot: Identity) -> Trigger | None:
    """An app_mention from a person."""
    return _trigger(event, "mention", bot) if _asked(event, bot) else None


def message_trigger(event: Event, bot: Identity) -> Trigger | None:
    """A direct message, or a channel thread reply that may follow up on an answer.

    Channel messages that mention the bot are left to their app_mention twin; top-level channel
    messages without a mention are not for the bot.
    """
    if not _asked(event, bot):
        return None
    if event.get("channel_type") == "im":
        return _trigger(event, "dm", bot)
    text = event.get("text") or ""
    in_thread = event.get("thread_ts") not in (None, event["ts"])
    if in_thread and f"<@{bot.user_id}" not in text:
        return _trigger(event, "follow-up", bot)
    return None


def _ts(ts: str) -> tuple[int, int]:
    """Slack timestamps ("1700000000.000100") as exactly comparable numbers."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def thread_history(
    messages: Iterable[Event], before: str, bot: Identity, footer: str = ""
) -> tuple[Message, ...]:
    """Earlier questions and final answers of a thread, oldest first, before message `before`.

    The bot's own messages count only as final answers (with `footer` removed), or as the
    question a slash command posted; its thinking, placeholders, notices and files are skipped,
    known by the role in their metadata (messages without one: by their mark).
    Consecutive turns of one role are joined.
    """
    turns: list[Message] = []
    for message in messages:
        if _ts(message["ts"]) >= _ts(before):
            continue
        turn = _turn(message, bot, footer)
        if turn is None or not turn.content:
            continue
        if turns and turns[-1].role == turn.role:
            turns[-1] = Message(turn.role, f"{turns[-1].content}\n\n{turn.content}")
        else:
            turns.append(turn)
    return tuple(turns)


def _turn(message: Event, bot: Identity, footer: str) -> Message | None:
    text = message.get("text") or ""
    if bot.wrote(message):
        if message.get("files"):
            return None
        if text.startswith(ASKED_MARK):
            quoted = unescape(text.partition("\n")[2])
            return Message("user", re.sub(r"(?m)^> ?", "", quoted).strip())
        if text.startswith(POSED_MARK):  # a quiz or its reveal: the model's explanation follows
            return Message("user", unescape(text.removeprefix(POSED_MARK)).strip())
        if _role(message) not in (None, "", "answer") or text.startswith(OWN_MARKS):
            return None
        return Message("assistant", unescape(text.removesuffix(footer)).strip())
    if _from_person(message, bot):
        return Message("user", question_text(text, bot.user_id))
    return None


def _role(message: Event) -> str | None:
    """The role the bot gave its message in the metadata (answer, thinking, ...), if any."""
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    return payload.get("role") if isinstance(payload, Mapping) else None


def bot_answered(messages: Iterable[Event], bot: Identity) -> bool:
    """Whether the bot has written in a thread (so a reply there continues its conversation)."""
    return any(bot.wrote(message) for message in messages)
