"""Quizzes when the bot stops: no new ones, open ones revealed, reveals under way finished."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import texts
from bot.quiz.registry import QuizNotOpened, Quizzes
from bot.quiz.session import Reveal
from inference.scripted import ScriptedEngine
from tests.harness.quiz import ITEM, SAMPLING, WHERE, answer_b, bank_of


async def test_close_reveals_open_quizzes_finishes_timer_reveals_and_opens_no_more() -> None:
    engine = ScriptedEngine(answer_b)
    await engine.start()
    published: list[str] = []

    async def slow_publish(reveal: Reveal) -> None:
        await asyncio.sleep(0.3)  # posting takes a few platform calls
        published.append(reveal.reason)

    try:
        quizzes = Quizzes(bank_of(ITEM), engine, SAMPLING, seconds=60)
        quizzes.open("U1", WHERE, slow_publish)
        timed = quizzes.open("U2", WHERE, slow_publish, seconds=0.05)
        await asyncio.sleep(0.15)  # the timer has revealed `timed` and is publishing it
        assert timed.revealed and not published
        await quizzes.close(grace=5)
        assert sorted(published) == ["stopping", "timer"], "both reveals were posted"
        with pytest.raises(QuizNotOpened, match=texts.RESTARTING):
            quizzes.open("U3", WHERE, slow_publish)
    finally:
        await engine.close(grace=0)
