"""Prompts: no system message by default, history trimmed from the oldest turn."""

from __future__ import annotations

import pytest

from inference.engine import GenerationRequest, Message, PromptTooLong, SamplingParams
from inference.prompts import build_messages, fit_to_context


def words(messages) -> int:
    return sum(len(m.content.split()) for m in messages)


def test_no_system_message_unless_configured():
    assert build_messages("Q?") == (Message("user", "Q?"),)
    assert build_messages("Q?", system_prompt="Be brief.")[0] == Message("system", "Be brief.")


def test_oldest_turns_are_dropped_first_and_the_question_kept():
    history = [Message("user", "one two"), Message("assistant", "three four five")] * 3
    messages = build_messages("final question here", history, "sys")
    kept, count = fit_to_context(messages, words, budget=10)
    assert kept[0] == Message("system", "sys") and kept[-1].content == "final question here"
    assert kept[1:-1] == history[-2:]  # only the newest pair fits
    assert count == words(kept) <= 10


def test_a_question_that_cannot_fit_is_refused():
    with pytest.raises(PromptTooLong, match="too long"):
        fit_to_context(build_messages("a b c d e f"), words, budget=3)


@pytest.mark.model
async def test_local_engine_trims_history_to_the_context_window(local_engine):
    old = Message("user", "blood pressure " * 6000)  # far beyond the 8k-token window
    request_messages = (old, Message("assistant", "ok"), Message("user", "What is gout?"))
    request = GenerationRequest(request_messages, SamplingParams(16, 0.0, 1.0))
    ids = local_engine.prompt_ids(request)
    assert len(ids) < 100  # the old turn was dropped, the question kept
    assert "gout" in local_engine.tokenizer.decode(ids)
