"""The terminal adapter: `huatuo-bot ask`, `chat` and `demo`, on the chat apps' service."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from typing import TextIO

from bot.core import texts
from bot.core.events import Answer, ConversationRef, Progress, Question
from bot.core.service import AnswerService
from inference.engine import Message

DIM, BOLD, RESET = "\033[2m", "\033[1m", "\033[0m"


class ConsoleReply:
    """Prints progress on one status line (when a terminal shows it) and the answer at the end."""

    def __init__(self, out: TextIO | None = None, show_status: bool = True) -> None:
        self.out = out or sys.stdout
        self.status = sys.stderr if show_status and sys.stderr.isatty() else None
        self.color = self.out.isatty()
        self.answer: Answer | None = None
        self.error: str | None = None
        self.notices: list[str] = []

    def _clear_status(self) -> None:
        if self.status:
            self.status.write("\r\033[K")
            self.status.flush()

    async def notice(self, text: str) -> None:
        """Print an urgent notice at once on stderr (stdout keeps only the answer)."""
        self._clear_status()
        self.notices.append(text)
        print(f"\n{text}\n", file=sys.stderr, flush=True)

    async def progress(self, progress: Progress) -> None:
        if self.status:
            self.status.write(f"\r\033[K{texts.progress_text(progress)}")
            self.status.flush()

    async def deliver(self, answer: Answer) -> None:
        self._clear_status()
        self.answer = answer

    async def fail(self, message: str) -> None:
        self._clear_status()
        self.error = message

    def print_answer(self, disclaimer: str = "") -> None:
        """Thinking (dimmed) before the final response, as the chat apps show it in the thread."""
        if self.error is not None:
            print(self.error, file=sys.stderr)
            return
        assert self.answer is not None
        dim, bold, reset = (DIM, BOLD, RESET) if self.color else ("", "", "")
        thinking = self.answer.thinking or "(none: this model wrote no Thinking section)"
        print(f"{bold}{texts.thinking_title(self.answer)}{reset}", file=self.out)
        print(f"{dim}{thinking}{reset}\n", file=self.out)
        print(f"{bold}Final response{reset}", file=self.out)
        print(texts.answer_text(self.answer, disclaimer), file=self.out)
        print(
            f"{dim}({self.answer.model}, {self.answer.tokens} tokens, "
            f"{self.answer.seconds:.1f} s){reset}",
            file=self.out,
        )

    def json(self, model: str) -> str:
        """The answer as one JSON object (design.md §4); a failure has `error`, what askers see."""
        if self.answer is None:
            failed = {"answer": "", "thinking": "", "complete": False, "model": model}
            return json.dumps({"error": self.error, **failed}, ensure_ascii=False)
        return json.dumps({**asdict(self.answer), "notices": self.notices}, ensure_ascii=False)


def console_question(text: str, history: tuple[Message, ...] = ()) -> Question:
    return Question(
        text=text,
        author="console",
        conversation=ConversationRef("console", "terminal"),
        origin="console",
        history=history,
    )


async def ask(service: AnswerService, question: str, as_json: bool, disclaimer: str) -> int:
    reply = ConsoleReply(show_status=not as_json)
    await service.answer(console_question(question), reply)
    if as_json:
        print(reply.json(service.engine.model_name))
    else:
        reply.print_answer(disclaimer)
    return 0 if reply.answer is not None else 1


async def chat(service: AnswerService, disclaimer: str, stdin: TextIO | None = None) -> int:
    """A conversation in the terminal: each answer's final response becomes history."""
    history: tuple[Message, ...] = ()
    print("Ask a medical question (an empty line or Ctrl-D ends the chat).", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = (stdin or sys.stdin).readline()
        if not line.strip():
            return 0
        reply = ConsoleReply()
        await service.answer(console_question(line.strip(), history), reply)
        reply.print_answer(disclaimer)
        if reply.answer is not None and reply.answer.answer:
            history += (Message("user", line.strip()), Message("assistant", reply.answer.answer))


async def demo(service: AnswerService, questions: list[str], disclaimer: str) -> int:
    """Ask every question at once (the engine batches them) and print the answers in order."""
    replies = [ConsoleReply(show_status=False) for _ in questions]
    await asyncio.gather(
        *(service.answer(console_question(q), r) for q, r in zip(questions, replies, strict=True))
    )
    for number, (question, reply) in enumerate(zip(questions, replies, strict=True), start=1):
        print(f"\n=== Question {number}: {question}\n")
        reply.print_answer(disclaimer)
    return 0 if all(r.answer is not None for r in replies) else 1
