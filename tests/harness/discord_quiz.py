"""The Discord quiz on a fake Discord: quizzes on the vitamin C item, served, started and read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.discord.adapter import DiscordAdapter
from bot.quiz.item import QuizItem
from bot.quiz.registry import Quizzes
from inference.scripted import ScriptedEngine
from tests.fakes.discord import FakeDiscord, buttons
from tests.harness.discord import JSON, serving
from tests.harness.polling import until
from tests.harness.quiz import ITEM, SAMPLING, bank_of


def quizzes_of(engine: ScriptedEngine, *items: QuizItem, **kwargs: Any) -> Quizzes:
    return Quizzes(bank_of(*(items or [ITEM])), engine, SAMPLING, **kwargs)


@asynccontextmanager
async def quiz_serving(
    fake: FakeDiscord, quizzes: Quizzes, *, sync_guild: bool = True, **kwargs: Any
) -> AsyncIterator[DiscordAdapter]:
    """The adapter with quizzes, its commands synced to the fake's guild (or globally). On exit,
    as when the bot stops, open quizzes are revealed before the adapter stops."""
    guild = int(fake.guild_id) if sync_guild else None
    engine = quizzes.engine
    async with serving(fake, engine, sync_guild=guild, quizzes=quizzes, **kwargs) as adapter:
        try:
            yield adapter
        finally:
            await quizzes.close(grace=5)


async def start_quiz(fake: FakeDiscord, user: JSON | None = None) -> JSON:
    """`/quiz` by `user` (alice by default); the quiz message once posted."""
    interaction = await fake.dispatch_interaction("quiz", user=user)
    return await until(lambda: fake.originals.get(interaction["token"]))


def reveal_id(message: JSON) -> str:
    return next(b["custom_id"] for b in buttons(message) if b["label"] == "Reveal")


def answer_id(message: JSON, letter: str) -> str:
    return next(b["custom_id"] for b in buttons(message) if b["label"] == letter)


def thread_of(fake: FakeDiscord, message: JSON) -> list[JSON]:
    """The messages of the thread started on `message`."""
    return [
        m
        for t in fake.threads
        if t.starter is not None and t.starter["id"] == message["id"]
        for m in fake.channel_messages(t.channel["id"])
    ]
