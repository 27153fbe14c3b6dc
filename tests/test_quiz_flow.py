"""The quiz flow through an in-memory surface: clicks, the reveal, the explanation, admission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.core import texts as core_texts
from bot.core.admission import AccessPolicy, Admission
from bot.core.events import Answer, ConversationRef
from bot.quiz import texts
from bot.quiz.bank import QuestionBank
from bot.quiz.explanation import EXPLANATION_STOPPED
from bot.quiz.flow import CannotPost, QuizFlow
from bot.quiz.item import QuizItem
from bot.quiz.registry import Quizzes
from bot.quiz.session import Quiz, Reveal
from inference.engine import SamplingParams
from inference.scripted import Script, ScriptedEngine
from tests.harness.polling import until

WHERE = ConversationRef("slack", "C1")
SAMPLING = SamplingParams(max_new_tokens=64, temperature=0.0)
ITEM = QuizItem(
    "bank-1",
    "Which vitamin deficiency causes scurvy?",
    {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"},
    "B",
)


def answer_b(question: str) -> Script:
    return Script(("## Thinking\n\nScurvy.\n\n## Final Response\n\n", "The answer is B."))


@dataclass
class CollectingReply:
    """Where the explanation goes, in memory."""

    statuses: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.answers or self.failures)

    def start(self, status: str) -> None:
        self.statuses.append(status)

    async def deliver(self, answer: Answer) -> None:
        self.answers.append(answer)

    async def fail(self, message: str) -> None:
        self.failures.append(message)


class CollectingSurface:
    """A platform in memory: what it was asked to show, in order. A `via` is a plain string."""

    cannot_post = "I can't post a quiz here."

    def __init__(self) -> None:
        self.posted: list[tuple[Quiz, float]] = []
        self.counts: list[int] = []
        self.closed: list[tuple[Reveal, str | None]] = []
        self.reveals: list[Reveal] = []
        self.replies: list[CollectingReply] = []
        self.whispers: list[tuple[str, str, tuple[str, ...]]] = []
        self.ignored: list[str] = []
        self.refuse = False  # the platform refuses the next posts
        self.hold: asyncio.Event | None = None  # posts wait for it

    def mention(self, user: str) -> str:
        return f"@{user}"

    async def post(self, quiz: Quiz, seconds: float, via: str | None) -> str:
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse:
            raise CannotPost("not in the channel")
        self.posted.append((quiz, seconds))
        return f"message-{len(self.posted)}"

    def show_count(self, quiz: Quiz) -> None:
        self.counts.append(quiz.answered)

    async def close(self, reveal: Reveal, via: str | None) -> bool:
        if reveal.quiz.message is None:
            return False
        self.closed.append((reveal, via))
        return True

    async def post_reveal(self, reveal: Reveal) -> CollectingReply:
        self.reveals.append(reveal)
        self.replies.append(CollectingReply())
        return self.replies[-1]

    async def whisper(self, via: str, text: str, mentions: Sequence[str] = ()) -> None:
        self.whispers.append((via, text, tuple(mentions)))

    async def ignore(self, via: str) -> None:
        self.ignored.append(via)

    def told(self, via: str) -> list[str]:
        return [text for to, text, _ in self.whispers if to == via]


@dataclass
class Setup:
    """A flow over the collecting surface, real quizzes and a scripted model."""

    flow: QuizFlow[str]
    surface: CollectingSurface
    quizzes: Quizzes
    engine: ScriptedEngine
    spawned: list[asyncio.Task[None]]

    async def start(self, user: str = "U1") -> Quiz:
        await self.flow.start(f"command-{user}", user, WHERE)
        return self.surface.posted[-1][0]

    async def settled(self) -> None:
        """Wait for the work the flow ran in the background (the explanations)."""
        await asyncio.gather(*self.spawned)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Coroutine[Any, Any, Setup]]]:
    made: list[Setup] = []

    async def setup(script: Callable[[str], Script] = answer_b, **options: Any) -> Setup:
        admission = options.pop("admission", None)
        engine = ScriptedEngine(script)
        await engine.start()
        options = {"seconds": 600, "clock": lambda: 0.0, **options}
        quizzes = Quizzes(QuestionBank([ITEM]), engine, SAMPLING, **options)
        surface, spawned = CollectingSurface(), []

        def spawn(work: Coroutine[Any, Any, None], name: str) -> None:
            spawned.append(asyncio.create_task(work, name=name))

        made.append(
            Setup(QuizFlow(quizzes, surface, spawn, admission), surface, quizzes, engine, spawned)
        )
        return made[-1]

    yield setup
    for done in made:
        await done.quizzes.close(grace=1.0)
        engine = done.engine
        engine.release.set()
        await asyncio.gather(*done.spawned, return_exceptions=True)
        await engine.close(grace=0)


# ---- clicks ------------------------------------------------------------------------------------


async def test_a_click_counts_once_per_person_and_can_be_changed(make) -> None:
    s = await make()
    quiz = await s.start()
    for via, user, letter in (("c1", "U2", "A"), ("c2", "U3", "B"), ("c3", "U2", "B")):
        await s.flow.answer(via, user, quiz.id, letter)

    assert s.surface.told("c1") == [texts.confirmation(ITEM, "A", changed=False)]
    assert s.surface.told("c3") == [texts.confirmation(ITEM, "B", changed=True)]
    assert s.surface.counts == [1, 2, 2], "the count shown after each click"
    assert quiz.tally().counts == {"A": 0, "B": 2, "C": 0, "D": 0}

    await s.flow.answer("c4", "U4", quiz.id, "E")  # not an option
    await s.flow.answer("c5", "U4", "0123456789ab", "A")  # no such quiz
    await s.flow.reveal("r1", "U1", quiz.id)
    await s.flow.answer("c6", "U5", quiz.id, "C")  # after the reveal
    assert (
        s.surface.told("c4") == s.surface.told("c5") == s.surface.told("c6") == [texts.QUIZ_CLOSED]
    )
    assert s.surface.reveals[0].tally.total == 2 and s.surface.counts == [1, 2, 2]


async def test_only_the_starter_or_an_admin_may_reveal_before_the_deadline(make) -> None:
    s = await make(admins={"slack": {"U-admin"}})
    quiz = await s.start()
    await s.flow.reveal("r1", "U2", quiz.id)
    assert s.surface.whispers == [
        (
            "r1",
            "Sorry, only the person who started this quiz (@U1) can reveal the answer. "
            "It will be revealed automatically in 10 minutes.",
            ("@U1",),
        )
    ]
    assert not quiz.revealed and s.surface.closed == []

    await s.flow.reveal("r2", "U-admin", quiz.id)
    [(reveal, via)] = s.surface.closed
    assert reveal.reason == "admin" and via == "r2", "closed through the admin's click"
    await s.flow.reveal("r3", "U1", quiz.id)
    assert s.surface.ignored == ["r3"] and len(s.surface.reveals) == 1, "a second reveal: nothing"

    second = await s.start()
    await s.flow.reveal("r4", "U1", second.id)
    assert s.surface.closed[-1][0].reason == "starter"

    await s.flow.post_case_of_the_day(WHERE)
    case = s.surface.posted[-1][0]
    await s.flow.reveal("r5", "U1", case.id)
    assert s.surface.told("r5")[0].startswith("Sorry, only an admin can reveal the answer.")


# ---- the reveal and the explanation ------------------------------------------------------------


async def test_the_reveal_posts_the_tally_then_the_explanation_ready_at_once(make) -> None:
    s = await make(explain_wait=60)
    quiz = await s.start()
    await s.flow.answer("c1", "U2", quiz.id, "B")
    await s.flow.answer("c2", "U3", quiz.id, "D")
    assert quiz.explanation is not None and await quiz.explanation.wait(None)  # ready first
    await s.flow.reveal("r1", "U1", quiz.id)
    await s.settled()

    [reveal] = s.surface.reveals
    assert reveal.tally.counts == {"A": 0, "B": 1, "C": 0, "D": 1} and reveal.tally.right == 1
    [reply] = s.surface.replies
    assert reply.statuses == [], "no 'not ready yet' note"
    [answer] = reply.answers
    assert answer.answer == "**The model's answer** (it chose B: correct):\n\nThe answer is B."


async def revealed_while_stalled(make) -> tuple[Setup, CollectingReply]:
    """A quiz revealed while the model is stuck on it (until `engine.release` is set), and where
    its explanation goes, once that says so."""
    stalled = lambda q: Script(("## Final Response\n\nThe answer is C.",), stall_at=0)  # noqa: E731
    s = await make(stalled, explain_wait=0.05)
    quiz = await s.start()
    await s.flow.reveal("r1", "U1", quiz.id)
    [reply] = s.surface.replies
    await until(lambda: reply.statuses, 10)
    return s, reply


async def test_an_explanation_not_ready_at_the_reveal_follows_when_it_is(make) -> None:
    s, reply = await revealed_while_stalled(make)
    assert reply.statuses == [texts.EXPLANATION_PENDING] and not reply.finished
    s.engine.release.set()
    await s.settled()
    [answer] = reply.answers
    assert answer.answer.startswith("**The model's answer** (it chose C: the correct answer is B)")


async def test_a_failed_explanation_is_said_and_a_stopped_one_too(make) -> None:
    failing = lambda q: Script(("x",), fail_at=0)  # noqa: E731
    s = await make(failing)
    quiz = await s.start()
    await s.flow.reveal("r1", "U1", quiz.id)
    await s.settled()
    [reply] = s.surface.replies
    assert reply.answers == [] and len(reply.failures) == 1
    assert reply.failures[0].startswith(
        f"Sorry, the model could not explain this question (request quiz-{quiz.id})"
    )

    s, reply = await revealed_while_stalled(make)
    [explaining] = s.spawned
    explaining.cancel()  # the bot is stopping
    with pytest.raises(asyncio.CancelledError):
        await explaining
    assert reply.failures == [EXPLANATION_STOPPED]


async def test_a_quiz_revealed_while_its_post_is_on_the_way_is_closed_once_posted(make) -> None:
    s = await make()
    s.surface.hold = asyncio.Event()
    starting = asyncio.create_task(s.flow.start("command", "U1", WHERE))
    await until(lambda: len(s.quizzes), 10)
    stopping = asyncio.create_task(s.quizzes.close(grace=10.0))  # the bot stops: reveal them all
    await asyncio.sleep(0.05)
    assert s.surface.closed == [], "nothing to close before the post came back"
    s.surface.hold.set()
    await asyncio.gather(starting, stopping)
    [(reveal, _)] = s.surface.closed
    assert reveal.quiz.message == "message-1", "the quiz posted late is closed, not left open"
    assert s.surface.reveals == [reveal]


# ---- starting a quiz ---------------------------------------------------------------------------


async def test_starting_a_quiz_follows_the_allow_lists_and_counts_toward_the_rate_limit(
    make,
) -> None:
    admission = Admission({"slack": AccessPolicy(users=frozenset({"U1"}))}, rate_limit=1)
    s = await make(admission=admission)
    await s.flow.start("command-U9", "U9", WHERE)
    assert s.surface.told("command-U9") == [core_texts.NOT_ALLOWED]
    assert s.surface.posted == [] and len(s.quizzes) == 0 and s.engine.requests == []

    await s.flow.start("command-U1", "U1", WHERE)
    await s.flow.start("command-U1", "U1", WHERE)
    assert len(s.surface.posted) == 1
    [refused] = s.surface.told("command-U1")
    assert refused.startswith("You've reached the limit of 1 question per hour.")


async def test_a_quiz_that_cannot_be_posted_is_forgotten_and_not_counted(make) -> None:
    s = await make(admission=Admission(rate_limit=1), max_open=1)
    s.surface.refuse = True
    await s.flow.start("command-1", "U1", WHERE)
    assert s.surface.told("command-1") == [s.surface.cannot_post] and len(s.quizzes) == 0

    s.surface.refuse = False
    await s.flow.start("command-2", "U1", WHERE)  # the failed one did not count
    await s.flow.start("command-3", "U2", WHERE)  # max_open quizzes are open
    assert len(s.surface.posted) == 1 and s.surface.told("command-2") == []
    assert s.surface.told("command-3") == [texts.TOO_MANY]
