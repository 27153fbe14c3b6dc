"""The Slack quiz on a fake Slack: a bot whose quizzes ask about scurvy, and a `Quiz` to click."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.quiz.bank import QuestionBank
from bot.quiz.item import QuizItem
from bot.quiz.registry import Quizzes
from bot.slack.quiz import REVEAL_ACTION
from inference.engine import SamplingParams
from inference.scripted import Script, ScriptedEngine
from tests.fakes.slack import Message as SlackMessage
from tests.fakes.slack import SlackLimits, block_actions, interactive_form, signed_request
from tests.harness.polling import until
from tests.harness.slack import SECRET, Bot, Mode, running

ITEM = QuizItem(
    "bank-1",
    "A sailor has bleeding gums & loose teeth after months at sea. Which deficiency is it?",
    {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"},
    "B",
    "a test bank",
)
THINKING = "Bleeding gums after a long voyage without fruit point to scurvy."


def answers_b(question: str) -> Script:
    text = f"## Thinking\n\n{THINKING}\n\n## Final Response\n\nThe answer is **B. Vitamin C**."
    return Script(tuple(text[i : i + 6] for i in range(0, len(text), 6)))


class Quiz:
    """The quiz messages one test drives: the posted quiz, clicks, what the thread shows."""

    def __init__(self, bot: Bot, message: SlackMessage) -> None:
        self.bot, self.message = bot, message
        self.id = message.blocks[-1]["elements"][0]["value"]  # type: ignore[index]

    @property
    def current(self) -> SlackMessage:
        return next(m for m in self.bot.slack.messages if m.ts == self.message.ts)

    def count(self) -> str:
        """The "N answers so far" line."""
        [context] = [b for b in self.current.blocks or [] if b["type"] == "context"]
        return context["elements"][0]["text"]

    def buttons(self) -> list[str]:
        actions = [b for b in self.current.blocks or [] if b["type"] == "actions"]
        return [e["text"]["text"] for block in actions for e in block["elements"]]

    def thread(self) -> list[str]:
        return [m.text for m in self.bot.slack.thread("C1", self.message.ts)[1:]]

    async def click(self, user: str, action_id: str) -> float:
        """A click as Slack delivers it; returns the seconds until it was acknowledged."""
        payload = block_actions(
            action_id,
            self.id,
            message=self.current,
            response_url=self.bot.slack.new_response_url(),
            user=user,
        )
        started = time.monotonic()
        if self.bot.mode == "socket":
            envelope = await self.bot.slack.send_socket_event("interactive", payload)
            await self.bot.slack.wait_ack(envelope)
        else:
            body, headers = signed_request(interactive_form(payload), SECRET, form=True)
            assert (await self.bot.post(body, headers))[0] == 200
        return time.monotonic() - started

    async def answer(self, user: str, letter: str) -> None:
        await self.click(user, f"huatuo_quiz_answer_{letter}")

    async def reveal(self, user: str) -> None:
        await self.click(user, REVEAL_ACTION)


@asynccontextmanager
async def quiz_bot(
    mode: Mode = "http", script=answers_b, slack_limits: SlackLimits | None = None, **options: Any
) -> AsyncIterator[tuple[Bot, ScriptedEngine]]:
    """A running Slack adapter whose quizzes ask ITEM, with the model answering B."""
    engine = ScriptedEngine(script)
    await engine.start()
    sampling = SamplingParams(max_new_tokens=64, temperature=0.0)
    quizzes = Quizzes(QuestionBank([ITEM]), engine, sampling, **{"seconds": 60, **options})
    try:
        async with running(engine, mode, quizzes=quizzes, slack_limits=slack_limits) as bot:
            try:
                yield bot, engine
            finally:
                await quizzes.close(grace=1.0)  # the runner's part: the adapter does not own it
    finally:
        await engine.close(grace=0)


async def start_quiz(bot: Bot) -> Quiz:
    """U1 runs `/huatuo quiz` in C1; the quiz message once posted."""
    started = time.monotonic()
    ack = await bot.command("quiz")
    assert time.monotonic() - started < 1.0 and "text" not in ack, "acknowledged at once, quietly"
    message = await until(lambda: [m for m in bot.slack.messages if m.blocks])
    return Quiz(bot, message[-1])
