"""The platform-neutral quiz: one item on vitamin C, a bank of items and a model answering B."""

from __future__ import annotations

from bot.core.events import ConversationRef
from bot.quiz.bank import QuestionBank
from bot.quiz.item import QuizItem
from inference.engine import SamplingParams
from inference.scripted import Script

WHERE = ConversationRef("slack", "C1")
ITEM = QuizItem(
    "bank-1",
    "Which vitamin deficiency causes scurvy?",
    {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"},
    "B",
    "a test bank",
)
SAMPLING = SamplingParams(max_new_tokens=64, temperature=0.0)


def bank_of(*items: QuizItem) -> QuestionBank:
    return QuestionBank(list(items), name="test")


def answer_b(question: str) -> Script:
    text = "## Thinking\n\nScurvy is vitamin C deficiency.\n\n## Final Response\n\nThe answer is B."
    return Script(tuple(text[i : i + 5] for i in range(0, len(text), 5)))
