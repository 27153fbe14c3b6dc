"""The platform-neutral service: admission, progress, delivery and errors (scripted engine)."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import texts
from bot.core.events import Answer, Progress
from inference.engine import Message
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.harness.service import CollectingReply, question, service


async def test_answer_and_thinking_are_delivered_once(scripted_engine):
    reply = CollectingReply()
    outcome = await service(scripted_engine).answer(question("What is sepsis?"), reply)
    assert outcome == "answered"
    [answer] = reply.answers
    assert answer.answer == "Answer to: What is sepsis?"
    assert answer.thinking.startswith("The question is: What is sepsis?")
    assert answer.complete and not answer.truncated and answer.model == "scripted"
    assert reply.failures == []


async def test_history_and_system_prompt_reach_the_engine(scripted_engine):
    history = (Message("user", "What is sepsis?"), Message("assistant", "An infection response."))
    svc = service(scripted_engine, system_prompt="Be brief.")
    await svc.answer(question("And its treatment?", history), CollectingReply())
    sent = scripted_engine.requests[-1].request.messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0].content == "Be brief." and sent[-1].content == "And its treatment?"


async def test_progress_is_throttled_and_follows_the_phases():
    engine = ScriptedEngine(huatuo_script, step_delay=0.01)
    await engine.start()
    try:
        reply = CollectingReply()
        await service(engine, progress_interval=0.05).answer(question("Why?"), reply)
    finally:
        await engine.close(grace=0)
    states = [p.state for p in reply.progress_updates]
    assert "thinking" in states and "answering" in states
    assert states.index("thinking") < states.index("answering")
    chunks = len(huatuo_script("Why?").chunks)
    assert len(reply.progress_updates) < chunks / 2  # not one edit per chunk


@pytest.mark.parametrize(
    ("text", "expected"),
    [("   ", texts.EMPTY_QUESTION), ("x" * 9000, "9,000 characters long; the limit is 8,000")],
)
async def test_bad_questions_are_refused_with_a_reason(scripted_engine, text, expected):
    reply = CollectingReply()
    assert await service(scripted_engine).answer(question(text), reply) == "refused"
    assert expected in reply.failures[0] and reply.answers == []
    assert scripted_engine.requests == []


async def test_an_engine_error_reaches_the_asker_in_plain_words_and_the_log_in_detail(caplog):
    engine = ScriptedEngine(lambda q: Script(("## Thinking\n",), fail_at=1))
    await engine.start()
    asked = question("Why?")
    try:
        reply = CollectingReply()
        assert await service(engine).answer(asked, reply) == "failed"
    finally:
        await engine.close(grace=0)
    assert reply.failures == [
        f"Sorry, something went wrong while answering (request {asked.request_id}). Please try "
        "again; if it happens again, an admin can find the details in the logs."
    ]
    [logged] = [r.getMessage() for r in caplog.records if "failed on purpose" in r.getMessage()]
    assert asked.request_id in logged


async def test_a_full_queue_is_a_polite_refusal():
    engine = ScriptedEngine(lambda q: Script(("x",), stall_at=0), max_batch=1, max_queue=1)
    await engine.start()
    try:
        first = asyncio.create_task(service(engine).answer(question("one"), CollectingReply()))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(service(engine).answer(question("two"), CollectingReply()))
        await asyncio.sleep(0.05)
        reply, third = CollectingReply(), question("three")
        assert await service(engine).answer(third, reply) == "refused"
        assert reply.failures == [
            f"Sorry, too many questions are waiting (request {third.request_id}). "
            "Please ask again in a minute."
        ]
        assert reply.answers == []
        engine.release.set()
        assert await asyncio.gather(first, second) == ["answered", "answered"]
    finally:
        await engine.close(grace=0)


async def test_waiting_asker_is_told_their_place_at_once():
    engine = ScriptedEngine(lambda q: Script(("x",), stall_at=0), max_batch=1)
    await engine.start()
    try:
        first = asyncio.create_task(service(engine).answer(question("one"), CollectingReply()))
        await asyncio.sleep(0.05)
        reply = CollectingReply()
        second = asyncio.create_task(service(engine).answer(question("two"), reply))
        await asyncio.sleep(0.01)
        assert reply.progress_updates[0] == Progress("waiting", position=1)
        assert texts.progress_text(reply.progress_updates[0]) == "Thinking… (waiting: next in line)"
        engine.release.set()
        assert await asyncio.gather(first, second) == ["answered", "answered"]
    finally:
        await engine.close(grace=0)


async def test_a_stalled_answer_times_out_with_a_message_and_frees_its_slot():
    engine = ScriptedEngine(lambda q: Script(("a", "b"), stall_at=1))
    await engine.start()
    try:
        reply = CollectingReply()
        svc = service(engine, answer_timeout=0.2)
        assert await svc.answer(question("Why?"), reply) == "timeout"
        assert reply.failures == [texts.TIMEOUT]
        for _ in range(100):
            if engine.running == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.running == 0
    finally:
        await engine.close(grace=0)


def test_answer_text_says_when_it_was_cut_short_or_missing():
    cut = Answer("Partial", "t", complete=False, truncated=True, model="m", request_id="r")
    assert "cut short" in texts.answer_text(cut, "Footer") and texts.answer_text(cut, "F").endswith(
        "F"
    )
    none = Answer("", "reasoning", complete=False, truncated=False, model="m", request_id="r")
    assert "did not reach a final answer" in texts.answer_text(none)


async def test_a_personal_emergency_gets_the_notice_first_and_still_an_answer():
    engine = ScriptedEngine(huatuo_script, step_delay=0.01)
    await engine.start()
    try:
        reply = CollectingReply()
        text = "I have crushing chest pain right now"
        assert await service(engine).answer(question(text), reply) == "answered"
    finally:
        await engine.close(grace=0)
    [notice] = reply.notices
    assert "911" in notice and "120" in notice
    assert reply.order[0] == "notice" and reply.order.count("notice") == 1
    assert "progress" in reply.order and reply.order[-1] == "deliver"
    assert reply.answers[0].answer == f"Answer to: {text}"


async def test_a_teaching_case_gets_no_notice(scripted_engine):
    reply = CollectingReply()
    text = "A 55-year-old presents with chest pain radiating to the left arm. Diagnosis?"
    assert await service(scripted_engine).answer(question(text), reply) == "answered"
    assert reply.notices == [] and "notice" not in reply.order


async def test_a_failing_notice_does_not_cost_the_answer(scripted_engine):
    class BrokenNotice(CollectingReply):
        async def notice(self, text: str) -> None:
            raise RuntimeError("platform down")

    reply = BrokenNotice()
    assert await service(scripted_engine).answer(question("我想自杀"), reply) == "answered"
    assert reply.answers[0].answer == "Answer to: 我想自杀"


@pytest.mark.parametrize("redact_phi", [True, False])
async def test_identifiers_are_redacted_only_when_asked(scripted_engine, redact_phi):
    history = (
        Message("user", "patient John Smith, MRN: 00123456, has a fever"),
        Message("assistant", "Call him on 555-123-4567."),
    )
    text = "Email jane@example.org: is 500 mg paracetamol safe for a 55-year-old?"
    svc = service(scripted_engine, redact_phi=redact_phi)
    await svc.answer(question(text, history), CollectingReply())
    sent = [m.content for m in scripted_engine.requests[-1].request.messages]
    if redact_phi:
        assert sent == [
            "patient [NAME], MRN: [MRN], has a fever",
            "Call him on [PHONE].",
            "Email [EMAIL]: is 500 mg paracetamol safe for a 55-year-old?",
        ]
    else:
        assert sent == [m.content for m in history] + [text]
