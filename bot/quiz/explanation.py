"""The model's own answer to a quiz question, generated in the background while learners answer.

API (stable): `Explanation.ask(engine, item, sampling, request_id, timeout)` starts generating at
once (call it inside the event loop) with the evaluation prompt ("Please answer the following
multiple-choice question:" ...). `await explanation.wait(timeout)` returns the model's `Answer`
(final response and thinking, as bot/core/events.py has it), or None if it is not ready within
`timeout` seconds (None: wait as long as it takes); it raises `ExplanationFailed` with a message
for people when the model could not answer. `explanation.choice(answer)` is the option letter the
final response names, or None. `explanation.cancel()` stops it. What learners read about the
model's answer (its heading, why there is none) is worded here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Protocol

from bot.core import texts as core_texts
from bot.core.events import Answer
from bot.quiz.extract import extract_answer
from bot.quiz.item import QuizItem
from inference.engine import Generation, GenerationRequest, Message, SamplingParams
from inference.reasoning import split_reasoning

log = logging.getLogger(__name__)


EXPLANATION_TIMEOUT = (
    "The model took too long to explain this question, so there is no explanation."
)
EXPLANATION_STOPPED = "The model's explanation was stopped before it was finished."


def explanation_failed(request_id: str) -> str:
    """The model could not explain (the log says why): for the learners, with the request id."""
    return (
        f"Sorry, the model could not explain this question (request {request_id}); "
        f"{core_texts.ADMIN_LOGS}."
    )


def model_heading(choice: str | None, correct: str) -> str:
    """The line above the model's own answer: which option it chose, and whether that is right."""
    if choice is None:
        return "**The model's answer** (no single option could be read from it):"
    verdict = "correct" if choice == correct else f"the correct answer is {correct}"
    return f"**The model's answer** (it chose {choice}: {verdict}):"


class Engine(Protocol):
    model_name: str

    def submit(self, request: GenerationRequest) -> Generation: ...


class ExplanationFailed(Exception):
    """The model gave no explanation; the message says why, for the learners."""


class Explanation:
    """One background generation of the model's answer to a quiz item."""

    def __init__(self, item: QuizItem, task: asyncio.Task[Answer], request_id: str) -> None:
        self.item = item
        self.request_id = request_id
        self._task = task

    @classmethod
    def ask(
        cls,
        engine: Engine,
        item: QuizItem,
        sampling: SamplingParams,
        request_id: str,
        timeout: float,
    ) -> Explanation:
        """Start asking the model now; the answer waits in the background."""
        task = asyncio.create_task(
            _generate(engine, item, sampling, request_id, timeout), name=f"quiz-{request_id}"
        )
        task.add_done_callback(_retrieve)
        return cls(item, task, request_id)

    @property
    def ready(self) -> bool:
        return self._task.done()

    async def wait(self, timeout: float | None) -> Answer | None:
        """The model's answer; None if not ready in `timeout` s; raises ExplanationFailed."""
        await asyncio.wait({self._task}, timeout=timeout)  # leaves the task running on timeout
        if not self._task.done():
            return None
        if self._task.cancelled():
            raise ExplanationFailed(EXPLANATION_STOPPED)
        error = self._task.exception()
        if error is None:
            return self._task.result()
        if isinstance(error, TimeoutError):
            raise ExplanationFailed(EXPLANATION_TIMEOUT)
        raise ExplanationFailed(explanation_failed(self.request_id))  # why: in the log

    def choice(self, answer: Answer) -> str | None:
        """The option letter the model's final response names, if exactly one."""
        return extract_answer(answer.answer, self.item.options).letter

    def labelled(self, answer: Answer) -> Answer:
        """The model's final response under a line saying which option it chose, and whether
        that is right (no final response: as it is, for the reply to say so)."""
        if not answer.answer:
            return answer
        heading = model_heading(self.choice(answer), self.item.answer)
        return dataclasses.replace(answer, answer=f"{heading}\n\n{answer.answer}")

    def cancel(self) -> None:
        self._task.cancel()


async def _generate(
    engine: Engine, item: QuizItem, sampling: SamplingParams, request_id: str, timeout: float
) -> Answer:
    started = time.monotonic()
    request = GenerationRequest((Message("user", item.prompt),), sampling, request_id)
    generation = engine.submit(request)
    try:
        text = await asyncio.wait_for(generation.collect(), timeout)
    finally:
        generation.cancel()  # no-op once finished; frees the slot if we left early
    truncated = generation.finish_reason == "length"
    parsed = split_reasoning(text, truncated)
    log.info(
        "quiz %s: model explanation ready, %d tokens in %.1f s",
        request_id,
        generation.stats.completion_tokens,
        time.monotonic() - started,
    )
    return Answer(
        answer=parsed.answer,
        thinking=parsed.thinking,
        complete=parsed.complete,
        truncated=truncated,
        model=engine.model_name,
        request_id=request_id,
        tokens=generation.stats.completion_tokens,
        seconds=time.monotonic() - started,
    )


def _retrieve(task: asyncio.Task[Answer]) -> None:
    """Log why there is no explanation (the waiter tells the learners), not as a lost error."""
    if not task.cancelled() and (error := task.exception()) is not None:
        level = logging.INFO if isinstance(error, TimeoutError) else logging.WARNING
        log.log(level, "%s: no model explanation: %r", task.get_name(), error)
