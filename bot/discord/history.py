"""A follow-up's history, read back from Discord: earlier questions and the bot's final answers.

Nothing is kept in memory, so conversations survive restarts. The bot's messages follow two rules
(see `ChannelSurface`): every part of an answer replies to its question, and thinking messages reply
to nothing. An answer counts as final when it ends with the disclaimer footer, which is stripped;
placeholders, progress and error messages lack it and are left out with their question; emergency
notices (marked) are left out too. (With an empty HUATUO_DISCLAIMER every other reply of the bot
counts.) A quiz the bot posed, with its case when that came in messages above it, is the user's
side of the turn its explanation answers. Reading other people's messages in threads and through
REST needs the message content intent.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import discord

from bot.discord.events import is_bot_thread, question_text
from bot.discord.quiz_surface import CASE_ABOVE
from bot.discord.surface import NOTICE_MARK
from bot.quiz import texts as quiz_texts
from inference.engine import Message

THREAD_MESSAGES = 100  # how far back a thread is read
REPLY_HOPS = 10  # how many earlier answers a chain of replies is followed through
ANSWER_SCAN = 100  # messages after a question searched for its answer's parts
CASE_SCAN = 10  # messages before a quiz searched for the case it shows in messages above
TITLE = re.compile(r"\*\*[^*\n]+\*\*")  # a quiz's bold title, which starts its case too
QUIZ_HEADINGS = tuple(f"**{title}**" for title in quiz_texts.TITLES)
THINKING_HEADING = "**Thinking"  # the first of the bot's thinking messages (see `thinking_parts`)


async def history(message: discord.Message, bot_id: int, disclaimer: str) -> tuple[Message, ...]:
    """The turns before `message`, a follow-up in a bot's thread or a reply to a bot's answer."""
    channel = message.channel
    if is_bot_thread(channel, bot_id):
        # The thread was started on an answer, whose conversation comes first; or on something
        # the bot posed (a quiz), which opens the thread's conversation.
        starter = await _fetch(channel.parent, channel.id) if channel.parent else None
        opening = await _with_case(starter, bot_id) if starter and _posed(starter, bot_id) else []
        earlier = await _reply_chain(starter, bot_id, disclaimer) if starter else []
        recent = [m async for m in channel.history(limit=THREAD_MESSAGES, before=message)]
        return (*earlier, *_turns([*opening, *recent[::-1]], bot_id, disclaimer))
    answer = await _referenced(message)
    return tuple(await _reply_chain(answer, bot_id, disclaimer)) if answer else ()


async def _reply_chain(answer: discord.Message, bot_id: int, disclaimer: str) -> list[Message]:
    """The conversation ending with `answer`, following questions that replied to older answers."""
    turns: list[list[Message]] = []
    for _ in range(REPLY_HOPS):
        if answer.author.id != bot_id or (question := await _referenced(answer)) is None:
            break
        later = answer.channel.history(limit=ANSWER_SCAN, after=question)
        parts = [m async for m in later if m.author.id == bot_id and _reply_id(m) == question.id]
        turns.append(_turns([*await _with_case(question, bot_id), *parts], bot_id, disclaimer))
        if (previous := await _referenced(question)) is None:
            break
        answer = previous
    return [turn for pair in reversed(turns) for turn in pair]


def _turns(messages: Sequence[discord.Message], bot_id: int, disclaimer: str) -> list[Message]:
    """Question and final-answer turns from messages in order; everything else is dropped."""
    questions: dict[int, str] = {}
    parts: defaultdict[int | None, list[str]] = defaultdict(list)
    posed: list[str] | None = None  # the quiz being read (its case, itself, its reveal), if any
    for message in messages:
        if (text := question_text(message, bot_id)) is not None:
            questions[message.id], posed = text, None
        elif _posed(message, bot_id):  # the bot's answer to a quiz replies to its latest part
            if _starts_quiz(message):
                posed = []
            if posed is None:
                continue  # the bot's thinking, or anything else it posed outside a quiz
            posed.append(message.content)
            questions[message.id] = "\n\n".join(posed)
        elif _answer_part(message, bot_id) and (asked := _reply_id(message)) in questions:
            parts[asked].append(message.content)
    turns = []
    for message_id, question in questions.items():
        answer = _final("\n".join(parts[message_id]), disclaimer)
        if question and answer:
            turns += [Message("user", question), Message("assistant", answer)]
    return turns


def _starts_quiz(message: discord.Message) -> bool:
    """A quiz's first message: its title, then its case (not the buttons under a long case)."""
    return message.content.startswith(QUIZ_HEADINGS) and CASE_ABOVE not in message.content


def _posed(message: discord.Message, bot_id: int) -> bool:
    """The bot's message that replies to nothing: a quiz or its reveal, which the bot's
    explanation answers, so they make the user side of that turn (thinking, also replying to
    nothing, is never answered, so it never makes a turn)."""
    return (
        message.author.id == bot_id
        and message.reference is None
        and question_text(message, bot_id) is None
    )


async def _with_case(message: discord.Message, bot_id: int) -> list[discord.Message]:
    """`message`, after the messages holding its case when it is a quiz whose case is too long
    to share a message with the options: the bot posted them just before it, the first one
    starting with the quiz's title."""
    title = TITLE.match(message.content)
    if not (_posed(message, bot_id) and title and CASE_ABOVE in message.content):
        return [message]
    case: list[discord.Message] = []
    async for earlier in message.channel.history(limit=CASE_SCAN, before=message):
        if _posed(earlier, bot_id) and not earlier.content.startswith(THINKING_HEADING):
            case.append(earlier)
            if earlier.content.startswith(f"{title[0]}\n\n"):
                return [*case[::-1], message]
    return [message]


def _answer_part(message: discord.Message, bot_id: int) -> bool:
    """The bot's message that may be part of an answer (not an emergency notice)."""
    return message.author.id == bot_id and not message.content.startswith(NOTICE_MARK)


def _final(text: str, disclaimer: str) -> str | None:
    """The answer without its footer; None when the footer shows it is no final answer."""
    text = text.strip()
    if not disclaimer:
        return text
    return text.removesuffix(disclaimer).rstrip() if text.endswith(disclaimer) else None


def _reply_id(message: discord.Message) -> int | None:
    return message.reference.message_id if message.reference else None


async def _referenced(message: discord.Message) -> discord.Message | None:
    """The message `message` replies to, fetched when the event did not carry it."""
    if (message_id := _reply_id(message)) is None:
        return None
    resolved = message.reference.resolved if message.reference else None
    if isinstance(resolved, discord.Message):
        return resolved
    return await _fetch(message.channel, message_id)


async def _fetch(channel: discord.abc.Messageable, message_id: int) -> discord.Message | None:
    """A message by id; None when it was deleted."""
    try:
        return await channel.fetch_message(message_id)
    except discord.NotFound:
        return None
