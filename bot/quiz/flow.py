"""The quiz, written once for every platform: starting one, learners' clicks, the reveal and the
model's explanation.

A platform implements `QuizSurface` (its messages, buttons and private messages) and hands its
`/quiz` commands, clicks and case-of-the-day posts to `QuizFlow`, which decides what is said and
when. `Via` is the platform's handle for one command or click: where it came from, and how to
answer the person privately.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, Protocol, TypeVar

from bot.core.admission import Admission
from bot.core.events import Answer, ConversationRef
from bot.quiz import texts
from bot.quiz.explanation import EXPLANATION_STOPPED, Explanation, ExplanationFailed
from bot.quiz.registry import QuizNotOpened, Quizzes
from bot.quiz.session import Quiz, Reveal, RevealRefused

log = logging.getLogger(__name__)

STOPPING_PATIENCE = 5.0  # seconds to say the explanation was stopped, when the bot stops

Via = TypeVar("Via")
Spawn = Callable[[Coroutine[Any, Any, None], str], None]  # run in the background, named


class CannotPost(Exception):
    """The platform would not take the quiz there; the message says why (for the log)."""


class ExplanationReply(Protocol):
    """Where the model's explanation goes (bot.core.reply.OutboxReply is one)."""

    @property
    def finished(self) -> bool:
        """An answer or a failure is shown (nothing more will be)."""

    def start(self, status: str) -> None:
        """Show `status` (Markdown) where the explanation will go."""

    async def deliver(self, answer: Answer) -> None: ...

    async def fail(self, message: str) -> None: ...


class QuizSurface(Protocol[Via]):
    """What a platform does for a quiz; the flow decides what and when."""

    cannot_post: str  # said privately to someone whose quiz could not be posted there

    def mention(self, user: str) -> str:
        """How the platform writes a mention of `user` in Markdown."""

    async def post(self, quiz: Quiz, seconds: float, via: Via | None) -> str:
        """Post the quiz with a button per option (and Reveal, if anyone may press it); the id
        of its message. Raises CannotPost when the platform refuses."""

    def show_count(self, quiz: Quiz) -> None:
        """Show how many have answered: best effort, coalesced, the latest count only."""

    async def close(self, reveal: Reveal, via: Via | None) -> bool:
        """Show the quiz closed, after any count edit on its way: buttons gone, the correct
        option marked (as the answer to the click `via`, if any). False if the quiz has no
        message (it was never posted)."""

    async def post_reveal(self, reveal: Reveal) -> ExplanationReply | None:
        """Post the correct answer and the tally below the quiz; where the explanation goes
        (None: the reveal could not be posted). The surface forgets the quiz."""

    async def whisper(self, via: Via, text: str, mentions: Sequence[str] = ()) -> None:
        """A private message (Markdown) to the person of `via`; `mentions` stay mentions."""

    async def ignore(self, via: Via) -> None:
        """Answer a click that changes nothing."""


