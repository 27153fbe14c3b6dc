"""The terminal adapter: `huatuo-bot ask`, `chat` and `demo`, on the chat apps' service.

`ask` and `chat` print as the model writes: the thinking dimmed, then the final response, then
the disclaimer. Ctrl-C stops the answer being written (what was written stays). `demo` shows one
live line per question while all of them run, then prints each answer. Output goes through
`rich`, which leaves out colours and live redrawing when the output is not a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bot.core import texts
from bot.core.events import Answer, ConversationRef, Progress, Question
from bot.core.service import AnswerService
from bot.core.serving import serve
from inference.engine import Message
from inference.loading import BUILTIN

AUTHOR = "console"  # the terminal's one person, who may stop their own answers
STOPPED = "(stopped: Ctrl-C)"
DEMO_LABEL = " (by the built-in demo model, not HuatuoGPT-o1)"
INTERRUPTED = 130  # the exit status of a program stopped by Ctrl-C


class ConsoleReply:
    """Collects one answer; with `live`, prints the thinking and the final response as they
    are written (and only the rest at the end)."""

    started = True  # a terminal is always listening

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        live: bool = False,
        model: str = "",
        request_id: str = "",
    ) -> None:
        self.request_id = request_id
        self.console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
        self.errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.live = live
        self.label = DEMO_LABEL if model.startswith(BUILTIN) else ""  # whose thinking it is
        self.answer: Answer | None = None
        self.error: str | None = None
        self.notices: list[str] = []
        self.progress_seen: Progress | None = None  # the latest, for `demo`'s live lines
        self._printed = {"thinking": "", "answer": ""}  # what has been printed of each
        self._section: str | None = None

    @property
    def finished(self) -> bool:
        """An answer or a failure is in (the end of the line for this question)."""
        return self.answer is not None or self.error is not None

    async def notice(self, text: str) -> None:
        """Print an urgent notice at once on stderr (stdout keeps only the answer)."""
        self.notices.append(text)
        self.errors.print(f"\n{text}\n", markup=False)

    async def progress(self, progress: Progress) -> None:
        self.progress_seen = progress
        if self.live:
            self._write("thinking", progress.thinking, dim=True)
            self._write("answer", progress.answer)

    def _write(self, section: str, text: str, *, dim: bool = False) -> None:
        """Print what `text` adds to what was printed of `section`; nothing when it does not
        continue it (the final form is printed whole at the end then)."""
        printed = self._printed[section]
        if not text or not text.startswith(printed) or len(text) == len(printed):
            return
        if self._section != section:
            if self._section is not None:
                self.console.print("\n")  # end the line, then a blank one
            title = f"Thinking{self.label}" if section == "thinking" else "Final response"
            self.console.print(Text(title, style="bold"))
            self._section = section
        self.console.print(Text(text[len(printed) :], style="dim" if dim else ""), end="")
        self._printed[section] = text

    async def deliver(self, answer: Answer) -> None:
        self.answer = answer

    async def fail(self, message: str) -> None:
        self.error = message

    def print_answer(self, disclaimer: str = "") -> None:
        """What was not printed yet: the rest of the thinking (dimmed) and of the final response,
        then the notes, the disclaimer and a line of numbers."""
        if self.error is not None:
            if self._section is not None:
                self.console.print()
            self.errors.print(self.error, markup=False)
            return
        assert self.answer is not None
        thinking = self.answer.thinking or "(none: this model wrote no Thinking section)"
        body = texts.answer_text(self.answer, disclaimer)
        if not self._go_on("answer", body):
            if not self._go_on("thinking", thinking, dim=True) or self._section != "thinking":
                title = texts.thinking_title(self.answer) + self.label
                self._whole("thinking", title, thinking, dim=True)
            self.console.print()
            self._whole("answer", "Final response", body)
        self.console.print(
            Text(
                f"({self.answer.model}, {self.answer.tokens} tokens, {self.answer.seconds:.1f} s)",
                style="dim",
            )
        )

    def _go_on(self, section: str, text: str, *, dim: bool = False) -> bool:
        """Print the rest of `section` after what was printed of it live, if it was the last
        printed and the final form continues it; False when it cannot go on."""
        printed = self._printed[section]
        if self._section != section or not text.startswith(printed):
            return False
        self.console.print(Text(text[len(printed) :].rstrip("\n"), style="dim" if dim else ""))
        return True

    def _whole(self, section: str, title: str, text: str, *, dim: bool = False) -> None:
        """A section whole, under its title (again, if it was printed live in another form)."""
        if self._printed[section]:
            self.console.print()
            title += " (as it ended)"
        self.console.print(Text(title, style="bold"))
        self.console.print(Text(text, style="dim" if dim else ""))

    def json(self, model: str) -> str:
        """The answer as one JSON object (design.md §4); a failure has `error`, what askers see."""
        if self.answer is None:
            failed = {"answer": "", "thinking": "", "complete": False, "model": model}
            return json.dumps({"error": self.error, **failed}, ensure_ascii=False)
        return json.dumps({**asdict(self.answer), "notices": self.notices}, ensure_ascii=False)


def console_question(text: str, history: tuple[Message, ...] = ()) -> Question:
    return Question(
        text=text,
        author=AUTHOR,
        conversation=ConversationRef("console", "terminal"),
        origin="console",
        history=history,
    )


@contextlib.contextmanager
def _ctrl_c_stops(service: AnswerService, question: Question) -> Iterator[None]:
    """While inside, Ctrl-C stops `question`'s answer instead of ending the program."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, service.stops.stop, question.request_id, AUTHOR)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _answer(service: AnswerService, question: Question, reply: ConsoleReply) -> None:
    reply.request_id = question.request_id
    with _ctrl_c_stops(service, question):
        await serve(service, question, reply)
    if reply.answer is not None and reply.answer.stopped:
        reply.errors.print(STOPPED)


