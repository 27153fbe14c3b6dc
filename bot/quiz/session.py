"""One quiz: the question posted, learners' answers until the reveal, and the reveal itself.

API (stable, shared by the Slack and Discord quizzes):

- `Quiz(item, starter, where, deadline)`: `starter` is the user id of who started it (None for a
  scheduled case of the day: only admins or the timer reveal it); `where` is a ConversationRef
  (platform, channel); `quiz.message` is the quiz message's id, set by the flow once posted;
  `deadline` is a `time.monotonic()` value; `quiz.id` (12 hex characters) goes into the buttons;
  `quiz.explanation` is the model's answer being generated (bot/quiz/explanation.py);
  `quiz.title` heads the message ("Quiz", "Case of the day").
- `quiz.answer(learner, letter) -> bool`: records or replaces that learner's answer; False once
  revealed. A letter that is not an option raises ValueError.
- `quiz.answered` (how many learners have answered), `quiz.tally() -> Tally`.
- `quiz.may_reveal(user)`: the starter, or an admin (`admins`: a set of user ids or a callable).
  `quiz.revealable`: whether anyone may reveal it early (its messages show a Reveal button).
- `quiz.reveal(by) -> Reveal | None`: `by` is a user id, or None for the timer (or shutdown).
  The first allowed call returns the Reveal; every later call returns None (a second reveal does
  nothing). A user who may not reveal raises `RevealRefused` (until the quiz is revealed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from bot.core.events import ConversationRef
from bot.quiz.explanation import Explanation
from bot.quiz.item import QuizItem

Admins = Collection[str] | Callable[[str], bool]
RevealReason = Literal["starter", "admin", "timer", "stopping"]


class RevealRefused(PermissionError):
    """Someone other than the starter (or an admin) asked to reveal."""


@dataclass(frozen=True)
class Tally:
    """Learners' answers per option letter (every option, in order) and how many were right."""

    counts: dict[str, int]
    correct: str

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def right(self) -> int:
        return self.counts.get(self.correct, 0)


@dataclass(frozen=True)
class Reveal:
    """What a reveal shows: the quiz (item, where), the final tally, and who or what revealed."""

    quiz: Quiz
    tally: Tally
    by: str | None
    reason: RevealReason


@dataclass(eq=False)
class Quiz:
    """An open question and its learners' answers (one per learner; the latest counts)."""

    item: QuizItem
    starter: str | None
    where: ConversationRef
    deadline: float
    admins: Admins = ()
    title: str = "Quiz"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    message: str | None = None
    explanation: Explanation | None = None
    answers: dict[str, str] = field(default_factory=dict)
    revealed: bool = False

    @property
    def answered(self) -> int:
        """How many learners have answered so far."""
        return len(self.answers)

    def answer(self, learner: str, letter: str) -> bool:
        """Record (or change) a learner's answer; False once the quiz is revealed."""
        if letter not in self.item.options:
            raise ValueError(f"{letter!r} is not an option of this question")
        if self.revealed:
            return False
        self.answers[learner] = letter
        return True

    def tally(self) -> Tally:
        counts = dict.fromkeys(self.item.options, 0)
        for letter in self.answers.values():
            counts[letter] += 1
        return Tally(counts, self.item.answer)

    @property
    def revealable(self) -> bool:
        """Whether anyone may reveal it early (a Reveal button): its starter, or an admin."""
        return self.starter is not None or bool(self.admins)

    def is_admin(self, user: str) -> bool:
        return self.admins(user) if callable(self.admins) else user in self.admins

    def may_reveal(self, user: str) -> bool:
        """The person who started the quiz, or an admin."""
        return (self.starter is not None and user == self.starter) or self.is_admin(user)

    def reveal(self, by: str | None, *, stopping: bool = False) -> Reveal | None:
        """Close the quiz and return the result, once; None if it was already revealed."""
        if self.revealed:
            return None
        if by is None:
            reason: RevealReason = "stopping" if stopping else "timer"
        elif self.starter is not None and by == self.starter:
            reason = "starter"
        elif self.is_admin(by):
            reason = "admin"
        else:
            raise RevealRefused(by)
        self.revealed = True
        return Reveal(self, self.tally(), by, reason)
