"""Multiple-choice items from a JSONL file, and the prompt the model's authors evaluated with."""

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
class Item:
    """One valid row: `line` (1-based) identifies it in results and on resume."""

    line: int
    question: str
    options: dict[str, str]
    gold: str

    @property
    def prompt(self) -> str:
        options = "\n".join(f"{letter}. {text}" for letter, text in self.options.items())
        return PROMPT.format(question=self.question, options=options)

    @property
    def fingerprint(self) -> str:
        """A short hash of the prompt, so resuming against a different file is caught."""
        return hashlib.sha256(self.prompt.encode()).hexdigest()[:12]


class BadRow(ValueError):
    """A row that cannot be evaluated; the message says why."""


def parse_row(line: int, text: str) -> Item:
    """Validate one JSONL row: `question`, `options` {letter: text}, `answer_idx` among them."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRow(f"invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise BadRow("not a JSON object")
    question, options, gold = row.get("question"), row.get("options"), row.get("answer_idx")
    if not isinstance(question, str) or not question.strip():
        raise BadRow("missing or empty 'question'")
    if not isinstance(options, dict) or len(options) < 2:
        raise BadRow("'options' must be an object with at least two options")
    for letter, option in options.items():
        if len(letter) != 1 or not "A" <= letter <= "Z":
            raise BadRow(f"option key {letter!r} is not a capital letter")
        if not isinstance(option, str) or not option.strip():
            raise BadRow(f"option {letter} is not a non-empty string")
    if not isinstance(gold, str) or gold not in options:
        raise BadRow(f"answer_idx {gold!r} is not one of the options {', '.join(options)}")
    return Item(line, question, options, gold)


def load_items(path: Path) -> tuple[list[Item], list[str]]:
    """Every valid item, and one `LINE: reason` message per bad row (blank lines are ignored)."""
    items, problems = [], []
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                items.append(parse_row(number, text))
            except BadRow as exc:
                problems.append(f"{number}: {exc}")
    return items, problems
