"""The engines: real loading and batched generation, cancellation, errors, queueing, shutdown."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from inference.engine import (
    EngineClosed,
    EngineError,
    GenerationRequest,
    Message,
    PromptTooLong,
    QueueFull,
    SamplingParams,
)
from inference.reasoning import Reasoning, split_reasoning
from inference.scripted import Script, ScriptedEngine
from inference.thinking import FORCED_FINAL, PREFILL

GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0, top_p=1.0)  # the topic comes first
TOPICS = ["asthma", "diabetes", "hepatitis", "migraine", "anemia", "pneumonia", "glaucoma", "gout"]


def ask(text: str, sampling: SamplingParams = GREEDY) -> GenerationRequest:
    return GenerationRequest((Message("user", text),), sampling)


@pytest.mark.model
async def test_builtin_model_loads_and_answers(local_engine):
    generation = local_engine.submit(ask("What is asthma?"))
    chunks = [chunk async for chunk in generation]
    text = "".join(chunks)
    assert len(chunks) > 1, "text should stream in several chunks"
    assert "asthma" in text.lower()
    assert generation.finish_reason in ("stop", "length")
    assert 0 < generation.stats.completion_tokens <= GREEDY.max_new_tokens
    parsed = split_reasoning(text, truncated=generation.finish_reason == "length")
    assert parsed.answer == text.strip() and parsed.thinking == ""  # no headers: all answer


@pytest.mark.model
async def test_generation_stops_at_the_end_of_the_answer_not_the_limit(local_engine):
    roomy = SamplingParams(max_new_tokens=96, temperature=0.0, top_p=1.0)
    generation = local_engine.submit(ask("What color is blood? One word.", roomy))
    text = await generation.collect()
    assert "red" in text.lower()
    assert generation.finish_reason == "stop" and generation.stats.completion_tokens < 96


@pytest.mark.model
async def test_eight_concurrent_requests_each_get_their_own_answer(local_engine):
    generations = [local_engine.submit(ask(f"What is {topic}?")) for topic in TOPICS]
    await asyncio.sleep(0.05)
    texts = await asyncio.gather(*(g.collect() for g in generations))
    for topic, text in zip(TOPICS, texts, strict=True):
        assert topic in text.lower(), (topic, text)
    assert len(set(texts)) == len(TOPICS)


@pytest.mark.model
async def test_batched_answer_equals_the_answer_asked_alone(local_engine):
    alone = await local_engine.submit(ask("What is asthma?")).collect()
    crowd = [local_engine.submit(ask(f"What is {topic}?")) for topic in TOPICS[1:]]
    async for _ in crowd[-1]:
        break  # the crowd is generating when the question joins
    joined = local_engine.submit(ask("What is asthma?"))
    assert await joined.collect() == alone
    await asyncio.gather(*(g.collect() for g in crowd))


@pytest.mark.model
async def test_cancel_frees_the_slot_and_leaves_others_unaffected(local_engine):
    long = SamplingParams(max_new_tokens=200, temperature=0.0, top_p=1.0)
    victim = local_engine.submit(ask("Explain the causes of chest pain.", long))
    other = local_engine.submit(ask("What is gout?"))
    async for _ in victim:
        break  # it has started generating
    victim.cancel()
    assert "gout" in (await other.collect()).lower()
    await victim.collect()
    assert victim.finish_reason == "cancelled"
    assert victim.stats.completion_tokens < 200
    assert local_engine.running == 0


@pytest.mark.model
async def test_question_too_long_fails_that_request_only(local_engine):
    huge = ask("chest pain " * 5000)
    bad, good = local_engine.submit(huge), local_engine.submit(ask("What is anemia?"))
    with pytest.raises(PromptTooLong, match="too long"):
        await bad.collect()
    assert "anemia" in (await good.collect()).lower()


@pytest.mark.model
async def test_loop_is_not_blocked_while_the_model_generates(local_engine):
    worst = 0.0
    # Answers long enough (about 1 s) that a loop blocked by generation would show.
    sampling = SamplingParams(max_new_tokens=24, temperature=0.0, top_p=1.0)
    generations = [local_engine.submit(ask(f"What is {t}?", sampling)) for t in TOPICS[:4]]
    pending = asyncio.gather(*(g.collect() for g in generations))
    while not pending.done():
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - start - 0.01)
    await pending
    assert worst < 0.25, f"event loop stalled for {worst:.3f} s"


async def test_scripted_error_fails_one_request_and_the_engine_keeps_serving():
    engine = ScriptedEngine(
        lambda q: Script(("partial ",), fail_at=1) if "fail" in q else Script(("ok",))
    )
    await engine.start()
    try:
        failing, fine = engine.submit(ask("please fail")), engine.submit(ask("fine"))
        with pytest.raises(EngineError, match="failed on purpose"):
            await failing.collect()
        assert await fine.collect() == "ok"
        assert await engine.submit(ask("again")).collect() == "ok"
    finally:
        await engine.close(grace=0)


async def test_waiting_requests_know_their_place_the_queue_is_bounded_and_a_cancel_leaves_it():
    engine = ScriptedEngine(lambda q: Script(("x",), stall_at=0), max_batch=1, max_queue=2)
    await engine.start()
    try:
        running = engine.submit(ask("first"))
        assert running.queue_position == 1
        for _ in range(100):
            if running.queue_position is None:
                break
            await asyncio.sleep(0.01)
        second, third = engine.submit(ask("second")), engine.submit(ask("third"))
        assert (running.queue_position, second.queue_position, third.queue_position) == (
            None,
            1,
            2,
        )
        with pytest.raises(QueueFull, match="already waiting"):
            engine.submit(ask("fourth"))
        second.cancel()  # leaves the line at once, while the first still holds the only slot
        assert second.finish_reason == "cancelled" and third.queue_position == 1
        assert engine.submit(ask("fourth")).queue_position == 2, "its place is free again"
        engine.release.set()
        assert await running.collect() == "x"
        assert await third.collect() == "x"
        await second.collect()
        assert second.finish_reason == "cancelled"
    finally:
        await engine.close(grace=0)


async def test_shutdown_finishes_or_fails_every_pending_request():
    engine = ScriptedEngine(lambda q: Script(("a", "b"), stall_at=1 if "stuck" in q else None))
    await engine.start()
    quick, stuck = engine.submit(ask("quick")), engine.submit(ask("stuck"))
    await engine.close(grace=0.5)
    assert await quick.collect() == "ab"
    with pytest.raises(EngineClosed, match="shut down"):
        await stuck.collect()
    with pytest.raises(EngineClosed):
        engine.submit(ask("too late"))


@pytest.mark.model
async def test_a_capped_thinking_gets_a_final_response_and_the_batch_goes_on_unchanged(
    thinking_engine, builtin_model
) -> None:
    tokenizer = builtin_model[2]
    others = [ask(f"What is {topic}?", replace(GREEDY, max_new_tokens=32)) for topic in TOPICS[:2]]
    alone = await asyncio.gather(*(thinking_engine.submit(r).collect() for r in others))
    budget = replace(GREEDY, max_new_tokens=64, thinking_budget=8)
    capped = thinking_engine.submit(ask("What color is blood? One word.", budget))
    batch = [thinking_engine.submit(r) for r in others]
    text, *texts = await asyncio.gather(capped.collect(), *(g.collect() for g in batch))

    written, forced, answer = text.removeprefix(PREFILL).partition(FORCED_FINAL)
    assert text.startswith(PREFILL) and forced and len(tokenizer.encode(written)) <= 8
    result = split_reasoning(text, truncated=capped.finish_reason == "length")
    assert result == Reasoning(written.strip(), answer.strip(), complete=True) and result.answer
    assert capped.stats.thinking_capped and capped.stats.completion_tokens > 8
    assert texts == alone, "the capped row's forced header changes nothing for the others"
    assert not any(g.stats.thinking_capped for g in batch)
    assert all(t.startswith(PREFILL) and FORCED_FINAL not in t for t in texts)
