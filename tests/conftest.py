"""Shared fixtures: the built-in model loaded once per run (only for tests marked `model`, so that
`pytest -m "not model"` is the fast lane), how fast it runs here, engines on top of it, and a fake
Discord."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import torch

from inference.loading import ModelSpec, load_model, resolve_model
from inference.local import LocalEngine
from inference.scripted import ScriptedEngine

# The built-in model's pace for one stream on an idle 2-core machine (about 24 tokens/s).
REFERENCE_SECONDS_PER_TOKEN = 1 / 24
# The fixtures that load the built-in model; `openai_server` (tests/test_remote.py) serves it.
MODEL_FIXTURES = {"builtin_model", "slowness", "local_engine", "thinking_engine", "openai_server"}
RUNNING = pytest.StashKey[pytest.Item]()


def unmarked(item: pytest.Item, why: str) -> str:
    return (
        f"{item.nodeid} {why} but is not marked `@pytest.mark.model`: mark it, so that "
        '`pytest -m "not model"` stays the fast lane'
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that asks for the model must carry the `model` marker."""
    item.config.stash[RUNNING] = item
    uses = sorted(MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if uses and item.get_closest_marker("model") is None:
        pytest.fail(unmarked(item, f"uses {', '.join(uses)}"), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def own_temporary_folder(tmp_path_factory) -> Iterator[None]:
    """This session's own temporary folder: `run` with feedback off keeps its lock files in it
    (bot/instance.py), which another test session on this host must not share."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))
        yield


@pytest.fixture(scope="session")
def builtin_model(request: pytest.FixtureRequest) -> tuple[ModelSpec, Any, Any]:
    """The built-in demo model through the real transformers loading path (about 15 s, once)."""
    test = request.config.stash.get(RUNNING, None)
    if test is not None and test.get_closest_marker("model") is None:  # asked for at run time
        pytest.fail(unmarked(test, "loads the built-in model"), pytrace=False)
    spec = resolve_model("builtin:smollm2")
    model, tokenizer = load_model(spec)
    return spec, model, tokenizer


@pytest.fixture(scope="session")
def slowness(builtin_model) -> float:
    """How many times slower than an idle 2-core machine the built-in model generates here and
    now (at least 1), measured once (about 1 s): waits around model work are multiplied by it."""
    _, model, tokenizer = builtin_model
    inputs = tokenizer("What is asthma?", return_tensors="pt")
    greedy = {"do_sample": False, "pad_token_id": tokenizer.eos_token_id}
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, **greedy)  # the first call warms up
        started = time.perf_counter()
        model.generate(**inputs, max_new_tokens=16, min_new_tokens=16, **greedy)
    pace = (time.perf_counter() - started) / 16
    return max(1.0, pace / REFERENCE_SECONDS_PER_TOKEN)


@pytest.fixture
async def local_engine(builtin_model) -> AsyncIterator[LocalEngine]:
    """A started local engine sharing the session's loaded weights."""
    spec, model, tokenizer = builtin_model
    engine = LocalEngine(spec, max_batch=16, max_queue=64, model=model, tokenizer=tokenizer)
    await engine.start()
    yield engine
    await engine.close(grace=0)


@pytest.fixture
async def thinking_engine(builtin_model) -> AsyncIterator[LocalEngine]:
    """Like `local_engine`, every answer started with the Thinking header (as for HuatuoGPT-o1)."""
    spec, model, tokenizer = builtin_model
    engine = LocalEngine(spec, model=model, tokenizer=tokenizer, prefill_thinking=True)
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


@pytest.fixture
async def fake() -> AsyncIterator[Any]:
    """A fake Discord on 127.0.0.1 (not `patched()`: the adapter must point discord.py here)."""
    from tests.fakes.discord import FakeDiscord  # here, so only Discord tests load discord.py
    from tests.harness.discord import HEARTBEAT_MS

    server = FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS)
    await server.start()
    yield server
    await server.stop()
