"""The input side: which Discord messages are questions for the bot, and what they ask."""

from __future__ import annotations

import re
from typing import TypeGuard

import discord

from bot.core.events import ConversationRef, Origin, Question
from bot.discord.surface import MESSAGE_LIMIT

CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)  # not joins, pins, ...


def is_bot_thread(channel: object, bot_id: int) -> TypeGuard[discord.Thread]:
    """A thread the bot created (on one of its answers)."""
    return isinstance(channel, discord.Thread) and channel.owner_id == bot_id


def replies_to_bot(message: discord.Message, bot_id: int) -> bool:
    resolved = message.reference.resolved if message.reference else None
    return isinstance(resolved, discord.Message) and resolved.author.id == bot_id


def origin(message: discord.Message, bot_id: int) -> Origin | None:
    """Why the bot should answer `message`, or None when it should not."""
    if message.author.bot or message.type not in CHAT_TYPES:
        return None  # other bots, our own messages and echoes, system messages
    if is_bot_thread(message.channel, bot_id) or replies_to_bot(message, bot_id):
        return "follow-up"
    if message.guild is None:
        return "dm"
    if any(user.id == bot_id for user in message.mentions):
        return "mention"
    return None


def strip_mention(text: str, bot_id: int) -> str:
    """The text without the bot's mention (`<@id>` or the older `<@!id>`)."""
    return re.sub(rf"\s*<@!?{bot_id}>\s*", " ", text).strip()


def question_text(message: discord.Message, bot_id: int) -> str | None:
    """What `message` asked the bot: a person's message, or our quote of an /ask question."""
    if message.author.id == bot_id and message.interaction_metadata is not None:
        return unquote(message.content)
    if message.author.bot:
        return None
    return strip_mention(message.content, bot_id)


def quote(question: str) -> str:
    """How a public /ask question is shown in the channel: as a block quote, cut to fit."""
    text = "\n".join(f"> {line}" for line in question.strip().splitlines())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def unquote(text: str) -> str | None:
    """The question inside `quote`'s block quote; None when `text` is not one."""
    lines = text.splitlines()
    if not lines or not all(line.startswith(">") for line in lines):
        return None
    return "\n".join(line.removeprefix(">").removeprefix(" ") for line in lines)


def conversation(channel: discord.abc.Snowflake) -> ConversationRef:
    """Where a question was asked: a thread is named with its parent channel."""
    guild = getattr(channel, "guild", None)
    guild_id = str(guild.id) if guild is not None else None
    if isinstance(channel, discord.Thread):
        return ConversationRef("discord", str(channel.parent_id), str(channel.id), guild=guild_id)
    direct = isinstance(channel, discord.DMChannel)
    return ConversationRef("discord", str(channel.id), direct=direct, guild=guild_id)


def role_ids(user: discord.abc.User) -> frozenset[str]:
    """A server member's role ids (none in DMs)."""
    return frozenset(str(role.id) for role in getattr(user, "roles", ()))


def question(message: discord.Message, bot_id: int, origin: Origin) -> Question:
    """The question a message asks (history is added later, for follow-ups)."""
    return Question(
        strip_mention(message.content, bot_id),
        str(message.author.id),
        conversation(message.channel),
        origin,
        groups=role_ids(message.author),
    )
