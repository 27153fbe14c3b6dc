"""The question bank: multiple-choice items from a JSONL file, picked at random without repeats.

API (stable, shared by the Slack and Discord quizzes):

- `QuizItem(id, question, options, answer, source)`: `options` maps capital letters to option
  texts in the file's order; `answer` is the correct letter; `prompt` is the evaluation prompt.
- `QuestionBank.load(path=None)`: the rows of a JSONL file in the MedQA format (`question`,
  `options` {letter: text}, `answer_idx`, optional `source`); `None` loads the shipped 200 MedQA
  items. Bad rows are skipped and listed in `bank.problems` as `LINE: reason` (and logged);
  a bank with no usable row raises `BankError`.
- `bank.pick()`: a random item, never one of the last `len(bank) // 2` picked (at most 50).
"""

from __future__ import annotations

import json
import logging
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from bot.evaluation.dataset import PROMPT, BadRow, parse_row

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).with_name("data") / "medqa.jsonl"
MEDQA_SOURCE = (
    "MedQA (Jin et al. 2021, “What Disease does this Patient Have? A Large-scale Open Domain "
    "Question Answering Dataset from Medical Exams”, MIT licence, github.com/jind11/MedQA)"
)
MAX_RECENT = 50


@dataclass(frozen=True)
class QuizItem:
    """One multiple-choice question; `source` says where it comes from (shown with the answer)."""

    id: str
    question: str
    options: dict[str, str]
    answer: str
    source: str = ""

    @property
    def prompt(self) -> str:
        """The prompt the model's authors evaluated with (as `huatuo-bot eval` sends it)."""
        options = "\n".join(f"{letter}. {text}" for letter, text in self.options.items())
        return PROMPT.format(question=self.question, options=options)


class BankError(ValueError):
    """The bank cannot be used (missing, unreadable, or without a single valid row)."""


def _source(text: str, default: str) -> str:
    """A row's own `source` field, if it has one, else the bank's."""
    source = json.loads(text).get("source")
    return source.strip() if isinstance(source, str) and source.strip() else default


def read_items(path: Path, default_source: str = "") -> tuple[list[QuizItem], list[str]]:
    """Every valid row as a QuizItem, and one `LINE: reason` per bad row (blank lines ignored)."""
    items, problems = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BankError(f"Cannot read the question bank {path}: {exc}") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = parse_row(number, text)
        except BadRow as exc:
            problems.append(f"{number}: {exc}")
            continue
        item_id = f"{path.stem}-{number}"
        source = _source(text, default_source)
        items.append(QuizItem(item_id, row.question, row.options, row.gold, source))
    return items, problems


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
        items, problems = read_items(path, "" if path != SHIPPED else MEDQA_SOURCE)
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
