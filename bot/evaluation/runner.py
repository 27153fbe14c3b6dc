"""Ask the engine every item, a bounded number at a time, and score each answer as it arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from bot.evaluation.results import Result
from bot.quiz.extract import extract_answer
from bot.quiz.item import QuizItem
from inference.engine import EngineError, Generation, GenerationRequest, Message, SamplingParams
from inference.reasoning import split_reasoning


class Engine(Protocol):
    """All the evaluation needs of an engine (local or remote)."""

    max_queue: int

    async def start(self) -> None: ...

    def submit(self, request: GenerationRequest) -> Generation: ...

    async def close(self, grace: float = 30.0) -> None: ...


def in_flight_limit(engine: Engine, concurrency: int) -> int:
    """At most `concurrency`, and never more than the engine lets wait (so no QueueFull)."""
    return max(1, min(concurrency, engine.max_queue or concurrency))


def describe(model: str, sampling: SamplingParams) -> str:
    """The `setup` of results: which model and sampling produced them."""
    return (
        f"{model} temperature={sampling.temperature} top_p={sampling.top_p} "
        f"max_new_tokens={sampling.max_new_tokens}"
    )


async def ask(
    engine: Engine, item: QuizItem, sampling: SamplingParams, setup: str, store_text: bool = False
) -> Result:
    """One item: the prompt as the only (user) message, its final response scored."""
    request = GenerationRequest((Message("user", item.prompt),), sampling, f"eval-{item.line}")
    started = time.monotonic()
    base = {"line": item.line, "fingerprint": item.fingerprint, "setup": setup, "gold": item.answer}
    try:
        generation = engine.submit(request)
        text = await generation.collect()
    except EngineError as exc:
        seconds = round(time.monotonic() - started, 3)
        return Result(**base, finish="error", error=str(exc) or type(exc).__name__, seconds=seconds)
    truncated = generation.finish_reason == "length"
    found = extract_answer(split_reasoning(text, truncated).answer, item.options)
    return Result(
        **base,
        extracted=found.letter,
        rule=found.rule,
        correct=found.letter == item.answer,
        truncated=truncated,
        tokens=generation.stats.completion_tokens,
        seconds=round(time.monotonic() - started, 3),
        first=found.first,
        last=found.last,
        finish=generation.finish_reason,
        text=text if store_text else None,
    )


async def run_items(
    engine: Engine,
    items: Iterable[QuizItem],
    sampling: SamplingParams,
    setup: str,
    concurrency: int,
    on_result: Callable[[Result], None],
    store_text: bool = False,
) -> list[Result]:
    """Keep up to `in_flight_limit` items generating; `on_result` sees each result as it lands."""
    pending = iter(items)
    results: list[Result] = []

    async def worker() -> None:
        for item in pending:  # shared by the workers: each takes the next item when it is free
            result = await ask(engine, item, sampling, setup, store_text)
            results.append(result)
            on_result(result)

    await asyncio.gather(*(worker() for _ in range(in_flight_limit(engine, concurrency))))
    return results
