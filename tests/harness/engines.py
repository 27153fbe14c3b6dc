"""Scripted engines for one test: started and closed around it, and answers cut into chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from inference.scripted import Script, ScriptedEngine


@asynccontextmanager
async def scripted(
    script_for: Callable[[str], Script], pace: float = 0.0
) -> AsyncIterator[ScriptedEngine]:
    """A started engine answering with `script_for(question)`, a chunk every `pace` s."""
    engine = ScriptedEngine(script_for, step_delay=pace)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close(grace=0)


def chunked(text: str, size: int = 40, **options: Any) -> Script:
    return Script(tuple(text[i : i + size] for i in range(0, len(text), size)), **options)
