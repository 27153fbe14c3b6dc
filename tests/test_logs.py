"""Structured logs: HUATUO_LOG_FORMAT=json gives one JSON object per line, with the request id."""

from __future__ import annotations

import json
import logging

from bot import cli, logs
from bot.core.service import AnswerService
from inference.engine import SamplingParams
from tests.harness.service import CollectingReply, question


async def test_json_lines_carry_the_request_id_of_the_question_being_answered(
    scripted_engine, capsys
) -> None:
    logs.configure(verbose=True, style="json")
    try:
        asked = question("What is the dose of amoxicillin for otitis media?")
        service = AnswerService(scripted_engine, SamplingParams(64, 0.5, 0.9))
        assert await service.answer(asked, CollectingReply()) == "answered"
        logging.getLogger("bot.test").warning("outside any question")
    finally:
        logs.configure(verbose=False)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    answered = [r for r in lines if r["logger"] == "bot.core.service"]
    assert answered and all(r["request_id"] == asked.request_id for r in answered)
    assert {"time", "level", "logger", "message"} <= answered[0].keys()
    assert lines[-1]["request_id"] is None and lines[-1]["level"] == "WARNING"
    assert not any("amoxicillin" in json.dumps(r) for r in lines), "no question text in logs"


def test_the_cli_reads_the_log_format_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HUATUO_LOG_FORMAT", "json")
    assert cli._log_style() == "json"
    monkeypatch.setenv("HUATUO_TEMPERATURE", "hot")  # broken settings: still log, as text
    assert cli._log_style() == "text"