async def ask(service: AnswerService, question: str, as_json: bool, disclaimer: str) -> int:
    reply = ConsoleReply(live=not as_json, model=service.engine.model_name)
    await _answer(service, console_question(question), reply)
    if as_json:
        print(reply.json(service.engine.model_name))
    else:
        reply.print_answer(disclaimer)
    if reply.answer is None:
        return 1
    return INTERRUPTED if reply.answer.stopped else 0


async def chat(service: AnswerService, disclaimer: str, stdin: TextIO | None = None) -> int:
    """A conversation in the terminal: each answer's final response becomes history."""
    history: tuple[Message, ...] = ()
    print("Ask a medical question (an empty line or Ctrl-D ends the chat).", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = (stdin or sys.stdin).readline()
        if not line.strip():
            return 0
        reply = ConsoleReply(live=True, model=service.engine.model_name)
        await _answer(service, console_question(line.strip(), history), reply)
        reply.print_answer(disclaimer)
        if reply.answer is not None and reply.answer.answer:
            history += (Message("user", line.strip()), Message("assistant", reply.answer.answer))


def _board(questions: list[str], replies: list[ConsoleReply]) -> Table:
    """One line per question: where it is, tokens so far, tokens per second."""
    table = Table(box=None, show_header=True, header_style="bold")
    for column in ("#", "question", "now", "tokens", "tokens/s"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for number, (question, reply) in enumerate(zip(questions, replies, strict=True), start=1):
        progress, answer = reply.progress_seen, reply.answer
        if answer is not None or reply.error is not None:
            phase = "failed" if answer is None else "done"
            tokens = answer.tokens if answer else 0
            seconds = answer.seconds if answer else 0.0
        elif progress is not None:
            phase = texts.progress_text(progress).split(" (")[0]
            tokens, seconds = progress.tokens, progress.elapsed
        else:
            phase, tokens, seconds = "waiting", 0, 0.0
        rate = f"{tokens / seconds:.1f}" if seconds > 0 and tokens else "-"
        table.add_row(str(number), question[:48], phase, str(tokens), rate)
    return table


async def demo(service: AnswerService, questions: list[str], disclaimer: str) -> int:
    """Ask every question at once (the engine batches them), with a live line for each, then
    print the answers in order."""
    replies = [ConsoleReply(model=service.engine.model_name) for _ in questions]
    work = asyncio.gather(
        *(serve(service, console_question(q), r) for q, r in zip(questions, replies, strict=True))
    )
    board = Console(file=sys.stderr, highlight=False)
    with Live(_board(questions, replies), console=board, refresh_per_second=4) as live:
        while not work.done():
            await asyncio.wait([work], timeout=0.25)
            live.update(_board(questions, replies))
    await work
    for number, (question, reply) in enumerate(zip(questions, replies, strict=True), start=1):
        print(f"\n=== Question {number}: {question}\n", flush=True)
        reply.print_answer(disclaimer)
    return 0 if all(r.answer is not None for r in replies) else 1
