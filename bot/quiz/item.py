"""The multiple-choice item, shared by quizzes and `huatuo-bot eval`: the type, the MedQA JSONL
row it is read from, and the prompt the model's authors evaluated with."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

# The template of FreedomIntelligence/HuatuoGPT-o1's evaluation/eval.py (non-strict prompt, commit
# dc6e08a by the authors, 2025-01-04): the question, then one "A. text" line per option, in the
# file's order, joined by newlines, sent as the only (user) message through the chat template.
PROMPT = "Please answer the following multiple-choice question:\n{question}\n{options}"


@dataclass(frozen=True)
class QuizItem:
    """One multiple-choice question: `options` maps capital letters to option texts in the file's
    order, `answer` is the correct letter, `source` says where it comes from (shown with the
    answer), `line` is its line in its file (1-based; 0 for an item made in code)."""

    id: str
    question: str
    options: dict[str, str]
    answer: str
    source: str = ""
    line: int = 0

    @property
    def prompt(self) -> str:
        """The prompt the model's authors evaluated with (as `huatuo-bot eval` sends it)."""
        options = "\n".join(f"{letter}. {text}" for letter, text in self.options.items())
        return PROMPT.format(question=self.question, options=options)

    @property
    def fingerprint(self) -> str:
        """A short hash of the prompt, so resuming against a different file is caught."""
        return hashlib.sha256(self.prompt.encode()).hexdigest()[:12]


class BadRow(ValueError):
    """A row that cannot be used; the message says why."""


def parse_row(text: str, item_id: str, line: int, default_source: str = "") -> QuizItem:
    """Validate one JSONL row: `question`, `options` {letter: text}, `answer_idx` among them, and
    an optional `source` (else `default_source`)."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRow(f"invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise BadRow("not a JSON object")
    question, options, answer = row.get("question"), row.get("options"), row.get("answer_idx")
    if not isinstance(question, str) or not question.strip():
        raise BadRow("missing or empty 'question'")
    if not isinstance(options, dict) or len(options) < 2:
        raise BadRow("'options' must be an object with at least two options")
    for letter, option in options.items():
        if len(letter) != 1 or not "A" <= letter <= "Z":
            raise BadRow(f"option key {letter!r} is not a capital letter")
        if not isinstance(option, str) or not option.strip():
            raise BadRow(f"option {letter} is not a non-empty string")
    if not isinstance(answer, str) or answer not in options:
        raise BadRow(f"answer_idx {answer!r} is not one of the options {', '.join(options)}")
    source = row.get("source")
    source = source.strip() if isinstance(source, str) and source.strip() else default_source
    return QuizItem(item_id, question, options, answer, source, line)


def read_items(path: Path, default_source: str = "") -> tuple[list[QuizItem], list[str]]:
    """Every valid row of a JSONL file (ids `STEM-LINE`), and one `LINE: reason` per bad row
    (blank lines ignored). Raises OSError or UnicodeDecodeError if the file cannot be read."""
    items, problems = [], []
    with path.open(encoding="utf-8") as lines:  # rows end at line ends only, as JSON allows
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                items.append(parse_row(text, f"{path.stem}-{number}", number, default_source))
            except BadRow as exc:
                problems.append(f"{number}: {exc}")
    return items, problems
