"""Scripted engines for one test: started and closed around it, and answers cut into chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from inference.scripted import Script, ScriptedEngine


@asynccontextmanager
async def scripted(script_for: Callable[[str], Script]) -> AsyncIterator[ScriptedEngine]:
    engine = ScriptedEngine(script_for)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close(grace=0)


def chunked(text: str, size: int = 40, **options: Any) -> Script:
    return Script(tuple(text[i : i + size] for i in range(0, len(text), size)), **options)
