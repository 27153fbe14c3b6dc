"""The open quizzes of this process: starting them, their timers, revealing them, shutdown.

API (stable, shared by the Slack and Discord quizzes; one `Quizzes` per process):

- `Quizzes(bank, engine, sampling, seconds=600, ...)` (bot/wiring.py `make_quizzes` makes it
  from the settings); `admins` maps a platform name to the user ids (or a predicate) who may
  reveal any quiz there (SLACK_ADMINS, DISCORD_ADMINS).
- `quizzes.open(starter, where, on_timeout, seconds=None, title="Quiz") -> Quiz`: picks an
  item, registers the quiz, starts the model's explanation and the timer (`seconds`, default
  `quizzes.seconds`; a case of the day passes `quizzes.case_seconds`). When the timer (or
  shutdown) reveals the quiz, `await on_timeout(reveal)` publishes it. Raises `QuizNotOpened`
  (its message for the asker) when `max_open` people's quizzes are open (`TooManyQuizzes`; a
  case of the day, with no starter, is always opened) or after `close()`.
  The quiz flow (bot/quiz/flow.py) then posts the quiz and sets `quiz.message`; if posting
  fails, `discard(quiz)`.
- `quizzes.get(quiz_id) -> Quiz | None`: an open quiz (revealed ones are dropped);
  `quizzes.posted_at(platform, channel, message) -> Quiz | None`: the open quiz of a message.
- `quizzes.reveal(quiz, by) -> Reveal | None`: the reveal by a person (see Quiz.reveal: None the
  second time, RevealRefused for someone who may not). The caller publishes the result.
- `quizzes.explain_wait`: how long a reveal waits for the model's explanation before saying it
  is not ready (the reveal itself never waits for it).
- `await quizzes.close(grace)`: opens no more quizzes; reveals every open quiz through its
  `on_timeout` (reason "stopping") and lets timer reveals being published finish, giving them
  `grace` seconds, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from bot.core import texts as core_texts
from bot.core.events import ConversationRef
from bot.quiz import texts
from bot.quiz.bank import QuestionBank
from bot.quiz.explanation import Engine, Explanation
from bot.quiz.session import Admins, Quiz, Reveal
from inference.engine import SamplingParams

log = logging.getLogger(__name__)

OnReveal = Callable[[Reveal], Awaitable[None]]


class QuizNotOpened(Exception):
    """No quiz can be opened now; the message is for the person who asked."""


class TooManyQuizzes(QuizNotOpened):
    """`max_open` quizzes are open already."""


class Quizzes:
    """Open quizzes by id, bounded; each with its timer and its model explanation."""

    def __init__(
        self,
        bank: QuestionBank,
        engine: Engine,
        sampling: SamplingParams,
        *,
        seconds: float = 600.0,
        case_seconds: float = 21600.0,
        explain_wait: float = 10.0,
        answer_timeout: float = 600.0,
        max_open: int = 20,
        admins: Mapping[str, Admins] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bank = bank
        self.engine = engine
        self.sampling = sampling
        self.seconds = seconds
        self.case_seconds = case_seconds
        self.explain_wait = explain_wait
        self.answer_timeout = answer_timeout
        self.max_open = max_open
        self.admins = dict(admins or {})
        self.clock = clock
        self._open: dict[str, Quiz] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._publishers: dict[str, OnReveal] = {}
        self._publishing: set[asyncio.Task[None]] = set()  # timers publishing their reveal
        self.closing = False  # set by close(): no new quizzes

    def __len__(self) -> int:
        return len(self._open)

    def open(
        self,
        starter: str | None,
        where: ConversationRef,
        on_timeout: OnReveal,
        seconds: float | None = None,
        title: str = texts.QUIZ_TITLE,
    ) -> Quiz:
        """A new quiz, with its explanation being generated and its timer running."""
        if self.closing:
            raise QuizNotOpened(core_texts.RESTARTING)
        if starter is not None and len(self._open) >= self.max_open:  # not the case of the day
            raise TooManyQuizzes(texts.TOO_MANY)
        seconds = self.seconds if seconds is None else seconds
        admins = self.admins.get(where.platform, ())
        deadline = self.clock() + seconds
        quiz = Quiz(self.bank.pick(), starter, where, deadline, admins, title)
        quiz.explanation = Explanation.ask(
            self.engine, quiz.item, self.sampling, f"quiz-{quiz.id}", self.answer_timeout
        )
        self._open[quiz.id] = quiz
        self._publishers[quiz.id] = on_timeout
        self._timers[quiz.id] = asyncio.create_task(
            self._timer(quiz, seconds), name=f"quiz-timer-{quiz.id}"
        )
        log.info(
            "quiz %s: opened on %s, item %s, %.0f s", quiz.id, where.platform, quiz.item.id, seconds
        )
        return quiz

    def get(self, quiz_id: str) -> Quiz | None:
        return self._open.get(quiz_id)

    def posted_at(self, platform: str, channel: str, message: str) -> Quiz | None:
        """The open quiz posted as this message, if any (its thread waits for the reveal)."""
        for quiz in self._open.values():
            where = quiz.where
            if (where.platform, where.channel, quiz.message) == (platform, channel, message):
                return quiz
        return None

    def reveal(self, quiz: Quiz, by: str | None, *, stopping: bool = False) -> Reveal | None:
        """Reveal once (see Quiz.reveal); the quiz leaves the registry and its timer stops."""
        result = quiz.reveal(by, stopping=stopping)
        if result is not None:
            self._forget(quiz)
            log.info(
                "quiz %s: revealed (%s), %d answers", quiz.id, result.reason, result.tally.total
            )
        return result

    def discard(self, quiz: Quiz) -> None:
        """Forget a quiz that could not be posted: no timer, no explanation."""
        quiz.revealed = True
        self._forget(quiz)
        if quiz.explanation is not None:
            quiz.explanation.cancel()

    async def close(self, grace: float = 5.0) -> None:
        """Open no more quizzes; reveal every open one now (the bot is stopping), and let the
        reveals being published finish; cancel what exceeds `grace`."""
        self.closing = True
        work = list(self._publishing)
        for quiz in list(self._open.values()):
            publish = self._publishers[quiz.id]
            if (result := self.reveal(quiz, None, stopping=True)) is not None:
                work.append(asyncio.create_task(self._publish(publish, result)))
        if not work:
            return
        _, pending = await asyncio.wait(work, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        log.info("quizzes: %d revealed at shutdown (%d cut short)", len(work), len(pending))

    def _forget(self, quiz: Quiz) -> None:
        self._open.pop(quiz.id, None)
        self._publishers.pop(quiz.id, None)
        timer = self._timers.pop(quiz.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _timer(self, quiz: Quiz, seconds: float) -> None:
        await asyncio.sleep(seconds)
        publish = self._publishers.get(quiz.id)
        if publish is not None and (result := self.reveal(quiz, None)) is not None:
            task = asyncio.current_task()
            assert task is not None
            self._publishing.add(task)  # so close() waits for this reveal too
            try:
                await self._publish(publish, result)
            finally:
                self._publishing.discard(task)

    @staticmethod
    async def _publish(publish: OnReveal, result: Reveal) -> None:
        try:
            await publish(result)
        except Exception:
            log.exception("quiz %s: publishing the reveal failed", result.quiz.id)
