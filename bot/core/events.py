"""Platform-neutral events: what was asked, where, and what came back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from inference.engine import Message

Platform = Literal["console", "slack", "discord"]
Origin = Literal["mention", "dm", "slash", "follow-up", "console"]


@dataclass(frozen=True)
class ConversationRef:
    """Where a question was asked: the thread to answer in (None: a new one under the question)."""

    platform: Platform
    channel: str  # for a thread: its parent channel
    thread: str | None = None
    direct: bool = False  # a one-to-one conversation with the bot (a DM)
    guild: str | None = None  # the Discord server, if any


@dataclass(frozen=True)
class Question:
    """One question from one person; `history` holds earlier questions and final answers only."""

    text: str
    author: str
    conversation: ConversationRef
    origin: Origin
    history: tuple[Message, ...] = ()
    groups: frozenset[str] = frozenset()  # the author's Slack user groups or Discord roles
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass(frozen=True)
class Progress:
    """What the placeholder shows while an answer is being made."""

    state: Literal["waiting", "thinking", "answering"]
    position: int | None = None  # place in the waiting line, 1 = next
    tokens: int = 0
    elapsed: float = 0.0
    thinking: str = ""  # the thinking so far (no headers), for surfaces that show it live
    answer: str = ""  # the final response so far


@dataclass(frozen=True)
class Answer:
    """The model's final response and its thinking, ready to deliver."""

    answer: str
    thinking: str
    complete: bool
    truncated: bool
    model: str
    request_id: str
    tokens: int = 0
    seconds: float = 0.0  # from submission to the whole answer, waiting in line included
    prompt_tokens: int = 0
    queued_seconds: float | None = None  # waiting in line, before generation started
    first_token_seconds: float | None = None  # from submission to the first token
    thinking_capped: bool = False  # the thinking reached its budget and was ended for the model
    stopped: bool = False  # the asker (or an admin) stopped it: what was written so far
