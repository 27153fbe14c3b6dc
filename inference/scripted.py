"""A scripted engine for fast tests: fixed chunks through the real batch worker, no model.

Each request gets a `Script`: the chunks to emit (one per step), how to finish, and optionally a
failure or a stall at a given step. The default script answers in HuatuoGPT-o1's format with the
headers split across chunk boundaries, echoing the question so each asker can tell its own answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inference.engine import BatchEngine, EngineError, FinishReason, Generation, Row


@dataclass(frozen=True)
class Script:
    chunks: tuple[str, ...]
    finish: FinishReason = "stop"
    fail_at: int | None = None  # raise an EngineError when this chunk index is reached
    stall_at: int | None = None  # stop emitting at this chunk index until released or cancelled


def huatuo_script(question: str) -> Script:
    """A well-formed answer whose headers are cut across chunks, as a tokenizer would cut them."""
    text = (
        f"## Thinking\n\nThe question is: {question}\nLet me reason about it step by step."
        f"\n\n## Final Response\n\nAnswer to: {question}"
    )
    return Script(tuple(text[i : i + 7] for i in range(0, len(text), 7)))


class _ScriptRow(Row):
    def __init__(self, generation: Generation, script: Script) -> None:
        super().__init__(generation)
        self.script = script


class ScriptedEngine(BatchEngine):
    """Emits scripted chunks, one per step per row, `step_delay` seconds apart."""

    name = "scripted"

    def __init__(
        self,
        script_for: Callable[[str], Script] = huatuo_script,
        step_delay: float = 0.0,
        max_batch: int = 16,
        max_queue: int = 64,
        model_name: str = "scripted",
    ) -> None:
        super().__init__(max_batch=max_batch, max_queue=max_queue)
        self.script_for = script_for
        self.step_delay = step_delay
        self.model_name = model_name
        self.release = threading.Event()  # set it to let stalled rows go on
        self.requests: list[Generation] = []  # every request admitted, for assertions

    def _admit(self, generations: list[Generation]) -> None:
        for generation in generations:
            self.requests.append(generation)
            question = generation.request.messages[-1].content
            self._rows.append(_ScriptRow(generation, self.script_for(question)))

    def _step(self) -> None:
        if self.step_delay:
            time.sleep(self.step_delay)
        progressed = False
        for row in self._rows:
            assert isinstance(row, _ScriptRow)
            script, index = row.script, row.tokens_out
            if index == script.fail_at:
                row.fail(EngineError("The scripted engine failed on purpose."))
            elif index == script.stall_at and not self.release.is_set():
                continue
            elif index >= len(script.chunks):
                row.finished = script.finish
            else:
                row.tokens_out += 1
                row.generation.stats.completion_tokens = row.tokens_out
                row.generation._emit(script.chunks[index])
            progressed = True
        if not progressed:
            time.sleep(0.005)  # every row is stalled: do not spin
