"""The answer service on its own: a reply that collects what it is given, and questions to ask."""

from __future__ import annotations

from bot.core.events import Answer, ConversationRef, Progress, Question
from bot.core.service import AnswerService
from inference.engine import Message, SamplingParams


class CollectingReply:
    """An in-memory output side, as a chat adapter would implement it."""

    def __init__(self) -> None:
        self.progress_updates: list[Progress] = []
        self.answers: list[Answer] = []
        self.failures: list[str] = []
        self.notices: list[str] = []
        self.order: list[str] = []  # what was shown, in order: notice, progress, deliver, fail

    async def notice(self, text: str) -> None:
        self.notices.append(text)
        self.order.append("notice")

    async def progress(self, progress: Progress) -> None:
        self.progress_updates.append(progress)
        self.order.append("progress")

    async def deliver(self, answer: Answer) -> None:
        self.answers.append(answer)
        self.order.append("deliver")

    async def fail(self, message: str) -> None:
        self.failures.append(message)
        self.order.append("fail")


def question(text: str, history: tuple[Message, ...] = ()) -> Question:
    return Question(text, "U1", ConversationRef("slack", "C1", "1.0"), "mention", history)


def service(engine, **kwargs) -> AnswerService:
    kwargs.setdefault("progress_interval", 0.02)
    return AnswerService(engine, SamplingParams(64, 0.5, 0.9), **kwargs)