class QuizFlow(Generic[Via]):
    """The quizzes of one platform: admission, posting, clicks, the reveal, the explanation."""

    def __init__(
        self,
        quizzes: Quizzes,
        surface: QuizSurface[Via],
        spawn: Spawn,
        admission: Admission | None = None,
    ) -> None:
        self.quizzes = quizzes
        self.surface = surface
        self.admission = admission or Admission()  # who may start a quiz, where, how often
        self._spawn = spawn
        self._posting: dict[str, asyncio.Future[None]] = {}  # quizzes whose post is on its way

    # ---- starting ------------------------------------------------------------------------------
    async def start(
        self, via: Via, user: str, where: ConversationRef, groups: frozenset[str] = frozenset()
    ) -> None:
        """A quiz started by `user` (the allow-lists and the rate limit permitting); they are
        told privately why not, if not."""
        refusal = self.admission.may_start(user, where, groups)
        if refusal is not None:
            await self.surface.whisper(via, refusal.message)
            return
        try:
            await self._post(user, where, texts.QUIZ_TITLE, self.quizzes.seconds, via)
        except QuizNotOpened as exc:
            await self.surface.whisper(via, str(exc))
        except CannotPost as exc:
            log.warning("%s: no quiz posted in %s (%s)", where.platform, where.channel, exc)
            await self.surface.whisper(via, self.surface.cannot_post)
        else:
            self.admission.started(user, where)

    async def post_case_of_the_day(self, where: ConversationRef, via: Via | None = None) -> None:
        """A scheduled quiz nobody started: revealed by its timer (or an admin)."""
        await self._post(None, where, texts.CASE_TITLE, self.quizzes.case_seconds, via)

    async def _post(
        self,
        starter: str | None,
        where: ConversationRef,
        title: str,
        seconds: float,
        via: Via | None,
    ) -> None:
        quiz = self.quizzes.open(starter, where, self.publish, seconds, title)
        posted = self._posting[quiz.id] = asyncio.get_running_loop().create_future()
        try:
            quiz.message = await self.surface.post(quiz, seconds, via)
        except BaseException:
            self.quizzes.discard(quiz)
            raise
        finally:
            del self._posting[quiz.id]
            posted.set_result(None)
        if quiz.answers:  # clicked while the post's response was still on its way
            self.surface.show_count(quiz)

    # ---- clicks --------------------------------------------------------------------------------
    async def answer(self, via: Via, user: str, quiz_id: str, letter: str) -> None:
        """A learner's answer: recorded (or changed) and confirmed privately, the count shown."""
        quiz = self.quizzes.get(quiz_id)
        changed = quiz is not None and user in quiz.answers
        if quiz is None or letter not in quiz.item.options or not quiz.answer(user, letter):
            await self.surface.whisper(via, texts.QUIZ_CLOSED)
            return
        await self.surface.whisper(via, texts.confirmation(quiz.item, letter, changed))
        self.surface.show_count(quiz)

    async def reveal(self, via: Via, user: str, quiz_id: str) -> None:
        """Reveal, for the starter or an admin; anyone else is told privately who may, and when
        it happens anyway. A second reveal changes nothing."""
        quiz = self.quizzes.get(quiz_id)
        try:
            result = None if quiz is None else self.quizzes.reveal(quiz, user)
        except RevealRefused:
            assert quiz is not None
            starter = self.surface.mention(quiz.starter) if quiz.starter else None
            refusal = texts.reveal_refused(starter, quiz.deadline - self.quizzes.clock())
            await self.surface.whisper(via, refusal, [starter] if starter else [])
            return
        if result is None:
            await self.surface.ignore(via)
            return
        await self.publish(result, via)

    # ---- the reveal ----------------------------------------------------------------------------
    async def publish(self, reveal: Reveal, via: Via | None = None) -> None:
        """Close the quiz, post the answer and the tally below it, then the model's explanation
        (in the background: the reveal never waits for the model)."""
        quiz = reveal.quiz
        if (posting := self._posting.get(quiz.id)) is not None:
            await asyncio.shield(posting)  # revealed (timer, shutdown) while its post was on the
            # way: what gets posted is closed, not left open with its buttons
        if not await self.surface.close(reveal, via):
            return
        reply = await self.surface.post_reveal(reveal)
        if reply is not None and quiz.explanation is not None:
            self._spawn(self._explain(quiz.explanation, reply), f"explain-{quiz.id}")

    async def _explain(self, explanation: Explanation, reply: ExplanationReply) -> None:
        """The model's answer: at once if ready, else a note now and the answer when ready."""
        try:
            answer = await explanation.wait(self.quizzes.explain_wait)
            if answer is None:
                reply.start(texts.EXPLANATION_PENDING)
                answer = await explanation.wait(None)
                assert answer is not None  # waiting without a timeout answers or raises
            await reply.deliver(explanation.labelled(answer))
        except ExplanationFailed as exc:
            await reply.fail(str(exc))
        except asyncio.CancelledError:  # the bot is stopping
            if not reply.finished:
                await asyncio.shield(_stopped(reply))
            raise


async def _stopped(reply: ExplanationReply) -> None:
    """Say the explanation was stopped; log instead of raising."""
    try:
        await asyncio.wait_for(reply.fail(EXPLANATION_STOPPED), STOPPING_PATIENCE)
    except Exception:
        log.warning("quiz: could not say the explanation was stopped", exc_info=True)
