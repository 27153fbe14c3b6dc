"""The `huatuo-bot` command: ask --json end to end, and check's clear messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot import cli
from bot.cli import main
from inference.scripted import ScriptedEngine

SETTINGS = [
    "HUATUO_MODEL", "HUATUO_BACKEND", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET", "DISCORD_BOT_TOKEN", "HUATUO_FEEDBACK_DB", "HUATUO_STORE_TEXT",
]  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No settings from the environment or a .env file."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.model
def test_ask_json_prints_one_object_with_the_contract_fields():
    command = [sys.executable, "-m", "bot.cli", "ask", "--json", "--model", "builtin:smollm2",
               "--max-new-tokens", "32", "What is sepsis?"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.strip().splitlines()
    result = json.loads(line)
    assert {"answer", "thinking", "complete", "model"} <= result.keys()
    assert result["answer"] and result["model"] == "builtin:smollm2"
    assert result["tokens"] <= 32
    assert "NOT medically reliable" in done.stderr


def test_check_with_nothing_configured_says_what_is_missing(clean_env, capsys):
    clean_env.setenv("HUATUO_MODEL", "builtin:smollm2")
    assert main(["check"]) != 0
    out = capsys.readouterr().out
    assert "✓ model: builtin:smollm2" in out
    assert "platforms: none configured" in out and "SLACK_BOT_TOKEN" in out


def test_check_passes_with_a_platform_and_the_builtin_model(clean_env, capsys):
    clean_env.setenv("HUATUO_MODEL", "builtin:smollm2")
    clean_env.setenv("DISCORD_BOT_TOKEN", "token")
    assert main(["check"]) == 0
    assert "✓ platforms: Discord" in capsys.readouterr().out


def test_check_says_where_feedback_goes_and_names_an_unwritable_folder(clean_env, capsys):
    clean_env.setenv("HUATUO_MODEL", "builtin:smollm2")
    clean_env.setenv("DISCORD_BOT_TOKEN", "token")
    assert main(["check"]) == 0
    assert "✓ feedback: recorded in huatuo-feedback.sqlite3, without message text" in (
        capsys.readouterr().out
    )
    assert not os.path.exists("huatuo-feedback.sqlite3"), "check creates nothing"
    clean_env.setenv("HUATUO_FEEDBACK_DB", "/no/such/folder/feedback.sqlite3")
    assert main(["check"]) != 0
    assert "/no/such/folder is not a writable folder" in capsys.readouterr().out


def test_stats_since_must_be_a_positive_number_of_days(capsys):
    with pytest.raises(SystemExit):
        main(["stats", "--since", "-3"])
    assert "expected a positive number of days, not '-3'" in capsys.readouterr().err


def test_check_names_an_unknown_model(clean_env, capsys):
    clean_env.setenv("HUATUO_MODEL", "gpt-doctor")
    assert main(["check"]) != 0
    assert "Unknown model 'gpt-doctor'" in capsys.readouterr().out


def test_check_names_a_missing_or_unusable_path(clean_env, capsys, tmp_path):
    clean_env.setenv("HUATUO_MODEL", str(tmp_path / "nowhere"))
    assert main(["check"]) != 0
    assert "does not exist" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    clean_env.setenv("HUATUO_MODEL", str(tmp_path / "empty"))
    assert main(["check"]) != 0
    assert "neither config.json nor a .gguf file" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_check_names_an_unreadable_path(clean_env, capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    clean_env.setenv("HUATUO_MODEL", str(locked))
    assert main(["check"]) != 0
    assert "not readable" in capsys.readouterr().out


def test_check_reports_bad_values_without_a_traceback(clean_env, capsys):
    clean_env.setenv("HUATUO_TOP_P", "3")
    assert main(["check"]) != 0
    assert "HUATUO_TOP_P" in capsys.readouterr().out


def test_ask_with_an_unknown_model_names_it(clean_env, capsys):
    assert main(["ask", "--model", "nonsense", "hi"]) == 2
    assert "Unknown model 'nonsense'" in capsys.readouterr().err


async def test_chat_keeps_the_conversation_with_final_answers_only(scripted_engine, capsys):
    import io

    from bot import console
    from bot.core.service import AnswerService
    from inference.engine import SamplingParams

    service = AnswerService(scripted_engine, SamplingParams(64, 0.5, 0.9))
    stdin = io.StringIO("What is sepsis?\nHow is it treated?\n\n")
    assert await console.chat(service, "Footer", stdin=stdin) == 0
    second = scripted_engine.requests[1].request.messages
    assert [(m.role, m.content) for m in second] == [
        ("user", "What is sepsis?"),
        ("assistant", "Answer to: What is sepsis?"),
        ("user", "How is it treated?"),
    ]
    out = capsys.readouterr().out
    assert out.index("Thinking") < out.index("Final response") < out.index("Footer")


def test_demo_answers_every_question_at_once(clean_env, capsys, monkeypatch):
    """The demo asks as one person, all at once: the terminal has no one-at-a-time rule."""
    monkeypatch.setattr(cli, "make_engine", lambda settings: ScriptedEngine())
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    questions = out.count("\n=== Question ")
    assert questions >= 6 and out.count("Answer to: ") == questions, out[-2000:]
