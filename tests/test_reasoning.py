"""The Thinking / Final Response parser against real model outputs, whole and streamed."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from bot.config import Settings
from bot.wiring import sampling
from inference.reasoning import (
    FINAL_HEADER,
    THINKING_HEADER,
    Reasoning,
    ReasoningStream,
    split_reasoning,
)
from inference.thinking import FORCED_FINAL, PREFILL, default_budget, still_thinking

SAMPLES = json.loads(
    (Path(__file__).resolve().parents[2] / "shared/data/huatuo_samples.json").read_text()
)


def _feed_in_chunks(text: str, sizes) -> ReasoningStream:
    stream = ReasoningStream()
    pos = 0
    while pos < len(text):
        size = next(sizes)
        stream.feed(text[pos : pos + size])
        pos += size
    return stream


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["id"] for s in SAMPLES])
def test_every_shared_sample_splits_as_expected(sample):
    expected = sample["expected"]
    got = split_reasoning(sample["raw_output"], truncated=sample["stopped_by_length"])
    assert got.thinking == expected["thinking"]
    assert got.answer == expected["final_response"]
    assert got.complete == expected["complete"]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["id"] for s in SAMPLES])
def test_streaming_equals_whole_text_for_random_chunking(sample):
    text, truncated = sample["raw_output"], sample["stopped_by_length"]
    whole = split_reasoning(text, truncated=truncated)
    rng = random.Random(sample["id"])
    for max_size in (1, 2, 3, 7, 16, 64, 500):
        sizes = iter(lambda size=max_size: rng.randint(1, size), None)
        assert _feed_in_chunks(text, sizes).result(truncated) == whole


def test_headers_split_across_chunks_at_every_position():
    text = "assistant\n## Thinking\n\nFirst idea.\n\n## Final Response\n\nThe answer."
    whole = split_reasoning(text)
    assert whole.thinking == "First idea." and whole.answer == "The answer." and whole.complete
    for cut in range(1, len(text)):
        stream = ReasoningStream()
        stream.feed(text[:cut])
        stream.feed(text[cut:])
        assert stream.result() == whole, cut


HEADER_SEEN = re.compile(r"#{1,4}[ \t]*(t|th|thi|thin|think|final|final r)", re.IGNORECASE)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["id"] for s in SAMPLES])
def test_a_live_snapshot_never_shows_a_header_or_part_of_one(sample):
    """What is shown while the model writes: after every chunk, the thinking and the answer so
    far hold no header, whole or begun."""
    text = sample["raw_output"]
    rng = random.Random(sample["id"])
    stream, pos = ReasoningStream(), 0
    while pos < len(text):
        size = rng.randint(1, 4)
        stream.feed(text[pos : pos + size])
        pos += size
        snapshot = stream.snapshot()
        for part in (snapshot.thinking, snapshot.answer):
            assert not HEADER_SEEN.search(part.split("\n")[-1]), part[-80:]
            assert not FINAL_HEADER.search(part) and not THINKING_HEADER.search(part)


def test_phase_follows_the_headers_as_they_arrive():
    stream = ReasoningStream()
    assert stream.phase == "start"
    stream.feed("## Thin")
    assert stream.phase == "start"
    stream.feed("king\n\nLet me think")
    assert stream.phase == "thinking"
    stream.feed(".\n\n## Final Resp")
    assert stream.phase == "thinking"
    stream.feed("onse\n\nIt is")
    assert stream.phase == "answer"
    assert stream.result() == split_reasoning(stream.text)


@pytest.mark.parametrize(
    ("text", "thinking", "answer", "complete"),
    [
        ("# thinking:\nhmm\n#### FINAL RESPONSE:\nYes.", "hmm", "Yes.", True),
        ("## Thinking\n\nstill going", "still going", "", False),
        ("Plain answer, no headers.", "", "Plain answer, no headers.", True),
        ("## Thinking\nA\n## Final Response\nB\n## Final Response\nC", "A\n\nB", "C", True),
        ("## Thinking\nA\n## Final Response\n\n", "A", "", False),
        ("Thinking about it\nno header here", "", "Thinking about it\nno header here", True),
        ("## Thinking about ## Final Response\nx", "## Thinking about", "x", True),
        ("", "", "", False),
    ],
)
def test_edge_cases(text, thinking, answer, complete):
    got = split_reasoning(text)
    assert (got.thinking, got.answer, got.complete) == (thinking, answer, complete)
    assert _feed_in_chunks(text, iter(lambda: 1, None)).result() == got


def test_truncation_marks_a_headerless_answer_incomplete():
    assert split_reasoning("Sepsis is a", truncated=True).complete is False
    assert split_reasoning("Sepsis is a", truncated=False).complete is True


# ---- headers written for the model (inference/thinking.py) ------------------------------------

WHOLE = [s for s in SAMPLES if s["expected"]["thinking"] and s["expected"]["final_response"]]


@pytest.mark.parametrize("sample", WHOLE, ids=[s["id"] for s in WHOLE])
def test_headers_written_for_the_model_parse_like_its_own(sample):
    thinking, answer = sample["expected"]["thinking"], sample["expected"]["final_response"]
    expected = Reasoning(thinking, answer, complete=True)
    assert split_reasoning(f"{PREFILL}{thinking}{FORCED_FINAL}{answer}") == expected
    stream = ReasoningStream()  # the engine emits each header as one chunk of its own
    for chunk in (PREFILL, *_pieces(thinking), FORCED_FINAL, *_pieces(answer)):
        stream.feed(chunk)
    assert stream.result() == expected


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_only_a_thinking_without_its_final_response_header_is_still_thinking():
    assert still_thinking(f"{PREFILL}Consider the causes.")
    assert still_thinking("assistant\n##Thinking\n\nConsider")
    assert not still_thinking(f"{PREFILL}Consider.\n\n## Final Response\n\nRest.")
    assert not still_thinking("A plain answer: no headers, nothing to cap.")


@pytest.mark.parametrize(
    ("max_new_tokens", "budget"),
    [(2048, 1536), (1024, 512), (768, 384), (512, 256), (160, 80), (1, 0)],
)
def test_the_default_budget_leaves_512_tokens_to_the_answer_and_at_least_half_to_thinking(
    max_new_tokens, budget
):
    settings = Settings(_env_file=None, HUATUO_MAX_NEW_TOKENS=str(max_new_tokens))
    assert sampling(settings).thinking_budget == budget == default_budget(max_new_tokens)
    assert sampling(Settings(_env_file=None, HUATUO_THINKING_BUDGET="0")).thinking_budget == 0
    assert sampling(Settings(_env_file=None, HUATUO_THINKING_BUDGET="")).thinking_budget == 1536
