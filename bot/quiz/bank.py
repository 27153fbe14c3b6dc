"""The question bank: multiple-choice items from a JSONL file, picked at random without repeats.

API (stable, shared by the Slack and Discord quizzes; the items are `bot.quiz.item.QuizItem`):

- `QuestionBank.load(path=None)`: the rows of a JSONL file in the MedQA format (`question`,
  `options` {letter: text}, `answer_idx`, optional `source`); `None` loads the shipped 200 MedQA
  items. Bad rows are skipped and listed in `bank.problems` as `LINE: reason` (and logged);
  a bank with no usable row raises `BankError`.
- `bank.pick()`: a random item, never one of the last `len(bank) // 2` picked (at most 50).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from pathlib import Path

from bot.quiz.item import QuizItem, read_items

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).with_name("data") / "medqa.jsonl"
MEDQA_SOURCE = (
    "MedQA (Jin et al. 2021, “What Disease does this Patient Have? A Large-scale Open Domain "
    "Question Answering Dataset from Medical Exams”, MIT licence, github.com/jind11/MedQA)"
)
MAX_RECENT = 50


class BankError(ValueError):
    """The bank cannot be used (missing, unreadable, or without a single valid row)."""


class QuestionBank:
    """The items of one bank, and which were picked recently."""

    def __init__(
        self, items: list[QuizItem], problems: list[str] | None = None, name: str = "(empty)"
    ) -> None:
        if not items:
            raise BankError(f"The question bank {name} has no usable question.")
        self.items = items
        self.problems = problems or []
        self.name = name
        self._recent: deque[str] = deque(maxlen=min(len(items) // 2, MAX_RECENT))
        self._random = random.Random()

    @classmethod
    def load(cls, path: Path | str | None = None) -> QuestionBank:
        """A bank file (`None` or "": the shipped MedQA items); bad rows are logged and skipped."""
        path = Path(path).expanduser() if path else SHIPPED
        try:
            items, problems = read_items(path, "" if path != SHIPPED else MEDQA_SOURCE)
        except (OSError, UnicodeDecodeError) as exc:
            raise BankError(f"Cannot read the question bank {path}: {exc}") from None
        for problem in problems:
            log.warning("question bank %s, line %s", path, problem)
        bank = cls(items, problems, str(path))
        log.info("question bank %s: %d questions, %d rows skipped", path, len(items), len(problems))
        return bank

    def __len__(self) -> int:
        return len(self.items)

    def pick(self) -> QuizItem:
        """A random item that was not among the recently picked ones."""
        recent = set(self._recent)
        item = self._random.choice([item for item in self.items if item.id not in recent])
        self._recent.append(item.id)
        return item
