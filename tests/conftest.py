"""Shared fixtures: the built-in model loaded once per run, and engines on top of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from inference.loading import ModelSpec, load_model, resolve_model
from inference.local import LocalEngine
from inference.scripted import ScriptedEngine


@pytest.fixture(scope="session")
def builtin_model() -> tuple[ModelSpec, Any, Any]:
    """The built-in demo model through the real transformers loading path (about 15 s, once)."""
    spec = resolve_model("builtin:smollm2")
    model, tokenizer = load_model(spec)
    return spec, model, tokenizer


@pytest.fixture
async def local_engine(builtin_model) -> AsyncIterator[LocalEngine]:
    """A started local engine sharing the session's loaded weights."""
    spec, model, tokenizer = builtin_model
    engine = LocalEngine(spec, max_batch=16, max_queue=64, model=model, tokenizer=tokenizer)
    await engine.start()
    yield engine
    await engine.close(grace=0)


@pytest.fixture
async def scripted_engine() -> AsyncIterator[ScriptedEngine]:
    """A started scripted engine answering in HuatuoGPT-o1's format, echoing the question."""
    engine = ScriptedEngine()
    await engine.start()
    yield engine
    await engine.close(grace=0)
